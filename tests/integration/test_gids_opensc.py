"""GIDS through the real stack: pcscd + vpcd + OpenSC (opensc-tool, gids-tool, pkcs15-*, pkcs11-tool).

Each test runs one ephemeral card in vpcd slot 0 ('Virtual PCD 00 00') under the
session's vpcd lock (tests/integration/conftest.py), with a throwaway HOME so that
OpenSC's file cache never serves a previous card's files. gids-tool exits 0 even
when its card commands fail, so every gids-tool step is checked through its output
and the card's state.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import CardProcess, wait_for_presence

pytestmark = pytest.mark.integration

READER = "Virtual PCD 00 00"
MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
ADMIN_KEY = "00" * 24
OTHER_ADMIN_KEY = "0102030405060708090A0B0C0D0E0F101112131415161718"


@contextlib.contextmanager
def gids_card(profile: str) -> Iterator[None]:
    """One card in slot 0 for the duration of the block (the harness holds the slot lock)."""
    with CardProcess(profile=profile, slot=0):
        yield
    # the next test's card must find the slot empty: wait until pcscd saw this one go
    assert wait_for_presence(READER, False, 10), f"{READER}: the card did not go away"


class Tools:
    """Runs client tools with a private HOME (no OpenSC file cache shared between cards)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "HOME": str(home)}

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=120, cwd=self.home
        )
        output = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{output}")
        return output

    def gids(self, *args: str) -> str:
        output = self.run("gids-tool", "-r", READER, *args)
        assert "failed" not in output, output  # gids-tool exits 0 even when the card refused
        return output

    def p11(self, *args: str, check: bool = True) -> str:
        return self.run("pkcs11-tool", "--module", MODULE, "--slot-description", READER, *args, check=check)

    def apdus(self, *apdus: str) -> str:
        return self.run("opensc-tool", "-r", READER, *[arg for apdu in apdus for arg in ("-s", apdu)])


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return Tools(tmp_path)


def test_opensc_sees_a_gids_card(tools: Tools) -> None:
    with gids_card("gids"):
        assert "GIDS Smart Card" in tools.run("opensc-tool", "-r", READER, "-n")
        dump = tools.run("pkcs15-tool", "-r", READER, "-D")
        assert "PKCS#15 Card [GIDS card]" in dump and "PIN [UserPIN]" in dump


def test_blank_card_initialised_by_gids_tool(tools: Tools) -> None:
    with gids_card("gids-blank"):
        assert "GIDS Smart Card" in tools.run("opensc-tool", "-r", READER, "-n")
        output = tools.gids(
            "--initialize",
            "--pin",
            "123456",
            "--admin-key",
            ADMIN_KEY,
            "--serial-number",
            "00112233445566778899AABBCCDDEEFF",
        )
        assert "initialized" in output.lower() or output.strip() == "" or "success" in output.lower()
        # the masterfile now exists (gids-tool's own "is the card new" test)
        card = tools.apdus("00A4040C09A00000039742544659", "00CBA000045C02DF1F00")
        assert "DF 1F 81 8D 01 6D 73 63 70" in card and "SW1=0x90, SW2=0x00" in card.split("Received")[-1]
        dump = tools.run("pkcs15-tool", "-r", READER, "-D")
        assert "PKCS#15 Card [GIDS card]" in dump
        assert "Serial number  : 00112233445566778899aabbccddeeff" in dump
        assert "PIN [UserPIN]" in dump and "Tries left     : 3" in dump
        # the PIN works, the admin key works
        tools.p11("-l", "--pin", "123456", "-O")  # the PIN set by gids-tool works
        tools.gids("--change-admin-key", "--admin-key", ADMIN_KEY, "--new-admin-key", OTHER_ADMIN_KEY)


def test_admin_key_change_and_pin_unblock(tools: Tools) -> None:
    with gids_card("gids"):
        tools.gids("--change-admin-key", "--admin-key", ADMIN_KEY, "--new-admin-key", OTHER_ADMIN_KEY)
        refused = tools.run(
            "gids-tool",
            "-r",
            READER,
            "--change-admin-key",
            "--admin-key",
            ADMIN_KEY,
            "--new-admin-key",
            ADMIN_KEY,
            check=False,
        )
        assert "Security status not satisfied" in refused
        tools.gids("--change-admin-key", "--admin-key", OTHER_ADMIN_KEY, "--new-admin-key", ADMIN_KEY)

        for _ in range(3):
            assert "CKR_PIN" in tools.p11("-l", "--pin", "999999", "-O", check=False)
        assert "Tries left     : 0" in tools.run("pkcs15-tool", "-r", READER, "--list-pins")
        assert "CKR_PIN_LOCKED" in tools.p11("-l", "--pin", "123456", "-O", check=False)
        output = tools.gids("--unblock", "--admin-key", ADMIN_KEY, "--pin", "24682468")
        assert "Unblock PIN done successfully" in output
        assert "Tries left     : 3" in tools.run("pkcs15-tool", "-r", READER, "--list-pins")
        tools.p11("-l", "--pin", "24682468", "-O")


def test_pkcs11_keygen_sign_verify_decrypt(tools: Tools) -> None:
    home = tools.home
    (home / "message").write_bytes(b"signed through GIDS\n")
    with gids_card("gids"):
        output = tools.p11("-l", "--pin", "123456", "--keypairgen", "--key-type", "rsa:2048", "--label", "k1")
        assert "Public Key Object; RSA 2048 bits" in output
        tools.p11("--read-object", "--type", "pubkey", "--label", "k1", "-o", str(home / "pub.der"))
        tools.run("openssl", "pkey", "-pubin", "-inform", "DER", "-in", "pub.der", "-out", "pub.pem")

        tools.p11(
            "-l",
            "--pin",
            "123456",
            "--sign",
            "-m",
            "SHA256-RSA-PKCS",
            "--label",
            "k1",
            "-i",
            "message",
            "-o",
            "signature",
        )
        verified = tools.run(
            "openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "signature", "message"
        )
        assert "Verified OK" in verified

        tools.run(
            "openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "message", "-out", "ct"
        )
        tools.p11(
            "-l", "--pin", "123456", "--decrypt", "-m", "RSA-PKCS", "--label", "k1", "-i", "ct", "-o", "plain"
        )
        assert (home / "plain").read_bytes() == b"signed through GIDS\n"

        test = tools.p11("-l", "--pin", "123456", "-t", check=False)
        assert "RSA-PKCS: OK" in test and "SHA256-RSA-PKCS: OK" in test
        # OpenSC's gids driver has no GET CHALLENGE operation, so C_GenerateRandom is always
        # CKR_FUNCTION_NOT_SUPPORTED (a client-side limit): it must be the only error.
        errors = [line for line in test.splitlines() if "ERR" in line or "failed" in line]
        assert all("C_GenerateRandom" in line for line in errors), test
        assert "No errors" in test or "1 errors" in test


def test_pkcs15_init_key_and_certificate(tools: Tools) -> None:
    home = tools.home
    with gids_card("gids"):
        tools.run(
            "pkcs15-init",
            "-r",
            READER,
            "--generate-key",
            "rsa/2048",
            "--auth-id",
            "80",
            "--pin",
            "123456",
            "--verify-pin",
            "--label",
            "p15",
        )
        tools.run("pkcs15-tool", "-r", READER, "--read-public-key", "00", "-o", "pub.pem")
        tools.run("openssl", "genpkey", "-algorithm", "RSA", "-out", "ca.pem")
        tools.run(
            "openssl",
            "x509",
            "-new",
            "-subj",
            "/CN=vcard GIDS test",
            "-days",
            "1",
            "-force_pubkey",
            "pub.pem",
            "-key",
            "ca.pem",
            "-outform",
            "DER",
            "-out",
            "cert.der",
        )
        tools.run(
            "pkcs15-init",
            "-r",
            READER,
            "--store-certificate",
            "cert.der",
            "--format",
            "der",
            "--id",
            "00",
            "--auth-id",
            "80",
            "--pin",
            "123456",
            "--verify-pin",
        )
        dump = tools.run("pkcs15-tool", "-r", READER, "-D")
        assert "X.509 Certificate [" in dump
        tools.run("pkcs15-tool", "-r", READER, "--read-certificate", "00", "-o", "back.pem")
        tools.run("openssl", "x509", "-in", "back.pem", "-outform", "DER", "-out", "back.der")
        assert (home / "back.der").read_bytes() == (home / "cert.der").read_bytes()


def test_tpm_vsc_look_alike(tools: Tools) -> None:
    vsc_admin_key = "0102030405060708" * 3
    with gids_card("tpm-vsc"):
        assert (
            "3b:8d:01:80:fb:a0:00:00:03:97:42:54:46:59:04:01:cf"
            in tools.run("opensc-tool", "-r", READER, "-a").lower()
        )
        dump = tools.run("pkcs15-tool", "-r", READER, "-D")
        assert "PKCS#15 Card [GIDS card]" in dump and "PIN [UserPIN]" in dump
        assert "PUK" not in dump  # no PUK: the admin key unblocks the PIN
        assert "CKR_PIN_INCORRECT" in tools.p11("-l", "--pin", "1234567", "-O", check=False)
        tools.p11("-l", "--pin", "12345678", "-O")
        output = tools.gids("--unblock", "--admin-key", vsc_admin_key, "--pin", "87654321")
        assert "Unblock PIN done successfully" in output
        tools.p11("-l", "--pin", "87654321", "-O")
