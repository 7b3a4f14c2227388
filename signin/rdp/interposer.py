"""Build and load the SCard interposer (interposer/scardtrace.c) for an unmodified PC/SC client.

The library is compiled with gcc on first use into a per-user cache directory named
after a hash of its source, never installed anywhere: the system libpcsclite stays
untouched. A client reaches it by one of three routes, all set up by `environment()`
because which one works depends on how the client loads PC/SC:

- `LD_PRELOAD`: programs linked against libpcsclite (yubico-piv-tool, p11tool via a
  module linked to it);
- `LD_LIBRARY_PATH` pointing at a directory where the library is named
  `libpcsclite.so.1`: programs that dlopen that name (pyscard, so `vcard md`);
- `OPENSC_CONF` naming a generated opensc.conf whose `reader_driver pcsc` block sets
  `provider_library` to the interposer (OpenSC dlopens libpcsclite itself and looks
  symbols up in that handle, so LD_PRELOAD alone does not catch it; OpenSC
  src/libopensc/reader-pcsc.c). This replaces any OPENSC_CONF the caller had.

The real library is loaded by absolute path (`VCARD_SCARD_LIB`), so the interposer
never finds itself however it was loaded, and one process loads it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("interposer") / "scardtrace.c"
LIBRARY_NAME = "libscardtrace.so"
PCSC_SONAME = "libpcsclite.so.1"
_KNOWN_PCSC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1",
    "/usr/lib/aarch64-linux-gnu/libpcsclite.so.1",
    "/usr/lib64/libpcsclite.so.1",
    "/usr/lib/libpcsclite.so.1",
)

ENV_LOG = "VCARD_SCARD_LOG"
ENV_RTT = "VCARD_SCARD_RTT_MS"
ENV_LIB = "VCARD_SCARD_LIB"


class InterposerError(RuntimeError):
    """The interposer cannot be built or the real libpcsclite cannot be found; says which and why."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vcard" / "rdp"


def real_pcsclite() -> Path:
    """The system's libpcsclite.so.1, from the dynamic linker's cache or the usual places."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        listing = ""
    for line in listing.splitlines():
        match = re.match(rf"\s*{re.escape(PCSC_SONAME)} \(([^)]*)\) => (\S+)", line)
        if match and Path(match.group(2)).exists():
            return Path(match.group(2))
    for candidate in _KNOWN_PCSC_PATHS:
        if Path(candidate).exists():
            return Path(candidate)
    raise InterposerError(
        f"{PCSC_SONAME} not found (ldconfig -p and {', '.join(_KNOWN_PCSC_PATHS)}): install libpcsclite1"
    )


def build(root: Path | None = None) -> Path:
    """The compiled interposer, built now if this source has not been built before."""
    source = SOURCE.read_bytes()
    directory = (root or cache_root()) / hashlib.sha256(source).hexdigest()[:16]
    library = directory / LIBRARY_NAME
    if library.exists():
        return library
    if shutil.which("gcc") is None:
        raise InterposerError("gcc is needed to build the SCard interposer (apt-get install gcc)")
    if not Path("/usr/include/PCSC/winscard.h").exists():
        raise InterposerError("/usr/include/PCSC/winscard.h is missing (apt-get install libpcsclite-dev)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".so", delete=False) as partial:
        output = Path(partial.name)
    command = [
        "gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I/usr/include/PCSC",
        f"-Wl,-soname,{PCSC_SONAME}", "-o", str(output), str(SOURCE), "-ldl", "-lpthread",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output.unlink(missing_ok=True)
        raise InterposerError(f"building {SOURCE.name} failed:\n{result.stderr.strip()}")
    output.chmod(0o755)
    os.replace(output, library)  # atomic: concurrent builders end with the same file
    return library


def _loader_files(library: Path) -> tuple[Path, Path]:
    """The directory where the library is named libpcsclite.so.1, and the opensc.conf naming it."""
    alias_dir = library.parent / "as-pcsclite"
    alias_dir.mkdir(mode=0o700, exist_ok=True)
    alias = alias_dir / PCSC_SONAME
    if not alias.is_symlink():
        with tempfile.TemporaryDirectory(dir=library.parent) as scratch:
            link = Path(scratch) / PCSC_SONAME
            link.symlink_to(library)
            os.replace(link, alias)
    conf = library.parent / "opensc.conf"
    if not conf.exists():
        text = (
            "app default {\n"
            f"    reader_driver pcsc {{ provider_library = {library}; }}\n"
            "    framework pkcs15 { }\n"
            "}\n"
        )
        with tempfile.NamedTemporaryFile("w", dir=library.parent, delete=False) as partial:
            partial.write(text)
        os.replace(partial.name, conf)
    return alias_dir, conf


def environment(
    log: Path, rtt_ms: float = 0.0, base: Mapping[str, str] | None = None, library: Path | None = None
) -> dict[str, str]:
    """Environment for a client whose SCard calls go to `log`, each delayed by `rtt_ms`."""
    if rtt_ms < 0:
        raise ValueError(f"rtt must be >= 0 ms, not {rtt_ms}")
    library = library or build()
    alias_dir, conf = _loader_files(library)
    env = dict(os.environ if base is None else base)
    env[ENV_LOG] = str(log)
    env[ENV_LIB] = str(real_pcsclite())
    env[ENV_RTT] = f"{rtt_ms:g}" if rtt_ms else ""
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(alias_dir), env.get("LD_LIBRARY_PATH", "")]))
    env["OPENSC_CONF"] = str(conf)
    return env


@dataclass(frozen=True)
class TraceRun:
    """One traced run of a client: its exit code, wall time and the log of its SCard calls."""

    command: tuple[str, ...]
    exit_code: int
    wall_seconds: float
    rtt_ms: float
    log: Path


def run_traced(
    command: Sequence[str],
    log: Path,
    rtt_ms: float = 0.0,
    stdin: bytes | None = None,
    quiet: bool = False,
    base_env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> TraceRun:
    """Run `command` with the interposer; the log gets its calls, then one `run` line (wall time, exit)."""
    if not command:
        raise ValueError("no command to run")
    env = environment(log, rtt_ms, base_env)
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a fresh log for this run
    os.fchmod(fd, 0o600)
    os.close(fd)
    output = subprocess.DEVNULL if quiet else None
    started = time.perf_counter()
    try:
        result = subprocess.run(
            list(command), env=env, input=stdin, stdout=output, stderr=output, check=False, timeout=timeout
        )
    except FileNotFoundError:
        raise InterposerError(f"{command[0]}: command not found") from None
    wall = time.perf_counter() - started
    run = TraceRun(tuple(command), result.returncode, wall, rtt_ms, log)
    meta = {"command": list(command), "exit": run.exit_code, "wall_seconds": wall, "rtt_ms": rtt_ms}
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"run": meta}) + "\n")
    return run
