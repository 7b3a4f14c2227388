"""Kerberos over TCP (RFC 4120 §7.2.2): each message is preceded by its length as 4 bytes, big-endian."""

from __future__ import annotations

import socket
import struct

MAX_REPLY = 1 << 20  # a TGT reply is a few KiB; anything near this is not a KDC talking


class TransportError(Exception):
    """The KDC could not be reached or closed the connection early."""


def parse_address(value: str, default_port: int = 88) -> tuple[str, int]:
    """ "host", "host:port" or "[v6]:port" -> (host, port)."""
    host, port = value, default_port
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        port = int(text)
    if not host or not 0 < port < 65536:
        raise ValueError(f"{value!r}: expected HOST[:PORT]")
    return host, port


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise TransportError(f"the KDC closed the connection after {len(data)} of {size} bytes")
        data += chunk
    return data


def exchange(address: tuple[str, int], message: bytes, timeout: float = 10.0) -> bytes:
    """Send one request, return the reply (one TCP connection per exchange, as MIT's client does)."""
    host, port = address
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">I", len(message)) + message)
            (length,) = struct.unpack(">I", _receive(sock, 4))
            if length & 0x80000000 or length > MAX_REPLY:
                raise TransportError(f"the KDC announced a reply of {length} bytes")
            return _receive(sock, length)
    except TimeoutError:
        raise TransportError(f"KDC {host}:{port}: no answer within {timeout:g} s") from None
    except OSError as error:
        raise TransportError(f"KDC {host}:{port}: {error.strerror or error}") from None
