"""PIV backend: SP 800-73 slots as minidriver containers, the way Windows' PIV minidriver sees them.

Mapping (documented in docs/minidriver.md):

| container | slot | RSA key spec   | EC key spec     | certificate file | PIN (default)            |
|-----------|------|----------------|-----------------|------------------|--------------------------|
| 0         | 9A   | AT_KEYEXCHANGE | AT_ECDSA_P*     | kxc00 / ksc00    | ROLE_USER                |
| 1         | 9C   | AT_SIGNATURE   | AT_ECDSA_P*     | ksc01            | signature role or USER   |
| 2         | 9D   | AT_KEYEXCHANGE | AT_ECDHE_P*     | kxc02            | ROLE_USER                |
| 3         | 9E   | AT_SIGNATURE   | AT_ECDSA_P*     | ksc03            | ROLE_EVERYONE            |
| 4..23     | 82-95| AT_KEYEXCHANGE | AT_ECDHE_P*     | kxcNN            | ROLE_USER                |

The card is read-only in the minidriver sense (CP_CARD_READ_ONLY, no keygen,
free space 0, cache mode GLOBAL): Windows' inbox PIV minidriver behaves so, and
host caches are keyed by the card ID, which is the CHUID GUID. cardcf is virtual
and lives for the card session. Roles come from the card's vendor GET
CAPABILITIES when it has it (session and external PINs included), else the
PIV defaults (1 PIN 80, 2 management key 9B, 3 PUK 81).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vcard.host import ApduError, SmartCardProtocol
from vcard.wire.aids import PIV_AID_PREFIX
from vcard.wire.ins import PivIns, YubicoIns

from ..constants import (
    AT_ECDHE_P256,
    AT_ECDHE_P384,
    AT_ECDSA_P256,
    AT_ECDSA_P384,
    AT_KEYEXCHANGE,
    AT_SIGNATURE,
    CARD_CREATE_CONTAINER_KEY_GEN,
    CARD_FILE_ACCESS_CONDITION,
    CARD_PIN_STRENGTH_PLAINTEXT,
    CP_CACHE_MODE_GLOBAL_CACHE,
    CREATE_PIN_SET,
    EC_KEYSPEC_BITS,
    ECDHE_KEYSPECS,
    PIN_INFO_CURRENT_VERSION,
    ROLE_ADMIN,
    ROLE_EVERYONE,
    ROLE_USER,
    PinCachePolicyType,
    PinPurpose,
    PinType,
    szBASE_CSP_DIR,
    szCACHE_FILE,
    szCARD_APPS,
    szCARD_IDENTIFIER_FILE,
    szCONTAINER_MAP_FILE,
)
from ..errors import Scard, ScardError
from ..structures import (
    BCRYPT_ECCKEY_BLOB,
    CARD_CACHE_FILE_FORMAT,
    CARD_FILE_INFO,
    CARD_FREE_SPACE_INFO,
    CARD_KEY_SIZES,
    CONTAINER_MAP_RECORD,
    PIN_CACHE_POLICY,
    PIN_INFO,
    PUBLICKEYBLOB,
    pack_cmapfile,
)
from .base import (
    Backend,
    Container,
    RoleInfo,
    der_to_raw_ecdsa,
    operation_error,
    tlv_dict,
    tlv_encode,
    wrong_pin,
)

log = logging.getLogger("minidriver.piv")

TAG_CHUID = 0x5FC102
TAG_CARDCF = 0x5FFF12  # writable mode only: where this layer keeps cardcf on a PIV card
TAG_KEY_HISTORY = 0x5FC10C
SLOT_OBJECTS: dict[int, int] = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
SLOT_OBJECTS.update({0x82 + i: 0x5FC10D + i for i in range(20)})
SLOTS: list[int] = [0x9A, 0x9C, 0x9D, 0x9E, *range(0x82, 0x96)]
SLOT_NAMES = {
    0x9A: "PIV Authentication",
    0x9C: "Digital Signature",
    0x9D: "Key Management",
    0x9E: "Card Authentication",
}
SIGNATURE_SLOTS = {0x9C, 0x9E}

# SP 800-78 algorithm identifiers
ALG_3DES = 0x03
ALGORITHMS: dict[int, tuple[str, int]] = {
    0x06: ("rsa", 1024),
    0x07: ("rsa", 2048),
    0x05: ("rsa", 3072),
    0x16: ("rsa", 4096),
    0x11: ("ec", 256),
    0x14: ("ec", 384),
}
ALGORITHM_IDS = {value: key for key, value in ALGORITHMS.items()}
PIN_POLICY_NEVER = 0x01
PIN_POLICY_ALWAYS = 0x03


def _pad_pin(pin: bytes) -> bytes:
    if len(pin) > 8:
        raise ScardError(Scard.W_WRONG_CHV, "PIV PINs are at most 8 bytes", attempts_remaining=0xFFFFFFFF)
    return pin + b"\xff" * (8 - len(pin))


def _pad_new_pin(pin: bytes) -> bytes:
    """A new PIN value: one too long is an invalid parameter, not a wrong PIN."""
    if len(pin) > 8:
        raise ScardError(Scard.E_INVALID_PARAMETER, "a new PIV PIN is at most 8 bytes")
    return _pad_pin(pin)


def _certificate_der(container: bytes) -> bytes | None:
    """DER certificate from a PIV certificate container (70/71/FE), decompressing if flagged."""
    fields = tlv_dict(container)
    certificate = fields.get(0x70, b"")
    if not certificate:
        return None
    info = fields.get(0x71, b"\x00")
    if info and info[0] & 0x81:
        if certificate[:2] == b"\x1f\x8b":
            return gzip.decompress(certificate)
        return zlib.decompress(certificate[4:] if certificate[:2] == b"\x01\x00" else certificate)
    return certificate


class PivBackend(Backend):
    name = "piv"
    read_only = True
    cache_mode = CP_CACHE_MODE_GLOBAL_CACHE

    def __init__(self, apdu: SmartCardProtocol, writable: bool = False) -> None:
        super().__init__(apdu)
        self.read_only = not writable
        self.key_gen = writable
        self._management_alg: int | None = None
        self._cardcf = CARD_CACHE_FILE_FORMAT()
        self._chuid: bytes | None = None
        self._certificates: dict[int, bytes] = {}
        self._containers: list[Container] | None = None

    @classmethod
    def probe(cls, apdu: SmartCardProtocol) -> bool:
        try:
            answer = apdu.send_apdu(0x00, PivIns.SELECT, 0x04, 0x00, PIV_AID_PREFIX)
        except ApduError:
            return False
        return answer[:1] == b"\x61"

    def select(self) -> None:
        self._containers = None
        self._chuid = None
        try:
            self.apdu.send_apdu(0x00, PivIns.SELECT, 0x04, 0x00, PIV_AID_PREFIX)
        except ApduError as error:
            raise ScardError(Scard.W_REMOVED_CARD, f"PIV application gone (SW {error.sw:04X})") from error

    # --- data objects ---------------------------------------------------------------------------
    def get_data(self, tag: int) -> bytes | None:
        """GET DATA; the value of the 53 wrapper, or None when the object is absent."""
        tag_bytes = tag.to_bytes(3 if tag > 0xFFFF else (2 if tag > 0xFF else 1), "big")
        try:
            answer = self.apdu.send_apdu(0x00, PivIns.GET_DATA, 0x3F, 0xFF, tlv_encode(0x5C, tag_bytes))
        except ApduError as error:
            if error.sw in (0x6A82, 0x6A88):
                return None
            raise operation_error(error, f"GET DATA {tag:06X}") from error
        try:
            return tlv_dict(answer).get(0x53, b"")
        except ValueError as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"object {tag:06X} is malformed") from error

    def chuid(self) -> bytes:
        if self._chuid is None:
            data = self.get_data(TAG_CHUID)
            if data is None:
                raise ScardError(Scard.E_UNEXPECTED, "PIV card without a CHUID: no card identifier")
            self._chuid = data
        return self._chuid

    def card_id(self) -> bytes:
        """The CHUID GUID (what Windows keys its caches with); hash of the CHUID if the GUID is zero."""
        chuid = self.chuid()
        guid = tlv_dict(chuid).get(0x34, b"")
        if len(guid) == 16 and any(guid):
            return guid
        return hashlib.sha256(chuid).digest()[:16]

    def refresh_identity(self) -> None:
        """A read-only card has no cardcf to read: the transaction's card read is the CHUID (the
        card identity the CSP reads with cardcf), which fails unless PIV is the selected application."""
        if self.read_only:
            self._chuid = None
            self.chuid()

    def serial_number(self) -> bytes:
        try:
            serial = self.apdu.send_apdu(0x00, YubicoIns.GET_SERIAL, 0, 0)
            if len(serial) == 4:
                return serial
        except ApduError:
            pass
        return self.card_id()

    def read_cardcf(self) -> bytes:
        """Virtual (card-session) counters on a read-only card; data object 5FFF12 when writable."""
        if self.read_only:
            return self._cardcf.pack()
        stored = self.get_data(TAG_CARDCF)
        return stored if stored and len(stored) >= 6 else CARD_CACHE_FILE_FORMAT().pack()

    def write_cardcf(self, data: bytes) -> None:
        if self.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        self.put_data(TAG_CARDCF, data)

    def put_data(self, tag: int, value: bytes) -> None:
        """PUT DATA (needs the management key: ROLE_ADMIN through CardAuthenticateChallenge)."""
        data = tlv_encode(0x5C, tag.to_bytes(3, "big")) + tlv_encode(0x53, value)
        try:
            self.apdu.send_apdu(0x00, PivIns.PUT_DATA, 0x3F, 0xFF, data, le=None)
        except ApduError as error:
            raise operation_error(error, f"PUT DATA {tag:06X}") from error

    # --- capabilities ---------------------------------------------------------------------------
    def free_space(self) -> CARD_FREE_SPACE_INFO:
        if self.read_only:
            return CARD_FREE_SPACE_INFO(1, 0, 0, len(SLOTS))
        used = len(self.containers())
        return CARD_FREE_SPACE_INFO(1, 0xFFFFFFFF, len(SLOTS) - used, len(SLOTS))

    def key_sizes(self, key_spec: int) -> CARD_KEY_SIZES:
        if key_spec in (AT_KEYEXCHANGE, AT_SIGNATURE):
            return CARD_KEY_SIZES(1, 1024, 2048, 4096, 1024)
        bits = {AT_ECDSA_P256: 256, AT_ECDHE_P256: 256, AT_ECDSA_P384: 384, AT_ECDHE_P384: 384}.get(key_spec)
        if bits is None:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"PIV has no key spec {key_spec}")
        return CARD_KEY_SIZES(1, bits, bits, bits, 1)

    # --- containers -----------------------------------------------------------------------------
    def _metadata(self, slot: int) -> dict[int, bytes] | None:
        try:
            return tlv_dict(self.apdu.send_apdu(0x00, YubicoIns.GET_METADATA, 0x00, slot))
        except (ApduError, ValueError):
            return None

    def _slots_present(self) -> list[int]:
        slots = [0x9A, 0x9C, 0x9D, 0x9E]
        history = self.get_data(TAG_KEY_HISTORY)
        if history:
            on_card = tlv_dict(history).get(0xC1, b"\x00")[0]
            slots += list(range(0x82, 0x82 + min(on_card, 20)))
        return slots

    def _role_for_policy(self, slot: int, pin_policy: int | None) -> int:
        if pin_policy == PIN_POLICY_NEVER or (pin_policy is None and slot == 0x9E):
            return ROLE_EVERYONE
        if pin_policy == PIN_POLICY_ALWAYS or (pin_policy is None and slot == 0x9C):
            for number, role in self.roles().items():
                if int(role.info.PinPurpose) == PinPurpose.DigitalSignaturePin and not role.external:
                    return number
        return ROLE_USER

    def containers(self) -> list[Container]:
        """Every slot holding a key; read once per card session (the card is read-only)."""
        if self._containers is None:
            self._containers = self._read_containers()
        return self._containers

    def _read_containers(self) -> list[Container]:
        found: list[Container] = []
        card_id = self.card_id()
        for slot in self._slots_present():
            index = SLOTS.index(slot)
            metadata = self._metadata(slot)
            object_data = self.get_data(SLOT_OBJECTS[slot])
            certificate = _certificate_der(object_data) if object_data else None
            if certificate:
                self._certificates[slot] = certificate
            description = self._describe_key(slot, metadata, certificate)
            if description is None:
                continue
            algorithm, bits, blob_of = description
            if algorithm == "rsa":
                key_spec = AT_SIGNATURE if slot in SIGNATURE_SLOTS else AT_KEYEXCHANGE
            else:
                ecdh = slot == 0x9D or (slot >= 0x82 and slot <= 0x95)
                key_spec = {
                    (256, False): AT_ECDSA_P256,
                    (384, False): AT_ECDSA_P384,
                    (256, True): AT_ECDHE_P256,
                    (384, True): AT_ECDHE_P384,
                }[(bits, ecdh)]
            pin_policy = metadata[0x02][0] if metadata and metadata.get(0x02) else None
            label = SLOT_NAMES.get(slot, f"Retired Key {slot - 0x81}")
            tag = hashlib.sha1(card_id + bytes([slot])).hexdigest()[:10]
            found.append(
                Container(
                    index=index,
                    key_spec=key_spec,
                    algorithm=algorithm,
                    bits=bits,
                    public_key=blob_of(key_spec),
                    pin_id=self._role_for_policy(slot, pin_policy),
                    key_ref=slot,
                    name=f"{label} ({tag})"[:39],
                    default=slot == 0x9A,
                    label=label,
                    extra={"has_certificate": int(certificate is not None)},
                )
            )
        return found

    def _describe_key(self, slot: int, metadata: dict[int, bytes] | None, certificate: bytes | None):  # type: ignore[no-untyped-def]
        """(algorithm, bits, blob(key_spec)) from F7 metadata, else from the certificate."""
        if metadata and metadata.get(0x01) and metadata[0x01][0] in ALGORITHMS and metadata.get(0x04):
            algorithm, bits = ALGORITHMS[metadata[0x01][0]]
            public = tlv_dict(metadata[0x04])
            if algorithm == "rsa":
                n = int.from_bytes(public[0x81], "big")
                e = int.from_bytes(public[0x82], "big")
                return algorithm, bits, lambda spec: PUBLICKEYBLOB.for_keyspec(n, e, spec).pack()
            point = public[0x86]
            size = (bits + 7) // 8
            x, y = int.from_bytes(point[1 : 1 + size], "big"), int.from_bytes(point[1 + size :], "big")
            return algorithm, bits, lambda spec: _ec_blob(spec, bits, x, y)
        if certificate:
            key = x509.load_der_x509_certificate(certificate).public_key()
            if isinstance(key, rsa.RSAPublicKey):
                numbers = key.public_numbers()
                return (
                    "rsa",
                    key.key_size,
                    lambda spec: PUBLICKEYBLOB.for_keyspec(numbers.n, numbers.e, spec).pack(),
                )
            if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size in (256, 384):
                point_numbers = key.public_numbers()
                bits = key.curve.key_size
                return "ec", bits, lambda spec: _ec_blob(spec, bits, point_numbers.x, point_numbers.y)
        return None

    # --- files (all virtual) --------------------------------------------------------------------
    def _cert_files(self) -> dict[str, int]:
        files: dict[str, int] = {}
        for container in self.containers():
            if not container.extra.get("has_certificate"):
                continue
            prefix = "kxc" if container.key_spec in (AT_KEYEXCHANGE, *ECDHE_KEYSPECS) else "ksc"
            files[f"{prefix}{container.index:02d}"] = container.key_ref
        return files

    def _cmapfile(self) -> bytes:
        records: list[CONTAINER_MAP_RECORD] = []
        containers = {c.index: c for c in self.containers()}
        for index in range(max(containers, default=-1) + 1):
            container = containers.get(index)
            if container is None:
                records.append(CONTAINER_MAP_RECORD())
                continue
            exchange = container.key_spec in (AT_KEYEXCHANGE, *ECDHE_KEYSPECS)
            records.append(
                CONTAINER_MAP_RECORD(
                    container.name,
                    0x03 if container.default else 0x01,
                    0,
                    0 if exchange else container.bits,
                    container.bits if exchange else 0,
                )
            )
        return pack_cmapfile(records)

    def read_file(self, directory: str | None, name: str) -> bytes:
        if directory is None:
            if name == szCARD_IDENTIFIER_FILE:
                return self.card_id()
            if name == szCACHE_FILE:
                return self.read_cardcf()
            if name == szCARD_APPS:
                return b"mscp\0\0\0\0"
            raise ScardError(Scard.E_FILE_NOT_FOUND, name)
        if directory != szBASE_CSP_DIR:
            raise ScardError(Scard.E_DIR_NOT_FOUND, directory)
        if name == szCONTAINER_MAP_FILE:
            return self._cmapfile()
        slot = self._cert_files().get(name)
        if slot is None:
            raise ScardError(Scard.E_FILE_NOT_FOUND, f"{directory}/{name}")
        return self._certificates[slot]

    def file_info(self, directory: str | None, name: str) -> CARD_FILE_INFO:
        data = self.read_file(directory, name)
        return CARD_FILE_INFO(1, len(data), CARD_FILE_ACCESS_CONDITION.EveryoneReadAdminWriteAc)

    def enum_files(self, directory: str | None) -> list[str]:
        if directory is None:
            return [szCARD_IDENTIFIER_FILE, szCACHE_FILE, szCARD_APPS]
        if directory != szBASE_CSP_DIR:
            raise ScardError(Scard.E_DIR_NOT_FOUND, directory)
        return [szCONTAINER_MAP_FILE, *sorted(self._cert_files())]

    # --- optional write support (management key authenticated as ROLE_ADMIN) -------------------
    def _certificate_slot(self, directory: str | None, name: str) -> int:
        if directory != szBASE_CSP_DIR or name[:3] not in ("kxc", "ksc") or not name[3:].isdigit():
            raise ScardError(
                Scard.E_UNSUPPORTED_FEATURE, f"a PIV card stores only certificates, not {name!r}"
            )
        index = int(name[3:])
        if index >= len(SLOTS):
            raise ScardError(Scard.E_INVALID_PARAMETER, f"no PIV slot for container {index}")
        return SLOTS[index]

    def create_file(self, directory: str | None, name: str, size: int, access_condition: int) -> None:
        """Certificate files are virtual (the slot's certificate object): creating one checks the name."""
        if self.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        if (directory, name) == (szBASE_CSP_DIR, szCONTAINER_MAP_FILE):
            raise ScardError(Scard.ERROR_FILE_EXISTS, name)
        self._certificate_slot(directory, name)

    def write_file(self, directory: str | None, name: str, data: bytes) -> None:
        if self.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        if (directory, name) == (szBASE_CSP_DIR, szCONTAINER_MAP_FILE):
            return  # derived from the slots; the Base CSP's copy is not needed
        slot = self._certificate_slot(directory, name)
        body = tlv_encode(0x70, data) + tlv_encode(0x71, b"\x00") + tlv_encode(0xFE, b"")
        self.put_data(SLOT_OBJECTS[slot], body)
        self._containers = None

    def delete_file(self, directory: str | None, name: str) -> None:
        if self.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        slot = self._certificate_slot(directory, name)
        self.put_data(SLOT_OBJECTS[slot], b"")
        self._containers = None

    def create_container(
        self, index: int, flags: int, key_spec: int, key_size: int, key_data: bytes, pin_id: int
    ) -> Container:
        """GENERATE in slot SLOTS[index]; PIN policy "never" for ROLE_EVERYONE, the slot default otherwise."""
        if self.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        if flags != CARD_CREATE_CONTAINER_KEY_GEN:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "PIV: key generation only")
        if index >= len(SLOTS):
            raise ScardError(Scard.E_INVALID_PARAMETER, f"no PIV slot for container {index}")
        if key_spec in (AT_KEYEXCHANGE, AT_SIGNATURE):
            algorithm = ALGORITHM_IDS.get(("rsa", key_size))
        else:
            algorithm = ALGORITHM_IDS.get(("ec", EC_KEYSPEC_BITS.get(key_spec, 0)))
        if algorithm is None:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"key spec {key_spec} size {key_size}")
        template = tlv_encode(0x80, bytes([algorithm]))
        if pin_id == ROLE_EVERYONE:
            template += tlv_encode(0xAA, bytes([PIN_POLICY_NEVER]))
        try:
            self.apdu.send_apdu(
                0x00, PivIns.GENERATE_ASYMMETRIC_KEY_PAIR, 0x00, SLOTS[index], tlv_encode(0xAC, template)
            )
        except ApduError as error:
            raise operation_error(error, "GENERATE ASYMMETRIC KEY PAIR") from error
        self._containers = None
        for container in self.containers():
            if container.index == index:
                return container
        raise ScardError(Scard.E_UNEXPECTED, "generated key not visible")

    def delete_container(self, index: int) -> None:
        """Delete the slot's key (YubiKey MOVE/DELETE, F6 FF) and its certificate."""
        if self.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        slot = SLOTS[index]
        try:
            self.apdu.send_apdu(0x00, YubicoIns.MOVE_KEY, 0xFF, slot, le=None)
        except ApduError as error:
            raise operation_error(error, "DELETE KEY") from error
        self.put_data(SLOT_OBJECTS[slot], b"")
        self._containers = None

    # --- roles ----------------------------------------------------------------------------------

    @staticmethod
    def _default_roles() -> dict[int, RoleInfo]:
        def info(kind: int, purpose: int, unblock: int, change: int, policy: int) -> PIN_INFO:
            return PIN_INFO(
                PIN_INFO_CURRENT_VERSION, kind, purpose, change, unblock, PIN_CACHE_POLICY(6, policy, 0)
            )

        return {
            1: RoleInfo(
                1,
                info(
                    PinType.AlphaNumericPinType,
                    PinPurpose.PrimaryCardPin,
                    CREATE_PIN_SET(3),
                    CREATE_PIN_SET(1),
                    PinCachePolicyType.PinCacheNormal,
                ),
                CARD_PIN_STRENGTH_PLAINTEXT,
                "PIV PIN",
            ),
            2: RoleInfo(
                2,
                info(
                    PinType.ChallengeResponsePinType,
                    PinPurpose.AdministratorPin,
                    0,
                    CREATE_PIN_SET(2),
                    PinCachePolicyType.PinCacheNone,
                ),
                CARD_PIN_STRENGTH_PLAINTEXT,
                "PIV management key",
            ),
            3: RoleInfo(
                3,
                info(
                    PinType.AlphaNumericPinType,
                    PinPurpose.UnblockOnlyPin,
                    0,
                    CREATE_PIN_SET(3),
                    PinCachePolicyType.PinCacheNone,
                ),
                CARD_PIN_STRENGTH_PLAINTEXT,
                "PIV PUK",
            ),
        }

    def _reference(self, pin_id: int) -> int:
        """PIV key reference of a PIN role: 80 for the user, 81 for an unblock-only PIN, 80|n otherwise."""
        role = self.roles().get(pin_id)
        if role is None:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"no PIN {pin_id}")
        if pin_id == ROLE_USER:
            return 0x80
        if int(role.info.PinPurpose) == PinPurpose.UnblockOnlyPin:
            return 0x81
        return 0x80 | pin_id

    def verify(self, pin_id: int, pin: bytes) -> None:
        role = self.roles().get(pin_id)
        if role is not None and int(role.info.PinPurpose) == PinPurpose.UnblockOnlyPin:
            raise ScardError(Scard.E_INVALID_PARAMETER, "the PUK only unblocks the PIN")
        try:
            self.apdu.send_apdu(0x00, PivIns.VERIFY, 0x00, self._reference(pin_id), _pad_pin(pin), le=None)
        except ApduError as error:
            raise wrong_pin(error.sw) from error

    def _deauthenticate_without_vendor(self, pin_set: int) -> None:
        """VERIFY FF 80 (SP 800-73-4 3.2.1) logs out the PIN; nothing else can be cleared without a reset."""
        if pin_set & ~(1 << ROLE_USER):
            raise ScardError(
                Scard.E_UNSUPPORTED_FEATURE, "only the PIN can be deauthenticated without a reset"
            )
        try:
            self.apdu.send_apdu(0x00, PivIns.VERIFY, 0xFF, 0x80, le=None)
        except ApduError as error:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"VERIFY FF refused (SW {error.sw:04X})") from error

    def _management_algorithm(self) -> int:
        if self._management_alg is None:
            metadata = self._metadata(0x9B)
            self._management_alg = metadata[0x01][0] if metadata and metadata.get(0x01) else ALG_3DES
        return self._management_alg

    def get_challenge(self, pin_id: int) -> bytes:
        if pin_id != ROLE_ADMIN:
            raise ScardError(Scard.E_INVALID_PARAMETER, "only the management key answers challenges")
        try:
            answer = self.apdu.send_apdu(
                0x00,
                PivIns.GENERAL_AUTHENTICATE,
                self._management_algorithm(),
                0x9B,
                tlv_encode(0x7C, tlv_encode(0x81, b"")),
            )
            return tlv_dict(tlv_dict(answer)[0x7C])[0x81]
        except (ApduError, KeyError, ValueError) as error:
            raise ScardError(Scard.E_UNEXPECTED, f"management key challenge failed: {error}") from error

    def authenticate_challenge(self, pin_id: int, response: bytes) -> None:
        try:
            self.apdu.send_apdu(
                0x00,
                PivIns.GENERAL_AUTHENTICATE,
                self._management_algorithm(),
                0x9B,
                tlv_encode(0x7C, tlv_encode(0x82, response)),
                le=None,
            )
        except ApduError as error:
            raise ScardError(
                Scard.W_WRONG_CHV,
                f"management key response refused (SW {error.sw:04X})",
                attempts_remaining=0xFFFFFFFF,
            ) from error

    def change_pin(self, pin_id: int, old: bytes, new: bytes) -> None:
        reference = self._reference(pin_id)
        try:
            self.apdu.send_apdu(
                0x00,
                PivIns.CHANGE_REFERENCE_DATA,
                0x00,
                reference,
                _pad_pin(old) + _pad_new_pin(new),
                le=None,
            )
        except ApduError as error:
            if error.sw == 0x6A80:
                raise ScardError(Scard.E_INVALID_PARAMETER, "new PIN refused by the card") from error
            raise wrong_pin(error.sw) from error

    def unblock(self, pin_id: int, auth_pin_id: int, auth_data: bytes, new: bytes) -> None:
        if pin_id != ROLE_USER:
            raise ScardError(Scard.E_INVALID_PARAMETER, "PIV unblocks only the PIN")
        auth = self.roles().get(auth_pin_id)
        if auth is None or int(auth.info.PinPurpose) != PinPurpose.UnblockOnlyPin:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "PIV unblocks the PIN with the PUK only")
        try:
            self.apdu.send_apdu(
                0x00, PivIns.RESET_RETRY_COUNTER, 0x00, 0x80, _pad_pin(auth_data) + _pad_new_pin(new), le=None
            )
        except ApduError as error:
            if error.sw == 0x6A80:
                raise ScardError(Scard.E_INVALID_PARAMETER, "new PIN refused by the card") from error
            raise wrong_pin(error.sw) from error

    # --- crypto ---------------------------------------------------------------------------------
    def _general_authenticate(self, container: Container, tag: int, data: bytes) -> bytes:
        alg = ALGORITHM_IDS[(container.algorithm, container.bits)]
        body = tlv_encode(0x7C, tlv_encode(0x82, b"") + tlv_encode(tag, data))
        try:
            answer = self.apdu.send_apdu(0x00, PivIns.GENERAL_AUTHENTICATE, alg, container.key_ref, body)
        except ApduError as error:
            raise operation_error(error, f"GENERAL AUTHENTICATE {container.key_ref:02X}") from error
        try:
            return tlv_dict(tlv_dict(answer)[0x7C])[0x82]
        except (KeyError, ValueError) as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, "malformed GENERAL AUTHENTICATE answer") from error

    def sign_raw(self, container: Container, block: bytes) -> bytes:
        result = self._general_authenticate(container, 0x81, block)
        if container.algorithm == "ec":
            return der_to_raw_ecdsa(result, container.bits)
        return result

    def decrypt_raw(self, container: Container, cryptogram: bytes) -> bytes:
        return self._general_authenticate(container, 0x81, cryptogram)

    def ecdh(self, container: Container, peer_point: bytes) -> bytes:
        return self._general_authenticate(container, 0x85, peer_point)


def _ec_blob(key_spec: int, bits: int, x: int, y: int) -> bytes:
    usage = "ecdh" if key_spec in ECDHE_KEYSPECS else "ecdsa"
    return BCRYPT_ECCKEY_BLOB.public(usage, bits, x, y).pack()
