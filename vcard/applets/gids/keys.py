"""Asymmetric key operations of GIDS key EFs, on top of `vcard.crypto`.

The card pads for RSASSA-PKCS1-v1_5 (algorithm nibble 5x) and strips
RSAES-PKCS1-v1_5 / OAEP padding on decipher (4x / 8x); raw variants (1x sign,
0x decipher) work on a block the host formatted. ECC keys (P-256/384/521) sign
a host-computed digest (ECDSA, answered as r||s, the Windows CNG form) and
"decipher" a peer point into an ECDH shared secret; OpenSC never uses them,
other hosts may.

Private keys are stored as PKCS#8 PEM in the key EF's JSON record and never
leave the card: only the public part is ever encoded into a response. The PEM is
the key's only bookkeeping: an imported key and a generated one of the same kind
are indistinguishable to MSE, PSO and GET DATA 7F49.

Key import (PUT DATA 3FFF `70 {84 01 kk, A5 {83 type, 84 00, 87 value}}`):
RSA is what OpenSC and the Windows minidriver send (`83 01 02`, PKCS#1
RSAPrivateKey in `87`). No client defines an ECC import: OpenSC 0.23's
`gids_import_key` refuses anything but RSA ("GIDS supports RSA keys only (but
may support ECC one day)"), GidsApplet knows key types 01 (symmetric) and 02
(RSA) only, and msclmd has no GIDS ECC at all. vcard therefore accepts the ECC
counterpart of the RSA form: `83 01 03`, `84 01 00`, `87 {SEC1/RFC 5915
ECPrivateKey}`, i.e. the DER structure OpenSSL writes for "EC PRIVATE KEY" —
version 1, the scalar as a fixed-length OCTET STRING, optionally `[0]` the named
curve and `[1]` the public point, which must match the scalar.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ... import crypto, tlv
from ...apdu import SW, ISOError
from .constants import (
    ALG_KIND,
    CRT_CONFIDENTIALITY,
    CRT_SIGNATURE,
    TAG_EC_POINT,
    TAG_EXPONENT,
    TAG_KEY_TYPE,
    TAG_KEY_VALUE,
    TAG_MODULUS,
    TAG_PUBLIC_KEY,
    TAG_WRAPPING_KEY,
    Padding,
)
from .filesystem import Crt

KEY_TYPE_RSA = 0x02
KEY_TYPE_ECC = 0x03
"""vcard's key type for ECC imports: 01 (symmetric) and 02 (RSA) are GidsApplet's, no client sends ECC."""
PKCS1_SIGN_OVERHEAD = 11
DER_SEQUENCE = 0x30
DER_INTEGER = 0x02
DER_BIT_STRING = 0x03
DER_OCTET_STRING = 0x04
DER_OID = 0x06
EC_PRIVATE_KEY_VERSION = b"\x01"
TAG_EC_PARAMETERS = 0xA0
TAG_EC_PUBLIC_KEY = 0xA1
EC_KIND_BY_SCALAR_LENGTH = {32: "p256", 48: "p384", 66: "p521"}
"""RFC 5915: the scalar is ceil(log2(n)/8) bytes, so its length alone names the curve."""
CURVE_OIDS = {
    "p256": bytes.fromhex("2A8648CE3D030107"),  # 1.2.840.10045.3.1.7 prime256v1
    "p384": bytes.fromhex("2B81040022"),  # 1.3.132.0.34 secp384r1
    "p521": bytes.fromhex("2B81040023"),  # 1.3.132.0.35 secp521r1
}
ECC_SIZES = frozenset(alg for alg, kind in ALG_KIND.items() if kind in CURVE_OIDS)


def generate(algorithm: int) -> crypto.PrivateKey:
    """A new key for a size nibble (06..09 RSA, 0C..0E ECC); 6A81 for anything else."""
    kind = ALG_KIND.get(algorithm & 0x0F)
    if kind is None or algorithm & 0xF0:
        raise ISOError(SW.FUNCTION_NOT_SUPPORTED, f"algorithm {algorithm:02X} cannot be generated")
    return crypto.generate_private_key(kind)


def size_nibble(key: crypto.PrivateKey) -> int:
    """The algorithm identifier (size nibble) that names this key's type."""
    kind = crypto.key_kind(key)
    for alg, name in ALG_KIND.items():
        if name == kind:
            return alg
    raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"key kind {kind} has no GIDS identifier")


def public_template(key: crypto.PrivateKey) -> bytes:
    """`7F49 {81 modulus, 82 exponent}` (RSA) or `7F49 {86 04||X||Y}` (ECC)."""
    if isinstance(key, rsa.RSAPrivateKey):
        n, e = crypto.rsa_public_numbers(key)
        modulus = n.to_bytes(crypto.modulus_length(key), "big")
        exponent = e.to_bytes((e.bit_length() + 7) // 8, "big")
        return tlv.encode(
            TAG_PUBLIC_KEY, [tlv.encode(TAG_MODULUS, modulus), tlv.encode(TAG_EXPONENT, exponent)]
        )
    return tlv.encode(TAG_PUBLIC_KEY, [tlv.encode(TAG_EC_POINT, crypto.public_point(key))])


def _integers(sequence: bytes) -> list[int]:
    items = tlv.decode(sequence)
    if any(item.tag != DER_INTEGER or not item.value for item in items):
        raise ISOError(SW.INCORRECT_DATA, "RSAPrivateKey: INTEGERs expected")
    return [int.from_bytes(item.value, "big", signed=False) for item in items]


def declared_sizes(crts: Iterable[Crt]) -> set[int]:
    """Size nibbles a key EF's sign/decipher CRTs name (0 = "any", OpenSC's fallback, is left out)."""
    return {crt.algorithm & 0x0F for crt in crts if crt.tag in (CRT_SIGNATURE, CRT_CONFIDENTIALITY)} - {0}


def import_private_key(key_value_template: bytes, crts: Iterable[Crt]) -> crypto.PrivateKey:
    """Key from the `A5` of a PUT DATA 3FFF import into a key EF with these CRTs.

    The key type (`83`) chooses RSA (02) or ECC (03); without it the key EF decides
    (ECC if its CRTs name a curve, else RSA, the only type OpenSC and Windows send).
    The key must be of a size the EF's CRTs name, so that MSE/PSO later find the key
    the container promised (6A80 otherwise). Nothing is stored here: the caller
    stores the returned key only once every check passed.
    """
    fields = tlv.to_dict(key_value_template)
    sizes = declared_sizes(crts)
    key_type = fields.get(TAG_KEY_TYPE)
    if key_type is None:
        kind = KEY_TYPE_ECC if sizes & ECC_SIZES else KEY_TYPE_RSA
    else:
        stripped = key_type.lstrip(b"\x00")
        kind = stripped[0] if len(stripped) == 1 else -1
    if kind not in (KEY_TYPE_RSA, KEY_TYPE_ECC):
        raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "only RSA (02) and ECC (03) keys can be imported")
    wrapped = fields.get(TAG_WRAPPING_KEY)
    if wrapped is not None and wrapped.strip(b"\x00"):
        raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "wrapped key import is not supported")
    value = fields.get(TAG_KEY_VALUE)
    if value is None:
        raise ISOError(SW.INCORRECT_DATA, "key value (87) missing")
    if kind == KEY_TYPE_ECC:
        if set(fields) - {TAG_KEY_TYPE, TAG_WRAPPING_KEY, TAG_KEY_VALUE}:
            raise ISOError(SW.INCORRECT_DATA, "unexpected tag in the ECC key value template")
        key = _ec_private_key(value)
    else:
        key = _rsa_private_key(value)
    if sizes and size_nibble(key) not in sizes:
        names = ", ".join(f"{size:02X}" for size in sorted(sizes))
        raise ISOError(SW.INCORRECT_DATA, f"key EF is for algorithm {names}, not {size_nibble(key):02X}")
    return key


def _rsa_private_key(value: bytes) -> crypto.PrivateKey:
    """PKCS#1 RSAPrivateKey (OpenSC, Windows).

    INTEGERs are read as unsigned big-endian numbers, so a missing or extra leading
    zero byte (both occur in the wild) does not matter; the key must be consistent
    (cryptography checks n = p*q and the CRT values) or the import is refused.
    """
    numbers = _integers(tlv.decode_one(value, DER_SEQUENCE).value)
    if len(numbers) != 9 or numbers[0] != 0:
        raise ISOError(SW.INCORRECT_DATA, "RSAPrivateKey version 0 with 8 numbers expected")
    _, n, e, d, p, q, dp, dq, qinv = numbers
    try:
        key = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qinv, rsa.RSAPublicNumbers(e, n)).private_key()
        crypto.key_kind(key)
    except ValueError as error:
        raise ISOError(SW.INCORRECT_DATA, f"inconsistent RSA key: {error}") from None
    return key


def _ec_private_key(value: bytes) -> crypto.PrivateKey:
    """SEC1 ECPrivateKey: `30 {02 01 01, 04 scalar, [A0 {06 curve}], [A1 {03 00 point}]}`, strictly.

    cryptography checks the scalar's range (1 <= d < n); a public point, if sent,
    must be the scalar's (any X9.62 encoding): a host whose point and scalar
    disagree has a broken key, and keeping either half would hide that. Error
    messages never quote key bytes.
    """
    items = tlv.decode_one(value, DER_SEQUENCE).children()
    version_ok = bool(items) and items[0] == (DER_INTEGER, EC_PRIVATE_KEY_VERSION)
    if not version_ok or len(items) < 2 or items[1].tag != DER_OCTET_STRING:
        raise ISOError(SW.INCORRECT_DATA, "ECPrivateKey: version 1 and an OCTET STRING scalar expected")
    scalar = items[1].value
    kind = EC_KIND_BY_SCALAR_LENGTH.get(len(scalar))
    if kind is None:
        raise ISOError(SW.INCORRECT_DATA, f"ECC scalar of {len(scalar)} bytes: 32, 48 or 66 expected")
    optional = items[2:]
    tags = [item.tag for item in optional]
    if tags not in ([], [TAG_EC_PARAMETERS], [TAG_EC_PUBLIC_KEY], [TAG_EC_PARAMETERS, TAG_EC_PUBLIC_KEY]):
        raise ISOError(SW.INCORRECT_DATA, "ECPrivateKey: only [0] parameters and [1] public key may follow")
    point = None
    for item in optional:
        if item.tag == TAG_EC_PARAMETERS:
            if tlv.decode_one(item.value, DER_OID).value != CURVE_OIDS[kind]:
                raise ISOError(SW.INCORRECT_DATA, f"curve parameters do not name {kind}")
        else:
            bits = tlv.decode_one(item.value, DER_BIT_STRING).value
            if len(bits) < 2 or bits[0] != 0:
                raise ISOError(SW.INCORRECT_DATA, "public key BIT STRING malformed")
            point = bits[1:]
    try:
        key = crypto.private_key_from_scalar(kind, scalar)
    except ValueError:
        raise ISOError(SW.INCORRECT_DATA, f"{kind} scalar out of range") from None
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if point is not None:
        try:
            given = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
        except ValueError:
            raise ISOError(SW.INCORRECT_DATA, f"public point is not on {kind}") from None
        if given.public_numbers() != key.public_key().public_numbers():
            raise ISOError(SW.INCORRECT_DATA, "public point does not belong to the scalar")
    return key


class LoadedKey:
    """A key EF's key object, parsed from `pem`, with what its signatures need prepared once.

    Parsing a PEM checks the key (milliseconds); the applet keeps one of these per key
    EF while the EF holds the same PEM. `rsa` binds the RSA operations (type and
    modulus length checked here, not per signature); it is None for ECC keys.
    """

    __slots__ = ("key", "pem", "rsa")

    def __init__(self, pem: str, key: crypto.PrivateKey | None = None) -> None:
        """`key` is the object already parsed from `pem` (the state check parses every key), else None."""
        self.pem = pem
        self.key = crypto.private_key_from_pem(pem) if key is None else key
        self.rsa = crypto.RsaSigner(self.key) if isinstance(self.key, rsa.RSAPrivateKey) else None


def sign(loaded: LoadedKey, pad: int, data: bytes) -> bytes:
    """PSO COMPUTE DIGITAL SIGNATURE with the MSE padding nibble `pad` (5x or 1x)."""
    signer = loaded.rsa
    if signer is None:
        key = loaded.key
        try:
            r, s = decode_dss_signature(crypto.ecdsa_sign_digest(key, data))
        except ValueError as error:
            raise ISOError(SW.WRONG_LENGTH, str(error)) from None
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    k = signer.length
    try:
        if pad == Padding.PKCS1_SIGN and len(data) < k:
            if len(data) > k - PKCS1_SIGN_OVERHEAD:
                raise ISOError(SW.WRONG_LENGTH, f"{len(data)} bytes cannot be PKCS#1-padded to {k}")
            # EMSA-PKCS1-v1_5 of the host's DigestInfo: the card pads, the host hashed.
            return signer.sign_pkcs1(data)
        if len(data) == k:
            # a host-formatted block ("full SHA off-card", or raw from PKCS#11)
            return signer.sign_block(data)
    except ValueError as error:
        raise ISOError(SW.INCORRECT_DATA, str(error)) from None
    raise ISOError(SW.WRONG_LENGTH, f"raw RSA needs {k} bytes, got {len(data)}")


def decipher(key: crypto.PrivateKey, pad: int, data: bytes) -> bytes:
    """PSO DECIPHER: the whole data field is the cryptogram (no padding-indicator byte).

    A leading 00 padding indicator in front of a modulus-length cryptogram (as
    ISO-style hosts send it) is tolerated and dropped.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        try:
            return crypto.ecdh(key, data)
        except ValueError as error:
            raise ISOError(SW.INCORRECT_DATA, str(error)) from None
    k = crypto.modulus_length(key)
    if len(data) == k + 1 and data[0] == 0x00:
        data = data[1:]
    if len(data) != k:
        raise ISOError(SW.WRONG_LENGTH, f"cryptogram must be {k} bytes, got {len(data)}")
    assert isinstance(key, rsa.RSAPrivateKey)
    try:
        if pad == Padding.PKCS1_DECIPHER:
            return key.decrypt(data, padding.PKCS1v15())
        if pad == Padding.OAEP:
            return key.decrypt(data, padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))
        return crypto.rsa_raw_private(key, data)
    except ValueError:
        raise ISOError(SW.INCORRECT_DATA, "decryption failed") from None
