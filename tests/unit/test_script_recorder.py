"""Recording card sessions as scripts that replay green against a card in the same starting state."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vcard.apdu import ResponseAPDU
from vcard.host import InProcessConnection, SmartCardProtocol
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.script.parser import parse_script
from vcard.script.recorder import install_recorder
from vcard.script.runner import Runner, Status, format_result

PIV_SELECT = bytes.fromhex("00A4040005A000000308")
MGMT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")


def _tx(connection: InProcessConnection, command: str | bytes) -> ResponseAPDU:
    """One raw exchange (hex text or bytes), exactly as written."""
    raw = bytes.fromhex(command.replace(" ", "")) if isinstance(command, str) else command
    return SmartCardProtocol(connection).exchange(raw)


def _mutual_auth(connection: InProcessConnection) -> None:
    """What yubico-piv-tool does: witness, decrypt it, challenge, check the card's answer."""
    from vcard import crypto

    response = _tx(connection, "00 87 03 9B 04 7C 02 80 00 00")
    assert response.sw == 0x9000 and response.data[:4] == bytes.fromhex("7C0A8008")
    witness = crypto.block_decrypt("3des", MGMT_KEY, response.data[4:12])
    challenge = bytes.fromhex("1122334455667788")
    command = bytes.fromhex("0087039B167C14") + b"\x80\x08" + witness + b"\x81\x08" + challenge + b"\x00"
    response = _tx(connection, command)
    assert response.sw == 0x9000
    assert response.data[4:12] == crypto.block_encrypt("3des", MGMT_KEY, challenge)


def _session(connection: InProcessConnection) -> None:
    """A client session: status, authenticate, generate, read back, as yubico-piv-tool would."""
    connection.reset()
    _tx(connection, PIV_SELECT.hex())
    _tx(connection, "00 20 00 80 00")
    _tx(connection, "00 FD 00 00 00")
    _tx(connection, "00 F8 00 00 00")
    _tx(connection, "00 F7 00 9B 00")
    _mutual_auth(connection)
    _tx(connection, "00 47 00 9A 05 AC 03 80 01 11 00")
    connection.reset()
    _tx(connection, PIV_SELECT.hex())
    _tx(connection, "00 CB 3F FF 05 5C 03 5F C1 02 00")
    _tx(connection, "00 F7 00 9A 00")
    _tx(connection, "00 20 00 80 08 31 32 33 34 35 36 FF FF")
    _tx(connection, "00 87 11 9A 26 7C 24 82 00 81 20" + "01" * 32 + "00")
    _tx(connection, "00 87 00 9B 04 7C 02 81 00 00")


def _fresh_state(tmp_path: Path, profile: str) -> tuple[Path, Path]:
    original = tmp_path / "card"
    VirtualCard.open(load_profile(profile), original, ephemeral=False).close()
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    return original, copy


def _record(
    path: Path, profile: str, state: Path | None, client: Callable[[InProcessConnection], None], **kwargs: Any
) -> str:
    """Run `client` against a card (from `state`, or ephemeral) while recording; the script text."""
    card = VirtualCard.open(load_profile(profile), state, ephemeral=state is None)
    try:
        recorder = install_recorder(card.card, path, **kwargs)
        client(InProcessConnection(card.card))
        recorder.close()
    finally:
        card.close()
    return path.read_text()


def _replay(path: Path, profile: str, state: Path) -> Any:
    card = VirtualCard.open(load_profile(profile), state, ephemeral=False)
    try:
        return Runner(parse_script(path), InProcessConnection(card.card)).run()
    finally:
        card.close()


def test_recorded_piv_session_replays_green(tmp_path: Path) -> None:
    original, copy = _fresh_state(tmp_path, "piv")
    recording = tmp_path / "session.apdu"
    text = _record(recording, "piv", original, _session)
    assert "var MGMT_KEY = 010203040506070801020304050607080102030405060708" in text
    assert '${decrypt("3des", MGMT_KEY, WITNESS_' in text
    assert text.count('case "session') == 2
    outcome = _replay(recording, "piv", copy)
    assert [r.status for r in outcome.results] == [Status.PASSED] * 2, "\n".join(
        format_result(r) for r in outcome.results
    )


def test_exact_data_is_checked_on_replay(tmp_path: Path) -> None:
    """Deterministic answers (the CHUID here) are compared: another card's CHUID fails the replay."""
    original, _copy = _fresh_state(tmp_path, "piv")
    recording = tmp_path / "session.apdu"
    _record(recording, "piv", original, _session)
    other = tmp_path / "other"
    VirtualCard.open(load_profile("piv"), other, ephemeral=False).close()
    outcome = _replay(recording, "piv", other)
    assert outcome.results[1].status is Status.FAILED
    assert "5F C1 02" in outcome.results[1].details


def test_gids_admin_authentication_replays(tmp_path: Path) -> None:
    from vcard import crypto

    def admin_session(connection: InProcessConnection) -> None:
        connection.reset()
        _tx(connection, "00 A4 04 00 09 A0 00 00 03 97 42 54 46 59 00")
        _tx(connection, "00 22 C1 A4 03 83 01 80")
        r1 = bytes(range(16))
        response = _tx(connection, bytes.fromhex("00870000147C128110") + r1 + b"\x00")
        r2 = response.data[4:20]
        cryptogram = crypto.cbc_encrypt("3des", bytes(24), bytes(8), r2 + r1 + bytes(7) + b"\x80")
        response = _tx(connection, bytes.fromhex("008700002C7C2A8228") + cryptogram + b"\x00")
        assert response.sw == 0x9000
        assert _tx(connection, "00 2C 02 80 06 31 32 33 34 35 36").sw == 0x9000

    original, copy = _fresh_state(tmp_path, "gids")
    recording = tmp_path / "gids.apdu"
    text = _record(recording, "gids", original, admin_session)
    assert "${3des_cbc_encrypt(ADMIN_KEY, 0x0000000000000000, cat(CARD_RANDOM_" in text
    outcome = _replay(recording, "gids", copy)
    assert outcome.ok, "\n".join(format_result(r) for r in outcome.results)


def test_piv_external_authentication_replays(tmp_path: Path) -> None:
    """OpenSC piv-tool's external authentication: the client's 82 answer becomes encrypt(...)."""
    from vcard import crypto

    def external(connection: InProcessConnection) -> None:
        connection.reset()
        _tx(connection, PIV_SELECT.hex())
        response = _tx(connection, "00 87 03 9B 04 7C 02 81 00 00")
        assert response.data[:4] == bytes.fromhex("7C0A8108") and response.sw == 0x9000
        answer = crypto.block_encrypt("3des", MGMT_KEY, response.data[4:12])
        assert _tx(connection, bytes.fromhex("0087039B0C7C0A8208") + answer) == (b"", 0x9000)
        # the authentication counts: PUT DATA needs it
        assert _tx(connection, "00 DB 3F FF 0E 5C 03 5F C1 0D 53 07 70 00 71 01 00 FE 00") == (b"", 0x9000)

    original, copy = _fresh_state(tmp_path, "piv")
    recording = tmp_path / "external.apdu"
    text = _record(recording, "piv", original, external)
    assert '${encrypt("3des", MGMT_KEY, CHALLENGE_1)}' in text, text
    outcome = _replay(recording, "piv", copy)
    assert outcome.ok and outcome.count(Status.PASSED) == 1, "\n".join(
        format_result(r) for r in outcome.results
    )


def test_unknown_key_is_flagged(tmp_path: Path) -> None:
    def mutual(connection: InProcessConnection) -> None:
        _tx(connection, PIV_SELECT.hex())
        _mutual_auth(connection)

    text = _record(tmp_path / "r.apdu", "piv", None, mutual, keys={})
    assert "is not known to the recorder: this exchange will not replay" in text


@pytest.mark.parametrize("event", ["reset", "power_off"])
def test_sessions_split_at_power_events(tmp_path: Path, event: str) -> None:
    card = VirtualCard.open(load_profile("iso"), None, ephemeral=True)
    recording = tmp_path / "r.apdu"
    try:
        recorder = install_recorder(card.card, recording)
        connection = InProcessConnection(card.card)
        _tx(connection, "00 A4 04 00 07 F0 76 63 61 72 64 01")
        getattr(card.card, event)()
        card.card.power_on()
        _tx(connection, "00 A4 04 00 07 F0 76 63 61 72 64 01")
        # the file is already complete before close(): sessions are flushed at boundaries
        assert recording.read_text().count("case ") == 1
        recorder.close()
    finally:
        card.close()
    script = parse_script(recording)
    assert len(script.cases) == 2
