"""A state the code cannot read is refused, named, and left byte for byte as it was.

Every command that opens a card (`info`, `apdu`, `run`) must print one line naming
state.json and the dotted field, exit non-zero without a traceback, and neither
rewrite nor touch the file: no re-provisioned applet, no re-initialised security
section, no PIN counters given back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vcard.cli import main

SELECT_PIV = "00A4040009A00000030800001000"
VERIFY_PIV_WRONG = "002000800839393939393939FF"
BAD_PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH\n-----END PRIVATE KEY-----\n"

Edit = Callable[[dict[str, Any]], None]


def invoke(*args: str) -> tuple[int, str]:
    # catch_exceptions=False: an escaping exception (a traceback for the user) fails the test.
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def make_card(tmp_path: Path, profile: str) -> Path:
    state = tmp_path / profile
    code, output = invoke("init", "--profile", profile, "--state", str(state))
    assert code == 0, output
    return state


def edit_state(state: Path, edit: Edit) -> tuple[bytes, int]:
    path = state / "state.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    # An mtime in the past, so a rewrite within the same clock tick would still show.
    os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return path.read_bytes(), path.stat().st_mtime_ns


def assert_refused(state: Path, profile: str, field: str, before: tuple[bytes, int], *commands: str) -> None:
    path = state / "state.json"
    for command in commands or ("info", "apdu", "run"):
        args = [command, "--profile", profile, "--state", str(state)]
        if command == "apdu":
            args.append(SELECT_PIV)
        code, output = invoke(*args)
        assert code != 0, f"{command} accepted the state:\n{output}"
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1, output
        assert f"{path}: {field}:" in lines[0], lines[0]
        assert "Traceback" not in output
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before, f"{command} rewrote {path}"


def _set(path: str, value: Any) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _delete(path: str) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        del node[last]

    return edit


PIV_CASES: list[tuple[str, Edit, str]] = [
    ("unknown applet schema", _set("applets.piv.schema", 2), "applets.piv.schema"),
    ("missing applet schema", _delete("applets.piv.schema"), "applets.piv.schema"),
    ("keys of the wrong type", _set("applets.piv.keys", "none"), "applets.piv.keys"),
    ("objects of the wrong type", _set("applets.piv.objects", []), "applets.piv.objects"),
    ("object value not hex", _set("applets.piv.objects.5FC102", "xyz"), "applets.piv.objects.5FC102"),
    ("corrupt private key PEM", _set("applets.piv.keys.F9.pem", BAD_PEM), "applets.piv.keys.F9.pem"),
    ("unknown key algorithm", _set("applets.piv.keys.F9.algorithm", 99), "applets.piv.keys.F9.algorithm"),
    ("key of another algorithm", _set("applets.piv.keys.F9.algorithm", 7), "applets.piv.keys.F9.algorithm"),
    ("bad pin policy", _set("applets.piv.keys.F9.pin_policy", "never"), "applets.piv.keys.F9.pin_policy"),
    ("serial of the wrong type", _set("applets.piv.serial", "123"), "applets.piv.serial"),
    ("missing management", _delete("applets.piv.management"), "applets.piv.management"),
    ("missing applet section", _delete("applets.piv"), "applets.piv"),
    ("missing security section", _delete("security"), "security"),
    ("roles of the wrong type", _set("security.roles", [1, 2]), "security.roles"),
    ("unknown security format", _set("security.format", 7), "security.format"),
    ("counter not a number", _set("security.roles.1.tries_left", "three"), "security.roles.1.tries_left"),
    ("counter above the limit", _set("security.roles.1.tries_left", 9), "security.roles.1.tries_left"),
    ("salt not hex", _set("security.roles.1.secret.salt", "zz"), "security.roles.1.secret.salt"),
    ("role of another type", _set("security.roles.1.type", "challenge"), "security.roles.1.type"),
    ("role record not an object", _set("security.roles.1", "pin"), "security.roles.1"),
    ("role record missing", _delete("security.roles.1"), "security.roles.1"),
    ("missing applets", _delete("applets"), "applets"),
    ("card of the wrong type", _set("card", "x"), "card"),
    ("missing profile", _delete("profile"), "profile"),
]


@pytest.mark.parametrize(("edit", "field"), [case[1:] for case in PIV_CASES], ids=[c[0] for c in PIV_CASES])
def test_unreadable_piv_card_state_is_refused_and_untouched(tmp_path: Path, edit: Edit, field: str) -> None:
    state = make_card(tmp_path, "piv")
    before = edit_state(state, edit)
    assert_refused(state, "piv", field, before)


GIDS_CASES: list[tuple[str, Edit, str]] = [
    ("missing lifecycle", _delete("applets.gids.lifecycle"), "applets.gids.lifecycle"),
    ("unknown lifecycle", _set("applets.gids.lifecycle", "dead"), "applets.gids.lifecycle"),
    ("files of the wrong type", _set("applets.gids.files", {"A010": 5}), "applets.gids.files.A010"),
    ("missing files", _delete("applets.gids.files"), "applets.gids.files"),
    ("DO not hex", _set("applets.gids.files.A010.dos.DF21", "zz"), "applets.gids.files.A010.dos.DF21"),
    ("corrupt key PEM", _set("applets.gids.files.B080.key", BAD_PEM), "applets.gids.files.B080.key"),
    ("FCP not hex", _set("applets.gids.files.A010.fcp", "62ZZ"), "applets.gids.files.A010.fcp"),
]


@pytest.mark.parametrize(("edit", "field"), [case[1:] for case in GIDS_CASES], ids=[c[0] for c in GIDS_CASES])
def test_unreadable_gids_card_state_is_refused_and_untouched(tmp_path: Path, edit: Edit, field: str) -> None:
    state = make_card(tmp_path, "gids")
    before = edit_state(state, edit)
    assert_refused(state, "gids", field, before, "info", "apdu")


def test_a_blocked_pin_stays_blocked_when_the_security_section_is_removed(tmp_path: Path) -> None:
    state = make_card(tmp_path, "piv")
    for _ in range(3):
        invoke("apdu", "--profile", "piv", "--state", str(state), SELECT_PIV, VERIFY_PIV_WRONG)
    path = state / "state.json"
    code, output = invoke("info", "--profile", "piv", "--state", str(state), "--json")
    assert next(r for r in json.loads(output)["security"]["roles"] if r["role"] == 1)["tries_left"] == 0
    # The tries went to the counters record; state.json keeps the values of its last whole save.
    security = json.loads(path.read_text())["security"]
    before = edit_state(state, _delete("security"))
    assert_refused(state, "piv", "security", before, "info", "apdu")
    # Put the section back: the card is still blocked, no try was handed out.
    edit_state(state, _set("security", security))
    code, output = invoke("info", "--profile", "piv", "--state", str(state), "--json")
    assert code == 0, output
    pin = next(role for role in json.loads(output)["security"]["roles"] if role["role"] == 1)
    assert pin["blocked"] is True and pin["tries_left"] == 0


def test_a_valid_state_still_opens_and_keeps_its_keys(tmp_path: Path) -> None:
    state = make_card(tmp_path, "piv")
    path = state / "state.json"
    before = json.loads(path.read_text())["applets"]["piv"]["keys"]
    code, output = invoke("info", "--profile", "piv", "--state", str(state), "--json")
    assert code == 0, output
    piv = next(applet for applet in json.loads(output)["applets"] if applet["name"] == "piv")
    assert "F9" in piv["keys"]
    assert json.loads(path.read_text())["applets"]["piv"]["keys"] == before


def test_state_file_replaced_by_a_directory_is_refused_cleanly(tmp_path: Path) -> None:
    state = make_card(tmp_path, "iso")
    (state / "state.json").unlink()
    (state / "state.json").mkdir()
    for command in ("info", "apdu"):
        args = [command, "--profile", "iso", "--state", str(state)] + (
            ["00A4040005F076636172"] * (command == "apdu")
        )
        code, output = invoke(*args)
        assert code == 1
        assert f"{state / 'state.json'}: " in output and "not a regular file" in output
    assert (state / "state.json").is_dir()
