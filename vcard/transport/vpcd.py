"""The card (vpicc) side of vsmartcard's vpcd protocol, in client mode.

pcscd loads vsmartcard's `libifdvpcd`, which listens on 127.0.0.1:35963 + slot and
shows a reader "Virtual PCD 00 0<slot>". A card is "inserted" while a TCP
connection to that port is up and "removed" when it closes. vpcd is the only one
that speaks first: it sends one frame at a time and waits for the answer.

Frames in both directions are a 2-byte big-endian length followed by that many
bytes. A 1-byte payload is a control code (00 power off, 01 power on, 02 reset,
04 get ATR); only 04 gets a reply, because vpcd reads nothing after the others and
a reply would desynchronise the stream. Anything else is a command APDU and gets
the response APDU. vpcd has no receive timeout, so every request that expects a
reply must get one, and the reply must never be empty: vpcd treats a 0-length
frame as card removal. vpcd 0.8 (Debian 12) writes the length and the payload with
two separate send() calls, so every frame is read in a loop until complete.

The framing is ambiguous for a client's 1-byte command APDU: vpcd forwards it as a
1-byte frame and then waits for an answer, with the reader locked for every client.
vpcd itself only sends the codes 00, 01, 02 and 04, so any other 1-byte frame is an
APDU and gets 6700 (wrong length). For 00, 01 and 02 the link watches what follows:
after a real control code pcscd keeps polling card presence (a 04 every 0.4 s, or
at once after power on and reset), while a client waiting for an answer holds the
reader and nothing more arrives. Silence for `HANG_GRACE` seconds therefore means
a waiting client, and it gets 6700. What remains ambiguous: if pcscd stopped
polling for another reason in that window (it is being stopped, or the machine is
suspended), vpcd would read that 6700 as the answer to its next request; the next
presence poll then sees a wrong ATR once and the one after it the right one.

A command APDU longer than 65,535 bytes cannot be carried by the 16-bit length:
vpcd 0.8 drops the card instead of sending it (the reader sees a removal), so
clients must chain such commands (CLA bit 0x10); the card accepts chains of up to
`vcard.cardos.DEFAULT_MAX_CHAIN_BYTES`.

The link knows nothing about applets: it only calls `power_on`, `power_off`,
`reset`, `transmit` and reads `atr` (see `SmartCard`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import sys
import threading
import time
from typing import Protocol

from ..atr import build as build_atr
from ..redact import command_text

log = logging.getLogger("vcard.transport.vpcd")

VPCD_BASE_PORT = 35963
"""vpcd's CHANNELID 0x8C7B; slot n listens on VPCD_BASE_PORT + n."""

VPCD_SLOTS = 2
"""Debian's libifdvpcd is built with the default of two slots."""

CTRL_POWER_OFF = 0
CTRL_POWER_ON = 1
CTRL_RESET = 2
CTRL_GET_ATR = 4
_SILENT_CONTROL_CODES = frozenset({CTRL_POWER_OFF, CTRL_POWER_ON, CTRL_RESET})

HANG_GRACE = 1.0
"""Seconds of silence after a 00/01/02 frame that mean a client waits for an answer.

pcscd polls presence every 0.4 s, so a real control code is followed by a frame well
within this; 1 s keeps a hung reader under the 2 s a user would notice.
"""

MAX_FRAME = 0xFFFF
RECV_SIZE = 2 + MAX_FRAME
CONNECT_TIMEOUT = 5.0
BACKOFF_START = 0.1
BACKOFF_MAX = 2.0

# Linux TCP_QUICKACK (12): the kernel clears it after every ACK it sends, so it has to
# be set again before each recv. Without it, vpcd 0.8 (two send() calls per frame,
# Nagle on) waits for our delayed ACK, about 40 ms per APDU.
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)

# Sent instead of a response that cannot be carried: a frame holds at most 65535 bytes.
_SW_WRONG_LENGTH = b"\x67\x00"
_SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
_IPPROTO_TCP = socket.IPPROTO_TCP


class SmartCard(Protocol):
    """What the link needs from a card (vcard.cardos.Card, or a stub in benchmarks)."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def reset(self) -> None: ...

    def transmit(self, raw: bytes) -> bytes: ...


class FrameObserver(Protocol):
    """Told about every frame the link answers (see vcard.transport.idle_reset).

    `frame_started` runs before the card handles a frame, `frame_finished` after
    the reply is sent (also when handling failed); both on the link's thread.
    """

    def frame_started(self, payload: bytes) -> None: ...

    def frame_finished(self, payload: bytes) -> None: ...


def reader_name(slot: int) -> str:
    """The PC/SC reader name pcscd gives vpcd slot `slot` ("Virtual PCD 00 00" for slot 0)."""
    return f"Virtual PCD 00 0{slot}"


def parse_endpoint(text: str) -> tuple[str, int]:
    """Split "HOST:PORT" (or "[v6]:PORT") into (host, port), with a message saying what is wrong."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text:
        raise ValueError(f"vpcd endpoint {text!r} is not HOST:PORT (for example 127.0.0.1:{VPCD_BASE_PORT})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f"vpcd endpoint {text!r}: write an IPv6 address in brackets, e.g. [::1]:{VPCD_BASE_PORT}"
        )
    if not host:
        raise ValueError(f"vpcd endpoint {text!r} has an empty host")
    if not port_text.isdigit():
        raise ValueError(f"vpcd endpoint {text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"vpcd endpoint {text!r}: port {port} is outside 1-65535")
    return host, port


class _Closed(Exception):
    """The peer closed the connection (or we shut it down)."""


class VpcdLink:
    """Keeps one card connected to one vpcd slot, from a background thread.

    The thread connects to vpcd, answers its frames, and reconnects with backoff
    (0.1 s doubling to 2 s, back to 0.1 s after a successful attachment) when vpcd or
    pcscd is absent or restarts. `remove()` drops the connection (the reader empties)
    and keeps it down until `insert()`. `attached` is set once vpcd has actually
    talked to us: a TCP connect alone can sit in the listen backlog of a slot that
    another card occupies, so the first frame is the proof that the card is in the reader.
    """

    def __init__(
        self,
        card: SmartCard,
        host: str = "127.0.0.1",
        port: int = VPCD_BASE_PORT,
        quickack: bool = True,
        name: str = "",
        delay: float = 0.0,
    ) -> None:
        self.card = card
        self.delay = delay  # seconds added before each reply: a slow link to a remote reader
        self.host = host
        self.port = port
        self.quickack = quickack and sys.platform.startswith("linux")
        self.name = name or "card"
        self.attached = threading.Event()
        self._stopping = threading.Event()
        self._inserted = threading.Event()
        self._inserted.set()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.observers: list[FrameObserver] = []
        self._last_error = ""

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """True while the card is in vpcd's reader (see `attached`)."""
        return self.attached.is_set()

    def waiting_reason(self) -> str:
        """Why the card is not in the reader yet, in words for a user who waits."""
        if self.attached.is_set():
            return "attached"
        with self._lock:
            connected = self._sock is not None
        if connected:
            return "connected, but vpcd has not talked: another card holds this slot"
        if self._last_error:
            return f"cannot connect: {self._last_error}"
        return "connecting"

    @property
    def inserted(self) -> bool:
        """False between `remove()` and `insert()`."""
        return self._inserted.is_set()

    # ---- control ------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (a daemon: it never keeps the process alive)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"vcard-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Close the connection (vpcd notices at its next presence poll, 0.4 s) and end the thread."""
        self._stopping.set()
        self._wake.set()
        self._drop_connection()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: link thread did not end within %.1f s", self.name, timeout)

    def remove(self) -> None:
        """Take the card out of the reader until `insert()` (the thread stays alive)."""
        self._inserted.clear()
        self._wake.set()
        self._drop_connection()

    def insert(self) -> None:
        """Put the card back after `remove()`; the thread reconnects at once."""
        self._inserted.set()
        self._wake.set()

    def _drop_connection(self) -> None:
        # shutdown() wakes the thread blocked in recv(); the thread itself closes the socket.
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ---- thread -------------------------------------------------------------

    def _run(self) -> None:
        delay = BACKOFF_START
        while not self._stopping.is_set():
            if not self._inserted.is_set():
                self._wait(None)
                continue
            sock = self._connect()
            if sock is None:
                self._wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            try:
                was_attached = self._serve(sock)
            finally:
                with self._lock:
                    self._sock = None
                sock.close()
                if self.attached.is_set():
                    self.attached.clear()
                    log.info("%s: detached from %s", self.name, self.endpoint)
            if was_attached:
                delay = BACKOFF_START
            else:
                # connected but vpcd hung up before talking (e.g. pcscd shutting down)
                self._wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    def _wait(self, seconds: float | None) -> None:
        """Sleep until the delay passes or stop()/remove()/insert() wakes us."""
        if self._stopping.is_set():
            return
        self._wake.wait(seconds)
        self._wake.clear()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        except OSError as error:
            log.debug("%s: cannot connect to %s: %s", self.name, self.endpoint, error)
            self._last_error = error.strerror or str(error)
            return None
        self._last_error = ""
        sock.settimeout(None)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._stopping.is_set() or not self._inserted.is_set():
                sock.close()
                return None
            self._sock = sock
        log.debug("%s: connected to %s, waiting for vpcd", self.name, self.endpoint)
        return sock

    def _serve(self, sock: socket.socket) -> bool:
        """Answer frames until the connection ends; True if vpcd talked to us."""
        talked = False
        # One buffer for the connection: frames are received into it (no allocation per
        # receive) and only the payload is copied out. vpcd sends one request and waits for
        # the answer, so it holds one frame; a peer that sends more is served in order.
        # This loop runs once per APDU in a process that slept since the last one, so it
        # keeps to local names and receives without a Python call of its own.
        view = memoryview(bytearray(RECV_SIZE))
        filled = 0  # bytes of the next frame(s) already in the buffer
        watch = False  # the last frame was 00/01/02: it may have been a client's 1-byte APDU
        quickack = self.quickack
        recv_into = sock.recv_into
        setsockopt = sock.setsockopt
        try:
            while True:
                if watch and not filled and not self._readable(sock, HANG_GRACE):
                    log.warning(
                        "%s: no frame from vpcd for %.1f s after a 1-byte frame: a client sent it"
                        " as an APDU and waits; answering 6700",
                        self.name,
                        HANG_GRACE,
                    )
                    sock.sendall(len(_SW_WRONG_LENGTH).to_bytes(2, "big") + _SW_WRONG_LENGTH)
                if quickack and not filled:
                    # Once per frame, before its first bytes: our last reply put the socket
                    # back in delayed-ACK mode; until we send again it stays in quick-ACK
                    # mode, so the rest of the frame is acknowledged at once too.
                    try:  # noqa: SIM105 (contextlib.suppress is three Python calls per APDU)
                        setsockopt(_IPPROTO_TCP, TCP_QUICKACK, 1)
                    except OSError:
                        pass
                while filled < 2:
                    count = recv_into(view[filled:])
                    if not count:
                        raise _Closed
                    filled += count
                end = 2 + ((view[0] << 8) | view[1])
                while filled < end:
                    count = recv_into(view[filled:])
                    if not count:
                        raise _Closed
                    filled += count
                payload = bytes(view[2:end])
                filled -= end
                if filled:  # the start of a further frame: move it to the front
                    view[:filled] = view[end : end + filled]
                if not talked:
                    talked = True
                    self.attached.set()
                    log.info("%s: attached to %s", self.name, self.endpoint)
                if self.observers:
                    watch = self._answer_observed(sock, payload, self.observers)
                else:
                    watch = self._answer(sock, payload)
        except _Closed:
            pass
        except OSError as error:
            if error.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.EBADF):
                log.warning("%s: connection to %s failed: %s", self.name, self.endpoint, error)
        return talked

    def _answer(self, sock: socket.socket, payload: bytes) -> bool:
        """Handle one frame and send the reply (header and body in one send); True after 00/01/02."""
        if len(payload) == 1:
            reply = self._handle(payload)
            watch = payload[0] in _SILENT_CONTROL_CODES
        else:
            reply = self._apdu(payload)
            watch = False
        if reply is not None:
            if self.delay:
                time.sleep(self.delay)
            sock.sendall(len(reply).to_bytes(2, "big") + reply)
        return watch

    def _answer_observed(self, sock: socket.socket, payload: bytes, observers: list[FrameObserver]) -> bool:
        """`_answer` between the observers' frame_started and frame_finished."""
        observers = list(observers)
        for observer in observers:
            observer.frame_started(payload)
        try:
            return self._answer(sock, payload)
        finally:
            for observer in observers:
                observer.frame_finished(payload)

    @staticmethod
    def _readable(sock: socket.socket, seconds: float) -> bool:
        """Whether the peer sends something (or closes) within `seconds`."""
        ready, _, _ = select.select([sock], [], [], seconds)
        return bool(ready)

    def _handle(self, payload: bytes) -> bytes | None:
        """The reply to one vpcd frame, or None for control codes that get none."""
        if len(payload) == 1:
            if payload[0] not in _SILENT_CONTROL_CODES and payload[0] != CTRL_GET_ATR:
                # vpcd never sends this code: a client's 1-byte APDU, and vpcd waits for its answer
                log.warning("%s: 1-byte APDU %02X answered with 6700", self.name, payload[0])
                return _SW_WRONG_LENGTH
            return self._control(payload[0])
        return self._apdu(payload)

    def _apdu(self, payload: bytes) -> bytes:
        """The card's answer to a command APDU (or empty frame), always with a status word."""
        try:
            reply = self.card.transmit(payload)
        except Exception:  # a card must keep answering; vpcd would wait forever otherwise
            log.exception("%s: card failed on %s", self.name, command_text(payload))
            return _SW_NO_PRECISE_DIAGNOSIS
        if len(reply) < 2:
            log.error("%s: card returned %d bytes (no status word)", self.name, len(reply))
            return _SW_NO_PRECISE_DIAGNOSIS
        if len(reply) > MAX_FRAME:
            log.error("%s: response of %d bytes does not fit a vpcd frame", self.name, len(reply))
            return _SW_WRONG_LENGTH
        return reply

    def _control(self, code: int) -> bytes | None:
        try:
            if code == CTRL_GET_ATR:
                atr = bytes(self.card.atr)
                if not atr or len(atr) > MAX_FRAME:
                    # an empty ATR frame would make vpcd eject the card
                    log.error("%s: unusable ATR (%d bytes); sending a default one", self.name, len(atr))
                    atr = build_atr(b"vcard")
                return atr
            if code == CTRL_POWER_OFF:
                log.debug("%s: power off", self.name)
                self.card.power_off()
            elif code == CTRL_POWER_ON:
                log.debug("%s: power on", self.name)
                self.card.power_on()
            elif code == CTRL_RESET:
                log.debug("%s: reset", self.name)
                self.card.reset()
        except Exception:  # keep serving: the stream stays in sync because these get no reply
            log.exception("%s: card failed on control code %02X", self.name, code)
            if code == CTRL_GET_ATR:
                return build_atr(b"vcard")
        return None
