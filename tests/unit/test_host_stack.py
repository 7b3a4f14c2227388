"""The host APDU stack: each processor's job, the protocol's errors, the call meter, redaction."""

from __future__ import annotations

import pytest

from vcard import atr, redact
from vcard.apdu import CommandAPDU, ResponseAPDU
from vcard.cardos import Card
from vcard.host import (
    TRAFFIC,
    ApduError,
    CallMeter,
    Disposition,
    InProcessConnection,
    ResponseError,
    SmartCardProtocol,
)


class ScriptedLink:
    """A link that answers from a list and remembers what it was sent."""

    def __init__(self, *answers: str) -> None:
        self.answers = [bytes.fromhex(answer) for answer in answers]
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.answers.pop(0)


def test_send_apdu_returns_data_on_9000_and_encodes_le_as_asked() -> None:
    link = ScriptedLink("01029000", "9000", "9000")
    protocol = SmartCardProtocol(link)
    assert protocol.send_apdu(0x00, 0xCA, 0x01, 0x02) == b"\x01\x02"
    protocol.send_apdu(0x00, 0x20, 0x00, 0x80, b"1234", le=None)
    protocol.send_apdu(0x00, 0xB0, 0x00, 0x00, le=0x10)
    assert link.sent == [
        bytes.fromhex("00CA010200"),
        bytes.fromhex("00200080 0431323334".replace(" ", "")),
        bytes.fromhex("00B0000010"),
    ]


def test_send_apdu_raises_a_typed_error_that_keeps_status_and_data() -> None:
    protocol = SmartCardProtocol(ScriptedLink("AB63C2"))
    with pytest.raises(ApduError) as caught:
        protocol.send_apdu(0x00, 0x20, 0x00, 0x80, b"0000", le=None)
    assert (caught.value.sw, caught.value.data) == (0x63C2, b"\xab")
    assert "63C2" in str(caught.value) and "2 tries left" in str(caught.value)


def test_response_chaining_collects_every_get_response() -> None:
    link = ScriptedLink("AAAA6103", "BBBBBB6102", "CCCC9000")
    response = SmartCardProtocol(link).transmit(CommandAPDU(0x00, 0xCB, 0x3F, 0xFF, b"\x5c\x01\x7e", 256))
    assert response == ResponseAPDU(bytes.fromhex("AAAABBBBBBCCCC"), 0x9000)
    assert link.sent[1:] == [bytes.fromhex("00C0000003"), bytes.fromhex("00C0000002")]


def test_sw_6100_asks_for_256_more() -> None:
    link = ScriptedLink("6100", "9000")
    SmartCardProtocol(link).send_apdu(0x00, 0xCA, 0, 0)
    assert link.sent[1] == bytes.fromhex("00C0000000")


def test_wrong_le_is_retried_once_with_the_length_the_card_named() -> None:
    link = ScriptedLink("6C04", "010203049000")
    assert SmartCardProtocol(link).send_apdu(0x00, 0xCA, 0x00, 0x66) == bytes.fromhex("01020304")
    assert link.sent == [bytes.fromhex("00CA006600"), bytes.fromhex("00CA006604")]


def test_long_data_is_chained_in_short_blocks_and_only_the_last_block_carries_le() -> None:
    data = bytes(range(256)) * 2 + b"\x01"  # 513 bytes: 255 + 255 + 3
    link = ScriptedLink("9000", "9000", "019000")
    assert SmartCardProtocol(link).send_apdu(0x00, 0xDB, 0x3F, 0xFF, data) == b"\x01"
    assert [apdu[:5] for apdu in link.sent] == [
        bytes.fromhex("10DB3FFFFF"),
        bytes.fromhex("10DB3FFFFF"),
        bytes.fromhex("00DB3FFF03"),
    ]
    assert b"".join(CommandAPDU.parse(apdu).data for apdu in link.sent) == data
    assert [CommandAPDU.parse(apdu).ne for apdu in link.sent] == [None, None, 256]


def test_an_error_inside_a_chain_stops_it_and_is_the_answer() -> None:
    link = ScriptedLink("6A80")
    with pytest.raises(ApduError) as caught:
        SmartCardProtocol(link).send_apdu(0x00, 0xDB, 0x3F, 0xFF, bytes(600))
    assert caught.value.sw == 0x6A80 and len(link.sent) == 1


def test_extended_format_sends_long_data_in_one_apdu() -> None:
    link = ScriptedLink("9000")
    SmartCardProtocol(link, extended=True).send_apdu(0x00, 0xDB, 0x3F, 0xFF, bytes(600))
    command = CommandAPDU.parse(link.sent[0])
    assert command.extended and len(command.data) == 600 and command.ne == 65536


def test_exchange_sends_raw_bytes_untouched() -> None:
    link = ScriptedLink("6102")
    assert SmartCardProtocol(link).exchange(b"\x00\xa4\x04\x00") == ResponseAPDU(b"", 0x6102)
    assert link.sent == [b"\x00\xa4\x04\x00"]


def test_an_answer_without_status_word_is_a_clear_error() -> None:
    with pytest.raises(ResponseError, match="no status word"):
        SmartCardProtocol(ScriptedLink("90")).exchange(b"\x00\xa4\x04\x00")


def test_traffic_log_hides_pins_and_shows_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(TRAFFIC, logger="vcard.host")
    protocol = SmartCardProtocol(ScriptedLink("9000", "01029000"))
    protocol.send_apdu(0x00, 0x20, 0x00, 0x80, b"123456\xff\xff", le=None)
    protocol.send_apdu(0x00, 0xCA, 0x01, 0x02)
    text = caplog.text
    assert "3132333435" not in text
    assert "0020008008 <8 bytes hidden>" in text
    assert "00CA010200" in text and "01029000" in text


@pytest.mark.parametrize(
    ("command", "secret"),
    [
        ("002000800831323334FFFFFFFF", True),  # VERIFY
        ("0024008010" + "31" * 16, True),  # CHANGE REFERENCE DATA
        ("002C008010" + "31" * 16, True),  # RESET RETRY COUNTER
        ("00FE079A05" + "01" * 5, True),  # Yubico IMPORT ASYMMETRIC KEY
        ("00FFFFFF1B" + "01" * 27, True),  # Yubico SET MANAGEMENT KEY
        ("0087039B047C028000", True),  # PIV management key authentication
        ("008700000A7C0881" + "00" * 8, True),  # GIDS admin key mutual authentication
        ("00DB3FFF0570038401" + "81", True),  # GIDS key import template
        ("805D0001" + "10" + "00" * 16, True),  # vendor VERIFY SESSION PIN
        ("0087079A0A7C088200810400000000", False),  # PIV signature: data to sign is not secret
        ("00DB3FFF055C035FC105", False),  # PIV PUT DATA of an object
        ("00CB3FFF055C035FC10500", False),
        ("00200080", False),  # VERIFY status query: no data
    ],
)
def test_what_is_secret_in_a_command(command: str, secret: bool) -> None:
    raw = bytes.fromhex(command)
    assert redact.command_is_secret(raw) is secret
    assert (command.upper()[10:] in redact.command_text(raw)) is (not secret or len(raw) <= 5)


def test_session_pin_answers_are_hidden() -> None:
    issue = bytes.fromhex("805C000100")
    assert redact.response_text(issue, bytes(16) + b"\x90\x00") == "<16 bytes hidden> 9000"
    assert redact.response_text(bytes.fromhex("00CA010200"), b"\x01\x90\x00") == "019000"


def test_call_meter_counts_calls_bytes_and_sleeps_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("vcard.host.connection.time.sleep", slept.append)
    meter = CallMeter(delay=0.25)
    meter.record("SCardTransmit", 5, 2)
    meter.record("SCardBeginTransaction")
    assert slept == [0.25, 0.25]
    snapshot = meter.snapshot()
    assert snapshot["apdus"] == 1 and snapshot["round_trips"] == 2
    assert (snapshot["bytes_sent"], snapshot["bytes_received"]) == (5, 2)
    assert snapshot["calls"] == {"SCardTransmit": 1, "SCardBeginTransaction": 1}
    meter.reset()
    assert meter.snapshot()["round_trips"] == 0


def test_call_meter_refuses_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        CallMeter(delay=-1)


class PowerLog:
    """A card endpoint that records power events (the real Card for transmit)."""

    def __init__(self) -> None:
        self.card = Card(atr.build(b"vcard"), [])
        self.events: list[str] = []

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu)

    def power_on(self) -> None:
        self.events.append("on")
        self.card.power_on()

    def power_off(self) -> None:
        self.events.append("off")
        self.card.power_off()

    def reset(self) -> None:
        self.events.append("reset")
        self.card.reset()


def test_in_process_connection_counts_the_calls_a_pcsc_client_makes() -> None:
    endpoint = PowerLog()
    connection = InProcessConnection(endpoint)
    assert endpoint.events == ["on"] and connection.atr == endpoint.card.atr
    assert connection.transmit(bytes.fromhex("00A40000023F00")) == b"\x90\x00"
    connection.begin_transaction()
    connection.end_transaction(Disposition.RESET_CARD)
    connection.close(Disposition.UNPOWER_CARD)
    connection.close()
    assert endpoint.events == ["on", "reset", "off"]
    assert connection.meter.snapshot()["calls"] == {
        "SCardEstablishContext": 1,
        "SCardListReaders": 1,
        "SCardConnect": 1,
        "SCardStatus": 1,
        "SCardTransmit": 1,
        "SCardBeginTransaction": 1,
        "SCardEndTransaction": 1,
        "SCardDisconnect": 1,
        "SCardReleaseContext": 1,
    }


def test_a_failed_call_is_still_counted() -> None:
    class Broken(PowerLog):
        def transmit(self, apdu: bytes) -> bytes:
            raise OSError("link down")

    connection = InProcessConnection(Broken())
    with pytest.raises(OSError):
        connection.transmit(b"\x00\xa4\x00\x00")
    assert connection.meter.apdus == 1 and connection.meter.bytes_sent == 4


def test_protocol_over_an_in_process_card_walks_response_chaining() -> None:
    from vcard.profile import load_profile
    from vcard.runtime import VirtualCard

    virtual = VirtualCard.open(load_profile("piv"), state_dir=None, ephemeral=True)
    try:
        connection = InProcessConnection(virtual.card)
        protocol = SmartCardProtocol(connection)
        protocol.select(bytes.fromhex("A000000308000010000100"))
        chuid = protocol.send_apdu(0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC102"))
        assert chuid[0] == 0x53
        with pytest.raises(ApduError) as caught:
            protocol.send_apdu(0x00, 0x20, 0x00, 0x80, b"000000\xff\xff", le=None)
        assert caught.value.sw & 0xFFF0 == 0x63C0
    finally:
        virtual.close()
