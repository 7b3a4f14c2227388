"""Run a `vcard run` card on a vpcd slot of the local pcscd, for tests and benchmarks.

The pytest plugin's `vcard_pcsc_reader` fixture, the integration harness and the
benchmarks all need the same three things: the `vcard run` command line for a
slot, a way to see whether a reader holds a card, and a process that is started,
waited for and stopped. They live here, in the package, because the plugin (which
other projects load) cannot import vcard's own tests/.

Presence is read with SCardGetStatusChange, which does not touch the card:
connecting to check would power it up, and a test that looks at power-on state
(PIN status, the ATR exchange, a recording's first session) would see the
check's session instead of a fresh card.

pyscard is imported lazily: loading the plugin must not need it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

from ..transport.vpcd import VPCD_BASE_PORT, reader_name

CARD_START_TIMEOUT = 30.0
CARD_STOP_TIMEOUT = 10.0
READER_EMPTY_TIMEOUT = 5.0
POLL_INTERVAL = 0.05


class CardProcessError(RuntimeError):
    """pcscd, the reader or the `vcard run` process did not do what was needed; says what and why."""


def vcard_run_command(profile: str, slot: int, extra_args: Sequence[str] = ()) -> list[str]:
    """The `vcard run` command line for a card on vpcd `slot` (ephemeral unless --state is given)."""
    storage = [] if "--state" in extra_args or "--ephemeral" in extra_args else ["--ephemeral"]
    return [
        sys.executable,
        "-m",
        "vcard",
        "run",
        "--profile",
        profile,
        *storage,
        "--vpcd",
        f"127.0.0.1:{VPCD_BASE_PORT + slot}",
        *extra_args,
    ]


def reader_states() -> dict[str, int]:
    """Event state (SCARD_STATE_* bits) of every PC/SC reader, without connecting to any card."""
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise CardProcessError(f"cannot reach pcscd: {scard.SCardGetErrorMessage(hresult)}")
    try:
        hresult, names = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return {}
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardProcessError(f"SCardListReaders: {scard.SCardGetErrorMessage(hresult)}")
        query = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        hresult, states = scard.SCardGetStatusChange(context, 0, query)
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardProcessError(f"SCardGetStatusChange: {scard.SCardGetErrorMessage(hresult)}")
        return {name: int(event) for name, event, _atr in states}
    finally:
        scard.SCardReleaseContext(context)


def card_present(reader: str) -> bool:
    """Whether `reader` holds a card (pcscd's view; the card is not powered by asking)."""
    from smartcard import scard

    state = reader_states().get(reader)
    if state is None:
        raise CardProcessError(f"no reader {reader!r} in pcscd (is vsmartcard-vpcd installed?)")
    return bool(state & scard.SCARD_STATE_PRESENT)


def wait_for_presence(reader: str, present: bool, timeout: float) -> bool:
    """Poll until the reader has (or has no) card; False if `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        if card_present(reader) == present:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


@contextlib.contextmanager
def running_card(
    profile: str, slot: int = 0, extra_args: Sequence[str] = (), timeout: float = CARD_START_TIMEOUT
) -> Iterator[str]:
    """Run `vcard run` for `profile` on vpcd `slot` until its card is in the reader; yield the reader name.

    The caller holds the vpcd lock (`vcard.testing.exclusive_slots`). On leaving,
    the process gets SIGTERM (SIGKILL after 10 s) and the reader is given time to
    empty, so the next card on the slot starts clean. Failures raise CardProcessError
    quoting the process output.
    """
    name = reader_name(slot)
    command = vcard_run_command(profile, slot, extra_args)
    # pcscd notices a departed card at its next presence poll; give a previous card time to go
    if not wait_for_presence(name, present=False, timeout=READER_EMPTY_TIMEOUT):
        raise CardProcessError(
            f"{name!r} still has a card {READER_EMPTY_TIMEOUT:.0f} s before starting one: another card"
            " (not under the vpcd lock) holds this vpcd slot"
        )
    with tempfile.TemporaryFile(prefix="vcard-run-") as log:

        def output() -> str:
            log.flush()
            log.seek(0)
            return log.read().decode(errors="replace")

        # a file, not a pipe: a pipe could fill up (e.g. with --trace) and stall the card
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        try:
            deadline = time.monotonic() + timeout
            while not card_present(name):
                if process.poll() is not None:
                    raise CardProcessError(
                        f"`{' '.join(command)}` exited with {process.returncode} before its card appeared"
                        f" in {name!r}. Its output:\n{output()}"
                    )
                if time.monotonic() >= deadline:
                    raise CardProcessError(
                        f"no card in {name!r} {timeout:.0f} s after starting `{' '.join(command)}`."
                        f" Its output:\n{output()}"
                    )
                time.sleep(POLL_INTERVAL)
            yield name
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(CARD_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            with contextlib.suppress(CardProcessError):  # pcscd gone: nothing left to wait for
                wait_for_presence(name, present=False, timeout=READER_EMPTY_TIMEOUT)
