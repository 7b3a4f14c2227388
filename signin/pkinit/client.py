"""Our PKINIT client, Windows path: AS-REQ with a card-signed AuthPack, Diffie-Hellman reply key, TGT.

Three steps, so that a caller can time and count them apart (the KDC round trip is
not a card cost):

    request = build_request("alice@VCARD.TEST", signer)      # the card signs here
    reply = transport.exchange(kdc_address, request.der)       # the KDC round trip
    tgt = process_reply(request, reply, anchors)               # verify, derive, decrypt
    tgt.write_ccache(Path("ccache"))

The PA-PK-AS-REQ goes in the first AS-REQ (no PREAUTH_REQUIRED round trip), as Windows
sends it. The reply key comes from Diffie-Hellman (RFC 4556 §3.2.3.1) over MODP group 14:
the KDC's KDCDHKeyInfo is checked (signature, signer issued by an anchor, id-pkinit-KPKdc
EKU, krbtgt/REALM in its id-pkinit-san when it has one, nonce) before it is used.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dh as crypto_dh

from .. import certinfo
from . import asn1, ccache, cms, crypto, dh, messages
from .messages import ReplyError


@dataclass
class Request:
    der: bytes
    components: list[str]
    realm: str
    nonce: int
    dh_key: crypto_dh.DHPrivateKey
    sent_at: datetime.datetime


@dataclass(frozen=True)
class Tgt:
    client: ccache.Principal
    server: ccache.Principal
    key: crypto.Key
    authtime: datetime.datetime
    starttime: datetime.datetime | None
    endtime: datetime.datetime
    renew_till: datetime.datetime | None
    flags: int
    ticket: bytes
    kdc_certificate: x509.Certificate

    @property
    def server_name(self) -> str:
        return "/".join(self.server.components) + "@" + self.server.realm

    @property
    def client_name(self) -> str:
        return "/".join(self.client.components) + "@" + self.client.realm

    def write_ccache(self, path: Path) -> None:
        def seconds(moment: datetime.datetime | None) -> int:
            return int(moment.timestamp()) if moment is not None else 0

        credential = ccache.Credential(
            self.client,
            self.server,
            self.key.enctype,
            self.key.value,
            seconds(self.authtime),
            seconds(self.starttime),
            seconds(self.endtime),
            seconds(self.renew_till),
            self.flags,
            self.ticket,
        )
        ccache.write(path, self.client, [credential])


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def build_request(
    user: str,
    signer: cms.Signer,
    now: datetime.datetime | None = None,
    lifetime: datetime.timedelta = messages.DEFAULT_LIFETIME,
) -> Request:
    """The AS-REQ with PA-PK-AS-REQ; `signer` signs the AuthPack (one card signature)."""
    components, realm = messages.split_principal(user)
    now = now or utc_now()
    nonce = secrets.randbelow(1 << 31)  # MIT and Windows keep nonces positive as a signed 32-bit
    body = messages.request_body(components, realm, nonce, now, lifetime)
    key = dh.new_key()
    pack = messages.auth_pack(body, now, nonce, dh.public_key_info(key))
    signed = cms.sign(asn1.ID_PKINIT_AUTHDATA, pack.dump(), signer)
    return Request(messages.as_req(body, signed), components, realm, nonce, key, now)


def _reply_key(
    request: Request,
    reply: messages.Reply,
    enctype: int,
    anchors: list[x509.Certificate],
    now: datetime.datetime,
) -> tuple[crypto.Key, x509.Certificate]:
    value = reply.padata(asn1.PA_PK_AS_REP)
    if value is None:
        raise ReplyError("AS-REP: no PA-PK-AS-REP (the KDC did not answer with PKINIT)")
    choice = messages.parse_pk_as_rep(value)
    if choice.name != "dhInfo":
        raise ReplyError("PA-PK-AS-REP: RSA key transport (encKeyPack) answered to a Diffie-Hellman request")
    dh_info = choice.chosen
    try:
        verified = cms.verify(dh_info["dhSignedData"].native, asn1.ID_PKINIT_DHKEYDATA, anchors, now)
    except cms.CmsError as error:
        raise ReplyError(f"KDC's signed DH reply: {error}") from None
    _check_kdc_name(verified.signer, request.realm)
    key_info = messages.parse_dh_key_info(verified.content)
    if key_info["nonce"].native != request.nonce:
        raise ReplyError("KDCDHKeyInfo: nonce differs from the request's (a replayed or foreign reply)")
    try:
        secret = dh.shared_secret(request.dh_key, key_info["subjectPublicKey"].contents[1:])
    except dh.DhError as error:
        raise ReplyError(f"KDCDHKeyInfo: {error}") from None
    server_nonce = dh_info["serverDHNonce"].native
    if server_nonce:
        secret += server_nonce
    return crypto.octetstring2key(enctype, secret), verified.signer


def _check_kdc_name(certificate: x509.Certificate, realm: str) -> None:
    try:
        names = certinfo.facts(certificate).pkinit_principals
    except certinfo.CertificateFormatError as error:
        raise ReplyError(f"KDC certificate: {error}") from None
    expected = f"krbtgt/{realm}@{realm}"
    if names and expected not in names:
        raise ReplyError(f"KDC certificate names {', '.join(names)}, not {expected}")


def process_reply(
    request: Request, reply_der: bytes, anchors: list[x509.Certificate], now: datetime.datetime | None = None
) -> Tgt:
    """Verify the KDC's DH reply, derive the reply key, decrypt EncASRepPart; KdcError for a KRB-ERROR."""
    now = now or utc_now()
    reply = messages.parse_reply(reply_der)
    as_rep = reply.as_rep
    enc = as_rep["enc-part"]
    enctype = enc["etype"].native
    if enctype not in crypto.KEY_SIZES:
        raise ReplyError(f"AS-REP: encryption type {enctype} was not requested")
    key, kdc_certificate = _reply_key(request, reply, enctype, anchors, now)
    try:
        plaintext = crypto.decrypt(key, crypto.USAGE_AS_REP_ENC_PART, enc["cipher"].native)
    except crypto.KerberosCryptoError as error:
        raise ReplyError(f"AS-REP enc-part: {error}") from None
    part = messages.parse_enc_part(plaintext)
    if part["nonce"].native != request.nonce:
        raise ReplyError("EncASRepPart: nonce differs from the request's")
    cname = as_rep["cname"]["name-string"].native
    if cname != request.components or as_rep["crealm"].native != request.realm:
        raise ReplyError(
            f"AS-REP: ticket for {'/'.join(cname)}@{as_rep['crealm'].native}, not the requested user"
        )
    session = part["key"]
    try:
        session_key = crypto.Key(session["keytype"].native, session["keyvalue"].native)
    except crypto.KerberosCryptoError as error:
        raise ReplyError(f"EncASRepPart session key: {error}") from None
    sname = part["sname"]
    return Tgt(
        client=ccache.Principal(as_rep["cname"]["name-type"].native, tuple(cname), as_rep["crealm"].native),
        server=ccache.Principal(
            sname["name-type"].native, tuple(sname["name-string"].native), part["srealm"].native
        ),
        key=session_key,
        authtime=part["authtime"].native,
        starttime=part["starttime"].native,
        endtime=part["endtime"].native,
        renew_till=part["renew-till"].native,
        flags=messages.flag_bits(part["flags"]),
        ticket=messages.ticket_der(reply),
        kdc_certificate=kdc_certificate,
    )
