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
EKU, krbtgt/REALM in its id-pkinit-san when it has one, nonce) before it is used. Or, with
`key_transport`, from RSA key transport (§3.2.3.2): the KDC's encKeyPack is opened with the
caller's `decrypt_key` (the card's CardRSADecrypt) and its asChecksum checked.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable
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
    dh_key: crypto_dh.DHPrivateKey | None  # None: RSA key transport asked for
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
    key_transport: bool = False,
) -> Request:
    """The AS-REQ with PA-PK-AS-REQ; `signer` signs the AuthPack (one card signature).

    Diffie-Hellman by default; `key_transport` leaves clientPublicValue out, which asks the
    KDC for RSA key transport (RFC 4556 §3.2.3.2)."""
    components, realm = messages.split_principal(user)
    now = now or utc_now()
    nonce = secrets.randbelow(1 << 31)  # MIT and Windows keep nonces positive as a signed 32-bit
    body = messages.request_body(components, realm, nonce, now, lifetime)
    key = None if key_transport else dh.new_key()
    pack = messages.auth_pack(body, now, nonce, None if key is None else dh.public_key_info(key))
    signed = cms.sign(asn1.ID_PKINIT_AUTHDATA, pack.dump(), signer)
    return Request(messages.as_req(body, signed), components, realm, nonce, key, now)


def _reply_key(
    request: Request,
    reply: messages.Reply,
    enctype: int,
    anchors: list[x509.Certificate],
    now: datetime.datetime,
    decrypt_key: Callable[[bytes], bytes] | None,
) -> tuple[crypto.Key, x509.Certificate]:
    value = reply.padata(asn1.PA_PK_AS_REP)
    if value is None:
        raise ReplyError("AS-REP: no PA-PK-AS-REP (the KDC did not answer with PKINIT)")
    choice = messages.parse_pk_as_rep(value)
    if choice.name == "encKeyPack":
        return _transported_key(request, choice.chosen.native, anchors, now, decrypt_key)
    if request.dh_key is None:
        raise ReplyError("PA-PK-AS-REP: a Diffie-Hellman answer to a key-transport request")
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


def _transported_key(
    request: Request,
    enc_key_pack: bytes,
    anchors: list[x509.Certificate],
    now: datetime.datetime,
    decrypt_key: Callable[[bytes], bytes] | None,
) -> tuple[crypto.Key, x509.Certificate]:
    """encKeyPack: EnvelopedData(SignedData(ReplyKeyPack)); asChecksum over the AS-REQ, key usage 6."""
    if request.dh_key is not None or decrypt_key is None:
        raise ReplyError("PA-PK-AS-REP: RSA key transport (encKeyPack) answered to a Diffie-Hellman request")
    try:
        inner_type, inner = cms.open_enveloped(enc_key_pack, decrypt_key)
        if inner_type != "1.2.840.113549.1.7.2":  # id-signedData
            raise cms.CmsError(f"encKeyPack holds {inner_type}, expected signed-data")
        verified = cms.verify(cms.as_content_info(inner), asn1.ID_PKINIT_RKEYDATA, anchors, now)
    except cms.CmsError as error:
        raise ReplyError(f"KDC's encKeyPack: {error}") from None
    _check_kdc_name(verified.signer, request.realm)
    pack = messages.parse_reply_key_pack(verified.content)
    try:
        key = crypto.Key(pack["replyKey"]["keytype"].native, pack["replyKey"]["keyvalue"].native)
    except crypto.KerberosCryptoError as error:
        raise ReplyError(f"ReplyKeyPack: {error}") from None
    checksum = pack["asChecksum"]
    if not crypto.verify_checksum(
        key,
        crypto.USAGE_PKINIT_AS_CHECKSUM,
        request.der,
        checksum["cksumtype"].native,
        checksum["checksum"].native,
    ):
        raise ReplyError("ReplyKeyPack: asChecksum does not match our AS-REQ (a reply to another request)")
    return key, verified.signer


def _check_kdc_name(certificate: x509.Certificate, realm: str) -> None:
    try:
        names = certinfo.facts(certificate).pkinit_principals
    except certinfo.CertificateFormatError as error:
        raise ReplyError(f"KDC certificate: {error}") from None
    expected = f"krbtgt/{realm}@{realm}"
    if names and expected not in names:
        raise ReplyError(f"KDC certificate names {', '.join(names)}, not {expected}")


def process_reply(
    request: Request,
    reply_der: bytes,
    anchors: list[x509.Certificate],
    now: datetime.datetime | None = None,
    decrypt_key: Callable[[bytes], bytes] | None = None,
) -> Tgt:
    """Verify the KDC's reply (DH, or key transport with `decrypt_key`), get the reply key, decrypt
    EncASRepPart; KdcError for a KRB-ERROR."""
    now = now or utc_now()
    reply = messages.parse_reply(reply_der)
    as_rep = reply.as_rep
    enc = as_rep["enc-part"]
    enctype = enc["etype"].native
    if enctype not in crypto.KEY_SIZES:
        raise ReplyError(f"AS-REP: encryption type {enctype} was not requested")
    key, kdc_certificate = _reply_key(request, reply, enctype, anchors, now, decrypt_key)
    if key.enctype != enctype:
        raise ReplyError(f"reply key type {key.enctype} differs from the enc-part's {enctype}")
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
