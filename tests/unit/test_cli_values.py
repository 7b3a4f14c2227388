"""Command-line values that used to be accepted silently or end in an exception name."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from vcard.cli import main

SELECT_PIV = "00A4040005A000000308"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("apdu", "--ephemeral", ""), "APDU 1"),
        (("apdu", "--ephemeral", SELECT_PIV, "   "), "APDU 2"),
        (("apdu", "--ephemeral", "00A4"), "at least CLA INS P1 P2"),
        (("apdu", "--ephemeral", "00 A4 04 00 [A0 00"), "never closed"),
        (("apdu", "--ephemeral", "00 20 00 80 [${PIN}]"), "PIN"),
        (("md", "info", "--ephemeral", "--delay-ms", "-5"), "--delay-ms"),
    ],
)
def test_bad_values_get_a_clear_error_naming_the_argument(args: tuple[str, ...], message: str) -> None:
    code, output = invoke(*args)
    assert code == 2, output
    assert message in output
    assert "Error" in output and "Traceback" not in output
    assert "ValueError" not in output


@pytest.mark.parametrize(("command", "arguments"), [(("apdu",), (SELECT_PIV,)), (("md", "info"), ())])
def test_state_and_ephemeral_exclude_each_other(
    tmp_path: Path, command: tuple[str, ...], arguments: tuple[str, ...]
) -> None:
    state = tmp_path / "card"
    code, output = invoke(*command, "--ephemeral", "--state", str(state), *arguments)
    assert code == 2, output
    assert "exclude each other" in output
    assert not state.exists()  # nothing was created behind the user's back


def test_apdu_accepts_the_script_data_syntax() -> None:
    code, output = invoke(
        "apdu", "--ephemeral", "00 A4 04 00 [A0 00 00 03 08]", "00 20 00 80 [31 32 33 34 35 36 FF FF]"
    )
    assert code == 0, output
    assert output.splitlines()[-1] == "9000 SUCCESS"
