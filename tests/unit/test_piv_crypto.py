"""PIV applet, in process: GENERAL AUTHENTICATE (RSA, ECDSA, ECDH, 25519, 9B), GENERATE, PIN-always."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from piv_support import MGM_3DES, PivCard, build

from vcard import tlv
from vcard.applets.piv.keys import Algorithm, block_encrypt

SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@pytest.fixture
def card() -> PivCard:
    piv = build(
        config_overrides={
            "version": "5.7.4",  # Ed25519 and X25519 came with YubiKey 5.7
            "algorithms": ["rsa1024", "rsa2048", "p256", "p384", "ed25519", "x25519"],
        }
    )
    assert piv.authenticate_mgm() == 0x9000
    return piv


def public_key(template: bytes) -> object:
    """The public key of a 7F49 template."""
    items = tlv.to_dict(tlv.decode_one(template, 0x7F49).value)
    if 0x81 in items:
        return rsa.RSAPublicNumbers(int.from_bytes(items[0x82]), int.from_bytes(items[0x81])).public_key()
    point = items[0x86]
    if len(point) == 32:
        return point
    curve = ec.SECP256R1() if len(point) == 65 else ec.SECP384R1()
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)


def result(response) -> bytes:  # type: ignore[no-untyped-def]
    assert response.sw == 0x9000, f"{response.sw:04X}"
    value = tlv.find(response.data, 0x7C, 0x82)
    assert value is not None
    return value


def pkcs1_block(size: int, message: bytes) -> bytes:
    payload = SHA256_INFO + hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (size - len(payload) - 3) + b"\x00" + payload


@pytest.mark.parametrize(("algorithm", "size"), [(0x06, 128), (0x07, 256)])
def test_rsa_signature_verifies(card: PivCard, algorithm: int, size: int) -> None:
    key = public_key(card.generate(0x9A, algorithm).data)
    assert isinstance(key, rsa.RSAPublicKey)
    assert card.verify() == 0x9000
    signature = result(card.sign(0x9A, algorithm, pkcs1_block(size, b"hello")))
    assert len(signature) == size
    key.verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_rsa_raw_decryption_returns_the_padded_block_at_full_length(card: PivCard) -> None:
    key = public_key(card.generate(0x9D, 0x07).data)
    assert isinstance(key, rsa.RSAPublicKey)
    assert card.verify() == 0x9000
    for message in (b"secret", b"\x00" * 5):
        ciphertext = key.encrypt(message, padding.PKCS1v15())
        block = result(card.sign(0x9D, 0x07, ciphertext))
        assert len(block) == 256 and block[:2] == b"\x00\x02" and block.endswith(b"\x00" + message)
    # a block whose raw result starts with zero bytes keeps them (value 1 -> 00..01)
    assert result(card.sign(0x9D, 0x07, (1).to_bytes(256))) == (1).to_bytes(256)
    assert card.sign(0x9D, 0x07, b"\xff" * 256).sw == 0x6A80


@pytest.mark.parametrize(("algorithm", "curve"), [(0x11, ec.SECP256R1()), (0x14, ec.SECP384R1())])
@pytest.mark.parametrize("digest", [hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_ecdsa_accepts_any_digest_length(card: PivCard, algorithm: int, curve, digest) -> None:  # type: ignore[no-untyped-def]
    key = public_key(card.generate(0x9A, algorithm).data)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == curve.name
    hasher = hashes.Hash(digest)
    hasher.update(b"message")
    hashed = hasher.finalize()
    assert card.verify() == 0x9000
    signature = result(card.sign(0x9A, algorithm, hashed))
    assert signature[0] == 0x30  # DER SEQUENCE {r, s}
    key.verify(signature, hashed, ec.ECDSA(Prehashed(digest)))


def test_ecdh_returns_the_shared_x_coordinate(card: PivCard) -> None:
    key = public_key(card.generate(0x9D, 0x11).data)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(ec.SECP256R1())
    point = peer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert card.verify() == 0x9000
    assert result(card.sign(0x9D, 0x11, point, tag=0x85)) == peer.exchange(ec.ECDH(), key)
    assert card.sign(0x9D, 0x11, b"\x04" + b"\x01" * 64, tag=0x85).sw == 0x6A80


def test_ed25519_and_x25519(card: PivCard) -> None:
    raw = public_key(card.generate(0x9C, 0xE0).data)
    assert isinstance(raw, bytes)
    assert card.verify() == 0x9000
    signature = result(card.sign(0x9C, 0xE0, b"full message"))
    ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(signature, b"full message")
    peer_raw = public_key(card.generate(0x9D, 0xE1).data)
    assert isinstance(peer_raw, bytes)
    mine = x25519.X25519PrivateKey.generate()
    mine_public = mine.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert card.verify() == 0x9000
    shared = result(card.sign(0x9D, 0xE1, mine_public, tag=0x85))
    assert shared == mine.exchange(x25519.X25519PublicKey.from_public_bytes(peer_raw))


def test_slot_pin_rules(card: PivCard) -> None:
    for slot in (0x9A, 0x9C, 0x9D, 0x9E, 0x82):
        assert card.generate(slot, 0x11).sw == 0x9000
    digest = bytes(32)
    assert card.sign(0x9E, 0x11, digest).sw == 0x9000  # card authentication: no PIN
    for slot in (0x9A, 0x9C, 0x9D, 0x82):
        assert card.sign(slot, 0x11, digest).sw == 0x6982
    assert card.verify() == 0x9000
    assert card.sign(0x9C, 0x11, digest).sw == 0x9000  # PIN always: right after VERIFY
    assert card.sign(0x9C, 0x11, digest).sw == 0x6982  # ... once
    for slot in (0x9A, 0x9D, 0x82):
        assert card.sign(slot, 0x11, digest).sw == 0x9000  # PIN once: as long as verified
    assert card.verify() == 0x9000
    assert card.get_data(0x7E).sw == 0x9000  # any command in between closes the window
    assert card.sign(0x9C, 0x11, digest).sw == 0x6982


def test_generate_policies_override_slot_defaults(card: PivCard) -> None:
    assert card.generate(0x9A, 0x11, pin_policy=0x03).sw == 0x9000
    assert card.generate(0x9C, 0x11, pin_policy=0x01).sw == 0x9000
    assert card.sign(0x9C, 0x11, bytes(32)).sw == 0x9000
    assert card.verify() == 0x9000
    assert card.sign(0x9A, 0x11, bytes(32)).sw == 0x9000
    assert card.sign(0x9A, 0x11, bytes(32)).sw == 0x6982
    assert card.generate(0x9A, 0x11, pin_policy=0x07).sw == 0x6A80


def test_general_authenticate_errors(card: PivCard) -> None:
    assert card.sign(0x9A, 0x11, bytes(32)).sw == 0x6A88  # empty slot
    assert card.generate(0x9A, 0x11).sw == 0x9000
    assert card.verify() == 0x9000
    assert card.sign(0x9A, 0x07, bytes(32)).sw == 0x6A80  # P1 is not the key's algorithm
    assert card.sign(0x9F, 0x11, bytes(32)).sw == 0x6A86
    assert card.send(0x00, 0x87, 0x11, 0x9A, bytes.fromhex("7C028200")).sw == 0x6A80
    assert card.send(0x00, 0x87, 0x11, 0x9A, bytes.fromhex("7C05")).sw == 0x6A80


def test_generate_responses_and_errors() -> None:
    card = build()
    assert card.generate(0x9A, 0x11).sw == 0x6982
    assert card.authenticate_mgm() == 0x9000
    rsa_template = card.generate(0x9A, 0x07)
    items = tlv.to_dict(tlv.decode_one(rsa_template.data, 0x7F49).value)
    assert len(items[0x81]) == 256 and items[0x82] == b"\x01\x00\x01"
    ec_template = card.generate(0x9C, 0x11).data
    assert ec_template[:3] == b"\x7f\x49\x43" and ec_template[3] == 0x86 and len(ec_template) == 3 + 0x43
    assert card.generate(0x9A, 0xE0).sw == 0x6A80  # not enabled in the piv profile
    assert card.generate(0x9A, 0x42).sw == 0x6A80
    assert card.generate(0x9B, 0x11).sw == 0x6A86
    assert card.send(0x00, 0x47, 0x01, 0x9A, tlv.encode(0xAC, tlv.encode(0x80, b"\x11"))).sw == 0x6A86
    assert card.send(0x00, 0x47, 0x00, 0x9A, tlv.encode(0xAB, b"")).sw == 0x6A80


# ---- management key --------------------------------------------------------------------


def test_mutual_authentication_rejects_a_wrong_witness() -> None:
    card = build()
    assert card.authenticate_mgm(bytes(24)) == 0x6982
    assert card.put_data(0x5FC105, b"\x70\x00") == 0x6982
    witness_only = card.send(
        0x00, 0x87, 0x03, 0x9B, tlv.encode(0x7C, tlv.encode(0x80, bytes(8)) + tlv.encode(0x81, bytes(8)))
    )
    assert witness_only.sw == 0x6982  # no witness outstanding


def test_external_authentication_and_repeated_challenges() -> None:
    card = build()
    challenges = set()
    for _ in range(3):  # OpenSC's C_GenerateRandom loop with P1=00
        response = card.send(0x00, 0x87, 0x00, 0x9B, bytes.fromhex("7C028100"))
        assert response.sw == 0x9000
        challenges.add(tlv.find(response.data, 0x7C, 0x81))
    assert len(challenges) == 3
    challenge = tlv.find(card.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028100")).data, 0x7C, 0x81)
    assert challenge is not None
    wrong = tlv.encode(0x7C, tlv.encode(0x82, bytes(8)))
    assert card.send(0x00, 0x87, 0x03, 0x9B, wrong, ne=None).sw == 0x6982
    challenge = tlv.find(card.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028100")).data, 0x7C, 0x81)
    assert challenge is not None
    right = tlv.encode(0x7C, tlv.encode(0x82, block_encrypt(Algorithm.TDES, MGM_3DES, challenge)))
    assert card.send(0x00, 0x87, 0x03, 0x9B, right, ne=None).sw == 0x9000
    assert card.put_data(0x5FC105, b"\x70\x00") == 0x9000
    assert card.send(0x00, 0x87, 0x03, 0x9B, right, ne=None).sw == 0x6985  # no replay


def test_no_encryption_oracle_answers_the_external_challenge() -> None:
    """`81 C, 82 00` outside mutual authentication must not encrypt the card's own challenge."""
    card = build()
    challenge = tlv.find(card.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028100")).data, 0x7C, 0x81)
    assert challenge is not None
    oracle = tlv.encode(0x7C, [tlv.encode(0x81, challenge), tlv.encode(0x82, b"")])
    assert card.send(0x00, 0x87, 0x03, 0x9B, oracle).sw == 0x6A80
    right = tlv.encode(0x7C, tlv.encode(0x82, block_encrypt(Algorithm.TDES, MGM_3DES, challenge)))
    assert card.send(0x00, 0x87, 0x03, 0x9B, right, ne=None).sw == 0x6985  # the challenge is gone
    assert card.put_data(0x5FC105, b"\x70\x00") == 0x6982


def test_management_algorithm_must_match() -> None:
    card = build()
    assert card.send(0x00, 0x87, 0x0A, 0x9B, bytes.fromhex("7C028000")).sw == 0x6A80
    assert card.authenticate_mgm() == 0x9000
    aes_key = bytes(range(1, 25))
    body = b"\x0a" + tlv.encode(0x9B, aes_key)
    assert card.send(0x00, 0xFF, 0xFF, 0xFF, body, ne=None).sw == 0x9000
    assert card.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028000")).sw == 0x6A80
    assert card.authenticate_mgm(aes_key, 0x0A) == 0x9000
    assert card.put_data(0x5FC105, b"\x70\x00") == 0x9000


def test_responses_never_contain_private_key_material() -> None:
    card = build()
    seen = []
    original = card.raw

    def spy(apdu: bytes):  # type: ignore[no-untyped-def]
        response = original(apdu)
        seen.append(response.data)
        return response

    card.raw = spy  # type: ignore[method-assign]
    assert card.authenticate_mgm() == 0x9000
    card.generate(0x9A, 0x11)
    card.send(0x00, 0xF7, 0x00, 0x9A)
    card.get_data(0x5FC105)
    entry = card.applet.key_entry(0x9A)
    assert entry is not None and isinstance(entry.key, ec.EllipticCurvePrivateKey)
    scalar = entry.key.private_numbers().private_value.to_bytes(32)
    assert all(scalar not in data for data in seen)


def test_pin_always_covers_a_chained_command_and_its_get_response() -> None:
    card = build()
    assert card.authenticate_mgm() == 0x9000
    key = public_key(card.generate(0x9C, 0x07).data)
    assert isinstance(key, rsa.RSAPublicKey)
    assert card.verify() == 0x9000
    # 256-byte block: two chained APDUs, then 61xx + GET RESPONSE for the 264-byte answer
    signature = result(card.sign(0x9C, 0x07, pkcs1_block(256, b"chained")))
    key.verify(signature, b"chained", padding.PKCS1v15(), hashes.SHA256())
    assert card.sign(0x9C, 0x07, pkcs1_block(256, b"again")).sw == 0x6982


def test_rsa_3072_signature() -> None:
    card = build(config_overrides={"version": "5.7.4", "algorithms": ["rsa3072"]})
    assert card.authenticate_mgm() == 0x9000
    key = public_key(card.generate(0x9E, 0x05).data)
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 3072
    signature = result(card.sign(0x9E, 0x05, pkcs1_block(384, b"big")))
    key.verify(signature, b"big", padding.PKCS1v15(), hashes.SHA256())


def test_global_pin_satisfies_pin_once_slots(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "profiles" / "piv.toml").read_text()
    text = text.replace(
        "[applets.piv]",
        '[[security.roles]]\nrole = 4\nlabel = "global PIN"\ntype = "pin"\n'
        'initial = "999999"\nmin_length = 6\n\n[applets.piv]',
    )
    text += "00 = 4\n"
    profile = tmp_path / "global.toml"
    profile.write_text(text)
    card = build(profile)
    assert tlv.find(card.get_data(0x7E).data, 0x7E, 0x5F2F) == b"\x60\x10"
    assert card.authenticate_mgm() == 0x9000
    assert card.generate(0x9A, 0x11).sw == 0x9000
    assert card.sign(0x9A, 0x11, bytes(32)).sw == 0x6982
    assert card.verify("123456", ref=0x00) == 0x63C2
    assert card.verify("999999", ref=0x00) == 0x9000
    assert card.sign(0x9A, 0x11, bytes(32)).sw == 0x9000
    assert card.get_data(0x5FC109).sw == 0x6A82  # PIN-protected objects readable with the global PIN
