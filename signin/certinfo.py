"""The certificate facts sign-in rules look at: EKUs, key usage, UPN, Kerberos principal names, e-mail.

One place that reads them out of a `cryptography.x509.Certificate`, so every rule set
(Windows, MIT, SSSD, FreeRDP) judges the same facts. The two otherName forms are:

- UPN, `szOID_NT_PRINCIPAL_NAME` 1.3.6.1.4.1.311.20.2.3: a UTF8String `user@suffix`
  (Microsoft "Certificate Requirements and Enumeration");
- id-pkinit-san 1.3.6.1.5.2.2: `KRB5PrincipalName ::= SEQUENCE { realm [0] Realm,
  principalName [1] PrincipalName }` (RFC 4556 §3.2.2).
"""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from vcard import tlv

OID_UPN = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
OID_PKINIT_SAN = ObjectIdentifier("1.3.6.1.5.2.2")
EKU_SMARTCARD_LOGON = ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")
EKU_PKINIT_CLIENT_AUTH = ObjectIdentifier("1.3.6.1.5.2.3.4")
EKU_PKINIT_KDC = ObjectIdentifier("1.3.6.1.5.2.3.5")
EKU_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
EKU_ANY = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE

KRB5_NT_PRINCIPAL = 1


class CertificateFormatError(ValueError):
    """A SAN otherName that does not decode as its OID says it should."""


@dataclass(frozen=True)
class CertFacts:
    """What the rule sets need from one certificate, decoded once."""

    subject: str
    issuer: str
    subject_empty: bool
    not_before: datetime.datetime
    not_after: datetime.datetime
    ekus: frozenset[str] | None  # dotted OIDs; None = no EKU extension
    key_usage: frozenset[str] | None  # e.g. {"digital_signature"}; None = no keyUsage extension
    upns: tuple[str, ...]
    pkinit_principals: tuple[str, ...]  # "name/inst@REALM"
    emails: tuple[str, ...]  # rfc822Name SANs, then subject emailAddress
    ski: bytes | None
    key_type: str  # "rsa" | "ec" | other

    def valid_at(self, now: datetime.datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def has_eku(self, oid: ObjectIdentifier) -> bool:
        return self.ekus is not None and oid.dotted_string in self.ekus

    def has_ku(self, name: str) -> bool:
        return self.key_usage is not None and name in self.key_usage


KEY_USAGE_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _utf8_string(der: bytes, what: str) -> str:
    try:
        element = tlv.decode_one(der, 0x0C)
        return element.value.decode("utf-8")
    except (tlv.TLVError, UnicodeDecodeError) as error:
        raise CertificateFormatError(f"{what}: not a UTF8String ({error})") from error


def decode_krb5_principal_name(der: bytes) -> str:
    """KRB5PrincipalName DER → "comp1/comp2@REALM" (RFC 4556 §3.2.2)."""
    try:
        sequence = tlv.decode_one(der, 0x30)
        fields = {child.tag: child for child in sequence.children()}
        realm = tlv.decode_one(fields[0xA0].value).value.decode("utf-8")
        principal = {child.tag: child for child in tlv.decode_one(fields[0xA1].value, 0x30).children()}
        names = tlv.decode_one(principal[0xA1].value, 0x30).children()
        components = [name.value.decode("utf-8") for name in names]
    except (tlv.TLVError, KeyError, UnicodeDecodeError) as error:
        raise CertificateFormatError(f"id-pkinit-san: not a KRB5PrincipalName ({error})") from error
    return "/".join(components) + "@" + realm


def encode_krb5_principal_name(principal: str) -> bytes:
    """ "name/inst@REALM" → KRB5PrincipalName DER, name-type KRB5-NT-PRINCIPAL."""
    name, _, realm = principal.rpartition("@")
    if not name or not realm:
        raise ValueError(f"Kerberos principal {principal!r} must be name@REALM")
    components = b"".join(tlv.encode(0x1B, part.encode("utf-8")) for part in name.split("/"))
    principal_name = tlv.encode(
        0x30,
        tlv.encode(0xA0, tlv.encode(0x02, bytes([KRB5_NT_PRINCIPAL])))
        + tlv.encode(0xA1, tlv.encode(0x30, components)),
    )
    return tlv.encode(
        0x30, tlv.encode(0xA0, tlv.encode(0x1B, realm.encode("utf-8"))) + tlv.encode(0xA1, principal_name)
    )


def encode_upn(upn: str) -> bytes:
    return tlv.encode(0x0C, upn.encode("utf-8"))


def facts(certificate: x509.Certificate) -> CertFacts:
    """Decode the sign-in relevant facts; CertificateFormatError names a malformed otherName."""
    extensions = certificate.extensions
    ekus: frozenset[str] | None = None
    key_usage: frozenset[str] | None = None
    upns: list[str] = []
    principals: list[str] = []
    emails: list[str] = []
    ski: bytes | None = None
    try:
        eku_ext = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ekus = frozenset(oid.dotted_string for oid in eku_ext)
    except x509.ExtensionNotFound:
        pass
    try:
        ku = extensions.get_extension_for_class(x509.KeyUsage).value
        key_usage = frozenset(name for name in KEY_USAGE_NAMES if getattr(ku, name))
    except x509.ExtensionNotFound:
        pass
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == OID_UPN:
                upns.append(_utf8_string(other.value, "UPN otherName"))
            elif other.type_id == OID_PKINIT_SAN:
                principals.append(decode_krb5_principal_name(other.value))
        emails.extend(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    emails.extend(
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    )
    with contextlib.suppress(x509.ExtensionNotFound):
        ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    public_key = certificate.public_key()
    key_type = (
        "rsa"
        if isinstance(public_key, rsa.RSAPublicKey)
        else "ec"
        if isinstance(public_key, ec.EllipticCurvePublicKey)
        else type(public_key).__name__
    )
    return CertFacts(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        subject_empty=len(certificate.subject) == 0,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        ekus=ekus,
        key_usage=key_usage,
        upns=tuple(upns),
        pkinit_principals=tuple(principals),
        emails=tuple(emails),
        ski=ski,
        key_type=key_type,
    )
