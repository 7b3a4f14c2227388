"""The vpcd wire protocol, checked against a fake vpcd (a listening socket in the test).

No pcscd is needed: the test plays vpcd's part, sends frames split into several TCP
segments the way vpcd 0.8 does (length and payload in separate send() calls), and
checks what the card side answers and, as importantly, when it stays silent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vcard import atr
from vcard.apdu import ResponseAPDU
from vcard.cardos import Card
from vcard.testing import exclusive_slots
from vcard.transport import vpcd as vpcd_module
from vcard.transport.vpcd import (
    HANG_GRACE,
    TCP_QUICKACK,
    VPCD_BASE_PORT,
    VpcdLink,
    parse_endpoint,
    reader_name,
)

IO_TIMEOUT = 10.0  # generous: only guards against a hung test, never asserts speed


class RecordingCard(Card):
    """A real Card that also records the power events the link delivered."""

    def __init__(self, atr_bytes: bytes) -> None:
        super().__init__(atr_bytes, [])
        self.events: list[str] = []

    def power_on(self) -> None:
        self.events.append("on")
        super().power_on()

    def power_off(self) -> None:
        self.events.append("off")
        super().power_off()

    def reset(self) -> None:
        self.events.append("reset")
        super().reset()


class FakeVpcd:
    """The reader side: listens like libifdvpcd and drives one connection at a time."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(IO_TIMEOUT)
        self.port: int = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        if self.conn is not None:
            self.conn.close()
        conn, _ = self.server.accept()
        conn.settimeout(IO_TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        return conn

    def send_split(self, payload: bytes, cuts: tuple[int, ...] = (1, 2)) -> None:
        """Send 2-byte length + payload cut at the given offsets, each piece its own segment."""
        assert self.conn is not None
        frame = len(payload).to_bytes(2, "big") + payload
        start = 0
        for cut in (*cuts, len(frame)):
            cut = min(cut, len(frame))
            if cut > start:
                self.conn.sendall(frame[start:cut])
                time.sleep(0.02)  # lets the piece leave as its own segment; not a timing assertion
                start = cut

    def recv_exact(self, size: int) -> bytes:
        assert self.conn is not None
        data = bytearray()
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"card closed the connection after {len(data)} of {size} bytes")
            data += chunk
        return bytes(data)

    def recv_frame(self) -> bytes:
        length = int.from_bytes(self.recv_exact(2), "big")
        return self.recv_exact(length)

    def request(self, payload: bytes, cuts: tuple[int, ...] = (1, 2)) -> bytes:
        self.send_split(payload, cuts)
        return self.recv_frame()

    def wait_closed(self) -> bool:
        """True once the card side has closed the connection (recv returns EOF)."""
        assert self.conn is not None
        try:
            while True:
                if not self.conn.recv(4096):
                    return True
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    fake = FakeVpcd()
    yield fake
    fake.close()


@pytest.fixture
def card() -> RecordingCard:
    return RecordingCard(atr.build(b"vcard"))


@contextlib.contextmanager
def running(link: VpcdLink) -> Iterator[VpcdLink]:
    link.start()
    try:
        yield link
    finally:
        link.stop()


def test_atr_request_split_in_three_segments_gets_the_atr(vpcd: FakeVpcd, card: RecordingCard) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        reply = vpcd.request(b"\x04", cuts=(1, 2))
        assert reply == card.atr
        assert reply


def test_attached_is_set_by_the_first_frame_and_cleared_on_close(vpcd: FakeVpcd, card: RecordingCard) -> None:
    link = VpcdLink(card, "127.0.0.1", vpcd.port)
    with running(link):
        vpcd.accept()
        vpcd.request(b"\x04")
        assert link.attached.wait(IO_TIMEOUT)
        assert link.connected
        link.remove()
        assert vpcd.wait_closed()
        deadline = time.monotonic() + IO_TIMEOUT
        while link.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not link.connected


def test_power_and_reset_codes_get_no_reply(vpcd: FakeVpcd, card: RecordingCard) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        for code in (b"\x01", b"\x00", b"\x02"):
            vpcd.send_split(code)
        # had any of them been answered, that answer would be read here instead of the ATR
        assert vpcd.request(b"\x04") == card.atr
        assert card.events == ["on", "off", "reset"]
        assert card.powered


@pytest.mark.parametrize("code", [0x03, 0x05, 0x80, 0xFF])
def test_a_one_byte_frame_vpcd_never_sends_is_an_apdu_and_gets_6700(
    vpcd: FakeVpcd, card: RecordingCard, code: int
) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        started = time.monotonic()
        assert vpcd.request(bytes([code])) == b"\x67\x00"
        assert time.monotonic() - started < 1.0  # answered at once, not after the grace period
        assert vpcd.request(b"\x04") == card.atr
        assert card.events == []


@pytest.mark.parametrize("code", [0x00, 0x01, 0x02])
def test_silence_after_a_control_code_means_a_waiting_client_and_gets_6700(
    vpcd: FakeVpcd, card: RecordingCard, code: int
) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        started = time.monotonic()
        assert vpcd.request(bytes([code])) == b"\x67\x00"
        waited = time.monotonic() - started
        assert HANG_GRACE <= waited < 2.0
        # the card stays in the reader and the stream in sync
        assert vpcd.request(b"\x04") == card.atr


def test_presence_polls_after_a_control_code_get_no_stray_6700(vpcd: FakeVpcd, card: RecordingCard) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        vpcd.send_split(b"\x00")
        for _ in range(int(HANG_GRACE / 0.4) + 3):  # pcscd's presence poll rate
            time.sleep(0.4)
            assert vpcd.request(b"\x04") == card.atr
        assert vpcd.conn is not None
        vpcd.conn.settimeout(HANG_GRACE + 0.5)
        with pytest.raises(TimeoutError):
            vpcd.recv_exact(1)  # nothing unsolicited after a poll answered with the ATR


def test_garbage_apdus_get_a_status_word(vpcd: FakeVpcd, card: RecordingCard) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        for garbage in (
            b"",
            b"\x00\x01",
            b"\xff\xff\xff",
            b"\x00\xa4\x04\x00\x09\x01",
            bytes(range(256)) * 3,
        ):
            reply = vpcd.request(garbage, cuts=(1, 2, 5))
            assert ResponseAPDU.parse(reply).sw != 0x9000, garbage
        # the stream is still in sync afterwards
        assert vpcd.request(b"\x04") == card.atr


def test_apdu_split_header_and_body_is_processed_once(vpcd: FakeVpcd, card: RecordingCard) -> None:
    select_mf = bytes.fromhex("00A40000023F00")
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        assert vpcd.request(select_mf, cuts=(1, 2, 3, 6)) == b"\x90\x00"
        assert vpcd.request(bytes.fromhex("00A4040007F076636172640199")) == b"\x6a\x82"


def test_extended_apdu_longer_than_one_segment(vpcd: FakeVpcd, card: RecordingCard) -> None:
    data = bytes(4000)
    apdu = bytes.fromhex("00DA0000") + b"\x00" + len(data).to_bytes(2, "big") + data
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        reply = vpcd.request(apdu, cuts=(1, 2, 100, 1500))
        assert len(reply) == 2  # no applet selected: an error SW, but a complete answer


class BrokenCard:
    """A card that misbehaves in every way a card could, to check the link still answers."""

    atr = b""

    def power_on(self) -> None:
        raise RuntimeError("power_on broke")

    def power_off(self) -> None:
        pass

    def reset(self) -> None:
        raise RuntimeError("reset broke")

    def transmit(self, raw: bytes) -> bytes:
        if raw[:1] == b"\x01":
            return b""
        if raw[:1] == b"\x02":
            return bytes(70000)
        raise RuntimeError("transmit broke")


def test_a_broken_card_never_produces_an_empty_or_missing_frame(vpcd: FakeVpcd) -> None:
    with running(VpcdLink(BrokenCard(), "127.0.0.1", vpcd.port)):
        vpcd.accept()
        vpcd.send_split(b"\x01")
        vpcd.send_split(b"\x02")
        assert atr.check(vpcd.request(b"\x04")) is None  # a default ATR, never an empty frame
        assert vpcd.request(b"\x00\xa4\x04\x00") == b"\x6f\x00"
        assert vpcd.request(b"\x01\x02\x03\x04") == b"\x6f\x00"
        assert vpcd.request(b"\x02\x02\x03\x04") == b"\x67\x00"


def test_reconnects_after_vpcd_drops_the_connection(vpcd: FakeVpcd, card: RecordingCard) -> None:
    link = VpcdLink(card, "127.0.0.1", vpcd.port)
    with running(link):
        vpcd.accept()
        assert vpcd.request(b"\x04") == card.atr
        vpcd.conn.close()  # type: ignore[union-attr]
        vpcd.conn = None
        vpcd.accept()  # the link comes back on its own
        assert vpcd.request(b"\x04") == card.atr


def test_reconnects_after_a_connection_reset(vpcd: FakeVpcd, card: RecordingCard) -> None:
    """pcscd killed hard: the card sees ECONNRESET instead of EOF and must still come back."""
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        conn = vpcd.accept()
        assert vpcd.request(b"\x04") == card.atr
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        vpcd.send_split(b"\x00\x10\x00")  # half a frame, then RST
        conn.close()
        vpcd.conn = None
        vpcd.accept()
        assert vpcd.request(b"\x04") == card.atr


def test_remove_keeps_the_card_out_until_insert(vpcd: FakeVpcd, card: RecordingCard) -> None:
    link = VpcdLink(card, "127.0.0.1", vpcd.port)
    with running(link):
        vpcd.accept()
        assert vpcd.request(b"\x04") == card.atr
        link.remove()
        assert vpcd.wait_closed()
        vpcd.server.settimeout(0.5)
        with pytest.raises(TimeoutError):
            vpcd.server.accept()  # no reconnection while removed
        vpcd.server.settimeout(IO_TIMEOUT)
        link.insert()
        vpcd.accept()
        assert vpcd.request(b"\x04") == card.atr


def test_stop_closes_the_connection_and_ends_the_thread(vpcd: FakeVpcd, card: RecordingCard) -> None:
    link = VpcdLink(card, "127.0.0.1", vpcd.port)
    link.start()
    vpcd.accept()
    assert vpcd.request(b"\x04") == card.atr
    link.stop()
    assert vpcd.wait_closed()
    assert link._thread is not None and not link._thread.is_alive()
    assert not link.connected


def test_starts_before_vpcd_exists_and_attaches_when_it_appears(card: RecordingCard) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on `port` now
    link = VpcdLink(card, "127.0.0.1", port)
    with running(link):
        time.sleep(0.3)  # a few refused attempts
        assert not link.connected
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(1)
        server.settimeout(IO_TIMEOUT)
        conn, _ = server.accept()
        conn.settimeout(IO_TIMEOUT)
        conn.sendall(b"\x00\x01\x04")
        assert conn.recv(64)[2:] == card.atr
        assert link.attached.wait(IO_TIMEOUT)
        conn.close()
        server.close()


def test_stop_while_vpcd_is_absent_returns(card: RecordingCard) -> None:
    link = VpcdLink(card, "127.0.0.1", 1)  # port 1: refused
    link.start()
    time.sleep(0.2)
    link.stop(timeout=IO_TIMEOUT)
    assert link._thread is not None and not link._thread.is_alive()


def test_without_quickack_the_protocol_is_the_same(vpcd: FakeVpcd, card: RecordingCard) -> None:
    with running(VpcdLink(card, "127.0.0.1", vpcd.port, quickack=False)):
        vpcd.accept()
        assert vpcd.request(b"\x04") == card.atr
        assert vpcd.request(bytes.fromhex("00A40000023F00")) == b"\x90\x00"


def test_frames_sent_back_to_back_are_answered_in_order(vpcd: FakeVpcd, card: RecordingCard) -> None:
    """vpcd waits for each answer, but a peer that does not still gets every frame answered once."""
    frames = [b"\x04", bytes.fromhex("00A40000023F00"), bytes.fromhex("00A40400")]
    stream = b"".join(len(frame).to_bytes(2, "big") + frame for frame in frames)
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        conn = vpcd.accept()
        conn.sendall(stream[:-5])  # ends inside the last frame's length field
        time.sleep(0.02)
        conn.sendall(stream[-5:])
        assert vpcd.recv_frame() == card.atr
        assert vpcd.recv_frame() == b"\x90\x00"
        assert vpcd.recv_frame() == b"\x6a\x82"  # SELECT by AID with no AID: not found
        assert vpcd.request(b"\x04") == card.atr


def test_a_frame_of_the_largest_size_is_answered(vpcd: FakeVpcd, card: RecordingCard) -> None:
    apdu = bytes.fromhex("00DA000000") + (65535 - 7).to_bytes(2, "big") + bytes(65535 - 7)
    assert len(apdu) == 0xFFFF
    with running(VpcdLink(card, "127.0.0.1", vpcd.port)):
        vpcd.accept()
        reply = vpcd.request(apdu, cuts=(2, 1000, 40000))
        assert len(reply) == 2 and reply != b"\x90\x00"  # no applet: an error SW, but one answer
        assert vpcd.request(b"\x04") == card.atr


class RecordingSocket:
    """The link's socket, noting quick-ACK arming, receives and sends in order."""

    def __init__(self, sock: socket.socket, events: list[str]) -> None:
        self._sock = sock
        self.events = events

    def setsockopt(self, level: int, option: int, value: int) -> None:
        if (level, option) == (socket.IPPROTO_TCP, TCP_QUICKACK):
            self.events.append("quickack")
        self._sock.setsockopt(level, option, value)

    def recv_into(self, buffer: memoryview) -> int:
        count = self._sock.recv_into(buffer)
        self.events.append("recv")
        return count

    def sendall(self, data: bytes) -> None:
        self.events.append("send")
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux's")
@pytest.mark.parametrize("quickack", [True, False])
def test_quick_ack_is_armed_before_every_frame(
    vpcd: FakeVpcd, card: RecordingCard, monkeypatch: pytest.MonkeyPatch, quickack: bool
) -> None:
    """vpcd 0.8 sends a frame's length and body in two segments with Nagle on: the body leaves
    only once the length is acknowledged, so each frame must find the socket in quick-ACK mode
    (our previous answer put it back in delayed-ACK mode) or wait for a delayed ACK."""
    events: list[str] = []
    create = socket.create_connection

    def recording(*args: object, **kwargs: object) -> RecordingSocket:
        return RecordingSocket(create(*args, **kwargs), events)  # type: ignore[arg-type]

    monkeypatch.setattr(vpcd_module.socket, "create_connection", recording)
    with running(VpcdLink(card, "127.0.0.1", vpcd.port, quickack=quickack)):
        vpcd.accept()
        for payload in (b"\x04", bytes.fromhex("00A40000023F00"), bytes.fromhex("00A40000023F00")):
            assert len(vpcd.request(payload, cuts=(2,))) >= 2
    frames = "".join(events).split("send")[:3]
    assert len(frames) == 3
    for frame in frames:
        if quickack:
            assert frame.startswith("quickackrecv") and frame.count("quickack") == 1, events
        else:
            assert "quickack" not in frame and frame.startswith("recv"), events


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:35963", ("127.0.0.1", 35963)),
        ("localhost:35964", ("localhost", 35964)),
        (" [::1]:35963 ", ("::1", 35963)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "not HOST:PORT"),
        (":35963", "not HOST:PORT"),
        ("host:", "not HOST:PORT"),
        ("host:port", "not a number"),
        ("host:70000", "outside 1-65535"),
        ("host:0", "outside 1-65535"),
        ("::1:35963", "brackets"),
        ("[]:35963", "empty host"),
    ],
)
def test_parse_endpoint_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(text)


def test_reader_names_and_ports() -> None:
    assert VPCD_BASE_PORT == 35963
    assert reader_name(0) == "Virtual PCD 00 00"
    assert reader_name(1) == "Virtual PCD 00 01"


def test_exclusive_slots_excludes_a_second_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "slots.lock")
    with exclusive_slots(path):
        other = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    # released afterwards: a second holder gets it at once
    acquired = threading.Event()

    def take() -> None:
        with exclusive_slots(path):
            acquired.set()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(IO_TIMEOUT)
    assert acquired.is_set()


def test_exclusive_slots_is_reentrant_within_a_process(tmp_path: Path) -> None:
    """The session-wide harness lock and a per-test fixture lock must not deadlock."""
    path = str(tmp_path / "slots.lock")
    with exclusive_slots(path):
        with exclusive_slots(path):
            pass
        # the inner exit did not release the outer hold
        other = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released now
    finally:
        os.close(other)


def test_exclusive_slots_accepts_a_lock_inherited_from_the_parent(tmp_path: Path) -> None:
    """`flock LOCK pytest ...`: the child holds the lock through an inherited descriptor."""
    path = tmp_path / "slots.lock"
    path.touch()
    script = (
        "from vcard.testing import exclusive_slots\n"
        f"with exclusive_slots({str(path)!r}):\n"
        "    print('inside', flush=True)\n"
    )
    result = subprocess.run(
        ["flock", str(path), sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=IO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "inside"
    assert "waiting for" not in result.stderr


def test_exclusive_slots_waits_for_another_process(tmp_path: Path) -> None:
    path = tmp_path / "slots.lock"
    script = (
        "import sys\n"
        "from vcard.testing import exclusive_slots\n"
        f"with exclusive_slots({str(path)!r}):\n"
        "    print('inside', flush=True)\n"
    )
    with exclusive_slots(str(path)):
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(0.5)  # blocked on our lock
        except BaseException:
            child.kill()
            raise
    out, err = child.communicate(timeout=IO_TIMEOUT)
    assert out.strip() == "inside"
    assert "waiting for" in err
