"""PIV key references, algorithm identifiers, policies and the key operations the applet needs.

The algorithm identifiers are those of SP 800-78 Table 9/10 plus Yubico's (RSA-4096,
Ed25519, X25519). Key objects are kept as `cryptography` objects; the applet stores
them as PKCS#8 PEM in its state and caches the loaded object so that a signature does
not pay for PEM parsing.

The primitive operations are those of `vcard.crypto` (the project's only crypto helper
module); this module only maps PIV identifiers onto them and turns bad input into 6A80.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import partial

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils, x25519

from ... import crypto
from ...apdu import SW, ISOError
from ...crypto import PrivateKey


class Algorithm(IntEnum):
    """PIV cryptographic mechanism identifiers (P1 of GENERAL AUTHENTICATE, tag 80 of GENERATE)."""

    TDES_ECB_DEFAULT = 0x00
    TDES = 0x03
    AES128 = 0x08
    AES192 = 0x0A
    AES256 = 0x0C
    RSA1024 = 0x06
    RSA2048 = 0x07
    RSA3072 = 0x05
    RSA4096 = 0x16
    P256 = 0x11
    P384 = 0x14
    ED25519 = 0xE0
    X25519 = 0xE1


class PinPolicy(IntEnum):
    DEFAULT = 0x00
    NEVER = 0x01
    ONCE = 0x02
    ALWAYS = 0x03


class TouchPolicy(IntEnum):
    DEFAULT = 0x00
    NEVER = 0x01
    ALWAYS = 0x02
    CACHED = 0x03


class Origin(IntEnum):
    GENERATED = 0x01
    IMPORTED = 0x02


@dataclass(frozen=True)
class AlgorithmInfo:
    """What the applet needs to know about an asymmetric algorithm."""

    algorithm: Algorithm
    profile_name: str  # the name profiles use in `algorithms = [...]`
    kind: str  # "rsa" | "ec" | "ed25519" | "x25519"
    size: int  # RSA modulus bytes, EC field bytes, 32 for 25519


ASYMMETRIC: dict[Algorithm, AlgorithmInfo] = {
    info.algorithm: info
    for info in (
        AlgorithmInfo(Algorithm.RSA1024, "rsa1024", "rsa", 128),
        AlgorithmInfo(Algorithm.RSA2048, "rsa2048", "rsa", 256),
        AlgorithmInfo(Algorithm.RSA3072, "rsa3072", "rsa", 384),
        AlgorithmInfo(Algorithm.RSA4096, "rsa4096", "rsa", 512),
        AlgorithmInfo(Algorithm.P256, "p256", "ec", 32),
        AlgorithmInfo(Algorithm.P384, "p384", "ec", 48),
        AlgorithmInfo(Algorithm.ED25519, "ed25519", "ed25519", 32),
        AlgorithmInfo(Algorithm.X25519, "x25519", "x25519", 32),
    )
}
BY_PROFILE_NAME = {info.profile_name: info for info in ASYMMETRIC.values()}

# 9B management key: algorithm id <-> the block-cipher name and key length.
SYMMETRIC: dict[Algorithm, tuple[str, int]] = {
    Algorithm.TDES: ("3des", 24),
    Algorithm.AES128: ("aes128", 16),
    Algorithm.AES192: ("aes192", 24),
    Algorithm.AES256: ("aes256", 32),
}
SYMMETRIC_BY_NAME = {name: alg for alg, (name, _) in SYMMETRIC.items()}

# Key references.
SLOT_AUTHENTICATION = 0x9A
SLOT_MANAGEMENT = 0x9B
SLOT_SIGNATURE = 0x9C
SLOT_KEY_MANAGEMENT = 0x9D
SLOT_CARD_AUTH = 0x9E
SLOT_ATTESTATION = 0xF9
RETIRED_SLOTS = tuple(range(0x82, 0x96))
KEY_SLOTS = frozenset(
    {SLOT_AUTHENTICATION, SLOT_SIGNATURE, SLOT_KEY_MANAGEMENT, SLOT_CARD_AUTH, *RETIRED_SLOTS}
)

# SP 800-73 Part 1 Table 4b/5 as Yubico expresses it in PIN policies.
DEFAULT_PIN_POLICY = {
    SLOT_AUTHENTICATION: PinPolicy.ONCE,
    SLOT_SIGNATURE: PinPolicy.ALWAYS,
    SLOT_KEY_MANAGEMENT: PinPolicy.ONCE,
    SLOT_CARD_AUTH: PinPolicy.NEVER,
    SLOT_ATTESTATION: PinPolicy.NEVER,
}


def default_pin_policy(slot: int) -> PinPolicy:
    return DEFAULT_PIN_POLICY.get(slot, PinPolicy.ONCE)


def slot_name(slot: int) -> str:
    return f"{slot:02X}"


# ---- key objects -----------------------------------------------------------------------


def generate(info: AlgorithmInfo) -> PrivateKey:
    """A fresh private key (RSA with e = 65537, the only exponent SP 800-78 allows)."""
    return crypto.generate_private_key(info.profile_name)


def to_pem(key: PrivateKey) -> str:
    return crypto.private_key_to_pem(key)


def from_pem(text: str) -> PrivateKey:
    return crypto.private_key_from_pem(text)


def algorithm_of(key: PrivateKey) -> Algorithm:
    """The PIV algorithm identifier matching a key object."""
    return BY_PROFILE_NAME[crypto.key_kind(key)].algorithm


def public_key_template(key: PrivateKey) -> list[tuple[int, bytes]]:
    """The public key as the tags of a 7F49 template: 81 modulus + 82 exponent, or 86 point."""
    if isinstance(key, rsa.RSAPrivateKey):
        n, e = crypto.rsa_public_numbers(key)
        return [
            (0x81, n.to_bytes(crypto.modulus_length(key), "big")),
            (0x82, e.to_bytes((e.bit_length() + 7) // 8, "big")),
        ]
    return [(0x86, crypto.public_point(key))]


# ---- operations ------------------------------------------------------------------------


def _bad_input(error: ValueError) -> ISOError:
    return ISOError(SW.INCORRECT_DATA, str(error))


def rsa_private(signer: crypto.RsaSigner, block: bytes) -> bytes:
    """Raw RSA (block^d mod n) of a host-padded block, exactly modulus-length bytes.

    PIV cards sign and decrypt with the same raw operation; the host does the padding.
    A block shorter than the modulus is taken as a big-endian integer (left zero-padded).
    """
    size = signer.length
    if len(block) != size:
        if len(block) > size:
            raise ISOError(SW.INCORRECT_DATA, "input longer than the modulus")
        block = block.rjust(size, b"\x00")
    try:
        return signer.sign_block(block)
    except ValueError as error:
        raise _bad_input(error) from None


# Signature algorithm objects for the usual digest lengths, built once: a P-256 signature
# takes about 30 us, so per-call object construction would be a visible share of it.
_ECDSA_PREHASHED: dict[int, ec.ECDSA] = {
    algorithm.digest_size: ec.ECDSA(utils.Prehashed(algorithm))
    for algorithm in (hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512())
}


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """DER ECDSA signature of a digest of any length (SEC1 4.1.3: truncated or zero-extended).

    Digests of a standard hash length go straight to OpenSSL (which applies the X9.62
    truncation itself, as `vcard.crypto.ecdsa_sign_digest` documents); other lengths
    take the general path of `vcard.crypto`.
    """
    algorithm = _ECDSA_PREHASHED.get(len(digest))
    if algorithm is not None:
        return key.sign(digest, algorithm)
    try:
        return crypto.ecdsa_sign_digest(key, digest)
    except ValueError as error:
        raise _bad_input(error) from None


def ecdh(key: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey, point: bytes) -> bytes:
    """ECC CDH (the X coordinate shared with the peer's uncompressed point) or X25519."""
    try:
        return crypto.ecdh(key, point)
    except ValueError as error:
        raise _bad_input(error) from None


def ed25519_sign(key: ed25519.Ed25519PrivateKey, message: bytes) -> bytes:
    return crypto.ed25519_sign(key, message)


def _agreement_only(data: bytes) -> bytes:
    raise ISOError(SW.INCORRECT_DATA, "an X25519 key only does key agreement")


def private_operation(key: PrivateKey) -> Callable[[bytes], bytes]:
    """What GENERAL AUTHENTICATE `81` does with this key, bound once when the key is loaded.

    Raw RSA (sign or decrypt), ECDSA of a digest, or Ed25519 of a whole message; an
    X25519 key answers 6A80. Choosing the operation per key rather than per call keeps
    type tests off the per-signature path.
    """
    if isinstance(key, rsa.RSAPrivateKey):
        return partial(rsa_private, crypto.RsaSigner(key))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return partial(ecdsa_sign, key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return partial(ed25519_sign, key)
    return _agreement_only


def block_encrypt(algorithm: Algorithm, key: bytes, block: bytes) -> bytes:
    """One ECB block of 3DES or AES: what 9B challenge-response computes."""
    try:
        return crypto.block_encrypt(SYMMETRIC[algorithm][0], key, block)
    except ValueError as error:
        raise _bad_input(error) from None


def block_size(algorithm: Algorithm) -> int:
    return crypto.block_size(SYMMETRIC[algorithm][0])


def random_bytes(count: int) -> bytes:
    return crypto.random_bytes(count)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return crypto.constant_time_equal(a, b)
