"""pytest fixtures for testing cards with APDUs: in-process vcard cards and cards behind pcscd.

Registered through the `pytest11` entry point, so any project that installs
vcard gets these fixtures:

- `vcard_card`: a `VirtualCard` from a profile with fresh state under tmp_path
  (profile `piv` unless the test says `@pytest.mark.vcard_profile("gids")`).
- `vcard_connection`: a `vcard.host.InProcessConnection` to it (powered on).
- `vcard_apdu`: an `ApduSession` over that connection: `send`, `check`, `run_script`.
- `vcard_pcsc_reader`: the same profile run by `vcard run` on a vpcd slot of the
  local pcscd; yields the reader name. Skipped, with the reason, when pcscd or
  vpcd are missing. Holds the machine-wide vpcd lock while the card is in.
- `vcard_pcsc_connection`: a `vcard.host.PcscConnection` to that reader.
- `vcard_pcsc_apdu`: an `ApduSession` over that connection.

The helpers raise AssertionError with the command, the expected and the received
response, so a failing test reads like a failing script case.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .apdu import sw_name
from .host import InProcessConnection, PcscConnection, ResponseError, SmartCardProtocol
from .script.functions import ExpressionError
from .script.parser import (
    DataPattern,
    Location,
    ScriptError,
    SwPattern,
    parse_bytes,
    parse_data_pattern,
    parse_expectation,
    parse_string,
    parse_sw,
)
from .script.runner import Connection, Runner, RunResult, Status, format_result

DEFAULT_PROFILE = "piv"
HERE = Location("<send>", 0)
_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True)
class Response:
    """A response APDU as tests like to see it."""

    data: bytes
    sw: int

    @property
    def sw_text(self) -> str:
        return f"{self.sw:04X} ({sw_name(self.sw)})"

    def __str__(self) -> str:
        return f"{self.data.hex(' ').upper()} {self.sw_text}".strip()


class ApduSession:
    """Send APDUs and assert on status words and data with readable failures.

    Commands are written as in scripts: hex with spaces, `[data]` for a computed
    Lc, `${NAME}` for values given as keyword arguments. Expected data uses the
    script patterns too (`??` masks, `*`, `/regex/`), or plain bytes.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.protocol = SmartCardProtocol(connection)

    def transmit(self, command: str | bytes, **variables: bytes) -> Response:
        raw = self._command(command, variables)
        try:
            data, sw = self.protocol.exchange(raw)
        except ResponseError as error:
            raise AssertionError(f"> {raw.hex(' ').upper()}\n{error}") from None
        return Response(data, sw)

    def send(
        self,
        command: str | bytes,
        sw: int | str | None = 0x9000,
        data: str | bytes | None = None,
        **variables: bytes,
    ) -> Response:
        """Transmit and check: `sw` an int or a pattern like "63C?" (None: any), `data` exact or pattern."""
        if isinstance(sw, int):
            sw = f"{sw:04X}"
        if isinstance(data, bytes):
            data = data.hex()  # exact bytes are the pattern of their hex digits
        sw_pattern = None if sw is None else _parse(parse_sw, sw)
        data_pattern = None if data is None else _parse(parse_data_pattern, data)
        return self._exchange(command, sw_pattern, data_pattern, variables)

    def check(self, command: str | bytes, expected: str, **variables: bytes) -> Response:
        """Transmit and match a whole script-style expectation such as "61 ?? * 9000" (as after `<`)."""
        expectation = _parse(parse_expectation, expected)
        return self._exchange(command, expectation.sw, expectation.data, variables)

    def _exchange(
        self,
        command: str | bytes,
        sw: SwPattern | None,
        data: DataPattern | None,
        variables: Mapping[str, bytes],
    ) -> Response:
        raw = self._command(command, dict(variables))
        response = self.transmit(raw)
        problems = []
        try:
            if sw is not None and sw.match(response.sw, variables) is None:
                problems.append(f"expected SW {sw.describe(variables)}, got {response.sw_text}")
            if data is not None and data.match(response.data, variables) is None:
                problems.append(f"expected data {data.describe(variables)}")
        except ExpressionError as error:
            raise AssertionError(f"> {raw.hex(' ').upper()}\n{error}") from None
        if problems:
            raise AssertionError("\n".join([f"> {raw.hex(' ').upper()}", *problems, f"got: {response}"]))
        return response

    def reset(self) -> None:
        self.connection.reset()

    def run_script(self, text: str, destructive: bool = True, **overrides: str) -> RunResult:
        """Run script text on this connection; fails the test listing every failing case."""
        try:
            script = parse_string(text, "<run_script>")
            outcome = Runner(script, self.connection, overrides, destructive=destructive).run()
        except ScriptError as error:
            raise AssertionError(str(error)) from None
        bad = [r for r in outcome.results if r.status in (Status.FAILED, Status.ERROR)]
        if bad:
            raise AssertionError("\n".join(format_result(r) for r in bad))
        return outcome

    @staticmethod
    def _command(command: str | bytes, variables: dict[str, bytes]) -> bytes:
        if isinstance(command, bytes):
            return command
        try:
            return parse_bytes(command, HERE).render(variables)
        except Exception as error:
            raise AssertionError(f"bad command {command!r}: {error}") from None


def _parse(parser: Callable[[str, Location], _Parsed], text: str) -> _Parsed:
    """A script pattern given to `send`/`check`; a mistake in it fails the test with the reason."""
    try:
        return parser(text, HERE)
    except ScriptError as error:
        raise AssertionError(f"bad pattern {text!r}: {error}") from None


# ---- hooks -----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vcard")
    group.addoption(
        "--vcard-vpcd-slot",
        type=int,
        default=None,
        help="vpcd slot for vcard_pcsc_* fixtures (default 0, or $VCARD_VPCD_SLOT).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vcard_profile(name): profile of the vcard_card / vcard_pcsc_* fixtures"
    )


def _profile_of(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("vcard_profile")
    if marker is not None and marker.args:
        return str(marker.args[0])
    return DEFAULT_PROFILE


# ---- in-process fixtures ---------------------------------------------------------


@pytest.fixture
def vcard_profile(request: pytest.FixtureRequest) -> str:
    """The profile name of this test's card (override the fixture or use the vcard_profile marker)."""
    return _profile_of(request)


@pytest.fixture
def vcard_card(vcard_profile: str, tmp_path: Path) -> Iterator[Any]:
    """A fresh card from `vcard_profile`, its state under tmp_path (inspectable after the test)."""
    from .profile import load_profile
    from .runtime import VirtualCard

    card = VirtualCard.open(load_profile(vcard_profile), tmp_path / "vcard-state", ephemeral=False)
    try:
        yield card
    finally:
        card.close()


@pytest.fixture
def vcard_connection(vcard_card: Any) -> InProcessConnection:
    """An in-process connection (powered on) to `vcard_card`."""
    return InProcessConnection(vcard_card.card)


@pytest.fixture
def vcard_apdu(vcard_connection: Any) -> ApduSession:
    return ApduSession(vcard_connection)


# ---- PC/SC fixtures --------------------------------------------------------------


def pcsc_unavailable(slot: int) -> str | None:
    """Why PC/SC tests cannot run here, or None when pcscd and the vpcd reader are there."""
    try:
        from smartcard import scard  # noqa: F401
    except ImportError as error:
        return f"pyscard is not importable: {error}"
    from .host import list_readers
    from .transport.vpcd import reader_name

    names = list_readers()
    wanted = reader_name(slot)
    if wanted not in names:
        listed = ", ".join(names) or "none"
        return f"no reader {wanted!r} (is vsmartcard-vpcd installed in pcscd?); readers: {listed}"
    return None


def _slot(config: pytest.Config) -> int:
    value = config.getoption("--vcard-vpcd-slot", default=None)
    if value is None:
        value = int(os.environ.get("VCARD_VPCD_SLOT", "0"))
    return int(value)


@pytest.fixture
def vcard_pcsc_reader(request: pytest.FixtureRequest, vcard_profile: str) -> Iterator[str]:
    """A fresh card from `vcard_profile` in a vpcd reader of the local pcscd (skips without them)."""
    slot = _slot(request.config)
    reason = pcsc_unavailable(slot)
    if reason is not None:
        pytest.skip(reason)
    from .testing import exclusive_slots, running_card

    # re-entrant: inside a session that already holds the lock (vcard's integration conftest,
    # `flock LOCK pytest`) this does not wait for itself
    with exclusive_slots(), running_card(vcard_profile, slot) as name:
        yield name


@pytest.fixture
def vcard_pcsc_connection(vcard_pcsc_reader: str) -> Iterator[PcscConnection]:
    """A PC/SC connection to the card in `vcard_pcsc_reader` (SCARD_LEAVE_CARD on close)."""
    with PcscConnection(vcard_pcsc_reader) as connection:
        yield connection


@pytest.fixture
def vcard_pcsc_apdu(vcard_pcsc_connection: PcscConnection) -> ApduSession:
    return ApduSession(vcard_pcsc_connection)
