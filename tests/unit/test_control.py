"""The control socket: 0600 permissions, JSON-lines requests, errors that never stop it."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vcard.control import ControlError, ControlServer, control_request, register_link_commands

TIMEOUT = 10.0


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


@pytest.fixture
def server(sock_path: Path) -> Iterator[ControlServer]:
    srv = ControlServer(sock_path)
    srv.register("echo", lambda request: {"echo": request.get("value")})
    srv.start()
    yield srv
    srv.stop()


def raw_exchange(path: Path, data: bytes) -> list[bytes]:
    """Send raw bytes, half-close, and return every answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            pass  # the server answered and hung up before reading everything (oversized requests)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    return [line for line in bytes(received).split(b"\n") if line]


def test_socket_is_mode_0600(server: ControlServer, sock_path: Path) -> None:
    info = os.stat(sock_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_socket_is_0600_even_under_a_permissive_umask(sock_path: Path) -> None:
    previous = os.umask(0)
    try:
        srv = ControlServer(sock_path)
        srv.start()
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        # bound in a private staging directory that is gone once the socket is in place
        assert not [entry for entry in sock_path.parent.iterdir() if entry.name.startswith(".v")]
    finally:
        srv.stop()
    assert os.umask(previous) == previous  # the umask came back unchanged


def test_request_and_answer(server: ControlServer, sock_path: Path) -> None:
    assert control_request(sock_path, {"command": "echo", "value": 42}) == {"ok": True, "echo": 42}
    assert "echo" in control_request(sock_path, {"command": "ping"})["commands"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"value": 1}', 'no \\"command\\"'),
        (b'{"command": 7}', 'no \\"command\\"'),
        (b'{"command": "nope"}', "unknown command"),
    ],
)
def test_malformed_requests_get_an_error_answer(
    server: ControlServer, sock_path: Path, line: bytes, message: str
) -> None:
    answers = raw_exchange(sock_path, line + b"\n")
    assert len(answers) == 1
    assert answers[0].startswith(b'{"ok": false')
    assert message.encode() in answers[0]
    # and the server still works
    assert control_request(sock_path, {"command": "echo", "value": "x"})["echo"] == "x"


def test_several_requests_on_one_connection(server: ControlServer, sock_path: Path) -> None:
    answers = raw_exchange(sock_path, b'{"command": "echo", "value": 1}\n\n{"command": "echo", "value": 2}')
    assert answers == [b'{"ok": true, "echo": 1}', b'{"ok": true, "echo": 2}']


def test_oversized_request_is_refused(server: ControlServer, sock_path: Path) -> None:
    answers = raw_exchange(sock_path, b"x" * (2 << 20))
    assert len(answers) == 1 and b"longer than" in answers[0]


def test_oversized_line_is_skipped_and_the_next_request_served(
    server: ControlServer, sock_path: Path
) -> None:
    answers = raw_exchange(sock_path, b"x" * (3 << 20) + b'\n{"command": "echo", "value": 3}\n')
    assert len(answers) == 2
    assert b"longer than" in answers[0]
    assert answers[1] == b'{"ok": true, "echo": 3}'


def test_handler_exception_becomes_an_error(server: ControlServer, sock_path: Path) -> None:
    def broken(request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    server.register("broken", broken)
    with pytest.raises(ControlError, match="broken failed: boom"):
        control_request(sock_path, {"command": "broken"})
    assert control_request(sock_path, {"command": "ping"})["ok"] is True


def test_a_blocking_handler_does_not_block_other_clients(server: ControlServer, sock_path: Path) -> None:
    release = threading.Event()
    server.register("wait", lambda request: {"released": release.wait(TIMEOUT)})
    result: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: result.update(control_request(sock_path, {"command": "wait"})))
    waiter.start()
    try:
        assert control_request(sock_path, {"command": "ping"})["ok"] is True  # served meanwhile
    finally:
        release.set()
        waiter.join(TIMEOUT)
    assert result == {"ok": True, "released": True}


def test_no_server_gives_a_clear_message(sock_path: Path) -> None:
    with pytest.raises(ControlError, match=r"no running card at .*is `vcard run` running with this state"):
        control_request(sock_path, {"command": "ping"})


def test_timeout_gives_a_clear_message(server: ControlServer, sock_path: Path) -> None:
    release = threading.Event()
    server.register("slow", lambda request: {"done": release.wait(TIMEOUT)})
    try:
        with pytest.raises(ControlError, match="did not answer within"):
            control_request(sock_path, {"command": "slow"}, timeout=0.2)
    finally:
        release.set()


def test_stop_removes_the_socket(sock_path: Path) -> None:
    srv = ControlServer(sock_path)
    srv.start()
    assert sock_path.exists()
    srv.stop()
    assert not sock_path.exists()
    with pytest.raises(ControlError, match="no running card"):
        control_request(sock_path, {"command": "ping"})


def test_stale_socket_is_replaced_but_a_live_one_is_not(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: a crashed card
    with ControlServer(sock_path):
        assert control_request(sock_path, {"command": "ping"})["ok"] is True
        with pytest.raises(ControlError, match="already running"):
            ControlServer(sock_path).start()


def test_refuses_to_replace_a_regular_file(sock_path: Path) -> None:
    sock_path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(sock_path).start()
    assert sock_path.read_text() == "precious"


def test_too_long_path_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="longer than"):
        ControlServer(tmp_path / ("d" * 120) / "control.sock").start()


class FakeLink:
    def __init__(self) -> None:
        self.connected = True

    def remove(self) -> None:
        self.connected = False

    def insert(self) -> None:
        self.connected = True


def test_link_commands(server: ControlServer, sock_path: Path) -> None:
    links = [FakeLink(), FakeLink()]
    register_link_commands(server, links)
    assert control_request(sock_path, {"command": "remove", "card": 1})["removed"] == [1]
    assert [link.connected for link in links] == [True, False]
    status = control_request(sock_path, {"command": "status"})["cards"]
    assert status == [{"card": 0, "connected": True}, {"card": 1, "connected": False}]
    assert control_request(sock_path, {"command": "remove"})["removed"] == [0, 1]
    assert control_request(sock_path, {"command": "insert"})["inserted"] == [0, 1]
    assert all(link.connected for link in links)
    with pytest.raises(ControlError, match="card must be an index"):
        control_request(sock_path, {"command": "insert", "card": 5})
    with pytest.raises(ControlError, match="card must be an index"):
        control_request(sock_path, {"command": "insert", "card": True})
