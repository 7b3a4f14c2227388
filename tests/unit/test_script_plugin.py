"""The pytest plugin's fixtures and helpers, used the way a project testing its card would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vcard.pytest_plugin import ApduSession, pcsc_unavailable

ISO_AID = "F0 76 63 61 72 64 01"


@pytest.mark.vcard_profile("iso")
def test_send_checks_status_word_and_data(vcard_apdu: ApduSession) -> None:
    vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]")
    vcard_apdu.send("00 20 00 81", sw="63C?")
    response = vcard_apdu.send("00 20 00 81 [${PIN}]", PIN=b"123456")
    assert response.sw == 0x9000 and response.data == b""
    challenge = vcard_apdu.send("00 84 00 00 10", data="* ")
    assert len(challenge.data) == 16


@pytest.mark.vcard_profile("iso")
def test_send_failure_message_shows_expected_and_got(vcard_apdu: ApduSession) -> None:
    with pytest.raises(AssertionError) as caught:
        vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]", sw=0x6A82)
    assert str(caught.value).splitlines() == [
        "> 00 A4 04 00 07 F0 76 63 61 72 64 01",
        "expected SW 6A82, got 9000 (SUCCESS)",
        "got: 9000 (SUCCESS)",
    ]


@pytest.mark.vcard_profile("iso")
def test_check_takes_a_whole_expectation(vcard_apdu: ApduSession) -> None:
    vcard_apdu.check(f"00 A4 04 00 [{ISO_AID}]", "9000")
    with pytest.raises(AssertionError, match="expected data 01 02"):
        vcard_apdu.check(f"00 A4 04 00 [{ISO_AID}]", "01 02 9000")


@pytest.mark.vcard_profile("iso")
def test_run_script_reports_failing_cases(vcard_apdu: ApduSession) -> None:
    vcard_apdu.run_script(f"reset\n> 00 A4 04 00 [{ISO_AID}]\n< 9000\n")
    with pytest.raises(AssertionError, match=r"FAIL .*\n.*<run_script>:3: status word did not match"):
        vcard_apdu.run_script(f"reset\n> 00 A4 04 00 [{ISO_AID}]\n< 6A82\n")


@pytest.mark.vcard_profile("iso")
def test_card_state_lives_under_tmp_path(vcard_card: Any, tmp_path: Path) -> None:
    assert vcard_card.state_dir == tmp_path / "vcard-state"
    assert (tmp_path / "vcard-state" / "state.json").exists()


def test_default_profile_is_piv(vcard_profile: str) -> None:
    assert vcard_profile == "piv"


@pytest.mark.vcard_profile("iso")
def test_each_test_gets_a_fresh_card_part_1(vcard_apdu: ApduSession) -> None:
    vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]")
    vcard_apdu.send("00 20 00 81 [39393939 3939]", sw=0x63C2)


@pytest.mark.vcard_profile("iso")
def test_each_test_gets_a_fresh_card_part_2(vcard_apdu: ApduSession) -> None:
    vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]")
    vcard_apdu.send("00 20 00 81", sw=0x63C3)  # not 63C2: part 1's wrong PIN stayed on its own card


def test_pcsc_unavailable_names_the_missing_reader() -> None:
    reason = pcsc_unavailable(7)
    assert reason is not None
    assert "Virtual PCD 00 07" in reason or "pcscd" in reason or "pyscard" in reason


@pytest.mark.vcard_profile("iso")
def test_computed_status_words_see_the_keyword_variables(vcard_apdu: ApduSession) -> None:
    vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]")
    vcard_apdu.send("00 20 00 81", sw="63${T}", T=b"\xc3")
    with pytest.raises(AssertionError, match=r"expected SW 63C2, got 63C3"):
        vcard_apdu.send("00 20 00 81", sw="63${sub(T, 1)}", T=b"\xc3")


@pytest.mark.vcard_profile("iso")
def test_check_reads_the_expectation_as_a_script_does(vcard_apdu: ApduSession) -> None:
    """The status word is the last word even when an expression in it has spaces, as after '<'."""
    vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]")
    vcard_apdu.check("00 20 00 81", "${cat(0x63, 0xC3)}")
    vcard_apdu.check("00 84 00 00 08", "/(?P<C>.{16})/ 9000")
    with pytest.raises(AssertionError, match=r"expected data \(no data\)"):
        vcard_apdu.check("00 84 00 00 08", "9000")


@pytest.mark.vcard_profile("iso")
def test_bad_patterns_fail_the_test_with_the_reason(vcard_apdu: ApduSession) -> None:
    with pytest.raises(AssertionError, match=r"bad pattern '90 00': <send>: status word '00'"):
        vcard_apdu.check(f"00 A4 04 00 [{ISO_AID}]", "90 00")
    with pytest.raises(AssertionError, match=r"\$\{X\}: variable X is not set"):
        vcard_apdu.send(f"00 A4 04 00 [{ISO_AID}]", data="${X}")
