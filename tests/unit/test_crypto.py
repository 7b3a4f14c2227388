"""Tests of vcard.crypto against `cryptography` and published test vectors."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcard import crypto

# ---- fixtures ------------------------------------------------------------------

_KEYS: dict[str, crypto.PrivateKey] = {}


def key_of(kind: str) -> crypto.PrivateKey:
    """One key per kind for the whole module (RSA generation is slow)."""
    if kind not in _KEYS:
        _KEYS[kind] = crypto.generate_private_key(kind)
    return _KEYS[kind]


def rsa_key(kind: str = "rsa1024") -> rsa.RSAPrivateKey:
    key = key_of(kind)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def ec_key(kind: str) -> ec.EllipticCurvePrivateKey:
    key = key_of(kind)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def raw_public(key: rsa.RSAPrivateKey, value: bytes) -> bytes:
    """The RSA public operation, independent of the code under test."""
    numbers = key.public_key().public_numbers()
    length = (numbers.n.bit_length() + 7) // 8
    return pow(int.from_bytes(value, "big"), numbers.e, numbers.n).to_bytes(length, "big")


FAST_KINDS = ("rsa1024", "p256", "p384", "p521", "ed25519", "x25519")


# ---- keys ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", crypto.KEY_KINDS)
def test_generate_key_kind_and_pem_round_trip(kind: str) -> None:
    key = key_of(kind) if kind in FAST_KINDS or kind == "rsa2048" else crypto.generate_private_key(kind)
    assert crypto.key_kind(key) == kind
    pem = crypto.private_key_to_pem(key)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, not encrypted
    loaded = crypto.private_key_from_pem(pem)
    assert crypto.key_kind(loaded) == kind
    assert crypto.public_key_der(loaded) == crypto.public_key_der(key)
    assert loaded.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) == key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_rsa_keys_use_f4_and_requested_size() -> None:
    for kind, bits in (("rsa1024", 1024), ("rsa2048", 2048)):
        key = rsa_key(kind)
        assert key.key_size == bits
        n, e = crypto.rsa_public_numbers(key)
        assert e == 65537
        assert n.bit_length() == bits
        assert n == key.private_numbers().p * key.private_numbers().q
        assert crypto.modulus_length(key) == bits // 8


def test_unknown_kind_and_unsupported_keys_rejected() -> None:
    with pytest.raises(ValueError):
        crypto.generate_private_key("rsa512")
    with pytest.raises(ValueError):
        crypto.key_kind(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(ValueError):
        crypto.key_kind(rsa.generate_private_key(65537, 1536))
    secp256k1_pem = (
        ec.generate_private_key(ec.SECP256K1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(ValueError):
        crypto.private_key_from_pem(secp256k1_pem)
    with pytest.raises(ValueError):
        crypto.private_key_from_pem("not a key")


def test_public_key_der_is_spki_of_the_key() -> None:
    for kind in FAST_KINDS:
        key = key_of(kind)
        loaded = serialization.load_der_public_key(crypto.public_key_der(key))
        assert loaded.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.mark.parametrize(("kind", "field"), [("p256", 32), ("p384", 48), ("p521", 66)])
def test_public_point_is_uncompressed_x_y(kind: str, field: int) -> None:
    key = ec_key(kind)
    point = crypto.public_point(key)
    numbers = key.public_key().public_numbers()
    assert point == b"\x04" + numbers.x.to_bytes(field, "big") + numbers.y.to_bytes(field, "big")


def test_public_point_raw_25519_and_rsa_rejected() -> None:
    for kind in ("ed25519", "x25519"):
        key = key_of(kind)
        point = crypto.public_point(key)
        assert len(point) == 32
        assert point == key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    with pytest.raises(ValueError):
        crypto.public_point(rsa_key())
    with pytest.raises(ValueError):
        crypto.rsa_public_numbers(ec_key("p256"))


def test_rsa_private_key_from_primes_rebuilds_the_key() -> None:
    key = rsa_key()
    numbers = key.private_numbers()
    rebuilt = crypto.rsa_private_key_from_primes(numbers.p, numbers.q)
    assert rebuilt.private_numbers().public_numbers == numbers.public_numbers
    message = b"imported"
    signature = rebuilt.sign(message, padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(ValueError):
        crypto.rsa_private_key_from_primes(numbers.p, numbers.p)
    with pytest.raises(ValueError):
        crypto.rsa_private_key_from_primes(numbers.p, numbers.q + 1)  # q+1 is even: not a prime


@pytest.mark.parametrize("kind", ["p256", "p384", "p521"])
def test_private_key_from_scalar_ec(kind: str) -> None:
    key = ec_key(kind)
    size = (key.curve.key_size + 7) // 8
    scalar = key.private_numbers().private_value.to_bytes(size, "big")
    rebuilt = crypto.private_key_from_scalar(kind, scalar)
    assert crypto.public_point(rebuilt) == crypto.public_point(key)
    with pytest.raises(ValueError):
        crypto.private_key_from_scalar(kind, scalar[1:])


def test_private_key_from_scalar_25519_and_errors() -> None:
    for kind in ("ed25519", "x25519"):
        key = key_of(kind)
        assert isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey)
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        rebuilt = crypto.private_key_from_scalar(kind, raw)
        assert crypto.public_point(rebuilt) == crypto.public_point(key)
        with pytest.raises(ValueError):
            crypto.private_key_from_scalar(kind, raw + b"\x00")
    with pytest.raises(ValueError):
        crypto.private_key_from_scalar("rsa2048", b"\x01" * 32)


# ---- raw RSA -----------------------------------------------------------------------

PKCS1_HASHES = [hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]


@pytest.mark.parametrize("algorithm", PKCS1_HASHES, ids=lambda h: h.name)
@pytest.mark.parametrize("kind", ["rsa1024", "rsa2048"])
def test_sign_block_of_pkcs1_encoding_equals_openssl_signature(
    kind: str, algorithm: hashes.HashAlgorithm, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rsa_key(kind)
    message = b"vcard " + algorithm.name.encode()
    expected = key.sign(message, padding.PKCS1v15(), algorithm)
    block = raw_public(key, expected)  # the EMSA-PKCS1-v1_5 encoding OpenSSL produced
    assert block[:2] == b"\x00\x01"
    # the fast path must recognise every standard DigestInfo: the slow path is not used
    called: list[bytes] = []

    def slow_path(key: crypto.PrivateKey, block: bytes) -> bytes:
        called.append(block)
        return b""

    monkeypatch.setattr(crypto, "rsa_raw_private", slow_path)
    signature = crypto.rsa_sign_block(key, block)
    assert called == []
    assert signature == expected
    key.public_key().verify(signature, message, padding.PKCS1v15(), algorithm)


def test_raw_private_of_pkcs1_encoding_equals_openssl_signature() -> None:
    key = rsa_key()
    expected = key.sign(b"slow path", padding.PKCS1v15(), hashes.SHA256())
    assert crypto.rsa_raw_private(key, raw_public(key, expected)) == expected


def test_sign_block_pss_encoding_goes_raw_and_verifies() -> None:
    key = rsa_key("rsa2048")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    reference = key.sign(b"pss message", pss, hashes.SHA256())
    block = raw_public(key, reference)  # EMSA-PSS encoding: ends in BC
    assert block[-1] == 0xBC
    signature = crypto.rsa_sign_block(key, block)
    assert signature == reference  # raw RSA is deterministic given the encoded block
    key.public_key().verify(signature, b"pss message", pss, hashes.SHA256())


def test_sign_block_tls_md5_sha1_block() -> None:
    key = rsa_key()
    message = b"TLS 1.0 handshake hash input"
    digest = hashlib.md5(message).digest() + hashlib.sha1(message).digest()
    block = b"\x00\x01" + b"\xff" * (128 - 3 - 36) + b"\x00" + digest
    signature = crypto.rsa_sign_block(key, block)
    assert raw_public(key, signature) == block


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b[:2] + b"\xfe" + b[3:], id="padding-byte-not-ff"),
        pytest.param(lambda b: b[:-33] + bytes([b[-33] ^ 1]) + b[-32:], id="digestinfo-length-byte"),
        pytest.param(lambda b: b"\x00\x02" + b[2:], id="block-type-2"),
        pytest.param(lambda b: b[:10] + b"\x00" + b[11:], id="short-padding-wrong-separator"),
    ],
)
def test_sign_block_near_pkcs1_blocks_still_raw_rsa(mutate: Any) -> None:
    key = rsa_key()
    reference = key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())
    block = mutate(raw_public(key, reference))
    assert len(block) == 128
    signature = crypto.rsa_sign_block(key, block)
    assert raw_public(key, signature) == block


def test_pkcs1_block_recognition_needs_eight_padding_bytes() -> None:
    sha256_prefix = bytes.fromhex("3031300d060960864801650304020105000420")
    digest_info = sha256_prefix + hashlib.sha256(b"m").digest()
    # RFC 8017 9.2: PS is at least 8 bytes of FF
    eight = b"\x00\x01" + b"\xff" * 8 + b"\x00" + digest_info
    seven = b"\x00\x01" + b"\xff" * 7 + b"\x00" + digest_info
    assert crypto._pkcs1_v15_digest(eight, len(eight)) is not None
    assert crypto._pkcs1_v15_digest(seven, len(seven)) is None
    # a DigestInfo followed by anything, or an FF run broken by another byte, is not v1.5 either
    assert crypto._pkcs1_v15_digest(eight[:-1] + b"\x00\x00", len(eight) + 1) is None
    broken = eight[:5] + b"\xfe" + eight[6:]
    assert crypto._pkcs1_v15_digest(broken, len(broken)) is None


def test_raw_private_decrypts_pkcs1_v15_encryption() -> None:
    key = rsa_key("rsa2048")
    message = b"session key material"
    ciphertext = key.public_key().encrypt(message, padding.PKCS1v15())
    block = crypto.rsa_raw_private(key, ciphertext)
    assert block[:2] == b"\x00\x02"
    separator = block.index(b"\x00", 2)
    assert separator >= 10  # at least 8 non-zero padding bytes
    assert block[separator + 1 :] == message
    assert crypto.rsa_sign_block(key, ciphertext) == block  # decipher through the sign entry point too


def test_raw_private_decrypts_oaep_encryption_to_valid_block() -> None:
    key = rsa_key()
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    ciphertext = key.public_key().encrypt(b"oaep", oaep)
    block = crypto.rsa_raw_private(key, ciphertext)
    assert block[0] == 0
    assert raw_public(key, block) == ciphertext


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(min_size=128, max_size=128))
def test_raw_private_inverts_raw_public(value: bytes) -> None:
    key = rsa_key()
    n, _ = crypto.rsa_public_numbers(key)
    x = int.from_bytes(value, "big") % n
    block = x.to_bytes(128, "big")
    assert crypto.rsa_raw_private(key, raw_public(key, block)) == block
    assert raw_public(key, crypto.rsa_sign_block(key, block)) == block


def test_raw_private_edge_values() -> None:
    key = rsa_key()
    n, _ = crypto.rsa_public_numbers(key)
    for x in (0, 1, 2, n - 1):
        block = x.to_bytes(128, "big")
        assert raw_public(key, crypto.rsa_raw_private(key, block)) == block


def test_raw_private_rejects_bad_blocks() -> None:
    key = rsa_key()
    n, _ = crypto.rsa_public_numbers(key)
    with pytest.raises(ValueError):
        crypto.rsa_raw_private(key, b"\x00" * 127)
    with pytest.raises(ValueError):
        crypto.rsa_raw_private(key, b"\x00" * 129)
    with pytest.raises(ValueError):
        crypto.rsa_raw_private(key, n.to_bytes(128, "big"))
    with pytest.raises(ValueError):
        crypto.rsa_sign_block(key, b"\xff" * 128)
    with pytest.raises(ValueError):
        crypto.rsa_raw_private(ec_key("p256"), b"\x00" * 32)
    with pytest.raises(ValueError):
        crypto.rsa_sign_block(ec_key("p256"), b"\x00" * 32)


def test_raw_private_uses_fresh_blinding(monkeypatch: pytest.MonkeyPatch) -> None:
    key = rsa_key()
    draws: list[int] = []
    real = secrets.randbelow

    def spy(limit: int) -> int:
        value = real(limit)
        draws.append(value)
        return value

    monkeypatch.setattr(secrets, "randbelow", spy)
    block = (12345).to_bytes(128, "big")
    first = crypto.rsa_raw_private(key, block)
    second = crypto.rsa_raw_private(key, block)
    assert first == second  # blinding does not change the result ...
    assert len(draws) >= 2 and draws[0] != draws[1]  # ... but every call draws a new blinding factor


class _FaultyKey(rsa.RSAPrivateKey):
    """An RSA key whose CRT exponent dP is wrong: a computation fault in one half."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        good = self._key.private_numbers()
        return rsa.RSAPrivateNumbers(
            good.p, good.q, good.d, good.dmp1 + 2, good.dmq1, good.iqmp, good.public_numbers
        )

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def decrypt(self, ciphertext: bytes, padding: Any) -> bytes:
        raise NotImplementedError

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        raise NotImplementedError

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:  # noqa: A002 (cryptography names it so)
        raise NotImplementedError

    def __copy__(self) -> _FaultyKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _FaultyKey:
        return self


def test_raw_private_fault_check_refuses_wrong_result() -> None:
    faulty = _FaultyKey(rsa_key())
    with pytest.raises(ValueError, match="fault"):
        crypto.rsa_raw_private(faulty, (424242).to_bytes(128, "big"))


# ---- ECDSA / Ed25519 / ECDH -----------------------------------------------------------

STANDARD_DIGESTS = [hashes.SHA1(), hashes.SHA224(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]


def _digest(algorithm: hashes.HashAlgorithm, message: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(message)
    return h.finalize()


@pytest.mark.parametrize("algorithm", STANDARD_DIGESTS, ids=lambda h: h.name)
@pytest.mark.parametrize("kind", ["p256", "p384", "p521"])
def test_ecdsa_standard_digest_verifies_over_message(kind: str, algorithm: hashes.HashAlgorithm) -> None:
    key = ec_key(kind)
    message = f"{kind} {algorithm.name}".encode()
    signature = crypto.ecdsa_sign_digest(key, _digest(algorithm, message))
    key.public_key().verify(signature, message, ec.ECDSA(algorithm))  # OpenSSL hashes and truncates


def test_ecdsa_long_digest_uses_leftmost_order_bits() -> None:
    key = ec_key("p256")
    digest = bytes(range(1, 41))  # 40 bytes: not a standard length
    signature = crypto.ecdsa_sign_digest(key, digest)
    # X9.62: e is the leftmost 256 bits, i.e. the first 32 bytes
    key.public_key().verify(signature, digest[:32], ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, digest[-32:], ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_ecdsa_short_digest_is_its_integer_value() -> None:
    key = ec_key("p384")
    digest = hashlib.md5(b"short").digest()  # 16 bytes
    signature = crypto.ecdsa_sign_digest(key, digest)
    key.public_key().verify(signature, b"\x00" * 32 + digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))


def test_ecdsa_p521_66_byte_digest_is_truncated_to_521_bits() -> None:
    key = ec_key("p521")
    digest = b"\x00\x00" + hashlib.sha512(b"p521").digest()  # 66 bytes = 528 bits
    signature = crypto.ecdsa_sign_digest(key, digest)
    e = int.from_bytes(digest, "big") >> 7  # keep the leftmost 521 bits
    key.public_key().verify(signature, e.to_bytes(64, "big"), ec.ECDSA(utils.Prehashed(hashes.SHA512())))
    with pytest.raises(ValueError):
        crypto.ecdsa_sign_digest(key, b"\xff" * 66)  # e needs 521 bits: cannot be passed through


def test_ecdsa_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        crypto.ecdsa_sign_digest(ec_key("p256"), b"")
    with pytest.raises(ValueError):
        crypto.ecdsa_sign_digest(rsa_key(), b"\x00" * 32)
    with pytest.raises(ValueError):
        crypto.ecdsa_sign_digest(key_of("ed25519"), b"\x00" * 32)


def test_ed25519_sign_verifies() -> None:
    key = key_of("ed25519")
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    signature = crypto.ed25519_sign(key, b"message")
    assert len(signature) == 64
    key.public_key().verify(signature, b"message")
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, b"messagf")
    with pytest.raises(ValueError):
        crypto.ed25519_sign(ec_key("p256"), b"message")


@pytest.mark.parametrize(("kind", "field"), [("p256", 32), ("p384", 48), ("p521", 66)])
def test_ecdh_nist_agrees_with_peer(kind: str, field: int) -> None:
    ours = ec_key(kind)
    peer = ec.generate_private_key(ours.curve)
    peer_point = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    secret = crypto.ecdh(ours, peer_point)
    assert len(secret) == field
    assert secret == peer.exchange(ec.ECDH(), ours.public_key())


def test_ecdh_x25519_agrees_with_peer() -> None:
    ours = key_of("x25519")
    peer = x25519.X25519PrivateKey.generate()
    peer_raw = peer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert crypto.ecdh(ours, peer_raw) == peer.exchange(
        x25519.X25519PublicKey.from_public_bytes(crypto.public_point(ours))
    )


def test_ecdh_rejects_bad_points() -> None:
    key = ec_key("p256")
    good = crypto.public_point(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ValueError):
        crypto.ecdh(key, b"\x04" + b"\x00" * 64)  # not on the curve
    with pytest.raises(ValueError):
        crypto.ecdh(key, good[:-1])
    with pytest.raises(ValueError):
        crypto.ecdh(key, bytes([0x02 + (good[-1] & 1)]) + good[1:33])  # compressed form
    with pytest.raises(ValueError):
        crypto.ecdh(key, crypto.public_point(ec_key("p384")))  # other curve
    with pytest.raises(ValueError):
        crypto.ecdh(key_of("x25519"), b"\x01" * 31)
    with pytest.raises(ValueError):
        crypto.ecdh(rsa_key(), good)


# ---- block ciphers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "key_hex", "plain_hex", "cipher_hex"),
    [
        # FIPS-197 appendix C
        ("aes128", "000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
         "69c4e0d86a7b0430d8cdb78070b4c55a"),
        ("aes192", "000102030405060708090a0b0c0d0e0f1011121314151617", "00112233445566778899aabbccddeeff",
         "dda97ca4864cdfe06eaf70a0ec0d7191"),
        ("aes256", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
         "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"),
        # 3DES with K1=K2=K3 is single DES: the classic DES worked example
        ("3des", "133457799bbcdff1" * 3, "0123456789abcdef", "85e813540f0ab405"),
    ],
)  # fmt: skip
def test_block_known_answers(algorithm: str, key_hex: str, plain_hex: str, cipher_hex: str) -> None:
    key, plain, cipher = bytes.fromhex(key_hex), bytes.fromhex(plain_hex), bytes.fromhex(cipher_hex)
    assert crypto.block_encrypt(algorithm, key, plain) == cipher
    assert crypto.block_decrypt(algorithm, key, cipher) == plain


def test_3des_three_key_matches_cryptography() -> None:
    key = bytes(range(1, 25))
    block = b"challeng"
    encryptor = Cipher(TripleDES(key), modes.ECB()).encryptor()
    assert crypto.block_encrypt("3des", key, block) == encryptor.update(block) + encryptor.finalize()
    # a three-key key must not behave like its two-key truncation
    assert crypto.block_encrypt("3des", key, block) != crypto.block_encrypt("3des", key[:16] + key[:8], block)


def test_cbc_aes128_sp800_38a() -> None:
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    cipher = bytes.fromhex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
    assert crypto.cbc_encrypt("aes128", key, iv, plain) == cipher
    assert crypto.cbc_decrypt("aes128", key, iv, cipher) == plain


@pytest.mark.parametrize("algorithm", crypto.BLOCK_ALGORITHMS)
def test_cbc_round_trip_and_chaining(algorithm: str) -> None:
    key = crypto.random_bytes(crypto.key_length(algorithm))
    size = crypto.block_size(algorithm)
    iv = crypto.random_bytes(size)
    data = bytes(range(3 * size))
    encrypted = crypto.cbc_encrypt(algorithm, key, iv, data)
    assert len(encrypted) == len(data)
    assert crypto.cbc_decrypt(algorithm, key, iv, encrypted) == data
    # first block of CBC is ECB of (P1 xor IV)
    first = bytes(a ^ b for a, b in zip(data[:size], iv, strict=True))
    assert encrypted[:size] == crypto.block_encrypt(algorithm, key, first)


def test_block_sizes_and_key_lengths() -> None:
    assert [crypto.block_size(a) for a in ("3des", "aes128", "aes192", "aes256")] == [8, 16, 16, 16]
    assert [crypto.key_length(a) for a in ("3des", "aes128", "aes192", "aes256")] == [24, 16, 24, 32]
    for bad in ("des", "AES128", ""):
        with pytest.raises(ValueError):
            crypto.block_size(bad)
        with pytest.raises(ValueError):
            crypto.key_length(bad)


@pytest.mark.parametrize("algorithm", crypto.BLOCK_ALGORITHMS)
def test_block_length_checks(algorithm: str) -> None:
    key_len, size = crypto.key_length(algorithm), crypto.block_size(algorithm)
    key = b"\x01" * key_len
    for bad_key in (key[:-1], key + b"\x00", b""):
        with pytest.raises(ValueError):
            crypto.block_encrypt(algorithm, bad_key, b"\x00" * size)
        with pytest.raises(ValueError):
            crypto.cbc_decrypt(algorithm, bad_key, b"\x00" * size, b"\x00" * size)
    for bad_block in (b"", b"\x00" * (size - 1), b"\x00" * (size + 1), b"\x00" * (2 * size)):
        with pytest.raises(ValueError):
            crypto.block_encrypt(algorithm, key, bad_block)
        with pytest.raises(ValueError):
            crypto.block_decrypt(algorithm, key, bad_block)
    with pytest.raises(ValueError):
        crypto.cbc_encrypt(algorithm, key, b"\x00" * size, b"\x00" * (size + 1))
    with pytest.raises(ValueError):
        crypto.cbc_encrypt(algorithm, key, b"\x00" * (size - 1), b"\x00" * size)
    with pytest.raises(ValueError):
        crypto.cbc_decrypt(algorithm, key, b"\x00" * size, b"\x00" * (size - 1))


# ---- misc ---------------------------------------------------------------------------------


def test_random_bytes() -> None:
    assert len(crypto.random_bytes(0)) == 0
    values = {crypto.random_bytes(16) for _ in range(8)}
    assert all(len(v) == 16 for v in values)
    assert len(values) == 8  # 128-bit values: a collision means a broken generator


def test_constant_time_equal() -> None:
    assert crypto.constant_time_equal(b"123456", b"123456")
    assert not crypto.constant_time_equal(b"123456", b"123457")
    assert not crypto.constant_time_equal(b"123456", b"1234567")
    assert crypto.constant_time_equal(b"", b"")
