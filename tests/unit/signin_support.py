"""Certificates for the sign-in rule tests: one good Windows logon certificate and variants of it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signin import certinfo

NOW = datetime.datetime(2030, 6, 1, 12, 0, tzinfo=datetime.UTC)
USER = "alice@VCARD.TEST"

_ISSUER_KEY = ec.generate_private_key(ec.SECP256R1())
_RSA_KEY = rsa.generate_private_key(65537, 2048)
_EC_KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rules test CA")])


def clock() -> datetime.datetime:
    return NOW


@dataclass
class Spec:
    """A certificate description; the defaults are a good Windows smart-card logon certificate."""

    subject: str | None = "alice"
    upn: str | None = USER
    pkinit: str | None = None
    email: str | None = None
    ekus: list[x509.ObjectIdentifier] | None = field(
        default_factory=lambda: [certinfo.EKU_SMARTCARD_LOGON, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    digital_signature: bool = True
    key_encipherment: bool = True
    key_usage: bool = True
    ec_key: bool = False
    not_before: datetime.datetime = NOW - datetime.timedelta(days=30)
    not_after: datetime.datetime = NOW + datetime.timedelta(days=300)
    ski: bool = True


def build(spec: Spec) -> x509.Certificate:
    key = _EC_KEY if spec.ec_key else _RSA_KEY
    subject = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.subject)]) if spec.subject else x509.Name([])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ISSUER)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
    )
    names: list[x509.GeneralName] = []
    if spec.upn is not None:
        names.append(x509.OtherName(certinfo.OID_UPN, certinfo.encode_upn(spec.upn)))
    if spec.pkinit is not None:
        names.append(
            x509.OtherName(certinfo.OID_PKINIT_SAN, certinfo.encode_krb5_principal_name(spec.pkinit))
        )
    if spec.email is not None:
        names.append(x509.RFC822Name(spec.email))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not spec.subject)
    if spec.ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(spec.ekus), critical=False)
    if spec.key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                spec.digital_signature, False, spec.key_encipherment, False, False, False, False, False, False
            ),
            critical=True,
        )
    if spec.ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return builder.sign(_ISSUER_KEY, hashes.SHA256())


# The certificate profiles of the kinit measurements (docs/signin.md, MIT table).
WINDOWS_STYLE = Spec()
MIT_STYLE = Spec(upn=None, pkinit=USER, ekus=[certinfo.EKU_PKINIT_CLIENT_AUTH])
BOTH_STYLE = Spec(
    pkinit=USER,
    ekus=[certinfo.EKU_SMARTCARD_LOGON, certinfo.EKU_PKINIT_CLIENT_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
)
NO_DIGITAL_SIGNATURE = Spec(digital_signature=False, ekus=[ExtendedKeyUsageOID.CLIENT_AUTH])
SCLOGIN_ONLY = Spec(key_encipherment=False, ekus=[certinfo.EKU_SMARTCARD_LOGON])
