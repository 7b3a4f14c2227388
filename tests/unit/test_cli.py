"""The `vcard` command line: profiles, init, info, apdu, and how bad input is reported.

`vcard run` itself is exercised through pcscd by tests/integration/ (it needs vpcd).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcard.cli import main
from vcard.profile import list_profile_names

SELECT_ISO = "00A4040005F076636172"
VERIFY_OK = "0020008106313233343536"
VERIFY_WRONG = "0020008106393939393939"
VERIFY_STATUS = "00200081"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_version_and_help() -> None:
    code, output = invoke("--version")
    assert code == 0 and output.startswith("vcard, version ")
    for command in ("run", "profiles", "init", "info", "apdu", "pinpad", "script", "md"):
        code, output = invoke(command, "--help")
        assert code == 0 and "Usage:" in output, command


def test_profiles_lists_every_shipped_profile_with_its_description() -> None:
    code, output = invoke("profiles")
    assert code == 0
    lines = output.splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(list_profile_names())
    assert all("BROKEN" not in line for line in lines)
    assert any(line.startswith("piv ") and "PIN 123456" in line for line in lines)


def test_apdu_runs_one_card_session_and_prints_status_names() -> None:
    code, output = invoke("apdu", "--ephemeral", "--profile", "iso", SELECT_ISO, VERIFY_OK, VERIFY_STATUS)
    assert code == 0
    assert output.splitlines() == ["9000 SUCCESS", "9000 SUCCESS", "9000 SUCCESS"]


def test_apdu_exits_1_when_the_last_status_word_is_an_error() -> None:
    code, output = invoke("apdu", "--ephemeral", "--profile", "iso", SELECT_ISO, VERIFY_WRONG)
    assert code == 1
    assert output.splitlines()[-1] == "63C2 VERIFY_FAILED(2 tries left)"


def test_apdu_rejects_bad_hex_without_sending_anything() -> None:
    code, output = invoke("apdu", "--ephemeral", "--profile", "iso", SELECT_ISO, "00A4ZZ")
    assert code == 2
    assert "00A4ZZ" in output and "SUCCESS" not in output


def test_init_creates_a_private_state_once_and_apdu_persists_tries(tmp_path: Path) -> None:
    state = tmp_path / "card"
    code, output = invoke("init", "--profile", "iso", "--state", str(state))
    assert code == 0 and str(state) in output
    assert stat.S_IMODE((state / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

    code, output = invoke("init", "--profile", "iso", "--state", str(state))
    assert code == 1 and "already exists" in output

    code, _ = invoke("apdu", "--profile", "iso", "--state", str(state), SELECT_ISO, VERIFY_WRONG)
    assert code == 1
    code, output = invoke("apdu", "--profile", "iso", "--state", str(state), SELECT_ISO, VERIFY_STATUS)
    assert output.splitlines()[-1] == "63C2 VERIFY_FAILED(2 tries left)"  # the try stayed consumed


def test_info_summarises_roles_and_tries_from_the_state(tmp_path: Path) -> None:
    state = tmp_path / "card"
    invoke("init", "--profile", "iso", "--state", str(state))
    invoke("apdu", "--profile", "iso", "--state", str(state), SELECT_ISO, VERIFY_WRONG)
    code, output = invoke("info", "--profile", "iso", "--state", str(state), "--json")
    assert code == 0
    summary = json.loads(output)
    assert summary["profile"] == "iso"
    assert [applet["name"] for applet in summary["applets"]] == ["iso"]
    rendered = json.dumps(summary["security"])
    assert '"user"' in rendered and '"tries_left": 2' in rendered

    code, text = invoke("info", "--profile", "iso", "--state", str(state))
    assert code == 0 and "profile: iso" in text


def test_state_of_another_profile_is_refused_and_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "card"
    invoke("init", "--profile", "iso", "--state", str(state))
    before = (state / "state.json").read_bytes()
    code, output = invoke("apdu", "--profile", "gids", "--state", str(state), SELECT_ISO)
    assert code == 1
    assert "created from profile 'iso', not 'gids'" in output
    assert (state / "state.json").read_bytes() == before


def test_corrupt_state_is_named_and_never_overwritten(tmp_path: Path) -> None:
    state = tmp_path / "card"
    invoke("init", "--profile", "iso", "--state", str(state))
    (state / "state.json").write_text('{"schema": 1, "card": ')
    code, output = invoke("apdu", "--profile", "iso", "--state", str(state), SELECT_ISO)
    assert code == 1
    assert "state.json" in output and "line 1" in output
    assert (state / "state.json").read_text() == '{"schema": 1, "card": '


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("apdu", "--profile", "no-such-profile", "--ephemeral", SELECT_ISO), "no-such-profile"),
        (("run", "--vpcd", "localhost", "--ephemeral"), "--vpcd"),
        (("run", "--profile", "iso", "--profile", "iso", "--state", "/tmp/x"), "one --state per --profile"),
        (("run", "--state", "/tmp/x", "--ephemeral"), "exclude each other"),
    ],
)
def test_bad_command_line_values_get_a_clear_error(args: tuple[str, ...], message: str) -> None:
    code, output = invoke(*args)
    assert code != 0
    assert message in output


def test_bad_profile_file_is_named_with_the_key(tmp_path: Path) -> None:
    profile = tmp_path / "broken.toml"
    profile.write_text('description = "x"\natr = "3B 00 11"\n[applets.iso]\n')
    code, output = invoke("apdu", "--profile", str(profile), "--ephemeral", SELECT_ISO)
    assert code == 1
    assert "broken.toml" in output and "atr" in output
