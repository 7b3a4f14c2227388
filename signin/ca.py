"""A local test CA in a directory, and the certificate templates of each sign-in target.

Directory layout (created by `vcard ca init`, mode 0700): `ca.crt` (PEM) and
`ca.key` (PEM, unencrypted, mode 0600: a test CA for a lab, not a production one).
An existing CA is never overwritten.

Templates (what each sign-in system needs; see docs/signin.md):

- windows: UPN otherName SAN, EKUs smart-card logon + clientAuth, keyUsage
  digitalSignature + keyEncipherment, HTTP CRL distribution point (Microsoft
  "Certificate Requirements and Enumeration", smart-card root requirements);
- mit: id-pkinit-san principal, EKU id-pkinit-KPClientAuth (RFC 4556 §3.2.2, §3.2.4);
- both: all of the above (UPN + id-pkinit-san, the three EKUs).
The KDC certificate: EKU id-pkinit-KPKdc, id-pkinit-san krbtgt/REALM@REALM (RFC 4556 §3.2.4).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import certinfo

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
DEFAULT_CRL_URL = "http://ca.vcard.test/vcard-test-ca.crl"
TEMPLATES = ("windows", "mit", "both")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class CAError(Exception):
    """A CA directory problem; the message names the file and what is wrong."""


@dataclass(frozen=True)
class CA:
    directory: Path
    certificate: x509.Certificate
    key: PrivateKey
    crl_url: str = DEFAULT_CRL_URL

    @property
    def certificate_path(self) -> Path:
        return self.directory / CA_CERT

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa2048":
        return rsa.generate_private_key(65537, 2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise CAError(f"key type {kind!r}: expected rsa2048 or p256")


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def init_ca(directory: Path, name: str = "vcard test CA", key_type: str = "rsa2048", days: int = 3650) -> CA:
    """Create a CA in `directory` (made 0700); refuses a directory that already holds one."""
    for existing in (CA_CERT, CA_KEY):
        if (directory / existing).exists():
            raise CAError(f"{directory / existing}: a CA already exists here; not overwriting it")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_crl_points(DEFAULT_CRL_URL), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        directory / CA_KEY,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    (directory / CA_CERT).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return CA(directory, certificate, key)


def load_ca(directory: Path) -> CA:
    """Read a CA directory; every problem is a CAError naming the file."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        raise CAError(
            f"{cert_path}: no CA certificate (create one with `vcard ca init {directory}`)"
        ) from None
    except ValueError as error:
        raise CAError(f"{cert_path}: not a PEM certificate ({error})") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise CAError(f"{key_path}: no CA key") from None
    except (ValueError, TypeError) as error:
        raise CAError(f"{key_path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CAError(f"{key_path}: unsupported key type {type(key).__name__}")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise CAError(f"{key_path}: does not match {cert_path}")
    return CA(directory, certificate, key)


def _crl_points(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def _key_usage(digital_signature: bool = True, key_encipherment: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature, False, key_encipherment, False, False, False, False, False, False)


def subject_for(principal: str) -> x509.Name:
    """CN=user plus the realm as DC components (Windows resolves the domain from them)."""
    user, _, realm = principal.rpartition("@")
    attributes = [
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, part)
        for part in reversed(realm.lower().split("."))
        if part
    ]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, user.split("/")[0] or principal)])


def template_extensions(template: str, principal: str) -> list[tuple[x509.ExtensionType, bool]]:
    """The SAN, EKU and key usage extensions of a template (the CA adds CRL DP, SKI, AKI)."""
    if template not in TEMPLATES:
        raise CAError(f"template {template!r}: expected one of {', '.join(TEMPLATES)}")
    if "@" not in principal:
        raise CAError(f"user {principal!r}: expected user@REALM")
    names: list[x509.GeneralName] = []
    ekus: list[x509.ObjectIdentifier] = []
    if template in ("windows", "both"):
        names.append(x509.OtherName(certinfo.OID_UPN, certinfo.encode_upn(principal)))
        ekus.append(certinfo.EKU_SMARTCARD_LOGON)
    if template in ("mit", "both"):
        names.append(x509.OtherName(certinfo.OID_PKINIT_SAN, certinfo.encode_krb5_principal_name(principal)))
        ekus.append(certinfo.EKU_PKINIT_CLIENT_AUTH)
    if template in ("windows", "both"):
        ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return [
        (x509.SubjectAlternativeName(names), False),
        (x509.ExtendedKeyUsage(ekus), False),
        (_key_usage(), True),
    ]


def issue(
    ca: CA,
    public_key: PublicKey,
    subject: x509.Name,
    extensions: list[tuple[x509.ExtensionType, bool]],
    days: int = 365,
    not_before: datetime.datetime | None = None,
) -> x509.Certificate:
    """Sign a certificate for `public_key` with the CA (adds SKI, AKI and the CRL distribution point)."""
    start = not_before or _now() - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(_crl_points(ca.crl_url), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca.key, hashes.SHA256())


def issue_user(
    ca: CA, public_key: PublicKey, template: str, principal: str, days: int = 365
) -> x509.Certificate:
    return issue(ca, public_key, subject_for(principal), template_extensions(template, principal), days)


def issue_kdc(ca: CA, realm: str, days: int = 365) -> tuple[x509.Certificate, PrivateKey]:
    """The KDC's certificate and key: EKU id-pkinit-KPKdc, SAN krbtgt/REALM@REALM."""
    key = new_key("rsa2048")
    principal = f"krbtgt/{realm}@{realm}"
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (
            x509.SubjectAlternativeName(
                [x509.OtherName(certinfo.OID_PKINIT_SAN, certinfo.encode_krb5_principal_name(principal))]
            ),
            False,
        ),
        (x509.ExtendedKeyUsage([certinfo.EKU_PKINIT_KDC]), False),
        (_key_usage(), True),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"KDC {realm}")])
    return issue(ca, key.public_key(), subject, extensions, days), key


def certificate_for(public_key: PublicKey, subject: str) -> bytes:
    """A DER certificate for `public_key` from a fresh throwaway issuer: for tests and labs where only
    its presence and size matter (the sign-in rules need `issue` and a real CA)."""
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcard test CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)
