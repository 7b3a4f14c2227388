"""A small local control channel for a running card (`vcard remove`, `vcard insert`, ...).

`vcard run` listens on `<state dir>/control.sock`, a unix stream socket of mode 0600:
only the card's owner may drive it, and the socket is bound in a private 0700
directory and renamed into place once it is 0600, so it never exists with wider
permissions, not even for a moment. The protocol is JSON
lines: each request is one JSON object with a "command" key, each answer one JSON
object with "ok" (and "error" when ok is false). Malformed requests get an error
answer; nothing a client sends can stop the server.

Handlers may block (waiting for an operator to type a PIN, for instance), so every
connection is served in its own thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("vcard.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]

MAX_LINE = 1 << 20
"""A request longer than this is refused (the connection is answered and closed)."""

IDLE_TIMEOUT = 600.0
"""A client that sends nothing for this long is disconnected, freeing its thread."""

SUN_PATH_MAX = 107
"""Linux limits a unix socket path to 108 bytes including the terminating NUL."""



class ControlError(Exception):
    """A control request could not be delivered or the card refused it."""


class Removable(Protocol):
    """What the remove/insert commands drive (vcard.transport.vpcd.VpcdLink)."""

    def remove(self) -> None: ...

    def insert(self) -> None: ...

    @property
    def connected(self) -> bool: ...


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise ControlError(
            f"control socket path {path} is longer than {SUN_PATH_MAX} bytes (a unix socket limit); "
            "use a shorter state directory"
        )


class ControlServer:
    """Serves JSON-lines requests on a 0600 unix socket, one thread per connection."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._handlers: dict[str, Handler] = {"ping": self._ping}
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._stopping = threading.Event()

    def register(self, name: str, handler: Handler) -> None:
        """Route requests whose "command" is `name` to `handler`.

        The handler gets the whole request object and returns the answer object;
        "ok": true is added unless it says otherwise. An exception becomes
        {"ok": false, "error": str(exception)}.
        """
        if not name or not isinstance(name, str):
            raise ValueError("a control command needs a non-empty name")
        self._handlers[name] = handler

    @property
    def commands(self) -> list[str]:
        return sorted(self._handlers)

    def _ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "commands": self.commands, "pid": os.getpid()}

    # ---- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (mode 0600) and serve from a daemon thread."""
        if self._thread is not None:
            return
        _check_path_length(self.path)
        self._clear_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Bind inside a fresh 0700 directory, narrow the socket to 0600, then rename it
            # into place: it is never reachable with wider permissions, and the process-wide
            # umask (which other threads' files depend on) is left alone.
            private = Path(tempfile.mkdtemp(prefix=".v", dir=self.path.parent))
            try:
                staged = private / "s"
                listener.bind(os.fspath(staged))
                os.chmod(staged, 0o600)
                os.rename(staged, self.path)
            finally:
                with contextlib.suppress(OSError):
                    staged.unlink()
                with contextlib.suppress(OSError):
                    private.rmdir()
            listener.listen(16)
        except OSError as error:
            listener.close()
            reason = error.strerror or error
            raise ControlError(f"cannot create control socket {self.path}: {reason}") from error
        info = os.stat(self.path)
        self._inode = (info.st_dev, info.st_ino)
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="vcard-control", daemon=True)
        self._thread.start()
        log.debug("control socket at %s", self.path)

    def stop(self) -> None:
        """Stop accepting, close open connections and remove the socket file."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        self._remove_socket_file()

    def _remove_socket_file(self) -> None:
        """Unlink the socket only if it is still ours (not a successor's after a restart)."""
        if self._inode is None:
            return
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._inode = None

    def _clear_stale_socket(self) -> None:
        """A socket file left by a crashed card is removed; a live one means a card is running."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(os.fspath(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        except OSError:
            pass  # e.g. permission denied: someone else's live socket
        finally:
            probe.close()
        raise ControlError(f"a card is already running with control socket {self.path}")

    # ---- serving --------------------------------------------------------------

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r or self._stopping.is_set():
                        return
                    try:
                        client, _ = listener.accept()
                    except OSError as error:
                        log.warning("control socket accept failed: %s", error)
                        continue
                    thread = threading.Thread(
                        target=self._serve_client, args=(client,), name="vcard-control-client", daemon=True
                    )
                    thread.start()

    def _serve_client(self, client: socket.socket) -> None:
        with self._clients_lock:
            self._clients.add(client)
        try:
            client.settimeout(IDLE_TIMEOUT)
            buffer = bytearray()
            discarding = False  # inside an oversized line: drop bytes up to its newline
            while not self._stopping.is_set():
                newline = buffer.find(b"\n")
                if newline >= 0:
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    if discarding:
                        discarding = False
                    elif line.strip():
                        self._send(client, self.handle_line(line))
                    continue
                if len(buffer) > MAX_LINE and not discarding:
                    self._send(client, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                    discarding = True
                if discarding:
                    buffer.clear()
                chunk = client.recv(65536)
                if not chunk:
                    if buffer.strip() and not discarding:
                        self._send(client, self.handle_line(bytes(buffer)))
                    return
                buffer += chunk
        except (OSError, TimeoutError):
            pass
        finally:
            with self._clients_lock:
                self._clients.discard(client)
            client.close()

    @staticmethod
    def _send(client: socket.socket, answer: dict[str, Any]) -> None:
        client.sendall(json.dumps(answer, default=str).encode() + b"\n")

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """Answer one request line; every failure becomes {"ok": false, "error": ...}."""
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, ValueError) as error:
            return {"ok": False, "error": f"request is not JSON: {error}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": 'request must be a JSON object with a "command" key'}
        name = request.get("command")
        if not isinstance(name, str):
            return {"ok": False, "error": 'request has no "command" string'}
        handler = self._handlers.get(name)
        if handler is None:
            return {"ok": False, "error": f"unknown command {name!r}; known: {', '.join(self.commands)}"}
        try:
            answer = handler(request)
        except Exception as error:  # a handler bug answers the client; the server keeps going
            log.exception("control command %s failed", name)
            return {"ok": False, "error": f"{name} failed: {error}"}
        if not isinstance(answer, dict):
            log.error("control handler %s returned %r, not a dict", name, type(answer).__name__)
            return {"ok": False, "error": f"{name} returned no answer"}
        return {"ok": True, **answer}


def control_request(path: Path | str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a running card and return its answer.

    Raises ControlError when no card listens at `path`, when it does not answer in
    `timeout` seconds, or when it answers {"ok": false} (the message is the card's).
    """
    path = Path(path)
    _check_path_length(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            message = f"no running card at {path} (is `vcard run` running with this state?)"
            raise ControlError(message) from error
        except PermissionError as error:
            message = f"permission denied on {path}: the control socket belongs to another user"
            raise ControlError(message) from error
        try:
            sock.sendall(json.dumps(payload).encode() + b"\n")
            buffer = bytearray()
            while b"\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise ControlError(f"answer from {path} is longer than {MAX_LINE} bytes")
        except TimeoutError as error:
            raise ControlError(f"the card at {path} did not answer within {timeout:g} s") from error
        except OSError as error:
            raise ControlError(f"control connection to {path} failed: {error}") from error
    finally:
        sock.close()
    line = bytes(buffer).split(b"\n", 1)[0]
    if not line.strip():
        raise ControlError(f"the card at {path} closed the connection without answering")
    try:
        answer = json.loads(line)
    except ValueError as error:
        raise ControlError(f"the card at {path} sent a malformed answer: {error}") from error
    if not isinstance(answer, dict):
        raise ControlError(f"the card at {path} sent a malformed answer: {line[:80]!r}")
    if not answer.get("ok"):
        raise ControlError(str(answer.get("error") or f"the card at {path} refused the request"))
    return answer


def _pick(links: Sequence[Removable], request: dict[str, Any]) -> list[tuple[int, Removable]]:
    """The links a request names with "card": an index; all of them when it names none."""
    index = request.get("card")
    if index is None:
        return list(enumerate(links))
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(links):
        raise ValueError(f"card must be an index from 0 to {len(links) - 1}, not {index!r}")
    return [(index, links[index])]


def register_link_commands(server: ControlServer, links: Sequence[Removable]) -> None:
    """Register "remove", "insert" and "status" for the cards of one `vcard run`.

    {"command": "remove", "card": 1} acts on card 1 only; without "card" on all of them.
    """

    def remove(request: dict[str, Any]) -> dict[str, Any]:
        chosen = _pick(links, request)
        for _, link in chosen:
            link.remove()
        return {"removed": [index for index, _ in chosen]}

    def insert(request: dict[str, Any]) -> dict[str, Any]:
        chosen = _pick(links, request)
        for _, link in chosen:
            link.insert()
        return {"inserted": [index for index, _ in chosen]}

    def status(request: dict[str, Any]) -> dict[str, Any]:
        return {"cards": [{"card": index, "connected": link.connected} for index, link in enumerate(links)]}

    server.register("remove", remove)
    server.register("insert", insert)
    server.register("status", status)
