"""vcard list / stop / remove / insert / info --reader / reset / init --force, against real processes.

`vcard run` talks to a stand-in for vpcd here (a listening socket that accepts and
never speaks): what is checked is the card's side (registration, control socket,
dropping and re-opening its connection), which needs no pcscd.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PYTHON_VCARD = [sys.executable, "-c", "from vcard.cli import main; main()"]
READER = "Virtual PCD 00 00"
TIMEOUT = 20.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    return {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "VCARD_READER_CONF_DIR": str(tmp_path / "conf"),
    }


def vcard(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYTHON_VCARD, *args], capture_output=True, text=True, env=env, input=stdin, timeout=60, check=False
    )


class StandInVpcd:
    """Accepts the card's TCP connections on the port a fake reader.conf.d names."""

    def __init__(self, conf: Path) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.server.settimeout(TIMEOUT)
        self.port: int = self.server.getsockname()[1]
        conf.mkdir(exist_ok=True)
        (conf / "vpcd").write_text(
            f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:{self.port}\nLIBPATH /x/libifdvpcd.so\n'
        )

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        conn.settimeout(TIMEOUT)
        return conn


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], StandInVpcd]]:
    vpcd = StandInVpcd(Path(env["VCARD_READER_CONF_DIR"]))
    process = subprocess.Popen(
        [
            *PYTHON_VCARD,
            "run",
            "--ephemeral",
            "--profile",
            "iso",
            "--vpcd",
            f"127.0.0.1:{vpcd.port}",
            "--wait",
            "forever",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        listed = json.loads(vcard(env, "list", "--json").stdout)
        if listed["running"]:
            break
        time.sleep(0.1)
    yield process, vpcd
    if process.poll() is None:
        process.terminate()
        process.wait(TIMEOUT)
    vpcd.server.close()


def test_list_shows_the_running_ephemeral_card(
    env: dict[str, str], running: tuple[subprocess.Popen[str], StandInVpcd]
) -> None:
    process, vpcd = running
    listed = json.loads(vcard(env, "list", "--json").stdout)
    (card,) = listed["running"]
    assert card["pid"] == process.pid
    assert card["profile"] == "iso" and card["state"] == "ephemeral"
    assert card["reader"] == READER and card["port"] == vpcd.port
    text = vcard(env, "list").stdout
    assert str(process.pid) in text and READER in text


def test_info_by_reader_reaches_an_ephemeral_card(
    env: dict[str, str], running: tuple[subprocess.Popen[str], StandInVpcd]
) -> None:
    result = vcard(env, "info", "--reader", READER, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "(ephemeral)"
    missing = vcard(env, "info", "--reader", "Virtual PCD 00 07")
    assert missing.returncode == 1 and "no running card for reader" in missing.stderr


def test_remove_drops_the_connection_and_insert_brings_it_back(
    env: dict[str, str], running: tuple[subprocess.Popen[str], StandInVpcd]
) -> None:
    _, vpcd = running
    first = vpcd.accept()
    assert vcard(env, "remove", "--reader", READER).returncode == 0
    assert first.recv(16) == b""  # the card left the reader
    assert vcard(env, "insert", "--all").returncode == 0
    second = vpcd.accept()  # and came back
    second.close()
    first.close()


def test_stop_ends_the_process_and_its_registration(
    env: dict[str, str], running: tuple[subprocess.Popen[str], StandInVpcd]
) -> None:
    process, _ = running
    result = vcard(env, "stop", "--reader", READER)
    assert result.returncode == 0, result.stderr
    assert process.wait(TIMEOUT) == 0
    assert json.loads(vcard(env, "list", "--json").stdout)["running"] == []
    assert list(Path(env["XDG_RUNTIME_DIR"], "vcard").glob("card-*.json")) == []


def test_commands_need_exactly_one_target(env: dict[str, str]) -> None:
    assert vcard(env, "stop").returncode == 2
    assert vcard(env, "stop", "--all", "--reader", READER).returncode == 2
    nothing = vcard(env, "stop", "--all")
    assert nothing.returncode == 1 and "no running card" in nothing.stderr


def _block_pin(env: dict[str, str], state: Path) -> None:
    wrong = "00200080083939393939393939"
    vcard(env, "apdu", "--state", str(state), "00A4040005A000000308", wrong, wrong, wrong)
    status = vcard(env, "apdu", "--state", str(state), "00A4040005A000000308", "00200080")
    assert status.stdout.splitlines()[-1].startswith("6983"), status.stdout


def _tries(env: dict[str, str], state: Path) -> str:
    return vcard(env, "apdu", "--state", str(state), "00A4040005A000000308", "00200080").stdout.splitlines()[
        -1
    ]


def test_reset_brings_back_the_profiles_initial_state(env: dict[str, str], tmp_path: Path) -> None:
    state = tmp_path / "card"
    assert vcard(env, "init", "--profile", "piv", "--state", str(state)).returncode == 0
    serial = json.loads(vcard(env, "info", "--state", str(state), "--json").stdout)["serial"]
    _block_pin(env, state)
    declined = vcard(env, "reset", "--state", str(state), stdin="n\n")
    assert declined.returncode == 1 and "nothing changed" in declined.stderr
    assert _tries(env, state).startswith("6983")
    result = vcard(env, "reset", "--state", str(state), "--yes")
    assert result.returncode == 0, result.stderr
    assert _tries(env, state).startswith("63C3")
    assert json.loads(vcard(env, "info", "--state", str(state), "--json").stdout)["serial"] != serial
    assert (state / "state.json").stat().st_mode & 0o777 == 0o600


def test_init_force_replaces_and_init_alone_refuses(env: dict[str, str], tmp_path: Path) -> None:
    state = tmp_path / "card"
    vcard(env, "init", "--profile", "piv", "--state", str(state))
    _block_pin(env, state)
    again = vcard(env, "init", "--profile", "piv", "--state", str(state))
    assert again.returncode == 1 and "--force" in again.stderr
    assert _tries(env, state).startswith("6983")
    forced = vcard(env, "init", "--profile", "piv", "--state", str(state), "--force")
    assert forced.returncode == 0, forced.stderr
    assert _tries(env, state).startswith("63C3")


def test_reset_refuses_a_state_a_running_card_holds(env: dict[str, str], tmp_path: Path) -> None:
    state = tmp_path / "card"
    vcard(env, "init", "--profile", "iso", "--state", str(state))
    before = (state / "state.json").read_bytes()
    vpcd = StandInVpcd(Path(env["VCARD_READER_CONF_DIR"]))
    process = subprocess.Popen(
        [
            *PYTHON_VCARD,
            "run",
            "--profile",
            "iso",
            "--state",
            str(state),
            "--vpcd",
            f"127.0.0.1:{vpcd.port}",
            "--wait",
            "forever",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        vpcd.accept().close()  # the card is up and holds its state
        result = vcard(env, "reset", "--state", str(state), "--yes")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert (state / "state.json").read_bytes() == before
    finally:
        process.terminate()
        process.wait(TIMEOUT)
        vpcd.server.close()
