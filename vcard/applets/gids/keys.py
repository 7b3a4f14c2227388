"""Asymmetric key operations of GIDS key EFs, on top of `vcard.crypto`.

The card pads for RSASSA-PKCS1-v1_5 (algorithm nibble 5x) and strips
RSAES-PKCS1-v1_5 / OAEP padding on decipher (4x / 8x); raw variants (1x sign,
0x decipher) work on a block the host formatted. ECC keys (P-256/384/521) sign
a host-computed digest (ECDSA, answered as r||s, the Windows CNG form) and
"decipher" a peer point into an ECDH shared secret; OpenSC never uses them,
other hosts may.

Private keys are stored as PKCS#8 PEM in the key EF's JSON record and never
leave the card: only the public part is ever encoded into a response.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ... import crypto, tlv
from ...apdu import SW, ISOError
from .constants import (
    ALG_KIND,
    TAG_EC_POINT,
    TAG_EXPONENT,
    TAG_KEY_TYPE,
    TAG_KEY_VALUE,
    TAG_MODULUS,
    TAG_PUBLIC_KEY,
    Padding,
)

KEY_TYPE_RSA = 0x02
PKCS1_SIGN_OVERHEAD = 11
DER_SEQUENCE = 0x30
DER_INTEGER = 0x02


def generate(algorithm: int) -> crypto.PrivateKey:
    """A new key for a size nibble (06..09 RSA, 0C..0E ECC); 6A81 for anything else."""
    kind = ALG_KIND.get(algorithm & 0x0F)
    if kind is None or algorithm & 0xF0:
        raise ISOError(SW.FUNCTION_NOT_SUPPORTED, f"algorithm {algorithm:02X} cannot be generated")
    return crypto.generate_private_key(kind)


def size_nibble(key: crypto.PrivateKey) -> int:
    """The algorithm identifier (size nibble) that names this key's type."""
    kind = crypto.key_kind(key)
    for alg, name in ALG_KIND.items():
        if name == kind:
            return alg
    raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"key kind {kind} has no GIDS identifier")


def public_template(key: crypto.PrivateKey) -> bytes:
    """`7F49 {81 modulus, 82 exponent}` (RSA) or `7F49 {86 04||X||Y}` (ECC)."""
    if isinstance(key, rsa.RSAPrivateKey):
        n, e = crypto.rsa_public_numbers(key)
        modulus = n.to_bytes(crypto.modulus_length(key), "big")
        exponent = e.to_bytes((e.bit_length() + 7) // 8, "big")
        return tlv.encode(
            TAG_PUBLIC_KEY, [tlv.encode(TAG_MODULUS, modulus), tlv.encode(TAG_EXPONENT, exponent)]
        )
    return tlv.encode(TAG_PUBLIC_KEY, [tlv.encode(TAG_EC_POINT, crypto.public_point(key))])


def _integers(sequence: bytes) -> list[int]:
    items = tlv.decode(sequence)
    if any(item.tag != DER_INTEGER or not item.value for item in items):
        raise ISOError(SW.INCORRECT_DATA, "RSAPrivateKey: INTEGERs expected")
    return [int.from_bytes(item.value, "big", signed=False) for item in items]


def import_rsa(key_value_template: bytes) -> crypto.PrivateKey:
    """Key from the `A5` of a PUT DATA 3FFF import: `83 01 02`, `84 01 00`, `87 {PKCS#1 RSAPrivateKey}`.

    INTEGERs are read as unsigned big-endian numbers, so a missing or extra leading
    zero byte (both occur in the wild) does not matter; the key must be consistent
    (cryptography checks n = p*q and the CRT values) or the import is refused.
    """
    fields = tlv.to_dict(key_value_template)
    key_type = fields.get(TAG_KEY_TYPE)
    if key_type is not None and key_type.lstrip(b"\x00") not in (bytes([KEY_TYPE_RSA]),):
        raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "only RSA keys can be imported")
    wrapped = fields.get(0x84)
    if wrapped is not None and wrapped.strip(b"\x00"):
        raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "wrapped key import is not supported")
    value = fields.get(TAG_KEY_VALUE)
    if value is None:
        raise ISOError(SW.INCORRECT_DATA, "key value (87) missing")
    numbers = _integers(tlv.decode_one(value, DER_SEQUENCE).value)
    if len(numbers) != 9 or numbers[0] != 0:
        raise ISOError(SW.INCORRECT_DATA, "RSAPrivateKey version 0 with 8 numbers expected")
    _, n, e, d, p, q, dp, dq, qinv = numbers
    try:
        key = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qinv, rsa.RSAPublicNumbers(e, n)).private_key()
        crypto.key_kind(key)
    except ValueError as error:
        raise ISOError(SW.INCORRECT_DATA, f"inconsistent RSA key: {error}") from None
    return key


def sign(key: crypto.PrivateKey, pad: int, data: bytes) -> bytes:
    """PSO COMPUTE DIGITAL SIGNATURE with the MSE padding nibble `pad` (5x or 1x)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        try:
            r, s = decode_dss_signature(crypto.ecdsa_sign_digest(key, data))
        except ValueError as error:
            raise ISOError(SW.WRONG_LENGTH, str(error)) from None
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    k = crypto.modulus_length(key)
    if pad == Padding.PKCS1_SIGN and len(data) < k:
        if len(data) > k - PKCS1_SIGN_OVERHEAD:
            raise ISOError(SW.WRONG_LENGTH, f"{len(data)} bytes cannot be PKCS#1-padded to {k}")
        # EMSA-PKCS1-v1_5 block 00 01 FF.. 00 || data: the card pads, the host hashed.
        block = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    elif len(data) == k:
        block = data  # a host-formatted block ("full SHA off-card", or raw from PKCS#11)
    else:
        raise ISOError(SW.WRONG_LENGTH, f"raw RSA needs {k} bytes, got {len(data)}")
    try:
        return crypto.rsa_sign_block(key, block)
    except ValueError as error:
        raise ISOError(SW.INCORRECT_DATA, str(error)) from None


def decipher(key: crypto.PrivateKey, pad: int, data: bytes) -> bytes:
    """PSO DECIPHER: the whole data field is the cryptogram (no padding-indicator byte).

    A leading 00 padding indicator in front of a modulus-length cryptogram (as
    ISO-style hosts send it) is tolerated and dropped.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        try:
            return crypto.ecdh(key, data)
        except ValueError as error:
            raise ISOError(SW.INCORRECT_DATA, str(error)) from None
    k = crypto.modulus_length(key)
    if len(data) == k + 1 and data[0] == 0x00:
        data = data[1:]
    if len(data) != k:
        raise ISOError(SW.WRONG_LENGTH, f"cryptogram must be {k} bytes, got {len(data)}")
    assert isinstance(key, rsa.RSAPrivateKey)
    try:
        if pad == Padding.PKCS1_DECIPHER:
            return key.decrypt(data, padding.PKCS1v15())
        if pad == Padding.OAEP:
            return key.decrypt(data, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
        return crypto.rsa_raw_private(key, data)
    except ValueError:
        raise ISOError(SW.INCORRECT_DATA, "decryption failed") from None
