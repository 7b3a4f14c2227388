"""Host-side helpers for the PIV integration tests: a PC/SC connection (vcard.host) that chains like a
client, and a self-signed certificate made with a key that stays on the card.

yubico-piv-tool 2.2.0 linked with OpenSSL 3 (Debian 12) cannot run `selfsign-certificate`
or `request-certificate`: it installs its card-backed RSA/EC method after wrapping the key in
an EVP_PKEY, which OpenSSL 3 ignores (Yubico/yubico-piv-tool#388, openssl/openssl#15350), so the
tool fails before sending anything to the card. `selfsigned_certificate` does the same job
through the card: the to-be-signed part is built by `cryptography`, the signature comes from
GENERAL AUTHENTICATE.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from vcard import tlv
from vcard.apdu import CommandAPDU, ResponseAPDU
from vcard.host import Disposition, PcscConnection, SmartCardProtocol

PIV_AID = bytes.fromhex("A000000308000010000100")
READER = "Virtual PCD 00 00"
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


class PcscCard:
    """A PC/SC connection to the virtual reader through the host APDU stack (chaining both ways).

    Closing powers the card down, as pyscard's own default disconnect does, so the next
    client starts with a fresh card session.
    """

    def __init__(self, reader_name: str = READER) -> None:
        self.connection = PcscConnection(reader_name, disposition=Disposition.UNPOWER_CARD)
        self.protocol = SmartCardProtocol(self.connection)

    def close(self) -> None:
        self.connection.close()

    def raw(self, apdu: bytes) -> ResponseAPDU:
        return self.protocol.exchange(apdu)

    def send(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", ne: int | None = 256
    ) -> ResponseAPDU:
        return self.protocol.transmit(CommandAPDU(cla, ins, p1, p2, data, ne))

    def select(self) -> ResponseAPDU:
        return self.send(0x00, 0xA4, 0x04, 0x00, PIV_AID)

    def verify(self, pin: str = "123456") -> int:
        return self.send(0x00, 0x20, 0x00, 0x80, pin.encode().ljust(8, b"\xff"), ne=None).sw

    def general_authenticate(self, algorithm: int, slot: int, tag: int, data: bytes) -> ResponseAPDU:
        body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(tag, data)])
        return self.send(0x00, 0x87, algorithm, slot, body)


def card_sign(card: PcscCard, algorithm: int, slot: int, public_key: object, message: bytes) -> bytes:
    """SHA-256 signature made by the card (PIN verified just before, for PIN-always slots)."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(message)
    hashed = digest.finalize()
    if isinstance(public_key, rsa.RSAPublicKey):
        size = public_key.key_size // 8
        payload = SHA256_DIGEST_INFO + hashed
        block = b"\x00\x01" + b"\xff" * (size - len(payload) - 3) + b"\x00" + payload
        data = block
    else:
        data = hashed
    assert card.verify() == 0x9000
    response = card.general_authenticate(algorithm, slot, 0x81, data)
    assert response.sw == 0x9000, f"GENERAL AUTHENTICATE answered {response.sw:04X}"
    signature = tlv.find(response.data, 0x7C, 0x82)
    assert signature is not None
    return signature


def selfsigned_certificate(
    card: PcscCard, algorithm: int, slot: int, public_pem: bytes, subject: str
) -> bytes:
    """A self-signed certificate (PEM) for the card key whose public key is `public_pem`."""
    public_key = serialization.load_pem_public_key(public_pem)
    stand_in: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if isinstance(public_key, rsa.RSAPublicKey):
        stand_in = rsa.generate_private_key(65537, public_key.key_size)
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        stand_in = ec.generate_private_key(public_key.curve)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    draft = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(stand_in, hashes.SHA256())
    )
    signature = card_sign(card, algorithm, slot, public_key, draft.tbs_certificate_bytes)
    algorithm_identifier = tlv.decode(tlv.decode_one(draft.public_bytes(serialization.Encoding.DER)).value)[1]
    der = tlv.encode(
        0x30,
        [draft.tbs_certificate_bytes, algorithm_identifier.encode(), tlv.encode(0x03, b"\x00" + signature)],
    )
    certificate = x509.load_der_x509_certificate(der)
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(
            certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256()
        )
    else:
        public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


def authenticate_3des(card: PcscCard, key: bytes) -> None:
    """9B mutual authentication with a 3DES management key (SP 800-73 Part 2 Appendix A.1)."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    first = card.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028000"))
    witness_encrypted = tlv.find(first.data, 0x7C, 0x80)
    assert first.sw == 0x9000 and witness_encrypted is not None, f"{first.sw:04X}"
    cipher = Cipher(TripleDES(key), modes.ECB())
    decryptor = cipher.decryptor()
    witness = decryptor.update(witness_encrypted) + decryptor.finalize()
    challenge = bytes(range(8))
    body = [tlv.encode(0x80, witness), tlv.encode(0x81, challenge), tlv.encode(0x82, b"")]
    second = card.send(0x00, 0x87, 0x03, 0x9B, tlv.encode(0x7C, body))
    encryptor = cipher.encryptor()
    assert second.sw == 0x9000, f"{second.sw:04X}"
    assert tlv.find(second.data, 0x7C, 0x82) == encryptor.update(challenge) + encryptor.finalize()


def generate_on_card(card: PcscCard, slot: int, algorithm: int) -> bytes:
    """GENERATE ASYMMETRIC KEY PAIR (9B authenticated before); the public key as PEM."""
    response = card.send(0x00, 0x47, 0x00, slot, tlv.encode(0xAC, tlv.encode(0x80, bytes([algorithm]))))
    assert response.sw == 0x9000, f"GENERATE answered {response.sw:04X}"
    template = tlv.to_dict(tlv.decode_one(response.data, 0x7F49).value)
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if 0x81 in template:
        public = rsa.RSAPublicNumbers(
            int.from_bytes(template[0x82], "big"), int.from_bytes(template[0x81], "big")
        ).public_key()
    else:
        curve = ec.SECP256R1() if algorithm == 0x11 else ec.SECP384R1()
        public = ec.EllipticCurvePublicKey.from_encoded_point(curve, template[0x86])
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def provision_over_apdus(card: PcscCard, management_key: bytes, slots: dict[int, int]) -> None:
    """Keys and self-signed certificates in `slots` (slot -> algorithm) with no vendor command.

    For cards that middleware sees as generic PIV: OpenSC's piv-tool -G fails with OpenSSL 3
    ("gen_key unable to gen"), yubico-piv-tool needs GET VERSION. Certificates go where
    SP 800-73-4 Part 1 Table 3 puts them (70 cert, 71 00, FE).
    """
    containers = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
    assert card.select().sw == 0x9000
    authenticate_3des(card, management_key)
    publics = {slot: generate_on_card(card, slot, algorithm) for slot, algorithm in slots.items()}
    for slot, algorithm in slots.items():
        pem = selfsigned_certificate(card, algorithm, slot, publics[slot], f"vcard {slot:02x}")
        der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        container = tlv.encode(0x70, der) + tlv.encode(0x71, b"\x00") + tlv.encode(0xFE, b"")
        tag = containers[slot].to_bytes(3, "big")
        put = tlv.encode(0x5C, tag) + tlv.encode(0x53, container)
        response = card.send(0x00, 0xDB, 0x3F, 0xFF, put, ne=None)
        assert response.sw == 0x9000, f"PUT DATA answered {response.sw:04X}"
