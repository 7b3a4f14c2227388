"""The AuthPack's signer: the card's key through the minidriver layer (CardSignData), as the Base CSP does.

RSA: PKCS#1 v1.5 over SHA-256 with BCRYPT_PKCS1_PADDING_INFO (the card, or the
minidriver for a raw-RSA card, adds the DigestInfo), result reversed from the
minidriver's little-endian order. ECDSA: the minidriver returns raw r||s, which CMS
wants DER-encoded (RFC 5753 §2.1.1, ECDSA-Sig-Value). The PIN must have been presented
(CardAuthenticatePin) in the same card session.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import minidriver as md


@dataclass
class CardSigner:
    card_data: md.CardData
    container_index: int
    key_spec: int
    certificate: x509.Certificate

    @property
    def signature_algorithm(self) -> str:
        return "sha256_ecdsa" if self.key_spec in md.ECDSA_KEYSPECS else "sha256_rsa"

    def sign(self, data: bytes) -> bytes:
        hasher = hashes.Hash(hashes.SHA256())
        hasher.update(data)
        digest = hasher.finalize()
        if self.key_spec in md.ECDSA_KEYSPECS:
            info = md.CARD_SIGNING_INFO(2, self.container_index, self.key_spec, pbData=digest)
            raw = md.CardSignData(self.card_data, info)
            half = len(raw) // 2
            return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        info = md.CARD_SIGNING_INFO(
            2,
            self.container_index,
            self.key_spec,
            md.CARD_PADDING_INFO_PRESENT,
            0,
            digest,
            pPaddingInfo=md.BCRYPT_PKCS1_PADDING_INFO("SHA256"),
            dwPaddingType=md.CARD_PADDING_PKCS1,
        )
        return md.CardSignData(self.card_data, info)[::-1]


@dataclass
class CardDecryptor:
    """RSA key transport (RFC 4556 §3.2.3.2): the content-encryption key decrypted on the card.

    CardRSADecrypt takes the ciphertext little-endian and, with CARD_RSA_DECRYPT_INFO version 2
    and CARD_PADDING_PKCS1, returns the key with the PKCS#1 v1.5 padding removed.
    """

    card_data: md.CardData
    container_index: int

    def __call__(self, encrypted_key: bytes) -> bytes:
        info = md.CARD_RSA_DECRYPT_INFO(
            2,
            self.container_index,
            md.AT_KEYEXCHANGE,
            encrypted_key[::-1],
            dwPaddingType=md.CARD_PADDING_PKCS1,
        )
        return md.CardRSADecrypt(self.card_data, info)
