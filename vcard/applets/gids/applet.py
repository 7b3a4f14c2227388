"""The GIDS v2 applet: SELECT, the DO file system, PINs, admin key, keys and their use.

Behaviour follows what OpenSC (card-gids.c, gids-tool, pkcs15-init) and the
Windows class minidriver send; docs/gids.md describes it command by command.

Security status comes from the shared security core: the user PIN (key
reference 80) is `user_role`, the admin key (key file B080, reference 80 in
the key namespace) is the challenge role `admin_role` whose value holds the
key bytes, an optional PUK (reference 81) is `puk_role`. Volatile state (the
current EF, the security environment, a pending admin challenge) is dropped
on reset and deselection.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ... import crypto, tlv
from ...apdu import SW, CommandAPDU, ISOError, ResponseAPDU, status
from ...cardos import Applet, HandlerResult, command
from ...context import AppletContext
from ...security import RoleType
from ...wire.ins import GidsIns
from . import keys, provision
from .admin import AdminAuthenticator
from .config import GidsConfig
from .constants import (
    ADMIN_KEY_REF,
    APPLICATION_FIDS,
    CRT_AUTHENTICATION,
    CRT_CONFIDENTIALITY,
    CRT_SIGNATURE,
    DF_FCP,
    DF_FMD,
    EF_ATR,
    EF_ATR_FID,
    FDB_BER_TLV_EF,
    KEY_EF_HIGH,
    P2_FCI,
    P2_FCP,
    P2_FMD,
    P2_NO_DATA,
    PIN_REF_GLOBAL,
    PIN_REF_LOGOUT,
    PIN_REF_PUK,
    PIN_REF_USER,
    TAG_ALGORITHM,
    TAG_GENERATE_CRT,
    TAG_GLOBAL_PIN_STATUS,
    TAG_KEY_REF_ASYM,
    TAG_KEY_REF_SYM,
    TAG_KEY_TEMPLATE,
    TAG_KEY_VALUE,
    TAG_KEY_VALUE_TEMPLATE,
    TAG_PIN_STATUS,
    TAG_PUK_STATUS,
    TAG_TAG_LIST,
    TAG_TRIES_LEFT,
    TAG_TRY_LIMIT,
)
from .filesystem import EF, SC_ADMIN, SC_USER, FileSystem, Op, condition_holds
from .provision import LIFECYCLE_INITIALIZATION, LIFECYCLE_OPERATIONAL, LIFECYCLE_TERMINATED

SW_TERMINATED = 0x6285
DF_SC = SC_USER | SC_ADMIN
"""Create/delete EF in the application DF: user PIN or admin (the DF's FCP `8C 03 03 30 30`)."""
ADMIN_ALGORITHM_BY_LENGTH = {24: "3des", 16: "aes128", 32: "aes256"}


_SELECT = int(GidsIns.SELECT)
_KEY_MSE = int(Op.KEY_MSE)  # a plain int on the per-signature path (MSE and PSO)
_MSE_TEMPLATES = frozenset({CRT_AUTHENTICATION, CRT_SIGNATURE, CRT_CONFIDENTIALITY})


class SecurityEnvironment(NamedTuple):
    """What MSE SET selected: the CRT (B6 sign, B8 decipher, A4 admin auth), padding nibble, key.

    A NamedTuple (immutable, and cheaper to build than a frozen dataclass: one per signature).
    """

    crt: int
    padding: int
    key_ref: int


class GidsApplet(Applet):
    name = "gids"
    aid = bytes.fromhex("A000000397425446590201")

    def __init__(self, context: AppletContext) -> None:
        self.context = context
        self.security = context.security
        self.config = GidsConfig.read(context)
        self._user_empty = self.security.role(self.config.user_role).type is RoleType.EMPTY
        self._admin_empty = self.security.role(self.config.admin_role).type is RoleType.EMPTY
        self._user_bit = 1 << self.config.user_role
        self._admin_bit = 1 << self.config.admin_role
        self.aid = self.config.aid
        self.state: dict[str, Any] = context.state
        self._keys: dict[int, keys.LoadedKey] = {}
        if context.is_new:
            self._provision()
        else:
            for name, key in provision.check(self.state).items():
                self._keys[int(name, 16)] = keys.LoadedKey(self.state["files"][name]["key"], key)
        self.fs = FileSystem(self.state)
        self.current: int | None = None
        self.se: SecurityEnvironment | None = None
        self.admin_auth = AdminAuthenticator()

    def _provision(self) -> None:
        if not self.config.initialized:
            provision.blank(self.state)
            return
        provision.initialised(self.state, self.config.card_id)

    # ---- lifecycle and security status ----------------------------------------

    @property
    def initialising(self) -> bool:
        return bool(self.state["lifecycle"] == LIFECYCLE_INITIALIZATION)

    def _roles_mask(self) -> int:
        roles = [self.config.user_role, self.config.admin_role]
        if self.config.puk_role is not None:
            roles.append(self.config.puk_role)
        return sum(1 << role for role in roles)

    def _holds(self, sc: int) -> bool:
        # is_authenticated of both roles from one read of the status bits; whether a
        # role is of type empty (always authenticated) is fixed when the card opens.
        pin_set = self.security.pin_set
        return condition_holds(  # positional: every MSE and PSO asks
            sc,
            self._user_empty or bool(pin_set & self._user_bit),
            self._admin_empty or bool(pin_set & self._admin_bit),
            self.state["lifecycle"] == LIFECYCLE_INITIALIZATION,
        )

    def _require(self, sc: int) -> None:
        if not self._holds(sc):
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED)

    def _drop_volatile(self) -> None:
        self.current = None
        self.se = None
        self.admin_auth.reset()

    def _commit(self) -> None:
        self.context.commit()

    def select(self, apdu: CommandAPDU) -> HandlerResult:
        self._drop_volatile()
        answer = self._df_answer(apdu.p2)
        if self.state["lifecycle"] == LIFECYCLE_TERMINATED:
            return ResponseAPDU(answer, SW_TERMINATED)
        return answer

    def deselect(self) -> None:
        self._drop_volatile()
        self.security.deauthenticate(self._roles_mask())

    def reset(self) -> None:
        self._drop_volatile()

    def process(self, apdu: CommandAPDU) -> HandlerResult:
        if apdu.ins != _SELECT and self.state["lifecycle"] == LIFECYCLE_TERMINATED:
            raise ISOError(SW_TERMINATED, "application terminated")
        return super().process(apdu)

    def describe(self) -> dict[str, Any]:
        keys_present = sorted(f"{ef.fid:04X}" for ef in self.fs if ef.is_key_file and ef.key_pem)
        return {
            **super().describe(),
            "lifecycle": self.state["lifecycle"],
            "files": sorted(f"{ef.fid:04X}" for ef in self.fs),
            "keys": keys_present,
        }

    # ---- SELECT -----------------------------------------------------------------

    def fci(self) -> bytes:
        """`61 {4F AID, 73 {40 admin-auth protocols}}`: OpenSC types the card from the AID in it."""
        discretionary = tlv.encode(0x73, [tlv.encode(0x40, bytes([self.config.admin_auth]))])
        return tlv.encode(0x61, [tlv.encode(0x4F, self.aid), discretionary])

    def _df_answer(self, p2: int) -> bytes:
        answers = {P2_FCI: self.fci(), P2_FCP: DF_FCP, P2_FMD: DF_FMD, P2_NO_DATA: b""}
        answer = answers.get(p2 & 0xFC)
        if answer is None or p2 & 0x03:
            raise ISOError(SW.INCORRECT_P1P2)
        return answer

    @command(GidsIns.SELECT)
    def select_file(self, apdu: CommandAPDU) -> HandlerResult:
        """SELECT by FID (P1 00/02): the application DF (3FFF/3F00) or one of its EFs."""
        if apdu.p1 in (0x08, 0x09):
            raise ISOError(SW.FILE_NOT_FOUND, "no path selection on GIDS")
        if apdu.p1 not in (0x00, 0x02):
            raise ISOError(SW.INCORRECT_P1P2)
        if apdu.data and len(apdu.data) != 2:
            raise ISOError(SW.INCORRECT_DATA, "a FID is 2 bytes")
        fid = int.from_bytes(apdu.data, "big") if apdu.data else None
        if fid is None or fid in APPLICATION_FIDS:
            self.current = None
            return self._df_answer(apdu.p2)
        ef = self.fs.require(fid)
        if apdu.p2 not in (P2_FCI, P2_FCP, P2_NO_DATA):
            raise ISOError(SW.INCORRECT_P1P2)
        self.current = fid
        return b"" if apdu.p2 == P2_NO_DATA else ef.fcp_bytes

    # ---- file management ----------------------------------------------------------

    def _current_ef(self) -> EF:
        if self.current is None:
            raise ISOError(SW.COMMAND_NOT_ALLOWED_NO_EF, "no current EF")
        return self.fs.require(self.current)

    @command(GidsIns.CREATE_FILE)
    def create_file(self, apdu: CommandAPDU) -> None:
        """CREATE FILE with an FCP (`62`): a BER-TLV EF (39) or a key EF (18), in creation state."""
        if apdu.p1p2 != 0x0000:
            raise ISOError(SW.INCORRECT_P1P2)
        self._require(DF_SC)
        ef = self.fs.create(apdu.data)
        self.current = ef.fid
        self._commit()

    @command(GidsIns.ACTIVATE_FILE)
    def activate(self, apdu: CommandAPDU) -> None:
        """ACTIVATE the current EF, or the application itself when no EF is current."""
        if apdu.p1p2 != 0x0000 or apdu.data:
            raise ISOError(SW.INCORRECT_P1P2)
        if self.current is None:
            if self.initialising:
                self.state["lifecycle"] = LIFECYCLE_OPERATIONAL
                self._commit()
            return
        ef = self._current_ef()
        if not ef.active:
            self._require(DF_SC)
            ef.record["active"] = True
            self._commit()

    @command(GidsIns.DELETE_FILE)
    def delete_file(self, apdu: CommandAPDU) -> None:
        """DELETE FILE: the current EF (or the FID in the data); the DF's delete condition applies."""
        if apdu.p1p2 != 0x0000:
            raise ISOError(SW.INCORRECT_P1P2)
        if apdu.data:
            if len(apdu.data) != 2:
                raise ISOError(SW.INCORRECT_DATA)
            ef = self.fs.require(int.from_bytes(apdu.data, "big"))
        else:
            ef = self._current_ef()
        self._require(DF_SC)
        self.fs.delete(ef.fid)
        if self.se is not None and KEY_EF_HIGH << 8 | self.se.key_ref == ef.fid:
            self.se = None
        self.current = None
        self._commit()

    @command(GidsIns.TERMINATE_DF)
    def terminate(self, apdu: CommandAPDU) -> None:
        """TERMINATE DF: the application becomes unusable (every command answers 6285); admin only."""
        if apdu.p1p2 != 0x0000:
            raise ISOError(SW.INCORRECT_P1P2)
        self._require(SC_ADMIN)
        self.state["lifecycle"] = LIFECYCLE_TERMINATED
        self._drop_volatile()
        self._commit()

    # ---- GET DATA / PUT DATA ------------------------------------------------------------

    def _data_ef(self, p1p2: int) -> EF:
        fid = self.current if p1p2 == 0x0000 else p1p2
        if fid is None:
            raise ISOError(SW.FILE_NOT_FOUND, "no current EF")
        ef = self.fs.require(fid)
        if ef.fdb != FDB_BER_TLV_EF:
            raise ISOError(SW.COMMAND_INCOMPATIBLE, f"EF {fid:04X} holds no data objects")
        if not ef.active:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"EF {fid:04X} is not activated")
        return ef

    @command(GidsIns.GET_DATA)
    def get_data(self, apdu: CommandAPDU) -> bytes:
        """GET DATA: a DO of an EF (`5C 02 tag`, complete TLV), all DOs (`5C 00`), PIN status, public key."""
        if apdu.p1p2 == 0x3FFF:
            return self._application_data(apdu.data)
        if apdu.p1p2 == EF_ATR_FID:
            return EF_ATR
        if apdu.p1p2 == 0xFFFF:
            raise ISOError(SW.INCORRECT_P1P2)
        ef = self._data_ef(apdu.p1p2)
        self._require(ef.sc(Op.DO_GET))
        self.current = ef.fid
        tag = self._listed_tag(apdu.data)
        return ef.all_dos() if tag is None else ef.get_do(tag)

    @staticmethod
    def _listed_tag(data: bytes) -> int | None:
        """The tag in a `5C` tag list; None (= every DO) for an empty list."""
        value = tlv.decode_one(data, TAG_TAG_LIST).value
        if value in (b"", bytes([TAG_TAG_LIST])):
            return None
        if len(value) > 3:
            raise ISOError(SW.INCORRECT_DATA, "one tag expected in 5C")
        return int.from_bytes(value, "big")

    def _application_data(self, data: bytes) -> bytes:
        item = tlv.decode(data)[:1]
        if not item:
            raise ISOError(SW.INCORRECT_DATA, "GET DATA 3FFF needs 5C or 70")
        if item[0].tag == TAG_KEY_TEMPLATE:
            return self._public_key(item[0].value)
        tag = self._listed_tag(data)
        if tag in (TAG_PIN_STATUS, TAG_GLOBAL_PIN_STATUS):
            return self._pin_status(tag, self.config.user_role)
        if tag == TAG_PUK_STATUS and self.config.puk_role is not None:
            return self._pin_status(tag, self.config.puk_role)
        raise ISOError(SW.REFERENCE_NOT_FOUND, f"no DO {tag or 0:X} in the application")

    def _pin_status(self, tag: int, role: int) -> bytes:
        tries = self.security.tries_left(role)
        limit = self.security.retry_limit(role)  # the stored limit: `set_value` may have changed it
        return tlv.encode(
            tag, [tlv.encode(TAG_TRIES_LEFT, bytes([tries])), tlv.encode(TAG_TRY_LIMIT, bytes([limit]))]
        )

    def _key_ef(self, key_ref: int) -> EF:
        ef = self.fs.get(KEY_EF_HIGH << 8 | key_ref)
        if ef is None or not ef.is_key_file:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"no key {key_ref:02X}")
        if not ef.active:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"key file B0{key_ref:02X} is not activated")
        return ef

    @staticmethod
    def _key_ref(template: bytes) -> int:
        """Key reference (`84`, or `83` for symmetric keys) of a `70` key template."""
        value = tlv.find(template, TAG_KEY_REF_ASYM)
        if value is None:
            value = tlv.find(template, TAG_KEY_REF_SYM)
        return GidsApplet._one_byte_key_ref(value)

    @staticmethod
    def _one_byte_key_ref(value: bytes | None) -> int:
        if value is None or len(value) != 1:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "key reference (84 01 kk) missing")
        return value[0]

    def _load_key(self, ef: EF) -> keys.LoadedKey:
        """The key of a key EF, parsed once per PEM (parsing checks the key: milliseconds)."""
        pem = ef.key_pem
        if pem is None:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"key file {ef.fid:04X} holds no key yet")
        loaded = self._keys.get(ef.fid)
        if loaded is None or loaded.pem != pem:
            loaded = self._keys[ef.fid] = keys.LoadedKey(pem)
        return loaded

    def _public_key(self, template: bytes) -> bytes:
        # `A5 03 7F 49 80` is not valid BER (80 is no length): only `84` is read.
        ef = self._key_ef(self._key_ref(template))
        self._require(ef.sc(Op.KEY_READ_PUBLIC))
        return keys.public_template(self._load_key(ef).key)

    @command(GidsIns.PUT_DATA)
    def put_data(self, apdu: CommandAPDU) -> None:
        """PUT DATA: DOs into a BER-TLV EF (empty value empties, then deletes), or a key (3FFF)."""
        if apdu.p1p2 == 0x3FFF:
            self._put_key(apdu.data)
            return
        ef = self._data_ef(apdu.p1p2)
        self._require(ef.sc(Op.DO_PUT))
        items = tlv.decode(apdu.data)
        if not items:
            raise ISOError(SW.WRONG_LENGTH, "PUT DATA without a data object")
        self.current = ef.fid
        for item in items:
            ef.put_do(item.tag, item.value)
        self._commit()

    def _put_key(self, data: bytes) -> None:
        """Key import: RSA (PKCS#1) or ECC (SEC1 ECPrivateKey), see keys.import_private_key; admin key 80."""
        template = tlv.decode_one(data, TAG_KEY_TEMPLATE).value
        key_ref = self._key_ref(template)
        value_template = tlv.find(template, TAG_KEY_VALUE_TEMPLATE)
        if value_template is None:
            raise ISOError(SW.INCORRECT_DATA, "key value template (A5) missing")
        ef = self._key_ef(key_ref)
        self._require(ef.sc(Op.KEY_PUT))
        if key_ref == ADMIN_KEY_REF:
            self._put_admin_key(value_template)
            return
        # Parse and check everything first: a refused import leaves the previous key in place.
        key = keys.import_private_key(value_template, ef.fcp.crts)
        ef.key_pem = crypto.private_key_to_pem(key)
        self._commit()  # durable before the 9000 goes out; the answer carries no data

    def _put_admin_key(self, value_template: bytes) -> None:
        """New admin key bytes into the admin role (3DES: 24 bytes; AES: 16 or 32, or 24 if already AES)."""
        key = tlv.find(value_template, TAG_KEY_VALUE)
        if key is None:
            raise ISOError(SW.INCORRECT_DATA, "admin key value (87) missing")
        algorithm = ADMIN_ALGORITHM_BY_LENGTH.get(len(key))
        if algorithm is None:
            raise ISOError(SW.INCORRECT_DATA, f"admin key of {len(key)} bytes")
        if len(key) == 24 and self.security.key_algorithm(self.config.admin_role) == "aes192":
            algorithm = "aes192"
        self.security.set_value(self.config.admin_role, key, algorithm=algorithm)

    # ---- PINs -------------------------------------------------------------------

    def _pin_role(self, p2: int) -> int:
        if p2 in (PIN_REF_USER, PIN_REF_GLOBAL):
            return self.config.user_role
        if p2 == PIN_REF_PUK and self.config.puk_role is not None:
            return self.config.puk_role
        raise ISOError(SW.REFERENCE_NOT_FOUND, f"no PIN {p2:02X}")

    def _check_new_value(self, role: int, value: bytes) -> None:
        """Format rules before any PIN is compared: a bad length answers 6700, a bad charset 6A80."""
        config = self.security.role(role)
        if not config.length_fits(value):
            raise ISOError(SW.WRONG_LENGTH, f"PIN of {len(value)} bytes")
        if not config.charset_fits(value):
            raise ISOError(SW.INCORRECT_DATA, f"PIN must be {config.charset.value} characters")

    def _set_value(self, role: int, value: bytes) -> None:
        self.security.set_value(role, value)

    @command(GidsIns.VERIFY)
    def verify(self, apdu: CommandAPDU) -> HandlerResult:
        """VERIFY 80 (PIN), 81 (PUK), 82 (log out of everything); empty data asks the status."""
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        if apdu.p2 == PIN_REF_LOGOUT:
            self.security.deauthenticate(self._roles_mask())
            self._drop_volatile()
            return None
        role = self._pin_role(apdu.p2)
        if not self.security.has_value(role):
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "PIN not set yet")
        if not apdu.data:
            return status(self.security.verified_status(role))
        self.security.verify(role, apdu.data)
        return None

    @command(GidsIns.CHANGE_REFERENCE_DATA)
    def change_reference_data(self, apdu: CommandAPDU) -> None:
        """P1 01: set a new PIN (initialisation, or PIN verified); P1 00: old||new, no separator."""
        role = self._pin_role(apdu.p2)
        if apdu.p1 == 0x01:
            if not self.initialising and not self.security.is_authenticated(role):
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED)
            self._check_new_value(role, apdu.data)
            self._set_value(role, apdu.data)
            return
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        length = self.security.value_length(role)
        if length is None:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "PIN not set yet")
        if len(apdu.data) <= length:
            raise ISOError(SW.WRONG_LENGTH, "old PIN || new PIN expected")
        old, new = apdu.data[:length], apdu.data[length:]
        self._check_new_value(role, new)
        self.security.change(role, old, new)  # leaves the PIN verified, as GIDS wants

    @command(GidsIns.RESET_RETRY_COUNTER)
    def reset_retry_counter(self, apdu: CommandAPDU) -> None:
        """P1 02: new PIN after admin authentication; P1 00: PUK||new PIN (cards with a PUK)."""
        if self.initialising:
            raise ISOError(SW.COMMAND_NOT_ALLOWED_NO_EF, "application still in initialisation")
        if apdu.p2 not in (PIN_REF_USER, PIN_REF_GLOBAL):
            raise ISOError(SW.REFERENCE_NOT_FOUND)
        user = self.config.user_role
        if apdu.p1 == 0x02:
            if not self.security.is_authenticated(self.config.admin_role):
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED)
            self._check_new_value(user, apdu.data)
            self.security.unblock(user, self.config.admin_role, b"", apdu.data)
            self.security.deauthenticate(self._roles_mask())
            return
        if apdu.p1 != 0x00 or self.config.puk_role is None:
            raise ISOError(SW.INCORRECT_P1P2)
        puk_length = self.security.value_length(self.config.puk_role)
        if puk_length is None or len(apdu.data) <= puk_length:
            raise ISOError(SW.WRONG_LENGTH, "PUK || new PIN expected")
        puk, new = apdu.data[:puk_length], apdu.data[puk_length:]
        self._check_new_value(user, new)
        self.security.unblock(user, self.config.puk_role, puk, new)

    # ---- admin key -------------------------------------------------------------------

    @command(GidsIns.GENERAL_AUTHENTICATE)
    def general_authenticate(self, apdu: CommandAPDU) -> bytes:
        """Mutual or external authentication with the admin key (see admin.py)."""
        if self.initialising:
            raise ISOError(SW.COMMAND_NOT_ALLOWED_NO_EF, "application still in initialisation")
        if self.se is not None and self.se.crt == CRT_AUTHENTICATION and self.se.key_ref != ADMIN_KEY_REF:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE)
        role = self.config.admin_role
        if self.security.is_blocked(role):
            raise ISOError(SW.AUTH_METHOD_BLOCKED)
        if not self.security.has_value(role):
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "no admin key")
        algorithm = self.security.key_algorithm(role)
        return self.admin_auth.step(
            apdu.data, algorithm, lambda check: self.security.authenticate_with(role, check)
        )

    # ---- keys: MSE, PSO, GENERATE -----------------------------------------------------------

    @command(GidsIns.MANAGE_SECURITY_ENVIRONMENT)
    def manage_security_environment(self, apdu: CommandAPDU) -> None:
        """MSE SET (P1 41/81/C1): B6 sign or B8 decipher with `80 alg 84 kk`; A4 with `83 01 80`."""
        if apdu.p1 & 0x0F != 0x01:
            raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "only MSE SET")
        if apdu.p2 not in _MSE_TEMPLATES:
            raise ISOError(SW.INCORRECT_P1P2)
        self.se = None
        fields = tlv.to_dict(apdu.data)  # a repeated tag is refused here (6A80)
        reference = fields.get(TAG_KEY_REF_ASYM)
        if reference is None:
            reference = fields.get(TAG_KEY_REF_SYM)
        key_ref = self._one_byte_key_ref(reference)
        if apdu.p2 == CRT_AUTHENTICATION:
            if key_ref != ADMIN_KEY_REF:
                raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"no symmetric key {key_ref:02X}")
            self.se = SecurityEnvironment(apdu.p2, 0, key_ref)
            return
        ef = self._key_ef(key_ref)
        algorithm = fields.get(TAG_ALGORITHM)
        if algorithm is not None and len(algorithm) != 1:
            raise ISOError(SW.INCORRECT_DATA)
        # The first CRT of the key for this operation (and algorithm, when one is named). The
        # size nibble may be 0 (OpenSC when its cmapfile lookup fails): match on padding.
        wanted = None if algorithm is None else algorithm[0] & 0xF0
        for crt in ef.fcp.crts:
            if crt.tag == apdu.p2 and (wanted is None or crt.algorithm & 0xF0 == wanted):
                break
        else:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "key not usable for this operation")
        self._require(ef.sc(_KEY_MSE))
        self.se = SecurityEnvironment(apdu.p2, crt.algorithm & 0xF0, key_ref)

    def _se_key(self, crt: int) -> tuple[keys.LoadedKey, int]:
        if self.se is None or self.se.crt != crt:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "no security environment for this operation")
        ef = self._key_ef(self.se.key_ref)
        self._require(ef.sc(_KEY_MSE))  # the PIN may have been logged out since MSE
        return self._load_key(ef), self.se.padding

    @command(GidsIns.PERFORM_SECURITY_OPERATION)
    def perform_security_operation(self, apdu: CommandAPDU) -> bytes:
        """PSO 9E9A (sign; the card pads for 5x) and 8086 (decipher; no padding-indicator byte)."""
        if apdu.p1p2 == 0x9E9A:
            loaded, padding = self._se_key(CRT_SIGNATURE)
            return keys.sign(loaded, padding, apdu.data)
        if apdu.p1p2 == 0x8086:
            loaded, padding = self._se_key(CRT_CONFIDENTIALITY)
            return keys.decipher(loaded.key, padding, apdu.data)
        raise ISOError(SW.INCORRECT_P1P2)

    @command(GidsIns.GENERATE_ASYMMETRIC_KEY_PAIR)
    def generate_asymmetric_key_pair(self, apdu: CommandAPDU) -> bytes:
        """`AC {80 alg, 83 kk}` into an existing key EF; answers the 7F49 template when Le is present."""
        if apdu.p1p2 != 0x0000:
            raise ISOError(SW.INCORRECT_P1P2)
        crt = tlv.decode_one(apdu.data, TAG_GENERATE_CRT).value
        algorithm = tlv.find(crt, TAG_ALGORITHM)
        key_ref = tlv.find(crt, TAG_KEY_REF_SYM) or tlv.find(crt, TAG_KEY_REF_ASYM)
        if algorithm is None or len(algorithm) != 1 or key_ref is None or len(key_ref) != 1:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "AC {80 01 alg, 83 01 kk} expected")
        ef = self._key_ef(key_ref[0])
        if key_ref[0] == ADMIN_KEY_REF:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "the admin key is symmetric")
        self._require(ef.sc(Op.KEY_GENERATE))
        key = keys.generate(algorithm[0])
        ef.key_pem = crypto.private_key_to_pem(key)
        self._commit()
        return keys.public_template(key) if apdu.ne is not None else b""

    @command(GidsIns.GET_CHALLENGE)
    def get_challenge(self, apdu: CommandAPDU) -> bytes:
        if apdu.p1p2 != 0x0000:
            raise ISOError(SW.INCORRECT_P1P2)
        return crypto.random_bytes(apdu.ne or 8)
