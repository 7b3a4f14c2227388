"""A software signer and a small in-test KDC that answers a PKINIT AS-REQ the way RFC 4556 says.

The KDC side is independent of the client's reply parsing: it decodes the AS-REQ,
checks the client's CMS signature, does its half of the Diffie-Hellman exchange and
encrypts an EncASRepPart, so the client's whole reply path can be exercised offline.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import parser
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import dh as crypto_dh
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from signin import ca as ca_module
from signin.pkinit import asn1, cms, crypto, dh

REALM = "VCARD.TEST"
_DER = serialization.Encoding.DER
USER = f"alice@{REALM}"


@dataclass
class SoftwareSigner:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def signature_algorithm(self) -> str:
        return "sha256_ecdsa" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "sha256_rsa"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@dataclass
class Lab:
    ca: ca_module.CA
    kdc: SoftwareSigner
    user: SoftwareSigner


def make_lab(directory: object, key_type: str = "rsa2048") -> Lab:
    from pathlib import Path

    authority = ca_module.init_ca(Path(str(directory)) / "ca")
    certificate, key = ca_module.issue_kdc(authority, REALM)
    user_key = ca_module.new_key(key_type)
    user_cert = ca_module.issue_user(authority, user_key.public_key(), "windows", USER, 30)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert isinstance(user_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return Lab(authority, SoftwareSigner(key, certificate), SoftwareSigner(user_key, user_cert))


@dataclass
class Tweaks:
    """Ways the fake KDC misbehaves, one per test."""

    dh_nonce_delta: int = 0
    enc_nonce_delta: int = 0
    flip_cipher: bool = False
    no_pk_as_rep: bool = False
    signer: SoftwareSigner | None = None  # sign the DH reply with another key
    checksum_delta: int = 0  # key transport: spoil asChecksum


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def answer(request_der: bytes, kdc: SoftwareSigner, tweaks: Tweaks | None = None) -> bytes:
    """The AS-REP a PKINIT KDC sends for `request_der` (DH, aes256, key usage 3)."""
    tweaks = tweaks or Tweaks()
    request = asn1.AsReq.load(request_der)
    body = request["req-body"]
    nonce = body["nonce"].native
    pa = asn1.PaPkAsReq.load(request["padata"][0]["padata-value"].native)
    info = asn1_cms.ContentInfo.load(pa["signedAuthPack"].native)
    auth_pack = asn1.AuthPack.load(info["content"]["encap_content_info"]["content"].contents)
    if auth_pack["clientPublicValue"].native is None:
        client_cert = x509.load_der_x509_certificate(info["content"]["certificates"][0].chosen.dump())
        reply_key = crypto.Key(crypto.AES256_CTS_HMAC_SHA1_96, secrets.token_bytes(32))
        pk_as_rep = _key_transport(request_der, reply_key, client_cert, kdc, tweaks)
    else:
        pk_as_rep, reply_key = _diffie_hellman(auth_pack, kdc, tweaks)
    return _as_rep(body, nonce, reply_key, pk_as_rep, tweaks)


def _key_transport(
    request_der: bytes, reply_key: crypto.Key, client: x509.Certificate, kdc: SoftwareSigner, tweaks: Tweaks
) -> asn1.PaPkAsRep:
    """encKeyPack: EnvelopedData (AES-256-CBC, CEK under the client's RSA key) of SignedData(ReplyKeyPack)."""
    checksum = crypto.checksum(reply_key, crypto.USAGE_PKINIT_AS_CHECKSUM, request_der)
    checksum = bytes([checksum[0] ^ tweaks.checksum_delta]) + checksum[1:]
    pack = asn1.ReplyKeyPack(
        {
            "replyKey": {"keytype": reply_key.enctype, "keyvalue": reply_key.value},
            "asChecksum": {"cksumtype": 16, "checksum": checksum},
        }
    )
    wrapped = asn1_cms.ContentInfo.load(cms.sign(asn1.ID_PKINIT_RKEYDATA, pack.dump(), kdc))["content"].dump()
    signed = parser.parse(wrapped)[4]  # the bare SignedData, without ContentInfo's [0]
    cek, iv = secrets.token_bytes(32), secrets.token_bytes(16)
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(signed) + padder.finalize()) + encryptor.finalize()
    public = client.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    recipient = asn1_cms.KeyTransRecipientInfo(
        {
            "version": "v0",
            "rid": asn1_cms.RecipientIdentifier(
                "issuer_and_serial_number",
                asn1_cms.IssuerAndSerialNumber(
                    {
                        "issuer": asn1_cms.Certificate.load(client.public_bytes(_DER)).issuer,
                        "serial_number": client.serial_number,
                    }
                ),
            ),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": public.encrypt(cek, padding.PKCS1v15()),
        }
    )
    enveloped = asn1_cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": [asn1_cms.RecipientInfo("ktri", recipient)],
            "encrypted_content_info": {
                "content_type": "signed_data",
                "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": iv},
                "encrypted_content": ciphertext,
            },
        }
    )
    der = asn1_cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()
    return asn1.PaPkAsRep(name="encKeyPack", value=der)


def _diffie_hellman(
    auth_pack: asn1.AuthPack, kdc: SoftwareSigner, tweaks: Tweaks
) -> tuple[asn1.PaPkAsRep, crypto.Key]:
    client_y = auth_pack["clientPublicValue"]["public_key"].parsed.native
    numbers = dh.PARAMETERS.parameter_numbers()
    kdc_key = dh.new_key()
    with dh._ffdh():
        peer = crypto_dh.DHPublicNumbers(client_y, numbers).public_key()
        secret = kdc_key.exchange(peer).rjust(256, b"\x00")
    key_info = asn1.KdcDhKeyInfo(
        {
            "subjectPublicKey": asn1_core.BitString(
                contents=b"\x00" + asn1_core.Integer(kdc_key.public_key().public_numbers().y).dump()
            ),
            "nonce": auth_pack["pkAuthenticator"]["nonce"].native + tweaks.dh_nonce_delta,
        }
    )
    signed = cms.sign(asn1.ID_PKINIT_DHKEYDATA, key_info.dump(), tweaks.signer or kdc)
    pk_as_rep = asn1.PaPkAsRep(name="dhInfo", value=asn1.DhRepInfo({"dhSignedData": signed}))
    return pk_as_rep, crypto.octetstring2key(crypto.AES256_CTS_HMAC_SHA1_96, secret)


def _as_rep(
    body: asn1.KdcReqBody, nonce: int, reply_key: crypto.Key, pk_as_rep: asn1.PaPkAsRep, tweaks: Tweaks
) -> bytes:
    now = _now()
    sname = {"name-type": asn1.NT_SRV_INST, "name-string": ["krbtgt", REALM]}
    part = asn1.EncAsRepPart(
        {
            "key": {"keytype": crypto.AES256_CTS_HMAC_SHA1_96, "keyvalue": b"\x11" * 32},
            "last-req": [],
            "nonce": nonce + tweaks.enc_nonce_delta,
            "flags": tuple([0, 1] + [0] * 30),
            "authtime": now,
            "endtime": now + datetime.timedelta(hours=10),
            "srealm": REALM,
            "sname": sname,
        }
    )
    cipher = crypto.encrypt(reply_key, crypto.USAGE_AS_REP_ENC_PART, part.dump())
    if tweaks.flip_cipher:
        cipher = cipher[:-1] + bytes([cipher[-1] ^ 1])
    ticket = asn1.Ticket(
        {
            "tkt-vno": 5,
            "realm": REALM,
            "sname": sname,
            "enc-part": {"etype": 18, "kvno": 1, "cipher": b"\x42" * 64},
        }
    )
    padata = (
        [] if tweaks.no_pk_as_rep else [{"padata-type": asn1.PA_PK_AS_REP, "padata-value": pk_as_rep.dump()}]
    )
    return asn1.AsRep(
        {
            "pvno": 5,
            "msg-type": asn1.KRB_AS_REP,
            "padata": padata,
            "crealm": REALM,
            "cname": body["cname"].native,
            "ticket": ticket,
            "enc-part": {"etype": crypto.AES256_CTS_HMAC_SHA1_96, "cipher": cipher},
        }
    ).dump()


def krb_error(code: int, text: str) -> bytes:
    return asn1.KrbError(
        {
            "pvno": 5,
            "msg-type": asn1.KRB_ERROR,
            "stime": _now(),
            "susec": 0,
            "error-code": code,
            "realm": REALM,
            "sname": {"name-type": asn1.NT_SRV_INST, "name-string": ["krbtgt", REALM]},
            "e-text": text,
        }
    ).dump()


@contextmanager
def fake_kdc(respond: Callable[[bytes], bytes]) -> Iterator[tuple[str, int]]:
    """A TCP KDC on 127.0.0.1 that answers each request with `respond(request)`."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                header = connection.recv(4)
                if len(header) < 4:
                    continue
                (length,) = struct.unpack(">I", header)
                data = b""
                while len(data) < length:
                    chunk = connection.recv(length - len(data))
                    if not chunk:
                        break
                    data += chunk
                reply = respond(data)
                connection.sendall(struct.pack(">I", len(reply)) + reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.getsockname()[1])
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        server.close()
        thread.join(5)
