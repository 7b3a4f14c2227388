"""`vcard run --link-delay`: the card holds each vpcd reply for the RTT (a remote reader's link)."""

from __future__ import annotations

import socket
import time

from vcard import atr
from vcard.apdu import ResponseAPDU
from vcard.cardos import Card
from vcard.transport.vpcd import VpcdLink

TIMEOUT = 10.0


def frame(sock: socket.socket, payload: bytes) -> tuple[bytes, float]:
    """Send one vpcd frame, read the reply; (reply, seconds it took)."""
    started = time.perf_counter()
    sock.sendall(len(payload).to_bytes(2, "big") + payload)
    data = b""
    while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
        chunk = sock.recv(4096)
        assert chunk, "the card closed the link"
        data += chunk
    return data[2:], time.perf_counter() - started


def replies(delay: float) -> list[float]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(TIMEOUT)
    card = Card(atr.build(b"rdp"), [])
    link = VpcdLink(card, "127.0.0.1", server.getsockname()[1], delay=delay)
    link.start()
    try:
        conn, _ = server.accept()
        conn.settimeout(TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answer_to_reset, first = frame(conn, b"\x04")
        assert answer_to_reset == card.atr
        conn.sendall(b"\x00\x01\x01")  # power on: no reply, so no delay
        answer, second = frame(conn, bytes.fromhex("00A4040000"))
        assert ResponseAPDU.parse(answer).sw != 0
        conn.close()
        return [first, second]
    finally:
        link.stop()
        server.close()


def test_each_reply_waits_the_link_delay() -> None:
    for took in replies(0.03):  # a small real RTT: this is the delay's own test
        assert took >= 0.03


def test_no_delay_stays_at_the_floor() -> None:
    assert all(took < 0.03 for took in replies(0.0))


def test_run_refuses_a_negative_link_delay() -> None:
    from click.testing import CliRunner

    from vcard.cli import main

    result = CliRunner().invoke(main, ["run", "--ephemeral", "--link-delay", "-5"])
    assert result.exit_code == 2
    assert "--link-delay" in result.output and "Traceback" not in result.output
