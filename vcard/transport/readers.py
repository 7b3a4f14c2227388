"""Which vpcd readers pcscd serves, and the reader.conf.d entries that add more.

pcscd reads one stanza per reader driver from /etc/reader.conf.d (FRIENDLYNAME,
DEVICENAME, LIBPATH, CHANNELID). vsmartcard's libifdvpcd stanza makes pcscd create
one reader per vpcd slot; slot n listens on the stanza's port + n, where the port
is the number after the colon of DEVICENAME (`/dev/null:0x8C7B`), else CHANNELID.
pcscd names the readers "FRIENDLYNAME XX YY": XX counts readers with the same
friendly name, YY is the slot.

Debian's libifdvpcd has two slots. More readers need more stanzas, and each stanza
needs its own copy of the library: the driver keeps its slot table in static
memory, so two stanzas loading the same file would share it and overwrite each
other's slots (vsmartcard src/ifd-vpcd/ifd-vpcd.c). pcscd serves at most 16
readers (PCSCLITE_MAX_READERS_CONTEXTS in pcsc-lite's pcsclite.h) and ignores the
rest without telling clients.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .vpcd import VPCD_BASE_PORT, VPCD_SLOTS

READER_CONF_DIR = Path(os.environ.get("VCARD_READER_CONF_DIR", "/etc/reader.conf.d"))
"""pcscd's driver configuration; the variable lets tests and private pcscd instances use another."""
DEBIAN_LIBRARY = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_MAX_READERS = 16
"""PCSCLITE_MAX_READERS_CONTEXTS: readers beyond this are dropped by pcscd."""

GENERATED_PREFIX = "vcard-vpcd-"
"""Stanzas `vcard readers` writes: /etc/reader.conf.d/vcard-vpcd-<k>."""
LIBRARY_DIR = Path("/usr/local/lib/vcard/pcsc")
"""Where the per-stanza copies of libifdvpcd go."""
FRIENDLY_PREFIX = "Virtual PCD vcard"


class ReaderConfError(Exception):
    """A reader.conf.d problem, with the file and what is wrong."""


@dataclass(frozen=True)
class VpcdStanza:
    """One vpcd driver entry: `slots` readers on ports port..port+slots-1."""

    friendly_name: str
    port: int
    library: str
    source: str
    slots: int = VPCD_SLOTS

    def reader(self, slot: int, index: int = 0) -> str:
        return f"{self.friendly_name} {index:02X} {slot:02X}"

    @property
    def ports(self) -> range:
        return range(self.port, self.port + self.slots)


def _number(text: str) -> int:
    return int(text, 0)


def parse_stanzas(text: str, source: str) -> list[VpcdStanza]:
    """The vpcd stanzas of one reader.conf file (other drivers are skipped)."""
    stanzas: list[VpcdStanza] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if "LIBPATH" in fields and "ifdvpcd" in os.path.basename(fields["LIBPATH"]):
            device = fields.get("DEVICENAME", "")
            port_text = device.rpartition(":")[2] if ":" in device else fields.get("CHANNELID", "")
            try:
                port = _number(port_text) if port_text else VPCD_BASE_PORT
            except ValueError:
                raise ReaderConfError(f"{source}: vpcd port {port_text!r} is not a number") from None
            stanzas.append(
                VpcdStanza(fields.get("FRIENDLYNAME", "Virtual PCD"), port, fields["LIBPATH"], source)
            )
        fields.clear()

    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        key, _, value = stripped.partition(" ")
        key = key.upper()
        if key in fields:
            flush()  # a key seen again starts the next stanza
        words = shlex.split(value.strip()) if value.strip() else [""]
        fields[key] = " ".join(words)
    flush()
    return stanzas


def read_stanzas(conf_dir: Path = READER_CONF_DIR) -> list[VpcdStanza]:
    """Every vpcd stanza pcscd would load from `conf_dir`, in file-name order."""
    stanzas: list[VpcdStanza] = []
    if not conf_dir.is_dir():
        return stanzas
    for path in sorted(conf_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise ReaderConfError(f"{path}: cannot read ({error.strerror})") from None
        stanzas.extend(parse_stanzas(text, str(path)))
    return stanzas


def served_ports(conf_dir: Path = READER_CONF_DIR) -> dict[int, str]:
    """Port -> reader name, for every vpcd slot pcscd serves (at most 16 readers in all)."""
    ports: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    readers = 0
    for stanza in read_stanzas(conf_dir):
        index = seen_names.get(stanza.friendly_name, 0)
        seen_names[stanza.friendly_name] = index + 1
        for slot, port in enumerate(stanza.ports):
            if readers >= PCSCD_MAX_READERS:
                return ports
            ports.setdefault(port, stanza.reader(slot, index))
            readers += 1
    return ports


def port_problem(host: str, port: int, conf_dir: Path = READER_CONF_DIR) -> str | None:
    """Why no local vpcd slot can serve `port`, or None when one does (or we cannot know)."""
    if not _is_local(host):
        return None  # another machine's pcscd: its configuration is not ours to read
    try:
        ports = served_ports(conf_dir)
    except ReaderConfError:
        return None
    if not ports or port in ports:
        return None
    ordered = sorted(ports.items())
    if len(ordered) <= 4:
        listed = ", ".join(f"{number} ({name})" for number, name in ordered)
    else:
        (low, first), (high, last) = ordered[0], ordered[-1]
        listed = f"{len(ordered)} ports from {low} ({first}) to {high} ({last})"
    return (
        f"port {port} has no vpcd slot: pcscd's vpcd readers in {conf_dir} listen on {listed};"
        f" `vcard readers --slots N` (as root) adds readers"
    )


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plan(slots: int, base: VpcdStanza) -> list[VpcdStanza]:
    """The extra stanzas that bring the vpcd readers to `slots` (beyond `base`, the packaged one)."""
    if not 1 <= slots <= PCSCD_MAX_READERS:
        raise ReaderConfError(
            f"--slots {slots}: pcscd serves 1 to {PCSCD_MAX_READERS} readers and drops the rest silently"
        )
    extra = max(0, -(-(slots - base.slots) // base.slots))
    stanzas = []
    for k in range(1, extra + 1):
        stanzas.append(
            VpcdStanza(
                f"{FRIENDLY_PREFIX} {k}",
                base.port + k * base.slots,
                str(LIBRARY_DIR / f"libifdvpcd-{k}.so"),
                f"{GENERATED_PREFIX}{k}",
                base.slots,
            )
        )
    return stanzas


def render(stanza: VpcdStanza) -> str:
    """The reader.conf.d text of one generated stanza."""
    return (
        "# Written by `vcard readers`: one more pair of vpcd readers, with its own copy of the\n"
        "# driver (a shared copy would share its slot table). `vcard readers --slots 2` removes it.\n"
        f'FRIENDLYNAME "{stanza.friendly_name}"\n'
        f"DEVICENAME   /dev/null:0x{stanza.port:04X}\n"
        f"LIBPATH      {stanza.library}\n"
        f"CHANNELID    0x{stanza.port:04X}\n"
    )


def apply(
    slots: int,
    conf_dir: Path = READER_CONF_DIR,
    library: Path = DEBIAN_LIBRARY,
    library_dir: Path = LIBRARY_DIR,
) -> list[VpcdStanza]:
    """Write (or remove) the generated stanzas and library copies so pcscd gets `slots` vpcd readers.

    Only files this function wrote (`vcard-vpcd-*`) are touched. Returns every vpcd
    stanza afterwards; pcscd must be restarted to see the change.
    """
    base_stanzas = [s for s in read_stanzas(conf_dir) if not Path(s.source).name.startswith(GENERATED_PREFIX)]
    if not base_stanzas:
        raise ReaderConfError(f"{conf_dir}: no vpcd stanza (install vsmartcard-vpcd first)")
    if not library.exists():
        raise ReaderConfError(f"{library}: the vpcd driver is missing (install vsmartcard-vpcd)")
    base = base_stanzas[0]
    wanted = plan(slots, base)
    for stanza in wanted:
        taken = [s for s in base_stanzas if set(s.ports) & set(stanza.ports)]
        if taken:
            raise ReaderConfError(
                f"{taken[0].source}: already uses port {taken[0].port}; cannot add readers there"
            )
    for old in conf_dir.glob(f"{GENERATED_PREFIX}*"):
        old.unlink()
    for old in library_dir.glob("libifdvpcd-*.so") if library_dir.is_dir() else []:
        old.unlink()
    if wanted:
        library_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    written = []
    for stanza in wanted:
        copy = library_dir / Path(stanza.library).name
        shutil.copyfile(library, copy)
        os.chmod(copy, 0o644)
        placed = VpcdStanza(
            stanza.friendly_name, stanza.port, str(copy), str(conf_dir / stanza.source), stanza.slots
        )
        (conf_dir / stanza.source).write_text(render(placed), encoding="utf-8")
        os.chmod(conf_dir / stanza.source, 0o644)
        written.append(placed)
    return [*base_stanzas, *written]
