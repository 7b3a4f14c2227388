"""ykman (the venv's pinned yubikey-manager) and yubikit through pcscd on the YubiKey-style profiles.

Each test starts one ephemeral card in 'Virtual PCD 00 00' and runs the `ykman --reader`
commands a user would, checking their output and the files they write. On a card whose
version lacks a feature (the piv profile claims 5.4.3) ykman must refuse it and say why.

ykman, when it cannot connect, runs `pkill -9 scdaemon` and `pkill -HUP yubikey-agent`
(ykman/pcsc); the tests put a `pkill` that does nothing first on PATH so that a failing
run cannot touch anybody's processes on this shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from harness import CardProcess, require_clients

pytestmark = pytest.mark.integration

READER = "Virtual PCD 00 00"
YKMAN = Path(sys.executable).with_name("ykman")
SCENARIO = Path(__file__).resolve().parents[1] / "unit" / "yubikit_scenario.py"
DEFAULT_KEY = "010203040506070801020304050607080102030405060708"
AES192_KEY = "101112131415161718191a1b1c1d1e1f2021222324252627"

require_clients(None if YKMAN.exists() else f"{YKMAN} missing: `pip install -e '.[test]'` (yubikey-manager)")


class Ykman:
    def __init__(self, home: Path) -> None:
        self.home = home
        stub = home / "bin"
        stub.mkdir()
        (stub / "pkill").write_text("#!/bin/sh\nexit 1\n")
        (stub / "pkill").chmod(0o700)
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PATH": f"{stub}:{os.environ.get('PATH', '')}",
        }

    def run(self, *args: str, check: bool = True) -> tuple[int, str]:
        result = subprocess.run(
            [str(YKMAN), "--reader", READER, *args],
            env=self.env,
            capture_output=True,
            timeout=180,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        if check and result.returncode != 0:
            raise AssertionError(f"ykman {' '.join(args)} exited {result.returncode}:\n{output}")
        return result.returncode, output

    def ok(self, *args: str) -> str:
        return self.run(*args)[1]

    def refused(self, *args: str) -> str:
        code, output = self.run(*args, check=False)
        assert code != 0, output
        return output


@pytest.fixture
def ykman(tmp_path: Path) -> Ykman:
    return Ykman(tmp_path)


def card(profile: str) -> CardProcess:
    return CardProcess(profile=profile, slot=0)


def _info(ykman: Ykman, version: str) -> int:
    info = ykman.ok("info")
    assert "Device type: YubiKey 5 NFC" in info, info
    assert f"Firmware version: {version}" in info, info
    serial = int(info.split("Serial number: ")[1].split()[0])
    applications = {line.split()[0]: line.split()[1:] for line in info.splitlines() if "\t" in line}
    assert applications["PIV"] == ["Enabled", "Enabled"], info  # USB and NFC; nothing else is claimed
    assert applications["OATH"] == ["Not", "available", "Not", "available"], info
    piv_info = ykman.ok("piv", "info")
    assert f"PIV version:              {version}" in piv_info, piv_info
    return serial


def _fields(output: str) -> dict[str, str]:
    """ykman's `Name:   value` lines as a dict."""
    return {
        name.strip(): value.strip()
        for name, _, value in (line.partition(":") for line in output.splitlines())
    }


def _generate(ykman: Ykman, slot: str, algorithm: str, key: str) -> Path:
    public = ykman.home / f"{slot}.pem"
    output = ykman.ok("piv", "keys", "generate", "-a", algorithm, "-m", key, slot, str(public))
    assert f"Private key generated in slot {slot.upper()}" in output, output
    return public


def _attest(ykman: Ykman, slot: str, public: Path, serial: int, version: str) -> None:
    """The attestation chains to the F9 certificate and carries the key, serial and version."""
    attestation_file, ca_file = ykman.home / f"att{slot}.pem", ykman.home / "f9.pem"
    ykman.ok("piv", "keys", "attest", slot, str(attestation_file))
    ykman.ok("piv", "certificates", "export", "f9", str(ca_file))
    attestation = x509.load_pem_x509_certificate(attestation_file.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    attestation.verify_directly_issued_by(ca)
    assert attestation.public_key() == load_pem_public_key(public.read_bytes())
    extensions = {ext.oid.dotted_string: ext.value for ext in attestation.extensions}
    firmware = extensions["1.3.6.1.4.1.41482.3.3"].value  # type: ignore[attr-defined]
    assert ".".join(str(b) for b in firmware) == version
    assert int.from_bytes(extensions["1.3.6.1.4.1.41482.3.7"].value[2:]) == serial  # type: ignore[attr-defined]


def _common(ykman: Ykman, version: str, default_algorithm: str) -> None:
    """Everything both profiles have: certificates, objects, access, retries, reset."""
    key = DEFAULT_KEY
    public = _generate(ykman, "9a", "eccp256", key)
    ykman.ok(
        "piv",
        "certificates",
        "generate",
        "-m",
        key,
        "-P",
        "123456",
        "-s",
        "CN=vcard ykman",
        "9a",
        str(public),
    )
    certificate = ykman.home / "cert9a.pem"
    ykman.ok("piv", "certificates", "export", "9a", str(certificate))
    assert (
        x509.load_pem_x509_certificate(certificate.read_bytes()).subject.rfc4514_string() == "CN=vcard ykman"
    )
    csr_file = ykman.home / "9a.csr"
    ykman.ok(
        "piv",
        "certificates",
        "request",
        "-P",
        "123456",
        "-s",
        "CN=vcard request",
        "9a",
        str(public),
        str(csr_file),
    )
    csr = x509.load_pem_x509_csr(csr_file.read_bytes())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == "CN=vcard request"
    keys_info = _fields(ykman.ok("piv", "keys", "info", "9a"))
    assert (keys_info["Algorithm"], keys_info["Origin"]) == ("ECCP256", "GENERATED"), keys_info

    chuid = ykman.home / "chuid.bin"
    ykman.ok("piv", "objects", "export", "chuid", str(chuid))
    ykman.ok("piv", "objects", "import", "-m", key, "0x5f0001", str(chuid))
    copy = ykman.home / "copy.bin"
    ykman.ok("piv", "objects", "export", "0x5f0001", str(copy))
    assert copy.read_bytes() == chuid.read_bytes()

    ykman.ok("piv", "access", "change-pin", "-P", "123456", "-n", "654321")
    ykman.ok("piv", "access", "change-pin", "-P", "654321", "-n", "123456")
    ykman.ok("piv", "access", "change-puk", "-p", "12345678", "-n", "87654321")
    ykman.ok("piv", "access", "change-puk", "-p", "87654321", "-n", "12345678")
    ykman.ok("piv", "access", "change-management-key", "-m", key, "-a", "aes192", "-n", AES192_KEY, "-f")
    assert "Management key algorithm: AES192" in ykman.ok("piv", "info")
    ykman.ok(
        "piv", "access", "change-management-key", "-m", AES192_KEY, "-a", default_algorithm, "-n", key, "-f"
    )
    assert f"Management key algorithm: {default_algorithm.upper()}" in ykman.ok("piv", "info")
    ykman.ok("piv", "access", "set-retries", "-m", key, "-P", "123456", "-f", "5", "4")
    assert "PIN tries remaining:      5/5" in ykman.ok("piv", "info")

    assert "Resetting PIV data" in ykman.ok("piv", "reset", "-f")
    after = ykman.ok("piv", "info")
    assert "PIN tries remaining:      3/3" in after and "WARNING: Using default PIN!" in after, after
    assert ykman.refused("piv", "keys", "info", "9a")  # the key is gone


def test_ykman_on_yubikey5(ykman: Ykman) -> None:
    with card("yubikey5"):
        serial = _info(ykman, "5.7.4")
        assert "Management key algorithm: AES192" in ykman.ok("piv", "info")
        for slot, algorithm in [
            ("82", "rsa2048"),
            ("83", "rsa3072"),
            ("84", "rsa4096"),
            ("85", "eccp256"),
            ("86", "eccp384"),
            ("87", "ed25519"),
            ("88", "x25519"),
        ]:
            public = _generate(ykman, slot, algorithm, DEFAULT_KEY)
            _attest(ykman, slot, public, serial, "5.7.4")
        ykman.ok("piv", "keys", "move", "-m", DEFAULT_KEY, "85", "9d")
        moved = _fields(ykman.ok("piv", "keys", "info", "9d"))
        assert (moved["Algorithm"], moved["Origin"]) == ("ECCP256", "GENERATED"), moved
        ykman.ok("piv", "keys", "delete", "-m", DEFAULT_KEY, "9d")
        assert ykman.refused("piv", "keys", "info", "9d")
        _common(ykman, "5.7.4", "aes192")


def test_ykman_on_the_piv_profile_refuses_what_5_4_lacks(ykman: Ykman) -> None:
    with card("piv"):
        serial = _info(ykman, "5.4.3")
        assert "Management key algorithm: TDES" in ykman.ok("piv", "info")
        for slot, algorithm in [("82", "rsa2048"), ("85", "eccp256"), ("86", "eccp384")]:
            public = _generate(ykman, slot, algorithm, DEFAULT_KEY)
            _attest(ykman, slot, public, serial, "5.4.3")
        for algorithm in ("rsa3072", "rsa4096", "ed25519", "x25519"):
            output = ykman.refused(
                "piv", "keys", "generate", "-a", algorithm, "-m", DEFAULT_KEY, "83", str(ykman.home / "x.pem")
            )
            assert "requires YubiKey 5.7 or later" in output, output
        assert "requires YubiKey 5.7" in ykman.refused("piv", "keys", "move", "-m", DEFAULT_KEY, "85", "9d")
        assert "requires YubiKey 5.7" in ykman.refused("piv", "keys", "delete", "-m", DEFAULT_KEY, "85")
        _common(ykman, "5.4.3", "tdes")


@pytest.mark.parametrize("profile", ["yubikey5", "piv"])
def test_yubikit_sessions_through_pcscd(profile: str, ykman: Ykman) -> None:
    """The in-process yubikit scenario again, through ykman's own PC/SC connection class."""
    with card(profile):
        result = subprocess.run(
            [sys.executable, str(SCENARIO), "--reader", READER],
            env=ykman.env,
            capture_output=True,
            timeout=300,
            check=False,
        )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    sys.path.insert(0, str(SCENARIO.parent))  # the scenario lives with the unit tests
    from yubikit_scenario import expected_steps

    steps = result.stdout.decode().splitlines()
    version = (5, 7, 4) if profile == "yubikey5" else (5, 4, 3)
    assert steps == expected_steps(version), output
