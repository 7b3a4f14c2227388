"""Host-side RSA encodings the Base CSP/KSP would do for a card that only has raw RSA.

CardSignData receives a hash; the spec lets the minidriver pad on the card or
with pfnCspPadData. PIV cards only offer raw RSA, so PKCS#1 v1.5 (EMSA) and PSS
blocks are built here, and CardRSADecrypt v2 removes PKCS#1 v1.5 / OAEP padding
from the raw block (the job pfnCspUnpadData does on Windows). The hashes and
random numbers come from hashlib/secrets; nothing here is a cipher.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .constants import (
    CALG_MD5,
    CALG_SHA1,
    CALG_SHA_256,
    CALG_SHA_384,
    CALG_SHA_512,
    CALG_SSL3_SHAMD5,
)

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1)
DIGEST_INFO: dict[str, bytes] = {
    "MD5": bytes.fromhex("3020300c06082a864886f70d020505000410"),
    "SHA1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "SHA256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "SHA384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "SHA512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
HASH_LENGTHS = {"MD5": 16, "SHA1": 20, "SHA256": 32, "SHA384": 48, "SHA512": 64, "SHAMD5": 36}
CALG_NAMES = {
    CALG_MD5: "MD5",
    CALG_SHA1: "SHA1",
    CALG_SHA_256: "SHA256",
    CALG_SHA_384: "SHA384",
    CALG_SHA_512: "SHA512",
    CALG_SSL3_SHAMD5: "SHAMD5",
}


class PaddingError(ValueError):
    pass


def digest_info(hash_name: str | None, digest: bytes) -> bytes:
    """DigestInfo || hash, or the bare input for no algorithm / SSL3 MD5||SHA1."""
    if hash_name is None or hash_name == "SHAMD5":
        return digest
    prefix = DIGEST_INFO.get(hash_name)
    if prefix is None:
        raise PaddingError(f"unknown hash {hash_name}")
    if len(digest) != HASH_LENGTHS[hash_name]:
        raise PaddingError(f"{hash_name} digest must be {HASH_LENGTHS[hash_name]} bytes, not {len(digest)}")
    return prefix + digest


def pkcs1_type1(payload: bytes, k: int) -> bytes:
    """EMSA-PKCS1-v1_5 block: 00 01 FF.. 00 payload (k bytes)."""
    if len(payload) > k - 11:
        raise PaddingError("input too long for the modulus")
    return b"\x00\x01" + b"\xff" * (k - 3 - len(payload)) + b"\x00" + payload


def _mgf1(seed: bytes, length: int, hash_name: str) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def pss_encode(m_hash: bytes, hash_name: str, salt_length: int, mod_bits: int) -> bytes:
    """EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with MGF1 over the same hash; returns k bytes."""
    h_len = len(m_hash)
    em_bits = mod_bits - 1
    em_len = (em_bits + 7) // 8
    if em_len < h_len + salt_length + 2:
        raise PaddingError("modulus too small for PSS with this hash and salt")
    salt = secrets.token_bytes(salt_length)
    h = hashlib.new(hash_name, b"\x00" * 8 + m_hash + salt).digest()
    db = b"\x00" * (em_len - salt_length - h_len - 2) + b"\x01" + salt
    masked = bytes(a ^ b for a, b in zip(db, _mgf1(h, len(db), hash_name), strict=True))
    first = masked[0] & (0xFF >> (8 * em_len - em_bits))
    em = bytes([first]) + masked[1:] + h + b"\xbc"
    k = (mod_bits + 7) // 8
    return b"\x00" * (k - em_len) + em


def pkcs1_type2_unpad(block: bytes) -> bytes:
    """EME-PKCS1-v1_5 decode. Scans the whole block so timing does not depend on the separator."""
    good = hmac.compare_digest(block[:2], b"\x00\x02")
    separator = 0
    for index in range(2, len(block)):
        is_zero = block[index] == 0
        if is_zero and separator == 0:
            separator = index
    good = good and separator >= 10
    if not good:
        raise PaddingError("decryption error")
    return block[separator + 1 :]


def oaep_unpad(block: bytes, hash_name: str, label: bytes = b"") -> bytes:
    """EME-OAEP decode (RFC 8017 §7.1.2) with MGF1 over the same hash."""
    h_len = hashlib.new(hash_name).digest_size
    k = len(block)
    if k < 2 * h_len + 2:
        raise PaddingError("decryption error")
    y, masked_seed, masked_db = block[0], block[1 : 1 + h_len], block[1 + h_len :]
    seed = bytes(a ^ b for a, b in zip(masked_seed, _mgf1(masked_db, h_len, hash_name), strict=True))
    db = bytes(a ^ b for a, b in zip(masked_db, _mgf1(seed, k - h_len - 1, hash_name), strict=True))
    l_hash = hashlib.new(hash_name, label).digest()
    good = hmac.compare_digest(db[:h_len], l_hash) and y == 0
    separator = 0
    bad_padding = False
    for index in range(h_len, len(db)):
        if separator == 0:
            if db[index] == 1:
                separator = index
            elif db[index] != 0:
                bad_padding = True
    if not good or bad_padding or separator == 0:
        raise PaddingError("decryption error")
    return db[separator + 1 :]
