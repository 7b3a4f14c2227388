"""External PINs decided by the operator: OperatorPinSource, the "pinpad" control command, `vcard pinpad`."""

from __future__ import annotations

import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vcard.apdu import ISOError
from vcard.control import ControlError, ControlServer, control_request
from vcard.pinpad import handle_pinpad, operator_source, pinpad, register_pinpad
from vcard.security import SESSION_PIN_BYTES, Charset, OperatorPinSource, RoleConfig, RoleType, SecurityCore

ROLES = (
    RoleConfig(1, "user", RoleType.PIN, b"123456", 6, 8, Charset.DIGITS, 3),
    RoleConfig(5, "pin pad", RoleType.EXTERNAL, b"2468", 4, 8, Charset.DIGITS, 3, external_policy="operator"),
)


def make_core() -> SecurityCore:
    return SecurityCore(ROLES, {}, lambda: None, is_new=True)


class Verification:
    """verify_external running in the card's thread while the test plays the operator."""

    def __init__(self, core: SecurityCore, role: int = 5, timeout: float = 30.0) -> None:
        self.token: bytes | None = None
        self.sw: int | None = None
        self._thread = threading.Thread(target=self._run, args=(core, role, timeout))
        self._thread.start()

    def _run(self, core: SecurityCore, role: int, timeout: float) -> None:
        try:
            self.token = core.verify_external(role, timeout=timeout)
        except ISOError as error:
            self.sw = error.sw

    def join(self) -> Verification:
        self._thread.join(30.0)
        assert not self._thread.is_alive()
        return self


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short path: unix socket paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="vcard-pp-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def running(state_dir: Path) -> Iterator[tuple[SecurityCore, Path]]:
    core = make_core()
    server = ControlServer(state_dir / "control.sock")
    register_pinpad(server, core)
    server.start()
    try:
        yield core, state_dir / "control.sock"
    finally:
        server.stop()


def test_operator_source_of_a_card_like_object() -> None:
    core = make_core()

    class FakeCard:
        security = core

    assert operator_source(FakeCard()) is core.operator
    assert operator_source(core) is core.operator
    source = OperatorPinSource()
    assert operator_source(source) is source


def test_handle_pinpad_validation() -> None:
    source = make_core().operator
    with pytest.raises(ValueError, match="action must be"):
        handle_pinpad(source, {"action": "maybe"})
    with pytest.raises(ValueError, match="needs a non-empty"):
        handle_pinpad(source, {"action": "enter"})
    with pytest.raises(ValueError, match="takes no PIN"):
        handle_pinpad(source, {"action": "approve", "pin": "1"})
    with pytest.raises(ValueError, match="wait"):
        handle_pinpad(source, {"action": "approve", "wait": -1})
    with pytest.raises(ValueError, match="no external PIN verification is waiting"):
        handle_pinpad(source, {"action": "approve"})


def test_socket_is_owner_only(running: tuple[SecurityCore, Path]) -> None:
    _, socket_path = running
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600


def request(socket_path: Path, **payload: Any) -> dict[str, Any]:
    return control_request(socket_path, {"command": "pinpad", "wait": 10.0, **payload}, timeout=20.0)


def test_approve_over_the_control_socket(running: tuple[SecurityCore, Path]) -> None:
    core, socket_path = running
    verification = Verification(core)
    assert request(socket_path, action="approve") == {"ok": True, "role": 5, "action": "approve"}
    verification.join()
    assert verification.token is not None and len(verification.token) == SESSION_PIN_BYTES
    assert core.is_authenticated(5) and core.tries_left(5) == 3


def test_deny_over_the_control_socket(running: tuple[SecurityCore, Path]) -> None:
    core, socket_path = running
    verification = Verification(core)
    request(socket_path, action="deny")
    assert verification.join().sw == 0x63C2
    assert not core.is_authenticated(5) and core.tries_left(5) == 2


def test_enter_pin_over_the_control_socket(running: tuple[SecurityCore, Path]) -> None:
    core, socket_path = running
    verification = Verification(core)
    request(socket_path, action="enter", pin="0000")
    assert verification.join().sw == 0x63C2  # a wrong PIN on the pad costs a try
    verification = Verification(core)
    request(socket_path, action="enter", pin="2468")
    assert verification.join().token is not None
    assert core.tries_left(5) == 3


def test_timeout_fails_cleanly(running: tuple[SecurityCore, Path]) -> None:
    core, socket_path = running
    verification = Verification(core, timeout=0.05).join()
    assert verification.sw == 0x6982
    assert core.tries_left(5) == 3
    with pytest.raises(ControlError, match="no external PIN verification is waiting"):
        control_request(socket_path, {"command": "pinpad", "action": "approve"}, timeout=5.0)


def test_vcard_pinpad_command(running: tuple[SecurityCore, Path]) -> None:
    core, socket_path = running
    runner = CliRunner()
    verification = Verification(core)
    result = runner.invoke(pinpad, ["--state", str(socket_path.parent), "approve"])
    assert result.exit_code == 0, result.output
    assert "role 5" in result.output
    assert verification.join().token is not None

    verification = Verification(core)
    result = runner.invoke(pinpad, ["--state", str(socket_path.parent), "enter"], input="2468\n")
    assert result.exit_code == 0, result.output
    assert "2468" not in result.output  # prompted without echo
    assert verification.join().token is not None

    verification = Verification(core)
    result = runner.invoke(pinpad, ["--state", str(socket_path.parent), "deny"])
    assert result.exit_code == 0, result.output
    assert verification.join().sw == 0x63C2


def test_vcard_pinpad_errors(state_dir: Path, running: tuple[SecurityCore, Path]) -> None:
    runner = CliRunner()
    _, socket_path = running
    result = runner.invoke(pinpad, ["--state", str(socket_path.parent), "--wait", "0", "approve"])
    assert result.exit_code != 0 and "no external PIN verification is waiting" in result.output
    result = runner.invoke(pinpad, ["--state", str(socket_path.parent), "approve", "1234"])
    assert result.exit_code != 0 and "takes no PIN" in result.output
    empty = state_dir / "nothing-here"
    empty.mkdir()
    result = runner.invoke(pinpad, ["--state", str(empty), "approve"])
    assert result.exit_code != 0 and "no running card" in result.output


def test_pinpad_is_a_vcard_subcommand(running: tuple[SecurityCore, Path]) -> None:
    from vcard.cli import main

    core, socket_path = running
    verification = Verification(core)
    result = CliRunner().invoke(main, ["pinpad", "--state", str(socket_path.parent), "approve"])
    assert result.exit_code == 0, result.output
    assert verification.join().token is not None
