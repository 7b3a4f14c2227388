"""The private KDC's set-up refusals (the KDC itself runs in tests/integration/test_kdc_kinit.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from signin import ca as ca_module
from signin.kdc import Kdc, KdcError, free_port, missing_tools
from vcard.cli import main


def test_a_kdc_directory_must_be_new(tmp_path: Path) -> None:
    if missing_tools():
        pytest.skip(f"needs {', '.join(missing_tools())} (make system-deps)")
    authority = ca_module.init_ca(tmp_path / "ca")
    used = tmp_path / "kdc"
    used.mkdir()
    (used / "principal").write_text("someone's database")
    with pytest.raises(KdcError, match=r"kdc: not empty; a KDC directory is created fresh"):
        Kdc.start(used, authority)
    assert (used / "principal").read_text() == "someone's database"


def test_vcard_kdc_without_a_ca_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["kdc", "--ca", str(tmp_path / "none"), "--dir", str(tmp_path / "k")])
    assert result.exit_code == 1
    assert "ca.crt: no CA certificate" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "k").exists()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
