"""Persistent card state: one JSON document per card, written atomically and durably.

A real card's EEPROM writes are transactional: a counter decrement either happened
or it did not, whatever the moment the card is pulled. We give the same guarantee
against a crash or `kill -9` of the card process, and against power loss:

- every save writes a complete new file beside the old one (created exclusively,
  mode 0600), fsyncs it, renames it over `state.json` and fsyncs the directory,
  so `state.json` is always either the old or the new document, never a mix;
- a save returns only once the new document is durable, so a card that commits a
  retry-counter decrement before answering can never give a PIN try back;
- a document this vcard cannot read (corrupt, or from a newer vcard) is never
  overwritten: the store refuses every save after a failed load;
- one process at a time: an exclusive `flock` on `<dir>/lock` for as long as the
  store is open, so two card processes cannot interleave their writes.

The document layout (schema 1) is described in docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
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
from .statefields import json_type, require_field

log = logging.getLogger("vcard.store")

SCHEMA_VERSION = 1

STATE_FILE = "state.json"
LOCK_FILE = "lock"
# Temporary files are hidden, unique and recognisable so that a later open can
# sweep the ones a crash left behind (they are never the valid state).
TEMP_PREFIX = ".state.json."
TEMP_SUFFIX = ".tmp"
TEMP_TOKEN_BYTES = 8
_TEMP_NAME = re.compile(
    re.escape(TEMP_PREFIX) + f"[0-9a-f]{{{2 * TEMP_TOKEN_BYTES}}}" + re.escape(TEMP_SUFFIX)
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
    """The state directory of one card: lock, load, atomic save.

    `directory=None` makes an ephemeral store (tests, `--ephemeral`): nothing
    touches the disk, `open()` returns None, and `save()` still serialises the
    document (so a non-JSON value is caught the same way) and counts the write.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.writes = 0
        self._lock_fd: int | None = None
        self._opened = False
        # Why the store may not write, set when a load failed: the file on disk
        # holds something we could not read, and overwriting it would lose it.
        self._refusal: str | None = None

    @property
    def ephemeral(self) -> bool:
        return self.directory is None

    @property
    def path(self) -> Path | None:
        """The state file (None for an ephemeral store)."""
        return None if self.directory is None else self.directory / STATE_FILE

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
            document = self._load(self.directory / STATE_FILE)
        except BaseException:
            self._unlock()
            raise
        self._opened = True
        return document

    def close(self) -> None:
        """Release the lock (idempotent). The state was already saved by each `save()`."""
        self._unlock()
        self._opened = False

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

    def _load(self, path: Path) -> Document | None:
        try:
            document = self._read(path)
        except StateError as exc:
            self._refusal = str(exc)
            raise
        self._refusal = None
        return document

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
                f"this vcard reads schema {SCHEMA_VERSION}"
            )
        if schema < 1:
            raise StateError(f"{path}: unknown schema {schema}; this vcard reads schema {SCHEMA_VERSION}")
        return document

    # -- save ----------------------------------------------------------------------

    def save(self, document: Document) -> None:
        """Make `document` the card state, atomically and durably, before returning."""
        if self._refusal is not None:
            raise StateError(
                f"{self.describe()}: refusing to save over a state that could not be read ({self._refusal})"
            )
        if not self._opened:
            raise StateError(f"{self.describe()}: the store is not open")
        data = (json.dumps(document, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8")
        if self.directory is not None:
            self._write(self.directory, data)
        self.writes += 1

    @staticmethod
    def _write(directory: Path, data: bytes) -> None:
        target = directory / STATE_FILE
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(TEMP_TOKEN_BYTES)}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise StateError(f"{target}: cannot create {temp.name}: {exc.strerror}") from exc
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StateError(f"{target}: cannot save the state: {exc.strerror}") from exc
        # The rename is durable only once the directory entry is.
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StateError(f"{target}: saved, but cannot sync {directory}: {exc.strerror}") from exc


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
