"""The PKINIT client's pieces: RFC 3961/3962 vectors, DH, messages, CMS, the reply path, the ccache."""

from __future__ import annotations

import datetime
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import parser
from cryptography.hazmat.primitives.asymmetric import padding
from pkinit_support import REALM, USER, Tweaks, answer, krb_error, make_lab

from signin import ca as ca_module
from signin.pkinit import asn1, ccache, client, cms, crypto, dh, messages, transport


# --- RFC 3961 appendix A.1: n-fold ------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "size", "expected"),
    [
        ("012345", 8, "be072631276b1955"),
        ("password", 7, "78a07b6caf85fa"),
        ("Rough Consensus, and Running Code", 8, "bb6ed30870b7f0e0"),
        ("password", 21, "59e4a8ca7c0385c3c37b3f6d2000247cb6e6bd5b3e"),
        ("MASSACHVSETTS INSTITVTE OF TECHNOLOGY", 24, "db3b0d8f0b061e603282b308a50841229ad798fab9540c1b"),
        ("Q", 21, "518a54a215a8452a518a54a215a8452a518a54a215"),
        ("ba", 21, "fb25d531ae8974499f52fd92ea9857c4ba24cf297e"),
        ("kerberos", 8, "6b65726265726f73"),
        ("kerberos", 16, "6b65726265726f737b9b5b2b93132b93"),
        ("kerberos", 32, "6b65726265726f737b9b5b2b93132b935c9bdcdad95c9899c4cae4dee6d6cae4"),
    ],
)
def test_nfold_vectors(text: str, size: int, expected: str) -> None:
    assert crypto.nfold(text.encode(), size).hex() == expected


# --- RFC 3962 appendix B: string-to-key (PBKDF2 + DK) and CTS ---------------------------------
@pytest.mark.parametrize(
    ("iterations", "enctype", "expected"),
    [
        (1, 17, "42263c6e89f4fc28b8df68ee09799f15"),
        (1, 18, "fe697b52bc0d3ce14432ba036a92e65bbb52280990a2fa27883998d72af30161"),
        (2, 17, "c651bf29e2300ac27fa469d693bdda13"),
        (1200, 18, "55a6ac740ad17b4846941051e1e8b0a7548d93b0ab30a8bc3ff16280382b8c2a"),
    ],
)
def test_string_to_key_vectors(iterations: int, enctype: int, expected: str) -> None:
    key = crypto.string_to_key(enctype, b"password", b"ATHENA.MIT.EDUraeburn", iterations)
    assert key.value.hex() == expected


CTS_KEY = b"chicken teriyaki"
CTS_TEXT = b"I would like the General Gau's Chicken, please, and wonton soup."
CTS_VECTORS = {
    17: "c6353568f2bf8cb4d8a580362da7ff7f97",
    31: "fc00783e0efdb2c1d445d4c8eff7ed2297687268d6ecccc0c07b25e25ecfe5",
    32: "39312523a78662d5be7fcbcc98ebf5a897687268d6ecccc0c07b25e25ecfe584",
    47: "97687268d6ecccc0c07b25e25ecfe584b3fffd940c16a18c1b5549d2f838029e39312523a78662d5be7fcbcc98ebf5",
    48: "97687268d6ecccc0c07b25e25ecfe5849dad8bbb96c4cdc03bc103e1a194bbd839312523a78662d5be7fcbcc98ebf5a8",
    64: "97687268d6ecccc0c07b25e25ecfe58439312523a78662d5be7fcbcc98ebf5a8"
    "4807efe836ee89a526730dbc2f7bc8409dad8bbb96c4cdc03bc103e1a194bbd8",
}


@pytest.mark.parametrize("length", sorted(CTS_VECTORS))
def test_cts_vectors(length: int) -> None:
    ciphertext = crypto.cts_encrypt(CTS_KEY, CTS_TEXT[:length])
    assert ciphertext.hex() == CTS_VECTORS[length]
    assert crypto.cts_decrypt(CTS_KEY, ciphertext) == CTS_TEXT[:length]


@pytest.mark.parametrize("enctype", [17, 18])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 100])
def test_encrypt_decrypt_round_trip(enctype: int, size: int) -> None:
    key = crypto.Key(enctype, bytes(range(crypto.KEY_SIZES[enctype])))
    message = bytes(range(size))
    sealed = crypto.encrypt(key, 3, message)
    assert len(sealed) == 16 + size + 12
    assert crypto.decrypt(key, 3, sealed) == message
    with pytest.raises(crypto.KerberosCryptoError, match="integrity check failed"):
        crypto.decrypt(key, 4, sealed)  # another key usage derives other keys
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    with pytest.raises(crypto.KerberosCryptoError, match="integrity check failed"):
        crypto.decrypt(key, 3, tampered)


def test_decrypt_refuses_short_input_and_bad_keys() -> None:
    key = crypto.Key(18, bytes(32))
    with pytest.raises(crypto.KerberosCryptoError, match="too short"):
        crypto.decrypt(key, 3, bytes(27))
    with pytest.raises(crypto.KerberosCryptoError, match="not supported"):
        crypto.Key(23, bytes(16))  # rc4-hmac
    with pytest.raises(crypto.KerberosCryptoError, match="key of 16 bytes"):
        crypto.Key(18, bytes(16))


def test_octetstring2key_is_rfc4556_sha1_counter_construction() -> None:
    secret = bytes(range(200))
    stream = b"".join(hashlib.sha1(bytes([i]) + secret).digest() for i in range(2))
    assert crypto.octetstring2key(18, secret).value == stream[:32]
    assert crypto.octetstring2key(17, secret).value == stream[:16]


# --- Diffie-Hellman ---------------------------------------------------------------------------
def test_dh_group_is_rfc3526_group_14() -> None:
    assert dh.MODP_2048_P.bit_length() == 2048
    assert dh.MODP_2048_P >> 1984 == 0xFFFFFFFFFFFFFFFF and dh.MODP_2048_P & 0xFFFFFFFFFFFFFFFF == 2**64 - 1
    assert format(dh.MODP_2048_P, "x").startswith("ffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd1")
    assert pow(2, dh.MODP_2048_Q, dh.MODP_2048_P) == 1  # g generates the order-q subgroup


def test_dh_public_value_and_shared_secret() -> None:
    mine, theirs = dh.new_key(), dh.new_key()
    info = dh.public_key_info(mine)
    assert info["algorithm"]["algorithm"].dotted == asn1.DH_PUBLIC_NUMBER
    parameters = info["algorithm"]["parameters"]
    assert (parameters["p"].native, parameters["g"].native, parameters["q"].native) == (
        dh.MODP_2048_P,
        2,
        dh.MODP_2048_Q,
    )
    assert info["public_key"].parsed.native == mine.public_key().public_numbers().y
    y = theirs.public_key().public_numbers().y
    secret = dh.shared_secret(mine, asn1_core.Integer(y).dump())
    expected = pow(y, mine.private_numbers().x, dh.MODP_2048_P).to_bytes(256, "big")
    assert secret == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (asn1_core.Integer(1).dump(), "out of range"),
        (asn1_core.Integer(dh.MODP_2048_P - 1).dump(), "out of range"),
        (b"\x04\x01\x00", "not a DER INTEGER"),
    ],
)
def test_dh_refuses_bad_kdc_values(value: bytes, message: str) -> None:
    with pytest.raises(dh.DhError, match=message):
        dh.shared_secret(dh.new_key(), value)


# --- messages ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> object:
    return make_lab(tmp_path_factory.mktemp("pkinit"))


def test_as_req_encodes_rfc4556_structures(lab: object) -> None:
    now = datetime.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    request = client.build_request(USER, lab.user, now)  # type: ignore[attr-defined]
    as_req = asn1.AsReq.load(request.der)
    assert request.der[0] == 0x6A  # [APPLICATION 10]
    assert as_req["pvno"].native == 5 and as_req["msg-type"].native == 10
    body = as_req["req-body"]
    assert body["cname"].native == {"name-type": 1, "name-string": ["alice"]}
    assert body["sname"].native == {"name-type": 2, "name-string": ["krbtgt", REALM]}
    assert body["realm"].native == REALM and body["nonce"].native == request.nonce
    assert body["etype"].native == [18, 17]
    assert body["kdc-options"].contents == bytes.fromhex("0040000000")  # forwardable, all 32 bits
    assert body["till"].native == datetime.datetime(2030, 1, 2, 13, 4, 5, tzinfo=datetime.UTC)
    assert body["till"].contents == b"20300102130405Z"  # no fraction (RFC 4120 KerberosTime)
    (padata,) = as_req["padata"]
    assert padata["padata-type"].native == asn1.PA_PK_AS_REQ
    signed = asn1_cms.ContentInfo.load(
        asn1.PaPkAsReq.load(padata["padata-value"].native)["signedAuthPack"].native
    )
    assert signed["content_type"].native == "signed_data"
    encap = signed["content"]["encap_content_info"]
    assert encap["content_type"].dotted == asn1.ID_PKINIT_AUTHDATA
    auth_pack = asn1.AuthPack.load(encap["content"].contents)
    authenticator = auth_pack["pkAuthenticator"]
    assert authenticator["cusec"].native == 678901
    assert authenticator["ctime"].native == now.replace(microsecond=0)
    assert authenticator["nonce"].native == request.nonce
    body_der = parser.parse(body.dump())[4]  # KDC-REQ-BODY without AS-REQ's [4] wrapper
    assert body_der[0] == 0x30
    assert authenticator["paChecksum"].native == hashlib.sha1(body_der).digest()
    # the client's own signature verifies against the CA (no KDC EKU asked of a user certificate)
    verified = cms.verify(
        signed.dump(),
        asn1.ID_PKINIT_AUTHDATA,
        [lab.ca.certificate],
        client.utc_now(),
        required_eku=None,  # type: ignore[attr-defined]
    )
    with pytest.raises(cms.CmsError, match="is not valid at 2030"):  # the user certificate's 30 days are over
        cms.verify(signed.dump(), asn1.ID_PKINIT_AUTHDATA, [lab.ca.certificate], now, required_eku=None)  # type: ignore[attr-defined]
    assert verified.signer == lab.user.certificate  # type: ignore[attr-defined]


def test_ec_signed_auth_pack_verifies(tmp_path: Path) -> None:
    ec_lab = make_lab(tmp_path, "p256")
    request = client.build_request(USER, ec_lab.user)
    pa = asn1.PaPkAsReq.load(asn1.AsReq.load(request.der)["padata"][0]["padata-value"].native)
    signer_info = asn1_cms.ContentInfo.load(pa["signedAuthPack"].native)["content"]["signer_infos"][0]
    assert signer_info["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    cms.verify(
        pa["signedAuthPack"].native,
        asn1.ID_PKINIT_AUTHDATA,
        [ec_lab.ca.certificate],
        client.utc_now(),
        required_eku=None,
    )


def test_krb_error_becomes_kdc_error() -> None:
    with pytest.raises(messages.KdcError) as caught:
        messages.parse_reply(krb_error(77, "certificate EKU"))
    assert caught.value.code == 77 and caught.value.text == "certificate EKU"
    assert (
        str(caught.value)
        == "KDC refused: KDC_ERR_INCONSISTENT_KEY_PURPOSE (Inconsistent key purpose): certificate EKU"
    )


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"", "empty"),
        (b"\x30\x00", "neither AS-REP"),
        (b"\x6b\x03\x30\x01\x00", "AS-REP: malformed"),
        (b"\x7e\x02\x30\x00", "KRB-ERROR: malformed"),
    ],
)
def test_malformed_replies_are_reply_errors(der: bytes, message: str) -> None:
    with pytest.raises(messages.ReplyError, match=message):
        messages.parse_reply(der)


def test_split_principal() -> None:
    assert messages.split_principal("alice@VCARD.TEST") == (["alice"], "VCARD.TEST")
    assert messages.split_principal("host/a.b@R") == (["host", "a.b"], "R")
    for bad in ("alice", "@R", "alice@"):
        with pytest.raises(ValueError, match="expected a principal"):
            messages.split_principal(bad)


def test_address_parsing() -> None:
    assert transport.parse_address("kdc.example") == ("kdc.example", 88)
    assert transport.parse_address("127.0.0.1:8888") == ("127.0.0.1", 8888)
    assert transport.parse_address("[::1]:750") == ("::1", 750)
    with pytest.raises(ValueError):
        transport.parse_address(":0")


# --- the reply path against an RFC 4556 KDC written independently in the test -----------------
def test_reply_gives_the_tgt(lab: object, tmp_path: Path) -> None:
    request = client.build_request(USER, lab.user)  # type: ignore[attr-defined]
    tgt = client.process_reply(request, answer(request.der, lab.kdc), [lab.ca.certificate])  # type: ignore[attr-defined]
    assert tgt.client_name == USER and tgt.server_name == f"krbtgt/{REALM}@{REALM}"
    assert tgt.key == crypto.Key(18, b"\x11" * 32)
    assert tgt.flags == 0x40000000
    assert tgt.ticket[0] == 0x61  # [APPLICATION 1] Ticket, as the KDC encoded it
    path = tmp_path / "cc"
    tgt.write_ccache(path)
    data = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    assert data[:4] == struct.pack(">HH", 0x0504, 12)
    assert tgt.ticket in data and b"\x11" * 32 in data


@pytest.mark.parametrize(
    ("tweaks", "message"),
    [
        (Tweaks(dh_nonce_delta=1), "KDCDHKeyInfo: nonce differs"),
        (Tweaks(enc_nonce_delta=1), "EncASRepPart: nonce differs"),
        (Tweaks(flip_cipher=True), "integrity check failed"),
        (Tweaks(no_pk_as_rep=True), "no PA-PK-AS-REP"),
    ],
)
def test_reply_checks(lab: object, tweaks: Tweaks, message: str) -> None:
    request = client.build_request(USER, lab.user)  # type: ignore[attr-defined]
    reply = answer(request.der, lab.kdc, tweaks)  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match=message):
        client.process_reply(request, reply, [lab.ca.certificate])  # type: ignore[attr-defined]


def test_reply_signed_by_an_untrusted_or_non_kdc_certificate_is_refused(lab: object, tmp_path: Path) -> None:
    request = client.build_request(USER, lab.user)  # type: ignore[attr-defined]
    # signed by the user's own key: issued by the anchor, but not a KDC certificate
    reply = answer(request.der, lab.kdc, Tweaks(signer=lab.user))  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match=r"lacks the EKU 1\.3\.6\.1\.5\.2\.3\.5"):
        client.process_reply(request, reply, [lab.ca.certificate])  # type: ignore[attr-defined]
    other = ca_module.init_ca(tmp_path / "other")
    reply = answer(request.der, lab.kdc)  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match="not issued by a trusted anchor"):
        client.process_reply(request, reply, [other.certificate])


def test_ccache_layout() -> None:
    principal = ccache.Principal(1, ("alice",), REALM)
    server = ccache.Principal(2, ("krbtgt", REALM), REALM)
    credential = ccache.Credential(principal, server, 18, b"k" * 32, 1, 0, 3, 0, 0x40000000, b"\x61\x00")
    data = ccache.encode(principal, [credential])
    header = struct.pack(">HHHHii", 0x0504, 12, 1, 8, 0, 0)
    default = (
        struct.pack(">II", 1, 1) + struct.pack(">I", 10) + REALM.encode() + struct.pack(">I", 5) + b"alice"
    )
    assert data.startswith(header + default)
    assert data.endswith(
        struct.pack(">BIII", 0, 0x40000000, 0, 0) + struct.pack(">I", 2) + b"\x61\x00" + bytes(4)
    )


# --- RSA key transport (RFC 4556 §3.2.3.2) ------------------------------------------------------
def _decryptor(lab: object) -> Callable[[bytes], bytes]:
    key = lab.user.key  # type: ignore[attr-defined]
    return lambda encrypted: key.decrypt(encrypted, padding.PKCS1v15())


def test_key_transport_reply_gives_the_tgt(lab: object) -> None:
    request = client.build_request(USER, lab.user, key_transport=True)  # type: ignore[attr-defined]
    auth_pack = _auth_pack(request.der)
    assert auth_pack["clientPublicValue"].native is None  # no DH value: key transport asked for
    reply = answer(request.der, lab.kdc)  # type: ignore[attr-defined]
    tgt = client.process_reply(request, reply, [lab.ca.certificate], decrypt_key=_decryptor(lab))  # type: ignore[attr-defined]
    assert tgt.client_name == USER and tgt.key == crypto.Key(18, b"\x11" * 32)


def test_key_transport_checks(lab: object) -> None:
    request = client.build_request(USER, lab.user, key_transport=True)  # type: ignore[attr-defined]
    spoiled = answer(request.der, lab.kdc, Tweaks(checksum_delta=1))  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match="asChecksum does not match our AS-REQ"):
        client.process_reply(request, spoiled, [lab.ca.certificate], decrypt_key=_decryptor(lab))  # type: ignore[attr-defined]
    other = client.build_request(USER, lab.user, key_transport=True)  # type: ignore[attr-defined]
    foreign = answer(other.der, lab.kdc)  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match="asChecksum does not match"):
        client.process_reply(request, foreign, [lab.ca.certificate], decrypt_key=_decryptor(lab))  # type: ignore[attr-defined]
    dh_request = client.build_request(USER, lab.user)  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match="encKeyPack\\) answered to a Diffie-Hellman request"):
        client.process_reply(dh_request, answer(request.der, lab.kdc), [lab.ca.certificate])  # type: ignore[attr-defined]
    with pytest.raises(messages.ReplyError, match="a Diffie-Hellman answer to a key-transport request"):
        client.process_reply(
            request, answer(dh_request.der, lab.kdc), [lab.ca.certificate], decrypt_key=_decryptor(lab)
        )  # type: ignore[attr-defined]


def test_enveloped_data_with_the_wrong_key_is_refused(lab: object) -> None:
    request = client.build_request(USER, lab.user, key_transport=True)  # type: ignore[attr-defined]
    reply = messages.parse_reply(answer(request.der, lab.kdc))  # type: ignore[attr-defined]
    enc_key_pack = messages.parse_pk_as_rep(reply.padata(asn1.PA_PK_AS_REP) or b"").chosen.native
    with pytest.raises(cms.CmsError):
        cms.open_enveloped(enc_key_pack, lambda encrypted: b"\x00" * 32)


def _auth_pack(request_der: bytes) -> asn1.AuthPack:
    pa = asn1.PaPkAsReq.load(asn1.AsReq.load(request_der)["padata"][0]["padata-value"].native)
    signed = asn1_cms.ContentInfo.load(pa["signedAuthPack"].native)
    return asn1.AuthPack.load(signed["content"]["encap_content_info"]["content"].contents)
