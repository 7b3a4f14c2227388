"""The operator's PIN pad: approve, deny or type a PIN for a waiting external verification.

A role of type `external` with `policy = "operator"` makes the card wait, during
VERIFY EXTERNAL, for someone at the running card:

    vcard pinpad --state DIR approve
    vcard pinpad --state DIR deny
    vcard pinpad --state DIR enter 123456     # or `enter` alone: prompted, not echoed

The command goes through the card's control socket `<DIR>/control.sock` (mode
0600: only the card's owner can press the pad) as {"command": "pinpad",
"action": ..., "pin": ..., "wait": seconds}. It answers the oldest waiting
verification; with none waiting it waits up to `--wait` seconds for one, then
fails: an approval is never kept for a later request. An entered PIN is
verified like a typed one (a wrong one costs a try) and is never logged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import click

from .security import ExternalOutcome, NoPendingVerification, OperatorPinSource, SecurityCore

DEFAULT_WAIT = 10.0
MAX_WAIT = 600.0
MAX_PIN_LENGTH = 255
ACTIONS = {"approve": ExternalOutcome.APPROVE, "deny": ExternalOutcome.DENY, "enter": ExternalOutcome.PIN}


class _Registry(Protocol):
    def register(self, name: str, handler: Any) -> None: ...


class _HasSecurity(Protocol):
    @property
    def security(self) -> SecurityCore: ...


def operator_source(target: OperatorPinSource | SecurityCore | _HasSecurity) -> OperatorPinSource:
    """The operator source of a card, a security core, or the source itself."""
    if isinstance(target, OperatorPinSource):
        return target
    if isinstance(target, SecurityCore):
        return target.operator
    return target.security.operator


def handle_pinpad(source: OperatorPinSource, request: dict[str, Any]) -> dict[str, Any]:
    """One "pinpad" control request; errors are raised as ValueError (the server answers ok=false)."""
    action = request.get("action")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    outcome = ACTIONS[action]
    pin = b""
    if outcome is ExternalOutcome.PIN:
        text = request.get("pin")
        if not isinstance(text, str) or not text:
            raise ValueError('"enter" needs a non-empty "pin" string')
        pin = text.encode("utf-8")
        if len(pin) > MAX_PIN_LENGTH:
            raise ValueError(f"a PIN has at most {MAX_PIN_LENGTH} bytes")
    elif "pin" in request:
        raise ValueError(f'"{action}" takes no PIN')
    wait = request.get("wait", 0.0)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not math.isfinite(wait) or wait < 0:
        raise ValueError(f'"wait" must be a number of seconds >= 0, not {wait!r}')
    try:
        role = source.submit(outcome, pin, wait=min(float(wait), MAX_WAIT))
    except NoPendingVerification as error:
        raise ValueError(f"{error} (waited {float(wait):g} s)") from None
    return {"role": role, "action": action}


def register_pinpad(server: _Registry, target: OperatorPinSource | SecurityCore | _HasSecurity) -> None:
    """Register the "pinpad" control command for a card's operator source.

    `target` is the OperatorPinSource, the card's SecurityCore, or anything with
    a `.security` (a VirtualCard).
    """
    source = operator_source(target)

    def pinpad_handler(request: dict[str, Any]) -> dict[str, Any]:
        return handle_pinpad(source, request)

    server.register("pinpad", pinpad_handler)


@click.command("pinpad")
@click.option(
    "--state",
    "state",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory of the running card (its control socket is <DIR>/control.sock).",
)
@click.option(
    "--wait",
    default=DEFAULT_WAIT,
    show_default=True,
    type=click.FloatRange(0, MAX_WAIT),
    help="Seconds to wait for a verification to start when none is waiting.",
)
@click.argument("action", type=click.Choice(list(ACTIONS)))
@click.argument("pin", required=False)
def pinpad(state: Path, wait: float, action: str, pin: str | None) -> None:
    """Answer a waiting external-PIN verification: approve, deny, or enter [PIN].

    Without PIN, `enter` prompts for it without echo (a PIN on the command line
    is visible to other users in the process list).
    """
    from .control import ControlError, control_request

    if action == "enter" and not pin:
        pin = click.prompt("PIN", hide_input=True)
    elif action != "enter" and pin is not None:
        raise click.BadParameter(f"{action} takes no PIN", param_hint="PIN")
    payload: dict[str, Any] = {"command": "pinpad", "action": action, "wait": wait}
    if action == "enter":
        payload["pin"] = pin
    try:
        answer = control_request(state / "control.sock", payload, timeout=wait + 10.0)
    except ControlError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{action}: role {answer.get('role')}")
