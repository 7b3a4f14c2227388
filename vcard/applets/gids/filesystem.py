"""The GIDS "DO-based file system": one application DF holding BER-TLV EFs and key EFs.

Everything persistent lives in the applet's JSON state section, which the
classes here only wrap (no copies), so that a mutation followed by
`context.commit()` is durable:

    state["files"]["A010"] = {"fdb": 0x39, "fcp": "<hex>", "active": true,
                              "dos": {"DF21": "<hex>", ...}}
    state["files"]["B081"] = {"fdb": 0x18, "fcp": "<hex>", "active": true,
                              "key": "<PKCS#8 PEM>" | null}

Access conditions are the compact security attributes (`8C`) of each file's
FCP, checked with `AccessChecker`: SC byte 00 = always, FF = never, bit 0x10 =
user PIN, bit 0x20 = admin key (external/mutual authentication), bit 0x80 = all
of the listed conditions rather than any one of them. While the application is
in initialisation mode every condition except "never" holds, which is how
`gids-tool --initialize` writes PIN-protected objects before any PIN exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ... import tlv
from ...apdu import SW, ISOError
from .constants import FDB_BER_TLV_EF, FDB_KEY_EF

SC_ALWAYS = 0x00
SC_NEVER = 0xFF
SC_USER = 0x10
SC_ADMIN = 0x20
SC_SECURE_MESSAGING = 0x40
SC_ALL_OF = 0x80
SC_DEFAULT = SC_USER | SC_ADMIN
"""Used for an operation whose FCP carries no `8C` at all: PIN or admin."""

MAX_DOS_PER_EF = 64
MAX_DO_SIZE = 65000  # OpenSC's MAX_GIDS_FILE_SIZE


class Op(IntEnum):
    """Access-mode bit numbers (b1..b7) of the compact security attributes, per file type."""

    DO_GET = 1
    DO_PUT = 2
    KEY_READ_PUBLIC = 1
    KEY_PUT = 2
    KEY_MSE = 3
    KEY_GENERATE = 4
    DF_DELETE_CHILD = 1
    DF_CREATE_CHILD = 2


def parse_compact_sa(value: bytes) -> dict[int, int]:
    """`8C` value -> {access-mode bit: SC byte}; SC bytes follow the AM byte from b7 down to b1."""
    if not value:
        raise ISOError(SW.INCORRECT_DATA, "empty security attributes")
    am, scs = value[0], list(value[1:])
    result: dict[int, int] = {}
    for bit in range(7, 0, -1):
        if am & (1 << (bit - 1)):
            if not scs:
                raise ISOError(SW.INCORRECT_DATA, "security attributes: too few SC bytes")
            result[bit] = scs.pop(0)
    return result


def condition_holds(sc: int, user: bool, admin: bool, initialising: bool) -> bool:
    """Whether an SC byte is satisfied by the current security status."""
    if sc == SC_NEVER:
        return False
    if sc == SC_ALWAYS or initialising:
        return True
    if sc & SC_SECURE_MESSAGING:
        return False  # no secure messaging on this card: such a condition never holds
    wants_user, wants_admin = bool(sc & SC_USER), bool(sc & SC_ADMIN)
    if not (wants_user or wants_admin):
        return True  # only SE-number bits: no authentication asked for
    if sc & SC_ALL_OF:
        return (user or not wants_user) and (admin or not wants_admin)
    return (wants_user and user) or (wants_admin and admin)


@dataclass(frozen=True)
class Crt:
    """One control reference template of a key EF (`A5` of its FCP)."""

    tag: int  # A4 / B6 / B8
    algorithm: int  # the `80` byte


@dataclass(frozen=True)
class Fcp:
    """The parts of a CREATE FILE FCP (`62`) the card uses."""

    fid: int
    fdb: int
    sa: dict[int, int] | None
    crts: tuple[Crt, ...]

    @classmethod
    def parse(cls, data: bytes) -> Fcp:
        fields: dict[int, bytes] = {}
        proprietary = b""
        for item in tlv.decode_one(data, 0x62).children():
            if item.tag == 0xA5:
                proprietary = item.value
            else:
                fields.setdefault(item.tag, item.value)
        fdb_value, fid_value = fields.get(0x82), fields.get(0x83)
        if not fdb_value or fid_value is None or len(fid_value) != 2:
            raise ISOError(SW.INCORRECT_DATA, "FCP needs a file descriptor (82) and a 2-byte FID (83)")
        sa = parse_compact_sa(fields[0x8C]) if 0x8C in fields else None
        crts = []
        for crt in tlv.decode(proprietary):
            # OpenSC's sign-only FCP carries a wrong `83` key reference: only `80` is used.
            algorithm = tlv.find(crt.value, 0x80)
            if algorithm is not None and len(algorithm) == 1:
                crts.append(Crt(crt.tag, algorithm[0]))
        return cls(int.from_bytes(fid_value, "big"), fdb_value[0], sa, tuple(crts))


class FcpCache:
    """Parsed FCPs by FID, each valid for the exact FCP text it was parsed from.

    MSE and PSO look at a key EF's CRTs and access conditions on every signature;
    parsing its FCP each time cost more than the rest of both commands. An entry is
    used only while the record still holds the very FCP it was parsed from, so a
    file deleted and created again (or a state rewritten) is parsed afresh; one
    entry per FID bounds the cache by the file system's size.
    """

    def __init__(self) -> None:
        self._parsed: dict[int, tuple[str, Fcp]] = {}

    def get(self, fid: int, text: str) -> Fcp:
        cached = self._parsed.get(fid)
        if cached is not None and cached[0] == text:
            return cached[1]
        fcp = Fcp.parse(bytes.fromhex(text))
        self._parsed[fid] = (text, fcp)
        return fcp


class EF:
    """A view on one file's JSON record."""

    def __init__(self, fid: int, record: dict[str, Any], fcps: FcpCache | None = None) -> None:
        self.fid = fid
        self.key = f"{fid:04X}"  # its key in the file system's records
        self.record = record
        self._fcps = fcps if fcps is not None else FcpCache()

    @property
    def fcp_bytes(self) -> bytes:
        return bytes.fromhex(self.record["fcp"])

    @property
    def fcp(self) -> Fcp:
        return self._fcps.get(self.fid, self.record["fcp"])

    @property
    def fdb(self) -> int:
        return int(self.record["fdb"])

    @property
    def is_key_file(self) -> bool:
        return self.fdb == FDB_KEY_EF

    @property
    def active(self) -> bool:
        return bool(self.record["active"])

    def sc(self, op: int) -> int:
        sa = self.fcp.sa
        if sa is None:
            return SC_DEFAULT
        return sa.get(op, SC_NEVER)

    # ---- BER-TLV EF contents -------------------------------------------------

    @property
    def dos(self) -> dict[str, str]:
        dos: dict[str, str] = self.record.setdefault("dos", {})
        return dos

    def get_do(self, tag: int) -> bytes:
        """The complete TLV of one DO; 6A88 when absent."""
        value = self.dos.get(f"{tag:X}")
        if value is None:
            raise ISOError(SW.REFERENCE_NOT_FOUND, f"no DO {tag:X} in EF {self.fid:04X}")
        return tlv.encode(tag, bytes.fromhex(value))

    def all_dos(self) -> bytes:
        return b"".join(tlv.encode(int(tag, 16), bytes.fromhex(value)) for tag, value in self.dos.items())

    def put_do(self, tag: int, value: bytes) -> None:
        """Create/replace; zero length empties a non-empty DO and deletes an empty one."""
        key = f"{tag:X}"
        if len(value) > MAX_DO_SIZE:
            raise ISOError(SW.NOT_ENOUGH_MEMORY, f"DO of {len(value)} bytes")
        if value:
            if key not in self.dos and len(self.dos) >= MAX_DOS_PER_EF:
                raise ISOError(SW.NOT_ENOUGH_MEMORY, f"EF {self.fid:04X} holds {MAX_DOS_PER_EF} DOs")
            self.dos[key] = value.hex()
        elif key in self.dos and self.dos[key] == "":
            del self.dos[key]
        else:
            self.dos[key] = ""

    # ---- key EF contents -----------------------------------------------------

    @property
    def key_pem(self) -> str | None:
        value = self.record.get("key")
        return value if isinstance(value, str) else None

    @key_pem.setter
    def key_pem(self, value: str | None) -> None:
        self.record["key"] = value


class FileSystem:
    """The application DF: its EFs by FID, kept in `state["files"]`."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.files: dict[str, dict[str, Any]] = state.setdefault("files", {})
        self._fcps = FcpCache()
        # The view last made of each FID, reused while the file system holds the very record it
        # views (MSE and PSO look the key file up on every signature).
        self._views: dict[int, EF] = {}

    def __contains__(self, fid: int) -> bool:
        return f"{fid:04X}" in self.files

    def __iter__(self) -> Iterator[EF]:
        for key, record in self.files.items():
            yield EF(int(key, 16), record, self._fcps)

    def get(self, fid: int) -> EF | None:
        view = self._views.get(fid)
        if view is not None and self.files.get(view.key) is view.record:
            return view
        record = self.files.get(f"{fid:04X}")
        if record is None:
            return None
        view = self._views[fid] = EF(fid, record, self._fcps)
        return view

    def require(self, fid: int) -> EF:
        ef = self.get(fid)
        if ef is None:
            raise ISOError(SW.FILE_NOT_FOUND, f"no EF {fid:04X}")
        return ef

    def create(self, fcp_bytes: bytes, active: bool = False) -> EF:
        fcp = Fcp.parse(fcp_bytes)
        if fcp.fdb not in (FDB_BER_TLV_EF, FDB_KEY_EF):
            raise ISOError(SW.INCORRECT_DATA, f"file descriptor {fcp.fdb:02X}: only 39 and 18 exist")
        if fcp.fid in (0x3FFF, 0x3F00, 0x2F01, 0x0000, 0xFFFF):
            raise ISOError(SW.INCORRECT_DATA, f"FID {fcp.fid:04X} is reserved")
        if fcp.fid in self:
            raise ISOError(SW.FILE_ALREADY_EXISTS, f"EF {fcp.fid:04X} exists")
        record: dict[str, Any] = {"fdb": fcp.fdb, "fcp": fcp_bytes.hex().upper(), "active": active}
        record["dos" if fcp.fdb == FDB_BER_TLV_EF else "key"] = {} if fcp.fdb == FDB_BER_TLV_EF else None
        self.files[f"{fcp.fid:04X}"] = record
        return EF(fcp.fid, record, self._fcps)

    def delete(self, fid: int) -> None:
        self.files.pop(f"{fid:04X}", None)
