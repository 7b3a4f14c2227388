"""The same card without pcscd: a connection object that calls the Card directly.

The minidriver layer and unit tests talk to a card through a connection; this one
skips PC/SC entirely so tests are fast and need no daemon. It counts what crosses
it (the minidriver work measures APDUs per operation) and can add a fixed delay
per round trip to model slow links such as RDP smart-card redirection, where each
APDU costs a network round trip.
"""

from __future__ import annotations

import threading
import time

from .vpcd import SmartCard


class InProcessConnection:
    """A connected card in this process; mirrors what SCardConnect/SCardTransmit give.

    Creating the connection powers the card on, like SCardConnect does when a reader
    powers a card for its first user.
    """

    def __init__(self, card: SmartCard, delay: float = 0.0, power_on: bool = True) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, not {delay}")
        self.card = card
        self.delay = delay
        self.apdus_sent = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._lock = threading.Lock()
        if power_on:
            card.power_on()

    @property
    def atr(self) -> bytes:
        return bytes(self.card.atr)

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU and return the response (data + SW1 SW2)."""
        response = self.card.transmit(bytes(apdu))
        with self._lock:
            self.apdus_sent += 1
            self.bytes_sent += len(apdu)
            self.bytes_received += len(response)
        if self.delay:
            time.sleep(self.delay)
        return response

    def power_on(self) -> None:
        self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def reset(self) -> None:
        """Warm reset (what SCardReconnect/SCardDisconnect with SCARD_RESET_CARD do)."""
        self.card.reset()

    def reset_counters(self) -> None:
        with self._lock:
            self.apdus_sent = 0
            self.bytes_sent = 0
            self.bytes_received = 0
