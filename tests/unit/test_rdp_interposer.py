"""The SCard interposer: built from source, loaded by dlopen name, logs every call, delays remote ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signin.rdp.calllog import read_log
from signin.rdp.interposer import build, environment, real_pcsclite

# A PC/SC client that dlopens "libpcsclite.so.1" like pyscard does. SCardEstablishContext may
# fail without pcscd; the calls are made (and logged) either way.
CLIENT = """
import ctypes
lib = ctypes.CDLL("libpcsclite.so.1")
context = ctypes.c_long()
lib.SCardEstablishContext(2, None, None, ctypes.byref(context))
lib.SCardIsValidContext(context)
lib.SCardFreeMemory(context, None)
lib.SCardReleaseContext(context)
print(ctypes.c_char_p.in_dll(lib, "g_rgSCardT0Pci") is not None)
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("cache"))


def run_client(library: Path, log: Path, rtt_ms: float) -> subprocess.CompletedProcess[str]:
    env = environment(log, rtt_ms, base=dict(os.environ), library=library)
    return subprocess.run(
        [sys.executable, "-c", CLIENT], env=env, capture_output=True, text=True, check=False
    )


def test_build_is_cached_by_source_and_private(library: Path) -> None:
    assert library.exists()
    assert build(library.parent.parent) == library  # same source: not rebuilt
    assert library.parent.stat().st_mode & 0o077 == 0
    assert real_pcsclite().name == "libpcsclite.so.1" and real_pcsclite().resolve() != library.resolve()


def test_every_call_is_logged_once_with_local_free_memory(library: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    result = run_client(library, log, 0)
    assert result.returncode == 0, result.stderr
    names = [call.name for call in read_log(log).calls]
    assert names == ["SCardEstablishContext", "SCardIsValidContext", "SCardFreeMemory", "SCardReleaseContext"]
    calls = read_log(log).calls
    assert [call.local for call in calls] == [False, False, True, False]
    assert {call.pid for call in calls} != {os.getpid()}
    assert log.stat().st_mode & 0o777 == 0o600


def test_rtt_delays_remote_calls_only(library: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    result = run_client(library, log, 30)  # a small real delay: this is the delay's own test
    assert result.returncode == 0, result.stderr
    for call in read_log(log).calls:
        took = call.end - call.start
        if call.local:
            assert took < 0.015
        else:
            assert took >= 0.029


def test_dispositions_are_logged(library: Path, tmp_path: Path) -> None:
    client = (
        "import ctypes\n"
        "lib = ctypes.CDLL('libpcsclite.so.1')\n"
        "lib.SCardDisconnect(ctypes.c_long(0), 1)\n"  # no such handle: fails, is logged all the same
        "lib.SCardEndTransaction(ctypes.c_long(0), 0)\n"
        "lib.SCardBeginTransaction(ctypes.c_long(0))\n"
    )
    log = tmp_path / "calls.jsonl"
    env = environment(log, 0, base=dict(os.environ), library=library)
    result = subprocess.run(
        [sys.executable, "-c", client], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    calls = read_log(log).calls
    assert [(c.name, c.disposition) for c in calls] == [
        ("SCardDisconnect", 1),
        ("SCardEndTransaction", 0),
        ("SCardBeginTransaction", None),
    ]
    assert all(c.rc != 0 for c in calls)


def test_trace_command_prints_the_table_and_passes_the_exit_code_on(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vcard.rdp_cli import rdp

    log = tmp_path / "calls.jsonl"
    client = CLIENT + "\nraise SystemExit(3)\n"
    result = CliRunner().invoke(rdp, ["trace", "--log", str(log), "--", sys.executable, "-c", client])
    assert result.exit_code == 3
    assert "SCardEstablishContext" in result.output and "local on an RDP server" in result.output
    assert "run: exit 3" in result.output and f"call log: {log}" in result.output
    assert read_log(log).run is not None
    missing = CliRunner().invoke(rdp, ["trace", "--", "no-such-command-vcard"])
    assert missing.exit_code == 1 and "no-such-command-vcard: command not found" in missing.output
    assert "Traceback" not in missing.output
