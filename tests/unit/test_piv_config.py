"""The [applets.piv] profile table: validation, extra PIN references, per-slot access rules, touch."""

from __future__ import annotations

from pathlib import Path

import pytest
from piv_support import build

from vcard.profile import ProfileError, load_profile

BASE = Path(__file__).resolve().parents[2] / "profiles" / "piv.toml"

MULTI_PIN = """
description = "test: PIV with a signature PIN (role 3) and a fingerprint (role 4)"
default_applet = "piv"

[[security.roles]]
role = 1
type = "pin"
initial = "123456"
min_length = 6
unblocked_by = 5

[[security.roles]]
role = 2
type = "challenge"
algorithm = "3des"
initial_hex = "010203040506070801020304050607080102030405060708"

[[security.roles]]
role = 3
label = "signature PIN"
type = "pin"
initial = "1111"
min_length = 4
purpose = "signature"

[[security.roles]]
role = 4
label = "fingerprint"
type = "external"
min_length = 0
[security.roles.external]
policy = "{fingerprint}"

[[security.roles]]
role = 5
type = "pin"
initial = "12345678"
min_length = 8
purpose = "unblock_only"

[applets.piv]
algorithms = ["p256"]

[applets.piv.references]
80 = 1
81 = 5
9B = 2
83 = 3
96 = 4

[applets.piv.slots.9c]
access = "roles 1 and 3 always"

[applets.piv.slots.9d]
access = "role 4"

[applets.piv.slots.9a]
access = "never"
"""


def write_profile(tmp_path: Path, fingerprint: str = "approve") -> Path:
    path = tmp_path / "multi.toml"
    path.write_text(MULTI_PIN.replace("{fingerprint}", fingerprint))
    return path


def test_extra_references_and_slot_rules(tmp_path: Path) -> None:
    card = build(write_profile(tmp_path))
    assert card.authenticate_mgm() == 0x9000
    for slot in (0x9A, 0x9C, 0x9D):
        assert card.generate(slot, 0x11).sw == 0x9000
    digest = bytes(32)
    assert card.verify() == 0x9000
    assert card.sign(0x9C, 0x11, digest).sw == 0x6982  # the signature PIN is missing
    assert card.verify("1111", ref=0x83) == 0x9000
    assert card.sign(0x9C, 0x11, digest).sw == 0x9000
    assert card.sign(0x9C, 0x11, digest).sw == 0x6982  # always: consumed
    assert card.verify("2222", ref=0x83) == 0x63C2
    assert card.sign(0x9A, 0x11, digest).sw == 0x6982  # never
    assert card.sign(0x9D, 0x11, digest).sw == 0x9000  # fingerprint asked at use, approved
    assert card.verify(b"", ref=0x96) == 0x9000


def test_refused_fingerprint(tmp_path: Path) -> None:
    card = build(write_profile(tmp_path, "deny"))
    assert card.authenticate_mgm() == 0x9000
    assert card.generate(0x9D, 0x11).sw == 0x9000
    assert card.sign(0x9D, 0x11, bytes(32)).sw == 0x6982
    assert card.verify(b"", ref=0x96) >> 4 == 0x63C


def test_touch_policy_uses_the_touch_role(tmp_path: Path) -> None:
    denied = tmp_path / "deny-touch.toml"
    denied.write_text(BASE.read_text().replace('policy = "approve"', 'policy = "deny"'))
    card = build(denied)
    assert card.authenticate_mgm() == 0x9000
    assert card.generate(0x9E, 0x11, touch=0x02).sw == 0x9000
    assert card.generate(0x82, 0x11, touch=0x01).sw == 0x9000
    assert card.sign(0x9E, 0x11, bytes(32)).sw == 0x6982
    assert card.verify() == 0x9000
    assert card.sign(0x82, 0x11, bytes(32)).sw == 0x9000
    approving = build()
    assert approving.authenticate_mgm() == 0x9000
    assert approving.generate(0x9E, 0x11, touch=0x02).sw == 0x9000
    assert approving.sign(0x9E, 0x11, bytes(32)).sw == 0x9000


def test_no_touch_role_refuses_touch_policies(tmp_path: Path) -> None:
    path = tmp_path / "no-touch.toml"
    path.write_text(BASE.read_text().replace("touch_role = 7\n", ""))
    card = build(path)
    assert card.authenticate_mgm() == 0x9000
    assert card.generate(0x9A, 0x11, touch=0x02).sw == 0x6A80
    assert card.generate(0x9A, 0x11, touch=0x01).sw == 0x9000


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('algorithms = ["rsa512"]', "unknown algorithm 'rsa512'"),
        ('version = "5.7"', "major.minor.patch"),
        ("colour = 1", "colour: unknown key"),
        ('[applets.piv.slots.9b]\naccess = "role 1"', "not a PIV key slot"),
        ('[applets.piv.slots.9a]\naccess = "role 9"', "not a role number"),
        ("[applets.piv.references]\n80 = 1", "9B"),
    ],
)
def test_profile_errors_name_the_key(tmp_path: Path, snippet: str, message: str) -> None:
    text = BASE.read_text()
    if snippet.startswith("[applets.piv.references]"):
        text = text[: text.index("[applets.piv.references]")] + snippet + "\n"
    elif snippet.startswith("["):
        text += "\n" + snippet + "\n"
    else:
        key = snippet.split(" = ")[0]
        lines = [line for line in text.splitlines() if not line.startswith(f"{key} = ")]
        at = lines.index('label = "vcard PIV"')
        text = "\n".join([*lines[: at + 1], snippet, *lines[at + 1 :]]) + "\n"
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        build(load_profile(path).path)


def test_management_key_with_touch_asks_the_touch_role(tmp_path: Path) -> None:
    denied = tmp_path / "deny-touch.toml"
    denied.write_text(BASE.read_text().replace('policy = "approve"', 'policy = "deny"'))
    card = build(denied)
    assert card.authenticate_mgm() == 0x9000
    key = bytes.fromhex("010203040506070801020304050607080102030405060708")
    assert card.send(0x00, 0xFF, 0xFF, 0xFE, b"\x03" + bytes([0x9B, 24]) + key, ne=None).sw == 0x9000
    assert card.send(0x00, 0xF7, 0x00, 0x9B).data == bytes.fromhex("01010302020002050101")
    card.card.reset()
    card.select()
    assert card.authenticate_mgm() == 0x6982  # right key, but nobody touched the card


def test_shipped_multi_pin_profile_binds_keys_to_three_roles() -> None:
    """profiles/multi-pin.toml: 9A/9D need the user PIN, 9C the signature PIN, 9E the fingerprint."""
    card = build("multi-pin")
    assert card.authenticate_mgm() == 0x9000
    for slot in (0x9A, 0x9C, 0x9E):
        assert card.generate(slot, 0x11).sw == 0x9000
    digest = bytes(32)
    assert card.sign(0x9A, 0x11, digest).sw == 0x6982
    assert card.verify() == 0x9000  # role 1
    assert card.sign(0x9A, 0x11, digest).sw == 0x9000
    assert card.sign(0x9C, 0x11, digest).sw == 0x6982  # role 1 alone is not enough
    assert card.verify("654321", ref=0x83) == 0x9000  # role 3
    assert card.sign(0x9C, 0x11, digest).sw == 0x9000
    assert card.send(0x80, 0x5B, 0x00, 0x00).data == bytes([0b1110])  # PIN_SET: roles 1, 2 (9B) and 3
    assert card.sign(0x9E, 0x11, digest).sw == 0x9000  # the fingerprint (approve_after 50 ms) is asked
    assert card.send(0x80, 0x5B, 0x00, 0x00).data == bytes([0b11110])
    assert card.send(0x80, 0x5F, 0x00, 0x00, bytes([0b1000])).sw == 0x9000  # deauthenticate role 3 only
    assert card.sign(0x9C, 0x11, digest).sw == 0x6982
    assert card.sign(0x9A, 0x11, digest).sw == 0x9000
