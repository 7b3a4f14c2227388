"""CMS SignedData (RFC 5652) as PKINIT uses it: the client's signed AuthPack, the KDC's signed DH reply.

asn1crypto's `cms` module holds the schemas; signatures are made by a `Signer` (for the
sign-in, the card through the minidriver layer) and checked with `cryptography`.
Signed attributes are always present on what we sign (content-type and message-digest,
RFC 5652 §5.3), as Windows' PKINIT client sends them; the signature covers their DER
encoding as a SET OF (RFC 5652 §5.4).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from asn1crypto import cms
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..certinfo import EKU_PKINIT_KDC

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class CmsError(Exception):
    """A SignedData that cannot be built or does not verify; the message says which check failed."""


class Signer(Protocol):
    """Whoever holds the private key of `certificate`: signs SHA-256 of `data`, X.509 signature form."""

    certificate: x509.Certificate

    @property
    def signature_algorithm(self) -> str:
        """asn1crypto's name: "sha256_rsa" or "sha256_ecdsa"."""
        ...

    def sign(self, data: bytes) -> bytes: ...


def digest(name: str, data: bytes) -> bytes:
    algorithm = HASHES.get(name)
    if algorithm is None:
        raise CmsError(f"digest algorithm {name} is not supported")
    hasher = hashes.Hash(algorithm())
    hasher.update(data)
    return hasher.finalize()


def sign(content_type: str, content: bytes, signer: Signer) -> bytes:
    """ContentInfo(SignedData) over `content`, signer identified by issuer and serial number."""
    certificate = cms.Certificate.load(signer.certificate.public_bytes(serialization.Encoding.DER))
    attributes = cms.CMSAttributes(
        [
            {"type": "content_type", "values": [content_type]},
            {"type": "message_digest", "values": [digest("sha256", content)]},
        ]
    )
    signature = signer.sign(attributes.dump())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                "issuer_and_serial_number",
                cms.IssuerAndSerialNumber(
                    {"issuer": certificate.issuer, "serial_number": certificate.serial_number}
                ),
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": signer.signature_algorithm},
            "signature": signature,
        }
    )
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {
                "content_type": content_type,
                "content": asn1_core.ParsableOctetString(content),
            },
            "certificates": [certificate],
            "signer_infos": [signer_info],
        }
    )
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return der


def open_enveloped(der: bytes, decrypt_key: Callable[[bytes], bytes]) -> tuple[str, bytes]:
    """EnvelopedData to one key-transport recipient (RFC 5652 §6): (inner content type, content).

    `decrypt_key` turns the RSA-encrypted content-encryption key into the key (on the card:
    CardRSADecrypt with PKCS#1 v1.5 padding). AES-CBC and 3DES-CBC content encryption.
    """
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "enveloped_data":
            raise CmsError(f"content type {info['content_type'].dotted}, expected enveloped-data")
        enveloped = info["content"]
        recipients = list(enveloped["recipient_infos"])
        encrypted = enveloped["encrypted_content_info"]
        algorithm = encrypted["content_encryption_algorithm"]
        cipher_name = algorithm.encryption_cipher
        iv = algorithm.encryption_iv
        content_type = encrypted["content_type"].dotted
        ciphertext = encrypted["encrypted_content"].native
    except (ValueError, TypeError, KeyError) as error:
        raise CmsError(f"not a well-formed CMS EnvelopedData ({error})") from None
    if len(recipients) != 1 or recipients[0].name != "ktri":
        raise CmsError("EnvelopedData: expected exactly one key-transport recipient")
    ktri = recipients[0].chosen
    if ktri["key_encryption_algorithm"]["algorithm"].native != "rsaes_pkcs1v15":
        raise CmsError(
            f"key encryption {ktri['key_encryption_algorithm']['algorithm'].native} is not supported"
        )
    key = decrypt_key(ktri["encrypted_key"].native)
    cipher: algorithms.AES | TripleDES
    if cipher_name == "aes":
        cipher = algorithms.AES(key)
    elif cipher_name == "tripledes":
        cipher = TripleDES(key)
    else:
        raise CmsError(f"content encryption {algorithm['algorithm'].native} is not supported")
    if not ciphertext or len(ciphertext) % (cipher.block_size // 8):
        raise CmsError("EnvelopedData: encrypted content is not whole blocks")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    try:
        content = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CmsError("EnvelopedData: bad padding (wrong key)") from None
    return content_type, content


def as_content_info(signed_data: bytes) -> bytes:
    """A bare SignedData (as EnvelopedData carries it, RFC 4556 §3.2.3.2) wrapped in a ContentInfo."""
    try:
        inner = cms.SignedData.load(signed_data)
        der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": inner}).dump()
    except (ValueError, TypeError) as error:
        raise CmsError(f"not a well-formed CMS SignedData ({error})") from None
    return der


@dataclass(frozen=True)
class Verified:
    content: bytes
    signer: x509.Certificate


def verify(
    der: bytes,
    content_type: str,
    anchors: list[x509.Certificate],
    now: datetime.datetime,
    required_eku: x509.ObjectIdentifier | None = EKU_PKINIT_KDC,
) -> Verified:
    """Check a SignedData: content type, signer's signature, signer certificate issued by an anchor."""
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            raise CmsError(f"content type {info['content_type'].dotted}, expected signed-data")
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].dotted != content_type:
            raise CmsError(
                f"encapsulated content type {encap['content_type'].dotted}, expected {content_type}"
            )
        content = encap["content"].contents if encap["content"].native is not None else b""
        signer_infos = list(signed["signer_infos"])
        certificates = [
            x509.load_der_x509_certificate(choice.chosen.dump()) for choice in signed["certificates"] or []
        ]
    except (ValueError, TypeError, KeyError) as error:
        raise CmsError(f"not a well-formed CMS SignedData ({error})") from None
    if len(signer_infos) != 1:
        raise CmsError(f"{len(signer_infos)} signers, expected exactly one")
    signer_info = signer_infos[0]
    signer = _signer_certificate(signer_info, certificates)
    _check_signature(signer_info, signer, content)
    _check_path(signer, anchors, now, required_eku)
    return Verified(content, signer)


def _signer_certificate(
    signer_info: cms.SignerInfo, certificates: list[x509.Certificate]
) -> x509.Certificate:
    sid = signer_info["sid"]
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                certificate.serial_number == wanted["serial_number"].native
                and certificate.issuer.public_bytes() == wanted["issuer"].dump()
            ):
                return certificate
        else:
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.chosen.native:
                return certificate
    raise CmsError("the signer's certificate is not in the SignedData")


def _check_signature(signer_info: cms.SignerInfo, signer: x509.Certificate, content: bytes) -> None:
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    signed_attrs = signer_info["signed_attrs"]
    if signed_attrs.native is not None and len(signed_attrs):
        values = {attribute["type"].native: attribute["values"] for attribute in signed_attrs}
        if "message_digest" not in values or values["message_digest"][0].native != digest(
            digest_name, content
        ):
            raise CmsError("the message-digest attribute does not match the content")
        to_verify = cms.CMSAttributes(list(signed_attrs)).dump()
    else:
        to_verify = content
    algorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    hash_algorithm = HASHES.get(digest_name)
    if hash_algorithm is None:
        raise CmsError(f"digest algorithm {digest_name} is not supported")
    key = signer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey) and algorithm.signature_algo == "rsassa_pkcs1v15":
            key.verify(signature, to_verify, padding.PKCS1v15(), hash_algorithm())
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm.signature_algo == "ecdsa":
            key.verify(signature, to_verify, ec.ECDSA(hash_algorithm()))
        else:
            raise CmsError(
                f"signature algorithm {algorithm['algorithm'].native} with this key is not supported"
            )
    except InvalidSignature:
        raise CmsError(f"the signature by {signer.subject.rfc4514_string()} does not verify") from None


def _check_path(
    signer: x509.Certificate,
    anchors: list[x509.Certificate],
    now: datetime.datetime,
    required_eku: x509.ObjectIdentifier | None,
) -> None:
    name = signer.subject.rfc4514_string()
    for anchor in anchors:
        if anchor.subject != signer.issuer:
            continue
        try:
            signer.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        break
    else:
        raise CmsError(f"{name} is not issued by a trusted anchor")
    if not signer.not_valid_before_utc <= now <= signer.not_valid_after_utc:
        raise CmsError(f"{name} is not valid at {now.isoformat()}")
    if required_eku is not None:
        try:
            ekus = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            raise CmsError(f"{name} has no EKU; expected {required_eku.dotted_string}") from None
        if required_eku not in ekus:
            raise CmsError(f"{name} lacks the EKU {required_eku.dotted_string}")
