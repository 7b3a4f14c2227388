"""The floor the card benchmarks compare against: a process that answers vpcd and does nothing else.

    .venv/bin/python bench/responder.py [--port 35963] [--link]

A bare socket loop, not `vcard.transport.vpcd.VpcdLink`: what the link costs counts
as the card's cost, so the floor is the least any vpcd client can do. It keeps the
link's socket options (TCP_NODELAY once, TCP_QUICKACK re-armed before each frame,
without which every APDU waits about 40 ms for a delayed ACK), answers GET ATR with
the default vcard ATR, stays silent on the other control codes (as vpcd expects), and
answers every command APDU with 90 00, except GET DATA (INS CA), which gets as many
zero bytes as its Le asks for, and VERIFY without data (INS 20, a PIN status query),
which gets 63 C3 as from a card whose PIN is not verified: the floor sends the bytes the
card sends, so only the card's work differs. It reconnects while vpcd is absent and stops on SIGTERM.

With `--link` the same answers come from a stub card behind the real
`VpcdLink`: the difference to the bare loop is what the link costs, the rest of
the card's figure is the card OS and the applet.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from types import FrameType

from vcard import atr
from vcard.transport.vpcd import TCP_QUICKACK, VPCD_BASE_PORT, VpcdLink

ATR = atr.build(b"vcard")
SUCCESS = b"\x90\x00"
NOT_VERIFIED = b"\x63\xc3"  # three tries left, the iso profile's user PIN
GET_DATA = 0xCA
VERIFY = 0x20


def answer(payload: bytes) -> bytes | None:
    """The reply to one vpcd frame (None for the control codes that get none)."""
    if len(payload) == 1:
        return ATR if payload[0] == 4 else None
    if len(payload) > 4 and payload[1] == GET_DATA:
        ne = int.from_bytes(payload[-2:], "big") if len(payload) == 7 else payload[-1]
        return bytes(ne) + SUCCESS
    if len(payload) == 4 and payload[1] == VERIFY and payload[2] == 0:
        return NOT_VERIFIED
    return SUCCESS


class StubCard:
    """A `vcard.transport.vpcd.SmartCard` that answers like the bare loop."""

    atr = ATR

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def transmit(self, raw: bytes) -> bytes:
        reply = answer(raw)
        return reply if reply is not None else SUCCESS


def serve_link(port: int) -> None:
    """Serve `StubCard` through the real VpcdLink until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    link = VpcdLink(StubCard(), "127.0.0.1", port, name="stub")
    link.start()
    while not stop.wait(0.5):  # as `vcard run` waits: a timed wait lets signals in
        pass
    link.stop()


def serve(port: int) -> None:
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.1)
            continue
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        with sock:
            while True:
                if not buffer:
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
                chunk = sock.recv(65537)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                    size = int.from_bytes(buffer[:2], "big")
                    payload, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                    reply = answer(payload)
                    if reply is not None:
                        sock.sendall(len(reply).to_bytes(2, "big") + reply)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=VPCD_BASE_PORT)
    parser.add_argument("--link", action="store_true", help="answer through vcard's VpcdLink")
    args = parser.parse_args()
    if args.link:
        serve_link(args.port)
    else:
        serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
