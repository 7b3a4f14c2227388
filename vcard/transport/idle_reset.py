"""Windows' five-second rule, played by the card through vpcd: an idle card takes itself out and back in.

Windows 8 and later reset a card when a transaction has been held on it for more than
five seconds with no operation on the card (Microsoft, "Smart Card Enhancements",
"Smart card transactions"; SCardBeginTransaction's remarks). pcsc-lite has no such rule:
while client A holds SCardBeginTransaction and sits idle, every other client's
SCardConnect, SCardBeginTransaction (and, by default, SCardTransmit/SCardStatus) waits
for as long as A holds it (pcsc-lite winscard.c polls the lock every 100 ms, without a
limit). OpenSC connects to every card when it lists slots, so a sign-in on another card
waits too.

The card cannot see transactions: they live in pcscd. What it can see is its own
traffic, and what it can do is leave the reader. So with this option a card that has
answered at least one APDU and then none for `seconds` drops its vpcd connection and
reconnects right away. pcscd notices the removal at its next presence poll (vpcd is
polled every 0.4 s), releases the transaction lock, and reports SCARD_W_REMOVED_CARD to
every handle on the card; the card is then inserted again and powered up afresh.

How this differs from Windows:

* Windows resets only a card that is under a transaction. The card cannot tell, so an
  idle card with no transaction (e.g. 5 s after a sign-in finished) is taken out and put
  back too. Applications that keep a handle open see SCARD_W_REMOVED_CARD (PKCS#11:
  the session is gone, a login must be repeated); removal-driven policies (lock the
  screen on removal, certificate clean-up on removal) fire on this removal.
* Windows resets the card (SCARD_W_RESET_CARD, the card stays present) and hands the
  lock to the next waiter. Here the card is absent for one or two presence polls: a
  waiter blocked in SCardConnect is released with SCARD_E_NO_SMARTCARD, a waiter that
  was already connected gets SCARD_W_REMOVED_CARD, and it must connect again (OpenSC
  reports the token as removed and the application retries, as after any removal).
* The timer counts from the end of the last APDU, not from the last call of the
  holder: SCardStatus and other calls that do not reach the card do not count as use.
* A card that was never used since its last insertion stays in: a freshly inserted
  card is not taken out every five seconds. A card that pcscd powered off since its last
  APDU stays in too (pcscd powers a card down only when no transaction is held on it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .vpcd import CTRL_POWER_OFF, VpcdLink

log = logging.getLogger("vcard.transport.idle_reset")

POWER_OFF = bytes([CTRL_POWER_OFF])

REINSERT_GAP = 0.1
"""Seconds the card stays out. vpcd reports the dropped connection as "absent" at its next
presence poll even when the card is already reconnecting (the new connection waits in the
listen backlog until that poll), so a short gap is enough to be seen as a removal."""


class IdleReinsert:
    """Takes the card of `link` out of the reader and puts it back after `seconds` without an APDU.

    Attach with `attach()`; the timer runs on a daemon thread until `stop()`. Only
    APDU frames count as use: vpcd's control frames (power, reset, ATR) are the reader
    talking, and pcscd sends them on insertion, so counting them would make the card
    re-insert itself forever. A power-off disarms the timer: no transaction survives it.
    """

    def __init__(
        self,
        link: VpcdLink,
        seconds: float,
        gap: float = REINSERT_GAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"idle reinsert needs a positive number of seconds, not {seconds}")
        self.link = link
        self.seconds = seconds
        self.gap = gap
        self.reinsertions = 0
        self._clock = clock
        self._condition = threading.Condition()
        self._armed = False  # an APDU was answered since the last insertion
        self._busy = 0  # APDUs being handled right now (never time out in the middle of one)
        self._last = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---- FrameObserver (called on the link's thread) ------------------------------

    def frame_started(self, payload: bytes) -> None:
        if len(payload) > 1:
            with self._condition:
                self._busy += 1
        elif payload == POWER_OFF:
            # pcscd powers a card off only when no handle holds a transaction on it: a
            # disconnect with SCARD_UNPOWER_CARD waits for another handle's lock (pcsc-lite
            # winscard.c SCardDisconnect), and the idle power-down needs no handle at all
            with self._condition:
                self._armed = False

    def frame_finished(self, payload: bytes) -> None:
        if len(payload) > 1:
            with self._condition:
                self._busy -= 1
                self._armed = True
                self._last = self._clock()
                self._condition.notify_all()

    # ---- control ------------------------------------------------------------------

    def attach(self) -> IdleReinsert:
        """Observe the link's frames and start the timer thread."""
        if self not in self.link.observers:
            self.link.observers.append(self)
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=f"idle-{self.link.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self in self.link.observers:
            self.link.observers.remove(self)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def due_in(self) -> float | None:
        """Seconds until the card would be taken out, or None while nothing is pending."""
        with self._condition:
            return self._due_in_locked()

    def _due_in_locked(self) -> float | None:
        if not self._armed or self._busy:
            return None
        return self._last + self.seconds - self._clock()

    # ---- thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                if self._stopping:
                    return
                remaining = self._due_in_locked()
                if remaining is None or remaining > 0:
                    self._condition.wait(remaining)
                    continue
                self._armed = False
                idle = self._clock() - self._last
            self._reinsert(idle)

    def _reinsert(self, idle: float) -> None:
        log.info(
            "%s: no APDU for %.1f s (limit %g s): taking the card out and back in so that pcscd"
            " releases any transaction held on it",
            self.link.name,
            idle,
            self.seconds,
        )
        self.link.remove()
        with self._condition:
            if not self._stopping:
                self._condition.wait(self.gap)
        if self._stopping:
            return
        self.link.insert()
        self.reinsertions += 1


def attach_idle_reinsert(link: VpcdLink, seconds: float) -> IdleReinsert | None:
    """Start the idle reinsertion for `link`, or nothing when `seconds` is 0 (the option is off)."""
    if seconds <= 0:
        return None
    return IdleReinsert(link, seconds).attach()
