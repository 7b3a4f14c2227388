"""Run real `vcard run` processes against the machine's pcscd + vpcd, and watch the readers.

Integration tests drive the card exactly as users do: a separate `python -m vcard run`
process connects to vpcd, pcscd shows it in "Virtual PCD 00 0<slot>", and clients
(pyscard, opensc-tool) talk to it through pcscd. Reader presence is read with
SCardGetStatusChange, which does not touch the card: connecting to check would
power it up and change the state the tests look at.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from vcard.host import Disposition, Link, PcscConnection, PcscError, SmartCardProtocol
from vcard.testing import card_present, wait_for_presence
from vcard.testing import vcard_run_command as vcard_command
from vcard.transport.vpcd import reader_name

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_PCSCD = REPO_ROOT / "scripts" / "ensure-pcscd.sh"
VPCD_CONF = Path("/etc/reader.conf.d/vpcd")

CARD_START_TIMEOUT = 15.0
CARD_STOP_TIMEOUT = 10.0
READER_EMPTY_TIMEOUT = 5.0
POLL_INTERVAL = 0.05


class HarnessError(AssertionError):
    """The environment or a card process did not do what the test needed (a test failure)."""


def environment_problem() -> str | None:
    """Why integration tests cannot run on this machine, or None."""
    missing = [tool for tool in ("pcscd", "opensc-tool") if shutil.which(tool) is None and not _sbin(tool)]
    if missing:
        return (
            f"missing {', '.join(missing)}: install with `apt-get install -y pcscd vsmartcard-vpcd opensc` "
            "(or run `make test`, which installs them)"
        )
    if not VPCD_CONF.exists():
        return f"{VPCD_CONF} is missing: install vsmartcard-vpcd (`apt-get install -y vsmartcard-vpcd`)"
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as error:
        return f"pyscard is not importable ({error}): `pip install -e '.[dev]'`"
    return None


def _sbin(tool: str) -> bool:
    return Path("/usr/sbin", tool).exists()


def require_clients(problem: str | None) -> None:
    """Module-level guard for client tools: a missing tool fails the run (make test installs
    them, so a silent skip would hide a broken set-up) unless integration tests are skipped
    on purpose with VCARD_SKIP_INTEGRATION=1."""
    import pytest

    if problem is None:
        return
    if os.environ.get("VCARD_SKIP_INTEGRATION", "") not in ("", "0"):
        pytest.skip(problem, allow_module_level=True)
    pytest.fail(
        f"{problem} (run `make test`, which installs it, or set VCARD_SKIP_INTEGRATION=1)", pytrace=False
    )


def ensure_pcscd() -> None:
    """Run scripts/ensure-pcscd.sh; raise HarnessError with its output if it fails."""
    result = subprocess.run(
        ["bash", str(ENSURE_PCSCD)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise HarnessError(
            f"{ENSURE_PCSCD} failed ({result.returncode}):\n{result.stdout}{result.stderr}".rstrip()
        )


# ---- reader state ------------------------------------------------------------------


class CardProcess:
    """`python -m vcard run` on one vpcd slot, from start until its card is in the reader.

    Used as a context manager: entering starts the process and waits (up to 15 s)
    until "Virtual PCD 00 0<slot>" has a card; leaving sends SIGTERM and waits for
    the process. Its stderr goes to a temporary file (a pipe could fill up with
    --trace and stall the card) and is quoted in every failure message.
    """

    def __init__(self, profile: str = "iso", slot: int = 0, extra_args: Sequence[str] = ()) -> None:
        self.profile = profile
        self.slot = slot
        self.extra_args = tuple(extra_args)
        self.reader = reader_name(slot)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def command(self) -> list[str]:
        return vcard_command(self.profile, self.slot, self.extra_args)

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def start(self) -> CardProcess:
        # pcscd notices a departed card at its next presence poll; give a previous card time to go
        if not wait_for_presence(self.reader, present=False, timeout=READER_EMPTY_TIMEOUT):
            raise HarnessError(
                f"{self.reader!r} still has a card {READER_EMPTY_TIMEOUT:.0f} s before the test started "
                "one: another card (not under /tmp/vcard-vpcd.lock) holds this vpcd slot"
            )
        self._log = tempfile.TemporaryFile(prefix="vcard-run-")  # noqa: SIM115 - closed in close()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
        )
        self.wait_present()
        return self

    def wait_present(self, timeout: float = CARD_START_TIMEOUT) -> None:
        """Wait until the card is in the reader; fail with the process output if it is not."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise HarnessError(
                    f"`{' '.join(self.command)}` exited with {self.process.returncode} before its card "
                    f"appeared in {self.reader!r}. Its output:\n{self.output()}"
                )
            if card_present(self.reader):
                return
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"no card in {self.reader!r} {timeout:.0f} s after starting `{' '.join(self.command)}`. "
                    f"Its output:\n{self.output()}"
                )
            time.sleep(POLL_INTERVAL)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def terminate(self, timeout: float = CARD_STOP_TIMEOUT) -> int:
        """SIGTERM and wait; kill (and fail) if it does not end. Returns the exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise HarnessError(
                    f"`vcard run` ignored SIGTERM for {timeout:.0f} s and was killed. Its output:\n"
                    f"{self.output()}"
                ) from None
        return process.returncode

    def close(self) -> None:
        """Stop the process and wait until its reader is empty, so the next test starts clean."""
        try:
            self.terminate()
            if self.process is not None and not wait_for_presence(
                self.reader, present=False, timeout=READER_EMPTY_TIMEOUT
            ):
                raise HarnessError(f"{self.reader!r} still shows a card after `vcard run` ended")
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> CardProcess:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


# ---- clients ---------------------------------------------------------------------------


def opensc_tool(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run opensc-tool; its output is in the result (stdout + stderr)."""
    return subprocess.run(
        ["opensc-tool", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def pcsc_connection(reader: str, disposition: int | None = None) -> PcscConnection:
    """A PC/SC connection to `reader`; `disposition` is what its close() does.

    The default is SCARD_LEAVE_CARD, what most PC/SC applications do. Pass
    SCARD_RESET_CARD or SCARD_UNPOWER_CARD to test those.
    """
    try:
        return PcscConnection(
            reader, disposition=Disposition.LEAVE_CARD if disposition is None else disposition
        )
    except PcscError as error:
        raise HarnessError(str(error)) from None


def transmit(connection: Link, apdu: bytes | str) -> tuple[bytes, int]:
    """Send one APDU (bytes or hex) exactly as given; return (data, SW)."""
    raw = bytes.fromhex(apdu) if isinstance(apdu, str) else apdu
    data, sw = SmartCardProtocol(connection).exchange(raw)
    return data, sw


def operator_pin_profile(timeout_s: int) -> str:
    """An iso card with a user PIN (role 1) and an operator-approved external role (4):
    `vcard pinpad` answers its verifications, or they time out after `timeout_s`."""
    return f"""
description = "iso card with an operator-approved external role (integration test)"
default_applet = "iso"

[[security.roles]]
role = 1
label = "user"
type = "pin"
initial = "123456"
min_length = 6
max_length = 8
charset = "digits"
retries = 3

[[security.roles]]
role = 4
label = "pin pad"
type = "external"
initial = "2468"
min_length = 4
max_length = 8
retries = 3

[security.roles.external]
policy = "operator"
timeout_s = {timeout_s}

[applets.iso]
"""
