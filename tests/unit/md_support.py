"""Helpers for the minidriver entry-point tests: in-process cards and CARD_DATA handles on them.

Not a test module itself. Cards come from `vcard.runtime.VirtualCard` (ephemeral), are
provisioned over APDUs (PIV) or through the minidriver API (GIDS), and each test opens
its own CARD_DATA with a private cache, so tests do not see each other's cache entries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import minidriver as md
from minidriver.cache import GlobalCache
from vcard.host import InProcessConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import PivProvisioner, provision_gids

PIN = b"123456"
PUK = b"12345678"
PIV_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
GIDS_ADMIN_KEY = bytes(24)
PIV_SLOTS = {0x9A: "rsa2048", 0x9C: "p256", 0x9D: "p256", 0x9E: "rsa2048"}
VENDOR_CLA = 0x80  # the vcard vendor commands (docs/vendor-commands.md)


@dataclass
class Card:
    """A running in-process card and the public keys its provisioning returned."""

    virtual: VirtualCard
    keys: dict[int, Any]

    def card_data(self, **kwargs: Any) -> md.CardData:
        """A CARD_DATA on this card with its context acquired."""
        kwargs.setdefault("cache", GlobalCache())
        card_data = md.CardData.inprocess(self.virtual.card, **kwargs)
        md.CardAcquireContext(card_data, 0)
        return card_data


def open_card(profile: str, **piv_config: Any) -> VirtualCard:
    """An ephemeral card from a shipped profile; `piv_config` replaces keys of its [applets.piv]."""
    loaded = load_profile(profile)
    if piv_config:
        loaded = dataclasses.replace(
            loaded, applets={**loaded.applets, "piv": {**loaded.applets["piv"], **piv_config}}
        )
    return VirtualCard.open(loaded, None, ephemeral=True)


def piv_card(profile: str = "piv") -> Card:
    virtual = open_card(profile)
    return Card(virtual, PivProvisioner(InProcessConnection(virtual.card)).provision(PIV_SLOTS))


def gids_card(profile: str = "gids") -> Card:
    virtual = open_card(profile)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    keys = provision_gids(card_data, PIN)
    md.CardDeleteContext(card_data)
    return Card(virtual, dict(keys))


class WithoutVendorCommands:
    """A card as a plain PIV/GIDS card answers: no vendor commands (CLA 80 -> 6E00, class not supported).

    Wraps a vcard card for `CardData.inprocess`, so the host takes its paths for cards
    without the vcard vendor commands (default roles, no session PINs, the application's
    own log-out).
    """

    def __init__(self, card: Any) -> None:
        self._card = card

    def __getattr__(self, name: str) -> Any:
        return getattr(self._card, name)

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:1] == bytes([VENDOR_CLA]):
            return b"\x6e\x00"
        response: bytes = self._card.transmit(apdu)
        return response


def auth_state(card_data: md.CardData) -> int:
    """CP_CARD_AUTHENTICATED_STATE: the PIN_SET bits of the roles authenticated now."""
    return md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE))


def raises(code: int, call: Callable[[], object]) -> md.ScardError:
    """Run `call`, which must fail with the Windows code `code`; returns the error for more checks."""
    with pytest.raises(md.ScardError) as raised:
        call()
    assert raised.value.code == code, f"expected {md.Scard(code).name}, got {raised.value}"
    return raised.value
