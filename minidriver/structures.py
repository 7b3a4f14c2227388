"""Byte-exact encoders for the minidriver structures.

Flat structures (cardcf, cmapfile records, PIN_INFO, the *_INFO results) pack
to exactly the bytes a Windows minidriver stores or returns. Structures that
hold pointers in C (CARD_SIGNING_INFO, CARD_RSA_DECRYPT_INFO, ...) pack to the
C layout for a chosen pointer size (8 = x64, 4 = x86) with natural alignment;
their buffers travel as Python `bytes` and pointer slots get caller-supplied
addresses (0 by default), which is what a C shim or a trace comparison needs.
"""

from __future__ import annotations

import struct
from dataclasses import Field, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .constants import (
    AT_KEYEXCHANGE,
    BCRYPT_ECDH_PRIVATE_P256_MAGIC,
    BCRYPT_ECDH_PRIVATE_P384_MAGIC,
    BCRYPT_ECDH_PRIVATE_P521_MAGIC,
    BCRYPT_ECDH_PUBLIC_P256_MAGIC,
    BCRYPT_ECDH_PUBLIC_P384_MAGIC,
    BCRYPT_ECDH_PUBLIC_P521_MAGIC,
    BCRYPT_ECDSA_PRIVATE_P256_MAGIC,
    BCRYPT_ECDSA_PRIVATE_P384_MAGIC,
    BCRYPT_ECDSA_PRIVATE_P521_MAGIC,
    BCRYPT_ECDSA_PUBLIC_P256_MAGIC,
    BCRYPT_ECDSA_PUBLIC_P384_MAGIC,
    BCRYPT_ECDSA_PUBLIC_P521_MAGIC,
    CALG_RSA_KEYX,
    CALG_RSA_SIGN,
    CARD_CACHE_FILE_CURRENT_VERSION,
    CUR_BLOB_VERSION,
    PIN_CACHE_POLICY_CURRENT_VERSION,
    PIN_INFO_CURRENT_VERSION,
    PRIVATEKEYBLOB_TYPE,
    PUBLICKEYBLOB_TYPE,
    RSA1_MAGIC,
    RSA2_MAGIC,
    PinCachePolicyType,
    PinPurpose,
    PinType,
)


class StructureError(ValueError):
    """Bytes that do not decode as the structure asked for."""


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise StructureError(f"{what}: need {size} bytes, got {len(data)}")


# --- flat structures --------------------------------------------------------------------------


@dataclass
class CARD_CACHE_FILE_FORMAT:
    """cardcf: the freshness counters the Base CSP compares to decide whether its cache is stale.

    Six bytes (`<BBHH`), then one DWORD per additional application listed in cardapps.
    """

    bVersion: int = CARD_CACHE_FILE_CURRENT_VERSION
    bPinsFreshness: int = 0
    wContainersFreshness: int = 0
    wFilesFreshness: int = 0
    extra: tuple[int, ...] = ()

    SIZE: ClassVar[int] = 6

    def pack(self) -> bytes:
        head = struct.pack(
            "<BBHH",
            self.bVersion & 0xFF,
            self.bPinsFreshness & 0xFF,
            self.wContainersFreshness & 0xFFFF,
            self.wFilesFreshness & 0xFFFF,
        )
        return head + b"".join(struct.pack("<I", value & 0xFFFFFFFF) for value in self.extra)

    @classmethod
    def unpack(cls, data: bytes) -> CARD_CACHE_FILE_FORMAT:
        _need(data, cls.SIZE, "CARD_CACHE_FILE_FORMAT")
        version, pins, containers, files = struct.unpack_from("<BBHH", data)
        tail = data[cls.SIZE :]
        extra = tuple(struct.unpack_from("<I", tail, i)[0] for i in range(0, len(tail) - len(tail) % 4, 4))
        return cls(version, pins, containers, files, extra)

    def bumped(
        self, pins: bool = False, containers: bool = False, files: bool = False
    ) -> CARD_CACHE_FILE_FORMAT:
        """The counters after a write of the given kind (counters wrap like the C types do)."""
        return CARD_CACHE_FILE_FORMAT(
            self.bVersion or CARD_CACHE_FILE_CURRENT_VERSION,
            (self.bPinsFreshness + int(pins)) & 0xFF,
            (self.wContainersFreshness + int(containers)) & 0xFFFF,
            (self.wFilesFreshness + int(files)) & 0xFFFF,
            self.extra,
        )


@dataclass
class CONTAINER_MAP_RECORD:
    """One 86-byte cmapfile record: UTF-16LE name in WCHAR[40], flags, key sizes in bits."""

    wszGuid: str = ""
    bFlags: int = 0
    bReserved: int = 0
    wSigKeySizeBits: int = 0
    wKeyExchangeKeySizeBits: int = 0

    SIZE: ClassVar[int] = 86

    def pack(self) -> bytes:
        name = self.wszGuid.encode("utf-16-le")
        if len(name) > 78:
            raise StructureError(f"container name too long ({len(self.wszGuid)} > 39 characters)")
        return struct.pack(
            "<80sBBHH", name, self.bFlags, self.bReserved, self.wSigKeySizeBits, self.wKeyExchangeKeySizeBits
        )

    @classmethod
    def unpack(cls, data: bytes) -> CONTAINER_MAP_RECORD:
        _need(data, cls.SIZE, "CONTAINER_MAP_RECORD")
        raw, flags, reserved, sig, kx = struct.unpack_from("<80sBBHH", data)
        units = [raw[i : i + 2] for i in range(0, 80, 2)]
        end = next((i for i, unit in enumerate(units) if unit == b"\0\0"), 40)
        name = b"".join(units[:end]).decode("utf-16-le", errors="replace")
        return cls(name, flags, reserved, sig, kx)

    @property
    def is_valid(self) -> bool:
        return bool(self.bFlags & 1)


def pack_cmapfile(records: list[CONTAINER_MAP_RECORD]) -> bytes:
    return b"".join(record.pack() for record in records)


def unpack_cmapfile(data: bytes) -> list[CONTAINER_MAP_RECORD]:
    """Records in index order; a trailing partial record is a corrupt file."""
    if len(data) % CONTAINER_MAP_RECORD.SIZE:
        raise StructureError(f"cmapfile length {len(data)} is not a multiple of 86")
    return [CONTAINER_MAP_RECORD.unpack(data[i : i + 86]) for i in range(0, len(data), 86)]


@dataclass
class PIN_CACHE_POLICY:
    dwVersion: int = PIN_CACHE_POLICY_CURRENT_VERSION
    PinCachePolicyType: int = PinCachePolicyType.PinCacheNormal
    dwPinCachePolicyInfo: int = 0


@dataclass
class PIN_INFO:
    """CP_CARD_PIN_INFO value: 9 DWORDs (36 bytes)."""

    dwVersion: int = PIN_INFO_CURRENT_VERSION
    PinType: int = PinType.AlphaNumericPinType
    PinPurpose: int = PinPurpose.AuthenticationPin
    dwChangePermission: int = 0
    dwUnblockPermission: int = 0
    PinCachePolicy: PIN_CACHE_POLICY = field(default_factory=PIN_CACHE_POLICY)
    dwFlags: int = 0

    SIZE: ClassVar[int] = 36

    def pack(self) -> bytes:
        policy = self.PinCachePolicy
        return struct.pack(
            "<9I",
            self.dwVersion,
            int(self.PinType),
            int(self.PinPurpose),
            self.dwChangePermission,
            self.dwUnblockPermission,
            policy.dwVersion,
            int(policy.PinCachePolicyType),
            policy.dwPinCachePolicyInfo,
            self.dwFlags,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PIN_INFO:
        _need(data, cls.SIZE, "PIN_INFO")
        v = struct.unpack_from("<9I", data)
        return cls(
            v[0], PinType(v[1]), PinPurpose(v[2]), v[3], v[4], PIN_CACHE_POLICY(v[5], v[6], v[7]), v[8]
        )


_S = TypeVar("_S", bound="_DwordStruct")


class _DwordStruct:
    """Mixin for a dataclass made only of DWORDs: its fields, in declaration order, are the layout."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # set by @dataclass on each subclass

    def pack(self) -> bytes:
        values = [int(getattr(self, f.name)) & 0xFFFFFFFF for f in fields(self)]
        return struct.pack(f"<{len(values)}I", *values)

    @classmethod
    def unpack(cls: type[_S], data: bytes) -> _S:
        count = len(fields(cls))
        _need(data, 4 * count, cls.__name__)
        return cls(*struct.unpack_from(f"<{count}I", data))


@dataclass
class CARD_CAPABILITIES(_DwordStruct):
    dwVersion: int = 1
    fCertificateCompression: int = 0
    fKeyGen: int = 0


@dataclass
class CARD_FREE_SPACE_INFO(_DwordStruct):
    dwVersion: int = 1
    dwBytesAvailable: int = 0
    dwKeyContainersAvailable: int = 0
    dwMaxKeyContainers: int = 0


@dataclass
class CARD_KEY_SIZES(_DwordStruct):
    dwVersion: int = 1
    dwMinimumBitlen: int = 0
    dwDefaultBitlen: int = 0
    dwMaximumBitlen: int = 0
    dwIncrementalBitlen: int = 0


@dataclass
class CARD_FILE_INFO(_DwordStruct):
    dwVersion: int = 1
    cbFileSize: int = 0
    AccessCondition: int = 0


# --- key blobs --------------------------------------------------------------------------------


@dataclass
class PUBLICKEYBLOB:
    """CAPI RSA public key: BLOBHEADER + RSAPUBKEY + modulus in little-endian byte order.

    `aiKeyAlg` is CALG_RSA_KEYX for a key-exchange key and CALG_RSA_SIGN for a
    signature key (CONTAINER_INFO puts them in separate slots).
    """

    modulus: int
    public_exponent: int = 65537
    bitlen: int = 0
    aiKeyAlg: int = CALG_RSA_KEYX

    def __post_init__(self) -> None:
        if not self.bitlen:
            self.bitlen = self.modulus.bit_length()

    @classmethod
    def for_keyspec(cls, modulus: int, exponent: int, key_spec: int) -> PUBLICKEYBLOB:
        return cls(modulus, exponent, 0, CALG_RSA_KEYX if key_spec == AT_KEYEXCHANGE else CALG_RSA_SIGN)

    def pack(self) -> bytes:
        size = (self.bitlen + 7) // 8
        return (
            struct.pack("<BBHI", PUBLICKEYBLOB_TYPE, CUR_BLOB_VERSION, 0, self.aiKeyAlg)
            + struct.pack("<III", RSA1_MAGIC, self.bitlen, self.public_exponent)
            + self.modulus.to_bytes(size, "little")
        )

    @classmethod
    def unpack(cls, data: bytes) -> PUBLICKEYBLOB:
        _need(data, 20, "PUBLICKEYBLOB")
        btype, version, _reserved, alg = struct.unpack_from("<BBHI", data)
        magic, bitlen, exponent = struct.unpack_from("<III", data, 8)
        if btype != PUBLICKEYBLOB_TYPE or version != CUR_BLOB_VERSION or magic != RSA1_MAGIC:
            raise StructureError(
                f"not an RSA PUBLICKEYBLOB (type {btype}, version {version}, magic {magic:#x})"
            )
        size = (bitlen + 7) // 8
        _need(data, 20 + size, "PUBLICKEYBLOB modulus")
        return cls(int.from_bytes(data[20 : 20 + size], "little"), exponent, bitlen, alg)


@dataclass
class PRIVATEKEYBLOB:
    """CAPI RSA private key (CardCreateContainer import): header, RSAPUBKEY 'RSA2', LE components."""

    n: int
    e: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int
    d: int
    bitlen: int = 0
    aiKeyAlg: int = CALG_RSA_KEYX

    def __post_init__(self) -> None:
        if not self.bitlen:
            self.bitlen = self.n.bit_length()

    def pack(self) -> bytes:
        full = (self.bitlen + 7) // 8
        half = (self.bitlen + 15) // 16
        parts = [
            (self.n, full),
            (self.p, half),
            (self.q, half),
            (self.dp, half),
            (self.dq, half),
            (self.qinv, half),
            (self.d, full),
        ]
        return (
            struct.pack("<BBHI", PRIVATEKEYBLOB_TYPE, CUR_BLOB_VERSION, 0, self.aiKeyAlg)
            + struct.pack("<III", RSA2_MAGIC, self.bitlen, self.e)
            + b"".join(value.to_bytes(size, "little") for value, size in parts)
        )

    @classmethod
    def unpack(cls, data: bytes) -> PRIVATEKEYBLOB:
        _need(data, 20, "PRIVATEKEYBLOB")
        btype, _version, _reserved, alg = struct.unpack_from("<BBHI", data)
        magic, bitlen, exponent = struct.unpack_from("<III", data, 8)
        if btype != PRIVATEKEYBLOB_TYPE or magic != RSA2_MAGIC:
            raise StructureError("not an RSA PRIVATEKEYBLOB")
        full = (bitlen + 7) // 8
        half = (bitlen + 15) // 16
        sizes = [full, half, half, half, half, half, full]
        _need(data, 20 + sum(sizes), "PRIVATEKEYBLOB components")
        values = []
        offset = 20
        for size in sizes:
            values.append(int.from_bytes(data[offset : offset + size], "little"))
            offset += size
        n, p, q, dp, dq, qinv, d = values
        return cls(n, exponent, p, q, dp, dq, qinv, d, bitlen, alg)


ECC_MAGICS: dict[tuple[str, int, bool], int] = {
    ("ecdsa", 256, False): BCRYPT_ECDSA_PUBLIC_P256_MAGIC,
    ("ecdsa", 384, False): BCRYPT_ECDSA_PUBLIC_P384_MAGIC,
    ("ecdsa", 521, False): BCRYPT_ECDSA_PUBLIC_P521_MAGIC,
    ("ecdsa", 256, True): BCRYPT_ECDSA_PRIVATE_P256_MAGIC,
    ("ecdsa", 384, True): BCRYPT_ECDSA_PRIVATE_P384_MAGIC,
    ("ecdsa", 521, True): BCRYPT_ECDSA_PRIVATE_P521_MAGIC,
    ("ecdh", 256, False): BCRYPT_ECDH_PUBLIC_P256_MAGIC,
    ("ecdh", 384, False): BCRYPT_ECDH_PUBLIC_P384_MAGIC,
    ("ecdh", 521, False): BCRYPT_ECDH_PUBLIC_P521_MAGIC,
    ("ecdh", 256, True): BCRYPT_ECDH_PRIVATE_P256_MAGIC,
    ("ecdh", 384, True): BCRYPT_ECDH_PRIVATE_P384_MAGIC,
    ("ecdh", 521, True): BCRYPT_ECDH_PRIVATE_P521_MAGIC,
}
_MAGIC_INFO = {magic: key for key, magic in ECC_MAGICS.items()}


@dataclass
class BCRYPT_ECCKEY_BLOB:
    """CNG EC key: {dwMagic, cbKey} then X, Y (and d for private keys), each cbKey bytes big-endian."""

    dwMagic: int
    x: int
    y: int
    d: int | None = None

    @property
    def bits(self) -> int:
        return _MAGIC_INFO[self.dwMagic][1]

    @property
    def cbKey(self) -> int:
        return (self.bits + 7) // 8

    @classmethod
    def public(cls, usage: str, bits: int, x: int, y: int) -> BCRYPT_ECCKEY_BLOB:
        return cls(ECC_MAGICS[(usage, bits, False)], x, y)

    def pack(self) -> bytes:
        if self.dwMagic not in _MAGIC_INFO:
            raise StructureError(f"unknown BCRYPT_ECCKEY_BLOB magic {self.dwMagic:#x}")
        size = self.cbKey
        body = self.x.to_bytes(size, "big") + self.y.to_bytes(size, "big")
        if _MAGIC_INFO[self.dwMagic][2]:
            if self.d is None:
                raise StructureError("private ECC blob without d")
            body += self.d.to_bytes(size, "big")
        return struct.pack("<II", self.dwMagic, size) + body

    @classmethod
    def unpack(cls, data: bytes) -> BCRYPT_ECCKEY_BLOB:
        _need(data, 8, "BCRYPT_ECCKEY_BLOB")
        magic, size = struct.unpack_from("<II", data)
        if magic not in _MAGIC_INFO:
            raise StructureError(f"unknown BCRYPT_ECCKEY_BLOB magic {magic:#x}")
        private = _MAGIC_INFO[magic][2]
        if size != (_MAGIC_INFO[magic][1] + 7) // 8:
            raise StructureError(f"cbKey {size} does not match the curve of magic {magic:#x}")
        _need(data, 8 + size * (3 if private else 2), "BCRYPT_ECCKEY_BLOB body")
        x = int.from_bytes(data[8 : 8 + size], "big")
        y = int.from_bytes(data[8 + size : 8 + 2 * size], "big")
        d = int.from_bytes(data[8 + 2 * size : 8 + 3 * size], "big") if private else None
        return cls(magic, x, y, d)

    @property
    def usage(self) -> str:
        return _MAGIC_INFO[self.dwMagic][0]


# --- padding infos ----------------------------------------------------------------------------


@dataclass
class BCRYPT_PKCS1_PADDING_INFO:
    pszAlgId: str | None = None


@dataclass
class BCRYPT_PSS_PADDING_INFO:
    pszAlgId: str
    cbSalt: int


@dataclass
class BCRYPT_OAEP_PADDING_INFO:
    pszAlgId: str
    pbLabel: bytes = b""


PaddingInfo = BCRYPT_PKCS1_PADDING_INFO | BCRYPT_PSS_PADDING_INFO | BCRYPT_OAEP_PADDING_INFO


# --- structures with pointers: C layout -------------------------------------------------------

_C_SIZES = {"B": 1, "H": 2, "I": 4}


def _c_format(fields: tuple[tuple[str, str], ...], ptr_size: int) -> str:
    """struct format of a C structure with natural alignment (MSVC default packing)."""
    if ptr_size not in (4, 8):
        raise ValueError("ptr_size must be 4 or 8")
    fmt = "<"
    offset = 0
    largest = 1
    for _name, kind in fields:
        size = ptr_size if kind == "P" else _C_SIZES[kind]
        largest = max(largest, size)
        pad = (-offset) % size
        fmt += "x" * pad + ("Q" if kind == "P" and ptr_size == 8 else "I" if kind == "P" else kind)
        offset += pad + size
    fmt += "x" * ((-offset) % largest)
    return fmt


_P = TypeVar("_P", bound="_PointerStruct")


class _PointerStruct:
    """Mixin: pack/unpack the C image; `cb*` fields follow their buffer unless it is empty."""

    _c_fields: ClassVar[tuple[tuple[str, str], ...]] = ()
    _lengths: ClassVar[dict[str, str]] = {}

    @classmethod
    def c_size(cls, ptr_size: int = 8) -> int:
        return struct.calcsize(_c_format(cls._c_fields, ptr_size))

    def pack(self, ptr_size: int = 8, pointers: dict[str, int] | None = None) -> bytes:
        pointers = pointers or {}
        values: list[int] = []
        for name, kind in self._c_fields:
            if kind == "P":
                values.append(pointers.get(name, 0))
            elif name in self._lengths and getattr(self, self._lengths[name]):
                values.append(len(getattr(self, self._lengths[name])))
            else:
                values.append(int(getattr(self, name)))
        return struct.pack(_c_format(self._c_fields, ptr_size), *values)

    @classmethod
    def unpack(cls: type[_P], data: bytes, ptr_size: int = 8) -> tuple[_P, dict[str, int]]:
        """The scalar fields as an object (buffers empty) and the pointer values by field name."""
        fmt = _c_format(cls._c_fields, ptr_size)
        _need(data, struct.calcsize(fmt), cls.__name__)
        raw = struct.unpack_from(fmt, data)
        scalars: dict[str, Any] = {}
        pointers: dict[str, int] = {}
        for (name, kind), value in zip(cls._c_fields, raw, strict=True):
            (pointers if kind == "P" else scalars)[name] = value
        return cls(**scalars), pointers


@dataclass
class CARD_SIGNING_INFO(_PointerStruct):
    """Input/output of CardSignData. `pbData` is the hash (or raw block); `pbSignedData` the result."""

    dwVersion: int = 2
    bContainerIndex: int = 0
    dwKeySpec: int = 0
    dwSigningFlags: int = 0
    aiHashAlg: int = 0
    pbData: bytes = b""
    cbData: int = 0
    pbSignedData: bytes = b""
    cbSignedData: int = 0
    pPaddingInfo: PaddingInfo | None = None
    dwPaddingType: int = 0

    _c_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dwVersion", "I"),
        ("bContainerIndex", "B"),
        ("dwKeySpec", "I"),
        ("dwSigningFlags", "I"),
        ("aiHashAlg", "I"),
        ("pbData", "P"),
        ("cbData", "I"),
        ("pbSignedData", "P"),
        ("cbSignedData", "I"),
        ("pPaddingInfo", "P"),
        ("dwPaddingType", "I"),
    )
    _lengths: ClassVar[dict[str, str]] = {"cbData": "pbData", "cbSignedData": "pbSignedData"}


@dataclass
class CARD_RSA_DECRYPT_INFO(_PointerStruct):
    """In/out of CardRSADecrypt: `pbData` is little-endian ciphertext in, plaintext out."""

    dwVersion: int = 2
    bContainerIndex: int = 0
    dwKeySpec: int = AT_KEYEXCHANGE
    pbData: bytes = b""
    cbData: int = 0
    pPaddingInfo: PaddingInfo | None = None
    dwPaddingType: int = 0

    _c_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dwVersion", "I"),
        ("bContainerIndex", "B"),
        ("dwKeySpec", "I"),
        ("pbData", "P"),
        ("cbData", "I"),
        ("pPaddingInfo", "P"),
        ("dwPaddingType", "I"),
    )
    _lengths: ClassVar[dict[str, str]] = {"cbData": "pbData"}


@dataclass
class CARD_DH_AGREEMENT_INFO(_PointerStruct):
    """In/out of CardConstructDHAgreement: peer key as BCRYPT_ECCKEY_BLOB; out: agreement index."""

    dwVersion: int = 2
    bContainerIndex: int = 0
    dwFlags: int = 0
    dwPublicKey: int = 0
    pbPublicKey: bytes = b""
    pbReserved: bytes = b""
    cbReserved: int = 0
    bSecretAgreementIndex: int = 0

    _c_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dwVersion", "I"),
        ("bContainerIndex", "B"),
        ("dwFlags", "I"),
        ("dwPublicKey", "I"),
        ("pbPublicKey", "P"),
        ("pbReserved", "P"),
        ("cbReserved", "I"),
        ("bSecretAgreementIndex", "B"),
    )
    _lengths: ClassVar[dict[str, str]] = {"dwPublicKey": "pbPublicKey", "cbReserved": "pbReserved"}


@dataclass
class CARD_DERIVE_KEY(_PointerStruct):
    """In/out of CardDeriveKey. `parameters` replaces the BCryptBufferDesc list: {KDF_* name: bytes}."""

    dwVersion: int = 2
    dwFlags: int = 0
    pwszKDF: str = "HASH"
    bSecretAgreementIndex: int = 0
    parameters: dict[str, bytes] = field(default_factory=dict)
    pbDerivedKey: bytes = b""
    cbDerivedKey: int = 0
    pwszAlgId: str = ""
    dwKeyLen: int = 0
    hKey: int = 0

    _c_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dwVersion", "I"),
        ("dwFlags", "I"),
        ("pwszKDF", "P"),
        ("bSecretAgreementIndex", "B"),
        ("pParameterList", "P"),
        ("pbDerivedKey", "P"),
        ("cbDerivedKey", "I"),
        ("pwszAlgId", "P"),
        ("dwKeyLen", "I"),
        ("hKey", "P"),
    )
    _lengths: ClassVar[dict[str, str]] = {"cbDerivedKey": "pbDerivedKey"}

    @classmethod
    def unpack(cls, data: bytes, ptr_size: int = 8) -> tuple[CARD_DERIVE_KEY, dict[str, int]]:
        fmt = _c_format(cls._c_fields, ptr_size)
        _need(data, struct.calcsize(fmt), cls.__name__)
        raw = dict(zip((name for name, _ in cls._c_fields), struct.unpack_from(fmt, data), strict=True))
        pointers = {name: raw[name] for name, kind in cls._c_fields if kind == "P"}
        obj = cls(
            dwVersion=raw["dwVersion"],
            dwFlags=raw["dwFlags"],
            bSecretAgreementIndex=raw["bSecretAgreementIndex"],
            cbDerivedKey=raw["cbDerivedKey"],
            dwKeyLen=raw["dwKeyLen"],
            hKey=raw["hKey"],
        )
        return obj, pointers


@dataclass
class CONTAINER_INFO(_PointerStruct):
    """CardGetContainerInfo result: signature and key-exchange public keys (empty = absent)."""

    dwVersion: int = 1
    dwReserved: int = 0
    cbSigPublicKey: int = 0
    pbSigPublicKey: bytes = b""
    cbKeyExPublicKey: int = 0
    pbKeyExPublicKey: bytes = b""

    _c_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("dwVersion", "I"),
        ("dwReserved", "I"),
        ("cbSigPublicKey", "I"),
        ("pbSigPublicKey", "P"),
        ("cbKeyExPublicKey", "I"),
        ("pbKeyExPublicKey", "P"),
    )
    _lengths: ClassVar[dict[str, str]] = {
        "cbSigPublicKey": "pbSigPublicKey",
        "cbKeyExPublicKey": "pbKeyExPublicKey",
    }

    def __post_init__(self) -> None:
        self.cbSigPublicKey = len(self.pbSigPublicKey) or self.cbSigPublicKey
        self.cbKeyExPublicKey = len(self.pbKeyExPublicKey) or self.cbKeyExPublicKey
