"""The `[applets.piv]` profile table, validated into a `PivConfig`.

docs/piv.md documents the table. The applet maps PIV key references (80 PIN, 81 PUK,
9B management key, 00 global PIN, any extra reference such as 83 or 96) onto the
card-wide roles of the security core, and may bind key slots to access rules:

    [applets.piv]
    label = "vcard PIV"
    version = "5.7.4"
    algorithms = ["rsa2048", "p256", ...]
    touch_role = 7

    [applets.piv.references]
    80 = 1
    81 = 3
    9B = 2

    [applets.piv.slots.9c]
    access = "role 1 always"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...security import AccessRule
from ...tablereader import TableReader
from .keys import BY_PROFILE_NAME, KEY_SLOTS, SLOT_ATTESTATION, Algorithm, PinPolicy, TouchPolicy

REF_PIN = 0x80
REF_PUK = 0x81
REF_MANAGEMENT = 0x9B
REF_GLOBAL_PIN = 0x00

DEFAULT_ALGORITHMS = ("rsa1024", "rsa2048", "rsa3072", "rsa4096", "p256", "p384")
PIN_POLICY_NAMES = {"never": PinPolicy.NEVER, "once": PinPolicy.ONCE, "always": PinPolicy.ALWAYS}
TOUCH_POLICY_NAMES = {"never": TouchPolicy.NEVER, "always": TouchPolicy.ALWAYS, "cached": TouchPolicy.CACHED}


@dataclass(frozen=True)
class SlotConfig:
    access: AccessRule | None = None  # None: derived from the key's PIN policy
    pin_policy: PinPolicy | None = None  # slot default for GENERATE/IMPORT with policy 00
    touch_policy: TouchPolicy | None = None


NO_SLOT_CONFIG = SlotConfig()


@dataclass(frozen=True)
class PivConfig:
    label: str = "vcard PIV"
    version: tuple[int, int, int] = (5, 7, 4)
    serial: int = 0  # 0: random per card
    algorithms: tuple[Algorithm, ...] = ()
    references: Mapping[int, int] = field(default_factory=lambda: {REF_PIN: 1, REF_PUK: 3, REF_MANAGEMENT: 2})
    touch_role: int | None = None
    global_pin_primary: bool = False
    # SP 800-73 keeps the security status on a re-SELECT of PIV; a YubiKey drops it, and
    # libykpiv re-selects on purpose to "unverify" before reading the PIN retry counter
    reselect_clears_status: bool = False
    max_object_size: int = 12710
    # False: a plain SP 800-73-4 card (no INS F6..FF); `version` then describes nothing on the wire
    yubico_extensions: bool = True
    attestation: bool = True
    attestation_algorithm: Algorithm = Algorithm.P256
    slots: Mapping[int, SlotConfig] = field(default_factory=dict)

    @property
    def pin_role(self) -> int:
        return self.references[REF_PIN]

    @property
    def puk_role(self) -> int | None:
        return self.references.get(REF_PUK)

    @property
    def management_role(self) -> int:
        return self.references[REF_MANAGEMENT]

    @property
    def global_pin_role(self) -> int | None:
        return self.references.get(REF_GLOBAL_PIN)

    def slot(self, slot: int) -> SlotConfig:
        return self.slots.get(slot, NO_SLOT_CONFIG)


def parse_config(table: Mapping[str, Any], profile_path: Path) -> PivConfig:
    """Validate `[applets.piv]`; raises ProfileError naming the file, table and key."""
    reader = TableReader(profile_path, "applets.piv", table)
    label = reader.text("label", PivConfig.label)
    if not label.isascii():
        raise reader.error("label", "must be ASCII")
    version_text = reader.text("version", "5.7.4")
    parts = version_text.split(".")
    if len(parts) != 3 or not all(part.isdigit() and int(part) <= 255 for part in parts):
        raise reader.error("version", f"expected 'major.minor.patch', found {version_text!r}")
    names = reader.array("algorithms", list(DEFAULT_ALGORITHMS))
    for name in names:
        if name not in BY_PROFILE_NAME:
            raise reader.error(
                "algorithms", f"unknown algorithm {name!r} (known: {', '.join(BY_PROFILE_NAME)})"
            )
    attestation_name = reader.text("attestation_algorithm", "p256", choices=["rsa2048", "p256", "p384"])
    config = PivConfig(
        label=label,
        version=(int(parts[0]), int(parts[1]), int(parts[2])),
        serial=reader.integer("serial", 0, minimum=0, maximum=0xFFFFFFFF),
        algorithms=tuple(BY_PROFILE_NAME[name].algorithm for name in names),
        references=_parse_references(reader),
        touch_role=reader.integer("touch_role", None, minimum=1, maximum=7),
        global_pin_primary=reader.boolean("global_pin_primary", False),
        reselect_clears_status=reader.boolean("reselect_clears_status", False),
        max_object_size=reader.integer(
            "max_object_size", PivConfig.max_object_size, minimum=256, maximum=65000
        ),
        attestation=reader.boolean("attestation", True),
        attestation_algorithm=BY_PROFILE_NAME[attestation_name].algorithm,
        slots=_parse_slots(reader),
        yubico_extensions=reader.boolean("yubico_extensions", True),
    )
    reader.finish()
    if config.yubico_extensions:
        _check_version_offers(reader, config)
    return config


# The YubiKey firmware that introduced each key type (yubikit piv.py `_do_check_key_support`):
# a profile claiming an older version must not offer them, or clients' version gates and the
# card disagree.
ALGORITHM_SINCE: dict[Algorithm, tuple[int, int, int]] = {
    Algorithm.P384: (4, 0, 0),
    Algorithm.RSA3072: (5, 7, 0),
    Algorithm.RSA4096: (5, 7, 0),
    Algorithm.ED25519: (5, 7, 0),
    Algorithm.X25519: (5, 7, 0),
}


def version_text(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)


def _check_version_offers(reader: TableReader, config: PivConfig) -> None:
    for algorithm in config.algorithms:
        since = ALGORITHM_SINCE.get(algorithm)
        if since is not None and config.version < since:
            name = next(n for n, info in BY_PROFILE_NAME.items() if info.algorithm == algorithm)
            raise reader.error(
                "algorithms",
                f"{name} needs a YubiKey version >= {version_text(since)}, "
                f"but version is {version_text(config.version)}",
            )


def _hex_ref(reader: TableReader, key: str) -> int:
    try:
        value = int(key, 16)
    except ValueError:
        raise reader.error(key, "key references are hex bytes such as 80 or 9C") from None
    if not 0 <= value <= 0xFF:
        raise reader.error(key, "key references are one byte")
    return value


def _parse_references(reader: TableReader) -> dict[int, int]:
    if not reader.has("references"):
        return dict(PivConfig().references)
    sub = reader.table("references")
    references = {_hex_ref(sub, key): sub.integer(key, minimum=0, maximum=7) for key in sub.raw}
    sub.finish()
    for required in (REF_PIN, REF_MANAGEMENT):
        if required not in references:
            raise sub.error(f"{required:02X}", "is required")
    return references


def _parse_slots(reader: TableReader) -> dict[int, SlotConfig]:
    outer = reader.table("slots", {})
    slots: dict[int, SlotConfig] = {}
    for key in outer.raw:
        slot = _hex_ref(outer, key)
        if slot not in (*KEY_SLOTS, SLOT_ATTESTATION):
            raise outer.error(key, "not a PIV key slot (9A 9C 9D 9E 82..95 F9)")
        sub = outer.table(key)
        access_text = sub.text("access", None)
        access = None
        if access_text is not None:
            try:
                access = AccessRule.parse(access_text)
            except ValueError as error:
                raise sub.error("access", str(error)) from None
        pin_name = sub.text("pin_policy", None, choices=list(PIN_POLICY_NAMES))
        touch_name = sub.text("touch_policy", None, choices=list(TOUCH_POLICY_NAMES))
        sub.finish()
        slots[slot] = SlotConfig(
            access=access,
            pin_policy=PIN_POLICY_NAMES[pin_name] if pin_name else None,
            touch_policy=TOUCH_POLICY_NAMES[touch_name] if touch_name else None,
        )
    outer.finish()
    return slots
