"""Persistent card state: one JSON document per card plus a small counters record, written durably.

A real card's EEPROM writes are transactional: a counter decrement either happened
or it did not, whatever the moment the card is pulled. We give the same guarantee
against a crash or `kill -9` of the card process, and against power loss, and size
each durable write to what changed:

- `state.json` holds the whole document (keys, certificates, PIN digests, ...). A
  save that changes anything but the retry counters writes a complete new file
  beside the old one (created exclusively, mode 0600), fsyncs it, renames it over
  `state.json` and fsyncs the directory, so `state.json` is always either the old
  or the new document, never a mix;
- the retry counters (`security.roles.<n>.tries_left`, the only fields a PIN try
  changes) also live in `counters`, a record of a few hundred bytes. A save that
  changes only them overwrites that record in place (one `pwrite` + `fsync`): a
  right PIN costs two small writes, not two rewrites of every key and certificate;
- each save carries a sequence number. `state.json` says which number its counters
  are from (`counters_seq`); the record in `counters` is newer exactly when its
  number is higher, and then its values replace those of `state.json` at load;
- the record starts with a header naming its length and the SHA-256 of header and
  payload: a torn or corrupt record is refused with a message naming the file,
  never read as counters and never overwritten (an in-place write of a few hundred
  bytes is not torn by a process crash; a power loss in the middle of one is
  detected);
- a save returns only once it is durable, so a card that commits a retry-counter
  decrement before answering can never give a PIN try back;
- a document this vcard cannot read (corrupt, or from a newer vcard) is never
  overwritten: the store refuses every save after a failed load;
- one process at a time: an exclusive `flock` on `<dir>/lock` for as long as the
  store is open, so two card processes cannot interleave their writes.

Why a record rewritten in place and not an append-only journal: a journal needs
compaction (a second write path with its own crash windows) and its appends change
the file size, which costs a metadata update on every sync; one record written in
place needs neither, and the sequence numbers keep it ordered against `state.json`.

Schema 1 directories (`state.json` only, no `counters_seq`) still load; the first
save writes the whole document as schema 2, before any counters record exists, so
an older vcard refuses the directory rather than reading stale counters. The
layout is described in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
from pathlib import Path
from typing import Any

from . import __version__
from .errors import StateError as StateError  # raised here; defined where the security core can reach it
from .errors import StateFieldError
from .statefields import json_type, require_field

log = logging.getLogger("vcard.store")

SCHEMA_VERSION = 2
# Schema 1: state.json alone. Read, and rewritten as schema 2 by the first save.
OLDEST_SCHEMA = 1

STATE_FILE = "state.json"
COUNTERS_FILE = "counters"
LOCK_FILE = "lock"
# Temporary files are hidden, unique and recognisable so that a later open can
# sweep the ones a crash left behind (they are never the valid state).
TEMP_PREFIX = ".state.json."
COUNTERS_TEMP_PREFIX = ".counters."
TEMP_SUFFIX = ".tmp"
TEMP_TOKEN_BYTES = 8
_TEMP_NAME = re.compile(
    f"(?:{re.escape(TEMP_PREFIX)}|{re.escape(COUNTERS_TEMP_PREFIX)})"
    f"[0-9a-f]{{{2 * TEMP_TOKEN_BYTES}}}" + re.escape(TEMP_SUFFIX)
)

# The counters record: a header line, the JSON payload, a newline, spaces up to the
# size of the longest record written so far (the record is rewritten in place).
COUNTERS_MAGIC = "vcard-counters"
COUNTERS_FORMAT = 1
_COUNTERS_HEADER = re.compile(
    rb"vcard-counters (?P<format>[0-9]{1,9}) seq=(?P<seq>[0-9]{1,19}) length=(?P<length>[0-9]{1,9})"
    rb" sha256=(?P<digest>[0-9a-f]{64})\n"
)

FILE_MODE = 0o600
DIR_MODE = 0o700

Document = dict[str, Any]


def check_envelope(document: Document) -> None:
    """The fields of the document that the runtime reads (schema is checked at load).

    The sections' contents are checked by their owners (`security` by the security
    core, `applets.<name>` by each applet) when the card opens.
    """
    require_field(document, "vcard", str, "")
    profile = require_field(document, "profile", dict, "")
    require_field(profile, "name", str, "profile")
    require_field(profile, "path", str, "profile")
    card = require_field(document, "card", dict, "")
    require_field(card, "serial", str, "card")
    require_field(card, "created", str, "card")
    require_field(document, "security", dict, "")
    require_field(document, "applets", dict, "")


def default_state_dir(profile_name: str) -> Path:
    """Where a profile's card lives unless the user says otherwise.

    Follows the XDG base directory spec: `$XDG_DATA_HOME/vcard/<name>` when that
    variable holds an absolute path (the spec says relative ones are ignored),
    else `~/.local/share/vcard/<name>`.
    """
    if not profile_name or profile_name in (".", "..") or "/" in profile_name or "\0" in profile_name:
        raise StateError(f"profile name {profile_name!r} cannot be used as a state directory name")
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "vcard" / profile_name


class StateStore:
    """The state directory of one card: lock, load, durable saves sized to what changed.

    `directory=None` makes an ephemeral store (tests, `--ephemeral`): nothing
    touches the disk, `open()` returns None, and `save()` does everything else
    alike: it finds what changed and serialises it (so a non-JSON value is caught
    the same way), and counts the write.

    `writes` counts saves that wrote something (`counter_writes` of them only the
    counters record); `written_bytes` the bytes they wrote.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.writes = 0
        self.counter_writes = 0
        self.written_bytes = 0
        self._lock_fd: int | None = None
        self._opened = False
        # Why the store may not write, set when a load failed: the file on disk
        # holds something we could not read, and overwriting it would lose it.
        self._refusal: str | None = None
        # The document as it is on disk (state.json with the counters record applied),
        # parsed back from what was written; None when the next save must write the
        # whole document (nothing saved yet, a schema 1 state, a failed write).
        self._saved: Document | None = None
        # The highest sequence number on disk (state.json's `counters_seq` or the record's).
        self._seq = 0
        self._counters_fd: int | None = None
        self._counters_size = 0

    @property
    def ephemeral(self) -> bool:
        return self.directory is None

    @property
    def path(self) -> Path | None:
        """The state file (None for an ephemeral store)."""
        return None if self.directory is None else self.directory / STATE_FILE

    @property
    def counters_path(self) -> Path | None:
        """The counters record (None for an ephemeral store)."""
        return None if self.directory is None else self.directory / COUNTERS_FILE

    def describe(self) -> str:
        """How to name this store's state in a message."""
        return "ephemeral state" if self.directory is None else str(self.directory / STATE_FILE)

    # -- open / close --------------------------------------------------------------

    def open(self) -> Document | None:
        """Lock the directory and load the state; None when there is no state yet.

        On any failure the lock is released again and nothing has been written;
        after a failed *load* every later `save()` is refused.
        """
        if self._opened:
            raise StateError(f"{self.describe()}: the store is already open")
        if self.directory is None:
            self._opened = True
            return None
        self._make_directory(self.directory)
        self._lock(self.directory)
        try:
            self._remove_temp_files(self.directory)
            document = self._load(self.directory)
        except BaseException:
            self._close_counters()
            self._unlock()
            raise
        self._opened = True
        return document

    def close(self) -> None:
        """Release the lock (idempotent). The state was already saved by each `save()`."""
        self._close_counters()
        self._unlock()
        self._opened = False
        self._saved = None

    def _close_counters(self) -> None:
        if self._counters_fd is not None:
            os.close(self._counters_fd)
            self._counters_fd = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _make_directory(directory: Path) -> None:
        try:
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            info = directory.stat()
        except FileExistsError:
            raise StateError(f"state directory {directory}: exists and is not a directory") from None
        except OSError as exc:
            raise StateError(f"state directory {directory}: cannot create it: {exc.strerror}") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise StateError(f"state directory {directory}: exists and is not a directory")
        # As ssh does for ~/.ssh: whoever else can change the directory could plant
        # links (`lock -> FILE`) or swap the state under us.
        if info.st_uid != os.geteuid():
            raise StateError(
                f"state directory {directory}: owned by uid {info.st_uid}, not by you (uid {os.geteuid()});"
                " refusing to use it"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StateError(
                f"state directory {directory}: writable by other users (mode {mode:03o});"
                f" refusing to use it (chmod {DIR_MODE:o} it if it is yours)"
            )
        if mode & ~DIR_MODE:
            # The directory also holds private keys' file and the control socket.
            log.warning(
                "state directory %s had mode %03o; setting it to %03o",
                directory,
                stat.S_IMODE(info.st_mode),
                DIR_MODE,
            )
            try:
                directory.chmod(DIR_MODE)
            except OSError as exc:
                log.warning("cannot change the mode of %s: %s", directory, exc.strerror)

    def _lock(self, directory: Path) -> None:
        lock_path = directory / LOCK_FILE
        try:
            # O_NOFOLLOW: a planted `lock -> FILE` must not make us truncate FILE;
            # O_NONBLOCK: a planted FIFO must not hang the open.
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(lock_path, flags, FILE_MODE)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateError(f"{lock_path}: is a symbolic link; refusing to use it") from None
            raise StateError(f"state directory {directory}: cannot open {lock_path}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
            os.close(fd)
            raise StateError(
                f"{lock_path}: not a regular file of yours with a single link; refusing to use it"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            holder = _describe_holder(fd, info) if busy else ""
            os.close(fd)
            if busy:
                raise StateError(f"state directory {directory} is in use by {holder}") from None
            raise StateError(f"state directory {directory}: cannot lock {lock_path}: {exc.strerror}") from exc
        # The pid is only for the message above; the lock itself is the flock.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            log.warning("cannot write the pid into %s: %s", lock_path, exc.strerror)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            # Closing the descriptor releases the flock.
            os.close(self._lock_fd)
            self._lock_fd = None

    @staticmethod
    def _remove_temp_files(directory: Path) -> None:
        """Sweep temp files of saves that a crash interrupted (we hold the lock: nobody is writing).

        Only names `_write` makes, and only regular files of ours: a symbolic link,
        a directory or another user's file with such a name is left alone (unlink
        never follows a link; lstat tells what the name itself is).
        """
        for entry in directory.iterdir():
            if not _TEMP_NAME.fullmatch(entry.name):
                continue
            try:
                info = entry.lstat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StateError(
                    f"{entry}: cannot inspect a leftover temporary file: {exc.strerror}"
                ) from exc
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                log.warning("leaving %s alone: not a regular file of ours", entry)
                continue
            log.info("removing %s left by an interrupted save", entry)
            try:
                entry.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                problem = f"cannot remove a leftover temporary file: {exc.strerror}"
                raise StateError(f"{entry}: {problem}") from exc

    # -- load ----------------------------------------------------------------------

    def _load(self, directory: Path) -> Document | None:
        try:
            document = self._read(directory / STATE_FILE)
            record = self._open_counters(directory / COUNTERS_FILE)
            self._merge(directory, document, record)
        except StateError as exc:
            self._refusal = str(exc)
            self._saved = None
            raise
        self._refusal = None
        return document

    def _merge(
        self, directory: Path, document: Document | None, record: tuple[int, dict[str, int]] | None
    ) -> None:
        """Apply the counters record to the document when it is the newer of the two.

        Sets what the next save compares with (`_saved`) and continues from (`_seq`).
        """
        counters, state = directory / COUNTERS_FILE, directory / STATE_FILE
        self._saved = None
        self._seq = 0
        if document is None:
            if record is not None:
                raise StateError(
                    f"{counters}: a counters record without {STATE_FILE};"
                    " refusing to start a new card over it"
                )
            return
        if document["schema"] < SCHEMA_VERSION:
            if record is not None:
                raise StateError(
                    f"{counters}: a counters record beside a schema {document['schema']} {STATE_FILE},"
                    " which has none; refusing to guess which counters are current"
                )
            return  # the first save rewrites it whole, as schema 2
        seq = document.pop("counters_seq", None)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            problem = "missing" if seq is None else f"must be a non-negative integer, got {json_type(seq)}"
            raise StateError(f"{state}: counters_seq: {problem}")
        self._seq = seq
        if record is not None and record[0] > seq:
            record_seq, values = record
            try:
                security = require_field(document, "security", dict, "")
                roles = require_field(security, "roles", dict, "security")
                for number in values:
                    role = require_field(roles, number, dict, "security.roles")
                    require_field(role, "tries_left", int, f"security.roles.{number}")
            except StateFieldError as error:
                raise StateError(f"{state}: {error}") from None
            found = counter_values(document)
            if found.keys() != values.keys():
                raise StateError(
                    f"{counters}: counters for roles {sorted(values)}, but {STATE_FILE} has"
                    f" security.roles {sorted(found)}; refusing to guess which is current"
                )
            for number, tries in values.items():
                roles[number]["tries_left"] = tries
            self._seq = record_seq
        # A copy to compare with (what json.loads made, json.dumps can write: NaN included).
        self._saved = json.loads(json.dumps(document))

    def _open_counters(self, path: Path) -> tuple[int, dict[str, int]] | None:
        """Open the counters record for reading and later in-place writes; (seq, counters) or None."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateError(f"{path}: is a symbolic link; refusing to use it") from None
            raise StateError(f"{path}: cannot open the counters record: {exc.strerror}") from exc
        self._counters_fd = fd
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
            raise StateError(f"{path}: not a regular file of yours with a single link; refusing to use it")
        mode = stat.S_IMODE(info.st_mode)
        if mode & ~FILE_MODE:
            log.warning("%s had mode %03o; setting it to %03o", path, mode, FILE_MODE)
            os.fchmod(fd, FILE_MODE)
        try:
            data = _read_all(fd, info.st_size)
        except OSError as exc:
            raise StateError(f"{path}: cannot read the counters record: {exc.strerror}") from exc
        self._counters_size = len(data)
        return decode_counters(path, data)

    @staticmethod
    def _read(path: Path) -> Document | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{path}: cannot open the state file: {exc.strerror}") from exc
        # Checked before fdopen: a directory opens read-only but cannot be read as a file.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise StateError(f"{path}: the state file is not a regular file")
        with os.fdopen(fd, "rb") as file:
            mode = stat.S_IMODE(info.st_mode)
            if mode & ~FILE_MODE:
                log.warning("%s had mode %03o; setting it to %03o", path, mode, FILE_MODE)
                os.fchmod(file.fileno(), FILE_MODE)
            try:
                raw = file.read()
            except OSError as exc:
                raise StateError(f"{path}: cannot read the state file: {exc.strerror}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 at byte {exc.start}; the state file is corrupt"
            raise StateError(f"{path}: {problem}") from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(
                f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                "the state file is corrupt"
            ) from exc
        if not isinstance(document, dict):
            raise StateError(f"{path}: the state must be a JSON object, got {json_type(document)}")
        schema = document.get("schema")
        if schema is None:
            raise StateError(f'{path}: the state has no "schema" field')
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise StateError(f'{path}: "schema" must be an integer, got {json_type(schema)}')
        if schema > SCHEMA_VERSION:
            raise StateError(
                f"{path}: written by a newer vcard (schema {schema}); "
                f"this vcard reads schemas {OLDEST_SCHEMA} to {SCHEMA_VERSION}"
            )
        if schema < OLDEST_SCHEMA:
            raise StateError(
                f"{path}: unknown schema {schema};"
                f" this vcard reads schemas {OLDEST_SCHEMA} to {SCHEMA_VERSION}"
            )
        return document

    # -- save ----------------------------------------------------------------------

    def save(self, document: Document) -> None:
        """Make `document` the card state, durably, before returning.

        Only the counters changed since the last save: the counters record is
        rewritten in place. Anything else changed: the whole document is written
        (as schema 2). Nothing changed: nothing is written.
        """
        if self._refusal is not None:
            raise StateError(
                f"{self.describe()}: refusing to save over a state that could not be read ({self._refusal})"
            )
        if not self._opened:
            raise StateError(f"{self.describe()}: the store is not open")
        try:
            values = counter_values(document)
            unchanged = self._unchanged_but_counters(document, values)
            if unchanged is None:
                self._save_document(document)
            elif unchanged:
                self._save_counters(values)
        except BaseException:
            # What is on disk is no longer known for sure: the next save writes everything.
            self._saved = None
            raise

    def _unchanged_but_counters(self, document: Document, values: dict[str, int]) -> bool | None:
        """None: more than the counters changed since the last save; True: only counters; False: nothing.

        Compares with the document as saved (a parsed copy; dict comparison runs in C),
        after giving that copy the new counter values.
        """
        saved = self._saved
        if saved is None:
            return None
        before = counter_values(saved)
        if before.keys() != values.keys():
            return None
        changed = before != values
        if changed:
            roles = saved["security"]["roles"]
            for number, tries in values.items():
                roles[number]["tries_left"] = tries
        if saved != document:
            return None
        return changed

    def _save_document(self, document: Document) -> None:
        document["schema"] = SCHEMA_VERSION
        seq = self._seq + 1
        text = _encode_document({**document, "counters_seq": seq})
        data = text.encode("utf-8")
        if self.directory is not None:
            self._write(self.directory, data)
        self._seq = seq
        saved = json.loads(text)
        del saved["counters_seq"]
        self._saved = saved
        self.writes += 1
        self.written_bytes += len(data)

    def _save_counters(self, values: dict[str, int]) -> None:
        seq = self._seq + 1
        data = encode_counters(seq, values)
        if self.directory is not None:
            data = self._write_counters(self.directory, data)
        self._seq = seq
        self.writes += 1
        self.counter_writes += 1
        self.written_bytes += len(data)

    def _write_counters(self, directory: Path, data: bytes) -> bytes:
        """The record in place (one pwrite + fsync), or created the first time; the bytes written.

        A shorter record than the last one is padded with spaces to its size, so no
        stale bytes follow it.
        """
        if self._counters_fd is None:
            self._counters_fd = self._create_counters(directory, data)
            self._counters_size = len(data)
            return data
        padded = data.ljust(self._counters_size, b" ")
        try:
            view = memoryview(padded)
            offset = 0
            while offset < len(view):
                offset += os.pwrite(self._counters_fd, view[offset:], offset)
            os.fsync(self._counters_fd)
        except OSError as exc:
            problem = f"cannot save the counters: {exc.strerror}"
            raise StateError(f"{directory / COUNTERS_FILE}: {problem}") from exc
        self._counters_size = len(padded)
        return padded

    @staticmethod
    def _create_counters(directory: Path, data: bytes) -> int:
        """The first counters record; its descriptor stays open for the in-place rewrites."""
        return _replace_durably(directory, COUNTERS_FILE, COUNTERS_TEMP_PREFIX, data, "counters")

    @staticmethod
    def _write(directory: Path, data: bytes) -> None:
        os.close(_replace_durably(directory, STATE_FILE, TEMP_PREFIX, data, "state"))


def _replace_durably(directory: Path, name: str, temp_prefix: str, data: bytes, what: str) -> int:
    """Put `data` in `directory/name` so that a crash leaves the old file or the new one, never a mix.

    Written beside under a random name, synced, renamed over `name`, then the directory synced (the
    rename is durable only once the directory entry is). Returns the new file's open descriptor.
    """
    target = directory / name
    temp = directory / f"{temp_prefix}{secrets.token_hex(TEMP_TOKEN_BYTES)}{TEMP_SUFFIX}"
    try:
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise StateError(f"{target}: cannot create {temp.name}: {exc.strerror}") from exc
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StateError(f"{target}: cannot save the {what}: {exc.strerror}") from exc
        try:
            _sync_directory(directory)
        except OSError as exc:
            raise StateError(f"{target}: saved, but cannot sync {directory}: {exc.strerror}") from exc
    except StateError:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size - offset, 4096), offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _sync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# No `indent`: json then uses its C encoder. Made once: json.dumps with options builds
# a new encoder on every call.
_dumps = json.JSONEncoder(sort_keys=True, allow_nan=False).encode
_dumps_compact = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def _encode_document(document: Document) -> str:
    """Sorted JSON with one line per top-level field and per second-level field (applets, roles...).

    Each line is encoded by the C encoder; readable enough to look at with `less`.
    """
    if not all(isinstance(key, str) for key in document):
        return _dumps(document) + "\n"
    lines: list[str] = []
    for key in sorted(document):
        value = document[key]
        if isinstance(value, dict) and value and all(isinstance(inner, str) for inner in value):
            fields = ",\n".join(f"  {_dumps(inner)}: {_dumps(value[inner])}" for inner in sorted(value))
            lines.append(f" {_dumps(key)}: {{\n{fields}\n }}")
        else:
            lines.append(f" {_dumps(key)}: {_dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def counter_values(document: Document) -> dict[str, int]:
    """The retry counters of a document: `security.roles.<n>.tries_left` by role number.

    These are the fields a PIN try changes (vcard.security.core), written to the
    counters record when nothing else changed. Only integers count: anything else
    there is no counter (the security core refuses it at load) and goes to state.json.
    """
    security = document.get("security")
    roles = security.get("roles") if isinstance(security, dict) else None
    if not isinstance(roles, dict):
        return {}
    return {
        number: record["tries_left"]
        for number, record in roles.items()
        if isinstance(number, str)
        and isinstance(record, dict)
        and isinstance(record.get("tries_left"), int)
        and not isinstance(record["tries_left"], bool)
    }


def encode_counters(seq: int, values: dict[str, int]) -> bytes:
    """The counters record: header (format, sequence, payload length, SHA-256), payload, newline."""
    payload = _counters_payload(tuple(values.items()))
    head = f"{COUNTERS_MAGIC} {COUNTERS_FORMAT} seq={seq} length={len(payload)}".encode("ascii")
    digest = hashlib.sha256(head + b"\n" + payload).hexdigest()
    return head + f" sha256={digest}\n".encode("ascii") + payload + b"\n"


@functools.lru_cache(maxsize=32)
def _counters_payload(items: tuple[tuple[str, int], ...]) -> bytes:
    # Cached: a card's counters take few distinct values (3, 2, 3, ...), and this runs
    # between a PIN try and its comparison.
    roles = {number: {"tries_left": tries} for number, tries in items}
    return _dumps_compact({"security": {"roles": roles}}).encode("ascii")


def decode_counters(path: Path, data: bytes) -> tuple[int, dict[str, int]]:
    """(sequence, counters by role number) of a record; StateError naming the problem otherwise.

    A record whose length or checksum does not hold was torn by an interrupted
    write or damaged since: it is refused, never read and never rewritten.
    """
    torn = "torn by an interrupted write or corrupt; refusing to use it (the tries left are unknown)"
    header = _COUNTERS_HEADER.match(data)
    if header is None:
        if not data.startswith(COUNTERS_MAGIC.encode("ascii")):
            raise StateError(f"{path}: not a vcard counters record; {torn}")
        raise StateError(f"{path}: the header line is unreadable; {torn}")
    version = int(header["format"])
    if version != COUNTERS_FORMAT:
        problem = f"counters record format {version}; this vcard reads format {COUNTERS_FORMAT}"
        raise StateError(f"{path}: {problem}")
    length = int(header["length"])
    start = header.end()
    payload = data[start : start + length]
    if len(payload) < length:
        raise StateError(f"{path}: the record is {len(payload)} of its {length} bytes long; {torn}")
    head = data[: header.start("digest") - len(b" sha256=")]
    digest = hashlib.sha256(head + b"\n" + payload).hexdigest()
    if digest.encode("ascii") != header["digest"]:
        raise StateError(f"{path}: the SHA-256 of the record does not match its header; {torn}")
    rest = data[start + length :]
    if rest.strip(b" \n"):
        raise StateError(f"{path}: unexpected bytes after the record; {torn}")
    try:
        document = json.loads(payload)
        roles = document["security"]["roles"]
        values = {number: record["tries_left"] for number, record in roles.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        raise StateError(f"{path}: the record's payload is not a counters object") from None
    for number, tries in values.items():
        if not isinstance(tries, int) or isinstance(tries, bool) or tries < 0:
            raise StateError(f"{path}: security.roles.{number}.tries_left must be a non-negative integer")
    return int(header["seq"]), values


def _describe_holder(fd: int, info: os.stat_result) -> str:
    """Who holds the flock on the lock file `fd`, as far as can be known.

    The pid in the file is only the last vcard that locked it; the holder may be
    another program. /proc/locks names the process holding a FLOCK on this inode;
    when it is the pid written in the file, it is a vcard.
    """
    holder = _flock_holder(info)
    if holder is None:
        return "another process"
    if _read_pid(fd) == str(holder):
        return f"another vcard process (pid {holder})"
    return f"another process (pid {holder})"


def _flock_holder(info: os.stat_result) -> int | None:
    """The pid /proc/locks gives for the FLOCK held on this file, None if unknown."""
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have "->" after the id.
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        device = fields[5].split(":")
        try:
            key = (int(device[0], 16), int(device[1], 16), int(device[2]))
            pid = int(fields[4])
        except (IndexError, ValueError):
            continue
        if key == wanted and pid > 0:
            return pid
    return None


def _read_pid(fd: int) -> str:
    """The pid the last vcard to lock the file wrote, or 'unknown'."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


class CardState:
    """The loaded state document of one card and the way to make changes durable.

    The runtime hands `section("security")` to the security core and
    `section("applets", name)` to each applet; they mutate their dicts in place
    and call `commit()`, which saves the whole document.
    """

    def __init__(self, store: StateStore, document: Document, is_new: bool) -> None:
        self.store = store
        self.document = document
        self.is_new = is_new
        # Two threads (the card and the control server) may commit at once;
        # each save must see one consistent document.
        self._commit_lock = threading.Lock()

    def section(self, *path: str) -> dict[str, Any]:
        """The nested dict at `path`, created empty if missing (not saved until commit)."""
        if not path:
            raise ValueError("section() needs at least one key")
        node = self.document
        for depth, key in enumerate(path):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                problem = f"must be a JSON object, got {json_type(child)}"
                raise StateError(f'{self.store.describe()}: "{where}" {problem}')
            node = child
        return node

    def commit(self) -> None:
        """Save the whole document durably; returns only once it is on disk."""
        with self._commit_lock:
            self.store.save(self.document)

    @classmethod
    def new_document(cls, profile_name: str, profile_path: Path | str) -> Document:
        """A fresh card made from a profile: a new random serial and empty sections."""
        created = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        return {
            "schema": SCHEMA_VERSION,
            "vcard": __version__,
            "profile": {"name": profile_name, "path": str(Path(profile_path).resolve())},
            "card": {
                "serial": secrets.token_hex(16),
                "created": created.isoformat().replace("+00:00", "Z"),
            },
            "security": {},
            "applets": {},
        }
