"""GIDS ECC key import (PUT DATA 3FFF), APDU level: P-256/384/521 keys imported, then used.

No client defines an ECC import for GIDS (OpenSC 0.23 refuses EC keys in
gids_import_key, GidsApplet knows RSA and symmetric keys only), so these tests
drive vcard's form: `70 {84 01 kk, A5 {83 01 03, 84 01 00, 87 {SEC1 ECPrivateKey}}}`.
Every signature and shared secret is checked against the test's own copy of the
key, never against what the card reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gids_applet import rsa_import_template
from test_gids_support import Host, key_file_fcp

from vcard import tlv

CURVES = {
    0x0C: (ec.SECP256R1(), 32, hashes.SHA256(), "2A8648CE3D030107"),
    0x0D: (ec.SECP384R1(), 48, hashes.SHA384(), "2B81040022"),
    0x0E: (ec.SECP521R1(), 66, hashes.SHA512(), "2B81040023"),
}
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host("gids")
    h.select()
    yield h
    h.close()


def point_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def ec_private_key_der(
    scalar: bytes,
    oid: str | None = None,
    point: bytes | None = None,
    version: bytes = b"\x01",
) -> bytes:
    """SEC1 ECPrivateKey built field by field (so that tests can break any one of them)."""
    items = [tlv.encode(0x02, version), tlv.encode(0x04, scalar)]
    if oid is not None:
        items.append(tlv.encode(0xA0, tlv.encode(0x06, bytes.fromhex(oid))))
    if point is not None:
        items.append(tlv.encode(0xA1, tlv.encode(0x03, b"\x00" + point)))
    return tlv.encode(0x30, items)


def import_template(
    key_ref: int, key_value: bytes, key_type: bytes | None = b"\x03", wrap: bytes = b"\x00"
) -> bytes:
    value_template = []
    if key_type is not None:
        value_template.append(tlv.encode(0x83, key_type))
    value_template += [tlv.encode(0x84, wrap), tlv.encode(0x87, key_value)]
    return tlv.encode(0x70, [tlv.encode(0x84, bytes([key_ref])), tlv.encode(0xA5, value_template)])


def ec_import(key: ec.EllipticCurvePrivateKey, key_ref: int = 0x81, full: bool = True) -> bytes:
    """What an OpenSSL "EC PRIVATE KEY" holds (full) or the bare scalar form."""
    size = (key.curve.key_size + 7) // 8
    scalar = key.private_numbers().private_value.to_bytes(size, "big")
    oid = next(oid for curve, _, _, oid in CURVES.values() if curve.name == key.curve.name)
    der = ec_private_key_der(scalar, oid if full else None, point_of(key) if full else None)
    return import_template(key_ref, der)


def sign(host: Host, digest: bytes) -> tuple[bytes, int]:
    return host.send(0x2A, 0x9E, 0x9A, digest, 256)


def verify_raw(
    public: ec.EllipticCurvePublicKey, raw: bytes, digest: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    half = len(raw) // 2
    der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    public.verify(der, digest, ec.ECDSA(Prehashed(algorithm)))


# ---- import, then use ------------------------------------------------------------------------


@pytest.mark.parametrize("algid", sorted(CURVES))
@pytest.mark.parametrize("full", [True, False], ids=["with-curve-and-point", "scalar-only"])
def test_import_then_sign_and_ecdh(host: Host, algid: int, full: bool) -> None:
    curve, size, hash_algorithm, _ = CURVES[algid]
    key = ec.generate_private_key(curve)
    host.verify()
    assert host.create_key_file(0x81, algid) == 0x9000
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key, full=full)) == (b"", 0x9000)  # no data back, ever

    assert host.public_key()[0] == tlv.encode(0x7F49, tlv.encode(0x86, point_of(key)))

    digest = hashes.Hash(hash_algorithm)
    digest.update(b"imported")
    hashed = digest.finalize()
    assert host.hex(f"002241B6068001{0x50 | algid:02X}840181")[1] == 0x9000
    signature, sw = sign(host, hashed)
    assert sw == 0x9000 and len(signature) == 2 * size
    verify_raw(key.public_key(), signature, hashed, hash_algorithm)

    peer = ec.generate_private_key(curve)
    assert host.hex(f"002241B8068001{0x40 | algid:02X}840181")[1] == 0x9000
    secret, sw = host.send(0x2A, 0x80, 0x86, point_of(peer), 256)
    assert sw == 0x9000
    assert secret == key.exchange(ec.ECDH(), peer.public_key()) == peer.exchange(ec.ECDH(), key.public_key())


def test_import_replaces_a_generated_key_and_persists(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    first = Host("gids", tmp_path)
    first.select()
    first.verify()
    first.create_key_file(0x81, 0x0C)
    generated, _ = first.generate(0x81, 0x0C, le=256)
    first.hex("002241B606800150840181")  # MSE before the import: PSO must use the new key
    assert first.send(0xDB, 0x3F, 0xFF, ec_import(key))[1] == 0x9000
    signature, sw = sign(first, bytes(32))
    assert sw == 0x9000
    verify_raw(key.public_key(), signature, bytes(32), hashes.SHA256())
    first.close()  # no explicit commit here: the import committed before answering

    second = Host("gids", tmp_path)
    second.select()
    template, _ = second.public_key()
    assert template != generated and template == tlv.encode(0x7F49, tlv.encode(0x86, point_of(key)))
    second.verify()
    second.hex("002241B60680015C840181")
    signature, sw = sign(second, bytes(range(32)))
    assert sw == 0x9000
    verify_raw(key.public_key(), signature, bytes(range(32)), hashes.SHA256())
    assert "PRIVATE KEY" not in str(second.virtual.describe())
    second.close()


def test_key_type_may_be_left_out_for_an_ecc_key_file(host: Host) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    host.verify()
    host.create_key_file(0x81, 0x0D)
    der = ec_private_key_der(key.private_numbers().private_value.to_bytes(48, "big"))
    assert host.send(0xDB, 0x3F, 0xFF, import_template(0x81, der, key_type=None))[1] == 0x9000
    assert host.public_key()[0] == tlv.encode(0x7F49, tlv.encode(0x86, point_of(key)))


def test_sign_only_key_file_refuses_ecdh(host: Host) -> None:
    host.verify()
    host.create_key_file(0x81, 0x0C, sign_only=True)
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(ec.generate_private_key(ec.SECP256R1())))[1] == 0x9000
    assert host.hex("002241B606800150840181")[1] == 0x9000
    assert host.hex("002241B80680014C840181")[1] == 0x6984


# ---- access conditions -------------------------------------------------------------------------


def test_import_needs_the_put_key_condition(host: Host) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key))[1] == 0x6984  # no key file
    host.verify()
    host.create_key_file(0x81, 0x0C)
    host.hex("00200082")  # log out
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key))[1] == 0x6982
    assert host.public_key()[1] == 0x6984  # nothing was stored
    host.verify()
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key))[1] == 0x9000


def test_admin_only_key_file_needs_the_admin_key(host: Host) -> None:
    """A key EF whose PUT KEY condition is `20` (admin): the PIN is not enough."""
    fcp = key_file_fcp(0x82, 0x0C).replace(bytes.fromhex("8C058F10101000"), bytes.fromhex("8C058F10102000"))
    key = ec.generate_private_key(ec.SECP256R1())
    host.verify()
    assert host.send(0xE0, 0, 0, fcp)[1] == 0x9000 and host.hex("00440000")[1] == 0x9000
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key, 0x82))[1] == 0x6982
    assert host.mutual_auth() == 0x9000
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key, 0x82))[1] == 0x9000
    assert host.public_key(0x82)[0] == tlv.encode(0x7F49, tlv.encode(0x86, point_of(key)))


def test_key_file_in_creation_state_refuses_the_import(host: Host) -> None:
    host.verify()
    assert host.send(0xE0, 0, 0, key_file_fcp(0x81, 0x0C))[1] == 0x9000  # not activated
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(ec.generate_private_key(ec.SECP256R1())))[1] == 0x6985


# ---- refused imports -----------------------------------------------------------------------------

KEY = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
SCALAR = KEY.private_numbers().private_value.to_bytes(32, "big")
P256 = CURVES[0x0C][3]
VERSION_1 = bytes.fromhex("020101")
OTHER_POINT = point_of(ec.derive_private_key(0x1234567890ABCDF0, ec.SECP256R1()))
VALID_DER = ec_private_key_der(SCALAR, P256, point_of(KEY))
VALID = import_template(0x81, VALID_DER)


def _compressed(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )


def _sequence(*items: bytes) -> bytes:
    return tlv.encode(0x30, list(items))


def _with_a5(*items: bytes) -> bytes:
    return tlv.encode(0x70, [bytes.fromhex("840181"), tlv.encode(0xA5, list(items))])


def _imported(der: bytes) -> bytes:
    return import_template(0x81, der)


REFUSED: dict[str, tuple[bytes, int]] = {
    # scalar length and range (the key EF is P-256)
    "scalar-31-bytes": (_imported(ec_private_key_der(SCALAR[1:])), 0x6A80),
    "scalar-33-bytes": (_imported(ec_private_key_der(b"\x00" + SCALAR)), 0x6A80),
    "scalar-zero": (_imported(ec_private_key_der(bytes(32))), 0x6A80),
    "scalar-order": (_imported(ec_private_key_der(P256_ORDER.to_bytes(32, "big"))), 0x6A80),
    "scalar-order-plus-1": (_imported(ec_private_key_der((P256_ORDER + 1).to_bytes(32, "big"))), 0x6A80),
    "scalar-all-ff": (_imported(ec_private_key_der(b"\xff" * 32)), 0x6A80),
    "scalar-p384-length": (_imported(ec_private_key_der(b"\x01" * 48)), 0x6A80),
    # public point
    "point-of-another-key": (_imported(ec_private_key_der(SCALAR, P256, OTHER_POINT)), 0x6A80),
    "point-not-on-curve": (_imported(ec_private_key_der(SCALAR, P256, point_of(KEY)[:-1] + b"\x00")), 0x6A80),
    "point-truncated": (_imported(ec_private_key_der(SCALAR, None, point_of(KEY)[:-1])), 0x6A80),
    "point-bit-string-unused-bits": (
        _imported(
            _sequence(
                VERSION_1,
                tlv.encode(0x04, SCALAR),
                tlv.encode(0xA1, tlv.encode(0x03, b"\x01" + point_of(KEY))),
            )
        ),
        0x6A80,
    ),
    # curve parameters
    "curve-oid-p384": (_imported(ec_private_key_der(SCALAR, CURVES[0x0D][3])), 0x6A80),
    "curve-not-an-oid": (
        _imported(_sequence(VERSION_1, tlv.encode(0x04, SCALAR), tlv.encode(0xA0, bytes.fromhex("0500")))),
        0x6A80,
    ),
    # ECPrivateKey structure
    "version-0": (_imported(ec_private_key_der(SCALAR, version=b"\x00")), 0x6A80),
    "version-2": (_imported(ec_private_key_der(SCALAR, version=b"\x02")), 0x6A80),
    "scalar-as-integer": (_imported(_sequence(VERSION_1, tlv.encode(0x02, SCALAR))), 0x6A80),
    "no-scalar": (_imported(_sequence(VERSION_1)), 0x6A80),
    "empty-sequence": (_imported(_sequence()), 0x6A80),
    "point-before-curve": (
        _imported(
            _sequence(
                VERSION_1,
                tlv.encode(0x04, SCALAR),
                tlv.encode(0xA1, tlv.encode(0x03, b"\x00" + point_of(KEY))),
                tlv.encode(0xA0, tlv.encode(0x06, bytes.fromhex(P256))),
            )
        ),
        0x6A80,
    ),
    "extra-element": (
        _imported(_sequence(VERSION_1, tlv.encode(0x04, SCALAR), bytes.fromhex("0500"))),
        0x6A80,
    ),
    "garbage-after-sequence": (_imported(ec_private_key_der(SCALAR) + b"\x00"), 0x6A80),
    "not-a-sequence": (_imported(tlv.encode(0x04, SCALAR)), 0x6A80),
    "bare-scalar": (_imported(SCALAR), 0x6A80),
    "pkcs8-instead-of-sec1": (
        _imported(
            KEY.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
        0x6A80,
    ),
    # the key value template (A5)
    "no-key-value": (_with_a5(bytes.fromhex("830103"), bytes.fromhex("840100")), 0x6A80),
    "unknown-tag-in-a5": (
        _with_a5(
            bytes.fromhex("830103"),
            bytes.fromhex("840100"),
            bytes.fromhex("880100"),
            tlv.encode(0x87, VALID_DER),
        ),
        0x6A80,
    ),
    "repeated-key-type": (
        _with_a5(bytes.fromhex("830103"), bytes.fromhex("830103"), tlv.encode(0x87, VALID_DER)),
        0x6A80,
    ),
    "key-type-symmetric": (import_template(0x81, VALID_DER, key_type=b"\x01"), 0x6A81),
    "key-type-unknown": (import_template(0x81, VALID_DER, key_type=b"\x07"), 0x6A81),
    "key-type-rsa": (import_template(0x81, VALID_DER, key_type=b"\x02"), 0x6A80),
    "wrapped": (import_template(0x81, VALID_DER, wrap=b"\x80"), 0x6A81),
    "bad-tlv-length": (VALID[:-1], 0x6A80),
    "no-key-reference": (tlv.encode(0x70, tlv.encode(0xA5, b"")), 0x6984),
    "other-key-file": (import_template(0x83, VALID_DER), 0x6984),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_imports_are_refused_and_keep_the_old_key(host: Host, name: str) -> None:
    data, expected = REFUSED[name]
    host.verify()
    host.create_key_file(0x81, 0x0C)
    before, _ = host.generate(0x81, 0x0C, le=256)
    assert host.send(0xDB, 0x3F, 0xFF, data) == (b"", expected)
    assert host.public_key() == (before, 0x9000)
    assert host.send(0xDB, 0x3F, 0xFF, VALID)[1] == 0x9000  # the same card takes the valid form


def test_compressed_point_of_the_right_key_is_accepted(host: Host) -> None:
    host.verify()
    host.create_key_file(0x81, 0x0C)
    data = import_template(0x81, ec_private_key_der(SCALAR, P256, _compressed(KEY)))
    assert host.send(0xDB, 0x3F, 0xFF, data)[1] == 0x9000
    assert host.public_key()[0] == tlv.encode(0x7F49, tlv.encode(0x86, point_of(KEY)))


@pytest.mark.parametrize(
    ("algid", "key"),
    [
        (0x07, ec.generate_private_key(ec.SECP256R1())),  # EC key into an RSA-2048 key file
        (0x0D, ec.generate_private_key(ec.SECP256R1())),  # P-256 key into a P-384 key file
        (0x0C, ec.generate_private_key(ec.SECP521R1())),  # P-521 key into a P-256 key file
    ],
    ids=["rsa-file", "p384-file", "p256-file-p521-key"],
)
def test_key_must_fit_the_key_file(host: Host, algid: int, key: ec.EllipticCurvePrivateKey) -> None:
    host.verify()
    host.create_key_file(0x81, algid)
    assert host.send(0xDB, 0x3F, 0xFF, ec_import(key)) == (b"", 0x6A80)
    assert host.public_key()[1] == 0x6984


def test_rsa_key_into_an_ecc_key_file_is_refused(host: Host) -> None:
    host.verify()
    host.create_key_file(0x81, 0x0C)
    rsa_key = rsa.generate_private_key(65537, 2048)
    assert host.send(0xDB, 0x3F, 0xFF, rsa_import_template(0x81, rsa_key))[1] == 0x6A80
    assert host.public_key()[1] == 0x6984


@settings(max_examples=60, deadline=None)
@given(value=st.integers(min_value=1, max_value=P256_ORDER - 1))
def test_any_in_range_scalar_imports_to_its_public_point(value: int) -> None:
    h = Host("gids")
    try:
        h.select()
        h.verify()
        h.create_key_file(0x81, 0x0C)
        data = import_template(0x81, ec_private_key_der(value.to_bytes(32, "big"), P256))
        assert h.send(0xDB, 0x3F, 0xFF, data)[1] == 0x9000
        expected = point_of(ec.derive_private_key(value, ec.SECP256R1()))
        assert h.public_key()[0] == tlv.encode(0x7F49, tlv.encode(0x86, expected))
    finally:
        h.close()


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), byte=st.integers(0, 255))
def test_any_corrupted_byte_is_refused_with_a_deliberate_status_word(position: int, byte: int) -> None:
    """One byte of a valid import (scalar, curve and point) changed: every byte is checked, so only
    an unchanged template answers 9000, and nothing ends in 6F00 (an internal error)."""
    data = bytearray(VALID)
    data[position % len(data)] = byte
    h = Host("gids")
    try:
        h.select()
        h.verify()
        h.create_key_file(0x81, 0x0C)
        _, sw = h.send(0xDB, 0x3F, 0xFF, bytes(data))
        assert sw != 0x6F00
        assert (sw == 0x9000) == (bytes(data) == VALID), f"{bytes(data).hex()} -> {sw:04X}"
    finally:
        h.close()
