"""The GIDS profiles load, and mistakes in `[applets.gids]` name the file, the table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcard.profile import ProfileError, load_profile
from vcard.runtime import VirtualCard

ROLES = """
[[security.roles]]
role = 1
type = "pin"
initial = "123456"
unblocked_by = 2

[[security.roles]]
role = 2
type = "challenge"
initial_hex = "000000000000000000000000000000000000000000000000"
"""


@pytest.mark.parametrize("name", ["gids", "gids-blank", "tpm-vsc"])
def test_shipped_profiles_build_a_card(name: str) -> None:
    profile = load_profile(name)
    assert profile.default_applet == "gids"
    card = VirtualCard.open(profile, ephemeral=True)
    lifecycle = card.describe()["applets"][0]["lifecycle"]
    assert lifecycle == ("initialization" if name == "gids-blank" else "operational")
    card.close()


def test_tpm_vsc_profile_settings() -> None:
    profile = load_profile("tpm-vsc")
    assert profile.idle_reset_seconds == 5
    pin = next(role for role in profile.roles if role.role == 1)
    assert (pin.min_length, pin.max_length, pin.unblocked_by) == (8, 127, 2)
    assert all(role.role != 3 for role in profile.roles)  # no PUK


def open_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, roles: str = ROLES) -> str:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "p.toml"
    path.write_text(f'default_applet = "gids"\n{roles}\n[applets.gids]\n{table}\n')
    with pytest.raises(ProfileError) as error:
        VirtualCard.open(load_profile(str(path)), ephemeral=True)
    return str(error.value)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('aid = "A000000308000010000100"', "p.toml: [applets.gids] aid: must be 9 to 16 bytes starting with"),
        ('card_id = "0011"', "[applets.gids] card_id: must be 16 bytes, got 2 bytes"),
        ('admin_auth = ["mutal"]', '[applets.gids] admin_auth: entries must be "mutual" or "external"'),
        ("puk_role = 3", "[applets.gids] puk_role: role 3 is not declared in [[security.roles]]"),
        ("admin_role = 1", '[applets.gids] admin_role: role 1 must have type "challenge", not "pin"'),
        ("initialised = true", 'initialised: unknown key (did you mean "initialized"?)'),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, expected: str
) -> None:
    assert expected in open_error(tmp_path, monkeypatch, table)


def test_fixed_card_id(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'default_applet = "gids"\n{ROLES}\n[applets.gids]\ncard_id = "{"AB" * 16}"\n')
    card = VirtualCard.open(load_profile(str(path)), ephemeral=True)
    response = card.card.transmit(bytes.fromhex("00CBA012045C02DF2000"))
    assert response == bytes.fromhex("DF2010" + "AB" * 16 + "9000")
    card.close()
