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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from harness import CardProcess, pcsc_connection, transmit, wait_for_presence

from vcard import tlv

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


def _ec_import_apdu(key: ec.EllipticCurvePrivateKey, key_ref: int) -> bytes:
    """vcard's ECC import (no client has one): `70 {84 kk, A5 {83 03, 84 00, 87 {SEC1 ECPrivateKey}}}`."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )  # what `openssl ec -outform DER` writes: version 1, scalar, [0] curve, [1] point
    value = tlv.encode(0xA5, [bytes.fromhex("830103"), bytes.fromhex("840100"), tlv.encode(0x87, der)])
    data = tlv.encode(0x70, [tlv.encode(0x84, bytes([key_ref])), value])
    assert len(data) <= 255
    return bytes([0x00, 0xDB, 0x3F, 0xFF, len(data)]) + data


def test_opensc_cannot_import_or_create_ec_keys(tools: Tools) -> None:
    """OpenSC 0.23's gids driver is RSA-only (a client limit): it refuses EC keys, the card stays as it was.

    The driver registers RSA algorithms only, so pkcs15-init stops at its key
    compatibility check and PKCS#11 offers no CKM_EC_KEY_PAIR_GEN; behind that,
    card-gids.c maps only RSA sizes to a GIDS algorithm id (gids_create_keyfile:
    SC_ERROR_NOT_SUPPORTED) and gids_import_key says "GIDS supports RSA keys only (but
    may support ECC one day)". If this test fails because OpenSC succeeds, OpenSC gained
    ECC for GIDS: turn it into a real client import test.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    (tools.home / "ec.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with gids_card("gids"):
        refused = tools.run(
            "pkcs15-init",
            "-r",
            READER,
            "--store-private-key",
            "ec.pem",
            "--auth-id",
            "80",
            "--pin",
            "123456",
            "--verify-pin",
            "--label",
            "ec",
            check=False,
        )
        # pkcs15-init's key compatibility check: the gids driver registers RSA algorithms only
        assert "Key length/algorithm not supported by card" in refused, refused
        generated = tools.p11(
            "-l",
            "--pin",
            "123456",
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "e",
            check=False,
        )
        assert "EC key mechanism 1040 not supported" in generated, generated  # no CKM_EC_KEY_PAIR_GEN
        card = tools.apdus(
            "00A4040009A0000003974254465900", "00CBA010045C02DF2300", "00CB3FFF0A7008840181A5037F498000"
        )
        replies = card.split("Received")[1:]
        assert "DF 23 00" in replies[1]  # still an empty cmapfile: no container was left behind
        assert "SW1=0x69, SW2=0x84" in replies[2]  # and no key EF B081


def test_ec_key_imported_at_apdu_level_signs_and_agrees(tools: Tools) -> None:
    """The APDUs a host with ECC support would send, through pcscd + vpcd, and the key then used."""
    key = ec.generate_private_key(ec.SECP384R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    fcp = bytes.fromhex(
        "6247 820118 8302B081 8C058F10101000 A537"
        "B809 80010D 830181 950140  B809 80018D 830181 950140  B809 80014D 830181 950140"
        "B609 80011D 830181 950140  B609 80015D 830181 950140".replace(" ", "")
    )  # OpenSC's key-exchange key EF, with the P-384 size nibble 0D
    with gids_card("gids"):
        connection = pcsc_connection(READER)
        try:
            assert transmit(connection, "00A4040009A0000003974254465900")[1] == 0x9000
            assert transmit(connection, "00200080063132333435 36".replace(" ", ""))[1] == 0x9000
            assert transmit(connection, bytes([0x00, 0xE0, 0x00, 0x00, len(fcp)]) + fcp)[1] == 0x9000
            assert transmit(connection, "00440000")[1] == 0x9000
            assert transmit(connection, _ec_import_apdu(key, 0x81)) == (b"", 0x9000)
            template, sw = transmit(connection, "00CB3FFF0A7008840181A5037F498000")
            assert (template, sw) == (tlv.encode(0x7F49, tlv.encode(0x86, point)), 0x9000)

            digest = hashes.Hash(hashes.SHA384())
            digest.update(b"imported through vpcd")
            hashed = digest.finalize()
            assert transmit(connection, "002241B606 80015D 840181".replace(" ", ""))[1] == 0x9000
            signature, sw = transmit(
                connection, bytes([0x00, 0x2A, 0x9E, 0x9A, len(hashed)]) + hashed + b"\x00"
            )
            assert sw == 0x9000 and len(signature) == 96
            der = encode_dss_signature(
                int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
            )
            key.public_key().verify(der, hashed, ec.ECDSA(Prehashed(hashes.SHA384())))

            peer = ec.generate_private_key(ec.SECP384R1())
            peer_point = peer.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            assert transmit(connection, "002241B806 80014D 840181".replace(" ", ""))[1] == 0x9000
            secret, sw = transmit(
                connection, bytes([0x00, 0x2A, 0x80, 0x86, len(peer_point)]) + peer_point + b"\x00"
            )
            assert (secret, sw) == (peer.exchange(ec.ECDH(), key.public_key()), 0x9000)
        finally:
            connection.close()


def test_pkcs15_init_imports_an_rsa_key(tools: Tools) -> None:
    """OpenSC's RSA import still passes the card's key-EF size check (EF algid 07 for a 2048-bit key)."""
    tools.run(
        "openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem"
    )
    tools.run("openssl", "pkey", "-in", "rsa.pem", "-pubout", "-out", "expected.pem")
    with gids_card("gids"):
        tools.run(
            "pkcs15-init",
            "-r",
            READER,
            "--store-private-key",
            "rsa.pem",
            "--auth-id",
            "80",
            "--pin",
            "123456",
            "--verify-pin",
            "--label",
            "imported",
        )
        tools.run("pkcs15-tool", "-r", READER, "--read-public-key", "00", "-o", "pub.pem")
    tools.run("openssl", "pkey", "-pubin", "-in", "expected.pem", "-outform", "DER", "-out", "a.der")
    tools.run("openssl", "pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "b.der")
    assert (tools.home / "a.der").read_bytes() == (tools.home / "b.der").read_bytes()
