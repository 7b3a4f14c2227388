"""`vcard run` never waits silently: it says what it waits for, gives up, and refuses unserved ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

PYTHON_VCARD = [sys.executable, "-c", "from vcard.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _conf(tmp_path: Path, port: int) -> Path:
    conf = tmp_path / "reader.conf.d"
    conf.mkdir(exist_ok=True)
    (conf / "vpcd").write_text(
        f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{port}\n'
        f"LIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID {port}\n"
    )
    return conf


def _run(
    tmp_path: Path, port: int, *args: str, timeout: float = 30
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "VCARD_READER_CONF_DIR": str(_conf(tmp_path, port))}
    started = time.monotonic()
    result = subprocess.run(
        [*PYTHON_VCARD, "run", "--ephemeral", "--profile", "iso", "--vpcd", f"127.0.0.1:{port}", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return result, time.monotonic() - started


def test_without_vpcd_run_says_what_it_waits_for_and_gives_up(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens: like a machine without pcscd
    result, elapsed = _run(tmp_path, port, "--wait", "3")
    assert result.returncode == 1, result.stderr
    waiting = [line for line in result.stderr.splitlines() if "waiting for vpcd at" in line]
    assert waiting and f"127.0.0.1:{port}" in waiting[0] and "pcscd" in waiting[0]
    assert "cannot connect" in waiting[0]
    assert "within 3 s" in result.stderr and "--wait forever" in result.stderr
    assert "Traceback" not in result.stderr
    assert 3 <= elapsed < 20


def test_a_slot_whose_listener_never_talks_is_named_as_taken(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts TCP but never speaks, like a slot held by another card
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        result, _ = _run(tmp_path, port, "--wait", "3")
    assert result.returncode == 1
    assert "another card holds this slot" in result.stderr


def test_the_waiting_line_comes_within_2_seconds(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "VCARD_READER_CONF_DIR": str(_conf(tmp_path, port))}
    process = subprocess.Popen(
        [
            *PYTHON_VCARD,
            "run",
            "--ephemeral",
            "--profile",
            "iso",
            "--vpcd",
            f"127.0.0.1:{port}",
            "--wait",
            "forever",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        seen_at = None
        started = None
        for line in process.stderr:
            if started is None and "control socket" in line:
                started = time.monotonic()  # the card is built and its link started
            if "waiting for vpcd at" in line:
                seen_at = time.monotonic()
                break
        assert started is not None and seen_at is not None
        assert seen_at - started < 2.5  # the notice is due at 2 s; 0.5 s for a loaded machine
        assert process.poll() is None  # forever means forever
    finally:
        process.terminate()
        process.wait(10)


def test_a_port_no_vpcd_slot_serves_is_refused_at_start(tmp_path: Path) -> None:
    served = _free_port()
    env = {**os.environ, "VCARD_READER_CONF_DIR": str(_conf(tmp_path, served))}
    result = subprocess.run(
        [
            *PYTHON_VCARD,
            "run",
            "--ephemeral",
            "--profile",
            "iso",
            "--profile",
            "iso",
            "--profile",
            "iso",
            "--vpcd",
            f"127.0.0.1:{served}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert f"card 3 (iso): port {served + 2} has no vpcd slot" in result.stderr
    assert "vcard readers --slots" in result.stderr


def test_bad_wait_values_are_refused(tmp_path: Path) -> None:
    for value in ("0", "-1", "soon"):
        result, _ = _run(tmp_path, _free_port(), "--wait", value)
        assert result.returncode == 2
        assert "--wait" in result.stderr
