"""Card-level vendor commands (session PINs, external PINs, PIN_SET) and the idle reset.

These commands belong to the card, not to an applet: they act on the shared
SecurityCore, so they work whatever applet is selected (and with none). They use
the proprietary class 80 and INS 5A-5F, which no ISO, PIV, YubiKey, GIDS or
GlobalPlatform command uses; the card routes them before the selected applet.
The wire format is documented in docs/vendor-commands.md.

| INS | command              | P1                           | P2   | data            | answer            |
|-----|----------------------|------------------------------|------|-----------------|-------------------|
| 5A  | GET CAPABILITIES     | 00                           | 00   | -               | E0 template       |
| 5B  | GET PIN_SET          | 00                           | 00   | -               | 1 byte PIN_SET    |
| 5C  | ISSUE SESSION PIN    | 00 keep / 01 drop status     | role | -               | 16-byte token     |
| 5D  | VERIFY SESSION PIN   | 00                           | role | token           | -                 |
| 5E  | VERIFY EXTERNAL      | 00 keep / 01 drop status     | role | -               | 16-byte token     |
| 5F  | DEAUTHENTICATE       | 00 / 01 + kill session PINs  | 00   | 1 byte PIN_SET  | -                 |

`install_vendor_commands` also installs the command hook that bounds the
PIN-always window (see vcard.security); `install_idle_reset` the Windows-8-like
idle rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from . import tlv
from .apdu import SW, CommandAPDU, ISOError
from .cardos import Card, HandlerResult
from .security import (
    CACHE_POLICY_CODES,
    MAX_ROLES,
    MAX_SESSION_PIN_FAILURES,
    PURPOSE_CODES,
    SECRET_TYPE_CODES,
    SESSION_PIN_BYTES,
    Charset,
    RoleType,
    SecurityCore,
)

log = logging.getLogger("vcard.vendor")

VENDOR_CLA = 0x80
INS_GET_CAPABILITIES = 0x5A
INS_GET_PIN_SET = 0x5B
INS_ISSUE_SESSION_PIN = 0x5C
INS_VERIFY_SESSION_PIN = 0x5D
INS_VERIFY_EXTERNAL = 0x5E
INS_DEAUTHENTICATE = 0x5F

CAPABILITIES_FORMAT = 1

# GET CAPABILITIES template (tag E0, private constructed) and its children.
TAG_CAPABILITIES = 0xE0
TAG_FORMAT = 0x80
TAG_FEATURES = 0x81
TAG_PIN_SET = 0x82
TAG_IDLE_RESET_MS = 0x83
TAG_SESSION_PIN_LENGTH = 0x84
TAG_SESSION_PIN_MAX_FAILURES = 0x85
TAG_CARD_FLAGS = 0x86
TAG_ROLE = 0xA0
# Children of a role template A0.
TAG_ROLE_NUMBER = 0x80
TAG_ROLE_TYPE = 0x81  # SECRET_TYPE
TAG_ROLE_PURPOSE = 0x82  # SECRET_PURPOSE
TAG_ROLE_CACHE_POLICY = 0x83  # PIN_CACHE_POLICY_TYPE
TAG_ROLE_TRIES_LEFT = 0x84  # FF = no counter
TAG_ROLE_RETRY_LIMIT = 0x85  # 00 = no counter
TAG_ROLE_STATUS = 0x86
TAG_ROLE_CHANGE_PERMISSION = 0x87  # PIN_SET
TAG_ROLE_UNBLOCK_PERMISSION = 0x88  # PIN_SET
TAG_ROLE_MIN_LENGTH = 0x89
TAG_ROLE_MAX_LENGTH = 0x8A
TAG_ROLE_CHARSET = 0x8B
TAG_ROLE_PIN_STRENGTH = 0x8C  # CARD_PIN_STRENGTH_* for CardAuthenticateEx
TAG_ROLE_LABEL = 0x8D  # UTF-8

FEATURE_SESSION_PINS = 0x0001
FEATURE_EXTERNAL_PINS = 0x0002
FEATURE_DEAUTHENTICATE = 0x0004
FEATURE_IDLE_RESET = 0x0008
FEATURE_PIN_ALWAYS_WINDOW = 0x0010
FEATURE_SESSION_PINS_SURVIVE_WARM_RESET = 0x0020

CARD_FLAG_SESSION_PINS_LOCKED = 0x01

ROLE_STATUS_AUTHENTICATED = 0x01
ROLE_STATUS_BLOCKED = 0x02
ROLE_STATUS_DEFAULT_VALUE = 0x04
ROLE_STATUS_VALUE_SET = 0x08

CARD_PIN_STRENGTH_PLAINTEXT = 0x1
CARD_PIN_STRENGTH_SESSION_PIN = 0x2

CHARSET_CODES: dict[Charset, int] = {Charset.DIGITS: 0, Charset.ALPHANUMERIC: 1, Charset.ANY: 2}

P1_KEEP_STATUS = 0x00
P1_DROP_STATUS = 0x01  # GENERATE_SESSION_PIN semantics: "this call does not leave the card unlocked"
P1_INVALIDATE_SESSION_PINS = 0x01


def _byte(value: int) -> bytes:
    return bytes([value & 0xFF])


class VendorCommands:
    """The handlers of one card; `install_vendor_commands` registers them."""

    def __init__(self, card: Card, security: SecurityCore) -> None:
        self.card = card
        self.security = security
        self.idle_reset_seconds = 0.0

    def table(self) -> dict[int, Callable[[CommandAPDU], HandlerResult]]:
        return {
            INS_GET_CAPABILITIES: self.get_capabilities,
            INS_GET_PIN_SET: self.get_pin_set,
            INS_ISSUE_SESSION_PIN: self.issue_session_pin,
            INS_VERIFY_SESSION_PIN: self.verify_session_pin,
            INS_VERIFY_EXTERNAL: self.verify_external,
            INS_DEAUTHENTICATE: self.deauthenticate,
        }

    # ---- helpers ----------------------------------------------------------------------

    @staticmethod
    def _role(apdu: CommandAPDU) -> int:
        if apdu.p2 >= MAX_ROLES:
            raise ISOError(SW.INCORRECT_P1P2, f"P2 must be a role 0-{MAX_ROLES - 1}")
        return apdu.p2

    @staticmethod
    def _no_data(apdu: CommandAPDU) -> None:
        if apdu.data:
            raise ISOError(SW.WRONG_LENGTH, "this command takes no data")

    @staticmethod
    def _p1(apdu: CommandAPDU, allowed: tuple[int, ...]) -> int:
        if apdu.p1 not in allowed:
            raise ISOError(SW.INCORRECT_P1P2)
        return apdu.p1

    def before_command(self) -> None:
        """Tell the core a command starts, so a PIN-always arming lasts one command.

        Fragments of a command chain after the first are the same command.
        """
        self.security.begin_command(continuation=self.card.in_chain)

    # ---- commands ---------------------------------------------------------------------

    def get_capabilities(self, apdu: CommandAPDU) -> bytes:
        """What the card supports and every role's PIN_INFO-like data (feature detection)."""
        self._p1(apdu, (0x00,))
        if apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        self._no_data(apdu)
        security = self.security
        features = FEATURE_SESSION_PINS | FEATURE_DEAUTHENTICATE | FEATURE_PIN_ALWAYS_WINDOW
        if any(role.type is RoleType.EXTERNAL for role in security.roles):
            features |= FEATURE_EXTERNAL_PINS
        if self.idle_reset_seconds > 0:
            features |= FEATURE_IDLE_RESET
        if security.session_pins_survive_warm_reset:
            features |= FEATURE_SESSION_PINS_SURVIVE_WARM_RESET
        children = [
            tlv.encode(TAG_FORMAT, _byte(CAPABILITIES_FORMAT)),
            tlv.encode(TAG_FEATURES, features.to_bytes(2, "big")),
            tlv.encode(TAG_PIN_SET, _byte(security.pin_set)),
            tlv.encode(TAG_IDLE_RESET_MS, round(self.idle_reset_seconds * 1000).to_bytes(4, "big")),
            tlv.encode(TAG_SESSION_PIN_LENGTH, _byte(SESSION_PIN_BYTES)),
            tlv.encode(TAG_SESSION_PIN_MAX_FAILURES, _byte(MAX_SESSION_PIN_FAILURES)),
            tlv.encode(
                TAG_CARD_FLAGS, _byte(CARD_FLAG_SESSION_PINS_LOCKED if security.session_pins_locked else 0)
            ),
        ]
        children += [self._role_template(role.role) for role in security.roles]
        return tlv.encode(TAG_CAPABILITIES, children)

    def _role_template(self, number: int) -> bytes:
        security = self.security
        config = security.role(number)
        limit = 0 if config.type is RoleType.EMPTY else security.retry_limit(number)
        status = ROLE_STATUS_AUTHENTICATED if security.pin_set >> number & 1 else 0
        strength = 0
        if config.type is not RoleType.EMPTY:
            if security.is_blocked(number):
                status |= ROLE_STATUS_BLOCKED
            if security.is_default_value(number):
                status |= ROLE_STATUS_DEFAULT_VALUE
            if security.has_value(number):
                status |= ROLE_STATUS_VALUE_SET
            strength = CARD_PIN_STRENGTH_SESSION_PIN
            if config.type is RoleType.PIN:
                strength |= CARD_PIN_STRENGTH_PLAINTEXT
        return tlv.encode(
            TAG_ROLE,
            [
                tlv.encode(TAG_ROLE_NUMBER, _byte(number)),
                tlv.encode(TAG_ROLE_TYPE, _byte(SECRET_TYPE_CODES[config.type])),
                tlv.encode(TAG_ROLE_PURPOSE, _byte(PURPOSE_CODES[config.purpose])),
                tlv.encode(TAG_ROLE_CACHE_POLICY, _byte(CACHE_POLICY_CODES[config.cache_policy])),
                tlv.encode(TAG_ROLE_TRIES_LEFT, _byte(security.tries_left(number) if limit else 0xFF)),
                tlv.encode(TAG_ROLE_RETRY_LIMIT, _byte(limit)),
                tlv.encode(TAG_ROLE_STATUS, _byte(status)),
                tlv.encode(TAG_ROLE_CHANGE_PERMISSION, _byte(security.change_permission(number))),
                tlv.encode(TAG_ROLE_UNBLOCK_PERMISSION, _byte(security.unblock_permission(number))),
                tlv.encode(TAG_ROLE_MIN_LENGTH, _byte(config.min_length)),
                tlv.encode(TAG_ROLE_MAX_LENGTH, _byte(config.max_length)),
                tlv.encode(TAG_ROLE_CHARSET, _byte(CHARSET_CODES[config.charset])),
                tlv.encode(TAG_ROLE_PIN_STRENGTH, _byte(strength)),
                tlv.encode(TAG_ROLE_LABEL, config.label.encode("utf-8")),
            ],
        )

    def get_pin_set(self, apdu: CommandAPDU) -> bytes:
        self._p1(apdu, (0x00,))
        if apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        self._no_data(apdu)
        return _byte(self.security.pin_set)

    def issue_session_pin(self, apdu: CommandAPDU) -> bytes:
        """A session PIN for an authenticated role; P1=01 then drops the role's status."""
        p1 = self._p1(apdu, (P1_KEEP_STATUS, P1_DROP_STATUS))
        role = self._role(apdu)
        self._no_data(apdu)
        token = self.security.issue_session_pin(role)
        if p1 == P1_DROP_STATUS:
            self.security.deauthenticate(1 << role)
        return token

    def verify_session_pin(self, apdu: CommandAPDU) -> None:
        self._p1(apdu, (0x00,))
        role = self._role(apdu)
        if not apdu.data:
            raise ISOError(SW.WRONG_LENGTH, "the session PIN is missing")
        self.security.redeem_session_pin(role, apdu.data)

    def verify_external(self, apdu: CommandAPDU) -> bytes:
        """Verify an external role (PIN pad / biometric); answers a session PIN."""
        p1 = self._p1(apdu, (P1_KEEP_STATUS, P1_DROP_STATUS))
        role = self._role(apdu)
        self._no_data(apdu)
        token = self.security.verify_external(role)
        if p1 == P1_DROP_STATUS:
            self.security.deauthenticate(1 << role)
        return token

    def deauthenticate(self, apdu: CommandAPDU) -> None:
        """Clear the roles of a PIN_SET byte; P1=01 also invalidates their session PINs."""
        p1 = self._p1(apdu, (0x00, P1_INVALIDATE_SESSION_PINS))
        if apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        if len(apdu.data) != 1:
            raise ISOError(SW.WRONG_LENGTH, "data is one PIN_SET byte")
        mask = apdu.data[0]
        self.security.deauthenticate(mask)
        if p1 == P1_INVALIDATE_SESSION_PINS:
            for role in self.security.roles:
                if mask >> role.role & 1:
                    self.security.invalidate_session_pins(role.role)


def find_vendor_commands(card: Card) -> VendorCommands | None:
    """The VendorCommands installed on `card`, if any."""
    handler = card.vendor_commands.get((VENDOR_CLA, INS_GET_CAPABILITIES))
    owner = getattr(handler, "__self__", None)
    return owner if isinstance(owner, VendorCommands) else None


def install_vendor_commands(card: Card, security: SecurityCore) -> VendorCommands:
    """Register the vendor commands and the PIN-always command hook on `card` (once per card)."""
    existing = find_vendor_commands(card)
    if existing is not None and existing.security is security:
        return existing  # a second hook would count every command twice and halve the PIN-always window
    vendor = VendorCommands(card, security)
    for ins, handler in vendor.table().items():
        card.vendor_commands[(VENDOR_CLA, ins)] = handler
    card.before_command.append(vendor.before_command)
    # A VERIFY EXTERNAL waiting for an operator must not lock out readers of the card.
    security.outside_wait = card.released
    return vendor


def install_idle_reset(card: Card, security: SecurityCore, seconds: float) -> None:
    """Drop the security status when a command arrives after more than `seconds` without one.

    The card-side face of Windows 8's rule (a transaction idle for five seconds
    resets the card). Only the PIN_SET and PIN-always armings are dropped: the
    status lives in the SecurityCore for every applet. Session PINs survive (see
    vcard.security). `seconds` <= 0 installs nothing.
    """
    if seconds <= 0:
        return

    def idle_check() -> None:
        idle = time.monotonic() - card.last_command_time
        if idle > seconds and security.pin_set:
            log.info("idle for %.1f s (limit %g s): dropping the security status", idle, seconds)
            security.idle_reset(idle)
        elif idle > seconds:
            security.disarm_always()

    # First, so the command that ends the idle period already runs without the status.
    card.before_command.insert(0, idle_check)
    vendor = find_vendor_commands(card)
    if vendor is not None:
        vendor.idle_reset_seconds = seconds
