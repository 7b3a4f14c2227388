"""GnuTLS's p11tool and OpenSSL's pkcs11 engine (libp11) on OpenSC's PKCS#11 module, for the tests
in test_p11_gnutls_openssl.py.

Both clients reach the card only through opensc-pkcs11.so and pcscd, like any application that
"uses a smart card through PKCS#11". They run with a throwaway HOME and a minimal environment:
an OpenSC configuration without file caching (each test card is new, OpenSC must never serve an
earlier card's certificates), and an OpenSSL configuration that declares the engine and its module,
so nothing of the developer's own set-up (GNUTLS_PIN, PKCS11_MODULE_PATH, ~/.config/pkcs11, a
system openssl.cnf) changes what the tests see.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"
READER = "Virtual PCD 00 00"
PIN = "123456"
TIMEOUT = 60.0

# p11tool --test-sign prints these three lines, each ending in "... ok", when GnuTLS signed with
# the token's key and verified the signature with both the key's own public parameters and the
# token's public key object (gnutls-bin 3.7.9).
TEST_SIGN_STEPS = (
    "Verifying against private key parameters... ok",
    "Verifying against public key in the token... ok",
)

_OPENSC_CONF = "app default {\n  framework pkcs15 { use_file_caching = no; }\n}\n"
_OPENSSL_CONF = f"""\
openssl_conf = openssl_init

[openssl_init]
engines = engine_section

[engine_section]
pkcs11 = pkcs11_section

[pkcs11_section]
engine_id = pkcs11
dynamic_path = {ENGINE}
MODULE_PATH = {MODULE}
init = 0
"""
# variables kept from the caller's environment: where the tools are, and pcscd's socket if moved
_PASSED_THROUGH = ("PATH", "PCSCLITE_CSOCK_NAME")


def missing_clients() -> str | None:
    """Why these tests cannot run (which Debian package is missing), or None."""
    needs = {
        "p11tool": "gnutls-bin",
        "openssl": "openssl",
        "pkcs11-tool": "opensc",
        "yubico-piv-tool": "yubico-piv-tool",
    }
    missing = {package for tool, package in needs.items() if shutil.which(tool) is None}
    if not Path(MODULE).exists():
        missing.add("opensc-pkcs11")
    if not Path(ENGINE).exists():
        missing.add("libengine-pkcs11-openssl")
    if not missing:
        return None
    return f"missing clients: `apt-get install -y {' '.join(sorted(missing))}`"


@dataclass
class P11Object:
    """One object of a p11tool listing (--list-all, --list-privkeys, --list-all-certs ...)."""

    url: str
    type: str = ""
    label: str = ""
    id: str = ""
    flags: list[str] = field(default_factory=list)


def parse_listing(output: str) -> list[P11Object]:
    """The objects of a p11tool listing: "Object N:" blocks of tab-indented "Key: value" lines."""
    objects: list[P11Object] = []
    for block in re.split(r"^Object \d+:\n", output, flags=re.MULTILINE)[1:]:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, separator, value = line.strip().partition(": ")
            if separator:
                fields[key] = value.strip()
        objects.append(
            P11Object(
                url=fields.get("URL", ""),
                type=fields.get("Type", ""),
                label=fields.get("Label", ""),
                id=fields.get("ID", ""),
                flags=[flag.strip() for flag in fields.get("Flags", "").split(";") if flag.strip()],
            )
        )
    return objects


def find_object(objects: list[P11Object], object_id: str) -> P11Object:
    """The only object of a listing with this CKA_ID (hex as p11tool prints it, e.g. "01")."""
    matches = [item for item in objects if item.id == object_id]
    assert len(matches) == 1, f"expected one object with ID {object_id}, got {matches}"
    return matches[0]


class P11Clients:
    """Runs p11tool, openssl and OpenSC tools in `home` with a minimal, private environment."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "opensc.conf").write_text(_OPENSC_CONF)
        (home / "openssl.cnf").write_text(_OPENSSL_CONF)
        base = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        self.env = {
            **base,
            "HOME": str(home),
            "LC_ALL": "C",
            "OPENSC_CONF": str(home / "opensc.conf"),
            "OPENSSL_CONF": str(home / "openssl.cnf"),
        }

    def run(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Exit status and output (stdout then stderr) of a command.

        Every command runs in a new session, without a controlling terminal: OpenSSL's UI then
        reads a PIN prompt's answer from stdin instead of from the terminal of whoever runs
        pytest (where an unexpected prompt would wait forever). stdin is empty unless given.
        """
        result = subprocess.run(
            args,
            input=b"" if stdin is None else stdin,
            capture_output=True,
            env={**self.env, **(env or {})},
            cwd=self.home,
            timeout=TIMEOUT,
            start_new_session=True,
            check=False,
        )
        return result.returncode, (result.stdout + result.stderr).decode(errors="replace")

    def ok(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
        """Output of a command that must exit 0."""
        code, output = self.run(*args, stdin=stdin, env=env)
        assert code == 0, f"`{' '.join(args)}` exited {code}:\n{output}"
        return output

    def p11tool(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        return self.run("p11tool", "--provider", MODULE, *args, env=env)

    def listing(self, *args: str) -> list[P11Object]:
        """Objects listed by `p11tool --provider MODULE ARGS` (which must succeed)."""
        code, output = self.p11tool(*args)
        assert code == 0, f"p11tool {' '.join(args)} exited {code}:\n{output}"
        return parse_listing(output)

    def export_certificate(self, url: str) -> x509.Certificate:
        """The certificate GnuTLS reads from the token at `url`."""
        code, output = self.p11tool("--export", url)
        assert code == 0 and "-----BEGIN CERTIFICATE-----" in output, output
        return x509.load_pem_x509_certificate(output.encode())

    def test_sign(self, url: str, pin_by_env: bool = False) -> str:
        """`p11tool --login --test-sign URL` with the PIN in GNUTLS_PIN or --set-pin; its output."""
        if pin_by_env:
            code, output = self.p11tool("--login", "--test-sign", url, env={"GNUTLS_PIN": PIN})
        else:
            code, output = self.p11tool("--login", "--set-pin", PIN, "--test-sign", url)
        assert code == 0, f"p11tool --test-sign {url} exited {code}:\n{output}"
        return output

    def engine_sign(
        self, url: str, message: Path, signature: Path, *options: str, key_pin: str | None = None
    ) -> tuple[int, str]:
        """`openssl dgst -sha256 -sign` with the card key at `url` through the pkcs11 engine.

        The user PIN travels in the URI (pin-value); `key_pin` answers libp11's prompt for the
        context-specific PIN of a CKA_ALWAYS_AUTHENTICATE key, on stdin (see run()).
        """
        return self.run(
            "openssl", "dgst", "-sha256", "-engine", "pkcs11", "-keyform", "engine",
            "-sign", with_pin(url), *options, "-out", str(signature), str(message),
            stdin=None if key_pin is None else f"{key_pin}\n".encode(),
        )  # fmt: skip

    def engine_pkeyutl_sign(
        self, url: str, digest: Path, signature: Path, key_pin: str | None = None
    ) -> tuple[int, str]:
        """`openssl pkeyutl -sign` of a SHA-256 digest with the card key through the pkcs11 engine."""
        return self.run(
            "openssl", "pkeyutl", "-engine", "pkcs11", "-keyform", "engine",
            "-inkey", with_pin(url), "-sign", "-pkeyopt", "digest:sha256",
            "-in", str(digest), "-out", str(signature),
            stdin=None if key_pin is None else f"{key_pin}\n".encode(),
        )  # fmt: skip


def without_label(url: str) -> str:
    """`url` without its object= (CKA_LABEL) attribute.

    p11tool --test-sign looks for the key's public key object under the private key's URL with
    type=public, label included; OpenSC's PIV emulation labels the two differently ("PIV AUTH
    key" / "PIV AUTH pubkey"), so with the label p11tool finds no public key ("Cannot find a
    corresponding public key object in token" for RSA, "Cannot import public key" for EC, where
    it needs the public point). The CKA_ID alone identifies the pair, as PKCS#11 intends.
    """
    return ";".join(part for part in url.split(";") if not part.startswith("object="))


def with_pin(url: str, pin: str = PIN) -> str:
    """A PKCS#11 URI with the user PIN as pin-value (RFC 7512 query attribute, read by libp11)."""
    return f"{url};pin-value={pin}"


def verify_signature(
    certificate: x509.Certificate, signature: bytes, message: bytes, pss: bool = False
) -> None:
    """Raise InvalidSignature unless `signature` is a SHA-256 signature of `message` by the key of
    `certificate` (PKCS#1 v1.5 or, with `pss`, PSS with a 32-byte salt for RSA; DER ECDSA for EC)."""
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        scheme: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(hashes.SHA256()), 32) if pss else padding.PKCS1v15()
        )
        public_key.verify(signature, message, scheme, hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey), public_key
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
