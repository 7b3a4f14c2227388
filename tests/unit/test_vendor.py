"""Vendor commands and the idle reset, through Card.transmit with a tiny applet (in-process)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from vcard import tlv
from vcard.apdu import CommandAPDU, ResponseAPDU
from vcard.cardos import Applet, Card, command
from vcard.host import InProcessConnection, SmartCardProtocol
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.security import (
    MAX_SESSION_PIN_FAILURES,
    SESSION_PIN_BYTES,
    AccessRule,
    Charset,
    PolicyPinSource,
    RoleConfig,
    RoleType,
    SecurityCore,
)
from vcard.vendor import VendorHandlers
from vcard.wire.vendor import (
    FEATURE_EXTERNAL_PINS,
    FEATURE_IDLE_RESET,
    FEATURE_SESSION_PINS,
    FEATURE_SESSION_PINS_SURVIVE_WARM_RESET,
)

ROLES = (
    RoleConfig(1, "user", RoleType.PIN, b"123456", 6, 8, Charset.DIGITS, 3, unblocked_by=2),
    RoleConfig(2, "admin", RoleType.CHALLENGE, bytes(24), 0, 8, retries=0, algorithm="3des"),
    RoleConfig(3, "signature", RoleType.PIN, b"654321", 6, 8, Charset.DIGITS, 3, purpose="signature"),
    RoleConfig(4, "fingerprint", RoleType.EXTERNAL, retries=3, external_policy="approve"),
)
SIGN_RULE = AccessRule.parse("role 3 always")
READ_RULE = AccessRule.parse("role 1")


class TinyApplet(Applet):
    """VERIFY (P2 = role), a PIN-always SIGN (2A) and a role-1 READ (B0)."""

    name = "tiny"
    aid = bytes.fromhex("F0000000AA01")

    def __init__(self, security: SecurityCore) -> None:
        self.security = security

    @command(0x20)
    def verify(self, apdu: CommandAPDU) -> None:
        self.security.verify(apdu.p2, apdu.data)

    @command(0x2A)
    def sign(self, apdu: CommandAPDU) -> bytes:
        self.security.check(SIGN_RULE)
        return b"\x5a" * len(apdu.data)

    @command(0xB0)
    def read(self, apdu: CommandAPDU) -> bytes:
        self.security.check(READ_RULE)
        return b"secret"


def build(idle: float = 0.0) -> tuple[Card, SecurityCore]:
    security = SecurityCore(ROLES, {}, lambda: None, is_new=True)
    applet = TinyApplet(security)
    vendor = VendorHandlers(security, idle_reset_seconds=idle)
    card = Card(
        bytes.fromhex("3B80800101"),
        [applet],
        default_applet=applet,
        on_reset=security.reset,
        commands=vendor.commands(),
        hooks=vendor.hooks(),
    )
    security.command_number = lambda: card.commands_started
    card.power_on()
    return card, security


def send(connection: InProcessConnection | Card, apdu: str | bytes) -> ResponseAPDU:
    """One raw exchange, exactly the bytes given."""
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    return SmartCardProtocol(connection).exchange(raw)


def send_full(card: Card, apdu: str) -> ResponseAPDU:
    """Send and collect 61xx continuations with GET RESPONSE, as a PC/SC host does."""
    return SmartCardProtocol(card).transmit(CommandAPDU.parse(bytes.fromhex(apdu)))


def verify_apdu(role: int, pin: bytes) -> bytes:
    return CommandAPDU(0x00, 0x20, 0x00, role, pin).encode()


@pytest.mark.parametrize(("profile", "survive"), [("multi-pin", True), ("tpm-vsc", True), ("piv", False)])
def test_session_pins_surviving_a_warm_reset_is_advertised_and_true(profile: str, survive: bool) -> None:
    from vcard.profile import load_profile
    from vcard.runtime import VirtualCard

    virtual = VirtualCard.open(load_profile(profile), None, ephemeral=True)
    try:
        card, security = virtual.card, virtual.security
        card.power_on()
        template = tlv.decode_one(send_full(card, "805A000000").data, 0xE0)
        fields = {item.tag: item.value for item in template.children() if item.tag != 0xA0}
        assert bool(int.from_bytes(fields[0x81], "big") & FEATURE_SESSION_PINS_SURVIVE_WARM_RESET) is survive
        security.verify(1, security.role(1).initial)
        token = send(card, "805C0001" + "10").data
        card.reset()  # vpcd control code 02
        assert send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, token).encode()).sw == (
            0x9000 if survive else 0x6982
        )
        card.power_off()
        card.power_on()
        assert send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, token).encode()).sw == 0x6982
    finally:
        virtual.close()


def test_get_capabilities_advertises_session_and_external_pins() -> None:
    card, security = build(idle=5)
    security.verify(1, b"123456")
    security.record_failure(3)
    response = send_full(card, "805A000000")
    assert response.sw == 0x9000
    template = tlv.decode_one(response.data, 0xE0)
    fields = {item.tag: item.value for item in template.children() if item.tag != 0xA0}
    features = int.from_bytes(fields[0x81], "big")
    assert (
        features & FEATURE_SESSION_PINS and features & FEATURE_EXTERNAL_PINS and features & FEATURE_IDLE_RESET
    )
    assert fields[0x82] == b"\x02"
    assert int.from_bytes(fields[0x83], "big") == 5000
    assert fields[0x84] == bytes([SESSION_PIN_BYTES])
    roles = {}
    for item in template.children():
        if item.tag == 0xA0:
            role = tlv.to_dict(item.value)
            roles[role[0x80][0]] = role
    assert sorted(roles) == [0, 1, 2, 3, 4]
    assert roles[1][0x81] == b"\x00" and roles[1][0x84] == b"\x03" and roles[1][0x86][0] & 0x01
    assert roles[3][0x84] == b"\x02" and roles[3][0x82] == b"\x01"  # DigitalSignaturePin
    assert roles[2][0x81] == b"\x02" and roles[2][0x84] == b"\xff"  # challenge, no counter
    assert roles[4][0x81] == b"\x01" and roles[4][0x8C] == b"\x02"  # external: session PIN only
    assert roles[1][0x88] == b"\x04"  # unblocked by the admin
    assert roles[1][0x8D] == b"user"


def test_cla_00_with_a_vendor_ins_reaches_the_applet() -> None:
    card, _ = build()
    assert send(card, "005A000000").sw == 0x6D00


def test_get_pin_set_and_deauthenticate_one_bit() -> None:
    card, security = build()
    assert send(card, verify_apdu(1, b"123456")).sw == 0x9000
    assert send(card, verify_apdu(3, b"654321")).sw == 0x9000
    assert send(card, "805B000001").data == b"\x0a"
    assert send(card, "805F00000108").sw == 0x9000
    assert send(card, "805B000001").data == b"\x02"
    assert send(card, "00B0000000").data == b"secret"
    assert send(card, "805F000000").sw == 0x6700
    assert security.pin_set == 0x02


def test_session_pin_from_one_connection_works_on_another_until_reset() -> None:
    card, _ = build()
    first = InProcessConnection(card)
    second = InProcessConnection(card)
    assert send(first, verify_apdu(1, b"123456")).sw == 0x9000
    issued = send(first, "805C000110")
    assert issued.sw == 0x9000 and len(issued.data) == SESSION_PIN_BYTES
    token = issued.data
    assert send(first, "805F000001FF").sw == 0x9000
    assert send(second, "00B0000000").sw == 0x6982
    redeem = CommandAPDU(0x80, 0x5D, 0x00, 0x01, token).encode()
    assert send(second, redeem).sw == 0x9000
    assert send(second, "00B0000000").data == b"secret"
    second.reset()  # a card reset (SCARD_RESET_CARD) ends the card session
    assert send(first, redeem).sw == 0x6982
    assert send(first, "00B0000000").sw == 0x6982


def test_issue_session_pin_needs_the_role_and_p1_01_leaves_it_locked() -> None:
    card, security = build()
    assert send(card, "805C000110").sw == 0x6982
    assert send(card, verify_apdu(1, b"123456")).sw == 0x9000
    response = send(card, "805C010110")
    assert response.sw == 0x9000
    assert security.pin_set == 0  # GENERATE_SESSION_PIN: "does not leave the card unlocked"
    assert send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, response.data).encode()).sw == 0x9000
    assert send(card, "805C000910").sw == 0x6A86
    assert send(card, "805C000710").sw == 0x6A88
    assert send(card, "805C020110").sw == 0x6A86


def test_wrong_session_pin_gives_no_information_and_is_rate_limited() -> None:
    card, security = build()
    send(card, verify_apdu(1, b"123456"))
    token = send(card, "805C000110").data
    send(card, "805F000001FF")
    answers = {
        send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, candidate).encode()).sw
        for candidate in (bytes(16), b"\x01", token[:8] + bytes(8))[:MAX_SESSION_PIN_FAILURES]
    }
    assert answers == {0x6982}
    right = send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, token).encode())
    assert right.sw == 0x6982 and right.data == b""
    assert security.pin_set == 0
    assert send(card, "805D0001").sw == 0x6700  # no token at all: a length error, nothing counted


def test_verify_external_returns_a_session_pin() -> None:
    card, security = build()
    response = send(card, "805E000410")
    assert response.sw == 0x9000 and len(response.data) == SESSION_PIN_BYTES
    assert security.is_authenticated(4)
    send(card, "805F000001FF")
    assert send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x04, response.data).encode()).sw == 0x9000
    assert send(card, "805E000110").sw == 0x6985  # role 1 is a PIN role


def test_verify_external_deny_through_the_card() -> None:
    card, security = build()
    security.set_external_source(4, PolicyPinSource("deny"))
    assert send(card, "805E000410").sw == 0x63C2
    assert security.tries_left(4) == 2


def test_deauthenticate_p1_01_invalidates_session_pins() -> None:
    card, _ = build()
    send(card, verify_apdu(1, b"123456"))
    token = send(card, "805C000110").data
    assert send(card, "805F010001FF").sw == 0x9000
    assert send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, token).encode()).sw == 0x6982


def test_pin_always_lasts_exactly_one_command() -> None:
    card, _ = build()
    sign = "002A00000401020304"
    assert send(card, sign).sw == 0x6982
    assert send(card, verify_apdu(3, b"654321")).sw == 0x9000
    assert send(card, sign).data == b"\x5a" * 4
    assert send(card, sign).sw == 0x6982  # consumed
    assert send(card, verify_apdu(3, b"654321")).sw == 0x9000
    assert send(card, "805B000001").sw == 0x9000  # any other command in between disarms
    assert send(card, sign).sw == 0x6982


def test_pin_always_covers_every_fragment_of_a_chained_command() -> None:
    card, _ = build()
    assert send(card, verify_apdu(3, b"654321")).sw == 0x9000
    assert send(card, "102A0000020102").sw == 0x9000
    assert send(card, "102A0000020304").sw == 0x9000
    assert send(card, "002A0000020506").data == b"\x5a" * 6


def test_idle_reset_after_the_configured_time() -> None:
    card, security = build(idle=0.05)
    assert send(card, verify_apdu(1, b"123456")).sw == 0x9000
    assert send(card, "00B0000000").sw == 0x9000  # not idle: status kept
    token = send(card, "805C000110").data
    card.last_command_time = time.monotonic() - 1.0  # as if a second passed without an APDU
    assert send(card, "00B0000000").sw == 0x6982
    assert security.pin_set == 0
    assert send(card, CommandAPDU(0x80, 0x5D, 0x00, 0x01, token).encode()).sw == 0x9000


def test_idle_reset_with_a_real_short_pause() -> None:
    card, security = build(idle=0.02)
    send(card, verify_apdu(1, b"123456"))
    time.sleep(0.1)
    send(card, "805B000001")
    assert security.pin_set == 0


def test_no_idle_reset_when_not_configured() -> None:
    card, _ = build(idle=0)
    send(card, verify_apdu(1, b"123456"))
    card.last_command_time = time.monotonic() - 3600
    assert send(card, "00B0000000").sw == 0x9000


def test_vendor_commands_work_without_a_selected_applet() -> None:
    security = SecurityCore(ROLES, {}, lambda: None, is_new=True)
    vendor = VendorHandlers(security)
    card = Card(bytes.fromhex("3B80800101"), [], on_reset=security.reset, commands=vendor.commands())
    card.power_on()
    assert send(card, "805E000410").sw == 0x9000
    assert send(card, "805B000001").data == b"\x10"


PROFILE = """
description = "test card with an external role"
default_applet = "iso"

[security]
idle_reset_seconds = 5

[[security.roles]]
role = 1
initial = "123456"
min_length = 6

[[security.roles]]
role = 4
label = "finger"
type = "external"
min_length = 0

[security.roles.external]
policy = "approve"

[applets.iso]
"""


def test_runtime_wires_vendor_commands_and_idle_reset(tmp_path: Path) -> None:
    path = tmp_path / "ext.toml"
    path.write_text(PROFILE)
    virtual = VirtualCard.open(load_profile(str(path)), ephemeral=True)
    try:
        card = virtual.card
        card.power_on()
        response = send_full(card, "805A000000")
        fields: dict[int, Any] = {i.tag: i.value for i in tlv.decode_one(response.data, 0xE0).children()}
        assert int.from_bytes(fields[0x81], "big") & FEATURE_IDLE_RESET
        assert send(card, "805E000410").sw == 0x9000
        card.last_command_time = time.monotonic() - 10
        assert send(card, "805B000001").data == b"\x00"
        summary = virtual.describe()["security"]
        assert summary["roles"][2]["label"] == "finger"
        assert virtual.vendor.idle_reset_seconds == 5
    finally:
        virtual.close()


@pytest.mark.parametrize(
    "apdu", ["805A010000", "805B000100", "805D0101021234", "805F020001FF", "805E00041122"]
)
def test_bad_parameters(apdu: str) -> None:
    card, _ = build()
    assert send(card, apdu).sw in (0x6A86, 0x6700)


def test_a_negative_idle_time_installs_no_idle_reset() -> None:
    card, _ = build(idle=-1)
    send(card, verify_apdu(1, b"123456"))
    card.last_command_time = time.monotonic() - 3600
    assert send(card, "00B0000000").sw == 0x9000
    response = send_full(card, "805A000000")
    fields: dict[int, Any] = {i.tag: i.value for i in tlv.decode_one(response.data, 0xE0).children()}
    assert not int.from_bytes(fields[0x81], "big") & FEATURE_IDLE_RESET
