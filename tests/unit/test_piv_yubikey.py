"""PIV applet, in process: the YubiKey extensions (F6..FF) as yubico-piv-tool and ykman use them."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from piv_support import PivCard, build, pin_block

from vcard import tlv


@pytest.fixture
def card() -> PivCard:
    """A 5.7 (MOVE/DELETE KEY, the newest metadata) keeping the piv profile's 3DES management key."""
    piv = build(config_overrides={"version": "5.7.4"})
    assert piv.authenticate_mgm() == 0x9000
    return piv


def metadata(card: PivCard, ref: int) -> dict[int, bytes]:
    response = card.send(0x00, 0xF7, 0x00, ref)
    assert response.sw == 0x9000, f"{response.sw:04X}"
    return tlv.to_dict(response.data)


def test_version_and_serial(card: PivCard) -> None:
    assert card.send(0x00, 0xFD, 0x00, 0x00).data == bytes([5, 7, 4])
    serial = card.send(0x00, 0xF8, 0x00, 0x00).data
    assert len(serial) == 4
    assert serial == card.state.document["applets"]["piv"]["serial"].to_bytes(4)
    fixed = build(config_overrides={"serial": 12345678})
    assert fixed.send(0x00, 0xF8, 0x00, 0x00).data == (12345678).to_bytes(4)


def test_metadata(card: PivCard) -> None:
    assert card.send(0x00, 0xF7, 0x00, 0x9A).sw == 0x6A88  # empty slot
    assert card.send(0x00, 0xF7, 0x00, 0x96).sw == 0x6A88  # no bio
    assert card.send(0x00, 0xF7, 0x01, 0x9A).sw == 0x6A86
    pin = metadata(card, 0x80)
    assert pin == {0x01: b"\xff", 0x05: b"\x01", 0x06: b"\x03\x03"}
    card.verify("000000")
    assert metadata(card, 0x80)[0x06] == b"\x03\x02"
    assert metadata(card, 0x81)[0x05] == b"\x01"
    assert metadata(card, 0x9B) == {0x01: b"\x03", 0x02: b"\x00\x01", 0x05: b"\x01"}
    template = card.generate(0x9A, 0x11).data
    slot = metadata(card, 0x9A)
    assert slot[0x01] == b"\x11" and slot[0x02] == b"\x02\x01" and slot[0x03] == b"\x01"
    assert tlv.encode(0x7F49, slot[0x04]) == template
    card.generate(0x9C, 0x07)
    assert metadata(card, 0x9C)[0x02] == b"\x03\x01"
    assert metadata(card, 0xF9)[0x01] == b"\x11"  # the attestation key


def test_set_management_key(card: PivCard) -> None:
    new = bytes(range(16))
    assert card.send(0x00, 0xFF, 0xFF, 0xFF, b"\x08" + tlv.encode(0x9B, new[:8]), ne=None).sw == 0x6A80
    assert card.send(0x00, 0xFF, 0xFF, 0xFF, b"\x42" + tlv.encode(0x9B, new), ne=None).sw == 0x6A80
    assert card.send(0x00, 0xFF, 0xFE, 0xFE, b"\x08" + tlv.encode(0x9B, new), ne=None).sw == 0x6A86
    assert card.send(0x00, 0xFF, 0xFF, 0xFF, b"\x08" + tlv.encode(0x9B, new), ne=None).sw == 0x9000
    assert metadata(card, 0x9B) == {0x01: b"\x08", 0x02: b"\x00\x01", 0x05: b"\x00"}
    card.card.reset()
    card.select()
    assert card.send(0x00, 0xFF, 0xFF, 0xFF, b"\x08" + tlv.encode(0x9B, new), ne=None).sw == 0x6982
    assert card.authenticate_mgm() == 0x6A80
    assert card.authenticate_mgm(new, 0x08) == 0x9000


def test_import_rsa_and_ec_keys(card: PivCard) -> None:
    key = rsa.generate_private_key(65537, 2048)
    numbers = key.private_numbers()
    parts = [numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]
    body = b"".join(
        tlv.encode(tag, value.to_bytes(128)) for tag, value in zip(range(1, 6), parts, strict=True)
    )
    body += tlv.encode(0xAA, b"\x01")
    assert card.send(0x00, 0xFE, 0x07, 0x9A, body, ne=None).sw == 0x9000
    assert metadata(card, 0x9A)[0x03] == b"\x02"  # imported
    digest = bytes(range(32))
    info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
    block = b"\x00\x01" + b"\xff" * (256 - len(info) - 3) + b"\x00" + info
    signature = tlv.find(card.sign(0x9A, 0x07, block).data, 0x7C, 0x82)  # PIN policy never
    assert signature is not None
    key.public_key().verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    ec_key = ec.generate_private_key(ec.SECP384R1())
    scalar = ec_key.private_numbers().private_value.to_bytes(48)
    assert card.send(0x00, 0xFE, 0x14, 0x9D, tlv.encode(0x06, scalar), ne=None).sw == 0x9000
    assert card.send(0x00, 0xFE, 0x14, 0x9D, tlv.encode(0x06, scalar[:40]), ne=None).sw == 0x6A80
    assert card.send(0x00, 0xFE, 0x11, 0x9B, tlv.encode(0x06, scalar[:32]), ne=None).sw == 0x6A86
    assert card.send(0x00, 0xFE, 0x07, 0x9A, tlv.encode(0x01, b"\x01"), ne=None).sw == 0x6A80
    assert card.send(0x00, 0xF9, 0x9A, 0x00).sw == 0x6A80  # imported keys are not attested


def test_import_refuses_inconsistent_rsa_components(card: PivCard) -> None:
    numbers = rsa.generate_private_key(65537, 1024).private_numbers()
    good = [numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]

    def body(parts: list[int]) -> bytes:
        return b"".join(
            tlv.encode(tag, value.to_bytes(64)) for tag, value in zip(range(1, 6), parts, strict=True)
        )

    for index in (2, 3, 4):  # a wrong dP, dQ or qInv
        parts = list(good)
        parts[index] ^= 2
        assert card.send(0x00, 0xFE, 0x06, 0x9A, body(parts), ne=None).sw == 0x6A80
    assert card.send(0x00, 0xFE, 0x07, 0x9A, body(good), ne=None).sw == 0x6A80  # 1024 bits is not RSA-2048
    assert card.send(0x00, 0xFE, 0x06, 0x9A, body(good), ne=None).sw == 0x9000


def test_attestation_certificate_chains_to_5fff01(card: PivCard) -> None:
    assert card.send(0x00, 0xF9, 0x9A, 0x00).sw == 0x6A80  # empty slot: 6A80 as a YubiKey answers
    card.generate(0x9A, 0x11, pin_policy=0x03, touch=0x01)
    attestation = x509.load_der_x509_certificate(card.send(0x00, 0xF9, 0x9A, 0x00).data)
    container = tlv.decode_one(card.get_data(0x5FFF01).data, 0x53).value
    issuer = x509.load_der_x509_certificate(tlv.find(container, 0x70))  # type: ignore[arg-type]
    assert attestation.issuer == issuer.subject
    issuer_key = issuer.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    issuer_key.verify(attestation.signature, attestation.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    assert "YubiKey PIV Attestation 9a" in attestation.subject.rfc4514_string()
    extensions = {ext.oid.dotted_string: ext.value for ext in attestation.extensions}
    assert extensions["1.3.6.1.4.1.41482.3.3"].value == bytes([5, 7, 4])  # type: ignore[attr-defined]
    assert extensions["1.3.6.1.4.1.41482.3.8"].value == b"\x03\x01"  # type: ignore[attr-defined]
    serial = card.state.document["applets"]["piv"]["serial"]
    assert extensions["1.3.6.1.4.1.41482.3.7"].value[2:] == serial.to_bytes(
        len(extensions["1.3.6.1.4.1.41482.3.7"].value) - 2
    )  # type: ignore[attr-defined]
    entry = card.applet.key_entry(0x9A)
    assert entry is not None and attestation.public_key() == entry.key.public_key()


def test_reset_only_when_pin_and_puk_are_blocked(card: PivCard) -> None:
    card.generate(0x9A, 0x11)
    attestation_cert = card.get_data(0x5FFF01).data
    chuid = card.get_data(0x5FC102).data
    assert card.send(0x00, 0xFB, 0x00, 0x00, ne=None).sw == 0x6985
    for _ in range(3):
        card.verify("000000")
    assert card.send(0x00, 0xFB, 0x00, 0x00, ne=None).sw == 0x6985
    for _ in range(3):
        card.send(0x00, 0x2C, 0x00, 0x80, b"\xff" * 16, ne=None)
    assert card.send(0x00, 0xFB, 0x00, 0x00, ne=None).sw == 0x9000
    assert card.send(0x00, 0xF7, 0x00, 0x9A).sw == 0x6A88
    assert card.verify("123456") == 0x9000
    assert card.get_data(0x5FFF01).data == attestation_cert
    assert card.get_data(0x5FC102).data != chuid  # a fresh CHUID: Windows caches by it
    assert card.put_data(0x5FC105, b"\x70\x00") == 0x6982  # 9B status dropped too
    assert card.authenticate_mgm() == 0x9000


def test_set_pin_retries(card: PivCard) -> None:
    assert card.send(0x00, 0xFA, 0x05, 0x04, ne=None).sw == 0x6982  # PIN needed too
    assert card.verify() == 0x9000
    assert card.send(0x00, 0xFA, 0x00, 0x04, ne=None).sw == 0x6A86
    assert card.send(0x00, 0x24, 0x00, 0x80, pin_block("123456") + pin_block("654321"), ne=None).sw == 0x9000
    assert card.send(0x00, 0xFA, 0x05, 0x04, ne=None).sw == 0x9000
    assert metadata(card, 0x80)[0x06] == b"\x05\x05"
    assert metadata(card, 0x81)[0x06] == b"\x04\x04"
    assert card.verify("654321") == 0x63C4
    assert card.verify("123456") == 0x9000  # back to the default PIN


def test_move_and_delete_keys(card: PivCard) -> None:
    template = card.generate(0x82, 0x11).data
    card.generate(0x9D, 0x11)
    assert card.send(0x00, 0xF6, 0x9D, 0x82, ne=None).sw == 0x6A80  # destination in use
    assert card.send(0x00, 0xF6, 0x9A, 0x83, ne=None).sw == 0x6A88  # empty source
    assert card.send(0x00, 0xF6, 0x9A, 0xF9, ne=None).sw == 0x6A86  # attestation key stays
    assert card.send(0x00, 0xF6, 0x9A, 0x82, ne=None).sw == 0x9000
    assert card.send(0x00, 0xF7, 0x00, 0x82).sw == 0x6A88
    assert tlv.encode(0x7F49, metadata(card, 0x9A)[0x04]) == template
    assert card.send(0x00, 0xF6, 0xFF, 0x9A, ne=None).sw == 0x9000
    assert card.send(0x00, 0xF7, 0x00, 0x9A).sw == 0x6A88
    card.card.reset()
    card.select()
    assert card.send(0x00, 0xF6, 0xFF, 0x9D, ne=None).sw == 0x6982


def test_describe_lists_public_facts_only(card: PivCard) -> None:
    card.generate(0x9A, 0x11)
    summary = card.applet.describe()
    assert summary["name"] == "piv" and summary["version"] == "5.7.4"
    assert summary["keys"]["9A"] == {
        "algorithm": "p256",
        "pin_policy": "once",
        "touch_policy": "never",
        "origin": "generated",
    }
    assert "5FC102" in summary["objects"] and "PRIVATE" not in repr(summary)
