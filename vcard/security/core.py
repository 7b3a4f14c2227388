"""SecurityCore: the PIN_SET, retry counters, PIN-always, session PINs and resets of one card.

PIN-always
----------
A successful authentication (verify, change, challenge-response, external
verification, session-PIN redemption) *arms* its role. An armed role satisfies
the `always` part of one rule, once: `check` disarms every role when it
evaluates an `always` rule. An arming remembers the number of the command
that made it (`command_number`, which vcard.runtime points at the card's count
of the commands it started; chained fragments of one command count once), and
expires when the command after that one ends: "any other command disarms", as
on a YubiKey. Without a card (applet unit tests on a bare core) the number
stays 0, and an arming lasts until it is consumed, `disarm_always()` is called
or the status drops. An `always` rule is met when its ordinary part holds and at least one of
its roles is armed.

Retry counters and crashes
--------------------------
Every try is consumed and committed (`commit()` returns once the state is on
disk) *before* the value is compared, and the counter is given back only by a
later commit after a match. A crash between the two can cost a correct try but
can never give a wrong one back. Values are compared as PBKDF2 digests with
`hmac.compare_digest`. Failed verification clears the role's bit (PIV: "PIN
status FALSE"). Challenge-response roles follow the same rule through
`authenticate_with`: the applet's constant-time check runs only after the try is
durable.

Session PINs
------------
`issue_session_pin(role)` (role authenticated) returns 16 random bytes from
`secrets`; only their SHA-256 digest is kept, in memory: a card reset or
power-off (`reset`) kills them, any connection may redeem them (pcscd shares
the card), and they are unrelated to the PIN. With the profile setting
`session_pins_survive_warm_reset` only a cold reset (a power cycle) kills them:
a warm reset keeps them, with their failure count and lock-out (the minidriver
spec: "at least until a cold reset"). `redeem_session_pin` answers 6982
for every failure (wrong, expired, other role, locked out) and counts it; after
MAX_SESSION_PIN_FAILURES failures every session PIN is invalidated and
redemption is refused until the card is reset or a new session PIN is issued
(which needs a real authentication). Changing, unblocking or setting a role's
value, or the role becoming blocked, invalidates its session PINs. The idle
reset drops the PIN_SET but keeps session PINs: they belong to the card
session, and re-presenting one is how a host gets its status back.

External PINs
-------------
Roles of type `external` are verified without a value from the host
(`verify_external`): an ExternalPinSource decides (a profile policy, or the
operator through `vcard pinpad`). The try is consumed before asking; approval
gives it back and yields a session PIN; denial keeps it consumed (63Cx); a
timeout gives it back (nothing was presented) and answers 6982; a source that
fails (raises) gives it back too and answers 6F00. While the source waits, the
card lets readers of its state in (`outside_wait`); commands still queue.

State section layout ("security" in state.json)
-----------------------------------------------
    {"format": 1,
     "roles": {
       "1": {"type": "pin", "retries": 3, "tries_left": 3, "default": true,
             "secret": {"kdf": "pbkdf2-sha256", "iterations": 2000,
                        "salt": "<hex>", "hash": "<hex>", "length": 6}},  # or null: no value yet
       "2": {"type": "challenge", "retries": 0, "tries_left": 0, "default": true,
             "algorithm": "3des", "key": "<hex>"},              # key or null
       "4": {"type": "external", ..., "secret": null}}}         # external roles may hold a PIN-pad PIN

`retries` 0 means no counter. `default` stays true until the value is changed.
Role 0 (everyone) and roles of type `empty` are always satisfied and never
appear in the PIN_SET. The PIN_SET and session PINs are volatile (not stored).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from ..apdu import SW, ISOError, verify_failed
from ..crypto import KEY_LENGTHS
from ..errors import StateFieldError
from ..statefields import require_field, require_hex
from .external import ExternalDecision, ExternalOutcome, ExternalPinSource, OperatorPinSource, PolicyPinSource
from .roles import (
    MAX_ROLES,
    PIN_SET_ALL_ROLES,
    PIN_SET_NONE,
    ROLE_EVERYONE,
    AccessRule,
    RoleConfig,
    RoleType,
    UnknownRoleError,
)

log = logging.getLogger("vcard.security")
trace_log = logging.getLogger("vcard.trace")

NO_COUNTER_TRIES = 15
"""What `tries_left` reports for a role without a retry counter: the most a 63Cx status word can say."""
_SUCCESS = int(SW.SUCCESS)
_BLOCKED = int(SW.AUTH_METHOD_BLOCKED)
_NO_COUNTER_STATUS = verify_failed(NO_COUNTER_TRIES)

SESSION_PIN_BYTES = 16  # 128 bits
# A new session PIN does not invalidate the previous few: Windows keeps re-presenting them.
MAX_SESSION_PINS_PER_ROLE = 4
MAX_SESSION_PIN_FAILURES = 3

STATE_FORMAT = 1
PIN_KDF = "pbkdf2-sha256"
# Enough that state.json does not hold PINs in a directly usable form, cheap enough
# (about 0.6 ms) that a PIN-always signature loop is bounded by the signature.
PIN_KDF_ITERATIONS = 2000
SALT_BYTES = 16


def _hash_secret(value: bytes) -> dict[str, Any]:
    """Salted hash of a PIN, with its length: GIDS splits `old || new` by the stored length,
    and keeping it here commits it together with the value it describes."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", value, salt, PIN_KDF_ITERATIONS)
    return {
        "kdf": PIN_KDF,
        "iterations": PIN_KDF_ITERATIONS,
        "salt": salt.hex(),
        "hash": digest.hex(),
        "length": len(value),
    }


def _check_secret(secret: dict[str, Any], where: str) -> None:
    """A stored PIN digest `_secret_matches` can use."""
    kdf = require_field(secret, "kdf", str, where)
    if kdf != PIN_KDF:
        raise StateFieldError(f"{where}.kdf", f"unknown KDF {kdf!r}; this vcard reads {PIN_KDF}")
    require_hex(secret, "salt", where)
    require_hex(secret, "hash", where)
    if require_field(secret, "iterations", int, where) <= 0:
        raise StateFieldError(f"{where}.iterations", "must be positive")
    if require_field(secret, "length", int, where) < 0:
        raise StateFieldError(f"{where}.length", "must not be negative")


def _secret_matches(secret: dict[str, Any], value: bytes) -> bool:
    digest = hashlib.pbkdf2_hmac("sha256", value, bytes.fromhex(secret["salt"]), int(secret["iterations"]))
    return hmac.compare_digest(digest, bytes.fromhex(secret["hash"]))


StatusListener = Callable[[int, int], None]


def _no_card() -> int:
    """`SecurityCore.command_number` of a core without a card: every command is number 0."""
    return 0


class SecurityCore:
    """Roles, PIN_SET status and counters for one card; shared by every applet on it.

    Persistent data (PIN digests, keys, counters) lives in `state` (a JSON
    section) and every counter change is committed with `commit()` *before* the
    verification result is computed or returned (anti-tearing). Thread-safe:
    the card thread, the control socket and tests may call in concurrently.
    """

    def __init__(
        self,
        roles: Iterable[RoleConfig],
        state: dict[str, Any],
        commit: Callable[[], None],
        is_new: bool,
        external: ExternalPinSource | None = None,
        session_pins_survive_warm_reset: bool = False,
    ) -> None:
        configs: dict[int, RoleConfig] = {}
        for config in roles:
            if not 0 <= config.role < MAX_ROLES:
                raise ValueError(f"role {config.role} is out of range 0..{MAX_ROLES - 1}")
            if config.role in configs:
                raise ValueError(f"role {config.role} is declared twice")
            configs[config.role] = config
        if ROLE_EVERYONE not in configs:
            configs[ROLE_EVERYONE] = RoleConfig(
                ROLE_EVERYONE, "everyone", RoleType.EMPTY, min_length=0, retries=0, cache_policy="none"
            )
        self._roles = dict(sorted(configs.items()))
        self._declared_mask = sum(1 << role for role in self._roles)
        self._empty_mask = sum(1 << r for r, config in self._roles.items() if config.type is RoleType.EMPTY)
        self._state = state
        self._commit = commit
        self._lock = threading.RLock()
        self._pin_set = PIN_SET_NONE
        # role -> the number of the command that armed it
        self._armed: dict[int, int] = {}
        # The number of the command the card is processing (vcard.runtime sets it to the card's
        # count); read only when a role is armed or an `always` rule is checked.
        self.command_number: Callable[[], int] = _no_card
        self._sessions: dict[int, list[bytes]] = {}
        self._session_failures = 0
        self._session_locked = False
        self._listeners: list[StatusListener] = []
        self.session_pins_survive_warm_reset = session_pins_survive_warm_reset
        self.operator = external if isinstance(external, OperatorPinSource) else OperatorPinSource()
        # Entered around an external source's wait; the card sets it to let its state
        # lock go meanwhile (vcard.runtime sets it to Card.released).
        self.outside_wait: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        self._sources: dict[int, ExternalPinSource] = {}
        for config in self._roles.values():
            if config.type is RoleType.EXTERNAL:
                self._sources[config.role] = external if external is not None else self._policy_source(config)
        self._load(is_new)

    def _policy_source(self, config: RoleConfig) -> ExternalPinSource:
        if config.external_policy == "operator":
            return self.operator
        return PolicyPinSource(config.external_policy, config.external_delay_ms)

    # ---- persistent state ----------------------------------------------------------

    @staticmethod
    def _initial_record(config: RoleConfig) -> dict[str, Any]:
        record: dict[str, Any] = {
            "type": config.type.value,
            "retries": config.retries,
            "tries_left": config.retries,
            "default": True,
        }
        if config.type in (RoleType.PIN, RoleType.EXTERNAL):
            record["secret"] = _hash_secret(config.initial) if config.initial else None
        elif config.type is RoleType.CHALLENGE:
            record["algorithm"] = config.algorithm or "3des"
            record["key"] = config.initial.hex() if config.initial else None
        return record

    def _load(self, is_new: bool) -> None:
        """A new card gets the profile's roles; an existing card's section is checked, never re-made.

        Whatever cannot be read is refused (StateFieldError naming the field): replacing
        it with the profile's values would hand a blocked PIN its tries back. That holds
        for a role the profile declares and the state lacks too: deleting a blocked
        role's record must not bring it back with the profile's PIN and counter.
        """
        state = self._state
        if is_new:
            state.clear()
            state["format"] = STATE_FORMAT
            state["roles"] = {str(r): self._initial_record(c) for r, c in self._roles.items()}
            return
        found = require_field(state, "format", int, "")
        if found != STATE_FORMAT:
            raise StateFieldError("format", f"unknown format {found}; this vcard reads format {STATE_FORMAT}")
        records: dict[str, Any] = require_field(state, "roles", dict, "")
        for number, config in self._roles.items():
            self._check_record(config, require_field(records, str(number), dict, "roles"))

    @staticmethod
    def _check_record(config: RoleConfig, record: dict[str, Any]) -> None:
        """Refuse at load what would otherwise fail mid-command (6F00), after a try was already consumed."""
        where = f"roles.{config.role}"
        kind = require_field(record, "type", str, where)
        if kind != config.type.value:
            raise StateFieldError(
                f"{where}.type", f"is {kind!r}, but the profile declares a {config.type.value} role"
            )
        retries = require_field(record, "retries", int, where)
        left = require_field(record, "tries_left", int, where)
        if not 0 <= retries <= 15:
            raise StateFieldError(f"{where}.retries", f"{retries} is outside 0..15")
        if not 0 <= left <= retries:
            raise StateFieldError(f"{where}.tries_left", f"{left} is outside 0..{retries} (the retry limit)")
        require_field(record, "default", bool, where)
        if config.type in (RoleType.PIN, RoleType.EXTERNAL):
            secret = require_field(record, "secret", dict, where, optional=True)
            if secret is not None:
                _check_secret(secret, f"{where}.secret")
        elif config.type is RoleType.CHALLENGE:
            algorithm = require_field(record, "algorithm", str, where)
            if algorithm not in KEY_LENGTHS:
                raise StateFieldError(f"{where}.algorithm", f"unknown key algorithm {algorithm!r}")
            key = require_hex(record, "key", where, optional=True)
            if key is not None and len(key) != 2 * KEY_LENGTHS[algorithm]:
                raise StateFieldError(f"{where}.key", f"a {algorithm} key has {KEY_LENGTHS[algorithm]} bytes")

    def _record(self, role: int) -> dict[str, Any]:
        record: dict[str, Any] = self._state["roles"][str(role)]
        return record

    # ---- status --------------------------------------------------------------------

    @property
    def pin_set(self) -> int:
        """Bitmask of authenticated roles (bit n = role n)."""
        return self._pin_set

    def is_authenticated(self, role: int) -> bool:
        """True for authenticated roles and for roles of type empty (everyone)."""
        config = self.role(role)
        return config.type is RoleType.EMPTY or bool(self._pin_set >> role & 1)

    def verified_status(self, role: int) -> int:
        """What VERIFY without data (ISO 7816-4) answers for `role`: 9000, 63Cx or 6983.

        9000 when the role is authenticated or of type empty; else 63Cx with the tries
        left (63CF for a role without a counter), or 6983 when it is blocked. Asking
        costs no try. A status word, not an exception: hosts poll it, and the answer is
        the command's result rather than its failure (see vcard.apdu.status).
        """
        # Hosts poll this, so it reads without the lock: what it reads changes only inside
        # commands and power events, which the card runs one at a time with this one.
        config = self._roles.get(role)
        if config is None:
            raise UnknownRoleError(role)
        if config.type is RoleType.EMPTY or self._pin_set >> role & 1:
            return _SUCCESS
        record = self._record(role)
        if record["retries"] <= 0:
            return _NO_COUNTER_STATUS
        tries = int(record["tries_left"])
        return verify_failed(tries) if tries else _BLOCKED

    def role(self, role: int) -> RoleConfig:
        """The role's configuration; UnknownRoleError (a KeyError answering 6A88) if undeclared."""
        config = self._roles.get(role) if isinstance(role, int) else None
        if config is None:
            raise UnknownRoleError(role)
        return config

    @property
    def roles(self) -> tuple[RoleConfig, ...]:
        return tuple(self._roles.values())

    def tries_left(self, role: int) -> int:
        """Tries before the role blocks; NO_COUNTER_TRIES (15) for roles without a counter."""
        config = self.role(role)
        if config.type is RoleType.EMPTY:
            return NO_COUNTER_TRIES
        record = self._record(role)
        return int(record["tries_left"]) if record["retries"] > 0 else NO_COUNTER_TRIES

    def retry_limit(self, role: int) -> int:
        """The role's current retry limit (0 = no counter)."""
        self.role(role)
        return int(self._record(role)["retries"])

    def is_blocked(self, role: int) -> bool:
        self.role(role)
        record = self._record(role)
        return bool(record["retries"] > 0 and record["tries_left"] == 0)

    def is_default_value(self, role: int) -> bool:
        """True until the role's value was changed from the profile's (PIV metadata 'default')."""
        self.role(role)
        return bool(self._record(role).get("default", False))

    def has_value(self, role: int) -> bool:
        config = self.role(role)
        record = self._record(role)
        if config.type is RoleType.CHALLENGE:
            return record.get("key") is not None
        return record.get("secret") is not None

    def value_length(self, role: int) -> int | None:
        """Length of a PIN role's current value (None when it has none).

        GIDS CHANGE REFERENCE DATA sends old || new without a separator; the card
        splits it by this length, which changes in the same commit as the value.
        """
        with self._lock:
            secret = self._record(role).get("secret")
            return None if secret is None else int(secret["length"])

    def well_formed(self, role: int, value: bytes) -> bool:
        """Whether `value` fits the role's declared length and charset."""
        return self.role(role).well_formed(value)

    def change_permission(self, role: int) -> int:
        """PIN_SET of roles that may change this one (itself, with the old value, plus changed_by)."""
        config = self.role(role)
        mask = 0 if config.type in (RoleType.EMPTY, RoleType.EXTERNAL) else 1 << role
        for other in config.changed_by:
            mask |= 1 << other
        return mask

    def unblock_permission(self, role: int) -> int:
        config = self.role(role)
        return 0 if config.unblocked_by is None else 1 << config.unblocked_by

    def check(self, rule: AccessRule) -> None:
        """Raise ISOError(SECURITY_STATUS_NOT_SATISFIED) unless `rule` holds; consume 'always'.

        A role holds when it is authenticated or of type empty; a role the profile does
        not declare never holds. Computed on bitmasks: a signature checks its rule.
        """
        if not (rule.always or rule.never):
            # One read of PIN_SET decides, so the lock would add nothing: a deauthentication
            # racing with this check lands before or after it either way.
            held = (self._pin_set & self._declared_mask) | self._empty_mask
            if held & rule.all_mask == rule.all_mask and (not rule.any_mask or held & rule.any_mask):
                return
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, f"access rule {rule} not met")
        with self._lock:
            if rule.never:
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "access rule: never")
            held = (self._pin_set & self._declared_mask) | self._empty_mask
            satisfied = held & rule.all_mask == rule.all_mask and (
                not rule.any_mask or bool(held & rule.any_mask)
            )
            if rule.always:
                armed = self._armed_roles()
                self._armed.clear()
                if armed:
                    trace_log.debug("PIN-always consumed by one operation (%s)", rule)
                satisfied = satisfied and bool(armed & rule.roles)
            if not satisfied:
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, f"access rule {rule} not met")

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call `listener(old_pin_set, new_pin_set)` after every PIN_SET change (applet volatile data)."""
        self._listeners.append(listener)

    # ---- PIN-always window -----------------------------------------------------------

    def _armed_roles(self) -> set[int]:
        """The roles armed by this command or the one before it (older armings have expired)."""
        if not self._armed:
            return set()
        now = self.command_number()
        return {r for r, number in self._armed.items() if now - number <= 1}

    def _arm(self, role: int) -> None:
        self._armed[role] = self.command_number()

    def is_armed(self, role: int) -> bool:
        """Whether `role` would satisfy the `always` part of a rule right now."""
        with self._lock:
            return role in self._armed_roles()

    def disarm_always(self, roles: int = PIN_SET_ALL_ROLES) -> None:
        """Forget fresh authentications (the next `always` rule fails); `roles` is a PIN_SET."""
        with self._lock:
            for r in [r for r in self._armed if roles >> r & 1]:
                del self._armed[r]

    # ---- status changes ----------------------------------------------------------------

    def _set_pin_set(self, new: int, reason: str) -> None:
        old = self._pin_set
        if new == old:
            return
        self._pin_set = new
        if trace_log.isEnabledFor(logging.DEBUG):
            changes = [f"+role {r}" for r in range(MAX_ROLES) if new >> r & 1 and not old >> r & 1]
            changes += [f"-role {r}" for r in range(MAX_ROLES) if old >> r & 1 and not new >> r & 1]
            trace_log.debug("PIN_SET 0x%02X -> 0x%02X (%s: %s)", old, new, ", ".join(changes), reason)
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:  # a listener bug must not leave the status half-changed
                log.exception("security status listener failed")

    def _grant(self, role: int, reason: str) -> None:
        """Mark `role` authenticated and freshly so; restore its counter durably."""
        self._restore_tries(role)
        self._set_pin_set(self._pin_set | 1 << role, reason)
        self._arm(role)

    def _drop(self, mask: int, reason: str) -> None:
        self._armed = {r: i for r, i in self._armed.items() if not mask >> r & 1}
        self._set_pin_set(self._pin_set & ~mask & 0xFF, reason)

    def authenticate(self, role: int) -> None:
        """Set the bit after an applet-run challenge-response succeeded."""
        with self._lock:
            config = self.role(role)
            if config.type is RoleType.EMPTY:
                return
            if self.is_blocked(role):
                raise ISOError(SW.AUTH_METHOD_BLOCKED, f"role {role} is blocked")
            self._grant(role, "authenticate")

    def authenticate_with(
        self,
        role: int,
        check: Callable[[bytes, str], bool],
        *,
        mismatch: SW = SW.SECURITY_STATUS_NOT_SATISFIED,
        before_grant: Callable[[], None] | None = None,
    ) -> None:
        """Challenge-response with the PIN discipline: the try is durable before `check` compares.

        `check(key, algorithm)` is the applet's constant-time comparison of the
        host's cryptogram; only the step that compares may call this, never a
        step that hands out a witness or challenge (a success restores the
        counter, so a comparison-free success would let anyone refill tries).
        Blocked: 6983 and nothing is consumed. No key: 6984. Mismatch (False):
        the failure rules of a wrong PIN (bit cleared, blocked at zero, session
        PINs of a blocked role invalidated) and ISOError(`mismatch`), the
        applet's own status word rather than 63Cx. If `check` raises, the try
        stays consumed, the same failure rules apply and its error goes through.
        Match: the counter is restored durably; then `before_grant` (a user
        presence step such as a PIV touch) runs without the core lock, so an
        operator can answer through the control socket, and may raise to refuse
        the grant; then the role is granted and armed as by `authenticate`.
        """
        with self._lock:
            config = self.role(role)
            if config.type is not RoleType.CHALLENGE:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} holds no key")
            self._require_unblocked(role)
            key, algorithm = self.value(role), self.key_algorithm(role)
            left = self._consume_try(role)
            try:
                matched = check(key, algorithm)
            except BaseException:
                self._failed(role, left, "challenge-response check raised")
                raise
            if not matched:
                self._failed(role, left, "challenge-response failed")
                raise ISOError(mismatch, f"role {role}: wrong cryptogram")
            self._restore_tries(role)
        if before_grant is not None:
            before_grant()
        with self._lock:
            self._grant(role, "challenge-response")

    def deauthenticate(self, pin_set: int) -> None:
        """Clear only the bits in `pin_set` (session PINs stay valid)."""
        with self._lock:
            self._drop(pin_set & 0xFF, "deauthenticate")

    def reset(self, cold: bool = True) -> None:
        """Card reset: clear every bit; clear every session PIN unless the reset is warm and kept.

        The Card's `on_reset(cold)`: a power cycle is cold, a warm reset (vpcd 02,
        SCARD_RESET_CARD) is not. Session PINs end with both by default ("until
        card reset or power-off"); with `session_pins_survive_warm_reset`
        (a profile setting) they, and their failure count and lockout, outlive a
        warm reset, as the minidriver spec asks ("at least until a cold reset").
        """
        with self._lock:
            kept = not cold and self.session_pins_survive_warm_reset
            self._drop(PIN_SET_ALL_ROLES, "cold reset" if cold else "warm reset")
            self._armed.clear()
            if kept:
                if self._sessions:
                    log.info("warm reset: session PINs kept (session_pins_survive_warm_reset)")
                return
            self._sessions.clear()
            self._session_failures = 0
            self._session_locked = False

    def idle_reset(self, idle_seconds: float | None = None) -> None:
        """Drop the whole security status after an idle period; session PINs survive."""
        with self._lock:
            reason = "idle reset" if idle_seconds is None else f"idle reset after {idle_seconds:.1f} s"
            self._armed.clear()
            self._drop(PIN_SET_ALL_ROLES, reason)

    # ---- counters ------------------------------------------------------------------------

    def _consume_try(self, role: int) -> int:
        """Take one try and make it durable before anything is compared; returns tries left."""
        record = self._record(role)
        if record["retries"] <= 0:
            return NO_COUNTER_TRIES
        record["tries_left"] = max(0, int(record["tries_left"]) - 1)
        self._commit()
        return int(record["tries_left"])

    def _failed(self, role: int, left: int, reason: str) -> ISOError:
        """Status after a wrong value; the error to raise (63Cx, 6300 without a counter)."""
        self._drop(1 << role, reason)
        if self._record(role)["retries"] <= 0:
            return ISOError(SW.VERIFY_FAILED, f"role {role}: wrong value")
        if left == 0:
            self._invalidate(role, "blocked")
            log.info("role %d is now blocked", role)
        return ISOError(verify_failed(left), f"role {role}: wrong value")

    def _require_unblocked(self, role: int) -> None:
        if self.is_blocked(role):
            self._drop(1 << role, "blocked")
            raise ISOError(SW.AUTH_METHOD_BLOCKED, f"role {role} is blocked")

    def _secret(self, role: int) -> dict[str, Any]:
        secret: dict[str, Any] | None = self._record(role).get("secret")
        if secret is None:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"role {role} has no value")
        return secret

    def _match(self, role: int, value: bytes, reason: str) -> None:
        """The PIN comparison with its anti-tearing discipline: the try is durable before comparing.

        Returns on a match with the try still consumed (the caller restores the
        counter, in the same commit as its own change when it has one); raises
        63Cx / 6983 / 6984 otherwise.
        """
        self._require_unblocked(role)
        secret = self._secret(role)
        left = self._consume_try(role)
        if not _secret_matches(secret, value):
            raise self._failed(role, left, f"{reason} failed")

    def _restore_tries(self, role: int) -> None:
        record = self._record(role)
        if record["retries"] > 0 and record["tries_left"] != record["retries"]:
            record["tries_left"] = record["retries"]
            self._commit()

    # ---- PIN roles -----------------------------------------------------------------------

    def verify(self, role: int, value: bytes) -> None:
        """Compare in constant time; success sets the bit and restores the counter.

        Failure raises ISOError(63Cx) and clears the bit; blocked raises
        ISOError(6983); no value set raises 6984. Malformed values (length/charset)
        are checked by the applet, which decides whether they cost a try (PIV: yes,
        via `record_failure`). Roles of type empty verify trivially; challenge and
        external roles answer 6985 (use `authenticate` / `verify_external`).
        """
        with self._lock:
            config = self.role(role)
            if config.type is RoleType.EMPTY:
                return
            if config.type is not RoleType.PIN:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} is not verified with a PIN")
            self._match(role, bytes(value), "verify")
            self._grant(role, "verify")

    def record_failure(self, role: int) -> int:
        """Consume one try durably without comparing; returns tries left."""
        with self._lock:
            config = self.role(role)
            if config.type is RoleType.EMPTY:
                return NO_COUNTER_TRIES
            if self.is_blocked(role):
                self._drop(1 << role, "blocked")
                return 0
            left = self._consume_try(role)
            self._drop(1 << role, "failed verification")
            if left == 0 and self._record(role)["retries"] > 0:
                self._invalidate(role, "blocked")
            return left

    def change(self, role: int, old: bytes, new: bytes) -> None:
        """CHANGE REFERENCE DATA: old value (costs a try when wrong), then the new one.

        Order as PIV and GIDS answer it: blocked 6983; wrong old 63Cx; right old
        but malformed new 6A80 (counter restored, nothing changed). Success
        replaces the value, restores the counter, leaves the role authenticated
        (PIV and GIDS: status TRUE) and invalidates its session PINs.
        """
        with self._lock:
            config = self.role(role)
            if config.type is not RoleType.PIN:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} is not changed with a PIN")
            self._match(role, bytes(old), "change")
            if not config.well_formed(new):
                self._restore_tries(role)
                raise ISOError(
                    SW.INCORRECT_DATA, f"role {role}: the new value does not fit the role's format"
                )
            self._store_value(role, bytes(new), None, None, "change")

    def unblock(self, role: int, unblocker: int, unblocker_value: bytes, new: bytes) -> None:
        """RESET RETRY COUNTER: the unblocker proves itself, then `role` gets `new` and a full counter.

        A PIN unblocker (PUK) is compared with its own counter (wrong: 63Cx of
        the PUK, even if `new` is malformed); a challenge or external unblocker
        (admin key) must already be authenticated and `unblocker_value` must be
        empty. Then a malformed `new` answers 6A80. The role's status is unchanged.
        """
        with self._lock:
            config = self.role(role)
            unblocker_config = self.role(unblocker)
            if config.unblocked_by != unblocker:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {unblocker} does not unblock role {role}")
            if config.type not in (RoleType.PIN, RoleType.EXTERNAL):
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} has no PIN to reset")
            if unblocker_config.type is RoleType.PIN:
                self._match(unblocker, bytes(unblocker_value), "unblock")
                self._restore_tries(unblocker)
            elif unblocker_value or not self.is_authenticated(unblocker):
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, f"role {unblocker} is not authenticated")
            if not config.well_formed(new):
                raise ISOError(
                    SW.INCORRECT_DATA, f"role {role}: the new value does not fit the role's format"
                )
            self._store_value(role, bytes(new), None, None, None)

    def set_value(
        self, role: int, new: bytes, retries: int | None = None, algorithm: str | None = None
    ) -> None:
        """Set a PIN or key value outright (admin-authorised paths, card init); the caller checks rights.

        PIN values must be well formed (else 6A80); challenge keys must have the
        length of `algorithm` (default: the role's current one). Restores the
        counter (to `retries` if given, which also becomes the limit) and
        invalidates the role's session PINs; the status is unchanged.
        """
        with self._lock:
            config = self.role(role)
            if config.type is RoleType.EMPTY:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} has no value")
            if retries is not None and not 0 <= retries <= 15:
                raise ValueError(f"retries must be 0..15, got {retries}")
            if config.type is RoleType.CHALLENGE:
                wanted = algorithm or str(self._record(role).get("algorithm") or config.algorithm or "3des")
                if wanted not in KEY_LENGTHS:
                    raise ValueError(f"unknown key algorithm {wanted!r}")
                if len(new) != KEY_LENGTHS[wanted]:
                    raise ISOError(SW.INCORRECT_DATA, f"a {wanted} key has {KEY_LENGTHS[wanted]} bytes")
                algorithm = wanted
            elif not config.well_formed(new):
                raise ISOError(SW.INCORRECT_DATA, f"role {role}: the value does not fit the role's format")
            self._store_value(role, bytes(new), retries, algorithm, None)

    def _store_value(
        self, role: int, new: bytes, retries: int | None, algorithm: str | None, grant_reason: str | None
    ) -> None:
        config = self.role(role)
        record = self._record(role)
        if config.type is RoleType.CHALLENGE:
            record["key"] = new.hex()
            if algorithm is not None:
                record["algorithm"] = algorithm
        else:
            record["secret"] = _hash_secret(new)
        if retries is not None:
            record["retries"] = retries
        record["tries_left"] = record["retries"]
        same_value = hmac.compare_digest(new, config.initial)  # the initial value is a secret too
        record["default"] = same_value and (algorithm is None or algorithm == config.algorithm)
        self._invalidate(role, "value changed")
        self._commit()
        if grant_reason is not None:
            self._grant(role, grant_reason)

    def set_retry_limit(self, role: int, retries: int) -> None:
        """New retry limit (0 = no counter, challenge roles only); the counter is restored to it."""
        with self._lock:
            config = self.role(role)
            low = 0 if config.type is RoleType.CHALLENGE else 1
            if not low <= retries <= 15:
                raise ValueError(f"role {role}: retries must be {low}..15, got {retries}")
            record = self._record(role)
            record["retries"] = retries
            record["tries_left"] = retries
            self._commit()

    def value(self, role: int) -> bytes:
        """Key bytes of a CHALLENGE role (the applet runs the challenge-response)."""
        with self._lock:
            config = self.role(role)
            if config.type is not RoleType.CHALLENGE:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} holds no key")
            key = self._record(role).get("key")
            if key is None:
                raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"role {role} has no key")
            return bytes.fromhex(key)

    def key_algorithm(self, role: int) -> str:
        """Algorithm of a CHALLENGE role's current key ("3des", "aes128", ...)."""
        with self._lock:
            config = self.role(role)
            if config.type is not RoleType.CHALLENGE:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} holds no key")
            return str(self._record(role).get("algorithm") or config.algorithm or "3des")

    def factory_reset(self) -> None:
        """Every role back to the profile's value and counter (YubiKey-style RESET); status cleared."""
        with self._lock:
            self.reset()
            self._state["roles"] = {str(r): self._initial_record(c) for r, c in self._roles.items()}
            self._commit()

    # ---- session PINs -----------------------------------------------------------------------

    def issue_session_pin(self, role: int) -> bytes:
        """A new session PIN for an authenticated role (>= 128 random bits, never derived from the PIN)."""
        with self._lock:
            config = self.role(role)
            if config.type is RoleType.EMPTY:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} needs no session PIN")
            if not self._pin_set >> role & 1:
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, f"role {role} is not authenticated")
            token = secrets.token_bytes(SESSION_PIN_BYTES)
            digests = self._sessions.setdefault(role, [])
            digests.append(hashlib.sha256(token).digest())
            del digests[:-MAX_SESSION_PINS_PER_ROLE]
            self._session_failures = 0
            self._session_locked = False
            log.info("issued a session PIN for role %d", role)
            return token

    def redeem_session_pin(self, role: int, token: bytes) -> None:
        """Authenticate `role` with a session PIN; every failure is the same 6982 and is counted."""
        with self._lock:
            self.role(role)
            digest = hashlib.sha256(bytes(token)).digest()
            matched = False
            for candidate in self._sessions.get(role, ()):
                matched |= hmac.compare_digest(candidate, digest)
            if matched and not self._session_locked and not self.is_blocked(role):
                self._grant(role, "session PIN")
                return
            self._session_failures += 1
            if self._session_failures >= MAX_SESSION_PIN_FAILURES and not self._session_locked:
                self._session_locked = True
                self._sessions.clear()
                log.warning(
                    "%d failed session PIN redemptions: every session PIN is invalidated",
                    self._session_failures,
                )
            raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "session PIN not accepted")

    def invalidate_session_pins(self, role: int | None = None) -> None:
        """Forget the session PINs of `role`, or of every role."""
        with self._lock:
            if role is None:
                self._sessions.clear()
            else:
                self.role(role)
                self._invalidate(role, "invalidated")

    def _invalidate(self, role: int, reason: str) -> None:
        if self._sessions.pop(role, None):
            log.info("session PINs of role %d invalidated (%s)", role, reason)

    def session_pin_count(self, role: int) -> int:
        with self._lock:
            return len(self._sessions.get(role, ()))

    @property
    def session_pins_locked(self) -> bool:
        """True after too many failed redemptions, until a reset or a new issuance."""
        return self._session_locked

    # ---- external PINs ------------------------------------------------------------------------

    def set_external_source(self, role: int, source: ExternalPinSource) -> None:
        """Replace the source deciding an external role (tests, runtime wiring)."""
        with self._lock:
            if self.role(role).type is not RoleType.EXTERNAL:
                raise ValueError(f"role {role} is not external")
            self._sources[role] = source

    def verify_external(self, role: int, timeout: float | None = None) -> bytes:
        """Verify an external role through its source; returns a session PIN (role left authenticated).

        The try is consumed and committed before the source is asked. Approve or
        a right entered PIN: counter restored, bit set, session PIN returned.
        Deny or a wrong entered PIN: 63Cx (6300 without a counter); blocked:
        6983; timeout: the try is given back, 6982.
        """
        with self._lock:
            config = self.role(role)
            if config.type is not RoleType.EXTERNAL:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, f"role {role} is not an external role")
            self._require_unblocked(role)
            source = self._sources[role]
            before = int(self._record(role)["tries_left"])
            left = self._consume_try(role)
        wait = config.external_timeout if timeout is None else timeout
        # Neither the core lock nor the card's state lock is held while a person
        # decides: the control socket (`vcard info`, `vcard pinpad`) must keep working.
        decision: ExternalDecision | None
        try:
            with self.outside_wait():
                decision = source.decide(role, wait)
        except Exception:
            # A broken PIN pad is not a wrong PIN: nothing was presented.
            log.exception("external PIN source failed for role %d; the try is given back", role)
            decision = None
        with self._lock:
            if decision is None or decision.outcome is ExternalOutcome.TIMEOUT:
                record = self._record(role)
                if record["retries"] > 0 and record["tries_left"] < before:
                    record["tries_left"] = before
                    self._commit()
                if decision is None:
                    raise ISOError(SW.NO_PRECISE_DIAGNOSIS, f"role {role}: the external PIN source failed")
                raise ISOError(
                    SW.SECURITY_STATUS_NOT_SATISFIED, f"role {role}: external verification timed out"
                )
            approved = decision.outcome is ExternalOutcome.APPROVE
            if decision.outcome is ExternalOutcome.PIN:
                secret = self._record(role).get("secret")
                approved = secret is not None and _secret_matches(secret, decision.pin)
            if not approved:
                raise self._failed(role, left, "external verification failed")
            self._grant(role, "external verification")
            return self.issue_session_pin(role)

    # ---- reporting ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for `vcard info` (no values, digests or session PINs)."""
        with self._lock:
            roles: list[dict[str, Any]] = []
            for number, config in self._roles.items():
                entry: dict[str, Any] = {
                    "role": number,
                    "label": config.label,
                    "type": config.type.value,
                    "purpose": config.purpose,
                    "cache_policy": config.cache_policy,
                    "authenticated": self.is_authenticated(number),
                }
                if config.type is not RoleType.EMPTY:
                    limit = self.retry_limit(number)
                    entry["retries"] = limit if limit else "unlimited"
                    entry["tries_left"] = self.tries_left(number) if limit else "unlimited"
                    entry["blocked"] = self.is_blocked(number)
                    entry["value_set"] = self.has_value(number)
                    entry["default_value"] = self.is_default_value(number)
                    entry["session_pins"] = len(self._sessions.get(number, ()))
                if config.type in (RoleType.PIN, RoleType.EXTERNAL):
                    entry["length"] = f"{config.min_length}-{config.max_length}"
                    entry["charset"] = config.charset.value
                if config.type is RoleType.CHALLENGE:
                    entry["algorithm"] = self.key_algorithm(number)
                if config.type is RoleType.EXTERNAL:
                    entry["external_policy"] = config.external_policy
                    entry["external_timeout_s"] = config.external_timeout
                if config.unblocked_by is not None:
                    entry["unblocked_by"] = config.unblocked_by
                if config.changed_by:
                    entry["changed_by"] = list(config.changed_by)
                roles.append(entry)
            return {
                "pin_set": f"0x{self._pin_set:02X}",
                "authenticated_roles": [r for r in range(MAX_ROLES) if self._pin_set >> r & 1],
                "session_pins_locked": self._session_locked,
                "roles": roles,
            }
