"""SP 800-73 Part 2 card commands: GET/PUT DATA, VERIFY, CHANGE REFERENCE DATA,
RESET RETRY COUNTER, GENERAL AUTHENTICATE and GENERATE ASYMMETRIC KEY PAIR.

Each handler checks parameters, then the security condition, then acts, and answers
with exact TLVs (clients parse fixed offsets). The card OS has already joined command
chains and splits long responses.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, x25519

from ... import tlv
from ...apdu import SW, CommandAPDU, ISOError, status
from ...cardos import HandlerResult, command
from ...security import RoleType
from ...wire.ins import PivIns
from . import keys, objects
from .base import PIN_BLOCK, KeyEntry, PivBase
from .config import REF_PUK
from .keys import Algorithm, Origin


class PivCommands(PivBase):
    """The standard PIV command set."""

    # ---- data objects ----------------------------------------------------------------

    @command(PivIns.GET_DATA)
    def get_data(self, apdu: CommandAPDU) -> HandlerResult:
        """GET DATA 3FFF: `53` + object, Discovery `7E`; PIN-protected objects need the PIN first."""
        if apdu.p1p2 != 0x3FFF:
            raise ISOError(SW.INCORRECT_P1P2)
        tag = self.object_tag(apdu.data)
        if tag == objects.TAG_DISCOVERY:
            return self._discovery
        if tag in objects.PIN_PROTECTED and not self.pin_verified():
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "object readable after PIN verification")
        content = self._read_object(tag)
        if content is None:
            raise ISOError(SW.FILE_NOT_FOUND, f"no object {tag:X}")
        return tlv.encode(0x53, content)

    def _read_object(self, tag: int) -> bytes | None:
        if not objects.is_storable(tag):
            return None
        stored = self.get_object(tag)
        if stored is None and tag == objects.TAG_KEY_HISTORY:
            return objects.key_history(self._retired_certificates())
        return stored

    def _retired_certificates(self) -> int:
        present = [i + 1 for i, tag in enumerate(objects.RETIRED_CERT_TAGS) if self.get_object(tag)]
        return max(present, default=0)

    @command(PivIns.PUT_DATA)
    def put_data(self, apdu: CommandAPDU) -> HandlerResult:
        """PUT DATA 3FFF `5C tag 53 value`: replace an object; `53 00` deletes it. Needs 9B."""
        if apdu.p1p2 != 0x3FFF:
            raise ISOError(SW.INCORRECT_P1P2)
        self.require_management()
        items = tlv.decode(apdu.data)
        if not items or items[0].tag in (objects.TAG_DISCOVERY, objects.TAG_BIT_GROUP):
            raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "discovery and BIT group are fixed by the profile")
        if len(items) != 2 or items[1].tag != 0x53:
            raise ISOError(SW.INCORRECT_DATA, "expected 5C tag 53 value")
        tag = self.object_tag(items[0].encode())
        if not objects.is_storable(tag):
            raise ISOError(SW.FILE_NOT_FOUND, f"no object {tag:X}")
        if len(items[1].value) > self.config.max_object_size:
            raise ISOError(SW.NOT_ENOUGH_MEMORY, f"objects hold at most {self.config.max_object_size} bytes")
        self.put_object(tag, items[1].value)
        self.context.commit()
        return None

    # ---- PINs ------------------------------------------------------------------------

    @command(PivIns.VERIFY)
    def verify(self, apdu: CommandAPDU) -> HandlerResult:
        """VERIFY: P1=00 with data compares, without data reports; P1=FF logs the PIN out.

        A malformed PIN block costs a try (63Cx), as on a YubiKey: `ykman piv reset`
        blocks the PIN by sending FF padding only. External roles (a PIN pad,
        fingerprint) are asked through the security core's external source.
        """
        role = self.pin_role_for(apdu.p2, "verify")
        if apdu.p1 == 0xFF:
            if apdu.data:
                raise ISOError(SW.INCORRECT_DATA, "P1=FF takes no data")
            self.security.deauthenticate(1 << role)
            return None
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        if self.security.is_blocked(role):
            raise ISOError(SW.AUTH_METHOD_BLOCKED)
        external = self.security.role(role).type == RoleType.EXTERNAL
        if not apdu.data and (not external or self.security.is_authenticated(role)):
            return status(self.security.verified_status(role))
        if external:
            self.security.verify_external(role)
            return None
        pin = self.parse_pin(role, apdu.data)
        if pin is None:
            raise self.fail_malformed(role)
        self.security.verify(role, pin)
        return None

    def _first_block(self, role: int, data: bytes) -> bytes:
        """The first of two 8-byte blocks (old PIN or PUK); 63Cx costs a try if it is malformed."""
        if len(data) != 2 * PIN_BLOCK:
            raise ISOError(SW.INCORRECT_DATA, "expected two 8-byte PIN blocks")
        if self.security.is_blocked(role):
            raise ISOError(SW.AUTH_METHOD_BLOCKED)
        value = self.parse_pin(role, data[:PIN_BLOCK])
        if value is None:
            raise self.fail_malformed(role)
        return value

    def _second_block(self, data: bytes) -> bytes:
        """The new value; a malformed one is refused by the core (6A80) once the first is proven."""
        return self.unpad(data[PIN_BLOCK:]) or b"\xff"

    @command(PivIns.CHANGE_REFERENCE_DATA)
    def change_reference_data(self, apdu: CommandAPDU) -> HandlerResult:
        """CHANGE REFERENCE DATA: old value + new value, each an 8-byte FF-padded block."""
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        role = self.pin_role_for(apdu.p2, "change")
        old = self._first_block(role, apdu.data)
        self.security.change(role, old, self._second_block(apdu.data))
        if apdu.p2 == REF_PUK:
            self.security.deauthenticate(1 << role)  # knowing the PUK grants nothing by itself
        return None

    @command(PivIns.RESET_RETRY_COUNTER)
    def reset_retry_counter(self, apdu: CommandAPDU) -> HandlerResult:
        """RESET RETRY COUNTER: unblocker value (PUK) + new PIN; the PIN's counter is restored."""
        if apdu.p1 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        role = self.pin_role_for(apdu.p2, "verify")
        unblocker = self.security.role(role).unblocked_by
        if unblocker is None:
            raise ISOError(SW.REFERENCE_NOT_FOUND, "this PIN cannot be unblocked")
        puk = self._first_block(unblocker, apdu.data)
        self.security.unblock(role, unblocker, puk, self._second_block(apdu.data))
        return None

    # ---- cryptography ----------------------------------------------------------------

    @command(PivIns.GENERAL_AUTHENTICATE)
    def general_authenticate(self, apdu: CommandAPDU) -> HandlerResult:
        """GENERAL AUTHENTICATE: 9B challenge-response, or sign/decrypt/ECDH with a slot key."""
        items = tlv.template(apdu.data, 0x7C)
        slot = apdu.p2
        if slot == keys.SLOT_MANAGEMENT:
            return self._management_authenticate(apdu.p1, items)
        if slot not in keys.KEY_SLOTS:
            raise ISOError(SW.INCORRECT_P1P2, f"no key reference {slot:02X}")
        entry = self._keys.get(slot) or self.require_key(slot)  # require_key loads a key not used yet
        if apdu.p1 != entry.algorithm:
            raise ISOError(SW.INCORRECT_DATA, f"slot {slot:02X} holds algorithm {entry.algorithm:02X}")
        if items.get(0x82) != b"":
            raise ISOError(SW.INCORRECT_DATA, "expected an empty 82 (response requested)")
        self.authorize(entry)
        peer = items.get(0x85)
        if peer:
            result = self._exchange(entry, peer)
        else:
            challenge = items.get(0x81)
            if not challenge:
                raise ISOError(SW.INCORRECT_DATA, "expected 81 challenge or 85 exponentiation")
            result = entry.private_operation(challenge)
        return tlv.encode(0x7C, tlv.encode(0x82, result))

    @staticmethod
    def _exchange(entry: KeyEntry, peer: bytes) -> bytes:
        key = entry.key
        if isinstance(key, ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey):
            return keys.ecdh(key, peer)
        raise ISOError(SW.INCORRECT_DATA, "key agreement needs an EC or X25519 key")

    def _management_authenticate(self, p1: int, items: dict[int, bytes]) -> HandlerResult:
        algorithm = self.management_algorithm
        if p1 not in (algorithm, Algorithm.TDES_ECB_DEFAULT):
            raise ISOError(SW.INCORRECT_DATA, f"the management key is algorithm {algorithm:02X}")
        role = self.config.management_role
        touch = bool(self.state["management"].get("touch"))

        def authenticate(check: Callable[[bytes, str], bool]) -> None:
            # The touch comes after the key is proven (a missing touch costs no try) and before 9B is granted.
            confirm = (lambda: self._touch(keys.TouchPolicy.ALWAYS)) if touch else None
            self.security.authenticate_with(role, check, before_grant=confirm)

        try:
            return self._mgm.step(algorithm, self.security.value(role), items, authenticate)
        except ISOError as error:
            if error.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
                self.security.deauthenticate(1 << role)
            raise

    @command(PivIns.GENERATE_ASYMMETRIC_KEY_PAIR)
    def generate_key_pair(self, apdu: CommandAPDU) -> HandlerResult:
        """GENERATE ASYMMETRIC KEY PAIR: `AC {80 alg [AA pin] [AB touch]}` -> `7F49` public key. Needs 9B."""
        if apdu.p1 != 0x00 or apdu.p2 not in (*keys.KEY_SLOTS, keys.SLOT_ATTESTATION):
            raise ISOError(SW.INCORRECT_P1P2, f"cannot generate in {apdu.p2:02X}")
        self.require_management()
        template = tlv.template(apdu.data, 0xAC)
        info = self.enabled_algorithm(template.get(0x80, b""))
        pin_policy, touch_policy = self.resolve_policies(
            apdu.p2, _policy_byte(template.get(0xAA)), _policy_byte(template.get(0xAB))
        )
        key = keys.generate(info)
        self._store_key(apdu.p2, key, pin_policy, touch_policy, Origin.GENERATED)
        self.context.commit()
        return tlv.encode(0x7F49, [tlv.encode(tag, value) for tag, value in keys.public_key_template(key)])

    def enabled_algorithm(self, value: bytes) -> keys.AlgorithmInfo:
        """The asymmetric algorithm a one-byte identifier names, if this card's profile enables it."""
        if len(value) != 1 or value[0] not in self.config.algorithms:
            raise ISOError(SW.INCORRECT_DATA, f"algorithm {value.hex()} not enabled on this card")
        return keys.ASYMMETRIC[Algorithm(value[0])]


def _policy_byte(value: bytes | None) -> int:
    if value is None:
        return 0
    if len(value) != 1:
        raise ISOError(SW.INCORRECT_DATA, "policies are one byte")
    return value[0]
