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

The bytes (CLA, INS, tags, feature bits) are defined in vcard.wire.vendor and
vcard.wire.ins, which the host side reads too. `VendorHandlers` gives the card
its commands and, when the profile asks for it, the hook that applies the
Windows-8-like idle rule; the runtime passes both to `Card(...)`.
"""

from __future__ import annotations

import logging
import time

from . import tlv
from .apdu import SW, CommandAPDU, ISOError
from .cardos import Card, CardCommand, CardHook
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
from .wire import vendor as wire
from .wire.ins import VendorIns

log = logging.getLogger("vcard.vendor")

CHARSET_CODES: dict[Charset, int] = {
    Charset.DIGITS: wire.CHARSET_DIGITS,
    Charset.ALPHANUMERIC: wire.CHARSET_ALPHANUMERIC,
    Charset.ANY: wire.CHARSET_ANY,
}


def _byte(value: int) -> bytes:
    return bytes([value & 0xFF])


class VendorHandlers:
    """The card-level commands and command hooks of one card, for `Card(commands=..., hooks=...)`.

    `idle_reset_seconds` > 0 adds the idle rule: the security status is dropped when
    a command arrives after more than that many seconds without one (the card-side
    face of Windows 8's rule that a transaction idle for five seconds resets the
    card). Only the PIN_SET and PIN-always armings are dropped: the status lives in
    the SecurityCore for every applet; session PINs survive (see vcard.security).
    """

    def __init__(self, security: SecurityCore, idle_reset_seconds: float = 0.0) -> None:
        self.security = security
        self.idle_reset_seconds = max(idle_reset_seconds, 0.0)

    def commands(self) -> dict[tuple[int, int], CardCommand]:
        table: dict[VendorIns, CardCommand] = {
            VendorIns.GET_CAPABILITIES: self.get_capabilities,
            VendorIns.GET_PIN_SET: self.get_pin_set,
            VendorIns.ISSUE_SESSION_PIN: self.issue_session_pin,
            VendorIns.VERIFY_SESSION_PIN: self.verify_session_pin,
            VendorIns.VERIFY_EXTERNAL: self.verify_external,
            VendorIns.DEAUTHENTICATE: self.deauthenticate,
        }
        return {(wire.VENDOR_CLA, int(ins)): handler for ins, handler in table.items()}

    def hooks(self) -> tuple[CardHook, ...]:
        """The idle check, when the profile asks for it: the command that ends an idle period
        already runs without the status."""
        if self.idle_reset_seconds > 0:
            return (self.idle_check,)
        return ()

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

    def idle_check(self, card: Card) -> None:
        idle = time.monotonic() - card.last_command_time
        if idle <= self.idle_reset_seconds:
            return
        if self.security.pin_set:
            log.info(
                "idle for %.1f s (limit %g s): dropping the security status", idle, self.idle_reset_seconds
            )
            self.security.idle_reset(idle)
        else:
            self.security.disarm_always()

    # ---- commands ---------------------------------------------------------------------

    def get_capabilities(self, apdu: CommandAPDU) -> bytes:
        """What the card supports and every role's PIN_INFO-like data (feature detection)."""
        self._p1(apdu, (0x00,))
        if apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        self._no_data(apdu)
        security = self.security
        features = wire.FEATURE_SESSION_PINS | wire.FEATURE_DEAUTHENTICATE | wire.FEATURE_PIN_ALWAYS_WINDOW
        if any(role.type is RoleType.EXTERNAL for role in security.roles):
            features |= wire.FEATURE_EXTERNAL_PINS
        if self.idle_reset_seconds > 0:
            features |= wire.FEATURE_IDLE_RESET
        if security.session_pins_survive_warm_reset:
            features |= wire.FEATURE_SESSION_PINS_SURVIVE_WARM_RESET
        children = [
            tlv.encode(wire.TAG_FORMAT, _byte(wire.CAPABILITIES_FORMAT)),
            tlv.encode(wire.TAG_FEATURES, features.to_bytes(2, "big")),
            tlv.encode(wire.TAG_PIN_SET, _byte(security.pin_set)),
            tlv.encode(wire.TAG_IDLE_RESET_MS, round(self.idle_reset_seconds * 1000).to_bytes(4, "big")),
            tlv.encode(wire.TAG_SESSION_PIN_LENGTH, _byte(SESSION_PIN_BYTES)),
            tlv.encode(wire.TAG_SESSION_PIN_MAX_FAILURES, _byte(MAX_SESSION_PIN_FAILURES)),
            tlv.encode(
                wire.TAG_CARD_FLAGS,
                _byte(wire.CARD_FLAG_SESSION_PINS_LOCKED if security.session_pins_locked else 0),
            ),
        ]
        children += [self._role_template(role.role) for role in security.roles]
        return tlv.encode(wire.TAG_CAPABILITIES, children)

    def _role_template(self, number: int) -> bytes:
        security = self.security
        config = security.role(number)
        limit = 0 if config.type is RoleType.EMPTY else security.retry_limit(number)
        status = wire.ROLE_STATUS_AUTHENTICATED if security.pin_set >> number & 1 else 0
        strength = 0
        if config.type is not RoleType.EMPTY:
            if security.is_blocked(number):
                status |= wire.ROLE_STATUS_BLOCKED
            if security.is_default_value(number):
                status |= wire.ROLE_STATUS_DEFAULT_VALUE
            if security.has_value(number):
                status |= wire.ROLE_STATUS_VALUE_SET
            strength = wire.CARD_PIN_STRENGTH_SESSION_PIN
            if config.type is RoleType.PIN:
                strength |= wire.CARD_PIN_STRENGTH_PLAINTEXT
        return tlv.encode(
            wire.TAG_ROLE,
            [
                tlv.encode(wire.TAG_ROLE_NUMBER, _byte(number)),
                tlv.encode(wire.TAG_ROLE_TYPE, _byte(SECRET_TYPE_CODES[config.type])),
                tlv.encode(wire.TAG_ROLE_PURPOSE, _byte(PURPOSE_CODES[config.purpose])),
                tlv.encode(wire.TAG_ROLE_CACHE_POLICY, _byte(CACHE_POLICY_CODES[config.cache_policy])),
                tlv.encode(wire.TAG_ROLE_TRIES_LEFT, _byte(security.tries_left(number) if limit else 0xFF)),
                tlv.encode(wire.TAG_ROLE_RETRY_LIMIT, _byte(limit)),
                tlv.encode(wire.TAG_ROLE_STATUS, _byte(status)),
                tlv.encode(wire.TAG_ROLE_CHANGE_PERMISSION, _byte(security.change_permission(number))),
                tlv.encode(wire.TAG_ROLE_UNBLOCK_PERMISSION, _byte(security.unblock_permission(number))),
                tlv.encode(wire.TAG_ROLE_MIN_LENGTH, _byte(config.min_length)),
                tlv.encode(wire.TAG_ROLE_MAX_LENGTH, _byte(config.max_length)),
                tlv.encode(wire.TAG_ROLE_CHARSET, _byte(CHARSET_CODES[config.charset])),
                tlv.encode(wire.TAG_ROLE_PIN_STRENGTH, _byte(strength)),
                tlv.encode(wire.TAG_ROLE_LABEL, config.label.encode("utf-8")),
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
        p1 = self._p1(apdu, (wire.P1_KEEP_STATUS, wire.P1_DROP_STATUS))
        role = self._role(apdu)
        self._no_data(apdu)
        token = self.security.issue_session_pin(role)
        if p1 == wire.P1_DROP_STATUS:
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
        p1 = self._p1(apdu, (wire.P1_KEEP_STATUS, wire.P1_DROP_STATUS))
        role = self._role(apdu)
        self._no_data(apdu)
        token = self.security.verify_external(role)
        if p1 == wire.P1_DROP_STATUS:
            self.security.deauthenticate(1 << role)
        return token

    def deauthenticate(self, apdu: CommandAPDU) -> None:
        """Clear the roles of a PIN_SET byte; P1=01 also invalidates their session PINs."""
        p1 = self._p1(apdu, (0x00, wire.P1_INVALIDATE_SESSION_PINS))
        if apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        if len(apdu.data) != 1:
            raise ISOError(SW.WRONG_LENGTH, "data is one PIN_SET byte")
        mask = apdu.data[0]
        self.security.deauthenticate(mask)
        if p1 == wire.P1_INVALIDATE_SESSION_PINS:
            for role in self.security.roles:
                if mask >> role.role & 1:
                    self.security.invalidate_session_pins(role.role)
