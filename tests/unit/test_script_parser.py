"""The APDU script format: what parses into what, and which mistakes are reported where."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcard.script.functions import ExpressionError, evaluate, parse_expression
from vcard.script.parser import (
    Assert,
    CallDefine,
    Location,
    Reset,
    ScriptError,
    Send,
    SetVar,
    parse_bytes,
    parse_data_pattern,
    parse_expectation,
    parse_script,
    parse_string,
    parse_sw,
    strip_comment,
)

HERE = Location("test.apdu", 1)


def test_command_hex_spaces_and_lc_group() -> None:
    template = parse_bytes("00 A4 04 00 [A0 00 00 03 08] 00", HERE)
    assert template.render({}) == bytes.fromhex("00A4040005A00000030800")


def test_lc_group_uses_extended_length_over_255_bytes() -> None:
    template = parse_bytes("00 DB 3F FF [${DATA}] 0000", HERE)
    rendered = template.render({"DATA": b"\xaa" * 300})
    assert rendered[:7] == bytes.fromhex("00DB3FFF00012C")
    assert len(rendered) == 7 + 300 + 2


def test_command_with_variables_text_and_functions() -> None:
    template = parse_bytes('00 20 00 80 [${pad(PIN, 8, 0xFF)}] "x"', HERE)
    assert template.render({"PIN": b"123456"}) == bytes.fromhex("0020008008313233343536FFFF78")


def test_odd_hex_digits_are_reported_with_location() -> None:
    with pytest.raises(ScriptError, match=r"^test.apdu:1: odd number of hex digits"):
        parse_bytes("00 A4 0", HERE)


def test_unexpected_character_is_reported() -> None:
    with pytest.raises(ScriptError, match=r"test.apdu:1: unexpected 'Z'"):
        parse_bytes("00 Z4", HERE)


@pytest.mark.parametrize(
    ("text", "data", "matches"),
    [
        ("9000", b"", True),
        ("01 02 9000", b"\x01\x02", True),
        ("01 02 9000", b"\x01\x03", False),
        ("01 ?2 9000", b"\x01\xf2", True),
        ("01 * 9000", b"\x01\x02\x03", True),
        ("01 * 9000", b"\x02", False),
        ("* 9000", b"\x99" * 40, True),
        ("any 9000", b"", True),
        ("/7C0A81.*/ 9000", bytes.fromhex("7C0A8108") + b"\x00" * 8, True),
        ("/7C0A81.*/ 9000", bytes.fromhex("7C0B"), False),
    ],
)
def test_data_patterns(text: str, data: bytes, matches: bool) -> None:
    expectation = parse_expectation(text, HERE)
    assert (expectation.data.match(data, {}) is not None) is matches


def test_capture_fixed_and_rest() -> None:
    pattern = parse_data_pattern("7C 0A 80 08 {W:8} {REST:*}", HERE)
    captured = pattern.match(bytes.fromhex("7C0A8008") + bytes(range(8)) + b"\xee\xff", {})
    assert captured == {"W": bytes(range(8)), "REST": b"\xee\xff"}


def test_regex_named_group_captures_bytes() -> None:
    pattern = parse_data_pattern("/7C0A8108(?P<C>.{16})/", HERE)
    assert pattern.match(bytes.fromhex("7C0A8108") + b"\x11" * 8, {}) == {"C": b"\x11" * 8}


def test_substitution_in_expected_data() -> None:
    pattern = parse_data_pattern("82 08 ${X}", HERE)
    assert pattern.match(bytes.fromhex("8208") + b"\x01" * 8, {"X": b"\x01" * 8}) == {}
    assert pattern.match(bytes.fromhex("8208") + b"\x02" * 8, {"X": b"\x01" * 8}) is None


@pytest.mark.parametrize(
    ("text", "sw", "matches"),
    [
        ("9000", 0x9000, True),
        ("9000", 0x6A82, False),
        ("63C?", 0x63C2, True),
        ("63C?", 0x6300, False),
        ("6A82|6A86", 0x6A86, True),
        ("SECURITY_STATUS_NOT_SATISFIED", 0x6982, True),
        ("????", 0x1234, True),
    ],
)
def test_status_words(text: str, sw: int, matches: bool) -> None:
    assert (parse_sw(text, HERE).match(sw) is not None) is matches


def test_status_word_capture() -> None:
    assert parse_sw("61{LEFT}", HERE).match(0x6110) == {"LEFT": b"\x10"}


def test_status_word_with_a_space_is_explained() -> None:
    with pytest.raises(ScriptError, match=r"test.apdu:1: status word '00' should be four hex digits"):
        parse_expectation("01 02 90 00", HERE)


def test_comments_are_stripped_but_not_inside_quotes() -> None:
    assert strip_comment("00 A4 # select") == "00 A4"
    assert strip_comment('set X = "a # b"  # real') == 'set X = "a # b"'
    assert strip_comment("# whole line") == ""


SCRIPT = """
# a complete script
var PIN = "123456"
var KEY = 0102030405060708 0102030405060708 0102030405060708

define select
  reset
  > 00 A4 04 00 [A0 00 00 03 08] 00
  < * 9000
end

group "05 VERIFY"
setup select

case "right PIN"
  > 00 20 00 80 [${pad(PIN, 8, 0xFF)}]
  < 9000
  set X = ${3des_encrypt(KEY, 0x0000000000000000)}
  assert ${X} == ${3des_encrypt(KEY, 0x0000000000000000)}
end

case "block the PIN" destructive
  call select
  > 00 20 00 80 \\
    08 3132333435363737
  < 63C?
end
"""


def test_full_script_structure() -> None:
    script = parse_string(SCRIPT, "s.apdu")
    assert list(script.variables) == ["PIN", "KEY"]
    assert script.variables["PIN"].text is True
    assert script.variables["KEY"].text is False
    assert [c.name for c in script.cases] == ["right PIN", "block the PIN"]
    first, second = script.cases
    assert first.group == "05 VERIFY" and first.setup == "select" and not first.destructive
    assert second.destructive
    assert [type(s) for s in first.steps] == [Send, SetVar, Assert]
    assert [type(s) for s in second.steps] == [CallDefine, Send]
    assert isinstance(script.defines["select"].steps[0], Reset)
    # the continuation line joined both halves of the command
    send = second.steps[1]
    assert isinstance(send, Send)
    assert send.command.render({}) == bytes.fromhex("002000800831323334353637 37".replace(" ", ""))
    assert send.location.line == 24


def test_steps_outside_a_case_form_an_implicit_case() -> None:
    script = parse_string("> 00 A4 04 00\n< * ????\n> 00 B0 00 00\n< * ????\n", "quick.apdu")
    assert len(script.cases) == 1
    assert script.cases[0].name == "quick.apdu:1"
    assert len(script.cases[0].steps) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("> 00 A4\n", r"x.apdu:1: command has no expected response"),
        ("> 00 A4\n> 00 A4\n< 9000\n", r"x.apdu:1: command has no expected response"),
        ("< 9000\n", r"x.apdu:1: '<' without a '>'"),
        ("case a\n> 00\n< 9000\n", r"x.apdu:1: case 'a' is never closed"),
        ("end\n", r"x.apdu:1: 'end' without"),
        ("case a\ncase b\n", r"x.apdu:2: 'case' is not allowed inside case 'a'"),
        ("frobnicate\n", r"x.apdu:1: unknown statement 'frobnicate'"),
        ("case a b\nend\n", r"x.apdu:1: unknown case option 'b'"),
        ("case a\ncall nothing\nend\n", r"x.apdu:2: call nothing: no such define"),
        ("setup nothing\n", r"x.apdu:1: setup nothing: no such define"),
        ("define d\ncall d\nend\n", r"x.apdu:1: define d calls itself"),
        ("> 00 ${nofunc(1)}\n< 9000\n", r"x.apdu:1: unknown function nofunc"),
        ("> 00 ${pad(X, 8)}\n< 9000\n", r"x.apdu:1: pad\(\) takes 3 arguments, got 2"),
        ("> 00 ${pad(X, 8, 255)}\n< 9000\n", r"x.apdu:1: pad\(\) argument 3 is bytes"),
        ("> 00 ${X\n< 9000\n", r"x.apdu:1: '\$\{' at column .* is never closed"),
        ("> 00\n< /[/ 9000\n", r"x.apdu:2: bad regular expression"),
        ("> 00\n< {X:y} 9000\n", r"x.apdu:2: bad capture"),
        ("> 00\n< {X:1} {X:1} 9000\n", r"x.apdu:2: X is captured twice"),
        ("var 1X = 00\n", r"x.apdu:1: var needs 'NAME = VALUE'"),
        ("var X = 00\nvar X = 01\n", r"x.apdu:2: var X already has another default at x.apdu:1"),
        ("case a\nassert ${X}\nend\n", r"x.apdu:2: assert needs 'VALUE == PATTERN'"),
        ("> 00\n< {X:65537} 9000\n", r"x.apdu:2: \{X:65537\}: no response carries more than 65536 bytes"),
    ],
)
def test_errors_name_file_line_and_problem(text: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        parse_string(text, "x.apdu")


def test_include_is_relative_and_cycles_are_reported(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "common.apdu").write_text("define sel\n  reset\nend\nvar A = 01\n")
    (tmp_path / "main.apdu").write_text('include "lib/common.apdu"\ncase x\n  call sel\nend\n')
    script = parse_script(tmp_path / "main.apdu")
    assert "sel" in script.defines and "A" in script.variables
    (tmp_path / "a.apdu").write_text("include b.apdu\n")
    (tmp_path / "b.apdu").write_text("include a.apdu\n")
    with pytest.raises(ScriptError, match=r"b.apdu:1: include cycle: a.apdu -> b.apdu -> a.apdu"):
        parse_script(tmp_path / "a.apdu")


def test_a_file_included_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "common.apdu").write_text("define sel\n  reset\nend\n")
    (tmp_path / "a.apdu").write_text("include common.apdu\ncase a\n  call sel\nend\n")
    (tmp_path / "b.apdu").write_text("include common.apdu\ncase b\n  call sel\nend\n")
    script = parse_script([tmp_path / "a.apdu", tmp_path / "b.apdu"])
    assert [case.name for case in script.cases] == ["a", "b"]


def test_a_file_named_first_is_not_read_again_by_an_include(tmp_path: Path) -> None:
    """`vcard script common.apdu suite.apdu` must not see common's defines twice."""
    (tmp_path / "common.apdu").write_text("define sel\n  reset\nend\n")
    (tmp_path / "suite.apdu").write_text("include common.apdu\ncase a\n  call sel\nend\n")
    script = parse_script([tmp_path / "common.apdu", tmp_path / "suite.apdu"])
    assert list(script.defines) == ["sel"] and [case.name for case in script.cases] == ["a"]


def test_a_tab_may_follow_a_keyword() -> None:
    script = parse_string('case\t"tabbed"\n\treset\nend\n', "t.apdu")
    assert [case.name for case in script.cases] == ["tabbed"]
    assert isinstance(script.cases[0].steps[0], Reset)


def test_missing_include_names_the_including_line(tmp_path: Path) -> None:
    (tmp_path / "main.apdu").write_text("\n\ninclude nope.apdu\n")
    with pytest.raises(ScriptError, match=r"main.apdu:3: cannot read .*nope.apdu"):
        parse_script(tmp_path / "main.apdu")


# ---- functions -------------------------------------------------------------------


def test_3des_encrypt_matches_a_known_vector() -> None:
    # 3DES with K1=K2=K3 degenerates to single DES: the classic FIPS 81 vector.
    key = bytes.fromhex("0123456789ABCDEF") * 3
    expr = parse_expression("3des_encrypt(KEY, 0x4E6F772069732074)")
    assert evaluate(expr, {"KEY": key}) == bytes.fromhex("3FA40E8A984D4815")


def test_aes_encrypt_matches_fips197() -> None:
    expr = parse_expression(
        "aes_encrypt(0x000102030405060708090a0b0c0d0e0f, 0x00112233445566778899aabbccddeeff)"
    )
    assert evaluate(expr, {}) == bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_rsa_public_and_ecdsa_verify_check_real_keys() -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

    rsa_key = rsa.generate_private_key(65537, 1024)
    numbers = rsa_key.public_key().public_numbers()
    modulus = numbers.n.to_bytes(128, "big")
    signature = rsa_key.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    recovered = evaluate(parse_expression("rsa_public(N, 0x010001, S)"), {"N": modulus, "S": signature})
    assert recovered[:2] == b"\x00\x01" and len(recovered) == 128
    ec_key = ec.generate_private_key(ec.SECP256R1())
    point = ec_key.public_key().public_bytes(
        encoding=serialization.Encoding.X962,
        format=serialization.PublicFormat.UncompressedPoint,
    )
    digest = b"\x42" * 32
    der = ec_key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    verify = parse_expression("ecdsa_verify(P, D, S)")
    assert evaluate(verify, {"P": point, "D": digest, "S": der}) == b"\x01"
    assert evaluate(verify, {"P": point, "D": b"\x43" * 32, "S": der}) == b"\x00"


def test_encrypt_by_cipher_name() -> None:
    key = bytes(range(24))
    block = bytes(8)
    assert evaluate(parse_expression('encrypt("3des", K, B)'), {"K": key, "B": block}) == evaluate(
        parse_expression("3des_encrypt(K, B)"), {"K": key, "B": block}
    )
    assert (
        len(evaluate(parse_expression('encrypt("aes", K, 0x00000000000000000000000000000000)'), {"K": key}))
        == 16
    )


def test_nested_functions_and_numbers() -> None:
    expr = parse_expression('cat(slice(X, 1, 2), len(X), byte(255), "A")')
    assert evaluate(expr, {"X": b"\x01\x02\x03\x04"}) == b"\x02\x03\x04\xff" + b"A"


def test_evaluation_errors_are_expression_errors() -> None:
    with pytest.raises(ExpressionError, match="variable NOPE is not set"):
        evaluate(parse_expression("NOPE"), {})
    with pytest.raises(ExpressionError, match="3des key must be 24 bytes"):
        evaluate(parse_expression("3des_encrypt(0x00, 0x0000000000000000)"), {})
    with pytest.raises(ExpressionError, match=r"len\(\): int too big to convert"):
        evaluate(parse_expression("len(X)"), {"X": bytes(65536)})


@given(st.binary(min_size=1, max_size=300))
def test_hex_rendering_round_trips(data: bytes) -> None:
    assert parse_bytes(data.hex(" "), HERE).render({}) == data
    assert parse_data_pattern(data.hex(), HERE).match(data, {}) == {}
