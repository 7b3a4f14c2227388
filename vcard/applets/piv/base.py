"""State, security helpers and SELECT handling shared by the PIV command handlers.

`PivBase` owns the applet's persistent section of the card state:

    {"schema": 1,
     "serial": 12345678,
     "objects": {"5FC102": "<hex value of the 53 wrapper>", ...},
     "keys": {"9A": {"algorithm": 7, "pem": "-----BEGIN PRIVATE KEY-----...",
                     "pin_policy": 2, "touch_policy": 1, "origin": 1}, ...},
     "management": {"touch": false}}

PIN values, counters, the management key and every "authenticated" flag live in the
security core (shared with the card's other applets); the applet keeps only the 9B
dialogue in progress, cleared on deselect and reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from ... import tlv
from ...apdu import SW, CommandAPDU, ISOError, verify_failed
from ...cardos import Applet, HandlerResult
from ...context import AppletContext
from ...crypto import PrivateKey
from ...errors import StateFieldError
from ...security import AccessRule, RoleType
from ...statefields import require_field, require_hex
from ...wire.aids import PIV_AID
from ...wire.ins import PivIns
from . import attestation, keys, objects
from .config import REF_MANAGEMENT, REF_PUK, PivConfig, check_roles, parse_config
from .keys import Algorithm, AlgorithmInfo, Origin, PinPolicy, TouchPolicy
from .mgmkey import ManagementKeyAuth

log = logging.getLogger("vcard.piv")

SCHEMA = 1
TOUCH_CACHE_SECONDS = 15.0
PIN_BLOCK = 8
GENERAL_AUTHENTICATE = int(PivIns.GENERAL_AUTHENTICATE)  # PIV PINs travel as 8 bytes, right-padded with FF


@dataclass
class KeyEntry:
    """A key in a slot as the handlers use it (the private key stays inside the applet)."""

    slot: int
    algorithm: Algorithm
    key: PrivateKey
    pin_policy: PinPolicy
    touch_policy: TouchPolicy
    origin: Origin
    # Bound when the key is loaded, or on first use, and kept with it: the per-signature
    # path then does no type tests and no rule building (a P-256 signature costs ~26 us).
    private_operation: Callable[[bytes], bytes] = field(init=False, repr=False)
    rule: AccessRule | None = field(default=None, init=False)
    rule_has_external: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.private_operation = keys.private_operation(self.key)

    @property
    def info(self) -> AlgorithmInfo:
        return keys.ASYMMETRIC[self.algorithm]


class PivBase(Applet):
    """PIV application data and security helpers; the handlers live in the subclasses."""

    aid = PIV_AID

    def __init__(self, context: AppletContext) -> None:
        self.context = context
        self.config: PivConfig = parse_config(context.config, context.profile_path)
        check_roles(
            self.config,
            {role.role: role.type for role in context.security.roles},
            context.config,
            context.profile_path,
        )
        self.security = context.security
        self.state = context.state
        self._keys: dict[int, KeyEntry] = {}
        self._mgm = ManagementKeyAuth()
        self._last_touch = float("-inf")
        self._apt = objects.application_property_template(self.config.label, self.config.algorithms)
        self._policy_rules = self._build_policy_rules()
        # Roles a PIV reference (PIN, PUK, 9B, global, extra) or touch names, dropped on
        # deselect; role 0 is "everyone" (type empty) and has no status to drop.
        roles = {*self.config.references.values(), self.config.touch_role}
        self._role_mask = sum(1 << role for role in roles if role)
        self._external_roles = frozenset(
            config.role for config in self.security.roles if config.type == RoleType.EXTERNAL
        )
        self._discovery = objects.discovery(
            self.config.global_pin_role is not None, self.config.global_pin_primary
        )
        if context.is_new:
            self._initialise()
        else:
            self._check_state()

    # ---- persistent state ------------------------------------------------------------

    def _initialise(self, keep_attestation: bool = False) -> None:
        """Fill a new card's state: serial, CHUID, CCC, attestation key and certificate."""
        old_keys: dict[str, Any] = self.state.get("keys", {})
        old_objects: dict[str, str] = self.state.get("objects", {})
        serial = self.state.get("serial") or self.config.serial or int.from_bytes(keys.random_bytes(4)) >> 1
        self.state.clear()
        self.state.update(
            {
                "schema": SCHEMA,
                "serial": serial,
                "objects": {
                    objects.tag_key(objects.TAG_CHUID): objects.new_chuid().hex(),
                    objects.tag_key(objects.TAG_CCC): objects.new_ccc().hex(),
                },
                "keys": {},
                "management": {"touch": False},
            }
        )
        self._keys.clear()
        attestation_slot = keys.slot_name(keys.SLOT_ATTESTATION)
        cert_tag = objects.tag_key(objects.TAG_ATTESTATION_CERT)
        if keep_attestation and attestation_slot in old_keys and cert_tag in old_objects:
            self.state["keys"][attestation_slot] = old_keys[attestation_slot]
            self.state["objects"][cert_tag] = old_objects[cert_tag]
        elif self.config.attestation:
            self._create_attestation_key()
        self.context.commit()

    def _check_state(self) -> None:
        """Refuse a stored section this applet cannot read (never re-initialise it: the keys would be lost).

        Every key is loaded here, so a corrupt PEM is named when the card opens rather
        than answering 6F00 when the key is used.
        """
        schema = require_field(self.state, "schema", int, "")
        if schema != SCHEMA:
            raise StateFieldError("schema", f"unknown schema {schema}; this vcard reads schema {SCHEMA}")
        if require_field(self.state, "serial", int, "") < 0:
            raise StateFieldError("serial", "must not be negative")
        stored_objects: dict[str, Any] = require_field(self.state, "objects", dict, "")
        for tag in stored_objects:
            require_hex(stored_objects, tag, "objects")
        stored_keys: dict[str, Any] = require_field(self.state, "keys", dict, "")
        for name in stored_keys:
            entry = self._load_key(name, require_field(stored_keys, name, dict, "keys"))
            self._keys[entry.slot] = entry
        require_field(require_field(self.state, "management", dict, ""), "touch", bool, "management")

    @staticmethod
    def _load_key(name: str, stored: dict[str, Any]) -> KeyEntry:
        where = f"keys.{name}"
        try:
            slot = int(name, 16)
        except ValueError:
            slot = -1
        if keys.slot_name(slot) != name:
            raise StateFieldError(where, "is not a slot number (two hex digits)")
        try:
            algorithm = Algorithm(require_field(stored, "algorithm", int, where))
            keys.ASYMMETRIC[algorithm]
        except (ValueError, KeyError):
            raise StateFieldError(f"{where}.algorithm", f"unknown algorithm {stored['algorithm']}") from None
        policies: list[Any] = []
        for field_name, kind in (
            ("pin_policy", PinPolicy),
            ("touch_policy", TouchPolicy),
            ("origin", Origin),
        ):
            value = require_field(stored, field_name, int, where)
            try:
                policies.append(kind(value))
            except ValueError:
                raise StateFieldError(f"{where}.{field_name}", f"unknown value {value}") from None
        try:
            key = keys.from_pem(require_field(stored, "pem", str, where))
            found = keys.algorithm_of(key)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise StateFieldError(f"{where}.pem", f"not a readable private key ({error})") from None
        if found != algorithm:
            problem = f"{int(algorithm)} does not match the stored key ({int(found)})"
            raise StateFieldError(f"{where}.algorithm", problem)
        return KeyEntry(slot, algorithm, key, *policies)

    def _create_attestation_key(self) -> None:
        info = keys.ASYMMETRIC[self.config.attestation_algorithm]
        key = keys.generate(info)
        self._store_key(keys.SLOT_ATTESTATION, key, PinPolicy.NEVER, TouchPolicy.NEVER, Origin.GENERATED)
        der = attestation.attestation_ca(key, self.serial)
        self.put_object(objects.TAG_ATTESTATION_CERT, objects.certificate_container(der))

    @property
    def serial(self) -> int:
        return int(self.state["serial"])

    def get_object(self, tag: int) -> bytes | None:
        value = self.state["objects"].get(objects.tag_key(tag))
        return None if value is None else bytes.fromhex(value)

    def put_object(self, tag: int, value: bytes | None) -> None:
        """Store (or with None/empty delete) an object; the caller commits."""
        if value:
            self.state["objects"][objects.tag_key(tag)] = value.hex()
        else:
            self.state["objects"].pop(objects.tag_key(tag), None)

    def key_entry(self, slot: int) -> KeyEntry | None:
        """The key in `slot`, loaded once and cached; None if the slot is empty."""
        cached = self._keys.get(slot)
        if cached is not None:
            return cached
        stored = self.state["keys"].get(keys.slot_name(slot))
        if stored is None:
            return None
        entry = KeyEntry(
            slot,
            Algorithm(stored["algorithm"]),
            keys.from_pem(stored["pem"]),
            PinPolicy(stored["pin_policy"]),
            TouchPolicy(stored["touch_policy"]),
            Origin(stored["origin"]),
        )
        self._keys[slot] = entry
        return entry

    def require_key(self, slot: int) -> KeyEntry:
        entry = self.key_entry(slot)
        if entry is None:
            raise ISOError(SW.REFERENCE_NOT_FOUND, f"no key in slot {slot:02X}")
        return entry

    def _store_key(
        self, slot: int, key: PrivateKey, pin_policy: PinPolicy, touch_policy: TouchPolicy, origin: Origin
    ) -> KeyEntry:
        """Put a key into a slot (policies already resolved); the caller commits."""
        entry = KeyEntry(slot, keys.algorithm_of(key), key, pin_policy, touch_policy, origin)
        self.state["keys"][keys.slot_name(slot)] = {
            "algorithm": int(entry.algorithm),
            "pem": keys.to_pem(key),
            "pin_policy": int(pin_policy),
            "touch_policy": int(touch_policy),
            "origin": int(origin),
        }
        self._keys[slot] = entry
        return entry

    def delete_key(self, slot: int) -> None:
        self.state["keys"].pop(keys.slot_name(slot), None)
        self._keys.pop(slot, None)

    def resolve_policies(self, slot: int, pin: int, touch: int) -> tuple[PinPolicy, TouchPolicy]:
        """Policy bytes from GENERATE/IMPORT (00 = slot default) to stored policies; 6A80 if invalid."""
        try:
            pin_policy, touch_policy = PinPolicy(pin), TouchPolicy(touch)
        except ValueError:
            raise ISOError(SW.INCORRECT_DATA, f"unsupported policy {pin:02X}/{touch:02X}") from None
        slot_config = self.config.slot(slot)
        if pin_policy == PinPolicy.DEFAULT:
            pin_policy = slot_config.pin_policy or keys.default_pin_policy(slot)
        if touch_policy == TouchPolicy.DEFAULT:
            touch_policy = slot_config.touch_policy or TouchPolicy.NEVER
        if touch_policy != TouchPolicy.NEVER and self.config.touch_role is None:
            raise ISOError(SW.INCORRECT_DATA, "this card has no touch sensor (no touch_role)")
        return pin_policy, touch_policy

    @property
    def management_algorithm(self) -> Algorithm:
        return keys.SYMMETRIC_BY_NAME[self.security.key_algorithm(self.config.management_role)]

    def describe(self) -> dict[str, Any]:
        """For `vcard info`: version, serial, keys by slot (public facts only) and stored objects."""
        names = {info.algorithm: info.profile_name for info in keys.ASYMMETRIC.values()}
        return {
            **super().describe(),
            "version": ".".join(str(part) for part in self.config.version),
            "serial": self.serial,
            "algorithms": [names[alg] for alg in self.config.algorithms],
            "management_key": self.security.key_algorithm(self.config.management_role),
            "keys": {
                slot: {
                    "algorithm": names[Algorithm(stored["algorithm"])],
                    "pin_policy": PinPolicy(stored["pin_policy"]).name.lower(),
                    "touch_policy": TouchPolicy(stored["touch_policy"]).name.lower(),
                    "origin": Origin(stored["origin"]).name.lower(),
                }
                for slot, stored in sorted(self.state["keys"].items())
            },
            "objects": sorted(self.state["objects"]),
        }

    # ---- SELECT and volatile state ---------------------------------------------------

    def select(self, apdu: CommandAPDU) -> HandlerResult:
        """Answer the application property template.

        The security status is kept on a re-SELECT (SP 800-73), unless the profile
        asks for a YubiKey's behaviour (`reselect_clears_status`).
        """
        if self.config.reselect_clears_status:
            self.deselect()
        return self._apt

    def deselect(self) -> None:
        """Another application was selected: PIV security status becomes FALSE (Pt2 3.1.1)."""
        self.security.deauthenticate(self._role_mask)
        self._mgm.clear()
        self._last_touch = float("-inf")

    def process(self, apdu: CommandAPDU) -> HandlerResult:
        """Dispatch; any command other than GENERAL AUTHENTICATE abandons a 9B dialogue."""
        if apdu.ins != GENERAL_AUTHENTICATE:
            self._mgm.clear()
        return super().process(apdu)

    # ---- security helpers ------------------------------------------------------------

    def require_management(self) -> None:
        if not self.security.is_authenticated(self.config.management_role):
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "management key (9B) not authenticated")

    def pin_verified(self) -> bool:
        """PIV PIN (or the global PIN, when the card has one) verified: reads PIN-protected objects."""
        roles = [self.config.pin_role, self.config.global_pin_role]
        return any(role is not None and self.security.is_authenticated(role) for role in roles)

    def slot_rule(self, entry: KeyEntry) -> AccessRule:
        """The profile's rule for the slot, else the rule the key's PIN policy implies.

        PIN policy ONCE is "any of PIN or global PIN"; ALWAYS adds PIV's PIN-always
        freshness, which the security core enforces (one operation per VERIFY).
        """
        configured = self.config.slot(entry.slot).access
        if configured is not None:
            return configured
        return self._policy_rules[entry.pin_policy]

    def _build_policy_rules(self) -> dict[PinPolicy, AccessRule]:
        pins = frozenset(r for r in (self.config.pin_role, self.config.global_pin_role) if r is not None)
        return {
            PinPolicy.NEVER: AccessRule(),
            PinPolicy.ONCE: AccessRule(any_of=pins),
            PinPolicy.ALWAYS: AccessRule(any_of=pins, always=True),
        }

    def authorize(self, entry: KeyEntry) -> None:
        """Raise 6982 unless the key's access rule holds now; then ask for touch if its policy says so.

        External roles of the rule (a fingerprint reader) are asked at the moment of
        use when they are not already satisfied.
        """
        rule = entry.rule
        if rule is None:
            rule = entry.rule = self.slot_rule(entry)
            entry.rule_has_external = not rule.never and bool(rule.roles & self._external_roles)
        if entry.rule_has_external:
            self._ask_external_roles(rule)
        self.security.check(rule)
        if entry.touch_policy != TouchPolicy.NEVER:
            self._touch(entry.touch_policy)

    def _ask_external_roles(self, rule: AccessRule) -> None:
        for role in sorted(rule.all_of):
            if self._external_unsatisfied(role, rule.always):
                self._ask_external(role)
        if rule.any_of and not any(self._satisfied(r, rule.always) for r in rule.any_of):
            external = [r for r in sorted(rule.any_of) if self._external_unsatisfied(r, rule.always)]
            if external:
                self._ask_external(external[0])

    def _satisfied(self, role: int, fresh: bool) -> bool:
        return self.security.is_authenticated(role) and (not fresh or self.security.is_armed(role))

    def _external_unsatisfied(self, role: int, fresh: bool) -> bool:
        return self.security.role(role).type == RoleType.EXTERNAL and not self._satisfied(role, fresh)

    def _ask_external(self, role: int) -> None:
        try:
            self.security.verify_external(role)
        except ISOError as error:
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, f"external role {role} refused") from error

    def _touch(self, policy: TouchPolicy) -> None:
        """Touch policies are served by an external role (the operator or a profile policy)."""
        if policy == TouchPolicy.NEVER or self.config.touch_role is None:
            return
        now = time.monotonic()
        if policy == TouchPolicy.CACHED and now - self._last_touch < TOUCH_CACHE_SECONDS:
            return
        self._ask_external(self.config.touch_role)
        self.security.deauthenticate(1 << self.config.touch_role)
        self._last_touch = now

    def pin_role_for(self, reference: int, purpose: str) -> int:
        """Role of a PIN reference usable for VERIFY/CHANGE/RESET RETRY, else 6A88."""
        role = self.config.references.get(reference)
        if role is None or reference == REF_MANAGEMENT:
            raise ISOError(SW.REFERENCE_NOT_FOUND, f"no PIN reference {reference:02X}")
        if purpose == "verify" and reference == REF_PUK:
            raise ISOError(SW.REFERENCE_NOT_FOUND, "the PUK cannot be verified")
        return role

    @staticmethod
    def unpad(block: bytes) -> bytes | None:
        """The value inside an 8-byte FF-padded PIN block (None if the block is malformed)."""
        if len(block) > PIN_BLOCK:
            return None
        value = block.rstrip(b"\xff")
        return None if b"\xff" in value else value

    def parse_pin(self, role: int, block: bytes) -> bytes | None:
        """The PIN inside a padded block, or None if it breaks the role's length/charset."""
        pin = self.unpad(block)
        return pin if pin is not None and self.security.well_formed(role, pin) else None

    def fail_malformed(self, role: int) -> ISOError:
        """A malformed PIN costs a try (so `ykman piv reset` can block it): returns 63Cx."""
        left = self.security.record_failure(role)
        return ISOError(verify_failed(left), "malformed PIN")

    @staticmethod
    def object_tag(data: bytes) -> int:
        """The tag list `5C L tag` of GET DATA (one tag of 1..3 bytes)."""
        item = tlv.decode_one(data, 0x5C)
        if not 1 <= len(item.value) <= 3:
            raise ISOError(SW.INCORRECT_DATA, "tag list must hold one tag")
        return int.from_bytes(item.value, "big")
