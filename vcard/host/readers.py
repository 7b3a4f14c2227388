"""Reader and card events: SCardGetStatusChange with a cancel handle (SCardCancel).

A service that acts on card insertion and removal (certificate propagation, a lock
screen) blocks in SCardGetStatusChange until a reader changes; it never polls. To stop
it cleanly another thread calls SCardCancel on the same context, which makes the
blocked call return SCARD_E_CANCELLED (PC/SC part 5, pcsc-lite winscard_clnt.c).

pcsc-lite keeps a per-reader event counter in the upper 16 bits of dwEventState, so a
card taken out and put back between two calls is still reported as a change (the
state bits alone would look the same). Passing the previous event state back as the
current state makes the call return on any such change.

The special reader name "\\\\?PnP?\\Notification" (pcsc-lite and Windows) reports readers
being added or removed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .connection import PcscError, _scard

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
"""The pseudo-reader whose event state changes when a reader is added or removed."""

_STATE_PRESENT = 0x0020  # SCARD_STATE_PRESENT
_STATE_CHANGED = 0x0002  # SCARD_STATE_CHANGED
_COUNTER_SHIFT = 16
_CANCEL_RETRY = 0.05


@dataclass(frozen=True)
class ReaderState:
    """One reader as SCardGetStatusChange last reported it."""

    name: str
    event_state: int
    atr: bytes

    @property
    def present(self) -> bool:
        return bool(self.event_state & _STATE_PRESENT)

    @property
    def events(self) -> int:
        """pcsc-lite's count of card events in this reader (insertions and removals)."""
        return (self.event_state >> _COUNTER_SHIFT) & 0xFFFF

    def current(self) -> int:
        """The value to pass back as dwCurrentState: everything but the CHANGED flag."""
        return self.event_state & ~_STATE_CHANGED & 0xFFFFFFFF


class ReaderMonitor:
    """Waits for reader changes on its own PC/SC context; `cancel()` from any thread ends a wait.

    Use `snapshot()` once, then `wait(previous)` in a loop: it returns the new states
    after a change, or None when cancelled. `close()` releases the context.
    """

    def __init__(self) -> None:
        self._scard = _scard()
        rc, context = self._scard.SCardEstablishContext(self._scard.SCARD_SCOPE_USER)
        self._check("SCardEstablishContext", rc)
        self._context = context
        self._lock = threading.Lock()
        self._cancelled = False
        self._closed = False
        self._waiting = False
        self._left = threading.Event()

    def _check(self, call: str, rc: int) -> None:
        if rc != self._scard.SCARD_S_SUCCESS:
            raise PcscError(call, rc & 0xFFFFFFFF, self._scard.SCardGetErrorMessage(rc))

    def readers(self) -> list[str]:
        """The readers pcscd knows now (empty when it has none)."""
        rc, names = self._scard.SCardListReaders(self._context, [])
        if rc == self._scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        self._check("SCardListReaders", rc)
        return list(names)

    def snapshot(self) -> dict[str, ReaderState]:
        """Every reader's state now, without waiting."""
        query = [(name, self._scard.SCARD_STATE_UNAWARE) for name in self.readers()]
        if not query:
            return {}
        rc, states = self._scard.SCardGetStatusChange(self._context, 0, query)
        self._check("SCardGetStatusChange", rc)
        return self._parse(states)

    def wait(
        self, previous: dict[str, ReaderState], timeout: float | None = None
    ) -> dict[str, ReaderState] | None:
        """Block until a reader in `previous` changes or a reader comes or goes; the new states.

        Returns None when `cancel()` was called (before or during the wait) and
        `previous` unchanged when `timeout` seconds pass without a change.
        """
        names = set(self.readers())
        if names != set(previous):
            return self.snapshot()  # a reader came or went while we were not waiting
        query: list[tuple[str, int]] = [(name, state.current()) for name, state in previous.items()]
        # pcsc-lite compares the reader count in the upper 16 bits with the real one
        query.append((PNP_NOTIFICATION, len(names) << _COUNTER_SHIFT))
        milliseconds = self._scard.INFINITE if timeout is None else max(0, round(timeout * 1000))
        with self._lock:
            if self._cancelled:
                return None
            self._waiting = True
            self._left.clear()
        try:
            rc, states = self._scard.SCardGetStatusChange(self._context, milliseconds, query)
        finally:
            with self._lock:
                self._waiting = False
                self._left.set()
        if rc == self._scard.SCARD_E_CANCELLED:
            return None
        if rc == self._scard.SCARD_E_TIMEOUT:
            return dict(previous)
        if rc == self._scard.SCARD_E_UNKNOWN_READER:
            return self.snapshot()  # a reader vanished between listing and waiting
        self._check("SCardGetStatusChange", rc)
        parsed = self._parse(states)
        if PNP_NOTIFICATION in parsed:
            del parsed[PNP_NOTIFICATION]
            if set(self.readers()) != set(parsed):
                return self.snapshot()
        return parsed

    def cancel(self) -> None:
        """End the current and every later `wait` (SCardCancel); safe from any thread."""
        with self._lock:
            self._cancelled = True
        while True:
            with self._lock:
                if self._closed or not self._waiting:
                    return  # a wait that starts now sees the flag and returns at once
            # SCardCancel only reaches a call already blocked in pcscd: a waiter that is just
            # entering would miss it, so repeat until the waiter has left
            rc = self._scard.SCardCancel(self._context)
            if rc not in (self._scard.SCARD_S_SUCCESS, self._scard.SCARD_E_INVALID_HANDLE):
                self._check("SCardCancel", rc)
            if self._left.wait(_CANCEL_RETRY):
                return

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._scard.SCardReleaseContext(self._context)

    def __enter__(self) -> ReaderMonitor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def _parse(states: Any) -> dict[str, ReaderState]:
        return {
            str(name): ReaderState(str(name), int(event) & 0xFFFFFFFF, bytes(atr))
            for name, event, atr in states
        }
