"""YubiKey PIV extensions (Yubico's INS F6..FF), so that yubico-piv-tool and ykman work.

Yubico documents these in libykpiv (`ykpiv.h`) and yubikit (`piv.py`); the byte layouts
here follow those clients. Everything that changes the card needs the management key.

The profile's `version` is a promise: instructions a YubiKey of that version did not
have answer 6D00 (as that YubiKey would), and a profile cannot offer key types or
management key algorithms its version lacks (ProfileError when the card is built).
"""

from __future__ import annotations

from ... import crypto, tlv
from ...apdu import SW, CommandAPDU, ISOError
from ...cardos import HandlerResult, command
from ...context import AppletContext
from ...crypto import PrivateKey
from ...security import RoleType
from ...tablereader import TableReader
from ...wire.ins import YubicoIns
from . import attestation, keys, objects
from .commands import PivCommands, _policy_byte
from .config import REF_MANAGEMENT, check_roles, parse_config, version_text
from .keys import Algorithm, Origin

MAX_RETRIES = 15
TOUCH_FLAG_NO_TOUCH = 0xFF
TOUCH_FLAG_TOUCH = 0xFE

# The YubiKey firmware that introduced each instruction (yubikit piv.py `require_version`
# calls, libykpiv's version checks); the others exist on every YubiKey PIV application.
INSTRUCTION_SINCE: dict[int, tuple[int, int, int]] = {
    YubicoIns.ATTEST: (4, 3, 0),
    YubicoIns.GET_SERIAL: (5, 0, 0),
    YubicoIns.GET_METADATA: (5, 3, 0),
    YubicoIns.MOVE_KEY: (5, 7, 0),
}
AES_MANAGEMENT_SINCE = (5, 4, 0)
AES_MANAGEMENT = frozenset({Algorithm.AES128, Algorithm.AES192, Algorithm.AES256})


class YubicoCommands(PivCommands):
    """GET VERSION/SERIAL/METADATA, SET MANAGEMENT KEY, IMPORT, RESET, SET PIN RETRIES, ATTEST, MOVE."""

    def __init__(self, context: AppletContext) -> None:
        # Checked before the base class creates a new card's state, so a refused profile leaves none
        config = parse_config(context.config, context.profile_path)
        roles = {role.role: role.type for role in context.security.roles}
        check_roles(config, roles, context.config, context.profile_path)
        self._aes_management = config.version >= AES_MANAGEMENT_SINCE
        algorithm = keys.SYMMETRIC_BY_NAME[context.security.key_algorithm(config.management_role)]
        if algorithm in AES_MANAGEMENT and not self._aes_management:
            raise TableReader(context.profile_path, "applets.piv", context.config).error(
                "version",
                f"an AES management key needs a YubiKey version >= {version_text(AES_MANAGEMENT_SINCE)}, "
                f"but version is {version_text(config.version)}",
            )
        super().__init__(context)
        # What the configured firmware does not have answers 6D00, as on that YubiKey: the
        # instruction is left out of this card's table, so the check costs no command anything.
        self._commands = {
            ins: handler
            for ins, handler in type(self)._commands.items()
            if config.version >= INSTRUCTION_SINCE.get(ins, config.version)
        }

    @command(YubicoIns.GET_VERSION)
    def get_version(self, apdu: CommandAPDU) -> HandlerResult:
        """Firmware version: libykpiv refuses a PIV card without it; it gates client features."""
        return bytes(self.config.version)

    @command(YubicoIns.GET_SERIAL)
    def get_serial(self, apdu: CommandAPDU) -> HandlerResult:
        return self.serial.to_bytes(4, "big")

    @command(YubicoIns.GET_METADATA)
    def get_metadata(self, apdu: CommandAPDU) -> HandlerResult:
        """Metadata of a PIN, the management key or a key slot; 6A88 for empty or unknown references."""
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        reference = apdu.p2
        if reference == REF_MANAGEMENT:
            return self._management_metadata()
        role = self.config.references.get(reference)
        if role is not None and self.security.role(role).type == RoleType.PIN:
            return b"".join(
                [
                    tlv.encode(0x01, b"\xff"),
                    tlv.encode(0x05, b"\x01" if self.security.is_default_value(role) else b"\x00"),
                    tlv.encode(
                        0x06, bytes([self.security.retry_limit(role), self.security.tries_left(role)])
                    ),
                ]
            )
        entry = self.key_entry(reference) if reference in (*keys.KEY_SLOTS, keys.SLOT_ATTESTATION) else None
        if entry is None:
            raise ISOError(SW.REFERENCE_NOT_FOUND, f"nothing in {reference:02X}")
        public = [tlv.encode(tag, value) for tag, value in keys.public_key_template(entry.key)]
        return b"".join(
            [
                tlv.encode(0x01, bytes([entry.algorithm])),
                tlv.encode(0x02, bytes([entry.pin_policy, entry.touch_policy])),
                tlv.encode(0x03, bytes([entry.origin])),
                tlv.encode(0x04, public),
            ]
        )

    def _management_metadata(self) -> bytes:
        default = self.security.is_default_value(self.config.management_role)
        touch = keys.TouchPolicy.ALWAYS if self.state["management"].get("touch") else keys.TouchPolicy.NEVER
        return b"".join(
            [
                tlv.encode(0x01, bytes([self.management_algorithm])),
                tlv.encode(0x02, bytes([0x00, touch])),
                tlv.encode(0x05, b"\x01" if default else b"\x00"),
            ]
        )

    @command(YubicoIns.SET_MANAGEMENT_KEY)
    def set_management_key(self, apdu: CommandAPDU) -> HandlerResult:
        """`FF FF|FE  alg 9B len key`: replace the 9B key (and its algorithm); FE = touch required."""
        if apdu.p1 != 0xFF or apdu.p2 not in (TOUCH_FLAG_NO_TOUCH, TOUCH_FLAG_TOUCH):
            raise ISOError(SW.INCORRECT_P1P2)
        self.require_management()
        if len(apdu.data) < 3:
            raise ISOError(SW.INCORRECT_DATA, "expected algorithm, 9B and the key")
        try:
            algorithm = Algorithm(apdu.data[0])
            _, length = keys.SYMMETRIC[algorithm]
        except (ValueError, KeyError):
            raise ISOError(
                SW.INCORRECT_DATA, f"unknown management key algorithm {apdu.data[0]:02X}"
            ) from None
        if algorithm in AES_MANAGEMENT and not self._aes_management:
            raise ISOError(SW.INCORRECT_DATA, "AES management keys need version 5.4.0")
        key = tlv.decode_one(apdu.data[1:], REF_MANAGEMENT).value
        if len(key) != length:
            raise ISOError(SW.INCORRECT_DATA, f"algorithm {algorithm:02X} takes {length}-byte keys")
        if apdu.p2 == TOUCH_FLAG_TOUCH and self.config.touch_role is None:
            raise ISOError(SW.INCORRECT_DATA, "this card has no touch sensor")
        self.security.set_value(self.config.management_role, key, algorithm=keys.SYMMETRIC[algorithm][0])
        self.state["management"] = {"touch": apdu.p2 == TOUCH_FLAG_TOUCH}
        self.context.commit()
        return None

    @command(YubicoIns.IMPORT_KEY)
    def import_key(self, apdu: CommandAPDU) -> HandlerResult:
        """IMPORT KEY: RSA CRT parts 01..05, EC scalar 06, Ed25519 07, X25519 08; AA/AB policies."""
        if apdu.p2 not in (*keys.KEY_SLOTS, keys.SLOT_ATTESTATION):
            raise ISOError(SW.INCORRECT_P1P2, f"cannot import into {apdu.p2:02X}")
        self.require_management()
        info = self.enabled_algorithm(bytes([apdu.p1]))
        parts = tlv.to_dict(apdu.data)
        key = _import(info, parts)
        pin_policy, touch_policy = self.resolve_policies(
            apdu.p2, _policy_byte(parts.get(0xAA)), _policy_byte(parts.get(0xAB))
        )
        self._store_key(apdu.p2, key, pin_policy, touch_policy, Origin.IMPORTED)
        self.context.commit()
        return None

    @command(YubicoIns.RESET)
    def reset_application(self, apdu: CommandAPDU) -> HandlerResult:
        """RESET: only once PIN and PUK are blocked; keys, objects and PINs go back to the profile's."""
        pin_role, puk_role = self.config.pin_role, self.config.puk_role
        if not self.security.is_blocked(pin_role) or (
            puk_role is not None and not self.security.is_blocked(puk_role)
        ):
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "PIN and PUK must be blocked first")
        self.security.factory_reset()
        self.deselect()
        self._initialise(keep_attestation=True)
        return None

    @command(YubicoIns.SET_PIN_RETRIES)
    def set_pin_retries(self, apdu: CommandAPDU) -> HandlerResult:
        """`FA <pin tries> <puk tries>`: needs 9B and the PIN; PIN and PUK return to their defaults."""
        if not 1 <= apdu.p1 <= MAX_RETRIES or not 1 <= apdu.p2 <= MAX_RETRIES:
            raise ISOError(SW.INCORRECT_P1P2, f"retries are 1..{MAX_RETRIES} (the most 63Cx can report)")
        self.require_management()
        if not self.security.is_authenticated(self.config.pin_role):
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "PIN not verified")
        for role, tries in ((self.config.pin_role, apdu.p1), (self.config.puk_role, apdu.p2)):
            if role is not None:
                self.security.set_value(role, self.security.role(role).initial, retries=tries)
        return None

    @command(YubicoIns.ATTEST)
    def attest(self, apdu: CommandAPDU) -> HandlerResult:
        """ATTEST: an X.509 certificate for a key generated on the card, signed by the F9 key."""
        if apdu.p2 != 0x00 or apdu.p1 not in keys.KEY_SLOTS:
            raise ISOError(SW.INCORRECT_P1P2)
        entry = self.key_entry(apdu.p1)
        if entry is None:
            # 6A80 as a YubiKey answers (Yubico's SDKs and go-piv read it as "no key to attest")
            raise ISOError(SW.INCORRECT_DATA, f"no key in slot {apdu.p1:02X}")
        if entry.origin != Origin.GENERATED:
            raise ISOError(SW.INCORRECT_DATA, "only keys generated on the card can be attested")
        signer = self.require_key(keys.SLOT_ATTESTATION)
        container = self.get_object(objects.TAG_ATTESTATION_CERT)
        issuer = tlv.find(container, 0x70) if container else None
        if not issuer:
            raise ISOError(SW.REFERENCE_NOT_FOUND, "no attestation certificate (5FFF01)")
        return attestation.attest(
            signer.key,
            issuer,
            entry.slot,
            entry.key,
            self.config.version,
            self.serial,
            entry.pin_policy,
            entry.touch_policy,
        )

    @command(YubicoIns.MOVE_KEY)
    def move_key(self, apdu: CommandAPDU) -> HandlerResult:
        """MOVE KEY (P1 = destination) or DELETE KEY (P1 = FF) of the key in slot P2."""
        source, destination = apdu.p2, apdu.p1
        if source not in (*keys.KEY_SLOTS, keys.SLOT_ATTESTATION):
            raise ISOError(SW.INCORRECT_P1P2, f"no key slot {source:02X}")
        if destination != 0xFF and (destination not in keys.KEY_SLOTS or source == keys.SLOT_ATTESTATION):
            raise ISOError(SW.INCORRECT_P1P2, f"cannot move to {destination:02X}")
        self.require_management()
        entry = self.require_key(source)
        if destination != 0xFF:
            if self.key_entry(destination) is not None:
                raise ISOError(SW.INCORRECT_DATA, f"slot {destination:02X} is not empty")
            self._store_key(destination, entry.key, entry.pin_policy, entry.touch_policy, entry.origin)
        self.delete_key(source)
        self.context.commit()
        return None


def _import(info: keys.AlgorithmInfo, parts: dict[int, bytes]) -> PrivateKey:
    """Build a private key from IMPORT KEY components, checking sizes (6A80 if inconsistent).

    Keys are built by `vcard.crypto` (the one place that constructs key objects); the CRT
    values the host sends along with the primes must be the ones the primes imply.
    """
    try:
        if info.kind == "rsa":
            p, q, dp, dq, qinv = (int.from_bytes(parts[tag], "big") for tag in (1, 2, 3, 4, 5))
            # Before any OpenSSL work: key validation tests primality, slow on oversized input.
            if (p * q).bit_length() != info.size * 8:
                raise ValueError("modulus size does not match the algorithm")
            rsa_key = crypto.rsa_private_key_from_primes(p, q)
            numbers = rsa_key.private_numbers()
            if (numbers.dmp1, numbers.dmq1, numbers.iqmp) != (dp, dq, qinv):
                raise ValueError("CRT components do not match the primes")
            key: PrivateKey = rsa_key
        else:
            key = crypto.private_key_from_scalar(info.profile_name, parts[_SCALAR_TAGS[info.kind]])
        if keys.algorithm_of(key) != info.algorithm:
            raise ValueError(f"the key is not {info.profile_name}")
        return key
    except (KeyError, ValueError) as error:
        raise ISOError(SW.INCORRECT_DATA, f"bad key components: {error}") from None


# IMPORT KEY tag of the private value: EC scalar 06, Ed25519 07, X25519 08.
_SCALAR_TAGS = {"ec": 0x06, "ed25519": 0x07, "x25519": 0x08}
