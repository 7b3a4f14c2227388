"""The host APDU stack through the real pcscd: PC/SC calls counted by name, chaining both ways."""

from __future__ import annotations

import pytest
from conftest import CardFactory

from vcard.host import Disposition, PcscConnection, PcscError, SmartCardProtocol

pytestmark = pytest.mark.integration

PIV_AID = bytes.fromhex("A000000308000010000100")


def test_pcsc_connection_counts_every_call_and_the_protocol_chains(start_card: CardFactory) -> None:
    card = start_card("piv", 0)
    connection = PcscConnection(card.reader)
    assert connection.reader == card.reader and connection.atr[:1] == b"\x3b"
    protocol = SmartCardProtocol(connection)
    connection.begin_transaction()
    protocol.select(PIV_AID)
    # the CHUID answer is longer than one short response when read in 32-byte steps: 61xx walks
    chuid = protocol.send_apdu(0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC102"), le=0x20)
    connection.end_transaction(Disposition.LEAVE_CARD)
    connection.close()
    assert chuid[0] == 0x53 and len(chuid) > 0x20
    calls = connection.meter.snapshot()["calls"]
    transmits = calls.pop("SCardTransmit")
    assert transmits >= 3  # SELECT, GET DATA, at least one GET RESPONSE
    assert calls == {
        "SCardEstablishContext": 1,
        "SCardListReaders": 1,
        "SCardConnect": 1,
        "SCardStatus": 1,
        "SCardBeginTransaction": 1,
        "SCardEndTransaction": 1,
        "SCardDisconnect": 1,
        "SCardReleaseContext": 1,
    }
    assert connection.meter.bytes_received > len(chuid)


def test_an_unknown_reader_is_a_clear_error(start_card: CardFactory) -> None:
    start_card("iso", 0)
    with pytest.raises(PcscError, match="no reader named 'No Such Reader'") as caught:
        PcscConnection("No Such Reader")
    assert caught.value.call == "SCardListReaders" and caught.value.code is not None
