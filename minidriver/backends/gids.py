"""GIDS backend: the minidriver file system and containers stored in the card's own file system.

GIDS was designed for this API (Windows' inbox minidriver drives it natively):
logical files are BER-TLV data objects in the EFs A000 and A010-A014, located by
the masterfile (A000/DF1F); the EF chosen for a new file encodes its access
condition; containers are key EFs B0kk with kk = 0x81 + index, recorded in the
keymap (A000/DF20) and the cmapfile; certificates are stored in the GIDS
compressed form (01 00 | length LE | zlib), so CardReadFile hands back plain DER
while the card holds what msclmd and OpenSC write (fCertificateCompression is
TRUE: the layer compresses, the Base CSP does not have to).

Roles: 1 = user PIN (reference 80), 2 = admin 3DES key (challenge-response,
external authentication), as the card's vendor GET CAPABILITIES reports them.
"""

from __future__ import annotations

import logging
import secrets
import struct
import uuid

from cryptography.hazmat.primitives.asymmetric import rsa

from vcard.host import ApduError, SmartCardProtocol
from vcard.wire import gids_tables
from vcard.wire.aids import GIDS_AID_PREFIX
from vcard.wire.gids_tables import MasterFileEntry
from vcard.wire.ins import GidsIns

from ..constants import (
    AT_KEYEXCHANGE,
    AT_SIGNATURE,
    CARD_CREATE_CONTAINER_KEY_GEN,
    CARD_DIRECTORY_ACCESS_CONDITION,
    CARD_FILE_ACCESS_CONDITION,
    CARD_PIN_STRENGTH_PLAINTEXT,
    CP_CACHE_MODE_GLOBAL_CACHE,
    CREATE_PIN_SET,
    PIN_INFO_CURRENT_VERSION,
    ROLE_ADMIN,
    ROLE_USER,
    PinCachePolicyType,
    PinPurpose,
    PinType,
)
from ..errors import Scard, ScardError
from ..padding import pkcs1_type1
from ..structures import (
    CARD_FILE_INFO,
    CARD_FREE_SPACE_INFO,
    CARD_KEY_SIZES,
    CONTAINER_MAP_RECORD,
    PIN_CACHE_POLICY,
    PIN_INFO,
    PRIVATEKEYBLOB,
    PUBLICKEYBLOB,
    StructureError,
    pack_cmapfile,
    unpack_cmapfile,
)
from .base import (
    Backend,
    Container,
    RoleInfo,
    operation_error,
    tlv_dict,
    tlv_encode,
    wrong_pin,
)

log = logging.getLogger("minidriver.gids")

EF_DIRS = 0xA000
MASTERFILE = (0xA000, 0xDF1F)
KEYMAP = (0xA000, 0xDF20)
CARDID = (0xA012, 0xDF20)
CARDCF = (0xA010, 0xDF22)
CMAPFILE = (0xA010, 0xDF23)
FIRST_KEY_REF = 0x81
MAX_CONTAINERS = 126
MAX_FREE_BYTES = 32768  # no card-side free-space query: report what the applet reasonably holds

# Access condition -> EF holding files of that class (docs/gids.md; OpenSC src/libopensc/card-gids.c)
AC_TO_EF = {
    CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc: 0xA010,
    CARD_FILE_ACCESS_CONDITION.UserWriteExecuteAc: 0xA011,
    CARD_FILE_ACCESS_CONDITION.EveryoneReadAdminWriteAc: 0xA012,
    CARD_FILE_ACCESS_CONDITION.UserReadWriteAc: 0xA013,
    CARD_FILE_ACCESS_CONDITION.AdminReadWriteAc: 0xA014,
}
EF_TO_AC = {ef: ac for ac, ef in AC_TO_EF.items()}
RSA_SIZE_NIBBLE = {1024: 0x06, 2048: 0x07, 3072: 0x08, 4096: 0x09}
COMPRESSED_PREFIXES = ("kxc", "ksc")


def _read_certificate(value: bytes) -> bytes:
    """Plain DER of a kxc/ksc file: GIDS stores certificates compressed (01 00 | LE16 | zlib)."""
    if value[:2] != gids_tables.CERT_COMPRESSED:
        return value  # stored plain
    try:
        return gids_tables.decompress_certificate(value)
    except gids_tables.TableError as error:
        raise ScardError(Scard.E_COMM_DATA_LOST, f"corrupt compressed certificate: {error}") from error


def _opens_to(container: Container, signature: bytes, expected: bytes) -> bool:
    """True if the RSA `signature` opens with the container's public key to the block `expected`."""
    blob = PUBLICKEYBLOB.unpack(container.public_key)
    return pow(int.from_bytes(signature, "big"), blob.public_exponent, blob.modulus) == int.from_bytes(
        expected, "big"
    )


def _entry(directory: str, name: str, do: int, ef: int) -> MasterFileEntry:
    if len(directory.encode("ascii")) > 8 or len(name.encode("ascii")) > 8:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"name {directory}/{name} longer than 8 characters")
    return MasterFileEntry(directory, name, do, ef)


class GidsBackend(Backend):
    name = "gids"
    read_only = False
    key_gen = True
    cache_mode = CP_CACHE_MODE_GLOBAL_CACHE

    def __init__(self, apdu: SmartCardProtocol) -> None:
        super().__init__(apdu)
        # The security environment this context last set with MSE SET (CRT, algorithm, key) and
        # believes still current: ISO 7816-4 keeps it until the next MSE, a reset or a new SELECT.
        self._se: tuple[int, int, int] | None = None
        # Data objects read in the current transaction: nobody else can change them while it
        # lasts (the masterfile, cmapfile and keymap are asked for several times by one
        # logon). Forgotten when the transaction ends, and on any write.
        self._reads: dict[tuple[int, int], bytes | None] = {}

    @classmethod
    def probe(cls, apdu: SmartCardProtocol) -> bool:
        try:
            apdu.send_apdu(0x00, GidsIns.SELECT, 0x04, 0x00, GIDS_AID_PREFIX)
        except ApduError:
            return False
        return True

    def select(self) -> None:
        self._se = None
        self._reads.clear()
        try:
            self.apdu.send_apdu(0x00, GidsIns.SELECT, 0x04, 0x00, GIDS_AID_PREFIX)
        except ApduError as error:
            raise ScardError(Scard.W_REMOVED_CARD, f"GIDS application gone (SW {error.sw:04X})") from error

    # --- data objects ---------------------------------------------------------------------------
    def forget_reads(self) -> None:
        self._reads.clear()

    def get_do(self, ef: int, do: int) -> bytes | None:
        if (ef, do) in self._reads:
            return self._reads[(ef, do)]
        value = self._get_do(ef, do)
        self._reads[(ef, do)] = value
        return value

    def _get_do(self, ef: int, do: int) -> bytes | None:
        try:
            answer = self.apdu.send_apdu(
                0x00, GidsIns.GET_DATA, ef >> 8, ef & 0xFF, tlv_encode(0x5C, do.to_bytes(2, "big"))
            )
        except ApduError as error:
            if error.sw in (0x6A88, 0x6A82):
                return None
            raise operation_error(error, f"GET DATA {ef:04X}/{do:04X}") from error
        try:
            return tlv_dict(answer).get(do, b"")
        except ValueError as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"{ef:04X}/{do:04X} is malformed") from error

    def put_do(self, ef: int, do: int, value: bytes) -> None:
        self._reads.clear()
        try:
            self.apdu.send_apdu(0x00, GidsIns.PUT_DATA, ef >> 8, ef & 0xFF, tlv_encode(do, value), le=None)
        except ApduError as error:
            raise operation_error(error, f"PUT DATA {ef:04X}/{do:04X}") from error

    def card_id(self) -> bytes:
        value = self.get_do(*CARDID)
        if value is None or len(value) != 16:
            raise ScardError(Scard.E_UNEXPECTED, "GIDS card without a 16-byte cardid (not initialised?)")
        return value

    def read_cardcf(self) -> bytes:
        value = self.get_do(*CARDCF)
        if value is None:
            raise ScardError(Scard.E_FILE_NOT_FOUND, "cardcf")
        return value

    def write_cardcf(self, data: bytes) -> None:
        self.put_do(*CARDCF, data)

    # --- masterfile -----------------------------------------------------------------------------
    def masterfile(self) -> list[MasterFileEntry]:
        try:
            return gids_tables.decode_masterfile(self.get_do(*MASTERFILE) or b"")
        except gids_tables.TableError as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"masterfile missing or malformed: {error}") from error

    def write_masterfile(self, records: list[MasterFileEntry]) -> None:
        self.put_do(*MASTERFILE, gids_tables.encode_masterfile(records))

    def _find(self, records: list[MasterFileEntry], directory: str | None, name: str) -> MasterFileEntry:
        directory = directory or ""
        if directory and not any(r.directory == directory and not r.filename for r in records):
            raise ScardError(Scard.E_DIR_NOT_FOUND, directory)
        for record in records:
            if record.directory == directory and record.filename == name:
                return record
        raise ScardError(Scard.E_FILE_NOT_FOUND, f"{directory}/{name}")

    # --- files ----------------------------------------------------------------------------------
    def read_file(self, directory: str | None, name: str) -> bytes:
        record = self._find(self.masterfile(), directory, name)
        value = self.get_do(record.fid, record.do)
        if value is None:
            raise ScardError(Scard.E_FILE_NOT_FOUND, f"{directory}/{name}")
        if name.startswith(COMPRESSED_PREFIXES) and value:
            return _read_certificate(value)
        return value

    def file_info(self, directory: str | None, name: str) -> CARD_FILE_INFO:
        record = self._find(self.masterfile(), directory, name)
        value = self.get_do(record.fid, record.do) or b""
        if name.startswith(COMPRESSED_PREFIXES) and value:
            value = _read_certificate(value)
        return CARD_FILE_INFO(1, len(value), EF_TO_AC.get(record.fid, CARD_FILE_ACCESS_CONDITION.UnknownAc))

    def enum_files(self, directory: str | None) -> list[str]:
        records = self.masterfile()
        wanted = directory or ""
        if wanted and not any(r.directory == wanted and not r.filename for r in records):
            raise ScardError(Scard.E_DIR_NOT_FOUND, wanted)
        names = [r.filename for r in records if r.directory == wanted and r.filename]
        if not wanted:
            names += [r.directory for r in records if not r.filename]
        return names

    def create_directory(self, directory: str, access_condition: int) -> None:
        records = self.masterfile()
        if any(
            (r.directory == directory and not r.filename) or (not r.directory and r.filename == directory)
            for r in records
        ):
            raise ScardError(Scard.ERROR_FILE_EXISTS, directory)
        if access_condition != CARD_DIRECTORY_ACCESS_CONDITION.UserCreateDeleteDirAc:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "only UserCreateDeleteDirAc directories")
        records.append(_entry(directory, "", 0, EF_DIRS))
        self.write_masterfile(records)

    def delete_directory(self, directory: str) -> None:
        records = self.masterfile()
        if not any(r.directory == directory and not r.filename for r in records):
            raise ScardError(Scard.E_DIR_NOT_FOUND, directory)
        if any(r.directory == directory and r.filename for r in records):
            raise ScardError(Scard.ERROR_DIR_NOT_EMPTY, directory)
        self.write_masterfile([r for r in records if not (r.directory == directory and not r.filename)])

    def create_file(self, directory: str | None, name: str, size: int, access_condition: int) -> None:
        records = self.masterfile()
        wanted = directory or ""
        if wanted and not any(r.directory == wanted and not r.filename for r in records):
            raise ScardError(Scard.E_DIR_NOT_FOUND, wanted)
        if any(r.directory == wanted and r.filename == name for r in records) or (
            not wanted and any(not r.filename and r.directory == name for r in records)
        ):
            raise ScardError(Scard.ERROR_FILE_EXISTS, f"{wanted}/{name}")
        if size > MAX_FREE_BYTES:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"{size} bytes exceed the free space")
        ef = AC_TO_EF.get(CARD_FILE_ACCESS_CONDITION(access_condition))
        if ef is None:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"AccessCondition {access_condition}")
        used = {r.do for r in records if r.fid == ef}
        if ef == 0xA000:
            used |= {KEYMAP[1]}
        do = next(candidate for candidate in range(0xDF21, 0xDFFF) if candidate not in used)
        self.put_do(ef, do, b"")
        records.append(_entry(wanted, name, do, ef))
        self.write_masterfile(records)

    def write_file(self, directory: str | None, name: str, data: bytes) -> None:
        record = self._find(self.masterfile(), directory, name)
        if name.startswith(COMPRESSED_PREFIXES) and data and data[:1] == b"\x30":
            data = gids_tables.compress_certificate(data)
        self.put_do(record.fid, record.do, data)

    def delete_file(self, directory: str | None, name: str) -> None:
        records = self.masterfile()
        record = self._find(records, directory, name)
        # A zero-length PUT empties a non-empty DO; a second one deletes the empty DO.
        if self.get_do(record.fid, record.do):
            self.put_do(record.fid, record.do, b"")
        self.put_do(record.fid, record.do, b"")
        records.remove(record)
        self.write_masterfile(records)

    def free_space(self) -> CARD_FREE_SPACE_INFO:
        used = len(self._cmap())
        valid = sum(1 for record in self._cmap() if record.is_valid)
        return CARD_FREE_SPACE_INFO(1, 0xFFFFFFFF, MAX_CONTAINERS - max(valid, 0), MAX_CONTAINERS + 0 * used)

    def key_sizes(self, key_spec: int) -> CARD_KEY_SIZES:
        if key_spec not in (AT_KEYEXCHANGE, AT_SIGNATURE):
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "GIDS keys are RSA")
        return CARD_KEY_SIZES(1, 1024, 2048, 4096, 1024)

    # --- containers -----------------------------------------------------------------------------
    def _cmap(self) -> list[CONTAINER_MAP_RECORD]:
        data = self.get_do(*CMAPFILE) or b""
        try:
            return unpack_cmapfile(data)
        except StructureError as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"cmapfile: {error}") from error

    def _keymap(self) -> list[bytes]:
        data = self.get_do(*KEYMAP) or b""
        if not data:
            return []
        if data[0] != 0x01 or (len(data) - 1) % 12:
            raise ScardError(Scard.E_COMM_DATA_LOST, "keymap malformed")
        return [data[i : i + 12] for i in range(1, len(data), 12)]

    def _public_key(self, key_ref: int) -> tuple[int, int]:
        body = tlv_encode(0x70, tlv_encode(0x84, bytes([key_ref])) + bytes.fromhex("A5037F4980"))
        try:
            answer = self.apdu.send_apdu(0x00, GidsIns.GET_DATA, 0x3F, 0xFF, body)
            public = tlv_dict(tlv_dict(answer)[0x7F49])
        except ApduError as error:
            raise operation_error(error, f"public key {key_ref:02X}") from error
        except (KeyError, ValueError) as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"public key {key_ref:02X} malformed") from error
        return int.from_bytes(public[0x81], "big"), int.from_bytes(public[0x82], "big")

    def containers(self) -> list[Container]:
        found: list[Container] = []
        keymap = self._keymap()
        for index, record in enumerate(self._cmap()):
            if not record.is_valid:
                continue
            key_spec = AT_KEYEXCHANGE if record.wKeyExchangeKeySizeBits else AT_SIGNATURE
            key_ref = FIRST_KEY_REF + index
            if index < len(keymap) and keymap[index][:4] == b"\x01\0\0\0":
                key_spec = AT_KEYEXCHANGE if keymap[index][5] == 0x9A else AT_SIGNATURE
                key_ref = keymap[index][6]
            try:
                n, e = self._public_key(key_ref)
            except ScardError:
                continue
            bits = n.bit_length()
            found.append(
                Container(
                    index=index,
                    key_spec=key_spec,
                    algorithm="rsa",
                    bits=bits,
                    public_key=PUBLICKEYBLOB.for_keyspec(n, e, key_spec).pack(),
                    pin_id=ROLE_USER,
                    key_ref=key_ref,
                    name=record.wszGuid,
                    default=bool(record.bFlags & 2),
                )
            )
        return found

    def create_container(
        self, index: int, flags: int, key_spec: int, key_size: int, key_data: bytes, pin_id: int
    ) -> Container:
        if key_spec not in (AT_KEYEXCHANGE, AT_SIGNATURE):
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "GIDS containers hold RSA keys")
        if pin_id != ROLE_USER:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "GIDS keys are protected by the user PIN")
        if index >= MAX_CONTAINERS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"container index {index}")
        private: PRIVATEKEYBLOB | None = None
        if flags != CARD_CREATE_CONTAINER_KEY_GEN:
            try:
                private = PRIVATEKEYBLOB.unpack(key_data)
            except StructureError as error:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"key blob: {error}") from error
            key_size = private.bitlen
        nibble = RSA_SIZE_NIBBLE.get(key_size)
        if nibble is None:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"RSA key size {key_size}")
        key_ref = FIRST_KEY_REF + index
        cmap = self._cmap()
        while len(cmap) <= index:
            cmap.append(CONTAINER_MAP_RECORD())
        if cmap[index].is_valid:
            self.delete_container(index)
            cmap = self._cmap()
            while len(cmap) <= index:
                cmap.append(CONTAINER_MAP_RECORD())
        self._create_key_file(key_ref, nibble, key_spec == AT_KEYEXCHANGE)
        try:
            if private is None:
                body = tlv_encode(
                    0xAC, tlv_encode(0x80, bytes([nibble])) + tlv_encode(0x83, bytes([key_ref]))
                )
                self.apdu.send_apdu(0x00, GidsIns.GENERATE_ASYMMETRIC_KEY_PAIR, 0x00, 0x00, body)
            else:
                self._import(key_ref, private)
        except ApduError as error:
            raise operation_error(error, "key creation") from error
        keymap = self._keymap()
        while len(keymap) <= index:
            keymap.append(b"\0\0\0\0\0\0\xff\xff\xff\xff\0\0")
        keytype = 0x9A if key_spec == AT_KEYEXCHANGE else 0x9C
        keymap[index] = struct.pack("<IBBHHH", 1, nibble, keytype, 0xB000 | key_ref, 0xFFFF, 0)
        self.put_do(*KEYMAP, b"\x01" + b"".join(keymap))
        default = not any(record.bFlags & 2 for record in cmap if record.is_valid)
        name = "{" + str(uuid.UUID(bytes=secrets.token_bytes(16), version=4)) + "}"
        cmap[index] = CONTAINER_MAP_RECORD(
            name,
            0x03 if default else 0x01,
            0,
            0 if key_spec == AT_KEYEXCHANGE else key_size,
            key_size if key_spec == AT_KEYEXCHANGE else 0,
        )
        self.put_do(*CMAPFILE, pack_cmapfile(cmap))
        n, e = self._public_key(key_ref)
        return Container(
            index,
            key_spec,
            "rsa",
            n.bit_length(),
            PUBLICKEYBLOB.for_keyspec(n, e, key_spec).pack(),
            ROLE_USER,
            key_ref,
            name,
            default,
        )

    def _create_key_file(self, key_ref: int, nibble: int, exchange: bool) -> None:
        def crt(tag: int, alg: int) -> bytes:
            return tlv_encode(
                tag,
                tlv_encode(0x80, bytes([alg]))
                + tlv_encode(0x83, bytes([key_ref]))
                + tlv_encode(0x95, b"\x40"),
            )

        crts = crt(0xB6, 0x10 | nibble) + crt(0xB6, 0x50 | nibble)
        if exchange:
            crts = crt(0xB8, nibble) + crt(0xB8, 0x80 | nibble) + crt(0xB8, 0x40 | nibble) + crts
        fcp = tlv_encode(
            0x62,
            tlv_encode(0x82, b"\x18")
            + tlv_encode(0x83, bytes([0xB0, key_ref]))
            + tlv_encode(0x8C, bytes.fromhex("8F10101000"))
            + tlv_encode(0xA5, crts),
        )
        try:
            self.apdu.send_apdu(0x00, GidsIns.SELECT, 0x00, 0x0C, b"\x3f\xff", le=None)
            self.apdu.send_apdu(0x00, GidsIns.CREATE_FILE, 0x00, 0x00, fcp, le=None)
            self.apdu.send_apdu(0x00, GidsIns.ACTIVATE_FILE, 0x00, 0x00, le=None)
        except ApduError as error:
            raise operation_error(error, f"CREATE FILE B0{key_ref:02X}") from error

    def _import(self, key_ref: int, key: PRIVATEKEYBLOB) -> None:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        numbers = rsa.RSAPrivateNumbers(
            key.p, key.q, key.d, key.dp, key.dq, key.qinv, rsa.RSAPublicNumbers(key.e, key.n)
        )
        der = numbers.private_key().private_bytes(
            Encoding.DER, PrivateFormat.TraditionalOpenSSL, NoEncryption()
        )
        value = tlv_encode(0x83, b"\x02") + tlv_encode(0x84, b"\x00") + tlv_encode(0x87, der)
        body = tlv_encode(0x70, tlv_encode(0x84, bytes([key_ref])) + tlv_encode(0xA5, value))
        self.apdu.send_apdu(0x00, GidsIns.PUT_DATA, 0x3F, 0xFF, body, le=None)

    def delete_container(self, index: int) -> None:
        cmap = self._cmap()
        if index >= len(cmap) or not cmap[index].is_valid:
            raise ScardError(Scard.E_NO_KEY_CONTAINER, f"container {index}")
        key_ref = FIRST_KEY_REF + index
        try:
            self.apdu.send_apdu(0x00, GidsIns.SELECT, 0x00, 0x0C, bytes([0xB0, key_ref]), le=None)
            self.apdu.send_apdu(0x00, GidsIns.DELETE_FILE, 0x00, 0x00, le=None)
        except ApduError as error:
            raise operation_error(error, f"DELETE FILE B0{key_ref:02X}") from error
        keymap = self._keymap()
        if index < len(keymap):
            keymap[index] = b"\0\0\0\0\0\0\xff\xff\xff\xff\0\0"
            self.put_do(*KEYMAP, b"\x01" + b"".join(keymap))
        cmap[index] = CONTAINER_MAP_RECORD()
        self.put_do(*CMAPFILE, pack_cmapfile(cmap))

    # --- roles ----------------------------------------------------------------------------------
    def _default_roles(self) -> dict[int, RoleInfo]:
        """User PIN (reference 80) and the 3DES admin key, as every GIDS card has them."""
        policy = PIN_CACHE_POLICY(6, PinCachePolicyType.PinCacheNormal, 0)
        return {
            1: RoleInfo(
                1,
                PIN_INFO(
                    PIN_INFO_CURRENT_VERSION,
                    PinType.AlphaNumericPinType,
                    PinPurpose.PrimaryCardPin,
                    CREATE_PIN_SET(1),
                    CREATE_PIN_SET(2),
                    policy,
                ),
                CARD_PIN_STRENGTH_PLAINTEXT,
                "User PIN",
            ),
            2: RoleInfo(
                2,
                PIN_INFO(
                    PIN_INFO_CURRENT_VERSION,
                    PinType.ChallengeResponsePinType,
                    PinPurpose.AdministratorPin,
                    CREATE_PIN_SET(2),
                    0,
                    PIN_CACHE_POLICY(6, PinCachePolicyType.PinCacheNone, 0),
                ),
                CARD_PIN_STRENGTH_PLAINTEXT,
                "Admin key",
            ),
        }

    def verify(self, pin_id: int, pin: bytes) -> None:
        if pin_id != ROLE_USER:
            raise ScardError(Scard.E_INVALID_PARAMETER, "GIDS has one PIN (role 1)")
        try:
            self.apdu.send_apdu(0x00, GidsIns.VERIFY, 0x00, 0x80, pin, le=None)
        except ApduError as error:
            raise wrong_pin(error.sw) from error

    def _deauthenticate_without_vendor(self, pin_set: int) -> None:
        # Without the vendor command the card only knows "log out everything" (VERIFY P2=82), and
        # cannot say which roles are authenticated: clearing only some of them needs a reset.
        state = self.authenticated_state()
        if pin_set & 0x06 != 0x06 and (state is None or state & ~pin_set):
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "GIDS logs out every role at once")
        self.apdu.send_apdu(0x00, GidsIns.VERIFY, 0x00, 0x82, le=None)

    def _select_admin_key(self) -> None:
        self._se = None
        self.apdu.send_apdu(
            0x00, GidsIns.MANAGE_SECURITY_ENVIRONMENT, 0xC1, 0xA4, tlv_encode(0x83, b"\x80"), le=None
        )

    def get_challenge(self, pin_id: int) -> bytes:
        if pin_id != ROLE_ADMIN:
            raise ScardError(Scard.E_INVALID_PARAMETER, "only the admin key answers challenges")
        try:
            self._select_admin_key()
            answer = self.apdu.send_apdu(
                0x00, GidsIns.GENERAL_AUTHENTICATE, 0, 0, tlv_encode(0x7C, tlv_encode(0x81, b""))
            )
            return tlv_dict(tlv_dict(answer)[0x7C])[0x81]
        except (ApduError, KeyError, ValueError) as error:
            raise ScardError(Scard.E_UNEXPECTED, f"admin challenge failed: {error}") from error

    def authenticate_challenge(self, pin_id: int, response: bytes) -> None:
        try:
            self.apdu.send_apdu(
                0x00,
                GidsIns.GENERAL_AUTHENTICATE,
                0,
                0,
                tlv_encode(0x7C, tlv_encode(0x82, response)),
                le=None,
            )
        except ApduError as error:
            raise ScardError(
                Scard.W_WRONG_CHV,
                f"admin response refused (SW {error.sw:04X})",
                attempts_remaining=0xFFFFFFFF,
            ) from error

    def change_pin(self, pin_id: int, old: bytes, new: bytes) -> None:
        if pin_id != ROLE_USER:
            raise ScardError(
                Scard.E_UNSUPPORTED_FEATURE, "the admin key changes through CardChangeAuthenticator"
            )
        try:
            self.apdu.send_apdu(0x00, GidsIns.CHANGE_REFERENCE_DATA, 0x00, 0x80, old + new, le=None)
        except ApduError as error:
            if error.sw in (0x6A80, 0x6700):
                raise ScardError(Scard.E_INVALID_PARAMETER, "new PIN refused by the card") from error
            raise wrong_pin(error.sw) from error

    def unblock(self, pin_id: int, auth_pin_id: int, auth_data: bytes, new: bytes) -> None:
        """Admin challenge-response (auth_data = response to CardGetChallenge), then RESET RETRY COUNTER."""
        if pin_id != ROLE_USER or auth_pin_id != ROLE_ADMIN:
            raise ScardError(Scard.E_INVALID_PARAMETER, "GIDS: the admin key unblocks the user PIN")
        self.authenticate_challenge(ROLE_ADMIN, auth_data)
        try:
            self.apdu.send_apdu(0x00, GidsIns.RESET_RETRY_COUNTER, 0x02, 0x80, new, le=None)
        except ApduError as error:
            raise operation_error(error, "RESET RETRY COUNTER") from error

    # --- crypto ---------------------------------------------------------------------------------
    pkcs1_on_card = True

    def _mse(self, container: Container, crt: int, alg: int) -> None:
        body = tlv_encode(0x80, bytes([alg])) + tlv_encode(0x84, bytes([container.key_ref]))
        self._se = None
        try:
            self.apdu.send_apdu(0x00, GidsIns.MANAGE_SECURITY_ENVIRONMENT, 0x41, crt, body, le=None)
        except ApduError as error:
            raise operation_error(error, "MSE SET") from error
        self._se = (crt, alg, container.key_ref)

    def _sign(self, container: Container, alg: int, data: bytes, expected: bytes, what: str) -> bytes:
        """MSE SET (unless this context's environment is still set for the key) + PSO.

        Skipping MSE is checked, not assumed: another program may have set its own environment
        between our transactions without a reset. The signature is verified with the container's
        public key (`expected` is the padded block it must open to); a refusal or a signature that
        does not verify sends MSE SET and PSO again.
        """
        reused = self._se == (0xB6, alg, container.key_ref)
        if not reused:
            self._mse(container, 0xB6, alg)
            return self._pso(0x9E, 0x9A, data, what)
        try:
            signature = self._pso(0x9E, 0x9A, data, what)
            if _opens_to(container, signature, expected):
                return signature
        except ScardError as error:
            if error.code == Scard.W_RESET_CARD:
                raise
        log.info("security environment no longer set for key %02X: MSE SET again", container.key_ref)
        self._mse(container, 0xB6, alg)
        return self._pso(0x9E, 0x9A, data, what)

    def _nibble(self, container: Container) -> int:
        nibble = RSA_SIZE_NIBBLE.get(container.bits)
        if nibble is None:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"RSA {container.bits}")
        return nibble

    def _pso(self, p1: int, p2: int, data: bytes, what: str) -> bytes:
        try:
            return self.apdu.send_apdu(0x00, GidsIns.PERFORM_SECURITY_OPERATION, p1, p2, data)
        except ApduError as error:
            raise operation_error(error, what) from error

    def sign_pkcs1(self, container: Container, digest_info: bytes) -> bytes:
        expected = pkcs1_type1(digest_info, (container.bits + 7) // 8)
        alg = 0x50 | self._nibble(container)
        return self._sign(container, alg, digest_info, expected, "PSO COMPUTE DIGITAL SIGNATURE")

    def sign_raw(self, container: Container, block: bytes) -> bytes:
        alg = 0x10 | self._nibble(container)
        return self._sign(container, alg, block, block, "PSO COMPUTE DIGITAL SIGNATURE (raw)")

    def decrypt_raw(self, container: Container, cryptogram: bytes) -> bytes:
        if container.key_spec != AT_KEYEXCHANGE:
            raise ScardError(Scard.E_INVALID_PARAMETER, "signature-only key")
        self._mse(container, 0xB8, self._nibble(container))
        return self._pso(0x80, 0x86, cryptogram, "PSO DECIPHER")
