"""yubikit (Yubico's Python SDK, the library under ykman) against the YubiKey-style profiles, in process.

The same scenario runs through pcscd in tests/integration/test_ykman.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("yubikit", reason="yubikey-manager is in the test extras: pip install -e '.[test]'")

from yubikit.core import TRANSPORT
from yubikit_scenario import InProcessConnection, expected_steps, run

from vcard.profile import load_profile
from vcard.runtime import VirtualCard


@pytest.fixture(params=["yubikey5", "piv"])
def virtual(request: pytest.FixtureRequest) -> Iterator[VirtualCard]:
    card = VirtualCard.open(load_profile(request.param), None, ephemeral=True)
    card.card.power_on()
    yield card
    card.close()


def test_yubikit_sessions_through_every_ykman_call(virtual: VirtualCard) -> None:
    version = tuple(int(part) for part in virtual.applets["piv"].describe()["version"].split("."))
    assert run(lambda: InProcessConnection(virtual.card)) == expected_steps(version)  # type: ignore[arg-type]


def test_the_transport_follows_the_atr() -> None:
    """yubikey5 shows a YubiKey 5 NFC's NFC ATR: with a USB one ykman would need a USB product ID."""
    card = VirtualCard.open(load_profile("yubikey5"), None, ephemeral=True)
    try:
        assert InProcessConnection(card.card).transport == TRANSPORT.NFC
    finally:
        card.close()
