"""Thin helpers over `cryptography` for the applets: keys, signatures, raw RSA, ECDH, block ciphers.

Every primitive comes from `cryptography` (OpenSSL) except one: the raw RSA private
operation on a block the host already padded, which `cryptography` does not offer
(see `rsa_raw_private`). Randomness comes from `secrets`.

API
---
Keys
    KEY_KINDS                                  "rsa1024" "rsa2048" "rsa3072" "rsa4096" "p256" "p384"
                                               "p521" "ed25519" "x25519"
    PrivateKey                                 union of the four private key classes
    generate_private_key(kind) -> PrivateKey   RSA with e = 65537
    key_kind(key) -> str                       inverse of generate_private_key
    private_key_to_pem(key) -> str             PKCS#8, unencrypted (the state file is 0600)
    private_key_from_pem(text) -> PrivateKey   ValueError for other key types / bad PEM
    rsa_private_key_from_primes(p, q, e=65537) key import (PIV/YubiKey import sends p, q, ...)
    private_key_from_scalar(kind, value)       EC private scalar (big-endian) or raw 32-byte
                                               Ed25519/X25519 private key -> key (key import)
    public_key_der(key) -> bytes               SubjectPublicKeyInfo DER
    public_point(key) -> bytes                 EC: uncompressed 04||X||Y; Ed25519/X25519: raw 32 bytes
    rsa_public_numbers(key) -> (n, e)
    modulus_length(key) -> int                 RSA modulus length in bytes

Private-key operations
    rsa_sign_block(key, block) -> bytes        raw RSA on a host-padded block (fast path for PKCS#1 v1.5)
    RsaSigner(key)                             one key's .sign_block(block) and .sign_pkcs1(digest_info),
                                               checks done once (what applets keep per loaded key)
    rsa_raw_private(key, block) -> bytes       raw RSA private operation, blinded, fault-checked
    ecdsa_sign_digest(key, digest) -> bytes    DER ECDSA signature of a precomputed digest
    ecdh(key, peer_public_point) -> bytes      shared secret (NIST: X coordinate; X25519: 32 bytes)
    ed25519_sign(key, message) -> bytes

Symmetric (challenge-response / mutual authentication of management and admin keys)
    BLOCK_ALGORITHMS                           "3des" (24-byte key), "aes128", "aes192", "aes256"
    KEY_LENGTHS                                {algorithm: key bytes}
    block_size(algorithm) / key_length(algorithm) -> int
    block_encrypt / block_decrypt(algorithm, key, block)     one block, ECB
    cbc_encrypt / cbc_decrypt(algorithm, key, iv, data)      no padding: the caller pads

Misc
    random_bytes(n) -> bytes                   secrets.token_bytes
    constant_time_equal(a, b) -> bool          hmac.compare_digest

Bad arguments (wrong key type for the operation, wrong lengths, unknown kind or
algorithm) raise ValueError; applets turn that into the status word they need.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import TypeAlias

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

__all__ = [
    "BLOCK_ALGORITHMS",
    "KEY_KINDS",
    "KEY_LENGTHS",
    "PrivateKey",
    "RsaSigner",
    "block_decrypt",
    "block_encrypt",
    "block_size",
    "cbc_decrypt",
    "cbc_encrypt",
    "constant_time_equal",
    "ecdh",
    "ecdsa_sign_digest",
    "ed25519_sign",
    "generate_private_key",
    "key_kind",
    "key_length",
    "modulus_length",
    "private_key_from_pem",
    "private_key_from_scalar",
    "private_key_to_pem",
    "public_key_der",
    "public_point",
    "random_bytes",
    "rsa_private_key_from_primes",
    "rsa_public_numbers",
    "rsa_raw_private",
    "rsa_sign_block",
]

KEY_KINDS = ("rsa1024", "rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521", "ed25519", "x25519")

PrivateKey: TypeAlias = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey
)

RSA_PUBLIC_EXPONENT = 65537

_RSA_BITS = {"rsa1024": 1024, "rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1,
    "p384": ec.SECP384R1,
    "p521": ec.SECP521R1,
}
_CURVE_KIND = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}


# ---- keys --------------------------------------------------------------------


def generate_private_key(kind: str) -> PrivateKey:
    """A fresh private key of one of KEY_KINDS (RSA keys use e = 65537)."""
    if kind in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=_RSA_BITS[kind])
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind]())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "x25519":
        return x25519.X25519PrivateKey.generate()
    raise ValueError(f"unknown key kind {kind!r}; expected one of {', '.join(KEY_KINDS)}")


def key_kind(key: PrivateKey) -> str:
    """The KEY_KINDS name of a key (ValueError for RSA sizes or curves outside the list)."""
    if isinstance(key, rsa.RSAPrivateKey):
        kind = f"rsa{key.key_size}"
        if kind not in _RSA_BITS:
            raise ValueError(f"unsupported RSA key size {key.key_size}")
        return kind
    if isinstance(key, ec.EllipticCurvePrivateKey):
        try:
            return _CURVE_KIND[key.curve.name]
        except KeyError:
            raise ValueError(f"unsupported curve {key.curve.name}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, x25519.X25519PrivateKey):
        return "x25519"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def private_key_to_pem(key: PrivateKey) -> str:
    """PKCS#8 PEM without encryption (the state file that stores it is 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def private_key_from_pem(text: str) -> PrivateKey:
    """Load an unencrypted PEM private key of one of the supported kinds."""
    key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    if not isinstance(key, PrivateKey):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    key_kind(key)  # rejects sizes and curves outside KEY_KINDS
    return key


def rsa_private_key_from_primes(p: int, q: int, e: int = RSA_PUBLIC_EXPONENT) -> rsa.RSAPrivateKey:
    """An RSA key from its primes (what PIV key import sends, with e implied to be 65537).

    The CRT values are recomputed here; an importer that also received dP, dQ and qInv
    should compare them with the returned key's private_numbers() to reject garbage.
    """
    if p <= 1 or q <= 1 or p == q:
        raise ValueError("invalid RSA primes")
    try:
        d = rsa.rsa_recover_private_exponent(e, p, q)
        numbers = rsa.RSAPrivateNumbers(
            p=p,
            q=q,
            d=d,
            dmp1=rsa.rsa_crt_dmp1(d, p),
            dmq1=rsa.rsa_crt_dmq1(d, q),
            iqmp=rsa.rsa_crt_iqmp(p, q),
            public_numbers=rsa.RSAPublicNumbers(e, p * q),
        )
        key = numbers.private_key()
    except (ValueError, ArithmeticError) as error:
        raise ValueError(f"invalid RSA key: {error}") from None
    key_kind(key)
    return key


def private_key_from_scalar(kind: str, value: bytes) -> PrivateKey:
    """An EC key from its big-endian private scalar, or an Ed25519/X25519 key from its raw 32 bytes."""
    if kind in _CURVES:
        curve = _CURVES[kind]()
        if len(value) != (curve.key_size + 7) // 8:
            raise ValueError(f"{kind} private scalar must be {(curve.key_size + 7) // 8} bytes")
        return ec.derive_private_key(int.from_bytes(value, "big"), curve)
    if kind in ("ed25519", "x25519"):
        if len(value) != 32:
            raise ValueError(f"{kind} private key must be 32 bytes")
        if kind == "ed25519":
            return ed25519.Ed25519PrivateKey.from_private_bytes(value)
        return x25519.X25519PrivateKey.from_private_bytes(value)
    raise ValueError(f"no scalar form for key kind {kind!r}")


def public_key_der(key: PrivateKey) -> bytes:
    """The public key as SubjectPublicKeyInfo DER."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_point(key: PrivateKey) -> bytes:
    """EC: the uncompressed point 04||X||Y; Ed25519/X25519: the raw 32-byte public key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    if isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey):
        return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raise ValueError("an RSA key has no point; use rsa_public_numbers")


def rsa_public_numbers(key: PrivateKey) -> tuple[int, int]:
    """(n, e) of an RSA key."""
    numbers = _rsa(key).public_key().public_numbers()
    return numbers.n, numbers.e


def modulus_length(key: PrivateKey) -> int:
    """Length of an RSA modulus in bytes (the block size of raw RSA)."""
    return (_rsa(key).key_size + 7) // 8


def _rsa(key: PrivateKey) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"operation needs an RSA key, not {key_kind(key)}")
    return key


# ---- RSA ---------------------------------------------------------------------

# DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017 section 9.2, note 1): DER of
# SEQUENCE { SEQUENCE { OID, NULL }, OCTET STRING (digest) } up to the digest bytes.
# Keyed by the whole DigestInfo's length, which differs for every hash; the padding and
# prehashed-algorithm objects are immutable and built once (not per signature).
_DIGEST_INFOS: dict[int, tuple[bytes, utils.Prehashed]] = {
    len(prefix) + algorithm.digest_size: (prefix, utils.Prehashed(algorithm))
    for prefix, algorithm in (
        (bytes.fromhex("3021300906052b0e03021a05000414"), hashes.SHA1()),
        (bytes.fromhex("302d300d06096086480165030402040500041c"), hashes.SHA224()),
        (bytes.fromhex("3031300d060960864801650304020105000420"), hashes.SHA256()),
        (bytes.fromhex("3041300d060960864801650304020205000430"), hashes.SHA384()),
        (bytes.fromhex("3051300d060960864801650304020305000440"), hashes.SHA512()),
    )
}
_PKCS1V15 = padding.PKCS1v15()
_PKCS1_MIN_PADDING = 8  # RFC 8017 9.2: PS is at least 8 bytes of FF


def _digest_info(data: bytes) -> tuple[bytes, utils.Prehashed] | None:
    """(digest, prehashed algorithm) if `data` is exactly a SHA-1/224/256/384/512 DigestInfo."""
    known = _DIGEST_INFOS.get(len(data))
    if known is None or not data.startswith(known[0]):
        return None
    return data[len(known[0]) :], known[1]


def _pkcs1_v15_digest(block: bytes, length: int) -> tuple[bytes, utils.Prehashed] | None:
    """(digest, prehashed algorithm) if `block` is exactly EMSA-PKCS1-v1_5 of a known DigestInfo."""
    if len(block) != length or block[:2] != b"\x00\x01":
        return None
    separator = block.find(b"\x00", 2)
    if separator < 0:
        return None
    parsed = _digest_info(block[separator + 1 :])
    if parsed is None:
        return None
    # Padding must be FF.. of the exact length (at least 8 bytes), so that OpenSSL's
    # encoding of this digest is this very block.
    pad_length = separator - 2
    if pad_length < _PKCS1_MIN_PADDING or block.count(b"\xff", 2, separator) != pad_length:
        return None
    return parsed


def _sign_block(private: rsa.RSAPrivateKey, length: int, block: bytes) -> bytes:
    parsed = _pkcs1_v15_digest(block, length)
    if parsed is not None:
        return private.sign(parsed[0], _PKCS1V15, parsed[1])
    return rsa_raw_private(private, block)


def rsa_sign_block(key: PrivateKey, block: bytes) -> bytes:
    """Raw RSA private operation on a host-padded block (PIV/GIDS "sign" and decipher).

    The result is always block^d mod n. When the block is a well-formed EMSA-PKCS1-v1_5
    encoding of a SHA-1/224/256/384/512 DigestInfo, the signature is computed by
    OpenSSL (`key.sign` with a prehashed digest): PKCS#1 v1.5 signing is deterministic,
    so this gives exactly the raw RSA result, only faster. Any other block (PSS encoding,
    TLS MD5+SHA-1, a type-2 encryption block) goes through `rsa_raw_private`.
    """
    private = _rsa(key)
    return _sign_block(private, modulus_length(private), block)


class RsaSigner:
    """The RSA private operations of one key, its type and modulus length checked once.

    Applets keep one with each loaded key: a signature then pays for no isinstance
    test against `cryptography`'s abstract key classes and no key_size lookup,
    which together cost about as much as the rest of the card's own work per call.
    """

    __slots__ = ("key", "length")

    def __init__(self, key: PrivateKey) -> None:
        self.key = _rsa(key)
        self.length = modulus_length(self.key)

    def sign_block(self, block: bytes) -> bytes:
        """`rsa_sign_block` with this key."""
        return _sign_block(self.key, self.length, block)

    def sign_pkcs1(self, t: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 over `t`, the encoded DigestInfo (or the 36-byte TLS MD5+SHA-1 hash).

        The result is that of the block 00 01 FF.. 00 || t, computed by OpenSSL from the
        digest when `t` is a known DigestInfo (the block is never built and parsed back),
        else by `rsa_raw_private` on the block. ValueError when `t` leaves fewer than
        8 padding bytes.
        """
        pad_length = self.length - 3 - len(t)
        if pad_length < _PKCS1_MIN_PADDING:
            raise ValueError(f"{len(t)} bytes cannot be PKCS#1-padded to {self.length}")
        parsed = _digest_info(t)
        if parsed is not None:
            return self.key.sign(parsed[0], _PKCS1V15, parsed[1])
        return rsa_raw_private(self.key, b"\x00\x01" + b"\xff" * pad_length + b"\x00" + t)


def rsa_raw_private(key: PrivateKey, block: bytes) -> bytes:
    """block^d mod n for a block of exactly the modulus length whose value is below n.

    Why not `cryptography`: PIV GENERAL AUTHENTICATE and GIDS PERFORM SECURITY OPERATION
    hand the card a block the host has already padded (PKCS#1 v1.5, PSS, OAEP or a raw
    TLS 1.0 MD5+SHA-1 block) and expect the bare RSA private operation. `cryptography`
    exposes RSA only together with a padding scheme and has no "no padding" private
    operation, so this single operation is computed here from the key's private numbers
    with Python's arbitrary-precision `pow`. Everything else (key generation, PKCS#1 v1.5
    signing on the fast path of `rsa_sign_block`, key storage) stays in OpenSSL.

    What protects it:
    - base blinding: the input is multiplied by r^e for a fresh random r (from `secrets`)
      and the result by r^-1, so the exponentiations work on values unrelated to the
      input and their timing cannot be correlated with it;
    - exponent blinding: the CRT exponents are dP + k1(p-1) and dQ + k2(q-1) for fresh
      random 64-bit k1, k2, so the exponent bits used differ at every call;
    - fault check: the result is raised to e and compared with the input before it is
      returned, so a computation fault cannot leak a CRT half (the Bellcore attack);
    - input check: the block must be exactly the modulus length and its value below n.
    Python's `pow` is not constant time; the blinding is what makes that acceptable
    for a virtual card whose key sits in a 0600 file on the same host anyway.
    """
    private = _rsa(key)
    numbers = private.private_numbers()
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    length = (n.bit_length() + 7) // 8
    if len(block) != length:
        raise ValueError(f"RSA block must be {length} bytes, got {len(block)}")
    m = int.from_bytes(block, "big")
    if m >= n:
        raise ValueError("RSA block value is not below the modulus")
    p, q, iqmp = numbers.p, numbers.q, numbers.iqmp

    while True:
        r = secrets.randbelow(n - 2) + 2
        if math.gcd(r, n) == 1:
            break
    blinded = (m * pow(r, e, n)) % n
    dp = numbers.dmp1 + secrets.randbits(64) * (p - 1)
    dq = numbers.dmq1 + secrets.randbits(64) * (q - 1)
    s1 = pow(blinded % p, dp, p)
    s2 = pow(blinded % q, dq, q)
    h = (iqmp * (s1 - s2)) % p
    s = ((s2 + h * q) * pow(r, -1, n)) % n
    if pow(s, e, n) != m:
        raise ValueError("RSA fault check failed")  # never expected; refuse rather than leak
    return s.to_bytes(length, "big")


# ---- EC / Edwards / Montgomery -------------------------------------------------

_HASH_BY_SIZE: dict[int, hashes.HashAlgorithm] = {
    20: hashes.SHA1(),
    28: hashes.SHA224(),
    32: hashes.SHA256(),
    48: hashes.SHA384(),
    64: hashes.SHA512(),
}


def ecdsa_sign_digest(key: PrivateKey, digest: bytes) -> bytes:
    """DER ECDSA signature (SEQUENCE of r, s) of a digest computed by the host.

    A digest of 20, 28, 32, 48 or 64 bytes is passed unchanged as a prehashed
    SHA-1/224/256/384/512 value; OpenSSL then applies the X9.62 rule itself (use the
    leftmost bits of the digest, as many as the group order has: a SHA-512 digest
    signed with P-256 uses its first 256 bits).

    Any other length gets the same X9.62 rule here: e = the leftmost min(8*len, N)
    bits of the digest (N = bit length of the order). e is then left-padded with zero
    bytes to the curve's natural hash size (32 for P-256, 48 for P-384, 64 for P-521),
    which OpenSSL does not truncate further, so the signature is over exactly e.
    A 16-byte digest on P-256 is thus signed as the integer value of those 16 bytes, a
    40-byte digest on P-256 as its first 32 bytes. The one case that cannot be passed
    through (P-521 with a non-standard digest longer than 64 bytes whose e needs more
    than 512 bits) raises ValueError. An empty digest raises ValueError.
    """
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("ECDSA needs an EC key")
    if not digest:
        raise ValueError("empty digest")
    algorithm = _HASH_BY_SIZE.get(len(digest))
    if algorithm is None:
        order_bits = key.curve.key_size  # NIST P-curves: order and field have the same bit length
        e = int.from_bytes(digest, "big")
        if 8 * len(digest) > order_bits:
            e >>= 8 * len(digest) - order_bits
        size = {256: 32, 384: 48, 521: 64}.get(order_bits)
        if size is None:
            raise ValueError(f"unsupported curve {key.curve.name}")
        if e.bit_length() > 8 * size:
            raise ValueError(f"a {len(digest)}-byte digest cannot be signed with {key.curve.name}")
        digest = e.to_bytes(size, "big")
        algorithm = _HASH_BY_SIZE[size]
    return key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))


def ecdh(key: PrivateKey, peer_public_point: bytes) -> bytes:
    """ECDH shared secret.

    NIST curves: `peer_public_point` is an uncompressed point 04||X||Y on the key's curve,
    the result is the X coordinate (field-size bytes). X25519: 32 raw bytes in and out.
    An invalid point raises ValueError.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        field = (key.curve.key_size + 7) // 8
        if len(peer_public_point) != 1 + 2 * field or peer_public_point[0] != 0x04:
            raise ValueError(f"peer point must be an uncompressed {key.curve.name} point")
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, peer_public_point)
        return key.exchange(ec.ECDH(), peer)
    if isinstance(key, x25519.X25519PrivateKey):
        if len(peer_public_point) != 32:
            raise ValueError("X25519 peer public key must be 32 bytes")
        return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public_point))
    raise ValueError(f"ECDH needs an EC or X25519 key, not {key_kind(key)}")


def ed25519_sign(key: PrivateKey, message: bytes) -> bytes:
    """Pure Ed25519 signature (64 bytes) of the whole message."""
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("Ed25519 signing needs an Ed25519 key")
    return key.sign(message)


# ---- block ciphers -------------------------------------------------------------

KEY_LENGTHS: dict[str, int] = {"3des": 24, "aes128": 16, "aes192": 24, "aes256": 32}
"""Key bytes per block algorithm; the security core validates challenge-role keys against it."""
BLOCK_ALGORITHMS = tuple(KEY_LENGTHS)


def key_length(algorithm: str) -> int:
    """Key length in bytes: 3des 24 (three-key), aes128 16, aes192 24, aes256 32."""
    try:
        return KEY_LENGTHS[algorithm]
    except KeyError:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {BLOCK_ALGORITHMS}") from None


def block_size(algorithm: str) -> int:
    """Block size in bytes: 8 for 3DES, 16 for AES."""
    key_length(algorithm)
    return 8 if algorithm == "3des" else 16


def _cipher_algorithm(algorithm: str, key: bytes) -> BlockCipherAlgorithm:
    expected = key_length(algorithm)
    if len(key) != expected:
        raise ValueError(f"{algorithm} key must be {expected} bytes, got {len(key)}")
    if algorithm == "3des":
        return TripleDES(key)
    return algorithms.AES(key)


def _check_blocks(algorithm: str, data: bytes) -> None:
    size = block_size(algorithm)
    if len(data) % size:
        raise ValueError(f"{algorithm} data must be a multiple of {size} bytes, got {len(data)}")


def block_encrypt(algorithm: str, key: bytes, block: bytes) -> bytes:
    """Encrypt exactly one block (ECB)."""
    cipher_algorithm = _cipher_algorithm(algorithm, key)
    if len(block) != block_size(algorithm):
        raise ValueError(f"{algorithm} block must be {block_size(algorithm)} bytes, got {len(block)}")
    encryptor = Cipher(cipher_algorithm, modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def block_decrypt(algorithm: str, key: bytes, block: bytes) -> bytes:
    """Decrypt exactly one block (ECB)."""
    cipher_algorithm = _cipher_algorithm(algorithm, key)
    if len(block) != block_size(algorithm):
        raise ValueError(f"{algorithm} block must be {block_size(algorithm)} bytes, got {len(block)}")
    decryptor = Cipher(cipher_algorithm, modes.ECB()).decryptor()
    return decryptor.update(block) + decryptor.finalize()


def cbc_encrypt(algorithm: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC encryption without padding (the caller pads to whole blocks)."""
    cipher_algorithm = _cipher_algorithm(algorithm, key)
    if len(iv) != block_size(algorithm):
        raise ValueError(f"{algorithm} IV must be {block_size(algorithm)} bytes")
    _check_blocks(algorithm, data)
    encryptor = Cipher(cipher_algorithm, modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def cbc_decrypt(algorithm: str, key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC decryption without padding removal."""
    cipher_algorithm = _cipher_algorithm(algorithm, key)
    if len(iv) != block_size(algorithm):
        raise ValueError(f"{algorithm} IV must be {block_size(algorithm)} bytes")
    _check_blocks(algorithm, data)
    decryptor = Cipher(cipher_algorithm, modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


# ---- misc ----------------------------------------------------------------------


def random_bytes(n: int) -> bytes:
    """n bytes from the OS CSPRNG."""
    return secrets.token_bytes(n)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets (PINs, cryptograms) without a timing side channel on the contents."""
    return hmac.compare_digest(a, b)
