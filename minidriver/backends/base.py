"""The backend interface between the generic minidriver layer and one card application.

The generic layer (api.py) owns everything the spec says about parameters, flags,
versions, caching, transactions and padding; a backend only knows how to do a
minidriver-level operation on its card (read a logical file, verify role n,
sign a block with container i) and translates the card's status words into
Windows codes. That split lets one set of entry points serve PIV and GIDS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from vcard import tlv
from vcard.host import ApduError, SmartCardProtocol
from vcard.wire import vendor
from vcard.wire.ins import VendorIns

from ..constants import (
    CARD_PIN_STRENGTH_PLAINTEXT,
    PIN_INFO_CURRENT_VERSION,
    PinType,
)
from ..errors import Scard, ScardError
from ..structures import (
    CARD_CAPABILITIES,
    CARD_FILE_INFO,
    CARD_FREE_SPACE_INFO,
    CARD_KEY_SIZES,
    PIN_CACHE_POLICY,
    PIN_INFO,
)


@dataclass
class Container:
    """One key container as the minidriver sees it.

    `key_spec` is the spec's AT_* value; `public_key` the CONTAINER_INFO blob
    (PUBLICKEYBLOB for RSA, BCRYPT_ECCKEY_BLOB for EC); `key_ref` whatever the
    card calls the key (PIV slot, GIDS key reference).
    """

    index: int
    key_spec: int
    algorithm: str  # "rsa" | "ec"
    bits: int
    public_key: bytes
    pin_id: int
    key_ref: int
    name: str = ""
    default: bool = False
    label: str = ""
    extra: dict[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialised form for the data cache."""
        record = asdict(self)
        record["public_key"] = self.public_key.hex()
        return json.dumps(record, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Container:
        record = json.loads(data)
        record["public_key"] = bytes.fromhex(record["public_key"])
        return cls(**record)


@dataclass
class RoleInfo:
    """What the backend knows about one PIN role: PIN_INFO plus the verify strength flags."""

    pin_id: int
    info: PIN_INFO
    strength_verify: int = CARD_PIN_STRENGTH_PLAINTEXT
    label: str = ""
    session_pins: bool = False  # the card can issue and redeem session PINs for this role

    @property
    def external(self) -> bool:
        return int(self.info.PinType) == PinType.ExternalPinType

    @property
    def challenge(self) -> bool:
        return int(self.info.PinType) == PinType.ChallengeResponsePinType


def wrong_pin(sw: int) -> ScardError:
    """Translate a failed verification status word into the minidriver error."""
    if sw & 0xFFF0 == 0x63C0:
        left = sw & 0x0F
        if left == 0:
            return ScardError(Scard.W_CHV_BLOCKED, "PIN blocked", attempts_remaining=0)
        return ScardError(Scard.W_WRONG_CHV, f"{left} tries left", attempts_remaining=left)
    if sw == 0x6983:
        return ScardError(Scard.W_CHV_BLOCKED, "PIN blocked", attempts_remaining=0)
    if sw in (0x6982, 0x6300):
        return ScardError(Scard.W_WRONG_CHV, f"SW {sw:04X}", attempts_remaining=0xFFFFFFFF)
    if sw in (0x6A80, 0x6700):
        return ScardError(Scard.W_WRONG_CHV, f"malformed PIN (SW {sw:04X})", attempts_remaining=0xFFFFFFFF)
    if sw in (0x6A88, 0x6A86):
        return ScardError(Scard.E_INVALID_PARAMETER, f"no such PIN on the card (SW {sw:04X})")
    return ScardError(Scard.E_UNEXPECTED, f"SW {sw:04X}")


def operation_error(error: ApduError, what: str) -> ScardError:
    """Translate the status word of a key or file operation."""
    sw = error.sw
    if sw in (0x6982, 0x6985):
        return ScardError(Scard.W_SECURITY_VIOLATION, f"{what}: SW {sw:04X}")
    if sw in (0x6A82, 0x6A88):
        return ScardError(Scard.E_FILE_NOT_FOUND, f"{what}: SW {sw:04X}")
    if sw == 0x6A84:
        return ScardError(Scard.E_WRITE_TOO_MANY, f"{what}: SW {sw:04X}")
    if sw in (0x6A80, 0x6700, 0x6984):
        return ScardError(Scard.E_INVALID_PARAMETER, f"{what}: SW {sw:04X}")
    return ScardError(Scard.E_UNEXPECTED, f"{what}: SW {sw:04X}")


class Backend:
    """Interface. Methods raise ScardError with Windows codes; `apdu` is the channel to the card.

    Defaults implement the read-only behaviour the spec requires (writes ->
    SCARD_E_UNSUPPORTED_FEATURE) so a backend only overrides what its card can do.
    """

    name = "backend"
    read_only = True
    certificate_compression = True  # fCertificateCompression: certificates handed over as plain DER
    key_gen = False
    cache_mode = 1  # CP_CACHE_MODE_GLOBAL_CACHE

    def __init__(self, apdu: SmartCardProtocol) -> None:
        self.apdu = apdu
        # The card-level vendor commands, loaded lazily (or from the data cache by the API layer).
        self.vendor = VendorCommands(apdu)
        self._roles: dict[int, RoleInfo] | None = None

    # --- card identity and application --------------------------------------------------------
    @classmethod
    def probe(cls, apdu: SmartCardProtocol) -> bool:
        """True if the card carries this backend's application (selects it)."""
        raise NotImplementedError

    def select(self) -> None:
        """(Re-)select the application after a reset."""
        raise NotImplementedError

    def card_id(self) -> bytes:
        """The 16-byte cardid (== CP_CARD_GUID)."""
        raise NotImplementedError

    def serial_number(self) -> bytes:
        return self.card_id()

    def refresh_identity(self) -> None:
        """What a transaction reads from the card besides cardcf (nothing unless cardcf is virtual)."""

    def forget_reads(self) -> None:
        """The transaction ended: data read during it may change now (another program's turn)."""

    def read_cardcf(self) -> bytes:
        raise NotImplementedError

    def write_cardcf(self, data: bytes) -> None:
        """Persist new freshness counters (read-only cards keep them in memory)."""
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    # --- capabilities ---------------------------------------------------------------------------
    def capabilities(self) -> CARD_CAPABILITIES:
        return CARD_CAPABILITIES(1, int(self.certificate_compression), int(self.key_gen))

    def free_space(self) -> CARD_FREE_SPACE_INFO:
        return CARD_FREE_SPACE_INFO(1, 0, 0, len(self.containers()))

    def key_sizes(self, key_spec: int) -> CARD_KEY_SIZES:
        raise NotImplementedError

    # --- files ----------------------------------------------------------------------------------
    def read_file(self, directory: str | None, name: str) -> bytes:
        raise NotImplementedError

    def file_info(self, directory: str | None, name: str) -> CARD_FILE_INFO:
        raise NotImplementedError

    def enum_files(self, directory: str | None) -> list[str]:
        raise NotImplementedError

    def create_directory(self, directory: str, access_condition: int) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def delete_directory(self, directory: str) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def create_file(self, directory: str | None, name: str, size: int, access_condition: int) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def write_file(self, directory: str | None, name: str, data: bytes) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def delete_file(self, directory: str | None, name: str) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    # --- containers -----------------------------------------------------------------------------
    def containers(self) -> list[Container]:
        """Every present container, read from the card."""
        raise NotImplementedError

    def create_container(
        self, index: int, flags: int, key_spec: int, key_size: int, key_data: bytes, pin_id: int
    ) -> Container:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def delete_container(self, index: int) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def set_container_pin(self, container: Container, pin_id: int) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "PIN binding is fixed on this card")

    # --- roles ----------------------------------------------------------------------------------
    # PIV and GIDS share everything the vendor commands (docs/vendor-commands.md) provide:
    # the role table, the authenticated PIN_SET, session and external PINs, DEAUTHENTICATE.
    # A backend supplies only what its card does without them.

    def roles(self) -> dict[int, RoleInfo]:
        """PIN roles present on the card (role 0, everyone, is implicit): the card's own
        description when it has the vendor commands, else the application's defaults."""
        if self._roles is None:
            self._roles = self.vendor.role_infos() if self.vendor.ensure() else self._default_roles()
        return self._roles

    def _default_roles(self) -> dict[int, RoleInfo]:
        """The roles of a card of this application without the vendor commands."""
        raise NotImplementedError

    def verify(self, pin_id: int, pin: bytes) -> None:
        """Authenticate a PIN role; WRONG_CHV / CHV_BLOCKED with attempts_remaining on failure."""
        raise NotImplementedError

    def authenticated_state(self) -> int | None:
        """PIN_SET from the card itself (vendor GET PIN_SET), or None when the card cannot say."""
        if not self.vendor.ensure():
            return None
        try:
            return self.vendor.pin_set() & ~1
        except ApduError:
            return None

    def deauthenticate(self, pin_set: int) -> None:
        """Clear the roles in pin_set on the card: vendor DEAUTHENTICATE when the card has it."""
        if self.vendor.ensure() and self.vendor.features & vendor.FEATURE_DEAUTHENTICATE:
            self.vendor.deauthenticate(pin_set)
            return
        self._deauthenticate_without_vendor(pin_set)

    def _deauthenticate_without_vendor(self, pin_set: int) -> None:
        """The application's own log-out (UNSUPPORTED_FEATURE if only a reset would do)."""
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "deauthentication needs a card reset")

    def get_challenge(self, pin_id: int) -> bytes:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "no challenge-response role")

    def authenticate_challenge(self, pin_id: int, response: bytes) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "no challenge-response role")

    def change_pin(self, pin_id: int, old: bytes, new: bytes) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "PIN change not supported")

    def unblock(self, pin_id: int, auth_pin_id: int, auth_data: bytes, new: bytes) -> None:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "unblock not supported")

    def generate_session_pin(self, pin_id: int, pin: bytes | None) -> bytes:
        """Authenticate (PIN, or external when pin is None) and return a session PIN.

        A PIN is verified with the application's own VERIFY, then ISSUE SESSION PIN
        drops the status again (GENERATE_SESSION_PIN must not leave the card unlocked);
        an external role is verified by the card's VERIFY EXTERNAL, which keeps it.
        """
        if not self.vendor.ensure():
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "this card has no session PINs")
        try:
            if pin is None:
                return self.vendor.verify_external(pin_id, drop_status=False)
            role = self.roles().get(pin_id)
            if role is not None and role.external:
                raise ScardError(Scard.E_INVALID_PARAMETER, "external role")
            self.verify(pin_id, pin)
            return self.vendor.issue_session_pin(pin_id, drop_status=True)
        except ApduError as error:
            raise wrong_pin(error.sw) from error

    def verify_session_pin(self, pin_id: int, session_pin: bytes) -> None:
        if not self.vendor.ensure():
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "this card has no session PINs")
        self.vendor.verify_session_pin(pin_id, session_pin)

    # --- crypto ---------------------------------------------------------------------------------
    pkcs1_on_card = False  # the card builds PKCS#1 v1.5 type 1 itself (GIDS alg 5x)
    pss_raw = True  # raw RSA is available for host-built PSS blocks

    def sign_raw(self, container: Container, block: bytes) -> bytes:
        """RSA: block^d (block already padded, big-endian); EC: signature over a hash, raw r||s."""
        raise NotImplementedError

    def sign_pkcs1(self, container: Container, digest_info: bytes) -> bytes:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "card-side PKCS#1 padding not available")

    def decrypt_raw(self, container: Container, cryptogram: bytes) -> bytes:
        """RSA decryption without padding removal: full modulus-length block, big-endian."""
        raise NotImplementedError

    def ecdh(self, container: Container, peer_point: bytes) -> bytes:
        """ECDH with the container's key; peer_point uncompressed (04||X||Y); returns X."""
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "no ECDH")


# --- BER-TLV: the project's one codec (vcard.tlv), with host-side errors ------------------------

tlv_encode = tlv.encode


def tlv_dict(data: bytes) -> dict[int, bytes]:
    """Top-level TLVs of a card answer by tag (the last of a repeated tag wins).

    Malformed data raises ValueError: vcard.tlv's TLVError is the card side's
    ISOError(6A80), which means nothing to host code.
    """
    try:
        return {item.tag: item.value for item in tlv.decode(data)}
    except tlv.TLVError as error:
        raise ValueError(str(error)) from error


def der_to_raw_ecdsa(signature: bytes, bits: int) -> bytes:
    """DER SEQUENCE{r, s} -> r||s, each ceil(bits/8) bytes (the minidriver ECDSA format)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(signature)
    size = (bits + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# --- the card-level vendor commands (docs/vendor-commands.md) ---------------------------------
# The wire format (CLA/INS, feature bits, GET CAPABILITIES tags) is defined once, in vcard.wire.


@dataclass
class VendorRole:
    number: int
    secret_type: int
    purpose: int
    cache_policy: int
    change_permission: int
    unblock_permission: int
    strength: int
    label: str
    tries_left: int
    retry_limit: int


class VendorCommands:
    """Host side of the card-level commands (CLA 80, INS 5A-5F) when the card has them."""

    def __init__(self, apdu: SmartCardProtocol) -> None:
        self.apdu = apdu
        self.features = 0
        self.roles: dict[int, VendorRole] = {}
        self.available = False
        self.loaded = False
        self.raw = b""

    def fetch(self) -> bytes:
        """The raw GET CAPABILITIES answer, or b"" on a card without the vendor commands."""
        try:
            return self.apdu.send_apdu(vendor.VENDOR_CLA, VendorIns.GET_CAPABILITIES, 0, 0)
        except ApduError:
            return b""

    def load(self, answer: bytes) -> None:
        """Parse a GET CAPABILITIES answer (possibly from the data cache); b"" = no vendor commands."""
        self.loaded = True
        self.raw = answer
        self.available = False
        self.roles = {}
        try:
            template = tlv_dict(answer).get(vendor.TAG_CAPABILITIES) if answer else None
            items = tlv.decode(template) if template is not None else []  # one A0 per role
        except (ValueError, tlv.TLVError):
            return
        for tag, value in ((item.tag, item.value) for item in items):
            if tag == vendor.TAG_FEATURES:
                self.features = int.from_bytes(value, "big")
            elif tag == vendor.TAG_ROLE:
                fields = tlv_dict(value)

                def byte(t: int, default: int = 0, fields: dict[int, bytes] = fields) -> int:
                    return fields[t][0] if fields.get(t) else default

                role = VendorRole(
                    number=byte(vendor.TAG_ROLE_NUMBER),
                    secret_type=byte(vendor.TAG_ROLE_TYPE),
                    purpose=byte(vendor.TAG_ROLE_PURPOSE),
                    cache_policy=byte(vendor.TAG_ROLE_CACHE_POLICY),
                    change_permission=byte(vendor.TAG_ROLE_CHANGE_PERMISSION),
                    unblock_permission=byte(vendor.TAG_ROLE_UNBLOCK_PERMISSION),
                    strength=byte(vendor.TAG_ROLE_PIN_STRENGTH),
                    label=fields.get(vendor.TAG_ROLE_LABEL, b"").decode("utf-8", "replace"),
                    tries_left=byte(vendor.TAG_ROLE_TRIES_LEFT, 0xFF),
                    retry_limit=byte(vendor.TAG_ROLE_RETRY_LIMIT),
                )
                self.roles[role.number] = role
        self.available = template is not None

    def ensure(self) -> bool:
        """Load the capabilities from the card if nobody supplied them; True if the card has them."""
        if not self.loaded:
            self.load(self.fetch())
        return self.available

    def role_infos(self) -> dict[int, RoleInfo]:
        infos: dict[int, RoleInfo] = {}
        for number, role in self.roles.items():
            if number == 0 or role.secret_type == PinType.EmptyPinType:
                continue
            info = PIN_INFO(
                PIN_INFO_CURRENT_VERSION,
                role.secret_type,
                role.purpose,
                role.change_permission,
                role.unblock_permission,
                PIN_CACHE_POLICY(6, role.cache_policy, 0),
                0,
            )
            strength = role.strength if self.features & vendor.FEATURE_SESSION_PINS else role.strength & 1
            infos[number] = RoleInfo(
                number,
                info,
                strength or CARD_PIN_STRENGTH_PLAINTEXT,
                role.label,
                bool(self.features & vendor.FEATURE_SESSION_PINS),
            )
        return infos

    def pin_set(self) -> int:
        return self.apdu.send_apdu(vendor.VENDOR_CLA, VendorIns.GET_PIN_SET, 0, 0)[0]

    def issue_session_pin(self, role: int, drop_status: bool) -> bytes:
        return self.apdu.send_apdu(vendor.VENDOR_CLA, VendorIns.ISSUE_SESSION_PIN, int(drop_status), role)

    def verify_session_pin(self, role: int, token: bytes) -> None:
        try:
            self.apdu.send_apdu(vendor.VENDOR_CLA, VendorIns.VERIFY_SESSION_PIN, 0, role, token, le=None)
        except ApduError as error:
            raise ScardError(
                Scard.W_WRONG_CHV, f"session PIN refused (SW {error.sw:04X})", attempts_remaining=0xFFFFFFFF
            ) from error

    def verify_external(self, role: int, drop_status: bool) -> bytes:
        try:
            return self.apdu.send_apdu(vendor.VENDOR_CLA, VendorIns.VERIFY_EXTERNAL, int(drop_status), role)
        except ApduError as error:
            if error.sw == 0x6982:
                raise ScardError(Scard.W_CANCELLED_BY_USER, "external verification timed out") from error
            raise wrong_pin(error.sw) from error

    def deauthenticate(self, pin_set: int) -> None:
        self.apdu.send_apdu(
            vendor.VENDOR_CLA, VendorIns.DEAUTHENTICATE, 0, 0, bytes([pin_set & 0xFF]), le=None
        )
