"""Kerberos encryption for aes128/aes256-cts-hmac-sha1-96 (RFC 3961 simplified profile, RFC 3962).

Every primitive is `cryptography`'s: AES (ECB for single blocks, CBC for the chain),
HMAC-SHA1, PBKDF2-HMAC-SHA1, SHA-1. What is composed here is what the RFCs define on top:
n-fold (RFC 3961 §5.1), DR/DK key derivation (§5.1), ciphertext stealing with the last
two blocks swapped (RFC 3962 §5, CBC-CS3), the encrypt/decrypt layout (confounder,
HMAC-SHA1-96 over the plaintext) and PKINIT's octetstring2key (RFC 4556 §3.2.3.1).
"""

from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

BLOCK = 16
MAC_SIZE = 12
AES128_CTS_HMAC_SHA1_96 = 17
AES256_CTS_HMAC_SHA1_96 = 18
KEY_SIZES = {AES128_CTS_HMAC_SHA1_96: 16, AES256_CTS_HMAC_SHA1_96: 32}
ENCTYPE_NAMES = {
    AES128_CTS_HMAC_SHA1_96: "aes128-cts-hmac-sha1-96",
    AES256_CTS_HMAC_SHA1_96: "aes256-cts-hmac-sha1-96",
}
# key usages (RFC 4120 §7.5.1, RFC 4556 §3.2.3.2)
USAGE_AS_REP_ENC_PART = 3
USAGE_PKINIT_AS_CHECKSUM = 6
# checksum types (RFC 3962 §7): hmac-sha1-96-aes128 / -aes256
CHECKSUM_TYPES = {AES128_CTS_HMAC_SHA1_96: 15, AES256_CTS_HMAC_SHA1_96: 16}


class KerberosCryptoError(Exception):
    """Decryption failed (integrity check, length) or an unsupported encryption type."""


@dataclass(frozen=True)
class Key:
    enctype: int
    value: bytes

    def __post_init__(self) -> None:
        if self.enctype not in KEY_SIZES:
            raise KerberosCryptoError(f"encryption type {self.enctype} is not supported (only AES 17/18)")
        if len(self.value) != KEY_SIZES[self.enctype]:
            raise KerberosCryptoError(
                f"{ENCTYPE_NAMES[self.enctype]} key of {len(self.value)} bytes, "
                f"expected {KEY_SIZES[self.enctype]}"
            )


def nfold(data: bytes, size: int) -> bytes:
    """RFC 3961 §5.1 n-fold: `size` bytes from `data` (rotations by 13 bits, ones'-complement sum)."""
    length = len(data)
    lcm = math.lcm(size, length)
    bits = length * 8
    number = int.from_bytes(data, "big")
    copies = bytearray()
    for index in range(lcm // length):
        shift = (13 * index) % bits
        rotated = ((number >> shift) | (number << (bits - shift))) & ((1 << bits) - 1)
        copies += rotated.to_bytes(length, "big")
    total = 0
    modulus = (1 << (size * 8)) - 1
    for offset in range(0, lcm, size):
        total += int.from_bytes(copies[offset : offset + size], "big")
        while total > modulus:  # end-around carry
            total = (total & modulus) + (total >> (size * 8))
    return total.to_bytes(size, "big")


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def derive_random(key: bytes, constant: bytes) -> bytes:
    """DR(Key, Constant): AES blocks chained from n-fold(constant), truncated to the key size."""
    block = nfold(constant, BLOCK) if len(constant) != BLOCK else constant
    out = b""
    while len(out) < len(key):
        block = _aes_block(key, block)
        out += block
    return out[: len(key)]


def derive_key(key: Key, constant: bytes) -> Key:
    """DK(Key, Constant) = random-to-key(DR(Key, Constant)); random-to-key is the identity for AES."""
    return Key(key.enctype, derive_random(key.value, constant))


def cts_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """AES-CBC with ciphertext stealing, IV zero, last two blocks swapped (RFC 3962 §5)."""
    if len(plaintext) < BLOCK:
        raise KerberosCryptoError(f"CTS needs at least one block, got {len(plaintext)} bytes")
    padded = plaintext + b"\x00" * (-len(plaintext) % BLOCK)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(b"\x00" * BLOCK)).encryptor()
    chain = encryptor.update(padded) + encryptor.finalize()
    if len(plaintext) == BLOCK:
        return chain
    tail = len(plaintext) - (len(padded) - BLOCK)  # bytes in the last (partial) block
    head = chain[: -2 * BLOCK]
    last, before_last = chain[-BLOCK:], chain[-2 * BLOCK : -BLOCK]
    return head + last + before_last[:tail]


def cts_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    """Inverse of `cts_encrypt`."""
    if len(ciphertext) < BLOCK:
        raise KerberosCryptoError(f"ciphertext of {len(ciphertext)} bytes is shorter than one block")
    if len(ciphertext) == BLOCK:
        decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()
    tail = len(ciphertext) % BLOCK or BLOCK
    head = ciphertext[: -(BLOCK + tail)]
    swapped, partial = ciphertext[-(BLOCK + tail) : -tail], ciphertext[-tail:]
    ecb = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    decrypted = ecb.update(swapped) + ecb.finalize()  # = P_n padded XOR C_{n-1} (full)
    full_last = partial + decrypted[tail:]
    last_plain = bytes(a ^ b for a, b in zip(decrypted[:tail], full_last[:tail], strict=True))
    decryptor = Cipher(algorithms.AES(key), modes.CBC(b"\x00" * BLOCK)).decryptor()
    front = decryptor.update(head + full_last) + decryptor.finalize()
    return front + last_plain


def _hmac_sha1(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA1())
    mac.update(data)
    return mac.finalize()


def _usage_keys(key: Key, usage: int) -> tuple[Key, Key]:
    prefix = usage.to_bytes(4, "big")
    return derive_key(key, prefix + b"\xaa"), derive_key(key, prefix + b"\x55")


def encrypt(key: Key, usage: int, plaintext: bytes, confounder: bytes | None = None) -> bytes:
    """RFC 3961 §5.3 encryption: CTS(Ke, confounder|plaintext) | HMAC-SHA1-96(Ki, confounder|plaintext)."""
    ke, ki = _usage_keys(key, usage)
    confounder = secrets.token_bytes(BLOCK) if confounder is None else confounder
    data = confounder + plaintext
    return cts_encrypt(ke.value, data) + _hmac_sha1(ki.value, data)[:MAC_SIZE]


def decrypt(key: Key, usage: int, ciphertext: bytes) -> bytes:
    """Inverse of `encrypt`; the integrity check is compared in constant time."""
    if len(ciphertext) < BLOCK + MAC_SIZE:
        raise KerberosCryptoError(f"ciphertext of {len(ciphertext)} bytes is too short")
    ke, ki = _usage_keys(key, usage)
    body, mac = ciphertext[:-MAC_SIZE], ciphertext[-MAC_SIZE:]
    data = cts_decrypt(ke.value, body)
    if not hmac.compare_digest(_hmac_sha1(ki.value, data)[:MAC_SIZE], mac):
        raise KerberosCryptoError("integrity check failed (wrong reply key, or the reply was altered)")
    return data[BLOCK:]


def checksum(key: Key, usage: int, data: bytes) -> bytes:
    """RFC 3961 §5.4 keyed checksum: HMAC-SHA1-96 with Kc = DK(key, usage | 0x99)."""
    kc = derive_key(key, usage.to_bytes(4, "big") + b"\x99")
    return _hmac_sha1(kc.value, data)[:MAC_SIZE]


def verify_checksum(key: Key, usage: int, data: bytes, cksumtype: int, value: bytes) -> bool:
    """Constant-time check of a checksum of this key's type."""
    if CHECKSUM_TYPES.get(key.enctype) != cksumtype:
        return False
    return hmac.compare_digest(checksum(key, usage, data), value)


def string_to_key(enctype: int, password: bytes, salt: bytes, iterations: int = 4096) -> Key:
    """RFC 3962 §4: DK(random-to-key(PBKDF2-HMAC-SHA1(password, salt, iterations)), "kerberos")."""
    size = KEY_SIZES.get(enctype)
    if size is None:
        raise KerberosCryptoError(f"encryption type {enctype} is not supported")
    raw = PBKDF2HMAC(hashes.SHA1(), size, salt, iterations).derive(password)
    return derive_key(Key(enctype, raw), b"kerberos")


def octetstring2key(enctype: int, secret: bytes) -> Key:
    """RFC 4556 §3.2.3.1: random-to-key(K-truncate(SHA1(0x00|x) | SHA1(0x01|x) | ...))."""
    size = KEY_SIZES.get(enctype)
    if size is None:
        raise KerberosCryptoError(f"encryption type {enctype} is not supported")
    out = b""
    counter = 0
    while len(out) < size:
        digest = hashes.Hash(hashes.SHA1())
        digest.update(bytes([counter]) + secret)
        out += digest.finalize()
        counter += 1
    return Key(enctype, out[:size])
