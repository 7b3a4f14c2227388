"""The state directory as an attack surface and after crashes: planted links, foreign
owners, leftover temp files, and a lock held by a program that is not vcard."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcard.cli import main
from vcard.store import StateError, StateStore

OTHER_UID = 54321  # a uid no file here belongs to

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def make_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)
    return path


# ---- temp files left by interrupted saves -----------------------------------------------


def test_sweep_removes_only_our_regular_temp_files(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "card")
    (directory / "state.json").write_text('{"schema": 1}')
    leftovers = [directory / f".state.json.{n:016x}.tmp" for n in range(3)]
    for leftover in leftovers:
        leftover.write_text('{"schema": 1, "torn')
    outside = tmp_path / "precious"
    outside.write_text("keep me")
    planted_link = directory / ".state.json.aaaaaaaaaaaaaaaa.tmp"
    planted_link.symlink_to(outside)
    planted_dir = directory / ".state.json.bbbbbbbbbbbbbbbb.tmp"
    planted_dir.mkdir()
    not_ours = directory / ".state.json.backup.tmp"  # not the pattern saves use
    not_ours.write_text("user's copy")
    with StateStore(directory) as store:
        assert store.open() == {"schema": 1}
    assert not any(leftover.exists() for leftover in leftovers)
    assert planted_link.is_symlink() and outside.read_text() == "keep me"
    assert planted_dir.is_dir()
    assert not_ours.read_text() == "user's copy"


@needs_root
def test_sweep_leaves_another_users_file_alone(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "card")
    foreign = directory / ".state.json.cccccccccccccccc.tmp"
    foreign.write_text("theirs")
    os.chown(foreign, OTHER_UID, OTHER_UID)
    with StateStore(directory) as store:
        store.open()
    assert foreign.read_text() == "theirs"


# ---- the lock file and the directory's owner ---------------------------------------------


def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "card")
    victim = tmp_path / "victim"
    victim.write_text("system file\n")
    (directory / "lock").symlink_to(victim)
    with pytest.raises(StateError, match=r"lock: is a symbolic link; refusing"):
        StateStore(directory).open()
    assert victim.read_text() == "system file\n"


def test_a_lock_hard_linked_elsewhere_is_refused(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "card")
    victim = tmp_path / "victim"
    victim.write_text("other file\n")
    os.link(victim, directory / "lock")
    with pytest.raises(StateError, match="not a regular file of yours with a single link"):
        StateStore(directory).open()
    assert victim.read_text() == "other file\n"


@needs_root
def test_root_refuses_a_state_directory_owned_by_a_user(tmp_path: Path) -> None:
    # The attack: the user plants lock -> FILE in their directory, root runs `vcard init`.
    directory = make_dir(tmp_path / "card")
    os.chown(directory, OTHER_UID, OTHER_UID)
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (directory / "lock").symlink_to(victim)
    result = CliRunner().invoke(main, ["init", "--profile", "iso", "--state", str(directory)])
    assert result.exit_code == 1
    assert f"state directory {directory}: owned by uid {OTHER_UID}, not by you" in result.output
    assert "Traceback" not in result.output
    assert victim.read_text() == "root's file\n"
    assert sorted(p.name for p in directory.iterdir()) == ["lock"]


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    directory = make_dir(tmp_path / "card", mode)
    with pytest.raises(StateError, match=rf"writable by other users \(mode {mode:03o}\)"):
        StateStore(directory).open()
    assert list(directory.iterdir()) == []


def test_a_readable_directory_is_still_narrowed_and_used(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "card", 0o755)
    with StateStore(directory) as store:
        assert store.open() is None
    assert directory.stat().st_mode & 0o777 == 0o700


# ---- who holds the lock ---------------------------------------------------------------------

FOREIGN_HOLDER = textwrap.dedent(
    """
    import fcntl, sys
    fd = open(sys.argv[1], "a")
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_a_lock_held_by_another_program_names_that_program_not_the_last_vcard(tmp_path: Path) -> None:
    directory = make_dir(tmp_path / "card")
    lock = directory / "lock"
    lock.write_text("99999\n")  # the pid of the last vcard that ran here
    lock.chmod(0o600)
    child = subprocess.Popen(
        [sys.executable, "-c", FOREIGN_HOLDER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "locked\n"
        with pytest.raises(StateError) as error:
            StateStore(directory).open()
        message = str(error.value)
        assert "99999" not in message and "vcard process" not in message
        assert message == f"state directory {directory} is in use by another process (pid {child.pid})"
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert lock.read_text() == "99999\n"  # a refused open writes nothing


def test_a_holder_that_cannot_be_found_is_reported_without_a_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = make_dir(tmp_path / "card")
    first = StateStore(directory)
    first.open()
    try:
        (directory / "lock").write_text("99999\n")  # whatever the file says
        monkeypatch.setattr("vcard.store._flock_holder", lambda info: None)  # e.g. no /proc
        with pytest.raises(StateError) as error:
            StateStore(directory).open()
        assert str(error.value) == f"state directory {directory} is in use by another process"
    finally:
        first.close()
