"""The `[applets.gids]` profile table, validated with `vcard.profile.TableReader`.

[applets.gids]
initialized = true        # false: a blank card for `gids-tool --initialize`
aid = "A0 00 00 03 97 42 54 46 59 02 01"   # 9..16 bytes starting with the GIDS RID+PIX
card_id = "..."            # 16 bytes hex; omitted: random at first start
admin_auth = ["mutual", "external"]        # advertised in FCI tag 40
user_role = 1              # security-core role of the user PIN (key reference 80)
admin_role = 2             # challenge role holding the admin key (key file B080)
puk_role = 3               # optional PUK (key reference 81); omit for no PUK
"""

from __future__ import annotations

from dataclasses import dataclass

from ...context import AppletContext
from ...security import RoleType
from ...tablereader import TableReader
from ...wire.aids import GIDS_AID, GIDS_AID_PREFIX
from .constants import ADMIN_AUTH_EXTERNAL, ADMIN_AUTH_MUTUAL

ADMIN_AUTH_BITS = {"mutual": ADMIN_AUTH_MUTUAL, "external": ADMIN_AUTH_EXTERNAL}
CARD_ID_LENGTH = 16


@dataclass(frozen=True)
class GidsConfig:
    initialized: bool
    aid: bytes
    card_id: bytes | None
    admin_auth: int
    user_role: int
    admin_role: int
    puk_role: int | None

    @classmethod
    def read(cls, context: AppletContext) -> GidsConfig:
        reader = TableReader(context.profile_path, "applets.gids", context.config)
        initialized = reader.boolean("initialized", True)
        aid = reader.hex_bytes("aid", GIDS_AID)
        if not 9 <= len(aid) <= 16 or not aid.startswith(GIDS_AID_PREFIX):
            raise reader.error(
                "aid", f"must be 9 to 16 bytes starting with {GIDS_AID_PREFIX.hex(' ').upper()}"
            )
        card_id = reader.hex_bytes("card_id", None, lengths=(CARD_ID_LENGTH,))
        protocols = reader.array("admin_auth", ["mutual", "external"])
        bits = 0
        for name in protocols:
            if name not in ADMIN_AUTH_BITS:
                raise reader.error("admin_auth", f'entries must be "mutual" or "external", got {name!r}')
            bits |= ADMIN_AUTH_BITS[name]
        user_role = reader.integer("user_role", 1, minimum=1, maximum=7)
        admin_role = reader.integer("admin_role", 2, minimum=1, maximum=7)
        puk_role = reader.integer("puk_role", None, minimum=1, maximum=7)
        reader.finish()
        config = cls(initialized, aid, card_id, bits, user_role, admin_role, puk_role)
        config._check_roles(context, reader)
        return config

    def _check_roles(self, context: AppletContext, reader: TableReader) -> None:
        """Each referenced role must be declared with a usable type (the messages name the key).

        The user role may be `external` (PIN pad, biometric): the host then verifies it
        through the vendor commands and the card only sees the resulting status.
        """
        pin_like = (RoleType.PIN, RoleType.EXTERNAL)
        wanted = {
            "user_role": (self.user_role, pin_like),
            "admin_role": (self.admin_role, (RoleType.CHALLENGE,)),
        }
        if self.puk_role is not None:
            wanted["puk_role"] = (self.puk_role, (RoleType.PIN,))
        for key, (role, kinds) in wanted.items():
            try:
                declared = context.security.role(role)
            except KeyError:
                raise reader.error(key, f"role {role} is not declared in [[security.roles]]") from None
            if declared.type not in kinds:
                names = " or ".join(f'"{kind.value}"' for kind in kinds)
                raise reader.error(key, f'role {role} must have type {names}, not "{declared.type.value}"')
