"""pytest fixtures for testing cards with APDUs: in-process vcard cards and cards behind pcscd.

Registered through the `pytest11` entry point, so any project that installs
vcard gets these fixtures:

- `vcard_card`: a `VirtualCard` from a profile with fresh state under tmp_path
  (profile `piv` unless the test says `@pytest.mark.vcard_profile("gids")`).
- `vcard_connection`: an in-process connection to it (powered on).
- `vcard_apdu`: an `ApduSession` over that connection: `send`, `check`, `run_script`.
- `vcard_pcsc_reader`: the same profile run by `vcard run` on a vpcd slot of the
  local pcscd; yields the reader name. Skipped, with the reason, when pcscd or
  vpcd are missing. Holds the machine-wide vpcd lock while the card is in.
- `vcard_pcsc_connection`: a pyscard CardConnection to that reader.
- `vcard_pcsc_apdu`: an `ApduSession` over the pyscard connection.

The helpers raise AssertionError with the command, the expected and the received
response, so a failing test reads like a failing script case.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .apdu import sw_name
from .script.parser import Location, ScriptError, parse_bytes, parse_data_pattern, parse_string, parse_sw
from .script.runner import Connection, Runner, RunResult, Status, format_result

DEFAULT_PROFILE = "piv"
CARD_START_TIMEOUT = 30.0


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

    def transmit(self, command: str | bytes, **variables: bytes) -> Response:
        raw = self._command(command, variables)
        response = bytes(self.connection.transmit(raw))
        if len(response) < 2:
            raise AssertionError(
                f"> {raw.hex(' ').upper()}\nresponse of {len(response)} bytes has no status word"
            )
        return Response(response[:-2], int.from_bytes(response[-2:], "big"))

    def send(
        self,
        command: str | bytes,
        sw: int | str | None = 0x9000,
        data: str | bytes | None = None,
        **variables: bytes,
    ) -> Response:
        """Transmit and check: `sw` an int or a pattern like "63C?" (None: any), `data` exact or pattern."""
        raw = self._command(command, variables)
        response = self.transmit(raw)
        problems = []
        if sw is not None:
            pattern = parse_sw(sw if isinstance(sw, str) else f"{sw:04X}", Location("<send>", 0))
            if pattern.match(response.sw) is None:
                problems.append(f"expected SW {pattern.source}, got {response.sw_text}")
        if data is not None:
            if isinstance(data, bytes):
                if response.data != data:
                    problems.append(f"expected data {data.hex(' ').upper() or '(none)'}")
            else:
                data_pattern = parse_data_pattern(data, Location("<send>", 0))
                if data_pattern.match(response.data, variables) is None:
                    problems.append(f"expected data {data_pattern.describe(variables)}")
        if problems:
            raise AssertionError("\n".join([f"> {raw.hex(' ').upper()}", *problems, f"got: {response}"]))
        return response

    def check(self, command: str | bytes, expected: str, **variables: bytes) -> Response:
        """Transmit and match a whole script-style expectation such as "61 ?? * 9000"."""
        pattern = expected.strip()
        head, _, tail = pattern.rpartition(" ")
        return self.send(command, sw=tail, data=head if head else b"", **variables)

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
            return parse_bytes(command, Location("<send>", 0)).render(variables)
        except Exception as error:
            raise AssertionError(f"bad command {command!r}: {error}") from None


class _PyscardConnection:
    """Adapts a pyscard CardConnection to the runner's transmit/reset."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self.connection.transmit(list(apdu))
        return bytes(data) + bytes([sw1, sw2])

    def reset(self) -> None:
        from smartcard.scard import SCARD_RESET_CARD

        self.connection.reconnect(disposition=SCARD_RESET_CARD)


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
def vcard_connection(vcard_card: Any) -> Any:
    """An in-process connection (powered on) to `vcard_card`."""
    from .transport.inproc import InProcessConnection

    return InProcessConnection(vcard_card.card)


@pytest.fixture
def vcard_apdu(vcard_connection: Any) -> ApduSession:
    return ApduSession(vcard_connection)


# ---- PC/SC fixtures --------------------------------------------------------------

_lock_guard = threading.Lock()
_lock_depth = 0
_lock_stack: contextlib.ExitStack | None = None


def _ancestors() -> set[int]:
    """This process and its parents (Linux /proc), nearest first."""
    pids = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _held_by_this_process(path: str) -> bool:
    """Whether this process or a parent already holds the flock on `path` (Linux /proc/locks).

    A test session (vcard's own integration conftest) or a wrapper such as
    `flock /tmp/vcard-vpcd.lock pytest` may hold the vpcd lock on another
    descriptor; a flock on a new descriptor would then wait for ever.
    """
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    holders = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            with contextlib.suppress(ValueError):
                holders.add(int(fields[4]))
    return bool(holders & _ancestors())


@contextlib.contextmanager
def vpcd_lock() -> Iterator[None]:
    """The machine-wide vpcd slot lock, re-entrant within this process."""
    global _lock_depth, _lock_stack
    from .transport.vpcd import LOCK_PATH, exclusive_slots

    with _lock_guard:
        if _lock_depth == 0 and _held_by_this_process(LOCK_PATH):
            _lock_stack = contextlib.ExitStack()  # someone else in this process holds it for us
        elif _lock_depth == 0:
            stack = contextlib.ExitStack()
            stack.enter_context(exclusive_slots())
            _lock_stack = stack
        _lock_depth += 1
    try:
        yield
    finally:
        with _lock_guard:
            _lock_depth -= 1
            if _lock_depth == 0 and _lock_stack is not None:
                _lock_stack.close()
                _lock_stack = None


def pcsc_unavailable(slot: int) -> str | None:
    """Why PC/SC tests cannot run here, or None when pcscd and the vpcd reader are there."""
    try:
        from smartcard.System import readers
    except ImportError as error:
        return f"pyscard is not importable: {error}"
    try:
        names = [str(r) for r in readers()]
    except Exception as error:
        return f"pcscd is not running or not reachable: {error}"
    from .transport.vpcd import reader_name

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


@contextlib.contextmanager
def running_card(profile: str, slot: int, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Run `vcard run` for `profile` on vpcd `slot` until the card is in the reader; yield the reader name.

    The caller must hold `vpcd_lock()`.
    """
    from smartcard.System import readers

    from .transport.vpcd import VPCD_BASE_PORT, reader_name

    name = reader_name(slot)
    args = list(extra_args)
    if "--state" not in args:
        args.append("--ephemeral")
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vcard",
                "run",
                "--profile",
                profile,
                "--vpcd",
                f"127.0.0.1:{VPCD_BASE_PORT + slot}",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + CARD_START_TIMEOUT
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"vcard run exited with {process.returncode}:\n{log.read().decode(errors='replace')}"
                    )
                reader = next((r for r in readers() if str(r) == name), None)
                if reader is not None:
                    connection = reader.createConnection()
                    try:
                        connection.connect()
                    except Exception:
                        pass
                    else:
                        connection.disconnect()
                        break
                if time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        f"the card did not appear in {name!r} within {CARD_START_TIMEOUT:.0f} s:\n"
                        + log.read().decode(errors="replace")
                    )
                time.sleep(0.1)
            yield name
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def vcard_pcsc_reader(request: pytest.FixtureRequest, vcard_profile: str) -> Iterator[str]:
    """A fresh card from `vcard_profile` in a vpcd reader of the local pcscd (skips without them)."""
    slot = _slot(request.config)
    reason = pcsc_unavailable(slot)
    if reason is not None:
        pytest.skip(reason)
    with vpcd_lock(), running_card(vcard_profile, slot) as name:
        yield name


@pytest.fixture
def vcard_pcsc_connection(vcard_pcsc_reader: str) -> Iterator[Any]:
    """A pyscard CardConnection to the card in `vcard_pcsc_reader`."""
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == vcard_pcsc_reader)
    connection = reader.createConnection()
    connection.connect()
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.disconnect()


@pytest.fixture
def vcard_pcsc_apdu(vcard_pcsc_connection: Any) -> ApduSession:
    return ApduSession(_PyscardConnection(vcard_pcsc_connection))
