"""The card state store: atomic 0600 saves, one process at a time, never overwriting what it cannot read."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vcard import __version__
from vcard.store import SCHEMA_VERSION, CardState, StateError, StateStore, default_state_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "cards" / "piv"


def reopen(directory: Path) -> object:
    with StateStore(directory) as store:
        return store.open()


def write_state(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / "state.json"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_round_trip(state_dir: Path) -> None:
    document = {"schema": SCHEMA_VERSION, "applets": {"piv": {"tries": 3, "name": "é"}}, "list": [1, None]}
    with StateStore(state_dir) as first:
        assert first.open() is None
        first.save(document)
        assert first.writes == 1
    with StateStore(state_dir) as second:
        assert second.open() == document


def test_file_is_sorted_json_one_line_per_field(state_dir: Path) -> None:
    with StateStore(state_dir) as st:
        st.open()
        st.save({"schema": 1, "b": 1, "a": {"d": [2, {"f": 1, "e": 0}], "c": 3}})
    text = (state_dir / "state.json").read_text()
    # Written as schema 2 (with the sequence number the counters record is ordered by);
    # nested values on one line each, as the C encoder writes them.
    assert text == (
        '{\n "a": {\n  "c": 3,\n  "d": [2, {"e": 0, "f": 1}]\n },\n "b": 1,\n'
        ' "counters_seq": 1,\n "schema": 2\n}\n'
    )
    expected = {"schema": 2, "counters_seq": 1, "b": 1, "a": {"d": [2, {"f": 1, "e": 0}], "c": 3}}
    assert json.loads(text) == expected


def test_modes_are_0600_and_0700(state_dir: Path) -> None:
    old_umask = os.umask(0)  # the most permissive umask must not widen anything
    try:
        with StateStore(state_dir) as st:
            st.open()
            st.save({"schema": 1})
            st.save({"schema": 1, "x": 1})
    finally:
        os.umask(old_umask)
    assert mode(state_dir) == 0o700
    assert mode(state_dir / "state.json") == 0o600
    assert mode(state_dir / "lock") == 0o600


def test_wide_state_file_is_narrowed_with_a_warning(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_state(state_dir, '{"schema": 1}')
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="vcard.store"), StateStore(state_dir) as st:
        assert st.open() == {"schema": 1}
    assert mode(path) == 0o600
    assert str(path) in caplog.text


def test_wide_directory_is_narrowed(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    state_dir.chmod(0o755)
    with StateStore(state_dir) as st:
        st.open()
    assert mode(state_dir) == 0o700


def test_corrupt_json_names_file_line_and_column(state_dir: Path) -> None:
    path = write_state(state_dir, '{"schema": 1,\n "security": {\n  "tries": ,\n }}\n')
    st = StateStore(state_dir)
    with pytest.raises(StateError) as info:
        st.open()
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "column 12" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[1, 2]", "must be a JSON object, got an array"),
        ('{"applets": {}}', 'no "schema" field'),
        ('{"schema": "1"}', '"schema" must be an integer, got a string'),
        ('{"schema": true}', '"schema" must be an integer, got a boolean'),
        ('{"schema": 0}', "unknown schema 0"),
        ('{"schema": 3}', "written by a newer vcard (schema 3); this vcard reads schemas 1 to 2"),
        ('{"schema": 2}', "counters_seq: missing"),
        ('{"schema": 2, "counters_seq": -1}', "counters_seq: must be a non-negative integer, got a number"),
        (b"\xff\xfe{}", "not valid UTF-8 at byte 0"),
    ],
)
def test_unreadable_state_is_named_refused_and_left_untouched(
    state_dir: Path, text: str | bytes, problem: str
) -> None:
    state_dir.mkdir(parents=True, mode=0o700)
    path = state_dir / "state.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    before = path.read_bytes()
    st = StateStore(state_dir)
    with pytest.raises(StateError) as info:
        st.open()
    assert str(path) in str(info.value)
    assert problem in str(info.value)
    # A failed load forbids every later save: the file holds something we could not read.
    with pytest.raises(StateError, match="refusing to save over a state that could not be read"):
        st.save({"schema": SCHEMA_VERSION})
    assert path.read_bytes() == before
    assert sorted(p.name for p in state_dir.iterdir()) == ["lock", "state.json"]


def test_failed_load_releases_the_lock(state_dir: Path) -> None:
    write_state(state_dir, "{")
    with pytest.raises(StateError):
        StateStore(state_dir).open()
    write_state(state_dir, '{"schema": 1}')
    with StateStore(state_dir) as st:
        assert st.open() == {"schema": 1}


def test_second_store_in_same_process_is_refused_with_pid(state_dir: Path) -> None:
    first = StateStore(state_dir)
    first.open()
    try:
        with pytest.raises(StateError) as info:
            StateStore(state_dir).open()
        assert str(info.value) == (
            f"state directory {state_dir} is in use by another vcard process (pid {os.getpid()})"
        )
    finally:
        first.close()
    # Released on close.
    with StateStore(state_dir) as again:
        again.open()


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vcard.store import StateStore

    st = StateStore(Path(sys.argv[1]))
    st.open()
    print("locked", flush=True)
    sys.stdin.read()
    st.close()
    """
)


def test_second_process_is_refused_with_its_pid(state_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "locked\n"
        st = StateStore(state_dir)
        with pytest.raises(StateError, match=rf"in use by another vcard process \(pid {child.pid}\)"):
            st.open()
        with pytest.raises(StateError, match="not open"):
            st.save({"schema": 1})
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with StateStore(state_dir) as st:
        assert st.open() is None


def test_leftover_temp_files_are_removed(state_dir: Path) -> None:
    write_state(state_dir, '{"schema": 1, "n": 5}')
    leftover = state_dir / ".state.json.0123456789abcdef.tmp"
    leftover.write_text('{"schema": 1, "n": 4')
    unrelated = state_dir / "notes.tmp"
    unrelated.write_text("keep")
    with StateStore(state_dir) as st:
        assert st.open() == {"schema": 1, "n": 5}
    assert not leftover.exists()
    assert unrelated.exists()


def test_save_leaves_no_temp_file_and_replaces_whole_file(state_dir: Path) -> None:
    with StateStore(state_dir) as st:
        st.open()
        st.save({"schema": 1, "blob": "x" * 10000})
        st.save({"schema": 1})
    assert sorted(p.name for p in state_dir.iterdir()) == ["lock", "state.json"]
    assert json.loads((state_dir / "state.json").read_text()) == {"schema": 2, "counters_seq": 2}


def test_failed_replace_keeps_old_state_and_cleans_up(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateStore(state_dir) as st:
        st.open()
        st.save({"schema": 1, "n": 1})

        def broken_replace(src: object, dst: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(StateError, match="No space left on device") as info:
            st.save({"schema": 1, "n": 0})
        assert str(state_dir / "state.json") in str(info.value)
        assert st.writes == 1
    assert reopen(state_dir) == {"schema": 2, "n": 1}
    assert sorted(p.name for p in state_dir.iterdir()) == ["lock", "state.json"]


def test_non_json_document_is_refused_before_touching_the_file(state_dir: Path) -> None:
    with StateStore(state_dir) as st:
        st.open()
        st.save({"schema": 1, "n": 1})
        with pytest.raises(TypeError):
            st.save({"schema": 1, "key": b"\x01"})
        with pytest.raises(ValueError):
            st.save({"schema": 1, "x": float("nan")})
    assert reopen(state_dir) == {"schema": 2, "n": 1}


def test_ephemeral_store_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    st = StateStore(None)
    assert st.ephemeral and st.path is None
    assert st.open() is None
    document: dict[str, object] = {"schema": 1}
    st.save(document)
    document["x"] = 1
    st.save(document)
    assert st.writes == 2
    st.save(document)
    assert st.writes == 2  # nothing changed, nothing to save
    # Still serialised, so a bad value is caught in tests that use ephemeral cards.
    with pytest.raises(TypeError):
        st.save({"bytes": b""})
    st.close()
    assert list(tmp_path.iterdir()) == []


def test_open_twice_and_save_unopened_are_errors(state_dir: Path) -> None:
    st = StateStore(state_dir)
    with pytest.raises(StateError, match="not open"):
        st.save({"schema": 1})
    st.open()
    try:
        with pytest.raises(StateError, match="already open"):
            st.open()
    finally:
        st.close()
    st.close()  # idempotent


def test_directory_that_is_a_file_is_named(tmp_path: Path) -> None:
    target = tmp_path / "card"
    target.write_text("")
    with pytest.raises(StateError, match=f"{target}: exists and is not a directory"):
        StateStore(target).open()


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_state_dir("piv") == tmp_path / "xdg" / "vcard" / "piv"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")  # the XDG spec says: ignore relative paths
    assert default_state_dir("piv") == tmp_path / "home" / ".local" / "share" / "vcard" / "piv"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_state_dir("gids") == tmp_path / "home" / ".local" / "share" / "vcard" / "gids"
    for bad in ("", "..", "a/b"):
        with pytest.raises(StateError):
            default_state_dir(bad)


def test_card_state_sections_and_commit(state_dir: Path) -> None:
    st = StateStore(state_dir)
    assert st.open() is None
    document = CardState.new_document("piv", state_dir / ".." / "piv.toml")
    card = CardState(st, document, is_new=True)
    assert card.is_new and card.store is st and card.document is document
    piv = card.section("applets", "piv")
    assert piv == {} and document["applets"]["piv"] is piv
    piv["tries"] = 2
    card.section("security")["pins"] = {"1": "00"}
    card.commit()
    assert st.writes == 1
    st.close()
    with StateStore(state_dir) as again:
        loaded = again.open()
    assert loaded == document
    assert loaded is not None and loaded["applets"]["piv"]["tries"] == 2


def test_section_over_non_object_is_an_error() -> None:
    st = StateStore(None)
    st.open()
    card = CardState(st, {"schema": 1, "applets": []}, is_new=False)
    with pytest.raises(StateError, match='"applets" must be a JSON object, got an array'):
        card.section("applets", "piv")


def test_new_document_layout(tmp_path: Path) -> None:
    first = CardState.new_document("piv", tmp_path / "piv.toml")
    second = CardState.new_document("piv", tmp_path / "piv.toml")
    assert first["schema"] == SCHEMA_VERSION
    assert first["vcard"] == __version__
    assert first["profile"] == {"name": "piv", "path": str((tmp_path / "piv.toml").resolve())}
    assert first["security"] == {} and first["applets"] == {}
    serial = first["card"]["serial"]
    assert len(serial) == 32 and bytes.fromhex(serial)
    assert serial != second["card"]["serial"]
    created = first["card"]["created"]
    assert created.endswith("Z")
    from datetime import datetime

    assert datetime.fromisoformat(created).utcoffset() is not None
    json.dumps(first)  # JSON types only


def test_save_syncs_file_before_rename_and_directory_after(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durability order: data on disk, then the rename, then the rename itself on disk."""
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append("replace")
        real_replace(src, dst)

    with StateStore(state_dir) as st:
        st.open()
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        st.save({"schema": 1})
    assert events == ["fsync file", "replace", "fsync dir"]
