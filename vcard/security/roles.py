"""Roles and access rules as a profile declares them, and the numbering Windows uses for them.

A role (PIN identifier 0..7) is a PIN, an external authenticator, a challenge-response
key or nobody at all (`RoleType`); `RoleConfig` is one role of a profile, read by
`parse_role` from a `[[security.roles]]` table; `AccessRule` says which roles an
operation needs. Pure declarations: the state and the checks live in `core`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from ..apdu import SW, ISOError
from ..crypto import KEY_LENGTHS
from ..tablereader import TableReader

ROLE_EVERYONE = 0
ROLE_USER = 1
ROLE_ADMIN = 2
MAX_ROLES = 8
PIN_SET_NONE = 0x00
PIN_SET_ALL_ROLES = 0xFF

CACHE_POLICIES = ("normal", "timed", "none", "always_prompt")
PURPOSES = (
    "authentication",
    "signature",
    "encryption",
    "non_repudiation",
    "administrator",
    "primary",
    "unblock_only",
)
EXTERNAL_POLICIES = ("approve", "deny", "approve_after", "operator")
DEFAULT_EXTERNAL_TIMEOUT = 30.0

# Windows minidriver numbering (SECRET_TYPE, SECRET_PURPOSE, PIN_CACHE_POLICY_TYPE),
# used by the vendor GET CAPABILITIES answer so a host can build PIN_INFO directly.
PURPOSE_CODES: dict[str, int] = {name: code for code, name in enumerate(PURPOSES)}
CACHE_POLICY_CODES: dict[str, int] = {name: code for code, name in enumerate(CACHE_POLICIES)}


class RoleType(StrEnum):
    PIN = "pin"  # alphanumeric PIN verified by comparing a value sent by the host
    EXTERNAL = "external"  # verified outside the host (PIN pad, biometric): ExternalPinSource decides
    CHALLENGE = "challenge"  # challenge-response with a symmetric key (PIV 9B, GIDS admin key)
    EMPTY = "empty"  # no authenticator: always satisfied (role 0, "everyone")


SECRET_TYPE_CODES: dict[RoleType, int] = {
    RoleType.PIN: 0,  # AlphaNumericPinType
    RoleType.EXTERNAL: 1,  # ExternalPinType
    RoleType.CHALLENGE: 2,  # ChallengeResponsePinType
    RoleType.EMPTY: 3,  # EmptyPinType
}


class Charset(StrEnum):
    DIGITS = "digits"
    ALPHANUMERIC = "alphanumeric"
    ANY = "any"  # any byte value (PIV allows any bytes but requires FF padding to 8)


_DIGITS = frozenset(b"0123456789")
_ALPHANUMERIC = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class UnknownRoleError(ISOError, KeyError):
    """A role number no profile table declares: 6A88 on the card, a KeyError for Python callers."""

    def __init__(self, role: int) -> None:
        ISOError.__init__(self, SW.REFERENCE_NOT_FOUND, f"role {role} is not declared")
        self.role = role

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown role"


@dataclass(frozen=True)
class RoleConfig:
    """One role as a profile declares it (validated by `parse_role`)."""

    role: int  # 0..7
    label: str  # "user", "admin", "signature PIN", ...
    type: RoleType
    initial: bytes = b""  # initial PIN value (PIN roles) or key bytes (challenge roles)
    min_length: int = 4
    max_length: int = 8
    charset: Charset = Charset.ANY
    retries: int = 3  # 0 = unlimited (challenge keys without a counter)
    unblocked_by: int | None = None  # role whose PIN/key unblocks this one (PUK role or admin)
    changed_by: tuple[int, ...] = ()  # roles that may set this role's value without the old one
    cache_policy: str = "normal"  # PinCacheNormal / PinCacheTimed / PinCacheNone / PinCacheAlwaysPrompt
    purpose: str = "authentication"  # AuthenticationPin, DigitalSignaturePin, EncryptionPin, ...
    algorithm: str | None = None  # challenge roles: "3des", "aes128", "aes192", "aes256"
    external_policy: str = "operator"  # external roles: approve | deny | approve_after | operator
    external_delay_ms: int = 0  # approve_after: how long the "user" takes
    external_timeout: float = DEFAULT_EXTERNAL_TIMEOUT  # seconds before an external verification fails

    def well_formed(self, value: bytes) -> bool:
        """Whether `value` fits this role's length and character rules (PIN-like roles)."""
        return self.length_fits(value) and self.charset_fits(value)

    def length_fits(self, value: bytes) -> bool:
        """The length rule alone, for applets that answer a bad length (6700) apart from a bad charset."""
        return self.min_length <= len(value) <= self.max_length

    def charset_fits(self, value: bytes) -> bool:
        """The character rule alone (see `length_fits`)."""
        if self.charset is Charset.DIGITS:
            return all(byte in _DIGITS for byte in value)
        if self.charset is Charset.ALPHANUMERIC:
            return all(byte in _ALPHANUMERIC for byte in value)
        return True

    @property
    def has_counter(self) -> bool:
        return self.retries > 0


@dataclass(frozen=True)
class AccessRule:
    """Which roles an operation needs.

    `all_of`: every role listed must be authenticated ("roles 1 and 3");
    `any_of`: at least one of these (empty = no constraint) ("any of 1 or 2");
    `always`: the authentication must be fresh and is consumed by exactly one
    operation (PIV "PIN always", key 9C): at least one role of the rule must
    have been authenticated by the command just before (see vcard.security.core);
    `never`: nobody (PIV "Never", GIDS SC byte FF).
    An empty rule (the default) is satisfied by everyone.
    """

    all_of: frozenset[int] = field(default_factory=frozenset)
    any_of: frozenset[int] = field(default_factory=frozenset)
    always: bool = False
    never: bool = False
    # The role sets as PIN_SET-style bitmasks (bit n = role n), derived once so that a
    # check on the per-signature path is a few integer operations.
    all_mask: int = field(default=0, init=False, repr=False, compare=False)
    any_mask: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_mask", sum(1 << role for role in self.all_of))
        object.__setattr__(self, "any_mask", sum(1 << role for role in self.any_of))

    @property
    def roles(self) -> frozenset[int]:
        return self.all_of | self.any_of

    @classmethod
    def parse(cls, text: str) -> AccessRule:
        """'always' | 'never' | 'role 1' | 'roles 1 and 3' | 'any of 1 or 2' | 'role 1 always'.

        'always' alone means everyone (PIV's name for "no condition"); 'always'
        after a rule means PIN-always. Raises ValueError with a message meant to
        be shown in a profile error.
        """
        if not isinstance(text, str):
            raise ValueError(f"an access rule must be a string, got {text!r}")
        words = text.strip().lower().split()
        if not words:
            raise ValueError(f"empty access rule; {_RULE_FORMS}")
        always = False
        if len(words) > 1 and words[-1] == "always":
            always = True
            words = words[:-1]
        if words in (["always"], ["everyone"]):
            if always:
                raise ValueError(f"{text!r}: 'always' alone already means everyone; nothing to make fresh")
            return cls()
        if words == ["never"]:
            if always:
                raise ValueError(f"{text!r}: 'never' cannot be combined with 'always'")
            return cls(never=True)
        if words[0] == "role" and len(words) == 2:
            rule = cls(all_of=frozenset({_rule_role(words[1], text)}), always=always)
        elif words[0] == "roles":
            rule = cls(all_of=_rule_roles(words[1:], "and", text), always=always)
        elif words[:2] == ["any", "of"]:
            rule = cls(any_of=_rule_roles(words[2:], "or", text), always=always)
        else:
            raise ValueError(f"unknown access rule {text!r}; {_RULE_FORMS}")
        if always and rule.roles <= {ROLE_EVERYONE}:
            raise ValueError(f"{text!r}: role 0 (everyone) never authenticates, so it cannot be 'always'")
        return rule

    def __str__(self) -> str:
        if self.never:
            return "never"
        if not self.all_of and not self.any_of:
            return "always"
        parts: list[str] = []
        if self.all_of:
            numbers = sorted(self.all_of)
            if len(numbers) == 1:
                parts.append(f"role {numbers[0]}")
            else:
                parts.append("roles " + " and ".join(str(n) for n in numbers))
        if self.any_of:
            parts.append("any of " + " or ".join(str(n) for n in sorted(self.any_of)))
        return " and ".join(parts) + (" always" if self.always else "")


_RULE_FORMS = (
    "expected 'always', 'never', 'role N', 'roles N and M', 'any of N or M' "
    "(N from 0 to 7), optionally followed by 'always'"
)


def _rule_role(word: str, text: str) -> int:
    if not word.isdigit() or not 0 <= int(word) < MAX_ROLES:
        raise ValueError(f"{text!r}: {word!r} is not a role number from 0 to {MAX_ROLES - 1}")
    return int(word)


def _rule_roles(words: list[str], separator: str, text: str) -> frozenset[int]:
    if len(words) < 3 or len(words) % 2 == 0 or any(word != separator for word in words[1::2]):
        raise ValueError(
            f"{text!r}: expected two or more role numbers joined by '{separator}'; {_RULE_FORMS}"
        )
    numbers = [_rule_role(word, text) for word in words[0::2]]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{text!r}: a role is listed twice")
    return frozenset(numbers)


# ---- profile parsing ------------------------------------------------------------------


def parse_role(reader: TableReader) -> RoleConfig:
    """One `[[security.roles]]` table. The caller (the profile loader) calls `reader.finish()`."""
    role = reader.integer("role", minimum=0, maximum=MAX_ROLES - 1)
    default_type = RoleType.EMPTY.value if role == ROLE_EVERYONE else RoleType.PIN.value
    kind = RoleType(reader.text("type", default_type, choices=[t.value for t in RoleType]))
    default_label = {ROLE_EVERYONE: "everyone", ROLE_USER: "user", ROLE_ADMIN: "admin"}.get(
        role, f"role {role}"
    )
    label = reader.text("label", default_label)
    if role == ROLE_EVERYONE and kind is not RoleType.EMPTY:
        raise reader.error("type", f'role 0 is "everyone" and must be of type "empty", got "{kind.value}"')

    pin_like = kind in (RoleType.PIN, RoleType.EXTERNAL)
    min_length = reader.integer("min_length", 4 if pin_like else 0, minimum=0, maximum=255)
    max_length = reader.integer("max_length", max(8, min_length), minimum=1, maximum=255)
    if max_length < min_length:
        raise reader.error("max_length", f"must be >= min_length ({min_length}), got {max_length}")
    charset = Charset(reader.text("charset", Charset.ANY.value, choices=[c.value for c in Charset]))
    counted = kind in (RoleType.PIN, RoleType.EXTERNAL)
    retries = reader.integer("retries", 3 if counted else 0, minimum=1 if counted else 0, maximum=15)

    algorithm: str | None = None
    if kind is RoleType.CHALLENGE:
        algorithm = reader.text("algorithm", "3des", choices=list(KEY_LENGTHS))
    elif reader.has("algorithm"):
        raise reader.error("algorithm", 'only roles of type "challenge" have an algorithm')

    initial = _parse_initial(reader, kind, algorithm)
    config_for_check = RoleConfig(
        role, label, kind, min_length=min_length, max_length=max_length, charset=charset
    )
    if pin_like and initial and not config_for_check.well_formed(initial):
        key = "initial" if reader.has("initial") else "initial_hex"
        raise reader.error(
            key,
            f"does not fit this role: {min_length} to {max_length} characters of charset {charset.value!r}",
        )

    unblocked_by = reader.integer("unblocked_by", None, minimum=0, maximum=MAX_ROLES - 1)
    changed_by_raw = reader.array("changed_by", [])
    changed: list[int] = []
    for item in changed_by_raw:
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item < MAX_ROLES:
            raise reader.error("changed_by", f"must be an array of role numbers from 0 to 7, got {item!r}")
        if item in changed:
            raise reader.error("changed_by", f"role {item} is listed twice")
        changed.append(item)
    cache_policy = reader.text(
        "cache_policy", "none" if kind is RoleType.EMPTY else "normal", choices=CACHE_POLICIES
    )
    purpose = reader.text(
        "purpose", "administrator" if role == ROLE_ADMIN else "authentication", choices=PURPOSES
    )

    policy, delay_ms, timeout = "operator", 0, DEFAULT_EXTERNAL_TIMEOUT
    if kind is RoleType.EXTERNAL:
        external = reader.table("external", {})
        policy = external.text("policy", "operator", choices=EXTERNAL_POLICIES)
        delay_ms = external.integer("delay_ms", 0, minimum=0, maximum=600_000)
        timeout = external.number("timeout_s", DEFAULT_EXTERNAL_TIMEOUT, minimum=0.001, maximum=3600.0)
        if policy != "approve_after" and external.has("delay_ms") and delay_ms:
            raise external.error("delay_ms", 'only the "approve_after" policy waits')
        external.finish()
    elif reader.has("external"):
        raise reader.error("external", 'only roles of type "external" have an [external] table')

    return RoleConfig(
        role=role,
        label=label,
        type=kind,
        initial=initial,
        min_length=min_length,
        max_length=max_length,
        charset=charset,
        retries=retries,
        unblocked_by=unblocked_by,
        changed_by=tuple(changed),
        cache_policy=cache_policy,
        purpose=purpose,
        algorithm=algorithm,
        external_policy=policy,
        external_delay_ms=delay_ms,
        external_timeout=timeout,
    )


def _parse_initial(reader: TableReader, kind: RoleType, algorithm: str | None) -> bytes:
    has_text, has_hex = reader.has("initial"), reader.has("initial_hex")
    if has_text and has_hex:
        raise reader.error("initial_hex", 'give either "initial" (text) or "initial_hex", not both')
    if kind is RoleType.EMPTY:
        if has_text or has_hex:
            raise reader.error(
                "initial" if has_text else "initial_hex", 'a role of type "empty" has no value'
            )
        return b""
    if kind is RoleType.CHALLENGE:
        if has_text:
            raise reader.error("initial", 'a challenge key is given as "initial_hex"')
        assert algorithm is not None
        key: bytes = reader.hex_bytes("initial_hex", b"", lengths=[KEY_LENGTHS[algorithm]])
        return key
    if has_hex:
        value: bytes = reader.hex_bytes("initial_hex")
        return value
    text: str = reader.text("initial", "")
    return text.encode("utf-8")
