"""Run parsed APDU scripts against a card connection and report per case.

The runner needs a connection of the host APDU stack (`vcard.host`): the same
script runs against a card in this process (`InProcessConnection`) and against
any PC/SC reader (`PcscConnection`). Each step is one raw exchange: a script
says every byte that goes to the card, GET RESPONSE included. A case stops at its first
failing step: later steps usually depend on the earlier ones (a VERIFY before a
signature), and their failures would only bury the real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ..apdu import sw_name
from ..host import ResponseError, SmartCardProtocol
from .functions import ExpressionError, evaluate
from .parser import (
    Assert,
    ByteTemplate,
    CallDefine,
    Case,
    DataPattern,
    Location,
    Nibbles,
    Reset,
    Script,
    ScriptError,
    Send,
    SetVar,
    Step,
    Subst,
    parse_bytes,
)


class Connection(Protocol):
    """What the runner needs from a card: vcard.host's InProcessConnection and PcscConnection fit."""

    def transmit(self, apdu: bytes) -> bytes: ...

    def reset(self) -> None: ...


class Status(Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass
class CaseResult:
    """The outcome of one case: `message` is one line, `details` the expected-vs-got block."""

    case: Case
    status: Status
    message: str = ""
    details: str = ""
    exchanges: list[tuple[bytes, bytes]] = field(default_factory=list)
    duration: float = 0.0


@dataclass
class RunResult:
    results: list[CaseResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for result in self.results if result.status is status)

    @property
    def ok(self) -> bool:
        return self.count(Status.FAILED) == 0 and self.count(Status.ERROR) == 0

    def summary(self) -> str:
        return (
            f"{len(self.results)} cases: {self.count(Status.PASSED)} passed,"
            f" {self.count(Status.FAILED)} failed,"
            f" {self.count(Status.ERROR)} errors, {self.count(Status.SKIPPED)} skipped"
        )


class StepFailed(Exception):
    """A step whose response did not match; carries the readable expected-vs-got block."""

    def __init__(self, location: Location, message: str, details: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message
        self.details = details


class StepError(Exception):
    """A step that could not run (bad expression, card gone); the case is an error, not a failure."""


def spaced(data: bytes) -> str:
    return data.hex(" ").upper()


def initial_variables(script: Script, overrides: Mapping[str, str]) -> dict[str, bytes]:
    """Variable values: `--set` overrides first, then each `var` default in order.

    An override is read like the variable's default: text when the default was
    written as "quoted text" (so `--set PIN=654321` means the six digits), hex
    otherwise; a quoted override is always text.
    """
    unknown = sorted(set(overrides) - set(script.variables))
    if unknown:
        known = ", ".join(sorted(script.variables)) or "none"
        raise ScriptError(
            f"--set {unknown[0]}: the scripts declare no variable {unknown[0]} (declared: {known})"
        )
    values: dict[str, bytes] = {}
    for name, variable in script.variables.items():
        if name in overrides:
            text = overrides[name]
            stripped = text.strip()
            if variable.text and not (stripped.startswith('"') and stripped.endswith('"')):
                values[name] = text.encode()
                continue
            template = parse_bytes(text, Location(f"--set {name}", 0), allow_lc=False)
        else:
            template = variable.default
        try:
            values[name] = template.render(values)
        except ExpressionError as error:
            where = "--set" if name in overrides else str(variable.location)
            raise ScriptError(f"{where}: var {name}: {error}") from None
    return values


class Runner:
    """Runs every case of a script in order against one connection."""

    def __init__(
        self,
        script: Script,
        connection: Connection,
        overrides: Mapping[str, str] | None = None,
        destructive: bool = False,
        select: Callable[[Case], bool] | None = None,
    ) -> None:
        self.script = script
        self.connection = connection
        self.protocol = SmartCardProtocol(connection)
        self.destructive = destructive
        self.select = select
        self.variables = initial_variables(script, overrides or {})

    def run(self, on_result: Callable[[CaseResult], Any] | None = None) -> RunResult:
        outcome = RunResult()
        for result in self.iter_results():
            outcome.results.append(result)
            if on_result is not None:
                on_result(result)
        return outcome

    def iter_results(self) -> Iterator[CaseResult]:
        for case in self.script.cases:
            if self.select is not None and not self.select(case):
                continue
            if case.destructive and not self.destructive:
                yield CaseResult(
                    case, Status.SKIPPED, "destructive (run with --destructive on a throwaway card)"
                )
                continue
            yield self.run_case(case)

    def run_case(self, case: Case) -> CaseResult:
        variables = dict(self.variables)
        result = CaseResult(case, Status.PASSED)
        started = time.perf_counter()
        calls: list[str] = []
        try:
            if case.setup is not None:
                calls.append(f"setup {case.setup}")
                self._run_steps(self.script.defines[case.setup].steps, variables, result, calls)
                calls.pop()
            self._run_steps(case.steps, variables, result, calls)
        except StepFailed as failure:
            result.status = Status.FAILED
            result.message = str(failure) + _call_chain(calls)
            result.details = failure.details
        except StepError as error:
            result.status = Status.ERROR
            result.message = str(error) + _call_chain(calls)
        result.duration = time.perf_counter() - started
        return result

    def _run_steps(
        self, steps: Sequence[Step], variables: dict[str, bytes], result: CaseResult, calls: list[str]
    ) -> None:
        for step in steps:
            if isinstance(step, Send):
                self._send(step, variables, result)
            elif isinstance(step, Reset):
                try:
                    self.connection.reset()
                except Exception as error:
                    raise StepError(f"{step.location}: reset failed: {error}") from error
            elif isinstance(step, CallDefine):
                calls.append(f"{step.name} called at {step.location}")
                self._run_steps(self.script.defines[step.name].steps, variables, result, calls)
                calls.pop()
            elif isinstance(step, SetVar):
                variables[step.name] = _render(step.value, variables, step.location)
            else:
                self._assert(step, variables)

    def _send(self, step: Send, variables: dict[str, bytes], result: CaseResult) -> None:
        command = _render(step.command, variables, step.location)
        if not command:
            raise StepError(f"{step.location}: the command is empty")
        try:
            data, sw = self.protocol.exchange(command)
        except ResponseError as error:
            result.exchanges.append((command, error.response))
            raise StepFailed(
                step.expect_location,
                "response has no status word",
                f"  sent:     {spaced(command)}\n  got:      {spaced(error.response) or '(nothing)'}",
            ) from None
        except Exception as error:
            raise StepError(f"{step.location}: transmit failed: {error}") from error
        result.exchanges.append((command, data + sw.to_bytes(2, "big")))
        try:
            sw_captures = step.expect.sw.match(sw, variables)
            data_captures = step.expect.data.match(data, variables)
        except (ExpressionError, ValueError) as error:
            raise StepError(f"{step.expect_location}: {error}") from None
        if sw_captures is None or data_captures is None:
            what = "status word" if data_captures is not None else "data"
            if sw_captures is None and data_captures is None:
                what = "status word and data"
            raise StepFailed(
                step.expect_location,
                f"{what} did not match",
                _mismatch(command, step.expect.data, step.expect.sw.describe(variables), data, sw, variables),
            )
        variables.update(data_captures)
        variables.update(sw_captures)

    def _assert(self, step: Assert, variables: dict[str, bytes]) -> None:
        value = _render(step.value, variables, step.location)
        try:
            captures = step.pattern.match(value, variables)
        except (ExpressionError, ValueError) as error:
            raise StepError(f"{step.location}: {error}") from None
        if (captures is None) != step.negate:
            expected = ("not " if step.negate else "") + step.pattern.describe(variables)
            raise StepFailed(
                step.location,
                "assert failed",
                f"  value:    {step.value.source}\n  expected: {expected}\n"
                f"  got:      {spaced(value) or '(empty)'}"
                + ("" if step.negate else _first_difference(step.pattern, value, variables)),
            )
        if captures is not None and not step.negate:
            variables.update(captures)


def _call_chain(calls: list[str]) -> str:
    """Where a failing step in a define was called from (innermost first)."""
    return f" (in {', in '.join(reversed(calls))})" if calls else ""


def _render(template: ByteTemplate, variables: Mapping[str, bytes], location: Location) -> bytes:
    try:
        return template.render(variables)
    except ExpressionError as error:
        raise StepError(f"{location}: {error}") from None


def _mismatch(
    command: bytes, pattern: DataPattern, sw_source: str, data: bytes, sw: int, variables: Mapping[str, bytes]
) -> str:
    expected_data = pattern.describe(variables)
    lines = [
        f"  sent:     {spaced(command)}",
        f"  expected: {expected_data} {sw_source}".replace("(no data) ", ""),
        f"  got:      {(spaced(data) + ' ') if data else ''}{sw:04X} ({sw_name(sw)})",
    ]
    return "\n".join(lines) + _first_difference(pattern, data, variables)


def _first_difference(pattern: DataPattern, data: bytes, variables: Mapping[str, bytes]) -> str:
    """For exact expectations, point at the first differing byte (long objects are hard to eyeball)."""
    if pattern.regex is not None or not all(isinstance(p, Nibbles | Subst) for p in pattern.pieces):
        return ""
    expected_hex = ""
    for piece in pattern.pieces:
        if isinstance(piece, Nibbles):
            if "?" in piece.text:
                return ""
            expected_hex += piece.text
        elif isinstance(piece, Subst):
            try:
                expected_hex += evaluate(piece.expr, variables).hex().upper()
            except ExpressionError:
                return ""
    expected = bytes.fromhex(expected_hex)
    if expected == data:
        return ""
    for index, (a, b) in enumerate(zip(expected, data, strict=False)):
        if a != b:
            return f"\n  first difference at data byte {index}: expected {a:02X}, got {b:02X}"
    return f"\n  data length differs: expected {len(expected)} bytes, got {len(data)}"


def format_result(result: CaseResult, verbose: bool = False) -> str:
    """One line per case; failures add the expected-vs-got block; verbose adds the exchanges."""
    label = {
        Status.PASSED: "PASS",
        Status.FAILED: "FAIL",
        Status.ERROR: "ERROR",
        Status.SKIPPED: "SKIP",
    }[result.status]
    line = f"{label:<5} {result.case.full_name}"
    if result.status is Status.SKIPPED:
        line += f"  ({result.message})"
    out = [line]
    if result.status in (Status.FAILED, Status.ERROR):
        out.append(f"      {result.message}")
        if result.details:
            out.extend("    " + detail for detail in result.details.splitlines())
    if verbose:
        for command, response in result.exchanges:
            out.append(f"      > {spaced(command)}")
            out.append(f"      < {spaced(response)}")
    return "\n".join(out)


__all__ = [
    "CaseResult",
    "Connection",
    "RunResult",
    "Runner",
    "Status",
    "format_result",
    "initial_variables",
]
