"""The counters record: a PIN try costs one small in-place write, never a rewrite of the whole state.

And the guarantees of the whole-document path still hold for it: durable before
the save returns, a torn or corrupt record refused (named) and never rewritten,
0600 files, no symbolic link followed, old (schema 1) directories still loading.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.store import (
    COUNTERS_FILE,
    SCHEMA_VERSION,
    STATE_FILE,
    StateError,
    StateStore,
    decode_counters,
    encode_counters,
)

SELECT = bytes.fromhex("00A4040005A000000308")
VERIFY_RIGHT = bytes.fromhex("0020008008") + b"123456\xff\xff"
VERIFY_WRONG = bytes.fromhex("0020008008") + b"999999\xff\xff"
VERIFY_STATUS = bytes.fromhex("00200080")
BIG = "k" * 20000  # stands for keys and certificates


def card_document(tries: int = 3, big: str = BIG) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "security": {"format": 1, "roles": {"1": {"retries": 3, "tries_left": tries, "secret": "s"}}},
        "applets": {"piv": {"keys": big}},
    }


def reopen(directory: Path) -> Any:
    with StateStore(directory) as store:
        return store.open()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        path.name: (path.read_bytes(), path.stat().st_ino)
        for path in sorted(directory.iterdir())
        if path.name != "lock"
    }


def test_a_counter_change_rewrites_only_the_small_record(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    store = StateStore(directory)
    store.open()
    document = card_document()
    store.save(document)
    state = directory / STATE_FILE
    before = (state.read_bytes(), state.stat().st_ino)
    written = store.written_bytes
    document["security"]["roles"]["1"]["tries_left"] = 2
    store.save(document)
    document["security"]["roles"]["1"]["tries_left"] = 3
    store.save(document)
    assert store.counter_writes == 2
    assert store.written_bytes - written < 2 * 512  # two small records, not 2 x 20 kB
    assert (state.read_bytes(), state.stat().st_ino) == before  # state.json not rewritten
    document["security"]["roles"]["1"]["tries_left"] = 1
    store.save(document)
    store.close()
    assert reopen(directory)["security"]["roles"]["1"]["tries_left"] == 1
    assert stat.S_IMODE((directory / COUNTERS_FILE).stat().st_mode) == 0o600


def test_any_other_change_writes_the_whole_document_and_outranks_an_older_record(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    with StateStore(directory) as store:
        store.open()
        document = card_document()
        store.save(document)
        document["security"]["roles"]["1"]["tries_left"] = 2
        store.save(document)  # counters record, seq 2
        # A PIN change: new secret and counter in one save -> state.json (seq 3).
        document["security"]["roles"]["1"].update(secret="new", tries_left=3)
        store.save(document)
        assert store.counter_writes == 1 and store.writes == 3
    on_disk = json.loads((directory / STATE_FILE).read_text())
    assert on_disk["counters_seq"] == 3
    assert decode_counters(directory / COUNTERS_FILE, (directory / COUNTERS_FILE).read_bytes())[0] == 2
    loaded = reopen(directory)
    assert loaded["security"]["roles"]["1"] == {"retries": 3, "tries_left": 3, "secret": "new"}


def test_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    with StateStore(tmp_path / "card") as store:
        store.open()
        document = card_document()
        store.save(document)
        store.save(document)
        assert store.writes == 1


def test_a_shorter_record_is_padded_and_reads_back(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    with StateStore(directory) as store:
        store.open()
        document = card_document(tries=12)
        document["security"]["roles"]["1"]["retries"] = 15
        store.save(document)
        for tries in (11, 10, 9):  # 2 digits, then 1: the record gets shorter
            document["security"]["roles"]["1"]["tries_left"] = tries
            store.save(document)
    raw = (directory / COUNTERS_FILE).read_bytes()
    assert raw.endswith(b"\n ")  # the shorter record, then spaces over the old tail
    assert reopen(directory)["security"]["roles"]["1"]["tries_left"] == 9


def make_record(tmp_path: Path) -> Path:
    directory = tmp_path / "card"
    with StateStore(directory) as store:
        store.open()
        document = card_document()
        store.save(document)
        document["security"]["roles"]["1"]["tries_left"] = 1
        store.save(document)
    return directory


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda raw: raw[:-20], "of its"),  # cut short: length
        (lambda raw: raw.replace(b'"tries_left":1', b'"tries_left":3'), "SHA-256"),  # a try given back
        (lambda raw: raw.replace(b"seq=2", b"seq=9"), "SHA-256"),
        (lambda raw: raw[:40], "header line is unreadable"),
        (lambda raw: b"", "not a vcard counters record"),
        (lambda raw: raw.rstrip() + b"\ngarbage\n", "unexpected bytes after the record"),
    ],
)
def test_a_torn_or_corrupt_record_is_refused_named_and_left_alone(
    tmp_path: Path, damage: Any, problem: str
) -> None:
    directory = make_record(tmp_path)
    path = directory / COUNTERS_FILE
    path.write_bytes(damage(path.read_bytes()))
    before = snapshot(directory)
    store = StateStore(directory)
    with pytest.raises(StateError) as info:
        store.open()
    assert str(path) in str(info.value)
    assert problem in str(info.value)
    with pytest.raises(StateError, match="refusing to save over a state that could not be read"):
        store.save(card_document())
    assert snapshot(directory) == before


def test_a_torn_record_is_refused_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vcard.cli import main

    state = tmp_path / "piv"
    virtual = VirtualCard.open(load_profile("piv"), state)
    virtual.card.power_on()
    virtual.card.transmit(SELECT)
    virtual.card.transmit(VERIFY_WRONG)
    virtual.close()
    path = state / COUNTERS_FILE
    path.write_bytes(path.read_bytes()[:-40])
    before = snapshot(state)
    result = CliRunner().invoke(
        main, ["info", "--profile", "piv", "--state", str(state)], catch_exceptions=False
    )
    assert result.exit_code != 0
    assert f"{path}: " in result.output and "torn" in result.output
    assert "Traceback" not in result.output
    assert snapshot(state) == before


def test_a_symlinked_record_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    directory = make_record(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_bytes((directory / COUNTERS_FILE).read_bytes())
    (directory / COUNTERS_FILE).unlink()
    (directory / COUNTERS_FILE).symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"):
        StateStore(directory).open()
    assert target.read_bytes().startswith(b"vcard-counters 1 seq=2 ")


def test_a_record_without_state_json_is_refused(tmp_path: Path) -> None:
    directory = make_record(tmp_path)
    (directory / STATE_FILE).unlink()
    with pytest.raises(StateError, match=r"a counters record without state\.json"):
        StateStore(directory).open()
    assert (directory / COUNTERS_FILE).exists()


def test_a_record_for_other_roles_is_refused(tmp_path: Path) -> None:
    directory = make_record(tmp_path)
    (directory / COUNTERS_FILE).write_bytes(encode_counters(5, {"1": 1, "2": 3}))
    with pytest.raises(StateError, match=r"state\.json: security\.roles\.2: missing"):
        StateStore(directory).open()
    (directory / COUNTERS_FILE).write_bytes(encode_counters(5, {}))
    with pytest.raises(
        StateError, match=r"counters for roles \[\], but state\.json has security\.roles \['1'\]"
    ):
        StateStore(directory).open()


def test_schema_1_directory_loads_and_is_migrated_whole_on_the_first_save(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    directory.mkdir(mode=0o700)
    old = card_document()
    old["schema"] = 1
    (directory / STATE_FILE).write_text(json.dumps(old, sort_keys=True, indent=1) + "\n")
    with StateStore(directory) as store:
        document = store.open()
        assert document == old
        # The first save is a try: it still goes to state.json (as schema 2), before any
        # record exists, so an older vcard refuses the directory instead of using stale counters.
        document["security"]["roles"]["1"]["tries_left"] = 2
        store.save(document)
        assert store.counter_writes == 0
        assert not (directory / COUNTERS_FILE).exists()
        document["security"]["roles"]["1"]["tries_left"] = 3
        store.save(document)
        assert store.counter_writes == 1
    on_disk = json.loads((directory / STATE_FILE).read_text())
    assert on_disk["schema"] == 2 and on_disk["security"]["roles"]["1"]["tries_left"] == 2
    assert reopen(directory)["security"]["roles"]["1"]["tries_left"] == 3


def test_schema_1_state_beside_a_record_is_refused(tmp_path: Path) -> None:
    directory = make_record(tmp_path)
    old = card_document()
    old["schema"] = 1
    (directory / STATE_FILE).write_text(json.dumps(old))
    with pytest.raises(StateError, match=r"beside a schema 1 state\.json"):
        StateStore(directory).open()


def test_a_failed_record_write_makes_the_next_save_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = make_record(tmp_path)
    store = StateStore(directory)
    document = store.open()
    document["security"]["roles"]["1"]["tries_left"] = 0
    real_fsync = os.fsync

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StateError, match=f"{directory / COUNTERS_FILE}: cannot save the counters"):
        store.save(document)
    monkeypatch.setattr(os, "fsync", real_fsync)
    # Whatever reached the disk, the next save writes everything again, under a higher number.
    store.save(document)
    assert store.counter_writes == 0 and store.writes == 1
    store.close()
    assert reopen(directory)["security"]["roles"]["1"]["tries_left"] == 0


def test_record_sync_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Created: synced, renamed in, directory synced. Then rewritten in place and synced."""
    events: list[str] = []
    real_fsync, real_replace, real_pwrite = os.fsync, os.replace, os.pwrite

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        events.append("pwrite")
        return real_pwrite(fd, data, offset)

    with StateStore(tmp_path / "card") as store:
        store.open()
        document = card_document()
        store.save(document)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "pwrite", pwrite)
        document["security"]["roles"]["1"]["tries_left"] = 2
        store.save(document)
        document["security"]["roles"]["1"]["tries_left"] = 3
        store.save(document)
    assert events == ["fsync file", "replace counters", "fsync dir", "pwrite", "fsync file"]


def test_a_right_pin_on_a_card_costs_two_small_writes_and_survives_a_reopen(tmp_path: Path) -> None:
    state = tmp_path / "piv"
    virtual = VirtualCard.open(load_profile("piv"), state)
    try:
        card, store = virtual.card, virtual.state.store
        card.power_on()
        card.transmit(SELECT)
        assert card.transmit(VERIFY_WRONG)[-2:] == b"\x63\xc2"
        writes, counters = store.writes, store.counter_writes
        assert card.transmit(VERIFY_RIGHT)[-2:] == b"\x90\x00"
        assert (store.writes - writes, store.counter_writes - counters) == (2, 2)
        assert card.transmit(VERIFY_WRONG)[-2:] == b"\x63\xc2"
        assert card.transmit(VERIFY_WRONG)[-2:] == b"\x63\xc1"
    finally:
        virtual.close()
    virtual = VirtualCard.open(load_profile("piv"), state)
    try:
        virtual.card.power_on()
        virtual.card.transmit(SELECT)
        assert virtual.card.transmit(VERIFY_STATUS)[-2:] == b"\x63\xc1"
    finally:
        virtual.close()


def test_a_hard_linked_record_is_refused(tmp_path: Path) -> None:
    directory = make_record(tmp_path)
    os.link(directory / COUNTERS_FILE, tmp_path / "other-name")
    with pytest.raises(StateError, match="not a regular file of yours with a single link"):
        StateStore(directory).open()


def test_a_wide_record_is_narrowed_to_0600(tmp_path: Path) -> None:
    directory = make_record(tmp_path)
    (directory / COUNTERS_FILE).chmod(0o644)
    assert reopen(directory)["security"]["roles"]["1"]["tries_left"] == 1
    assert stat.S_IMODE((directory / COUNTERS_FILE).stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("profile", "select", "wrong"),
    [
        ("piv", SELECT, VERIFY_WRONG),
        ("gids", bytes.fromhex("00A4040009A0000003974254465900"), bytes.fromhex("0020008006") + b"999999"),
    ],
)
def test_a_card_written_by_the_schema_1_store_opens_keeps_its_tries_and_is_migrated(
    tmp_path: Path, profile: str, select: bytes, wrong: bytes
) -> None:
    state = tmp_path / profile
    virtual = VirtualCard.open(load_profile(profile), state)
    virtual.card.power_on()
    virtual.card.transmit(select)
    assert virtual.card.transmit(wrong)[-2:] == b"\x63\xc2"
    virtual.close()
    # What the schema 1 store wrote: the whole document, counters included, pretty-printed.
    document = reopen(state)
    document["schema"] = 1
    (state / STATE_FILE).write_text(json.dumps(document, sort_keys=True, indent=1) + "\n")
    (state / COUNTERS_FILE).unlink()
    virtual = VirtualCard.open(load_profile(profile), state)
    try:
        virtual.card.power_on()
        virtual.card.transmit(select)
        assert virtual.card.transmit(VERIFY_STATUS)[-2:] == b"\x63\xc2"
        assert virtual.card.transmit(wrong)[-2:] == b"\x63\xc1"
    finally:
        virtual.close()
    assert json.loads((state / STATE_FILE).read_text())["schema"] == SCHEMA_VERSION
    virtual = VirtualCard.open(load_profile(profile), state)
    try:
        virtual.card.power_on()
        virtual.card.transmit(select)
        assert virtual.card.transmit(VERIFY_STATUS)[-2:] == b"\x63\xc1"
    finally:
        virtual.close()


def test_only_integer_counters_go_to_the_record(tmp_path: Path) -> None:
    with StateStore(tmp_path / "card") as store:
        store.open()
        document = card_document()
        document["security"]["roles"]["1"]["tries_left"] = "3"  # no counter: the owner refuses it at load
        store.save(document)
        document["security"]["roles"]["1"]["tries_left"] = "2"
        store.save(document)
        assert store.counter_writes == 0 and store.writes == 2
