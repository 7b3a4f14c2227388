"""Windows smart-card discovery (signin.discovery, `vcard discover`) against in-process cards."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from signin.discovery import GIDS, PIV, CardIdError, Discovery, KnownAtr, discover, parse_card_id
from vcard.atr import build
from vcard.cli import main
from vcard.host import InProcessConnection
from vcard.profile import list_profile_names, load_profile
from vcard.runtime import VirtualCard
from vcard.tlv import encode
from vcard.wire.aids import GIDS_AID_PREFIX, PIV_AID_PREFIX, SC_PNP_AID

EXPECTED_BINDING = {
    "piv": PIV,
    "piv-plain": PIV,
    "yubikey5": PIV,
    "multi-pin": PIV,
    "gids": GIDS,
    "gids-blank": GIDS,
    "tpm-vsc": GIDS,
    "iso": None,
}
GUID = bytes(range(16))
HISTORICAL = bytes.fromhex("8031C0")
CARD_ID = encode(0x30, [encode(0x02, b"\x00"), encode(0x16, b"MSFT"), encode(0x30, encode(0x04, GUID))])


@pytest.fixture
def run_discovery() -> Iterator[Callable[..., Discovery]]:
    opened: list[VirtualCard] = []

    def run(profile: str, known_atrs: tuple[KnownAtr, ...] = ()) -> Discovery:
        virtual = VirtualCard.open(load_profile(profile), None, ephemeral=True)
        opened.append(virtual)
        return discover(InProcessConnection(virtual.card), known_atrs)

    yield run
    for virtual in opened:
        virtual.close()


def test_every_shipped_profile_has_an_expected_binding() -> None:
    assert set(list_profile_names()) == set(EXPECTED_BINDING)


@pytest.mark.parametrize("profile", sorted(EXPECTED_BINDING))
def test_shipped_profile_binds_the_right_minidriver(
    profile: str, run_discovery: Callable[..., Discovery]
) -> None:
    result = run_discovery(profile)
    assert result.binding == EXPECTED_BINDING[profile], result.reason
    names = [step.name for step in result.steps]
    assert names[:3] == ["atr", "select SC-PnP AID", "get data 7F68"]
    assert result.steps[0].outcome.startswith("no ATR match")
    piv_step = result.steps[names.index("select PIV AID")]
    assert piv_step.command == bytes.fromhex("00A4040009") + PIV_AID_PREFIX
    if result.binding == PIV:
        assert piv_step.sw == 0x9000 and "select GIDS AID" not in names
        assert "msclmd.dll" in (result.minidriver or "") and "PIV mode" in (result.minidriver or "")
    else:
        gids_step = result.steps[names.index("select GIDS AID")]
        assert gids_step.command == bytes.fromhex("00A4040009") + GIDS_AID_PREFIX + b"\x00"
        assert gids_step.sw == (0x9000 if result.binding == GIDS else 0x6A82)
    if result.binding is None:
        assert result.minidriver is None and "no minidriver" in result.reason
    sent = [step for step in result.steps if step.command is not None]
    assert result.meter["apdus"] == len(sent)
    assert result.meter["calls"]["SCardConnect"] == 1


def test_registered_atr_wins_over_the_aid_probes(run_discovery: Callable[..., Discovery]) -> None:
    virtual = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    atr = bytes(virtual.card.atr)
    virtual.close()
    # the mask hides the last byte, so a registry ATR differing only there still matches
    entry = KnownAtr(
        "Lab card", atr[:-1] + bytes([atr[-1] ^ 0xFF]), b"\xff" * (len(atr) - 1) + b"\x00", "lab.dll"
    )
    result = run_discovery("gids", (entry,))
    assert (result.binding, result.minidriver) == ("Lab card", "lab.dll")
    assert "Lab card" in result.steps[0].outcome
    unmasked = KnownAtr("Other", entry.atr, b"\xff" * len(atr), "other.dll")
    assert run_discovery("gids", (unmasked,)).binding == GIDS


class ScriptedCard:
    """A card endpoint that answers listed commands and 6A82 to anything else."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.received: list[bytes] = []
        self.atr = build(HISTORICAL)

    def transmit(self, apdu: bytes) -> bytes:
        self.received.append(apdu)
        return self.answers.get(apdu, b"\x6a\x82")

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass


SELECT_PNP = bytes.fromhex("00A404000B") + SC_PNP_AID + b"\x00"
GET_CARD_ID = bytes.fromhex("00CA7F6800")
SELECT_PIV = bytes.fromhex("00A4040009") + PIV_AID_PREFIX
SELECT_GIDS = bytes.fromhex("00A4040009") + GIDS_AID_PREFIX + b"\x00"


def test_card_identifier_gives_the_device_id_and_skips_ef_atr() -> None:
    card = ScriptedCard({SELECT_PNP: b"\x90\x00", GET_CARD_ID: CARD_ID + b"\x90\x00"})
    result = discover(InProcessConnection(card))
    assert result.device_id == "MSFT:" + GUID.hex().upper()
    assert card.received == [SELECT_PNP, GET_CARD_ID, SELECT_PIV, SELECT_GIDS]
    assert result.binding is None


def test_get_data_is_sent_even_when_the_pnp_select_fails_then_ef_atr_is_read() -> None:
    select_mf, select_ef_atr, read = (
        bytes.fromhex(h) for h in ("00A4000C023F00", "00A4020C022F01", "00B0000000")
    )
    ef_atr = bytes.fromhex("4301F4")
    card = ScriptedCard(
        {
            select_mf: b"\x90\x00",
            select_ef_atr: b"\x90\x00",
            read: ef_atr + b"\x90\x00",
            SELECT_PIV: b"\x90\x00",
        }
    )
    result = discover(InProcessConnection(card))
    assert card.received == [SELECT_PNP, GET_CARD_ID, select_mf, select_ef_atr, read, SELECT_PIV]
    assert result.steps[-2].data == ef_atr and result.binding == PIV
    # no card identifier: the ATR's historical bytes are the device ID
    assert result.device_id == HISTORICAL.hex().upper()


def test_both_applications_present_is_piv_and_gids_is_never_selected() -> None:
    card = ScriptedCard({SELECT_PIV: b"\x90\x00", SELECT_GIDS: b"\x90\x00"})
    result = discover(InProcessConnection(card))
    assert result.binding == PIV and SELECT_GIDS not in card.received


def test_unusable_card_identifier_is_reported_and_ignored() -> None:
    card = ScriptedCard({GET_CARD_ID: encode(0x04, GUID) + b"\x90\x00"})
    result = discover(InProcessConnection(card))
    step = result.steps[2]
    assert step.outcome.startswith("unusable: CardID must be a SEQUENCE")
    assert result.device_id == HISTORICAL.hex().upper()


def test_parse_card_id_accepts_the_7f68_wrapper_and_the_default_version() -> None:
    without_version = encode(0x30, [encode(0x16, b"MSFT"), encode(0x30, encode(0x04, GUID))])
    assert parse_card_id(encode(0x7F68, without_version)) == ("MSFT", [GUID])
    assert parse_card_id(CARD_ID) == ("MSFT", [GUID])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x30\x05\x16", "not valid DER"),
        (encode(0x30, encode(0x16, b"MSFT")), r"vendor \(IA5String, 16\) then guids"),
        (encode(0x30, [encode(0x16, b"MSFT"), encode(0x30, encode(0x04, b"short"))]), "16-byte"),
        (encode(0x30, [encode(0x16, b"MSFT"), encode(0x30, b"")]), "one or more"),
    ],
)
def test_parse_card_id_refuses_malformed_identifiers(data: bytes, message: str) -> None:
    with pytest.raises(CardIdError, match=message):
        parse_card_id(data)


def test_cli_discover_json_and_text() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["discover", "--profile", "tpm-vsc", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["binding"] == GIDS
    assert document["steps"][-1]["command"] == "00A4040009A0000003974254465900"
    assert document["meter"]["calls"]["SCardDisconnect"] == 1
    text = runner.invoke(main, ["discover", "--profile", "iso"], catch_exceptions=False)
    assert text.exit_code == 0 and "binding:    none" in text.output


def test_cli_discover_unknown_profile_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["discover", "--profile", "no-such-profile"])
    assert result.exit_code == 1
    assert 'unknown profile "no-such-profile"' in result.output and "Traceback" not in result.output
