"""The shipped conformance suites pass against vcard's own PIV and GIDS cards (in-process).

The same suites run through pcscd in tests/integration/test_script_pcsc.py.
"""

from __future__ import annotations

import pytest

from vcard.pytest_plugin import ApduSession
from vcard.script.cli import CONFORMANCE_DIR, conformance_path
from vcard.script.parser import parse_script
from vcard.script.runner import Runner, RunResult, Status, format_result


def _run(connection: object, *suites: str, destructive: bool = True, **overrides: str) -> RunResult:
    script = parse_script([conformance_path(name) for name in suites])
    return Runner(script, connection, overrides, destructive=destructive).run()  # type: ignore[arg-type]


def _report(outcome: RunResult) -> str:
    return "\n".join(format_result(r) for r in outcome.results if r.status is not Status.PASSED)


def test_suites_are_shipped_and_parse() -> None:
    names = sorted(path.name for path in CONFORMANCE_DIR.glob("*.apdu"))
    assert {"piv.apdu", "gids.apdu", "piv-yubico.apdu"} <= set(names)
    for name in ("piv", "gids", "piv-yubico"):
        script = parse_script(conformance_path(name))
        assert script.cases
        assert any(case.destructive for case in script.cases)
        assert all(case.group for case in script.cases)


def test_piv_groups_follow_sp800_85a() -> None:
    groups = {case.group for case in parse_script(conformance_path("piv")).cases}
    assert groups == {
        "05 SELECT",
        "05 GET DATA",
        "05 VERIFY",
        "05 CHANGE REFERENCE DATA",
        "05 RESET RETRY COUNTER",
        "05 GENERAL AUTHENTICATE",
        "05 PUT DATA",
        "05 GENERATE",
    }


@pytest.mark.vcard_profile("piv")
def test_piv_card_passes_the_piv_suites(vcard_connection: object) -> None:
    outcome = _run(vcard_connection, "piv", "piv-yubico")
    assert outcome.ok, _report(outcome)
    assert outcome.count(Status.PASSED) == len(outcome.results)


@pytest.mark.vcard_profile("piv-plain")
def test_plain_piv_card_passes_the_piv_suite_without_yubico_extensions(vcard_connection: object) -> None:
    outcome = _run(vcard_connection, "piv")
    assert outcome.ok, _report(outcome)
    assert outcome.count(Status.PASSED) == len(outcome.results)
    yubico = _run(vcard_connection, "piv-yubico", destructive=False)
    assert not yubico.ok  # GET VERSION and the other Yubico instructions answer 6D00


@pytest.mark.vcard_profile("gids")
def test_gids_card_passes_the_gids_suite(vcard_connection: object) -> None:
    outcome = _run(vcard_connection, "gids")
    assert outcome.ok, _report(outcome)
    assert outcome.count(Status.PASSED) == len(outcome.results)


@pytest.mark.vcard_profile("piv")
def test_non_destructive_piv_run_leaves_pins_as_they_were(
    vcard_connection: object, vcard_apdu: ApduSession
) -> None:
    outcome = _run(vcard_connection, "piv", "piv-yubico", destructive=False)
    assert outcome.ok, _report(outcome)
    assert outcome.count(Status.SKIPPED) > 0
    vcard_apdu.reset()
    vcard_apdu.send("00 A4 04 00 [A0 00 00 03 08] 00", data="61 *")
    vcard_apdu.send("00 20 00 80", sw=0x63C3)
    vcard_apdu.send("00 20 00 80 [31 32 33 34 35 36 FF FF]")
    vcard_apdu.send("00 24 00 81 [31 32 33 34 35 36 37 38 31 32 33 34 35 36 37 38]")


@pytest.mark.vcard_profile("gids")
def test_non_destructive_gids_run_leaves_the_pin_as_it_was(
    vcard_connection: object, vcard_apdu: ApduSession
) -> None:
    outcome = _run(vcard_connection, "gids", destructive=False)
    assert outcome.ok, _report(outcome)
    vcard_apdu.reset()
    vcard_apdu.send("00 A4 04 00 [A0 00 00 03 97 42 54 46 59] 00", data="61 *")
    vcard_apdu.check("00 CB 3F FF [5C 02 7F 71] 00", "7F 71 06 97 01 03 93 01 03 9000")
    vcard_apdu.send("00 20 00 80 [31 32 33 34 35 36]")


@pytest.mark.vcard_profile("piv")
def test_piv_suite_with_another_pin(vcard_apdu: ApduSession, vcard_connection: object) -> None:
    """--set reaches the suite: after changing the card's PIN, the suite passes only with --set PIN."""
    vcard_apdu.send("00 A4 04 00 [A0 00 00 03 08] 00", data="61 *")
    vcard_apdu.send("00 24 00 80 [31 32 33 34 35 36 FF FF 32 34 36 38 31 33 FF FF]")
    script = parse_script(conformance_path("piv"))
    right_pin = [case for case in script.cases if case.name == "05.14 VERIFY with the right PIN"]
    failing = Runner(script, vcard_connection).run_case(right_pin[0])  # type: ignore[arg-type]
    assert failing.status is Status.FAILED
    passing = _run(vcard_connection, "piv", destructive=False, PIN="246813")
    assert passing.ok, _report(passing)
