"""`vcard md` against a card state, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from vcard.host import InProcessConnection
from vcard.md_cli import md
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import PivProvisioner


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    directory = tmp_path_factory.mktemp("md-cli")
    virtual = VirtualCard.open(load_profile("piv"), directory)
    keys = PivProvisioner(InProcessConnection(virtual.card)).provision({0x9A: "rsa2048", 0x9C: "p256"})
    virtual.close()
    return directory, keys


def run(*args: str) -> str:
    result = CliRunner().invoke(md, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_info_lists_pins_and_containers(state: tuple[Path, object]) -> None:
    output = run("info", "--state", str(state[0]))
    assert "read only:       True" in output
    assert "role 1 'PIV PIN'" in output
    assert "0 AT_KEYEXCHANGE rsa-2048 PIN 1" in output


def test_certificates_are_written(state: tuple[Path, object], tmp_path: Path) -> None:
    output = run("certificates", "--state", str(state[0]), "--out", str(tmp_path))
    assert "kxc00" in output and (tmp_path / "kxc00.der").exists()


def test_sign_verifies_and_session_pin(state: tuple[Path, object]) -> None:
    signature = bytes.fromhex(
        run("sign", "--state", str(state[0]), "--pin", "123456", "--text", "hello").strip()
    )
    keys: dict[int, object] = state[1]  # type: ignore[assignment]
    keys[0x9A].verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[attr-defined]
    output = run("authenticate", "--state", str(state[0]), "--pin", "123456", "--session")
    assert "session PIN: " in output and "authenticated PIN_SET: 0x00" in output


def test_wrong_pin_is_a_clean_error(state: tuple[Path, object]) -> None:
    result = CliRunner().invoke(md, ["authenticate", "--state", str(state[0]), "--pin", "000000"])
    assert result.exit_code == 1 and "W_WRONG_CHV" in result.output
    run("authenticate", "--state", str(state[0]), "--pin", "123456")  # restores the counter
