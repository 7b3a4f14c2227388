"""A minimal ISO 7816-4 applet: the bare card used before (and beside) PIV and GIDS.

It exists so that the runtime, the transport, the state store and the security
core can be exercised through real clients without a full application:

- SELECT by AID F0 76 63 61 72 64 01 ("F0" + "vcard" + 01; any prefix from 5 bytes).
- VERIFY `00 20 P1 P2`: P2 = 0x80 | role. Empty data answers the status (9000 when
  the role is authenticated, else 63Cx); P1 = FF deauthenticates the role.
- RESET RETRY COUNTER `00 2C 00 P2 <unblocker value> FF <new value>` (an FF byte
  separates the two values, which may not contain FF): unblocks role P2 & 0x0F
  with the value of the role that unblocks it.
- GET CHALLENGE `00 84 00 00 Le`: Le random bytes (1-256).
- GET DATA `00 CA P1 P2` / PUT DATA `00 DA P1 P2 data`: small persistent objects
  named by P1P2 (0100-01FF); writing needs role 1; empty data deletes.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..apdu import SW, CommandAPDU, ISOError, status
from ..cardos import Applet, HandlerResult, command
from ..context import AppletContext
from ..security import AccessRule
from ..statefields import require_field, require_hex
from ..wire.aids import ISO_APPLET_AID
from ..wire.ins import IsoIns

MAX_OBJECT_SIZE = 4096
MAX_OBJECTS = 64
WRITE_RULE = AccessRule(all_of=frozenset({1}))


class IsoApplet(Applet):
    name = "iso"
    aid = ISO_APPLET_AID

    def __init__(self, context: AppletContext) -> None:
        self.context = context
        self.security = context.security
        if context.is_new:
            context.state.setdefault("objects", {})
        self.objects: dict[str, str] = require_field(context.state, "objects", dict, "")
        for key in self.objects:
            require_hex(self.objects, key, "objects")
        # The objects' bytes, decoded once (GET DATA is read far more often than written).
        self._values = {name: bytes.fromhex(value) for name, value in self.objects.items()}

    def select(self, apdu: CommandAPDU) -> bytes:
        return b""

    def _role(self, p2: int) -> int:
        """P2 = 0x80 | role; an undeclared role answers 6A88 (UnknownRoleError)."""
        if p2 & 0xF8 != 0x80:
            raise ISOError(SW.REFERENCE_NOT_FOUND)
        return self.security.role(p2 & 0x07).role

    @command(IsoIns.VERIFY)
    def verify(self, apdu: CommandAPDU) -> HandlerResult:
        role = self._role(apdu.p2)
        if apdu.p1 == 0xFF:
            if apdu.data:
                raise ISOError(SW.WRONG_LENGTH)
            self.security.deauthenticate(1 << role)
            return None
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        if not apdu.data:
            return status(self.security.verified_status(role))
        self.security.verify(role, apdu.data)
        return None

    @command(IsoIns.RESET_RETRY_COUNTER)
    def reset_retry_counter(self, apdu: CommandAPDU) -> None:
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        role = self._role(apdu.p2)
        unblocker = self.security.role(role).unblocked_by
        if unblocker is None:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "role has no unblocker")
        puk, separator, new = apdu.data.partition(b"\xff")
        if not separator or not puk or not new:
            raise ISOError(SW.INCORRECT_DATA)
        self.security.unblock(role, unblocker, puk, new)

    @command(IsoIns.GET_CHALLENGE)
    def get_challenge(self, apdu: CommandAPDU) -> bytes:
        if apdu.p1 or apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        return secrets.token_bytes(min(apdu.ne or 8, 256))

    def _object_name(self, apdu: CommandAPDU) -> str:
        if apdu.p1 != 0x01:
            raise ISOError(SW.INCORRECT_P1P2)
        return f"{apdu.p1p2:04X}"

    @command(IsoIns.GET_DATA)
    def get_data(self, apdu: CommandAPDU) -> bytes:
        value = self._values.get(self._object_name(apdu))
        if value is None:
            raise ISOError(SW.REFERENCE_NOT_FOUND)
        return value

    @command(IsoIns.PUT_DATA)
    def put_data(self, apdu: CommandAPDU) -> None:
        name = self._object_name(apdu)
        self.security.check(WRITE_RULE)
        if len(apdu.data) > MAX_OBJECT_SIZE:
            raise ISOError(SW.NOT_ENOUGH_MEMORY)
        if not apdu.data:
            if self.objects.pop(name, None) is None:
                raise ISOError(SW.REFERENCE_NOT_FOUND)
            del self._values[name]
        else:
            if name not in self.objects and len(self.objects) >= MAX_OBJECTS:
                raise ISOError(SW.NOT_ENOUGH_MEMORY)
            self.objects[name] = apdu.data.hex()
            self._values[name] = bytes(apdu.data)
        self.context.commit()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "objects": sorted(self.objects)}
