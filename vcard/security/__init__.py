"""Security core: roles 0-7, PIN_SET security status, retry counters, session and external PINs.

Windows models card authentication as up to eight roles (PIN identifiers 0..7)
and a PIN_SET bitmask whose bit n means role n is authenticated; several roles
may be authenticated at once. Applets map their key references onto roles
(PIV: 80 PIN -> role 1, 9B management key -> role 2, ...) in their profile
tables; the core knows nothing of PIV or GIDS. One SecurityCore serves every
applet of a card, so the vendor commands (DEAUTHENTICATE, session PINs) and the
idle reset act on the applets' status without knowing them.

What applets must do (the rules the core cannot enforce alone)
-------------------------------------------------------------
- Keep every "is authenticated" flag in the core (`verify`, `authenticate`,
  `is_authenticated`, `check`), never in the applet: that is what makes vendor
  DEAUTHENTICATE, card reset and the idle reset work on every applet. Volatile
  applet data tied to an authentication (an outstanding 9B witness) can follow
  the status with `add_status_listener`.
- Pass PIN values *unpadded* (PIV strips its FF padding first): the core stores
  and compares the value the profile declares (`initial = "123456"`).
- Check a value's format with `well_formed` before `verify` where the applet's
  spec wants a malformed value to cost a try without a comparison (PIV: call
  `record_failure`, answer 63Cx) or to be refused for free (answer 6A80/6700).
- Call `check(rule)` exactly once per operation: a rule with `always` consumes
  the fresh authentication it needs (PIV 9C "PIN always").
- On deselect, drop the roles the applet owns with `deauthenticate(mask)` (PIV:
  status is cleared when another application is selected).


Modules
-------
- `roles`: role and access-rule declarations (RoleType, RoleConfig, AccessRule,
  parse_role for `[[security.roles]]`) and the numbering shared with Windows.
- `external`: who decides an external role (ExternalPinSource, the profile
  policy, the operator at `vcard pinpad`).
- `core`: SecurityCore, the state it keeps and how (counters, PIN-always,
  session PINs, resets).

Every public name is re-exported here: import from `vcard.security`.
"""

from .core import (
    MAX_SESSION_PIN_FAILURES,
    MAX_SESSION_PINS_PER_ROLE,
    NO_COUNTER_TRIES,
    PIN_KDF,
    PIN_KDF_ITERATIONS,
    SALT_BYTES,
    SESSION_PIN_BYTES,
    STATE_FORMAT,
    SecurityCore,
    StatusListener,
)
from .external import (
    ExternalDecision,
    ExternalOutcome,
    ExternalPinSource,
    NoPendingVerification,
    OperatorPinSource,
    PolicyPinSource,
)
from .roles import (
    CACHE_POLICIES,
    CACHE_POLICY_CODES,
    DEFAULT_EXTERNAL_TIMEOUT,
    EXTERNAL_POLICIES,
    MAX_ROLES,
    PIN_SET_ALL_ROLES,
    PIN_SET_NONE,
    PURPOSE_CODES,
    PURPOSES,
    ROLE_ADMIN,
    ROLE_EVERYONE,
    ROLE_USER,
    SECRET_TYPE_CODES,
    AccessRule,
    Charset,
    RoleConfig,
    RoleType,
    UnknownRoleError,
    parse_role,
)

__all__ = [
    "CACHE_POLICIES",
    "CACHE_POLICY_CODES",
    "DEFAULT_EXTERNAL_TIMEOUT",
    "EXTERNAL_POLICIES",
    "MAX_ROLES",
    "MAX_SESSION_PINS_PER_ROLE",
    "MAX_SESSION_PIN_FAILURES",
    "NO_COUNTER_TRIES",
    "PIN_KDF",
    "PIN_KDF_ITERATIONS",
    "PIN_SET_ALL_ROLES",
    "PIN_SET_NONE",
    "PURPOSES",
    "PURPOSE_CODES",
    "ROLE_ADMIN",
    "ROLE_EVERYONE",
    "ROLE_USER",
    "SALT_BYTES",
    "SECRET_TYPE_CODES",
    "SESSION_PIN_BYTES",
    "STATE_FORMAT",
    "AccessRule",
    "Charset",
    "ExternalDecision",
    "ExternalOutcome",
    "ExternalPinSource",
    "NoPendingVerification",
    "OperatorPinSource",
    "PolicyPinSource",
    "RoleConfig",
    "RoleType",
    "SecurityCore",
    "StatusListener",
    "UnknownRoleError",
    "parse_role",
]
