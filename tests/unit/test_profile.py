"""Profile loading: every mistake in a profile names the file, the table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcard import atr, security
from vcard.profile import (
    PROFILE_DIR,
    Profile,
    ProfileError,
    TableReader,
    display_path,
    list_profile_names,
    list_profiles,
    load_profile,
)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so messages show the short relative name `p.toml`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "p.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def load_error(text: str, directory: Path) -> str:
    write(directory, text)
    with pytest.raises(ProfileError) as info:
        load_profile("./p.toml")
    return str(info.value)


# -- card-level keys ------------------------------------------------------------------

BAD_PROFILES = [
    ("description = 5", "p.toml: description: must be a string, got 5"),
    ('atr = "3B 8G"', "p.toml: atr: must be hex bytes as a string, got \"3B 8G\" ('G' is not a hex digit)"),
    ('atr = "3B 8"', 'p.toml: atr: must be hex bytes as a string, got "3B 8" (odd number of hex digits)'),
    ("atr = 3", "p.toml: atr: must be hex bytes as a string, got 3"),
    ('atr = "3B 80 80 01 00"', "p.toml: atr: not a valid ATR: check byte TCK is 00, should be 01"),
    ('atr = "3B"', "p.toml: atr: not a valid ATR: an ATR has 2 to 33 bytes, this one has 1"),
    ("default_applet = 1", "p.toml: default_applet: must be a string, got 1"),
    (
        'default_applet = "piv"',
        'p.toml: default_applet: must name one of the [applets.<type>] tables (declared: none), got "piv"',
    ),
    (
        'default_applet = "piv"\n[applets.iso]',
        'p.toml: default_applet: must name one of the [applets.<type>] tables (declared: iso), got "piv"',
    ),
    ("applets = 3", "p.toml: applets: must be a table ([applets]), got 3"),
    ("[applets]\npiv = 3", "p.toml: [applets] piv: must be a table ([applets.piv]), got 3"),
    ("[applets.foo]", "p.toml: [applets] foo: unknown applet type; known types: "),
    ("[applets.pvi]", 'p.toml: [applets] pvi: unknown applet type (did you mean "piv"?); known types: '),
    ("security = []", "p.toml: security: must be a table ([security]), got []"),
    (
        "[security]\nidle_reset_seconds = -1",
        "p.toml: [security] idle_reset_seconds: must be a number >= 0, got -1",
    ),
    (
        '[security]\nidle_reset_seconds = "5"',
        'p.toml: [security] idle_reset_seconds: must be a number >= 0, got "5"',
    ),
    ("[security]\nidle_reset_seconds = nan", "p.toml: [security] idle_reset_seconds: must be a number >= 0"),
    ("[security]\nidle_reset_seconds = true", "p.toml: [security] idle_reset_seconds: must be a number"),
    (
        "[security]\nidle_reinsert_seconds = -5",
        "p.toml: [security] idle_reinsert_seconds: must be a number >= 0, got -5",
    ),
    (
        '[security]\nsession_pins_survive_warm_reset = "yes"',
        'p.toml: [security] session_pins_survive_warm_reset: must be true or false, got "yes"',
    ),
    (
        "[security]\nsession_pins_survive_warm_reset = 1",
        "p.toml: [security] session_pins_survive_warm_reset: must be true or false, got 1",
    ),
    (
        "[security]\nroles = 3",
        "p.toml: [security] roles: must be an array of tables ([[security.roles]]), got 3",
    ),
    (
        "[security.roles]\nrole = 1",
        "p.toml: [security] roles: must be an array of tables ([[security.roles]]), got a table",
    ),
    ('descripton = "x"', 'p.toml: descripton: unknown key (did you mean "description"?)'),
    ("[securty]", 'p.toml: securty: unknown key (did you mean "security"?)'),
    ('zzz = 1\nqqq = 2', "p.toml: zzz: unknown key; qqq: unknown key"),
    ('description = "x', "p.toml: invalid TOML: "),
    ('description = "a"\ndescription = "b"', "p.toml: invalid TOML: "),
]


@pytest.mark.parametrize(("text", "message"), BAD_PROFILES, ids=[t for t, _ in BAD_PROFILES])
def test_bad_profile_message_names_file_table_and_key(in_tmp: Path, text: str, message: str) -> None:
    assert load_error(text, in_tmp).startswith(message)


def test_toml_syntax_error_gives_line_and_column(in_tmp: Path) -> None:
    message = load_error('description = "ok"\n\natr = = 3\n', in_tmp)
    assert message.startswith("p.toml: invalid TOML: ")
    assert "line 3" in message and "column" in message


def test_non_utf8_profile(in_tmp: Path) -> None:
    (in_tmp / "p.toml").write_bytes(b'description = "\xff"\n')
    with pytest.raises(ProfileError, match=r"^p\.toml: not valid UTF-8"):
        load_profile("p.toml")


def test_missing_file_and_directory(in_tmp: Path) -> None:
    with pytest.raises(ProfileError, match=r"^missing\.toml: no such profile file$"):
        load_profile("missing.toml")
    (in_tmp / "dir.toml").mkdir()
    with pytest.raises(ProfileError, match=r"^dir\.toml: is a directory"):
        load_profile("dir.toml")


def test_unknown_profile_name_lists_available_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("isoo")
    message = str(info.value)
    assert message.startswith('unknown profile "isoo" (did you mean "iso"?); available: ')
    for name in list_profile_names():
        assert name in message


def test_minimal_profile_defaults(in_tmp: Path) -> None:
    write(in_tmp, "")
    profile = load_profile("p.toml")
    assert profile == Profile(
        name="p",
        path=(in_tmp / "p.toml").resolve(),
        description="",
        atr=atr.build(b"vcard"),
        default_applet=None,
        applets={},
        roles=(),
        idle_reset_seconds=0.0,
        security={},
        session_pins_survive_warm_reset=False,
    )


def test_session_pins_survive_warm_reset_is_read_and_set_by_the_windows_like_profiles(in_tmp: Path) -> None:
    write(in_tmp, "[security]\nsession_pins_survive_warm_reset = true\nidle_reset_seconds = 5")
    profile = load_profile("p.toml")
    assert profile.session_pins_survive_warm_reset and profile.security == {}
    assert load_profile("multi-pin").session_pins_survive_warm_reset
    assert load_profile("tpm-vsc").session_pins_survive_warm_reset
    assert not load_profile("piv").session_pins_survive_warm_reset  # default: any reset ends them


def test_card_level_values_are_read(in_tmp: Path) -> None:
    card_atr = atr.build(b"other")
    write(
        in_tmp,
        f"""
description = "A test card"
atr = "{card_atr.hex(":")}"
default_applet = "iso"

[security]
idle_reset_seconds = 5
external_pin = {{ policy = "approve" }}

[applets.piv]
slots = ["9a"]

[applets.iso]
""",
        name="card.toml",
    )
    profile = load_profile(in_tmp / "card.toml")
    assert profile.name == "card"
    assert profile.path == (in_tmp / "card.toml").resolve()
    assert profile.description == "A test card"
    assert profile.atr == card_atr
    assert profile.default_applet == "iso"
    assert list(profile.applets) == ["piv", "iso"]  # file order
    assert profile.applets["piv"] == {"slots": ["9a"]}
    assert profile.applets["iso"] == {}
    assert profile.idle_reset_seconds == 5.0 and isinstance(profile.idle_reset_seconds, float)
    # Keys the loader does not own are passed on, parsed ones are not.
    assert profile.security == {"external_pin": {"policy": "approve"}}


def test_applet_types_can_be_given(in_tmp: Path) -> None:
    write(in_tmp, "[applets.custom]\n[applets.piv]")
    with pytest.raises(ProfileError, match=r"\[applets\] piv: unknown applet type; known types: custom$"):
        load_profile("p.toml", applet_types=["custom"])


def test_display_path_prefers_the_shorter_form(in_tmp: Path) -> None:
    assert display_path(in_tmp / "a" / "b.toml") == "a/b.toml"
    assert display_path(Path("/etc/x.toml")) == "/etc/x.toml"


# -- TableReader ----------------------------------------------------------------------


def reader(table: dict[str, object], where: str = "applets.piv") -> TableReader:
    return TableReader(Path("prof.toml"), where, table)


def message(exc_info: pytest.ExceptionInfo[ProfileError]) -> str:
    return str(exc_info.value)


def test_int_range_message() -> None:
    r = reader({"retries": "x", "big": 16, "flag": True}, "security.roles[1]")
    with pytest.raises(ProfileError) as info:
        r.integer("retries", minimum=1, maximum=15)
    assert message(info) == 'prof.toml: [security.roles[1]] retries: must be an integer from 1 to 15, got "x"'
    with pytest.raises(ProfileError, match=r"big: must be an integer from 1 to 15, got 16$"):
        r.integer("big", minimum=1, maximum=15)
    with pytest.raises(ProfileError, match=r"flag: must be an integer, got true$"):
        r.integer("flag")  # TOML booleans are not integers
    with pytest.raises(ProfileError, match=r"big: must be an integer <= 3, got 16$"):
        r.integer("big", maximum=3)
    assert r.integer("big", minimum=16) == 16
    assert r.integer("absent", 7) == 7


def test_required_key_missing() -> None:
    with pytest.raises(ProfileError) as info:
        reader({}).text("label")
    assert message(info) == "prof.toml: [applets.piv] label: required key is missing (a string)"
    with pytest.raises(ProfileError, match=r"^prof\.toml: role: required key is missing \(an integer from 0"):
        reader({}, where="").integer("role", minimum=0, maximum=7)


def test_none_is_a_valid_default() -> None:
    r = reader({})
    assert r.text("a", None) is None
    assert r.integer("b", None) is None
    assert r.number("c", None) is None
    assert r.boolean("d", None) is None
    assert r.hex_bytes("e", None) is None
    assert r.array("f", None) is None


def test_str_choices_suggest_the_closest() -> None:
    r = reader({"charset": "digit", "type": "pin"})
    with pytest.raises(ProfileError) as info:
        r.text("charset", choices=["digits", "alphanumeric", "any"])
    assert message(info) == (
        'prof.toml: [applets.piv] charset: must be one of "digits", "alphanumeric", "any", '
        'got "digit" (did you mean "digits"?)'
    )
    assert r.text("type", choices=["pin", "empty"]) == "pin"
    assert r.text("absent", "any", choices=["digits"]) == "any"  # a default is not checked


def test_bool_float_list() -> None:
    r = reader({"on": True, "yes": "yes", "f": 1.5, "i": 2, "inf": float("inf"), "l": [1, "a"], "s": "x"})
    assert r.boolean("on") is True
    with pytest.raises(ProfileError, match=r'yes: must be true or false, got "yes"$'):
        r.boolean("yes")
    assert r.number("f", maximum=2) == 1.5
    assert r.number("i") == 2.0 and isinstance(r.number("i"), float)
    with pytest.raises(ProfileError, match=r"f: must be a number from 0 to 1, got 1.5$"):
        r.number("f", minimum=0, maximum=1)
    with pytest.raises(ProfileError, match=r"inf: must be a number"):
        r.number("inf")
    assert r.array("l") == [1, "a"]
    with pytest.raises(ProfileError, match=r's: must be an array, got "x"$'):
        r.array("s")


def test_hex_accepts_spaces_and_colons_and_checks_lengths() -> None:
    r = reader({"a": "01 02:03\t04", "b": "", "k": "0102"})
    assert r.hex_bytes("a") == b"\x01\x02\x03\x04"
    assert r.hex_bytes("b") == b""
    assert r.hex_bytes("k", lengths=[2]) == b"\x01\x02"
    with pytest.raises(ProfileError) as info:
        r.hex_bytes("k", lengths=[16, 24, 32])
    assert message(info) == "prof.toml: [applets.piv] k: must be 16, 24 or 32 bytes, got 2 bytes"
    with pytest.raises(ProfileError, match=r"k: must be 8 bytes, got 2 bytes$"):
        r.hex_bytes("k", lengths={8})


def test_nested_tables_name_their_path() -> None:
    r = reader({"objects": {"chuid": {"size": "x"}, "bad": 3}, "keys": [{"slot": "9a"}, {"slot": 3}]})
    objects = r.table("objects")
    assert objects.where == "applets.piv.objects"
    with pytest.raises(ProfileError, match=r"^prof\.toml: \[applets\.piv\.objects\.chuid\] size: must be an"):
        objects.table("chuid").integer("size")
    with pytest.raises(ProfileError, match=r"\[applets\.piv\.objects\] bad: must be a table "):
        objects.table("bad")
    keys = r.tables("keys")
    assert [k.where for k in keys] == ["applets.piv.keys[0]", "applets.piv.keys[1]"]
    with pytest.raises(ProfileError, match=r"^prof\.toml: \[applets\.piv\.keys\[1\]\] slot: must be a str"):
        keys[1].text("slot")
    assert r.tables("absent") == []
    assert r.table("absent", {}).raw == {}
    # Keys that are not bare TOML keys are quoted, as TOML would write them.
    odd = TableReader(Path("prof.toml"), "", {"a.b": {"c": 1}}).table("a.b")
    assert odd.where == '"a.b"'


def test_tables_rejects_arrays_of_non_tables() -> None:
    expected = r"keys: must be an array of tables \(\[\[applets\.piv\.keys\]\]\), got \[1, 2\]$"
    with pytest.raises(ProfileError, match=expected):
        reader({"keys": [1, 2]}).tables("keys")


def test_error_helper_locates_key_or_table() -> None:
    r = reader({})
    assert str(r.error("slot", "is taken")) == "prof.toml: [applets.piv] slot: is taken"
    assert str(r.error(None, "needs a key")) == "prof.toml: [applets.piv]: needs a key"
    assert str(reader({}, "").error("atr", "bad")) == "prof.toml: atr: bad"


def test_finish_reports_unknown_keys_with_suggestions() -> None:
    r = reader({"retires": 3, "label": "x", "colour": "red"}, "security.roles[0]")
    r.text("label")
    r.integer("retries", 3)  # known though absent: a candidate for suggestions
    r.has("purpose")
    with pytest.raises(ProfileError) as info:
        r.finish()
    assert message(info) == (
        'prof.toml: [security.roles[0]] retires: unknown key (did you mean "retries"?); colour: unknown key'
    )


def test_finish_passes_when_every_key_was_read() -> None:
    r = reader({"a": 1, "b": "x"})
    r.integer("a")
    assert r.has("b")
    r.finish()


def test_has_does_not_need_the_key() -> None:
    r = reader({"a": 1})
    assert r.has("a") and not r.has("z")


# -- roles (parsed by vcard.security.parse_role) ------------------------------------------

ROLE_1 = """
[[security.roles]]
role = 1
label = "user"
type = "pin"
initial = "123456"
min_length = 6
max_length = 8
retries = 3
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (ROLE_1, "p.toml: [security.roles[1]] role: role 1 is already declared in [security.roles[0]]"),
        (
            ROLE_1.replace("role = 1", "role = 2") + "unblocked_by = 5\n",
            "p.toml: [security.roles[1]] unblocked_by: role 5 is not declared",
        ),
        (
            ROLE_1.replace("role = 1", "role = 2") + "unblocked_by = 2\n",
            "p.toml: [security.roles[1]] unblocked_by: a role cannot unblock itself (role 2)",
        ),
        (
            ROLE_1.replace("role = 1", "role = 2")
            + "unblocked_by = 0\n"
            + '[[security.roles]]\nrole = 0\ntype = "empty"\n',
            'p.toml: [security.roles[1]] unblocked_by: role 0 is of type "empty" and proves nothing',
        ),
        (
            ROLE_1.replace("role = 1", "role = 2") + "changed_by = [6]\n",
            "p.toml: [security.roles[1]] changed_by: role 6 is not declared",
        ),
        (ROLE_1.replace("role = 1", "role = 8"), "p.toml: [security.roles[1]] role: "),
        (ROLE_1.replace("retries = 3", 'retries = "x"'), "p.toml: [security.roles[1]] retries: "),
        (ROLE_1.replace("retries = 3", "retires = 3"), 'p.toml: [security.roles[1]] retires: unknown key'),
    ],
)
def test_bad_roles(in_tmp: Path, extra: str, expected: str) -> None:
    assert load_error(ROLE_1 + extra, in_tmp).startswith(expected)


def test_roles_are_parsed_in_order(in_tmp: Path) -> None:
    write(in_tmp, ROLE_1 + ROLE_1.replace("role = 1", "role = 3").replace('"user"', '"unblock"'))
    profile = load_profile("p.toml")
    assert [(r.role, r.label) for r in profile.roles] == [(1, "user"), (3, "unblock")]
    assert profile.roles[0].initial == b"123456"
    assert profile.security == {}


def test_shipped_profiles_all_load() -> None:
    names = list_profile_names()
    assert "iso" in names
    profiles = list_profiles()
    assert [p.name for p in profiles] == names
    for profile in profiles:
        assert profile.path.parent == PROFILE_DIR.resolve()
        assert profile.description


def test_iso_profile() -> None:
    profile = load_profile("iso")
    assert profile.atr == atr.build(b"vcard")
    assert profile.default_applet == "iso"
    assert profile.applets == {"iso": {}}
    user, unblock = profile.roles
    assert (user.role, user.label, user.type, user.initial) == (1, "user", security.RoleType.PIN, b"123456")
    assert (user.min_length, user.max_length, user.charset) == (6, 8, security.Charset.DIGITS)
    assert (user.retries, user.unblocked_by) == (3, 3)
    assert (unblock.role, unblock.label, unblock.initial) == (3, "unblock", b"12345678")
    assert (unblock.min_length, unblock.max_length, unblock.retries) == (8, 8, 3)
