"""APDU scripts and conformance suites through the real pcscd + vpcd stack.

The same suites that pass in-process must pass through pcscd: this catches
transport problems (chaining, 61xx, resets) that the in-process card cannot show.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from vcard.host import PcscConnection
from vcard.pytest_plugin import ApduSession
from vcard.script.cli import conformance_path
from vcard.script.parser import parse_script
from vcard.script.runner import Runner, Status, format_result

pytestmark = pytest.mark.integration


def _run_suites(reader: str, *suites: str) -> Any:
    connection = PcscConnection(reader)
    try:
        script = parse_script([conformance_path(name) for name in suites])
        return Runner(script, connection, destructive=True).run()
    finally:
        connection.close()


def _report(outcome: Any) -> str:
    return "\n".join(format_result(r) for r in outcome.results if r.status is not Status.PASSED)


def test_piv_conformance_through_pcscd(start_card: Any) -> None:
    card = start_card("piv", 0)
    outcome = _run_suites(card.reader, "piv", "piv-yubico")
    assert outcome.ok, _report(outcome)
    assert outcome.count(Status.PASSED) == len(outcome.results)


def test_gids_conformance_through_pcscd(start_card: Any) -> None:
    card = start_card("gids", 0)
    outcome = _run_suites(card.reader, "gids")
    assert outcome.ok, _report(outcome)
    assert outcome.count(Status.PASSED) == len(outcome.results)


def test_cli_against_a_reader_fails_readably_and_writes_junit(start_card: Any, tmp_path: Path) -> None:
    card = start_card("piv", 0)
    script = tmp_path / "wrong.apdu"
    script.write_text(
        'group g\ncase "right"\n  reset\n  > 00 A4 04 00 [A0 00 00 03 08] 00\n  < 61 * 9000\nend\n'
        'case "wrong"\n  reset\n  > 00 A4 04 00 [A0 00 00 03 08] 00\n  < 6A82\nend\n'
    )
    junit = tmp_path / "junit.xml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vcard",
            "script",
            str(script),
            "--reader",
            card.reader,
            "--junit",
            str(junit),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "No such command 'script'" in result.stderr:
        pytest.fail("`vcard script` is not registered in vcard/cli.py (main.add_command(script))")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PASS  g / right" in result.stdout
    assert f"FAIL  g / wrong\n      {script}:10: status word and data did not match" in result.stdout
    assert "expected: 6A82" in result.stdout and "got:      61 " in result.stdout
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures")) == ("2", "1")


@pytest.mark.vcard_profile("gids")
def test_plugin_pcsc_fixture(vcard_pcsc_apdu: ApduSession, vcard_pcsc_reader: str) -> None:
    assert vcard_pcsc_reader.startswith("Virtual PCD")
    vcard_pcsc_apdu.send("00 A4 04 00 [A0 00 00 03 97 42 54 46 59] 00", data="61 12 4F 0B *")
    vcard_pcsc_apdu.send("00 20 00 80 [${PIN}]", PIN=b"123456")
    vcard_pcsc_apdu.run_script("> 00 20 00 80\n< 9000\n")
