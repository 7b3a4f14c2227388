"""Yubico-style key attestation: an F9 attestation key, its CA certificate, and ATTEST (F9).

Yubico documents the attestation certificate format: issuer = the subject of the
certificate stored in object 5FFF01, subject `CN=YubiKey PIV Attestation <slot>`, the
attested slot's public key, and extensions under 1.3.6.1.4.1.41482.3 carrying the
firmware version (.3), serial number (.7), PIN/touch policy (.8) and form factor (.9).
yubico-piv-tool and ykman verify such a chain; we build it with `cryptography.x509`.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from ...crypto import PrivateKey

YUBICO_OID = "1.3.6.1.4.1.41482.3"
OID_FIRMWARE = x509.ObjectIdentifier(f"{YUBICO_OID}.3")
OID_SERIAL = x509.ObjectIdentifier(f"{YUBICO_OID}.7")
OID_POLICY = x509.ObjectIdentifier(f"{YUBICO_OID}.8")
OID_FORM_FACTOR = x509.ObjectIdentifier(f"{YUBICO_OID}.9")
FORM_FACTOR_UNKNOWN = 0x00

NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2052, 1, 1, tzinfo=datetime.UTC)


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def attestation_ca(key: PrivateKey, serial: int) -> bytes:
    """A self-signed CA certificate (DER) for the card's attestation key."""
    if isinstance(key, x25519.X25519PrivateKey):
        raise ValueError("an X25519 key cannot sign")
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "vcard attestation"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(serial)),
        ]
    )
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, _signing_hash(key)).public_bytes(serialization.Encoding.DER)


def attest(
    signer: PrivateKey,
    issuer_der: bytes,
    slot: int,
    subject_key: PrivateKey,
    version: tuple[int, int, int],
    serial: int,
    pin_policy: int,
    touch_policy: int,
) -> bytes:
    """The attestation certificate (DER) of the key in `slot`, signed by the F9 key."""
    if isinstance(signer, x25519.X25519PrivateKey):
        raise ValueError("an X25519 key cannot sign")
    issuer = x509.load_der_x509_certificate(issuer_der).subject
    public = subject_key.public_key()
    assert isinstance(
        public,
        rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"YubiKey PIV Attestation {slot:02x}")])
        )
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.UnrecognizedExtension(OID_FIRMWARE, bytes(version)), critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_SERIAL, _der_integer(serial)), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(OID_POLICY, bytes([pin_policy, touch_policy])), critical=False
        )
        .add_extension(
            x509.UnrecognizedExtension(OID_FORM_FACTOR, bytes([FORM_FACTOR_UNKNOWN])), critical=False
        )
    )
    return builder.sign(signer, _signing_hash(signer)).public_bytes(serialization.Encoding.DER)


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return bytes([0x02, len(body)]) + body
