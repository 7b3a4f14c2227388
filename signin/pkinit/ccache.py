"""MIT credential cache, FILE: format version 4 (MIT krb5 doc "ccache file format"), write-only.

One file holds a header, the default principal and credentials. All integers are
big-endian; a "counted octet string" is a 32-bit length then the bytes. Written 0600
through a temporary file and an atomic rename, so a reader never sees half a cache.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

VERSION = 0x0504
HEADER_DELTATIME = 1


@dataclass(frozen=True)
class Principal:
    name_type: int
    components: tuple[str, ...]
    realm: str


@dataclass(frozen=True)
class Credential:
    client: Principal
    server: Principal
    enctype: int
    key: bytes
    authtime: int
    starttime: int
    endtime: int
    renew_till: int
    flags: int  # TicketFlags as a 32-bit integer, bit 0 the most significant
    ticket: bytes  # DER Ticket


def _octets(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _principal(principal: Principal) -> bytes:
    out = struct.pack(">II", principal.name_type, len(principal.components))
    out += _octets(principal.realm.encode())
    for component in principal.components:
        out += _octets(component.encode())
    return out


def encode(default: Principal, credentials: list[Credential]) -> bytes:
    # header: one DeltaTime tag (KDC time offset 0 s, 0 us), as MIT writes it
    header = struct.pack(">HHii", HEADER_DELTATIME, 8, 0, 0)
    out = struct.pack(">HH", VERSION, len(header)) + header + _principal(default)
    for cred in credentials:
        out += _principal(cred.client) + _principal(cred.server)
        out += struct.pack(">H", cred.enctype) + _octets(cred.key)
        out += struct.pack(">IIII", cred.authtime, cred.starttime, cred.endtime, cred.renew_till)
        out += struct.pack(">BI", 0, cred.flags)  # is_skey, ticket flags
        out += struct.pack(">I", 0)  # addresses
        out += struct.pack(">I", 0)  # authdata
        out += _octets(cred.ticket) + _octets(b"")  # ticket, second ticket
    return out


def write(path: Path, default: Principal, credentials: list[Credential]) -> None:
    """Replace `path` with a cache holding `credentials` (mode 0600)."""
    data = encode(default, credentials)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
