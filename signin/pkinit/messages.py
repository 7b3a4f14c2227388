"""Building the PKINIT AS-REQ and reading what the KDC answers (RFC 4120 §5.4.1, RFC 4556 §3.2).

    body = request_body(principal, realm, nonce, now)
    auth_pack = auth_pack(body, now, nonce, client_public_value)
    as_req = as_req(body, signed_auth_pack)          # signed_auth_pack: cms.sign(...)
    reply = parse_reply(der)                          # AsRep, or KdcError raised with code and e-text

Everything that comes from the KDC is decoded defensively: a malformed answer becomes a
`ReplyError` that says which message and field, never an asn1crypto traceback.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from asn1crypto import core as asn1_core
from asn1crypto import parser

from . import asn1
from .cms import digest
from .crypto import AES128_CTS_HMAC_SHA1_96, AES256_CTS_HMAC_SHA1_96

ETYPES = (AES256_CTS_HMAC_SHA1_96, AES128_CTS_HMAC_SHA1_96)
FORWARDABLE, RENEWABLE = 1, 8  # KDCOptions bit numbers (RFC 4120 §5.4.1)
DEFAULT_LIFETIME = datetime.timedelta(hours=10)

# RFC 4120 §7.5.9 and RFC 4556 §3.1.3 error codes a sign-in meets, with MIT's messages
ERROR_NAMES = {
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN (Client not found in Kerberos database)",
    14: "KDC_ERR_ETYPE_NOSUPP (KDC has no support for encryption type)",
    24: "KDC_ERR_PREAUTH_FAILED (Pre-authentication failed)",
    25: "KDC_ERR_PREAUTH_REQUIRED (Additional pre-authentication required)",
    37: "KRB_AP_ERR_SKEW (Clock skew too great)",
    60: "KRB_ERR_GENERIC (Generic error)",
    62: "KDC_ERR_CLIENT_NOT_TRUSTED (Client not trusted)",
    63: "KDC_ERR_KDC_NOT_TRUSTED (KDC not trusted)",
    64: "KDC_ERR_INVALID_SIG (Invalid signature)",
    65: "KDC_ERR_DH_KEY_PARAMETERS_NOT_ACCEPTED (DH key parameters not accepted)",
    70: "KDC_ERR_CANT_VERIFY_CERTIFICATE (Cannot verify certificate)",
    71: "KDC_ERR_INVALID_CERTIFICATE (Invalid certificate)",
    72: "KDC_ERR_REVOKED_CERTIFICATE (Revoked certificate)",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH (Client name mismatch)",
    77: "KDC_ERR_INCONSISTENT_KEY_PURPOSE (Inconsistent key purpose)",
    78: "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED (Digest in certificate not accepted)",
    79: "KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED (paChecksum must be included)",
    80: "KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED (Digest in signed data not accepted)",
    81: "KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED (Public key encryption not supported)",
}


class ReplyError(Exception):
    """The KDC's answer is not a well-formed message of the expected kind."""


class KdcError(Exception):
    """The KDC answered with a KRB-ERROR: `code`, `name` and the KDC's `text` (e-text)."""

    def __init__(self, code: int, text: str, e_data: bytes | None = None) -> None:
        self.code = code
        self.name = ERROR_NAMES.get(code, f"error {code}")
        self.text = text
        self.e_data = e_data
        super().__init__(f"KDC refused: {self.name}" + (f": {text}" if text else ""))


def split_principal(user: str) -> tuple[list[str], str]:
    """ "alice@VCARD.TEST" -> (["alice"], "VCARD.TEST"); "a/b@R" -> (["a", "b"], "R")."""
    name, at, realm = user.rpartition("@")
    if not at or not name or not realm:
        raise ValueError(f"{user!r}: expected a principal name@REALM")
    return name.split("/"), realm


def kerberos_time(moment: datetime.datetime) -> asn1.KerberosTime:
    return asn1.KerberosTime(moment.astimezone(datetime.UTC).replace(microsecond=0))


def flags(*bits: int) -> asn1.KerberosFlags:
    value = [0] * 32
    for bit in bits:
        value[bit] = 1
    return asn1.KerberosFlags(tuple(value))


def flag_bits(value: asn1.KerberosFlags) -> int:
    """The flags as the 32-bit integer MIT's credential cache stores (bit 0 = most significant)."""
    bits = list(value.native) + [0] * 32
    return int("".join(str(bit) for bit in bits[:32]), 2)


def principal_name(name_type: int, components: list[str]) -> asn1.PrincipalName:
    return asn1.PrincipalName({"name-type": name_type, "name-string": components})


def request_body(
    components: list[str], realm: str, nonce: int, now: datetime.datetime, lifetime: datetime.timedelta
) -> asn1.KdcReqBody:
    return asn1.KdcReqBody(
        {
            "kdc-options": flags(FORWARDABLE),
            "cname": principal_name(asn1.NT_PRINCIPAL, components),
            "realm": realm,
            "sname": principal_name(asn1.NT_SRV_INST, ["krbtgt", realm]),
            "till": kerberos_time(now + lifetime),
            "nonce": nonce,
            "etype": list(ETYPES),
        }
    )


def auth_pack(
    body: asn1.KdcReqBody, now: datetime.datetime, nonce: int, client_public_value: object | None
) -> asn1.AuthPack:
    """AuthPack: PKAuthenticator (cusec, ctime, nonce, paChecksum = SHA-1 of the DER KDC-REQ-BODY)."""
    authenticator = asn1.PkAuthenticator(
        {
            "cusec": now.microsecond,
            "ctime": kerberos_time(now),
            "nonce": nonce,
            "paChecksum": digest("sha1", body.dump()),
        }
    )
    fields: dict[str, object] = {"pkAuthenticator": authenticator}
    if client_public_value is not None:
        fields["clientPublicValue"] = client_public_value
    return asn1.AuthPack(fields)


def as_req(body: asn1.KdcReqBody, signed_auth_pack: bytes) -> bytes:
    pa = asn1.PaPkAsReq({"signedAuthPack": signed_auth_pack})
    der: bytes = asn1.AsReq(
        {
            "pvno": 5,
            "msg-type": asn1.KRB_AS_REQ,
            "padata": [{"padata-type": asn1.PA_PK_AS_REQ, "padata-value": pa.dump()}],
            "req-body": body,
        }
    ).dump()
    return der


@dataclass(frozen=True)
class Reply:
    as_rep: asn1.AsRep
    der: bytes

    def padata(self, kind: int) -> bytes | None:
        for entry in self.as_rep["padata"] or []:
            if entry["padata-type"].native == kind:
                value: bytes = entry["padata-value"].native
                return value
        return None


def _load(spec: type[asn1_core.Asn1Value], der: bytes, what: str) -> asn1_core.Asn1Value:
    try:
        value = spec.load(der, strict=True)
        _ = value.native  # decode every field now, so a bad field fails here
    except (ValueError, TypeError, KeyError) as error:
        raise ReplyError(f"{what}: malformed ({error})") from None
    return value


def ticket_der(reply: Reply) -> bytes:
    """The Ticket exactly as the KDC encoded it ([APPLICATION 1]), without AS-REP's [5] wrapper."""
    contents: bytes = parser.parse(reply.as_rep["ticket"].dump())[4]
    return contents


def parse_reply(der: bytes) -> Reply:
    """An AS-REP, or KdcError for a KRB-ERROR; ReplyError for anything else."""
    if not der:
        raise ReplyError("KDC reply: empty")
    tag = der[0]
    if tag == 0x7E:  # [APPLICATION 30] constructed
        error = _load(asn1.KrbError, der, "KRB-ERROR")
        text = error["e-text"].native or ""
        raise KdcError(error["error-code"].native, text, error["e-data"].native)
    if tag != 0x6B:  # [APPLICATION 11] constructed
        raise ReplyError(f"KDC reply: tag {tag:#04x} is neither AS-REP (0x6b) nor KRB-ERROR (0x7e)")
    as_rep = _load(asn1.AsRep, der, "AS-REP")
    if as_rep["msg-type"].native != asn1.KRB_AS_REP or as_rep["pvno"].native != 5:
        raise ReplyError(
            f"AS-REP: pvno {as_rep['pvno'].native}, msg-type {as_rep['msg-type'].native} (expected 5, 11)"
        )
    return Reply(as_rep, der)


def parse_pk_as_rep(value: bytes) -> asn1.PaPkAsRep:
    choice = _load(asn1.PaPkAsRep, value, "PA-PK-AS-REP")
    assert isinstance(choice, asn1.PaPkAsRep)
    return choice


def parse_dh_key_info(value: bytes) -> asn1.KdcDhKeyInfo:
    info = _load(asn1.KdcDhKeyInfo, value, "KDCDHKeyInfo")
    assert isinstance(info, asn1.KdcDhKeyInfo)
    return info


def parse_reply_key_pack(value: bytes) -> asn1.ReplyKeyPack:
    pack = _load(asn1.ReplyKeyPack, value, "ReplyKeyPack")
    assert isinstance(pack, asn1.ReplyKeyPack)
    return pack


def parse_enc_part(plaintext: bytes) -> asn1.EncKdcRepPart:
    """EncASRepPart ([APPLICATION 25]), or EncTGSRepPart ([APPLICATION 26]) as RFC 4120 allows."""
    if plaintext[:1] == b"\x7a":
        part = _load(asn1.EncTgsRepPart, plaintext, "EncTGSRepPart")
    else:
        part = _load(asn1.EncAsRepPart, plaintext, "EncASRepPart")
    assert isinstance(part, asn1.EncKdcRepPart)
    return part
