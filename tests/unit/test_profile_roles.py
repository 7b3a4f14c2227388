"""A PIV profile whose references or touch_role name missing or unfit roles is refused at load.

Before, such a card was built and answered 6A88, and `vcard info` ended in a traceback
(`UnknownRoleError: 27272` for a card without a management-key role).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vcard.profile import ProfileError, load_profile
from vcard.runtime import VirtualCard

PIN = """
[[security.roles]]
role = 1
label = "PIN"
type = "pin"
initial = "123456"
min_length = 6
max_length = 8
retries = 3
"""
PUK = PIN.replace("role = 1", "role = 3").replace('"PIN"', '"PUK"').replace('"123456"', '"12345678"')
MGMT = """
[[security.roles]]
role = 2
label = "management key"
type = "challenge"
algorithm = "3des"
initial_hex = "010203040506070801020304050607080102030405060708"
"""


@pytest.mark.parametrize(
    ("roles", "piv", "message"),
    [
        (PIN + PUK, "", '[applets.piv] "references.9B": role 2 is not declared in [[security.roles]]'),
        (PIN + MGMT, "", '[applets.piv] "references.81": role 3 is not declared'),
        (
            PIN
            + PUK
            + MGMT.replace('"challenge"', '"pin"')
            .replace('algorithm = "3des"\n', "")
            .replace(
                'initial_hex = "010203040506070801020304050607080102030405060708"', 'initial = "12345678"'
            ),
            "",
            '"references.9B": role 2 must have type "challenge", not "pin"',
        ),
        (PIN + PUK + MGMT, "touch_role = 3\n", 'touch_role: role 3 must have type "external", not "pin"'),
    ],
)
def test_piv_references_must_name_fit_roles(tmp_path: Path, roles: str, piv: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(roles + "[applets.piv]\n" + piv)
    profile = load_profile(path)
    with pytest.raises(ProfileError) as info:
        VirtualCard.open(profile, None, ephemeral=True)
    assert str(info.value).startswith(f"{path}: ") or str(path.name) in str(info.value)
    assert message in str(info.value)


def test_a_complete_piv_profile_builds(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(PIN + PUK + MGMT + "[applets.piv]\n")
    VirtualCard.open(load_profile(path), None, ephemeral=True).close()


def test_vcard_info_on_such_a_profile_ends_in_a_message_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "nomgmt.toml"
    path.write_text(PIN + PUK + "[applets.piv]\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vcard.cli import main; main()",
            "info",
            "--profile",
            str(path),
            "--state",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "UnknownRoleError" not in result.stderr
    assert '"references.9B": role 2 is not declared' in result.stderr
    assert not (tmp_path / "state" / "state.json").exists()
