"""The card OS: SELECT, class byte checks, command chaining, GET RESPONSE, power, robustness."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from vcard import atr, cardos
from vcard.apdu import SW, CommandAPDU, ISOError, ResponseAPDU
from vcard.cardos import Applet, Card, CardCommand, CardHook, CardObserver, PowerEvent, command

PIV_AID = bytes.fromhex("A000000308000010000100")
GIDS_AID = bytes.fromhex("A000000397425446590201")
OTHER_PIV_RID_AID = bytes.fromhex("A000000308000020000100")  # same RID and first 8 bytes as PIV_AID

INS_ECHO = 0x01
INS_BLOB = 0x02  # P1P2 = number of bytes to return
INS_BOOM = 0x03
INS_ISO_ERROR = 0x04
INS_WARNING = 0x05


class RecordingApplet(Applet):
    """A test applet that records what the card OS calls."""

    name = "recorder"

    def __init__(self, aid: bytes, label: bytes) -> None:
        self.aid = aid
        self.label = label
        self.events: list[str] = []
        self.received: list[CommandAPDU] = []

    def select(self, apdu: CommandAPDU) -> bytes:
        self.events.append("select")
        return b"FCI:" + self.label

    def deselect(self) -> None:
        self.events.append("deselect")

    def reset(self) -> None:
        self.events.append("reset")

    @command(INS_ECHO)
    def echo(self, apdu: CommandAPDU) -> bytes:
        self.received.append(apdu)
        return apdu.data

    @command(INS_BLOB)
    def blob(self, apdu: CommandAPDU) -> bytes:
        self.received.append(apdu)
        return bytes(i & 0xFF for i in range(apdu.p1p2))

    @command(INS_BOOM)
    def boom(self, apdu: CommandAPDU) -> bytes:
        raise RuntimeError("applet bug")

    @command(INS_ISO_ERROR)
    def iso_error(self, apdu: CommandAPDU) -> bytes:
        raise ISOError(SW.REFERENCE_NOT_FOUND)

    @command(INS_WARNING)
    def warning(self, apdu: CommandAPDU) -> ResponseAPDU:
        return ResponseAPDU(self.label, SW.END_OF_DATA)


def make_card(
    *,
    default: bool = False,
    max_chain_bytes: int = 4096,
    commands: Mapping[tuple[int, int], CardCommand] | None = None,
    hooks: Sequence[CardHook] = (),
    observers: Sequence[CardObserver] = (),
) -> tuple[Card, RecordingApplet, RecordingApplet]:
    piv = RecordingApplet(PIV_AID, b"piv")
    gids = RecordingApplet(GIDS_AID, b"gids")
    card = Card(
        atr.build(b"test"),
        [piv, gids],
        piv if default else None,
        max_chain_bytes=max_chain_bytes,
        commands=commands,
        hooks=hooks,
        observers=observers,
    )
    card.power_on()
    return card, piv, gids


def send(card: Card, apdu: CommandAPDU) -> ResponseAPDU:
    return ResponseAPDU.parse(card.transmit(apdu.encode()))


def select(card: Card, aid: bytes) -> ResponseAPDU:
    return send(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, aid, 256))


def echo(card: Card, data: bytes, cla: int = 0x00, ne: int | None = None) -> ResponseAPDU:
    return send(card, CommandAPDU(cla, INS_ECHO, 0, 0, data, ne))


def get_response(card: Card, ne: int = 256) -> ResponseAPDU:
    return send(card, CommandAPDU(0x00, 0xC0, 0, 0, ne=ne))


@pytest.fixture
def card() -> Iterator[tuple[Card, RecordingApplet, RecordingApplet]]:
    yield make_card()


Fixture = tuple[Card, RecordingApplet, RecordingApplet]


# ---- SELECT ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [5, 9, 11])
def test_select_by_full_aid_and_truncated_prefix(card: Fixture, length: int) -> None:
    c, piv, gids = card
    response = select(c, PIV_AID[:length])
    assert response == ResponseAPDU(b"FCI:piv", SW.SUCCESS)
    assert c.selected is piv
    assert echo(c, b"hi").sw == SW.SUCCESS
    assert piv.received[-1].data == b"hi"
    assert gids.received == []


def test_nine_byte_prefix_tells_applets_with_the_same_rid_apart() -> None:
    first = RecordingApplet(PIV_AID, b"one")
    second = RecordingApplet(OTHER_PIV_RID_AID, b"two")
    c = Card(atr.build(b""), [first, second])
    c.power_on()
    assert select(c, OTHER_PIV_RID_AID[:9]).data == b"FCI:two"
    assert select(c, PIV_AID[:9]).data == b"FCI:one"


@pytest.mark.parametrize("length", [0, 1, 4])
def test_select_prefix_shorter_than_rid_is_6a82(card: Fixture, length: int) -> None:
    c, piv, _ = card
    assert select(c, PIV_AID[:length]).sw == SW.FILE_NOT_FOUND
    assert "select" not in piv.events


@pytest.mark.parametrize(
    "aid",
    [
        bytes.fromhex("A000000999"),
        PIV_AID + b"\x00",  # longer than the AID: not a right-truncation
        bytes.fromhex("A00000030800001000FF"),
    ],
)
def test_unknown_aid_keeps_previous_selection(card: Fixture, aid: bytes) -> None:
    c, piv, gids = card
    select(c, GIDS_AID)
    events_before = list(gids.events)
    assert select(c, aid) == ResponseAPDU(b"", SW.FILE_NOT_FOUND)
    assert gids.events == events_before  # not deselected
    assert echo(c, b"after").sw == SW.SUCCESS
    assert gids.received[-1].data == b"after"  # the command still reaches the previous applet
    assert piv.received == []


def test_reselect_same_applet_does_not_deselect(card: Fixture) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    select(c, PIV_AID[:5])
    assert piv.events == ["reset", "select", "select"]  # "reset" is from power_on


def test_select_other_applet_deselects_first(card: Fixture) -> None:
    c, piv, gids = card
    select(c, PIV_AID)
    select(c, GIDS_AID)
    assert piv.events[-1] == "deselect"
    assert gids.events[-1] == "select"
    assert "deselect" not in gids.events
    assert c.selected is gids


def test_select_next_occurrence_not_supported(card: Fixture) -> None:
    c, _, _ = card
    assert send(c, CommandAPDU(0x00, 0xA4, 0x04, 0x02, PIV_AID)).sw == SW.FUNCTION_NOT_SUPPORTED


def test_failing_applet_select_leaves_nothing_selected() -> None:
    class Refusing(RecordingApplet):
        def select(self, apdu: CommandAPDU) -> bytes:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED)

    piv = RecordingApplet(PIV_AID, b"piv")
    refusing = Refusing(GIDS_AID, b"no")
    c = Card(atr.build(b""), [piv, refusing])
    c.power_on()
    select(c, PIV_AID)
    assert select(c, GIDS_AID).sw == SW.CONDITIONS_NOT_SATISFIED
    assert piv.events[-1] == "deselect"
    assert c.selected is None
    assert echo(c, b"x").sw == SW.INS_NOT_SUPPORTED  # no applet to reach


def test_no_applet_selected_knows_only_the_mf(card: Fixture) -> None:
    c, _, _ = card
    assert send(c, CommandAPDU(0x00, 0xA4, 0x00, 0x00, b"\x3f\x00")).sw == SW.SUCCESS
    assert send(c, CommandAPDU(0x00, 0xA4, 0x00, 0x00)).sw == SW.SUCCESS
    assert send(c, CommandAPDU(0x00, 0xA4, 0x00, 0x00, b"\x2f\x00")).sw == SW.FILE_NOT_FOUND
    assert echo(c, b"x").sw == SW.INS_NOT_SUPPORTED


def test_default_applet_selected_after_power_on_and_reset() -> None:
    c, piv, _ = make_card(default=True)
    assert c.selected is piv
    assert piv.events == ["reset", "select"]
    select(c, GIDS_AID)
    c.reset()
    assert c.selected is piv
    assert echo(c, b"x").sw == SW.SUCCESS
    assert piv.received[-1].data == b"x"


def test_unknown_ins_is_6d00(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    assert send(c, CommandAPDU(0x00, 0x7E, 0, 0)).sw == SW.INS_NOT_SUPPORTED


def test_applet_iso_error_and_warning_with_data(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    assert send(c, CommandAPDU(0x00, INS_ISO_ERROR, 0, 0)) == ResponseAPDU(b"", SW.REFERENCE_NOT_FOUND)
    assert send(c, CommandAPDU(0x00, INS_WARNING, 0, 0)) == ResponseAPDU(b"piv", SW.END_OF_DATA)


# ---- class byte ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cla", "sw"),
    [
        (0xFF, SW.CLA_NOT_SUPPORTED),
        (0x20, SW.CLA_NOT_SUPPORTED),  # 001x xxxx is reserved
        (0x04, SW.SECURE_MESSAGING_NOT_SUPPORTED),
        (0x08, SW.SECURE_MESSAGING_NOT_SUPPORTED),
        (0x0C, SW.SECURE_MESSAGING_NOT_SUPPORTED),
        (0x1C, SW.SECURE_MESSAGING_NOT_SUPPORTED),
        (0x60, SW.SECURE_MESSAGING_NOT_SUPPORTED),  # further interindustry class, SM bit
        (0x01, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        (0x02, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        (0x03, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        (0x11, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        # further interindustry class: b4-b1 code channel number minus four, so every
        # such CLA addresses a channel from 4 to 19, none of which exists
        (0x40, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        (0x41, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        (0x4F, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
        (0x50, SW.LOGICAL_CHANNEL_NOT_SUPPORTED),
    ],
)
def test_class_byte_checks(card: Fixture, cla: int, sw: int) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    assert echo(c, b"x", cla=cla).sw == sw
    assert piv.received == []  # never reached the applet


def test_proprietary_class_reaches_an_applet_that_defines_it() -> None:
    class Proprietary(RecordingApplet):
        proprietary_classes = frozenset({0x80})

    piv = Proprietary(PIV_AID, b"piv")
    c = Card(atr.build(b"test"), [piv])
    c.power_on()
    select(c, PIV_AID)
    assert echo(c, b"x", cla=0x80) == ResponseAPDU(b"x", SW.SUCCESS)
    assert piv.received[-1].cla == 0x80
    # a proprietary-class C0 is the applet's, not GET RESPONSE
    assert send(c, CommandAPDU(0x80, 0xC0, 0, 0)).sw == SW.INS_NOT_SUPPORTED
    # another proprietary class is still refused
    assert echo(c, b"x", cla=0xEC).sw == SW.CLA_NOT_SUPPORTED


@pytest.mark.parametrize("cla", [0x80, 0x84, 0x90, 0xA0, 0xEC, 0xFE])
def test_proprietary_class_an_applet_does_not_define_is_refused(card: Fixture, cla: int) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    before = len(piv.received)
    assert echo(c, b"x", cla=cla).sw == SW.CLA_NOT_SUPPORTED
    assert len(piv.received) == before  # never reached the applet


# ---- command chaining --------------------------------------------------------------------------


def test_command_chaining_assembles_data(card: Fixture) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    pieces = [bytes([i]) * 200 for i in range(1, 5)]
    for piece in pieces[:-1]:
        assert echo(c, piece, cla=0x10) == ResponseAPDU(b"", SW.SUCCESS)
    assert piv.received == []  # handler not called until the chain ends
    response = echo(c, pieces[-1], ne=256)
    whole = b"".join(pieces)
    assert len(piv.received) == 1
    assert piv.received[0].data == whole
    assert piv.received[0].cla == 0x00
    assert response.data == whole[:256]


def test_chain_interrupted_by_other_ins_chained_is_6883(card: Fixture) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    echo(c, b"first", cla=0x10)
    interrupting = send(c, CommandAPDU(0x10, INS_BLOB, 0, 0, b"other"))
    assert interrupting.sw == SW.LAST_COMMAND_OF_CHAIN_EXPECTED
    # the broken chain is gone: a new command sees only its own data
    assert echo(c, b"fresh").data == b"fresh"
    assert piv.received[-1].data == b"fresh"


def test_chain_interrupted_by_other_p1p2_is_6883(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    echo(c, b"first", cla=0x10)
    assert send(c, CommandAPDU(0x10, INS_ECHO, 0, 1, b"other")).sw == SW.LAST_COMMAND_OF_CHAIN_EXPECTED
    assert echo(c, b"last").data == b"last"


def test_chain_abandoned_for_unchained_command(card: Fixture) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    echo(c, b"abandoned", cla=0x10)
    blob = send(c, CommandAPDU(0x00, INS_BLOB, 0, 3))
    assert blob == ResponseAPDU(b"\x00\x01\x02", SW.SUCCESS)
    assert echo(c, b"new").data == b"new"
    assert piv.received[-1].data == b"new"


def test_chain_survives_get_response(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    echo(c, b"a", cla=0x10)
    assert get_response(c).sw == SW.CONDITIONS_NOT_SATISFIED
    assert echo(c, b"b").data == b"ab"


def test_chain_bound_is_6a84_and_clears_buffer() -> None:
    c, piv, _ = make_card(max_chain_bytes=300)
    select(c, PIV_AID)
    assert echo(c, b"\x01" * 200, cla=0x10).sw == SW.SUCCESS
    assert echo(c, b"\x02" * 101, cla=0x10).sw == SW.NOT_ENOUGH_MEMORY
    # buffer cleared: the next piece starts afresh
    assert echo(c, b"\x03" * 100, cla=0x10).sw == SW.SUCCESS
    assert echo(c, b"\x04" * 10).sw == SW.SUCCESS
    assert piv.received[-1].data == b"\x03" * 100 + b"\x04" * 10


def test_chain_bound_on_last_piece_is_6a84() -> None:
    c, piv, _ = make_card(max_chain_bytes=300)
    select(c, PIV_AID)
    assert echo(c, b"\x01" * 250, cla=0x10).sw == SW.SUCCESS
    assert echo(c, b"\x02" * 51).sw == SW.NOT_ENOUGH_MEMORY
    assert piv.received == []
    assert echo(c, b"ok").data == b"ok"


def test_chain_exactly_at_bound_is_accepted() -> None:
    c, piv, _ = make_card(max_chain_bytes=300)
    select(c, PIV_AID)
    echo(c, b"\x01" * 200, cla=0x10)
    echo(c, b"\x02" * 100)
    assert piv.received[-1].data == b"\x01" * 200 + b"\x02" * 100


# ---- response chaining (61xx / GET RESPONSE) -----------------------------------------------------


def blob(card: Card, length: int, ne: int | None = 256, extended: bool = False) -> ResponseAPDU:
    return send(card, CommandAPDU(0x00, INS_BLOB, length >> 8, length & 0xFF, ne=ne, extended=extended))


def expected_blob(length: int) -> bytes:
    return bytes(i & 0xFF for i in range(length))


def test_short_response_over_256_is_chained(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    total = 1000
    response = blob(c, total)
    assert len(response.data) == 256
    assert response.sw == 0x6100  # 744 remaining: 00 means 256 or more
    collected = response.data
    remaining = total - 256
    while response.sw1 == 0x61:
        response = get_response(c, 256)
        collected += response.data
        remaining -= len(response.data)
        if remaining == 0:
            assert response.sw == SW.SUCCESS
        else:
            assert response.sw == 0x6100 | (remaining if remaining < 256 else 0)
    assert collected == expected_blob(total)
    assert get_response(c).sw == SW.CONDITIONS_NOT_SATISFIED  # nothing left


def test_remaining_count_is_exact_below_256(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    response = blob(c, 300)
    assert response.sw == 0x612C  # 44 bytes remain
    tail = get_response(c, 44)
    assert tail == ResponseAPDU(expected_blob(300)[256:], SW.SUCCESS)


def test_le_smaller_than_data(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    response = blob(c, 50, ne=20)
    assert response == ResponseAPDU(expected_blob(20), 0x611E)
    # GET RESPONSE with a small Le also walks in steps
    part = get_response(c, 10)
    assert part == ResponseAPDU(expected_blob(30)[20:], 0x6114)
    rest = get_response(c, 256)
    assert rest == ResponseAPDU(expected_blob(50)[30:], SW.SUCCESS)


def test_no_le_still_returns_data_up_to_256(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    assert blob(c, 10, ne=None) == ResponseAPDU(expected_blob(10), SW.SUCCESS)
    response = blob(c, 257, ne=None)
    assert (len(response.data), response.sw) == (256, 0x6101)


def test_extended_le_returns_everything_up_to_ne(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    assert blob(c, 3000, ne=65536, extended=True) == ResponseAPDU(expected_blob(3000), SW.SUCCESS)
    response = blob(c, 3000, ne=1000, extended=True)
    assert response.data == expected_blob(1000)
    assert response.sw == 0x6100
    # GET RESPONSE with an extended Le takes the rest in one go
    c.reset()
    select(c, PIV_AID)
    blob(c, 3000, ne=1000, extended=True)
    rest = send(c, CommandAPDU(0x00, 0xC0, 0, 0, ne=65536, extended=True))
    assert rest == ResponseAPDU(expected_blob(3000)[1000:], SW.SUCCESS)


def test_extended_response_capped_to_fit_a_vpcd_frame(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    response = blob(c, 65535, ne=65536, extended=True)
    assert len(response.data) == 65533
    assert response.sw == 0x6102


def test_get_response_with_nothing_pending_is_6985(card: Fixture) -> None:
    c, _, _ = card
    assert get_response(c).sw == SW.CONDITIONS_NOT_SATISFIED
    select(c, PIV_AID)
    assert get_response(c).sw == SW.CONDITIONS_NOT_SATISFIED


def test_get_response_wrong_p1p2(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    blob(c, 300)
    assert send(c, CommandAPDU(0x00, 0xC0, 1, 0, ne=256)).sw == SW.INCORRECT_P1P2


def test_other_command_discards_pending_response(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    blob(c, 300)
    assert echo(c, b"x").data == b"x"
    assert get_response(c).sw == SW.CONDITIONS_NOT_SATISFIED


# ---- power and reset ----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["reset", "power_off"])
def test_reset_and_power_off_clear_volatile_state(card: Fixture, action: str) -> None:
    c, piv, gids = card
    select(c, PIV_AID)
    blob(c, 600)  # pending GET RESPONSE data
    echo(c, b"half", cla=0x10)  # open chain (also discards the pending data, so redo it below)
    piv.events.clear()
    gids.events.clear()
    getattr(c, action)()
    assert "reset" in piv.events and "reset" in gids.events
    c.power_on()
    assert c.selected is None  # no default applet
    select(c, PIV_AID)
    assert echo(c, b"tail").data == b"tail"  # the chain did not survive
    assert piv.received[-1].data == b"tail"
    # pending response data does not survive either
    blob(c, 600)
    getattr(c, action)()
    c.power_on()
    select(c, PIV_AID)
    assert get_response(c).sw == SW.CONDITIONS_NOT_SATISFIED


def test_power_on_twice_does_not_reset(card: Fixture) -> None:
    c, piv, _ = card
    select(c, PIV_AID)
    piv.events.clear()
    c.power_on()
    assert piv.events == []
    assert c.selected is piv


def test_on_reset_callback_says_warm_or_cold() -> None:
    calls: list[bool] = []
    c = Card(atr.build(b""), [], on_reset=calls.append)
    c.power_on()
    c.power_on()  # already powered: nothing happens
    c.reset()
    c.power_off()
    assert calls == [True, False, True]  # cold power-on, warm reset (vpcd 02), cold power-off
    assert not c.powered


# ---- robustness --------------------------------------------------------------------------------


def test_applet_exception_is_6f00_logged_and_card_keeps_working(
    card: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    with caplog.at_level(logging.ERROR, logger="vcard.cardos"):
        response = send(c, CommandAPDU(0x00, INS_BOOM, 0, 0))
    assert response == ResponseAPDU(b"", SW.NO_PRECISE_DIAGNOSIS)
    records = [r for r in caplog.records if r.name == "vcard.cardos" and r.levelno >= logging.ERROR]
    assert records, "the traceback must be logged"
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert "applet bug" in caplog.text
    assert echo(c, b"still alive").data == b"still alive"


def test_applet_exception_ends_open_chain(card: Fixture) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    echo(c, b"x", cla=0x10)
    send(c, CommandAPDU(0x10, INS_BOOM, 0, 0))  # interrupts: 6883, chain dropped
    assert echo(c, b"y").data == b"y"


class BrokenApplet(RecordingApplet):
    """Handlers that violate the Applet contract in ways mypy would catch, but a card must survive."""

    @command(0x10)
    def bad_status(self, apdu: CommandAPDU) -> ResponseAPDU:
        return ResponseAPDU(b"", 0x12345)

    @command(0x11)
    def bad_iso_error(self, apdu: CommandAPDU) -> bytes:
        raise ISOError(-1)

    @command(0x12)
    def bad_type(self, apdu: CommandAPDU) -> bytes:
        return "text"  # type: ignore[return-value]


@pytest.mark.parametrize("ins", [0x10, 0x11, 0x12])
def test_invalid_applet_answer_is_6f00_not_an_exception(ins: int, caplog: pytest.LogCaptureFixture) -> None:
    broken = BrokenApplet(PIV_AID, b"broken")
    c = Card(atr.build(b""), [broken], broken)
    c.power_on()
    with caplog.at_level(logging.ERROR, logger="vcard.cardos"):
        raw = c.transmit(bytes([0x00, ins, 0x00, 0x00]))
    assert raw == b"\x6f\x00"
    assert any(r.exc_info for r in caplog.records if r.name == "vcard.cardos")
    assert c.transmit(bytes([0x00, INS_ECHO, 0, 0, 1, 0x41])) == b"A\x90\x00"


def test_hooks_run_in_order_before_every_command_and_see_the_chain_state() -> None:
    calls: list[tuple[str, bool]] = []
    c, piv, _ = make_card(
        hooks=[
            lambda card: calls.append(("first", card.in_chain)),
            lambda card: calls.append(("second", card.in_chain)),
        ]
    )
    select(c, PIV_AID)
    echo(c, b"ab", cla=0x10)
    echo(c, b"cd")
    select_calls = [("first", False), ("second", False)]
    first_fragment = [("first", False), ("second", False)]
    last_fragment = [("first", True), ("second", True)]
    assert calls == [*select_calls, *first_fragment, *last_fragment]
    assert piv.received[-1].data == b"abcd"


def test_commands_started_counts_a_chain_once_and_a_malformed_apdu_too() -> None:
    c, _, _ = make_card()
    started = c.commands_started
    select(c, PIV_AID)
    assert c.commands_started == started + 1
    echo(c, b"ab", cla=0x10)
    echo(c, b"cd", cla=0x10)
    echo(c, b"ef")
    assert c.commands_started == started + 2
    assert c.transmit(b"\x00") == b"\x67\x00"
    assert c.commands_started == started + 3


def test_a_failing_hook_refuses_the_command_and_the_card_keeps_answering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [OSError("hook failed")]

    def failing(card: Card) -> None:
        if failures:
            raise failures.pop()

    c, _, _ = make_card(hooks=[failing])
    with caplog.at_level(logging.ERROR, logger="vcard.cardos"):
        assert select(c, PIV_AID).sw == SW.NO_PRECISE_DIAGNOSIS
    assert "hook failed" in caplog.text
    assert select(c, PIV_AID).sw == SW.SUCCESS
    assert echo(c, b"x").data == b"x"


def test_a_hook_may_refuse_a_command_with_a_status_word() -> None:
    def refuse(card: Card) -> None:
        raise ISOError(SW.CONDITIONS_NOT_SATISFIED)

    c, piv, _ = make_card(hooks=[refuse])
    assert select(c, PIV_AID).sw == SW.CONDITIONS_NOT_SATISFIED
    assert piv.received == []


def test_card_command_takes_precedence_and_ignores_chaining_bit() -> None:
    seen: list[CommandAPDU] = []

    def handler(apdu: CommandAPDU) -> bytes:
        seen.append(apdu)
        return b"vendor"

    c, piv, _ = make_card(commands={(0x00, INS_ECHO): handler})
    select(c, PIV_AID)
    echo(c, b"ab", cla=0x10)
    assert echo(c, b"cd") == ResponseAPDU(b"vendor", SW.SUCCESS)
    assert seen[-1].data == b"abcd"
    assert piv.received == []


class Recording(CardObserver):
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_exchange(self, command: bytes, response: bytes, elapsed: float) -> None:
        assert elapsed >= 0
        self.events.append((command.hex().upper(), response.hex().upper()))

    def on_power(self, event: PowerEvent) -> None:
        self.events.append(event)


def test_observers_see_every_exchange_and_power_event_in_order() -> None:
    observer = Recording()
    c, _, _ = make_card(observers=[observer])
    select(c, PIV_AID[:5])
    assert c.transmit(b"\x00") == b"\x67\x00"
    c.reset()
    c.power_off()
    c.power_on()
    c.power_on()  # already powered: no event
    assert observer.events == [
        PowerEvent.POWER_ON,
        ("00A4040005A00000030800", "4643493A7069769000"),
        ("00", "6700"),
        PowerEvent.RESET,
        PowerEvent.POWER_OFF,
        PowerEvent.POWER_ON,
    ]


def test_observers_can_be_added_and_removed_and_a_failing_one_changes_nothing(
    card: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    c, _, _ = card

    class Broken(CardObserver):
        def on_exchange(self, command: bytes, response: bytes, elapsed: float) -> None:
            raise RuntimeError("observer bug")

    select(c, PIV_AID)
    observer = Recording()
    c.add_observer(Broken())
    c.add_observer(observer)
    with caplog.at_level(logging.ERROR, logger="vcard.cardos"):
        assert echo(c, b"hi") == ResponseAPDU(b"hi", SW.SUCCESS)
    assert "observer bug" in caplog.text
    assert observer.events == [("00010000026869", "68699000")]
    c.remove_observer(observer)
    echo(c, b"again")
    assert len(observer.events) == 1


def test_trace_logging_does_not_break_transmit(card: Fixture, caplog: pytest.LogCaptureFixture) -> None:
    c, _, _ = card
    with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
        select(c, PIV_AID)
        assert c.transmit(b"") == b"\x67\x00"
        assert c.transmit(b"\x00") == b"\x67\x00"
    assert "SELECT" in caplog.text
    assert "MALFORMED" in caplog.text


def test_trace_entry_names_the_command_the_answer_and_the_time(
    card: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    c, _, _ = card
    select(c, PIV_AID)
    with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
        assert c.transmit(bytes.fromhex("000100000268690A")) == b"hi\x90\x00"  # ECHO, Le 10
        assert c.transmit(bytes.fromhex("00A40400")) == b"\x6a\x82"
    first, second = (record.getMessage() for record in caplog.records if record.name == "vcard.trace")
    assert re.fullmatch(r"> ECHO 000100000268690A\n< 6869 9000 SUCCESS \(\d+\.\d\d ms\)", first), first
    assert re.fullmatch(r"> SELECT 00A40400\n< 6A82 FILE_NOT_FOUND \(\d+\.\d\d ms\)", second), second


def test_without_trace_or_observers_no_trace_text_is_built(
    card: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The untraced path must not format anything: hex, names and timing cost per APDU."""
    c, _, _ = card

    def refuse(*_args: object) -> str:
        raise AssertionError("trace text built while nobody traces")

    monkeypatch.setattr(cardos, "command_text", refuse)
    monkeypatch.setattr(cardos, "response_text", refuse)
    monkeypatch.setattr(cardos, "sw_name", refuse)
    assert not logging.getLogger("vcard.trace").isEnabledFor(logging.DEBUG)
    assert select(c, PIV_AID).sw == SW.SUCCESS
    assert echo(c, b"hi") == ResponseAPDU(b"hi", SW.SUCCESS)
    assert c.transmit(b"\x00") == b"\x67\x00"


# ---- property test: any bytes in, a status word out -----------------------------------------------

VALID_SW1 = {0x61, 0x62, 0x63, 0x64, 0x65, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x90}

interesting_cla = st.sampled_from([0x00, 0x10, 0x80, 0x90, 0xFF, 0x0C, 0x01, 0x40, 0x50, 0x60, 0x20])
interesting_ins = st.sampled_from(
    [0xA4, 0xC0, INS_ECHO, INS_BLOB, INS_BOOM, INS_ISO_ERROR, INS_WARNING, 0x7E]
)


@st.composite
def near_valid_apdus(draw: st.DrawFn) -> bytes:
    header = bytes(
        [
            draw(interesting_cla),
            draw(interesting_ins),
            draw(st.sampled_from([0x00, 0x04, 0x01, 0x02, 0xFF])),
            draw(st.sampled_from([0x00, 0x01, 0x02, 0x0C, 0xFF])),
        ]
    )
    data = draw(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([PIV_AID, PIV_AID[:5], PIV_AID[:9], GIDS_AID, GIDS_AID[:4]]),
            st.binary(min_size=250, max_size=300),
        )
    )
    kind = draw(st.sampled_from(["case1", "case2", "short", "extended", "lying_lc", "truncated_ext"]))
    if kind == "case1":
        return header
    if kind == "case2":
        return header + bytes([draw(st.integers(0, 255))])
    if kind == "short":
        body = bytes([len(data) & 0xFF]) + data[:255]
        if draw(st.booleans()):
            body += bytes([draw(st.integers(0, 255))])
        return header + body
    if kind == "extended":
        body = b"\x00" + len(data).to_bytes(2, "big") + data if data else b"\x00"
        if draw(st.booleans()) or not data:
            body += draw(st.binary(min_size=2, max_size=2))
        return header + body
    if kind == "lying_lc":
        return header + bytes([draw(st.integers(0, 255))]) + data
    return header + b"\x00" + draw(st.binary(max_size=3))


def assert_well_formed(raw: bytes) -> ResponseAPDU:
    assert isinstance(raw, bytes)
    assert len(raw) >= 2
    response = ResponseAPDU.parse(raw)
    assert response.sw1 in VALID_SW1, f"{response.sw:04X}"
    return response


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), near_valid_apdus()), min_size=1, max_size=12))
def test_transmit_never_raises(commands: list[bytes]) -> None:
    c, _, _ = make_card(default=True, max_chain_bytes=1000)
    logging.getLogger("vcard.cardos").disabled = True  # INS_BOOM tracebacks would flood the output
    try:
        for raw in commands:
            assert_well_formed(c.transmit(raw))
    finally:
        logging.getLogger("vcard.cardos").disabled = False


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(near_valid_apdus(), min_size=1, max_size=8))
def test_transmit_never_raises_with_tracing(commands: list[bytes]) -> None:
    c, _, _ = make_card()
    trace = logging.getLogger("vcard.trace")
    cardos_log = logging.getLogger("vcard.cardos")
    old_level = trace.level
    trace.setLevel(logging.DEBUG)
    cardos_log.disabled = True
    try:
        for raw in commands:
            assert_well_formed(c.transmit(raw))
    finally:
        trace.setLevel(old_level)
        cardos_log.disabled = False


# ---- state machine -----------------------------------------------------------------------------


class CardMachine(RuleBasedStateMachine):
    """SELECT, chained pieces, GET RESPONSE and reset against a model of the ISO behaviour."""

    MAX_CHAIN = 700

    applets = Bundle("applets")

    def __init__(self) -> None:
        super().__init__()
        self.piv = RecordingApplet(PIV_AID, b"piv")
        self.gids = RecordingApplet(GIDS_AID, b"gids")
        self.card = Card(atr.build(b"sm"), [self.piv, self.gids], self.piv, max_chain_bytes=self.MAX_CHAIN)
        self.card.power_on()
        # model
        self.selected: RecordingApplet = self.piv
        self.chain: bytes | None = None
        self.pending = b""

    @initialize(target=applets)
    def add_piv(self) -> RecordingApplet:
        return self.piv

    @initialize(target=applets)
    def add_gids(self) -> RecordingApplet:
        return self.gids

    def transmit(self, apdu: CommandAPDU) -> ResponseAPDU:
        return assert_well_formed(self.card.transmit(apdu.encode()))

    def expect_data(self, response: ResponseAPDU, data: bytes, limit: int) -> None:
        """The response the model predicts for `data` answered under `limit`."""
        assert response.data == data[:limit]
        rest = data[limit:]
        if rest:
            assert response.sw == 0x6100 | (len(rest) if len(rest) < 256 else 0)
        else:
            assert response.sw == SW.SUCCESS
        self.pending = rest

    @rule(applet=applets, length=st.sampled_from([5, 9, 11]))
    def select(self, applet: RecordingApplet, length: int) -> None:
        response = self.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, applet.aid[:length], 256))
        assert response == ResponseAPDU(b"FCI:" + applet.label, SW.SUCCESS)
        self.selected = applet
        self.chain = None
        self.pending = b""

    @rule(aid=st.sampled_from([bytes.fromhex("A0000009"), bytes.fromhex("D276000124"), PIV_AID + b"\x01"]))
    def select_unknown(self, aid: bytes) -> None:
        response = self.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, aid, 256))
        assert response == ResponseAPDU(b"", SW.FILE_NOT_FOUND)
        self.chain = None  # a different command ends an open chain
        self.pending = b""

    @rule(data=st.binary(min_size=1, max_size=255))
    def chain_piece(self, data: bytes) -> None:
        response = self.transmit(CommandAPDU(0x10, INS_ECHO, 0, 0, data))
        self.pending = b""
        so_far = (self.chain or b"") + data
        if len(so_far) > self.MAX_CHAIN:
            assert response == ResponseAPDU(b"", SW.NOT_ENOUGH_MEMORY)
            self.chain = None
        else:
            assert response == ResponseAPDU(b"", SW.SUCCESS)
            self.chain = so_far

    @rule(data=st.binary(max_size=255), ne=st.one_of(st.none(), st.integers(1, 256)))
    def last_piece(self, data: bytes, ne: int | None) -> None:
        received_before = len(self.selected.received)
        response = self.transmit(CommandAPDU(0x00, INS_ECHO, 0, 0, data, ne))
        whole = (self.chain or b"") + data
        self.chain = None
        if len(whole) > self.MAX_CHAIN:
            assert response == ResponseAPDU(b"", SW.NOT_ENOUGH_MEMORY)
            self.pending = b""
            return
        # the handler saw exactly the concatenated data, once
        assert len(self.selected.received) == received_before + 1
        assert self.selected.received[-1].data == whole
        self.expect_data(response, whole, 256 if ne is None else ne)

    @rule(length=st.integers(0, 1200), ne=st.integers(1, 256))
    def blob(self, length: int, ne: int) -> None:
        response = self.transmit(CommandAPDU(0x00, INS_BLOB, length >> 8, length & 0xFF, ne=ne))
        self.chain = None
        self.expect_data(response, expected_blob(length), ne)

    @rule(ne=st.integers(1, 256))
    def get_response(self, ne: int) -> None:
        response = self.transmit(CommandAPDU(0x00, 0xC0, 0, 0, ne=ne))
        if not self.pending:
            assert response == ResponseAPDU(b"", SW.CONDITIONS_NOT_SATISFIED)
            return
        self.expect_data(response, self.pending, ne)

    @rule()
    def reset(self) -> None:
        self.card.reset()
        self.selected = self.piv
        self.chain = None
        self.pending = b""

    @invariant()
    def selection_matches(self) -> None:
        assert self.card.selected is self.selected


CardMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestCardMachine = CardMachine.TestCase
