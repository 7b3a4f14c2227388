"""Running scripts: pass/fail/skip/error per case, captures, resets, readable failures, JUnit, the CLI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vcard.script.cli import script as script_command
from vcard.script.junit import write_junit
from vcard.script.parser import ScriptError, parse_string
from vcard.script.runner import Runner, Status, format_result, initial_variables


class EchoCard:
    """A fake card: answers `data-of-command + 9000`, counts resets; GET CHALLENGE gives a counter."""

    def __init__(self) -> None:
        self.resets = 0
        self.sent: list[bytes] = []
        self.counter = 0

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        if apdu[1] == 0x84:
            self.counter += 1
            return bytes([self.counter]) * 8 + b"\x90\x00"
        if apdu[1] == 0xEE:
            return b"\x6d\x00"
        return apdu[5:] + b"\x90\x00" if len(apdu) > 5 else b"\x90\x00"

    def reset(self) -> None:
        self.resets += 1


def run(text: str, card: Any = None, **kwargs: Any) -> Any:
    return Runner(parse_string(text, "t.apdu"), card or EchoCard(), **kwargs).run()


def test_pass_fail_and_skip() -> None:
    outcome = run(
        """
        case ok
          > 00 DA 00 00 [01 02]
          < 01 02 9000
        end
        case bad
          > 00 DA 00 00 [01 02]
          < 01 03 9000
        end
        case risky destructive
          > 00 DA 00 00
          < 9000
        end
        """
    )
    assert [r.status for r in outcome.results] == [Status.PASSED, Status.FAILED, Status.SKIPPED]
    assert not outcome.ok
    assert outcome.summary() == "3 cases: 1 passed, 1 failed, 0 errors, 1 skipped"


def test_failure_shows_sent_expected_got_and_first_difference() -> None:
    outcome = run("case bad\n> 00 DA 00 00 [01 02]\n< 01 03 9000\nend\n")
    failure = outcome.results[0]
    assert failure.message == "t.apdu:3: data did not match"
    assert failure.details.splitlines() == [
        "  sent:     00 DA 00 00 02 01 02",
        "  expected: 01 03 9000",
        "  got:      01 02 9000 (SUCCESS)",
        "  first difference at data byte 1: expected 03, got 02",
    ]
    text = format_result(failure)
    assert text.startswith("FAIL  bad\n      t.apdu:3: data did not match")


def test_wrong_status_word_is_named() -> None:
    outcome = run("case sw\n> 00 EE 00 00\n< 9000\nend\n")
    assert outcome.results[0].message == "t.apdu:3: status word did not match"
    assert "got:      6D00 (INS_NOT_SUPPORTED)" in outcome.results[0].details


def test_destructive_cases_run_when_asked() -> None:
    outcome = run("case risky destructive\n> 00 DA 00 00\n< 9000\nend\n", destructive=True)
    assert outcome.results[0].status is Status.PASSED


def test_first_failure_stops_the_case() -> None:
    card = EchoCard()
    run("case c\n> 00 EE 00 00\n< 9000\n> 00 DA 00 00\n< 9000\nend\n", card)
    assert len(card.sent) == 1


def test_captures_flow_into_later_commands_and_assertions() -> None:
    card = EchoCard()
    outcome = run(
        """
        case capture
          > 00 84 00 00 08
          < {C:8} 9000
          > 00 DA 00 00 [${C}]
          < ${C} 9000
          assert ${slice(C, 0, 2)} == 01 01
        end
        """,
        card,
    )
    assert outcome.results[0].status is Status.PASSED, format_result(outcome.results[0])
    assert card.sent[1] == bytes.fromhex("00DA000008") + b"\x01" * 8


def test_captures_do_not_leak_between_cases() -> None:
    outcome = run(
        """
        case one
          > 00 84 00 00 08
          < {C:8} 9000
        end
        case two
          > 00 DA 00 00 [${C}]
          < * 9000
        end
        """
    )
    assert outcome.results[1].status is Status.ERROR
    assert outcome.results[1].message == "t.apdu:7: ${C}: variable C is not set"


def test_failures_inside_defines_name_the_call_site() -> None:
    outcome = run(
        """
        define inner
          > 00 EE 00 00
          < 9000
        end
        define outer
          call inner
        end
        case c
          call outer
        end
        """
    )
    assert outcome.results[0].message == (
        "t.apdu:4: status word did not match (in inner called at t.apdu:7, in outer called at t.apdu:10)"
    )


def test_setup_and_reset_run_before_each_case() -> None:
    card = EchoCard()
    run(
        """
        define fresh
          reset
        end
        setup fresh
        case a
          > 00 DA 00 00
          < 9000
        end
        case b
          > 00 DA 00 00
          < 9000
        end
        """,
        card,
    )
    assert card.resets == 2


def test_computed_status_words_and_negated_asserts() -> None:
    card = EchoCard()
    outcome = run(
        """
        case tries
          set T = C3
          > 00 EE 00 00
          < 6D${sub(T, 0xC3)}
          > 00 EE 00 00
          < ${cat(0x6D, byte(0))}
          assert ${T} != C2
        end
        case wrong
          set T = C3
          > 00 EE 00 00
          < 63${sub(T, 1)}
        end
        case negated
          assert 0102 != 01 ??
        end
        """,
        card,
    )
    assert [r.status for r in outcome.results] == [Status.PASSED, Status.FAILED, Status.FAILED]
    assert "expected: 63C2" in outcome.results[1].details
    assert "expected: not 01 ??" in outcome.results[2].details


def test_failed_assert_is_readable() -> None:
    outcome = run("case a\nset X = 0102\nassert ${X} == 0103\nend\n")
    assert outcome.results[0].status is Status.FAILED
    assert outcome.results[0].details.splitlines()[1:3] == ["  expected: 01 03", "  got:      01 02"]


def test_overrides_are_read_like_the_default() -> None:
    script = parse_string('var PIN = "123456"\nvar KEY = 0102\n')
    values = initial_variables(script, {"PIN": "654321", "KEY": "0A0B"})
    assert values == {"PIN": b"654321", "KEY": b"\x0a\x0b"}
    assert initial_variables(script, {"PIN": '"x"'})["PIN"] == b"x"
    with pytest.raises(ScriptError, match="--set PUK: the scripts declare no variable PUK"):
        initial_variables(script, {"PUK": "1"})
    with pytest.raises(
        ScriptError, match=r"^--set KEY: odd number of hex digits in '0A0': write whole bytes$"
    ):
        initial_variables(script, {"KEY": "0A0"})


def test_variables_may_use_earlier_variables() -> None:
    script = parse_string('var PIN = "1234"\nvar PADDED = ${pad(PIN, 8, 0xFF)}\n')
    assert initial_variables(script, {"PIN": "99"})["PADDED"] == b"99" + b"\xff" * 6


def test_a_card_without_status_word_fails_the_case() -> None:
    class Mute(EchoCard):
        def transmit(self, apdu: bytes) -> bytes:
            return b"\x90"

    outcome = run("case a\n> 00 00 00 00\n< 9000\nend\n", Mute())
    assert outcome.results[0].message == "t.apdu:3: response has no status word"


# ---- against a real in-process card (the iso profile) ------------------------------

ISO_SCRIPT = """
var PIN = "123456"
define select_iso
  reset
  > 00 A4 04 00 [F0 76 63 61 72 64 01]
  < 9000
end
setup select_iso
group iso
case "PIN status before VERIFY"
  > 00 20 00 81
  < 63C3
end
case "VERIFY with the right PIN"
  > 00 20 00 81 [${PIN}]
  < 9000
  > 00 20 00 81
  < 9000
end
case "reset drops the PIN status"
  > 00 20 00 81 [${PIN}]
  < 9000
  reset
  > 00 A4 04 00 [F0 76 63 61 72 64 01]
  < 9000
  > 00 20 00 81
  < 63C?
end
case "GET CHALLENGE gives fresh bytes"
  > 00 84 00 00 08
  < {FIRST:8} 9000
  > 00 84 00 00 08
  < {SECOND:8} 9000
  assert ${FIRST} != ${SECOND}
end
case "wrong PIN decrements" destructive
  > 00 20 00 81 [${pad(PIN, 7, 0x39)}]
  < 63C2
end
"""


@pytest.mark.vcard_profile("iso")
def test_script_against_in_process_card(vcard_connection: Any) -> None:
    outcome = Runner(parse_string(ISO_SCRIPT, "iso.apdu"), vcard_connection, destructive=True).run()
    assert [r.status for r in outcome.results] == [Status.PASSED] * 5, "\n".join(
        format_result(r) for r in outcome.results
    )


# ---- JUnit --------------------------------------------------------------------------


def test_junit_counts_and_content(tmp_path: Path) -> None:
    outcome = run(
        """
        group g1
        case ok
          > 00 DA 00 00
          < 9000
        end
        case bad
          > 00 EE 00 00
          < 9000
        end
        group g2
        case broken
          > 00 DA 00 00 [${NOPE}]
          < 9000
        end
        case skipped destructive
          > 00 DA 00 00
          < 9000
        end
        """
    )
    path = tmp_path / "out" / "junit.xml"
    write_junit(outcome, path)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
    }
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert (suites["g1"].get("tests"), suites["g1"].get("failures")) == ("2", "1")
    assert (suites["g2"].get("errors"), suites["g2"].get("skipped")) == ("1", "1")
    bad = suites["g1"].find("testcase[@name='bad']")
    assert bad is not None
    failure = bad.find("failure")
    assert failure is not None and failure.get("message") == "t.apdu:9: status word did not match"
    assert failure.text is not None and "got:      6D00 (INS_NOT_SUPPORTED)" in failure.text
    assert suites["g2"].find("testcase[@name='skipped']/skipped") is not None
    assert bad.get("file") == "t.apdu" and bad.get("line") == "7"


# ---- the CLI ------------------------------------------------------------------------


def _cli(args: list[str]) -> Any:
    return CliRunner().invoke(script_command, args, catch_exceptions=False)


def test_cli_wrong_expectation_exits_non_zero_with_diff(tmp_path: Path) -> None:
    path = tmp_path / "wrong.apdu"
    path.write_text(
        "case select\n  > 00 A4 04 00 [F0 76 63 61 72 64 01]\n  < 6A82\nend\n"
        "case fine\n  > 00 A4 04 00 [F0 76 63 61 72 64 01]\n  < 9000\nend\n"
    )
    junit = tmp_path / "junit.xml"
    result = _cli([str(path), "--profile", "iso", "--junit", str(junit)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == "FAIL  select"
    assert lines[1] == f"      {path}:3: status word did not match"
    assert "expected: 6A82" in result.output
    assert "got:      9000 (SUCCESS)" in result.output
    assert "PASS  fine" in result.output
    assert lines[-1] == "2 cases: 1 passed, 1 failed, 0 errors, 0 skipped"
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures")) == ("2", "1")


def test_cli_passing_script_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "ok.apdu"
    path.write_text(
        'var PIN = "0000"\n> 00 A4 04 00 [F0 76 63 61 72 64 01]\n< 9000\n> 00 20 00 81 [${PIN}]\n< 63C2\n'
    )
    result = _cli([str(path), "--profile", "iso"])
    assert result.exit_code == 0, result.output  # 0000 is a wrong PIN: 63C2 as expected ...
    result = _cli([str(path), "--profile", "iso", "--set", "PIN=123456"])
    assert result.exit_code == 1  # ... and 123456 the right one: 9000, not 63C2
    path.write_text(path.read_text().replace("63C2", "9000|63C2"))
    result = _cli([str(path), "--profile", "iso", "--set", "PIN=123456"])
    assert result.exit_code == 0, result.output


def test_cli_script_errors_exit_2_before_sending(tmp_path: Path) -> None:
    path = tmp_path / "broken.apdu"
    path.write_text("case a\n  > 00 A4 0\n  < 9000\nend\n")
    result = CliRunner().invoke(script_command, [str(path), "--profile", "iso"])
    assert result.exit_code == 2
    assert f"{path}:2: odd number of hex digits" in result.output


def test_cli_needs_a_card_choice(tmp_path: Path) -> None:
    path = tmp_path / "a.apdu"
    path.write_text("")
    result = CliRunner().invoke(script_command, [str(path)])
    assert result.exit_code == 2
    assert "give exactly one of --reader NAME (PC/SC) or --profile NAME" in result.output


def test_cli_unknown_conformance_suite() -> None:
    result = CliRunner().invoke(script_command, ["--conformance", "nope", "--profile", "iso"])
    assert result.exit_code == 2
    assert "--conformance nope: no such suite" in result.output


def test_cli_case_filter(tmp_path: Path) -> None:
    path = tmp_path / "f.apdu"
    path.write_text(
        "group g\ncase keep\n> 00 A4 04 00 [F0 76 63 61 72 64 01]\n< 9000\nend\n"
        "case drop\n> 00\n< 9000\nend\n"
    )
    result = _cli([str(path), "--profile", "iso", "--case", "g / keep"])
    assert result.exit_code == 0, result.output
    assert "drop" not in result.output
