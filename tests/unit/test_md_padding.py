"""Host-side RSA encodings, verified against `cryptography`."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from minidriver.padding import (
    PaddingError,
    digest_info,
    oaep_unpad,
    pkcs1_type1,
    pkcs1_type2_unpad,
    pss_encode,
)

KEY = rsa.generate_private_key(65537, 2048)
N = KEY.private_numbers().public_numbers.n
D = KEY.private_numbers().d


def raw_private(block: bytes) -> bytes:
    return pow(int.from_bytes(block, "big"), D, N).to_bytes(256, "big")


def raw_public(block: bytes) -> bytes:
    return pow(int.from_bytes(block, "big"), 65537, N).to_bytes(256, "big")


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("SHA1", hashes.SHA1()),
        ("SHA256", hashes.SHA256()),
        ("SHA384", hashes.SHA384()),
        ("SHA512", hashes.SHA512()),
    ],
)
def test_pkcs1_v15_signature_verifies(name: str, algorithm: hashes.HashAlgorithm) -> None:
    digest = hashlib.new(name.lower(), b"message").digest()
    signature = raw_private(pkcs1_type1(digest_info(name, digest), 256))
    KEY.public_key().verify(signature, b"message", padding.PKCS1v15(), algorithm)


def test_pss_signature_verifies() -> None:
    digest = hashlib.sha256(b"message").digest()
    signature = raw_private(pss_encode(digest, "sha256", 32, 2048))
    KEY.public_key().verify(
        signature, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256())
    )


def test_digest_info_rejects_wrong_lengths() -> None:
    with pytest.raises(PaddingError):
        digest_info("SHA256", b"\x00" * 20)


def test_pkcs1_type2_and_oaep_unpad() -> None:
    ciphertext = KEY.public_key().encrypt(b"secret", padding.PKCS1v15())
    assert pkcs1_type2_unpad(raw_private(ciphertext)) == b"secret"
    ciphertext = KEY.public_key().encrypt(
        b"secret", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    )
    assert oaep_unpad(raw_private(ciphertext), "sha256") == b"secret"
    with pytest.raises(PaddingError):
        pkcs1_type2_unpad(b"\x00\x01" + b"\xff" * 253 + b"\x00")
    with pytest.raises(PaddingError):
        oaep_unpad(raw_private(ciphertext), "sha1")
