"""External PIN sources: who decides when a role of type `external` is verified.

Roles of type `external` are verified without a value from the host
(`SecurityCore.verify_external`): an ExternalPinSource decides, either a profile
policy (`PolicyPinSource`: approve, deny, approve after a delay) or the operator
through `vcard pinpad` (`OperatorPinSource`). How the core counts the try around
the decision is described in `vcard.security.core`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum


class ExternalOutcome(StrEnum):
    APPROVE = "approve"  # the PIN pad / fingerprint reader says yes
    DENY = "deny"  # presented and rejected: costs a try
    PIN = "pin"  # a PIN was entered on the pad: verified against the role's value
    TIMEOUT = "timeout"  # nothing presented in time: costs nothing


@dataclass(frozen=True)
class ExternalDecision:
    outcome: ExternalOutcome
    pin: bytes = field(default=b"", repr=False)  # never in reprs or logs


class ExternalPinSource:
    """Decides external-PIN verifications: a profile policy or an operator via `vcard pinpad`.

    Subclasses implement `request` (yes/no) or, to distinguish a timeout or pass
    an entered PIN, `decide`; the core calls `decide`.
    """

    def request(self, role: int, timeout: float) -> bool:
        """Block until approved (True) or denied / timed out (False)."""
        raise NotImplementedError

    def decide(self, role: int, timeout: float) -> ExternalDecision:
        """Block for at most `timeout` seconds and say what happened at the PIN pad."""
        approved = self.request(role, timeout)
        return ExternalDecision(ExternalOutcome.APPROVE if approved else ExternalOutcome.DENY)


class PolicyPinSource(ExternalPinSource):
    """A profile's fixed answer: `approve`, `deny`, or `approve_after` a delay (a simulated user)."""

    def __init__(self, policy: str, delay_ms: int = 0) -> None:
        if policy not in ("approve", "deny", "approve_after"):
            raise ValueError(f"unknown external PIN policy {policy!r}")
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.policy = policy
        self.delay_ms = delay_ms

    def decide(self, role: int, timeout: float) -> ExternalDecision:
        if self.policy == "deny":
            return ExternalDecision(ExternalOutcome.DENY)
        if self.policy == "approve_after":
            delay = self.delay_ms / 1000
            if delay > timeout:
                time.sleep(max(timeout, 0.0))
                return ExternalDecision(ExternalOutcome.TIMEOUT)
            time.sleep(delay)
        return ExternalDecision(ExternalOutcome.APPROVE)

    def request(self, role: int, timeout: float) -> bool:
        return self.decide(role, timeout).outcome is ExternalOutcome.APPROVE


class _PendingRequest:
    def __init__(self, role: int) -> None:
        self.role = role
        self.decision: ExternalDecision | None = None


class NoPendingVerification(LookupError):
    """The operator acted while no external verification was waiting."""


class OperatorPinSource(ExternalPinSource):
    """Decisions from a person at the running card (`vcard pinpad approve|deny|enter PIN`).

    A verification waits in `decide`; `submit` answers the oldest waiting one.
    An operator action with nothing waiting is refused (after an optional wait),
    never stored for later: a stale approval must not unlock a future request.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: list[_PendingRequest] = []

    def pending_roles(self) -> list[int]:
        with self._condition:
            return [request.role for request in self._pending]

    def decide(self, role: int, timeout: float) -> ExternalDecision:
        request = _PendingRequest(role)
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._condition:
            self._pending.append(request)
            self._condition.notify_all()
            try:
                while request.decision is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return ExternalDecision(ExternalOutcome.TIMEOUT)
                    self._condition.wait(remaining)
                return request.decision
            finally:
                if request in self._pending:
                    self._pending.remove(request)

    def request(self, role: int, timeout: float) -> bool:
        return self.decide(role, timeout).outcome is ExternalOutcome.APPROVE

    def submit(self, outcome: ExternalOutcome, pin: bytes = b"", wait: float = 0.0) -> int:
        """Answer the oldest waiting verification; returns its role.

        Waits up to `wait` seconds for a verification to start (so a script may
        run `vcard pinpad approve` right after starting the client), then raises
        NoPendingVerification.
        """
        if outcome is ExternalOutcome.TIMEOUT:
            raise ValueError("an operator cannot submit a timeout")
        deadline = time.monotonic() + max(wait, 0.0)
        with self._condition:
            while not any(request.decision is None for request in self._pending):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoPendingVerification("no external PIN verification is waiting")
                self._condition.wait(remaining)
            request = next(request for request in self._pending if request.decision is None)
            request.decision = ExternalDecision(outcome, pin if outcome is ExternalOutcome.PIN else b"")
            self._condition.notify_all()
            return request.role
