"""The security core: roles, PIN_SET, counters, PIN-always, session and external PINs."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from vcard.apdu import SW, ISOError
from vcard.profile import ProfileError, TableReader, load_profile
from vcard.security import (
    MAX_SESSION_PIN_FAILURES,
    NO_COUNTER_TRIES,
    SESSION_PIN_BYTES,
    AccessRule,
    Charset,
    ExternalDecision,
    ExternalOutcome,
    ExternalPinSource,
    OperatorPinSource,
    PolicyPinSource,
    RoleConfig,
    RoleType,
    SecurityCore,
    UnknownRoleError,
    parse_role,
)
from vcard.store import StateError

ADMIN_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")

ROLES = (
    RoleConfig(1, "user", RoleType.PIN, b"123456", 6, 8, Charset.DIGITS, 3, unblocked_by=5),
    RoleConfig(2, "admin", RoleType.CHALLENGE, ADMIN_KEY, 0, 8, retries=0, algorithm="3des"),
    RoleConfig(3, "signature", RoleType.PIN, b"654321", 6, 8, Charset.DIGITS, 3, unblocked_by=2),
    RoleConfig(4, "fingerprint", RoleType.EXTERNAL, b"2468", 4, 8, retries=3, external_policy="approve"),
    RoleConfig(5, "PUK", RoleType.PIN, b"12345678", 8, 8, Charset.DIGITS, 3),
    RoleConfig(6, "pinpad", RoleType.EXTERNAL, b"1357", 4, 8, retries=3, external_policy="operator"),
)


class Recorder:
    """A commit that remembers the durable counters at each commit (what a crash would leave)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.snapshots: list[dict[str, Any]] = []
        self.fail_next = False

    def __call__(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StateError("disk full")
        self.snapshots.append(json.loads(json.dumps(self.state)))

    def tries(self, role: int, index: int = -1) -> int:
        value: int = self.snapshots[index]["roles"][str(role)]["tries_left"]
        return value


def make_core(
    roles: tuple[RoleConfig, ...] = ROLES, external: ExternalPinSource | None = None
) -> tuple[SecurityCore, dict[str, Any], Recorder]:
    state: dict[str, Any] = {}
    recorder = Recorder(state)
    core = SecurityCore(roles, state, recorder, is_new=True, external=external)
    return core, state, recorder


def sw_of(excinfo: pytest.ExceptionInfo[ISOError]) -> int:
    return excinfo.value.sw


# ---- access rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("always", AccessRule()),
        ("everyone", AccessRule()),
        ("never", AccessRule(never=True)),
        ("role 3", AccessRule(all_of=frozenset({3}))),
        ("Roles 1 and 3", AccessRule(all_of=frozenset({1, 3}))),
        ("roles 1 and 3 and 4", AccessRule(all_of=frozenset({1, 3, 4}))),
        ("any of 1 or 2", AccessRule(any_of=frozenset({1, 2}))),
        ("role 3 always", AccessRule(all_of=frozenset({3}), always=True)),
        ("  any of 1 or 4   always ", AccessRule(any_of=frozenset({1, 4}), always=True)),
    ],
)
def test_access_rule_parse(text: str, rule: AccessRule) -> None:
    assert AccessRule.parse(text) == rule
    assert AccessRule.parse(str(rule)) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("role", "unknown access rule"),
        ("role 8", "not a role number"),
        ("role x", "not a role number"),
        ("roles 1", "two or more"),
        ("roles 1 or 2", "joined by 'and'"),
        ("any of 1 and 2", "joined by 'or'"),
        ("roles 1 and 1", "listed twice"),
        ("always always", "already means everyone"),
        ("never always", "cannot be combined"),
        ("role 0 always", "everyone"),
        ("sometimes", "unknown access rule"),
    ],
)
def test_access_rule_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AccessRule.parse(text)


# ---- roles, status ---------------------------------------------------------------------


def test_two_roles_authenticated_at_once_and_deauthenticate_one_bit() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    core.verify(3, b"654321")
    assert core.pin_set == 0x0A
    core.check(AccessRule.parse("roles 1 and 3"))
    core.deauthenticate(0x08)
    assert core.pin_set == 0x02
    assert core.is_authenticated(1) and not core.is_authenticated(3)
    core.check(AccessRule.parse("role 1"))
    with pytest.raises(ISOError) as excinfo:
        core.check(AccessRule.parse("roles 1 and 3"))
    assert sw_of(excinfo) == 0x6982


def test_reset_clears_every_bit() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    core.authenticate(2)
    assert core.pin_set == 0x06
    core.reset()
    assert core.pin_set == 0


def test_rules_any_of_never_everyone_and_undeclared_roles() -> None:
    core, _, _ = make_core()
    core.check(AccessRule())
    core.check(AccessRule.parse("role 0"))
    with pytest.raises(ISOError):
        core.check(AccessRule.parse("any of 1 or 2"))
    core.authenticate(2)
    core.check(AccessRule.parse("any of 1 or 2"))
    with pytest.raises(ISOError) as excinfo:
        core.check(AccessRule.parse("never"))
    assert sw_of(excinfo) == 0x6982
    with pytest.raises(ISOError) as excinfo:
        core.check(AccessRule.parse("role 7"))  # not declared: simply not held
    assert sw_of(excinfo) == 0x6982


@pytest.mark.parametrize(
    "text",
    ["role 1", "roles 1 and 3", "roles 0 and 2", "any of 1 or 2", "any of 0 or 7", "any of 3 or 7", "role 7"],
)
def test_check_agrees_with_the_definition_for_every_status(text: str) -> None:
    """A rule holds iff every all_of role and (if any) one any_of role is authenticated or everyone;
    a role the profile does not declare (7) never holds. Checked for every set of authenticated roles."""
    rule = AccessRule.parse(text)
    for status in range(1 << 4):
        core, _, _ = make_core()
        for bit, role in enumerate((1, 2, 3, 5)):
            if status >> bit & 1:
                core.authenticate(role)

        held = {0} | {role for role in (1, 2, 3, 5) if core.is_authenticated(role)}
        expected = rule.all_of <= held and (not rule.any_of or bool(rule.any_of & held))
        if expected:
            core.check(rule)
        else:
            with pytest.raises(ISOError) as excinfo:
                core.check(rule)
            assert sw_of(excinfo) == 0x6982


def test_role_zero_is_everyone_and_never_in_pin_set() -> None:
    core, _, _ = make_core()
    assert core.role(0).type is RoleType.EMPTY
    assert core.is_authenticated(0)
    core.verify(0, b"")
    assert core.pin_set == 0


def test_unknown_role_is_a_key_error_answering_6a88() -> None:
    core, _, _ = make_core()
    with pytest.raises(KeyError):
        core.role(7)
    with pytest.raises(UnknownRoleError) as excinfo:
        core.verify(7, b"123456")
    assert excinfo.value.sw == 0x6A88


# ---- PIN-always ---------------------------------------------------------------------------


def test_pin_always_is_consumed_by_exactly_one_operation() -> None:
    core, _, _ = make_core()
    rule = AccessRule.parse("role 3 always")
    core.verify(3, b"654321")
    core.check(rule)
    with pytest.raises(ISOError) as excinfo:
        core.check(rule)
    assert sw_of(excinfo) == 0x6982
    assert core.is_authenticated(3)  # the role stays authenticated; only the freshness is gone
    core.check(AccessRule.parse("role 3"))
    core.verify(3, b"654321")
    core.check(rule)


def test_pin_always_window_is_the_next_command() -> None:
    core, _, _ = make_core()
    command = 0
    core.command_number = lambda: command
    rule = AccessRule.parse("role 3 always")
    command += 1  # VERIFY
    core.verify(3, b"654321")
    command += 1  # the signature
    core.check(rule)

    command += 1  # VERIFY
    core.verify(3, b"654321")
    command += 1  # any other command
    command += 1  # the signature comes too late
    with pytest.raises(ISOError):
        core.check(rule)


def test_pin_always_needs_a_role_of_the_rule_and_disarm() -> None:
    core, _, _ = make_core()
    core.verify(3, b"654321")
    core.verify(1, b"123456")
    core.disarm_always(0x08)  # only role 3's freshness goes
    assert not core.is_armed(3) and core.is_armed(1)
    with pytest.raises(ISOError):
        core.check(AccessRule.parse("role 3 always"))  # role 1 is fresh, but it is not in the rule
    core.verify(3, b"654321")
    core.deauthenticate(0x08)
    assert not core.is_armed(3)


def test_failed_verify_disarms_and_clears_the_bit() -> None:
    core, _, _ = make_core()
    core.verify(3, b"654321")
    with pytest.raises(ISOError):
        core.verify(3, b"000000")
    assert not core.is_authenticated(3)
    assert not core.is_armed(3)


# ---- counters ---------------------------------------------------------------------------


def test_blocked_after_the_limit_even_for_the_right_pin() -> None:
    core, _, _ = make_core()
    answers = []
    for _ in range(3):
        with pytest.raises(ISOError) as excinfo:
            core.verify(1, b"000000")
        answers.append(sw_of(excinfo))
    assert answers == [0x63C2, 0x63C1, 0x63C0]
    assert core.is_blocked(1) and core.tries_left(1) == 0
    with pytest.raises(ISOError) as excinfo:
        core.verify(1, b"123456")
    assert sw_of(excinfo) == 0x6983
    assert not core.is_authenticated(1)


def test_success_restores_the_counter() -> None:
    core, _, _ = make_core()
    with pytest.raises(ISOError):
        core.verify(1, b"000000")
    assert core.tries_left(1) == 2
    core.verify(1, b"123456")
    assert core.tries_left(1) == 3


def test_try_is_durable_before_the_comparison() -> None:
    core, _, recorder = make_core()
    with pytest.raises(ISOError):
        core.verify(1, b"000000")
    assert recorder.tries(1) == 2  # committed before 63C2 was raised
    recorder.snapshots.clear()
    core.verify(1, b"123456")
    # First the consumed try is durable, then (after the match) the restored counter.
    assert [s["roles"]["1"]["tries_left"] for s in recorder.snapshots] == [1, 3]


def test_a_failed_commit_answers_nothing_about_the_pin() -> None:
    core, _, recorder = make_core()
    recorder.fail_next = True
    with pytest.raises(StateError):
        core.verify(1, b"123456")  # the right PIN, but the try could not be made durable
    assert not core.is_authenticated(1)


def test_record_failure_costs_a_try_without_comparing() -> None:
    core, _, recorder = make_core()
    core.verify(1, b"123456")
    assert core.record_failure(1) == 2
    assert recorder.tries(1) == 2
    assert not core.is_authenticated(1)
    assert core.record_failure(1) == 1
    assert core.record_failure(1) == 0
    assert core.is_blocked(1)
    assert core.record_failure(1) == 0


def test_unblock_with_the_puk_restores_the_counter() -> None:
    core, _, _ = make_core()
    for _ in range(3):
        core.record_failure(1)
    assert core.is_blocked(1)
    with pytest.raises(ISOError) as excinfo:
        core.unblock(1, 5, b"87654321", b"111111")
    assert sw_of(excinfo) == 0x63C2  # the PUK's own counter
    assert core.is_blocked(1)
    with pytest.raises(ISOError) as excinfo:
        core.unblock(1, 5, b"12345678", b"12")  # right PUK, malformed new PIN
    assert sw_of(excinfo) == 0x6A80
    assert core.tries_left(5) == 3
    core.unblock(1, 5, b"12345678", b"111111")
    assert core.tries_left(1) == 3 and not core.is_blocked(1)
    assert not core.is_authenticated(1)  # status unchanged
    core.verify(1, b"111111")
    with pytest.raises(ISOError):
        core.unblock(1, 2, b"", b"222222")  # role 2 does not unblock role 1


def test_unblock_by_the_admin_key_needs_the_admin_authenticated() -> None:
    core, _, _ = make_core()
    for _ in range(3):
        core.record_failure(3)
    with pytest.raises(ISOError) as excinfo:
        core.unblock(3, 2, b"", b"999999")
    assert sw_of(excinfo) == 0x6982
    core.authenticate(2)
    core.unblock(3, 2, b"", b"999999")
    core.verify(3, b"999999")
    assert core.pin_set == 0x0C


def test_change() -> None:
    core, state, _ = make_core()
    with pytest.raises(ISOError) as excinfo:
        core.change(1, b"000000", b"111111")
    assert sw_of(excinfo) == 0x63C2
    with pytest.raises(ISOError) as excinfo:
        core.change(1, b"123456", b"abc")
    assert sw_of(excinfo) == 0x6A80
    assert core.tries_left(1) == 3
    core.verify(1, b"123456")  # unchanged
    core.deauthenticate(0xFF)
    assert core.is_default_value(1)
    core.change(1, b"123456", b"24682468")
    assert core.is_authenticated(1)
    assert not core.is_default_value(1)
    with pytest.raises(ISOError):
        core.verify(1, b"123456")
    core.verify(1, b"24682468")
    assert "24682468" not in json.dumps(state)


def test_value_length_follows_the_value_in_the_same_commit() -> None:
    core, _, recorder = make_core()
    assert core.value_length(1) == 6 and core.value_length(5) == 8
    core.change(1, b"123456", b"24682468")
    assert core.value_length(1) == 8
    assert recorder.snapshots[-1]["roles"]["1"]["secret"]["length"] == 8  # durable with the hash
    core.unblock(1, 5, b"12345678", b"1357913")
    assert core.value_length(1) == 7
    core.set_value(3, b"1111111")
    assert core.value_length(3) == 7


def test_pins_are_stored_as_salted_digests_and_survive_a_restart() -> None:
    core, state, _ = make_core()
    text = json.dumps(state)
    for pin in (b"123456", b"654321", b"12345678"):
        assert pin.decode() not in text and pin.hex() not in text
    assert state["roles"]["1"]["secret"]["salt"] != state["roles"]["3"]["secret"]["salt"]
    with pytest.raises(ISOError):
        core.verify(1, b"000000")
    restarted = SecurityCore(ROLES, json.loads(json.dumps(state)), lambda: None, is_new=False)
    assert restarted.tries_left(1) == 2
    assert restarted.pin_set == 0
    restarted.verify(1, b"123456")
    assert restarted.value(2) == ADMIN_KEY


def test_corrupt_counters_are_refused() -> None:
    _, state, _ = make_core()
    state["roles"]["1"]["tries_left"] = 9
    with pytest.raises(StateError, match=r"roles\.1\.tries_left"):
        SecurityCore(ROLES, state, lambda: None, is_new=False)


@pytest.mark.parametrize(
    ("role", "field", "value"),
    [
        ("1", "salt", "not hex"),
        ("1", "hash", 7),
        ("1", "iterations", "2000"),
        ("1", "iterations", 0),
        ("1", "length", "6"),
        ("1", "length", -1),
        ("2", "key", "0102"),
        ("2", "algorithm", "des"),
    ],
)
def test_unreadable_secrets_are_refused_at_load(role: str, field: str, value: object) -> None:
    # Refused when the card starts, not with 6F00 after a VERIFY has consumed a try.
    _, state, _ = make_core()
    record = state["roles"][role]
    (record["secret"] if field in ("salt", "hash", "iterations", "length") else record)[field] = value
    with pytest.raises(StateError, match=rf"roles\.{role}\.(secret\.)?{field}"):
        SecurityCore(ROLES, state, lambda: None, is_new=False)


def test_verified_status_is_the_status_word_of_a_pin_status_query() -> None:
    many = RoleConfig(7, "many tries", RoleType.PIN, b"111111", 6, 8, Charset.DIGITS, 20)
    core, _, _ = make_core((*ROLES, many))
    assert core.verified_status(1) == 0x63C3
    assert core.tries_left(1) == 3  # asking costs no try
    assert core.verified_status(7) == 0x63CF  # 20 tries left: the most 63Cx can say
    core.verify(7, b"111111")
    assert core.verified_status(7) == SW.SUCCESS
    assert core.verified_status(2) == 0x63CF  # a role without a counter
    assert core.verified_status(0) == SW.SUCCESS  # everyone
    bare, _, _ = make_core()
    with pytest.raises(UnknownRoleError):
        bare.verified_status(7)  # not declared there
    for _ in range(3):
        with pytest.raises(ISOError):
            core.verify(1, b"000000")
    assert core.verified_status(1) == SW.AUTH_METHOD_BLOCKED
    assert core.tries_left(7) == 20


def test_length_and_charset_rules_compose_well_formed() -> None:
    user = ROLES[0]
    assert user.length_fits(b"12345a") and not user.charset_fits(b"12345a")
    assert not user.length_fits(b"12345") and user.charset_fits(b"12345")
    assert user.well_formed(b"123456") and not user.well_formed(b"12345a")


def test_a_role_missing_from_the_state_is_refused_not_recreated() -> None:
    # Re-creating it from the profile would give a blocked PIN its value and tries back.
    core, state, _ = make_core()
    for _ in range(3):
        with pytest.raises(ISOError):
            core.verify(3, b"000000")
    assert core.is_blocked(3)
    del state["roles"]["3"]
    before = json.dumps(state, sort_keys=True)
    commits: list[int] = []
    with pytest.raises(StateError, match=r"^roles\.3: missing$"):
        SecurityCore(ROLES, state, lambda: commits.append(1), is_new=False)
    assert not commits and json.dumps(state, sort_keys=True) == before


def test_challenge_role_key_and_set_value() -> None:
    core, _, _ = make_core()
    assert core.value(2) == ADMIN_KEY
    assert core.key_algorithm(2) == "3des"
    assert core.tries_left(2) == NO_COUNTER_TRIES
    with pytest.raises(ISOError):
        core.value(1)
    with pytest.raises(ISOError) as excinfo:
        core.set_value(2, bytes(16))
    assert sw_of(excinfo) == 0x6A80
    core.set_value(2, bytes(16), algorithm="aes128")
    assert core.value(2) == bytes(16) and core.key_algorithm(2) == "aes128"
    assert not core.is_default_value(2)
    with pytest.raises(ISOError) as excinfo:
        core.verify(2, ADMIN_KEY)
    assert sw_of(excinfo) == 0x6985


COUNTED_ADMIN = RoleConfig(2, "admin", RoleType.CHALLENGE, ADMIN_KEY, 0, 8, retries=3, algorithm="3des")


def counted_admin_core() -> tuple[SecurityCore, Recorder]:
    core, _, recorder = make_core((*ROLES[:1], COUNTED_ADMIN, *ROLES[2:]))
    return core, recorder


def test_challenge_response_try_is_durable_before_the_check_runs() -> None:
    core, recorder = counted_admin_core()
    seen: list[tuple[bytes, str, int]] = []

    def wrong(key: bytes, algorithm: str) -> bool:
        # What a crash during the comparison would leave on disk: the try already gone.
        seen.append((key, algorithm, recorder.tries(2)))
        return False

    with pytest.raises(ISOError) as excinfo:
        core.authenticate_with(2, wrong)
    assert sw_of(excinfo) == 0x6982  # the applet's status word, not 63Cx
    assert seen == [(ADMIN_KEY, "3des", 2)]
    assert recorder.tries(2) == 2 and core.tries_left(2) == 2
    assert not core.is_authenticated(2)


def test_three_wrong_cryptograms_block_the_role_and_a_right_one_restores() -> None:
    core, recorder = counted_admin_core()
    with pytest.raises(ISOError):
        core.authenticate_with(2, lambda key, algorithm: False)
    core.authenticate_with(2, lambda key, algorithm: key == ADMIN_KEY)
    assert core.is_authenticated(2) and core.is_armed(2)
    assert core.tries_left(2) == 3 and recorder.tries(2) == 3
    for left in (2, 1, 0):
        with pytest.raises(ISOError) as excinfo:
            core.authenticate_with(2, lambda key, algorithm: False)
        assert sw_of(excinfo) == 0x6982 and core.tries_left(2) == left
    assert core.is_blocked(2) and not core.is_authenticated(2)
    commits = len(recorder.snapshots)
    with pytest.raises(ISOError) as excinfo:
        core.authenticate_with(2, lambda key, algorithm: pytest.fail("a blocked role must not be checked"))
    assert sw_of(excinfo) == 0x6983
    assert len(recorder.snapshots) == commits  # nothing consumed, nothing restored
    core.set_value(2, ADMIN_KEY)  # the way out: an authorised reset of the key
    core.authenticate_with(2, lambda key, algorithm: True)
    assert core.tries_left(2) == 3


def test_a_check_that_raises_keeps_the_try_and_passes_its_error() -> None:
    core, recorder = counted_admin_core()
    core.authenticate(2)

    def broken(key: bytes, algorithm: str) -> bool:
        raise ISOError(SW.INCORRECT_DATA, "applet's own refusal")

    with pytest.raises(ISOError) as excinfo:
        core.authenticate_with(2, broken)
    assert sw_of(excinfo) == 0x6A80
    assert recorder.tries(2) == 2 and not core.is_authenticated(2)


def test_before_grant_runs_after_the_match_and_may_refuse_the_grant() -> None:
    core, recorder = counted_admin_core()
    with pytest.raises(ISOError):
        core.authenticate_with(2, lambda key, algorithm: False)
    order: list[str] = []

    def no_touch() -> None:
        order.append(f"touch asked with {recorder.tries(2)} tries on disk")
        raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "nobody touched")

    with pytest.raises(ISOError):
        core.authenticate_with(2, lambda key, algorithm: True, before_grant=no_touch)
    assert order == ["touch asked with 3 tries on disk"]  # the key was right: the try is given back
    assert not core.is_authenticated(2)
    core.authenticate_with(2, lambda key, algorithm: True, before_grant=lambda: None)
    assert core.is_authenticated(2)


def test_authenticate_with_only_for_challenge_roles_and_without_counter() -> None:
    core, _, recorder = make_core()
    with pytest.raises(ISOError) as excinfo:
        core.authenticate_with(1, lambda key, algorithm: True)
    assert sw_of(excinfo) == 0x6985
    core.authenticate(2)
    commits = len(recorder.snapshots)
    with pytest.raises(ISOError) as excinfo:
        core.authenticate_with(2, lambda key, algorithm: False)
    assert sw_of(excinfo) == 0x6982
    assert not core.is_authenticated(2) and not core.is_blocked(2)
    assert len(recorder.snapshots) == commits  # no counter: nothing to commit


def test_set_value_and_retry_limit_and_factory_reset() -> None:
    core, _, _ = make_core()
    core.set_value(1, b"000000", retries=5)
    assert core.tries_left(1) == 5 and core.retry_limit(1) == 5
    with pytest.raises(ISOError):
        core.set_value(1, b"12")
    core.set_retry_limit(3, 7)
    assert core.tries_left(3) == 7
    core.verify(1, b"000000")
    core.factory_reset()
    assert core.pin_set == 0 and core.retry_limit(1) == 3
    core.verify(1, b"123456")


def test_well_formed() -> None:
    core, _, _ = make_core()
    assert core.well_formed(1, b"123456")
    assert not core.well_formed(1, b"12345")
    assert not core.well_formed(1, b"12345a")
    assert not core.well_formed(1, b"123456789")
    alnum = RoleConfig(1, "x", RoleType.PIN, min_length=1, charset=Charset.ALPHANUMERIC)
    assert alnum.well_formed(b"abC9") and not alnum.well_formed(b"ab-9")


def test_permissions_for_pin_info() -> None:
    core, _, _ = make_core()
    assert core.change_permission(1) == 0x02
    assert core.unblock_permission(1) == 0x20
    assert core.unblock_permission(3) == 0x04
    assert core.unblock_permission(5) == 0


# ---- session PINs ---------------------------------------------------------------------------


def test_session_pin_needs_authentication_and_stands_in_for_the_pin() -> None:
    core, _, _ = make_core()
    with pytest.raises(ISOError) as excinfo:
        core.issue_session_pin(1)
    assert sw_of(excinfo) == 0x6982
    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    assert len(token) == SESSION_PIN_BYTES
    assert b"123456" not in token
    assert core.issue_session_pin(1) != token
    core.deauthenticate(0x02)
    core.redeem_session_pin(1, token)
    assert core.pin_set == 0x02
    with pytest.raises(ISOError):
        core.redeem_session_pin(3, token)  # bound to its role


def test_session_pin_dies_with_reset_and_change() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    core.reset()
    with pytest.raises(ISOError) as excinfo:
        core.redeem_session_pin(1, token)
    assert sw_of(excinfo) == 0x6982

    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    core.change(1, b"123456", b"111111")
    with pytest.raises(ISOError):
        core.redeem_session_pin(1, token)

    token = core.issue_session_pin(1)
    core.invalidate_session_pins(1)
    with pytest.raises(ISOError):
        core.redeem_session_pin(1, token)


@pytest.mark.parametrize("survive", [False, True])
def test_warm_reset_keeps_session_pins_only_when_the_profile_says_so(survive: bool) -> None:
    state: dict[str, Any] = {}
    core = SecurityCore(ROLES, state, Recorder(state), True, session_pins_survive_warm_reset=survive)
    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    core.reset(cold=False)
    assert core.pin_set == 0  # a warm reset always drops the PIN_SET
    assert core.session_pin_count(1) == (1 if survive else 0)
    if survive:
        core.redeem_session_pin(1, token)
        assert core.is_authenticated(1)
    else:
        with pytest.raises(ISOError):
            core.redeem_session_pin(1, token)
    core.reset(cold=True)
    assert core.pin_set == 0 and core.session_pin_count(1) == 0
    with pytest.raises(ISOError):
        core.redeem_session_pin(1, token)


def test_a_warm_reset_that_keeps_session_pins_keeps_their_lockout() -> None:
    state: dict[str, Any] = {}
    core = SecurityCore(ROLES, state, Recorder(state), True, session_pins_survive_warm_reset=True)
    core.verify(1, b"123456")
    core.issue_session_pin(1)
    for _ in range(MAX_SESSION_PIN_FAILURES):
        with pytest.raises(ISOError):
            core.redeem_session_pin(1, bytes(SESSION_PIN_BYTES))
    core.reset(cold=False)  # must not hand a guesser a fresh failure budget
    assert core.session_pins_locked
    core.reset(cold=True)
    assert not core.session_pins_locked


def test_session_pin_survives_deauthenticate_and_idle_reset() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    core.idle_reset(6.0)
    assert core.pin_set == 0
    core.redeem_session_pin(1, token)
    assert core.pin_set == 0x02


def test_wrong_session_pins_give_no_information_and_are_rate_limited() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    core.deauthenticate(0xFF)
    wrong = [bytes(SESSION_PIN_BYTES), token[:-1], token + b"\x00"]
    answers = []
    for candidate in wrong[:MAX_SESSION_PIN_FAILURES]:
        with pytest.raises(ISOError) as excinfo:
            core.redeem_session_pin(1, candidate)
        answers.append(sw_of(excinfo))
    assert answers == [0x6982] * MAX_SESSION_PIN_FAILURES
    assert core.session_pins_locked
    # Locked out: even the right token now gets the very same answer.
    with pytest.raises(ISOError) as excinfo:
        core.redeem_session_pin(1, token)
    assert sw_of(excinfo) == 0x6982
    assert core.pin_set == 0
    assert core.tries_left(1) == 3  # no PIN try is involved
    # Only a real authentication gives session PINs back.
    core.verify(1, b"123456")
    fresh = core.issue_session_pin(1)
    assert not core.session_pins_locked
    core.deauthenticate(0xFF)
    core.redeem_session_pin(1, fresh)
    with pytest.raises(ISOError):
        core.redeem_session_pin(1, token)  # invalidated by the lock-out


def test_blocking_a_role_invalidates_its_session_pins() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    token = core.issue_session_pin(1)
    for _ in range(3):
        core.record_failure(1)
    with pytest.raises(ISOError):
        core.redeem_session_pin(1, token)


# ---- external PINs ---------------------------------------------------------------------------


def test_external_approve_yields_a_session_pin() -> None:
    core, _, _ = make_core()
    token = core.verify_external(4)
    assert len(token) == SESSION_PIN_BYTES
    assert core.is_authenticated(4)
    core.deauthenticate(0x10)
    core.redeem_session_pin(4, token)
    assert core.is_authenticated(4)


def test_external_deny_costs_a_try_and_blocks() -> None:
    core, _, recorder = make_core()
    core.set_external_source(4, PolicyPinSource("deny"))
    answers = []
    for _ in range(3):
        with pytest.raises(ISOError) as excinfo:
            core.verify_external(4)
        answers.append(sw_of(excinfo))
    assert answers == [0x63C2, 0x63C1, 0x63C0]
    assert recorder.tries(4) == 0
    with pytest.raises(ISOError) as excinfo:
        core.verify_external(4)
    assert sw_of(excinfo) == 0x6983


def test_external_timeout_costs_nothing() -> None:
    core, _, recorder = make_core()
    core.set_external_source(4, PolicyPinSource("approve_after", delay_ms=10_000))
    with pytest.raises(ISOError) as excinfo:
        core.verify_external(4, timeout=0.01)
    assert sw_of(excinfo) == 0x6982
    assert core.tries_left(4) == 3
    assert recorder.tries(4) == 3  # given back durably
    assert [s["roles"]["4"]["tries_left"] for s in recorder.snapshots[-2:]] == [2, 3]
    assert not core.is_authenticated(4)


def test_external_approve_after_a_delay() -> None:
    core, _, _ = make_core()
    core.set_external_source(4, PolicyPinSource("approve_after", delay_ms=5))
    core.verify_external(4, timeout=5.0)
    assert core.is_authenticated(4)


def test_external_only_for_external_roles_and_not_by_plain_verify() -> None:
    core, _, _ = make_core()
    with pytest.raises(ISOError) as excinfo:
        core.verify_external(1)
    assert sw_of(excinfo) == 0x6985
    with pytest.raises(ISOError) as excinfo:
        core.verify(4, b"2468")
    assert sw_of(excinfo) == 0x6985


def run_external(core: SecurityCore, role: int, timeout: float) -> dict[str, Any]:
    """verify_external in a thread (as the card thread would); the result or the status word."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["token"] = core.verify_external(role, timeout=timeout)
        except ISOError as error:
            result["sw"] = error.sw

    thread = threading.Thread(target=target)
    thread.start()
    result["thread"] = thread
    return result


@pytest.mark.parametrize(
    ("outcome", "pin", "expected_sw", "tries"),
    [
        (ExternalOutcome.APPROVE, b"", None, 3),
        (ExternalOutcome.DENY, b"", 0x63C2, 2),
        (ExternalOutcome.PIN, b"1357", None, 3),
        (ExternalOutcome.PIN, b"9999", 0x63C2, 2),
    ],
)
def test_operator_source(outcome: ExternalOutcome, pin: bytes, expected_sw: int | None, tries: int) -> None:
    core, _, _ = make_core()
    result = run_external(core, 6, timeout=30.0)
    assert core.operator.submit(outcome, pin, wait=10.0) == 6
    result["thread"].join(10.0)
    assert result.get("sw") == expected_sw
    assert core.tries_left(6) == tries
    assert core.is_authenticated(6) == (expected_sw is None)
    if expected_sw is None:
        assert len(result["token"]) == SESSION_PIN_BYTES


def test_operator_timeout_and_no_stale_approval() -> None:
    core, _, _ = make_core()
    from vcard.security import NoPendingVerification

    with pytest.raises(NoPendingVerification):
        core.operator.submit(ExternalOutcome.APPROVE)  # nothing waits: refused, not kept for later
    result = run_external(core, 6, timeout=0.05)
    result["thread"].join(10.0)
    assert result["sw"] == 0x6982
    assert core.tries_left(6) == 3
    assert core.operator.pending_roles() == []


def test_operator_source_is_shared_and_injectable() -> None:
    operator = OperatorPinSource()
    core, _, _ = make_core(external=operator)
    assert core.operator is operator

    class Always(ExternalPinSource):
        def request(self, role: int, timeout: float) -> bool:
            return True

    core2, _, _ = make_core(external=Always())
    core2.verify_external(6)
    assert core2.is_authenticated(6)
    assert Always().decide(1, 1.0) == ExternalDecision(ExternalOutcome.APPROVE)


def test_a_failing_source_costs_no_try() -> None:
    class Broken(ExternalPinSource):
        def decide(self, role: int, timeout: float) -> ExternalDecision:
            raise RuntimeError("reader unplugged")

    core, _, recorder = make_core(external=Broken())
    with pytest.raises(ISOError) as excinfo:
        core.verify_external(4)
    # Nothing was presented: 6F00, and the try taken before asking is given back durably.
    assert sw_of(excinfo) == SW.NO_PRECISE_DIAGNOSIS
    assert core.tries_left(4) == 3 and recorder.tries(4) == 3
    assert recorder.tries(4, -2) == 2  # it was consumed (durably) before the source was asked
    assert not core.is_authenticated(4)


# ---- visibility -------------------------------------------------------------------------------


def test_trace_shows_pin_set_changes(caplog: pytest.LogCaptureFixture) -> None:
    core, _, _ = make_core()
    with caplog.at_level(logging.DEBUG, logger="vcard.trace"):
        core.verify(1, b"123456")
        core.verify(3, b"654321")
        core.deauthenticate(0x02)
    messages = [r.getMessage() for r in caplog.records if r.name == "vcard.trace"]
    assert any(m.startswith("PIN_SET 0x02 -> 0x0A (+role 3") for m in messages)
    assert any(m.startswith("PIN_SET 0x0A -> 0x08 (-role 1") for m in messages)
    assert not any("123456" in m or "654321" in m for m in caplog.messages)


def test_describe_is_json_without_secrets() -> None:
    core, _, _ = make_core()
    core.verify(1, b"123456")
    core.record_failure(3)
    summary = core.describe()
    text = json.dumps(summary)
    assert "123456" not in text and ADMIN_KEY.hex() not in text
    roles = {entry["role"]: entry for entry in summary["roles"]}
    assert summary["pin_set"] == "0x02"
    assert roles[1]["authenticated"] and roles[1]["tries_left"] == 3
    assert roles[3]["tries_left"] == 2 and not roles[3]["blocked"]
    assert roles[2]["type"] == "challenge" and roles[2]["tries_left"] == "unlimited"
    assert roles[4]["external_policy"] == "approve"
    assert roles[0]["type"] == "empty"


def test_status_listener() -> None:
    core, _, _ = make_core()
    seen: list[tuple[int, int]] = []
    core.add_status_listener(lambda old, new: seen.append((old, new)))
    core.verify(1, b"123456")
    core.reset()
    assert seen == [(0, 2), (2, 0)]


# ---- profile parsing -------------------------------------------------------------------------


def reader(table: dict[str, Any]) -> TableReader:
    return TableReader(Path("test.toml"), "security.roles[0]", table)


def test_parse_role_full() -> None:
    config = parse_role(
        reader(
            {
                "role": 3,
                "label": "signature PIN",
                "type": "pin",
                "initial": "654321",
                "min_length": 6,
                "max_length": 8,
                "charset": "digits",
                "retries": 3,
                "unblocked_by": 2,
                "changed_by": [2],
                "cache_policy": "always_prompt",
                "purpose": "signature",
            }
        )
    )
    assert config == RoleConfig(
        3,
        "signature PIN",
        RoleType.PIN,
        b"654321",
        6,
        8,
        Charset.DIGITS,
        3,
        unblocked_by=2,
        changed_by=(2,),
        cache_policy="always_prompt",
        purpose="signature",
    )


def test_parse_role_challenge_and_external() -> None:
    admin = parse_role(
        reader({"role": 2, "type": "challenge", "algorithm": "aes128", "initial_hex": "00" * 16})
    )
    assert admin.initial == bytes(16) and admin.retries == 0 and admin.purpose == "administrator"
    table = {
        "role": 4,
        "type": "external",
        "external": {"policy": "approve_after", "delay_ms": 50, "timeout_s": 5},
    }
    finger = parse_role(reader(table))
    assert (finger.external_policy, finger.external_delay_ms, finger.external_timeout) == (
        "approve_after",
        50,
        5.0,
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"role": 9}, "role: must be an integer from 0 to 7"),
        ({"role": 1, "type": "password"}, "type: must be one of"),
        ({"role": 1, "initial": "12"}, "initial: does not fit"),
        ({"role": 1, "initial": "abcdef", "charset": "digits"}, "initial: does not fit"),
        ({"role": 1, "initial": "1234", "initial_hex": "31323334"}, "not both"),
        ({"role": 1, "min_length": 8, "max_length": 6}, "max_length: must be >= min_length"),
        ({"role": 2, "type": "challenge", "initial_hex": "0102"}, "must be 24 bytes"),
        ({"role": 2, "type": "challenge", "initial": "secret"}, "initial_hex"),
        ({"role": 1, "algorithm": "3des"}, "only roles of type"),
        ({"role": 1, "external": {"policy": "approve"}}, "only roles of type"),
        ({"role": 4, "type": "external", "external": {"policy": "maybe"}}, "policy: must be one of"),
        ({"role": 4, "type": "external", "external": {"plicy": "approve"}}, 'did you mean "policy"'),
        ({"role": 1, "changed_by": [1, "x"]}, "changed_by"),
        ({"role": 1, "retries": 0}, "retries"),
        ({"role": 0, "type": "pin"}, "everyone"),
        ({"role": 1, "cache_policy": "forever"}, "cache_policy"),
    ],
)
def test_parse_role_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message) as excinfo:
        parse_role(reader(table))
    assert "test.toml" in str(excinfo.value)


def test_multi_pin_profile() -> None:
    profile = load_profile("multi-pin")
    roles = {role.role: role for role in profile.roles}
    assert profile.idle_reset_seconds == 5
    assert roles[1].initial == b"123456" and roles[1].unblocked_by == 2 and roles[1].charset is Charset.DIGITS
    assert roles[2].type is RoleType.CHALLENGE and roles[2].initial.hex() == "0102030405060708" * 3
    assert roles[3].purpose == "signature" and roles[3].cache_policy == "always_prompt"
    assert roles[4].type is RoleType.EXTERNAL and roles[4].external_policy == "approve_after"
    assert roles[4].external_delay_ms == 50 and roles[4].external_timeout == 5.0
    core = SecurityCore(profile.roles, {}, lambda: None, is_new=True)
    core.verify(1, b"123456")
    core.verify(3, b"654321")
    core.verify_external(4)
    assert core.pin_set == 0x1A
