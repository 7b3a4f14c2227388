"""Enrollment without Windows: a key generated on the card through the minidriver API, then a certificate.

Key generation is CardCreateContainer(CARD_CREATE_CONTAINER_KEY_GEN) on both card types:

- GIDS: the minidriver is writable; the user PIN authorizes the container and the
  certificate file (what the Windows GIDS minidriver needs for an enrollment).
- PIV: the inbox PIV minidriver is read-only (minidriver spec, read-only cards). vcard's
  minidriver layer has an optional, documented write mode (`CardData(piv_writable=True)`,
  docs/minidriver.md "PIV mapping"): after the management-key challenge-response
  (CardGetChallenge + CardAuthenticateChallenge, ROLE_ADMIN), CardCreateContainer
  GENERATEs in the container's slot and CardWriteFile("mscp", "kxcNN") stores the
  certificate object. That is the path used here.

The certificate is then issued by the local test CA (signin/ca.py) for the card's public
key; or, with `csr=True`, a PKCS#10 request signed by the card (CardSignData) is returned
instead, for users with their own CA. `msroots=True` puts the CA certificate into
mscp/msroots as a PKCS#7 certificate bag, as `certutil -scroots update` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from dataclasses import dataclass

from asn1crypto import core as asn1_core
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.serialization import pkcs7

import minidriver as md

from . import ca as ca_module
from .ca import CA, PublicKey
from .card import key_spec_of

KEY_TYPES = {"rsa2048": (md.AT_KEYEXCHANGE, 2048), "p256": (md.AT_ECDSA_P256, 256)}
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")


class EnrollError(Exception):
    """Enrollment failed; the message says at which step and why."""


@dataclass(frozen=True)
class Enrollment:
    container: int
    key_spec: int
    public_key: PublicKey
    certificate: x509.Certificate | None = None  # written to the card
    csr: x509.CertificateSigningRequest | None = None  # instead of a certificate
    file_name: str = ""
    msroots: bool = False


def _step(what: str, error: md.ScardError) -> EnrollError:
    return EnrollError(f"{what}: {error}")


def admin_response(management_key: bytes, challenge: bytes) -> bytes:
    """The minidriver's admin challenge-response: 3DES-ECB encryption of the challenge with the key."""
    if len(management_key) != 24:
        raise EnrollError(f"management key must be 24 bytes (3DES), not {len(management_key)}")
    encryptor = Cipher(TripleDES(management_key), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def public_key_from_info(info: md.CONTAINER_INFO) -> PublicKey:
    blob = md.public_key_of(info)
    if isinstance(blob, md.PUBLICKEYBLOB):
        return rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    curve = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}[blob.bits]
    return ec.EllipticCurvePublicNumbers(blob.x, blob.y, curve).public_key()


def cert_file_name(index: int, key_spec: int) -> str:
    exchange = key_spec in (md.AT_KEYEXCHANGE, *md.ECDHE_KEYSPECS)
    prefix = md.szUSER_KEYEXCHANGE_CERT_PREFIX if exchange else md.szUSER_SIGNATURE_CERT_PREFIX
    return f"{prefix}{index:02d}"


def _write_file(card_data: md.CardData, name: str, data: bytes) -> None:
    """CardCreateFile (an existing file is fine) then CardWriteFile, in mscp."""
    try:
        md.CardCreateFile(
            card_data, md.szBASE_CSP_DIR, name, 0, md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc
        )
    except md.ScardError as error:
        if error.code != md.Scard.ERROR_FILE_EXISTS:
            raise _step(f"CardCreateFile(mscp/{name})", error) from None
    try:
        md.CardWriteFile(card_data, md.szBASE_CSP_DIR, name, 0, data)
    except md.ScardError as error:
        raise _step(f"CardWriteFile(mscp/{name})", error) from None


def _sign_on_card(card_data: md.CardData, index: int, key_spec: int, message: bytes) -> tuple[bytes, str]:
    """CardSignData over SHA-256(message): (signature in X.509 form, signature algorithm name)."""
    digest = hashlib.sha256(message).digest()
    if key_spec in md.ECDSA_KEYSPECS:
        raw = md.CardSignData(card_data, md.CARD_SIGNING_INFO(2, index, key_spec, pbData=digest))
        half = len(raw) // 2
        r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        return encode_dss_signature(r, s), "sha256_ecdsa"
    info = md.CARD_SIGNING_INFO(2, index, key_spec, 0, md.CALG_SHA_256, digest)
    return md.CardSignData(card_data, info)[::-1], "sha256_rsa"  # CryptoAPI order is little-endian


def build_csr(
    card_data: md.CardData, index: int, key_spec: int, public_key: PublicKey, template: str, principal: str
) -> x509.CertificateSigningRequest:
    """PKCS#10 for the card's key with the template's extensions requested, signed by the card."""
    extensions = [
        asn1_x509.Extension(
            {
                "extn_id": extension.oid.dotted_string,
                "critical": critical,
                "extn_value": asn1_core.ParsableOctetString(extension.public_bytes()),
            }
        )
        for extension, critical in ca_module.template_extensions(template, principal)
    ]
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": asn1_x509.Name.load(ca_module.subject_for(principal).public_bytes()),
            "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki),
            "attributes": [{"type": "extension_request", "values": [asn1_x509.Extensions(extensions)]}],
        }
    )
    signature, algorithm = _sign_on_card(card_data, index, key_spec, info.dump())
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": algorithm},
            "signature": signature,
        }
    )
    csr = x509.load_der_x509_csr(request.dump())
    if not csr.is_signature_valid:
        raise EnrollError("the card's signature over the certificate request does not verify")
    return csr


def write_msroots(card_data: md.CardData, roots: list[x509.Certificate]) -> None:
    """mscp/msroots = PKCS#7 certificate bag of the roots (what `certutil -scroots update` writes)."""
    _write_file(
        card_data, md.szROOT_STORE_FILE, pkcs7.serialize_certificates(roots, serialization.Encoding.DER)
    )


def read_msroots(card_data: md.CardData) -> list[x509.Certificate]:
    try:
        data = md.CardReadFile(card_data, md.szBASE_CSP_DIR, md.szROOT_STORE_FILE)
    except md.ScardError as error:
        if error.code == md.Scard.E_FILE_NOT_FOUND:
            return []
        raise
    try:
        return pkcs7.load_der_pkcs7_certificates(data)
    except ValueError as error:
        raise EnrollError(f"mscp/msroots is not a PKCS#7 certificate bag ({error})") from None


def authenticate(
    card_data: md.CardData, applet: str, pin: bytes, management_key: bytes = DEFAULT_MANAGEMENT_KEY
) -> None:
    """What writing needs: PIV the management key (ROLE_ADMIN) and the PIN; GIDS the user PIN."""
    if applet == "piv":
        try:
            challenge = md.CardGetChallenge(card_data)
            md.CardAuthenticateChallenge(card_data, admin_response(management_key, challenge))
        except md.ScardError as error:
            raise _step("management key (CardAuthenticateChallenge)", error) from None
    try:
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
    except md.ScardError as error:
        raise _step("user PIN (CardAuthenticateEx)", error) from None


def generate_key(card_data: md.CardData, container: int, key_type: str) -> tuple[int, PublicKey]:
    """CardCreateContainer(KEY_GEN) (roles already authenticated): the card's key spec and public key."""
    if key_type not in KEY_TYPES:
        raise EnrollError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")
    key_spec, bits = KEY_TYPES[key_type]
    try:
        md.CardCreateContainer(card_data, container, md.CARD_CREATE_CONTAINER_KEY_GEN, key_spec, bits, b"")
        info = md.CardGetContainerInfo(card_data, container)
    except md.ScardError as error:
        raise _step(f"CardCreateContainer({container}, KEY_GEN, {key_type})", error) from None
    # The card's mapping decides the key spec (PIV container 1 is slot 9C, AT_SIGNATURE).
    return key_spec_of(info), public_key_from_info(info)


def write_certificate(
    card_data: md.CardData, container: int, key_spec: int, certificate: x509.Certificate
) -> str:
    """Store the container's certificate (mscp/kxcNN or kscNN); returns the file name."""
    name = cert_file_name(container, key_spec)
    _write_file(card_data, name, certificate.public_bytes(serialization.Encoding.DER))
    return f"{md.szBASE_CSP_DIR}/{name}"


def enroll(
    card_data: md.CardData,
    applet: str,
    principal: str,
    template: str,
    pin: bytes,
    ca: CA | None = None,
    container: int = 0,
    key_type: str = "rsa2048",
    csr: bool = False,
    msroots: bool = False,
    management_key: bytes = DEFAULT_MANAGEMENT_KEY,
    days: int = 365,
) -> Enrollment:
    """Generate a key in `container`, then write a CA-issued certificate (or return a CSR)."""
    if key_type not in KEY_TYPES:
        raise EnrollError(f"key type {key_type!r}: expected one of {', '.join(KEY_TYPES)}")
    if not csr and ca is None:
        raise EnrollError("a certificate needs a CA (--ca DIR), or ask for --csr")
    if msroots and ca is None:
        raise EnrollError("--msroots needs the CA (--ca DIR) whose root goes onto the card")
    if msroots and applet == "piv":
        raise EnrollError("PIV has no mscp/msroots (the PIV minidriver stores only slot certificates)")
    ca_module.template_extensions(template, principal)  # validates template and user before touching the card
    with card_data.transaction():
        authenticate(card_data, applet, pin, management_key)
        try:
            result = _enroll_authenticated(
                card_data, principal, template, ca, container, key_type, csr, msroots, days
            )
        finally:  # also after a failure: leave no role authenticated for the next client
            with contextlib.suppress(md.ScardError):
                md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    return result


def _enroll_authenticated(
    card_data: md.CardData,
    principal: str,
    template: str,
    ca: CA | None,
    container: int,
    key_type: str,
    csr: bool,
    msroots: bool,
    days: int,
) -> Enrollment:
    key_spec, public_key = generate_key(card_data, container, key_type)
    if csr:
        try:
            request = build_csr(card_data, container, key_spec, public_key, template, principal)
        except md.ScardError as error:
            raise _step("CardSignData (certificate request)", error) from None
        result = Enrollment(container, key_spec, public_key, csr=request)
    else:
        assert ca is not None
        certificate = ca_module.issue_user(ca, public_key, template, principal, days)
        file_name = write_certificate(card_data, container, key_spec, certificate)
        result = Enrollment(container, key_spec, public_key, certificate=certificate, file_name=file_name)
    if msroots and ca is not None:
        roots = [root for root in read_msroots(card_data) if root != ca.certificate]
        write_msroots(card_data, [*roots, ca.certificate])
        result = dataclasses.replace(result, msroots=True)
    return result
