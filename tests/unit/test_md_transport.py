"""PC/SC failures reach minidriver callers as the Windows code for the same condition."""

from __future__ import annotations

import pytest

import minidriver as md
from minidriver.transport import connect_inprocess, connect_pcsc, scard_errors
from vcard.host import InProcessConnection, PcscError
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

PCSCLITE_E_UNSUPPORTED_FEATURE = 0x8010001F  # pcsc-lite aliases it to E_UNEXPECTED's value
SCARD_W_REMOVED_CARD = 0x80100069  # the same on both


@pytest.mark.parametrize(
    ("pcsc_lite", "windows"),
    [
        (PCSCLITE_E_UNSUPPORTED_FEATURE, md.Scard.E_UNEXPECTED),
        (SCARD_W_REMOVED_CARD, md.Scard.W_REMOVED_CARD),
    ],
)
def test_a_pcsc_lite_code_becomes_the_windows_code(pcsc_lite: int, windows: int) -> None:
    with pytest.raises(md.ScardError) as caught, scard_errors():
        raise PcscError("SCardTransmit", pcsc_lite, "failed")
    assert caught.value.code == windows
    assert "SCardTransmit" in str(caught.value)


def test_a_failure_without_a_code_is_an_unknown_error() -> None:
    with pytest.raises(md.ScardError) as caught, scard_errors():
        raise PcscError("SCardConnect", None, "no call was made")
    assert caught.value.code == md.Scard.F_UNKNOWN_ERROR


def test_connecting_to_a_reader_that_is_not_there_is_a_scard_error() -> None:
    # whether pcscd runs (no such reader) or not (no service): a Windows code, never a PcscError
    with pytest.raises(md.ScardError) as caught:
        connect_pcsc("No Such Reader 0f3a")
    assert caught.value.code in (
        md.Scard.E_UNKNOWN_READER,
        md.Scard.E_NO_READERS_AVAILABLE,
        md.Scard.E_NO_SERVICE,
    )


def test_other_errors_pass_through_untouched() -> None:
    with pytest.raises(ValueError, match="not a PC/SC failure"), scard_errors():
        raise ValueError("not a PC/SC failure")


def test_an_in_process_connection_carries_the_delay() -> None:
    card = VirtualCard.open(load_profile("iso"), None, ephemeral=True)
    try:
        connection = connect_inprocess(card.card, delay=0.0)
        assert isinstance(connection, InProcessConnection) and connection.meter.delay == 0.0
        with pytest.raises(ValueError, match="delay"):
            connect_inprocess(card.card, delay=-1.0)
    finally:
        card.close()
