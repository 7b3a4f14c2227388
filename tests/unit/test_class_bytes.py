"""Class bytes on the real PIV and GIDS cards: only what the specs and real cards accept runs.

ISO 7816-4 5.4.1: a CLA with b8 set is proprietary. Neither PIV (SP 800-73-4 part 2
§3: CLA 00, 10 for chaining) nor GIDS defines one, so such commands get 6E00 and
never touch the PIN; the card-level vendor commands in class 80 keep working.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vcard.apdu import SW
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

SELECT = {
    "piv": bytes.fromhex("00A4040005A000000308"),
    "gids": bytes.fromhex("00A4040009A00000039742544659"),
}
VERIFY_BODY = {
    "piv": bytes.fromhex("20008008") + b"123456\xff\xff",
    "gids": bytes.fromhex("20008006") + b"123456",
}
VERIFY_STATUS = {"piv": bytes.fromhex("00200080"), "gids": bytes.fromhex("00200080")}


@pytest.fixture(params=["piv", "gids"])
def card(request: pytest.FixtureRequest) -> Iterator[tuple[str, VirtualCard]]:
    kind: str = request.param
    virtual = VirtualCard.open(load_profile(kind), None, ephemeral=True)
    virtual.card.power_on()
    assert virtual.card.transmit(SELECT[kind])[-2] in (0x90, 0x61)
    yield kind, virtual
    virtual.close()


def _sw(virtual: VirtualCard, raw: bytes) -> int:
    return int.from_bytes(virtual.card.transmit(raw)[-2:], "big")


@pytest.mark.parametrize("cla", [0x80, 0x84, 0xA0, 0xEC, 0xFE])
def test_a_proprietary_class_never_verifies_the_pin(card: tuple[str, VirtualCard], cla: int) -> None:
    kind, virtual = card
    assert _sw(virtual, bytes([cla]) + VERIFY_BODY[kind]) == SW.CLA_NOT_SUPPORTED
    assert _sw(virtual, VERIFY_STATUS[kind]) & 0xFFF0 == 0x63C0  # still not verified, tries untouched
    assert _sw(virtual, VERIFY_STATUS[kind]) == 0x63C3


def test_class_00_verifies(card: tuple[str, VirtualCard]) -> None:
    kind, virtual = card
    assert _sw(virtual, b"\x00" + VERIFY_BODY[kind]) == SW.SUCCESS


@pytest.mark.parametrize("cla", [0x04, 0x08, 0x0C])
def test_secure_messaging_bits_are_refused(card: tuple[str, VirtualCard], cla: int) -> None:
    kind, virtual = card
    assert _sw(virtual, bytes([cla]) + VERIFY_BODY[kind]) == SW.SECURE_MESSAGING_NOT_SUPPORTED
    assert _sw(virtual, VERIFY_STATUS[kind]) == 0x63C3


def test_chaining_bit_is_accepted(card: tuple[str, VirtualCard]) -> None:
    kind, virtual = card
    body = VERIFY_BODY[kind]
    header, data = body[:3], body[4:]
    first, rest = data[:2], data[2:]
    assert _sw(virtual, b"\x10" + header + bytes([len(first)]) + first) == SW.SUCCESS
    assert _sw(virtual, b"\x00" + header + bytes([len(rest)]) + rest) == SW.SUCCESS


def test_card_level_vendor_class_80_still_answers(card: tuple[str, VirtualCard]) -> None:
    _, virtual = card
    sw = _sw(virtual, bytes.fromhex("805A000000"))  # GET CAPABILITIES
    assert sw == SW.SUCCESS or sw >> 8 == 0x61, hex(sw)
