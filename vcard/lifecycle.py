"""Everyday commands for cards that run or sleep: list, stop, remove, insert, reset, readers.

A running `vcard run` registers each of its cards in a per-user runtime directory
(`$XDG_RUNTIME_DIR/vcard`, else `/tmp/vcard-<uid>`, 0700) as one small JSON file:
pid, profile, state directory or "ephemeral", reader, vpcd port and control socket.
The commands find cards there and talk to them through their control sockets, so
an ephemeral card (whose control socket lives in a temporary directory) is as
reachable as one with a state directory. A registration whose process is gone is
ignored and removed.

Control requests (JSON lines on the card's control.sock, see vcard.control):
`ping`, `info`, `remove`, `insert`, `stop`, and `pinpad` (vcard.pinpad).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from .control import ControlError, control_request
from .store import STATE_FILE, StateError, StateStore, default_state_dir


@dataclass(frozen=True)
class RunningCard:
    """One card of a running `vcard run`."""

    pid: int
    profile: str
    state: str  # a directory, or "ephemeral"
    reader: str
    port: int
    control: str

    @property
    def ephemeral(self) -> bool:
        return self.state == "ephemeral"


def runtime_dir() -> Path:
    """The per-user directory of running-card registrations."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isabs(base):
        return Path(base) / "vcard"
    return Path(f"/tmp/vcard-{os.getuid()}")


def _private_dir(path: Path) -> Path:
    """Create `path` 0700, and refuse one another user owns or others may write to."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise StateError(f"{path}: not a private directory of this user; remove it or set XDG_RUNTIME_DIR")
    return path


def register(card: RunningCard) -> Path:
    """Record a running card; the caller removes the file when the card stops."""
    directory = _private_dir(runtime_dir())
    path = directory / f"card-{card.pid}-{card.port}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(card), handle)
    return path


def _alive(pid: int) -> bool:
    """Whether `pid` runs (an exited process its parent has not reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def running_cards() -> list[RunningCard]:
    """Cards of this user's running `vcard run` processes (stale registrations are removed)."""
    directory = runtime_dir()
    cards: list[RunningCard] = []
    if not directory.is_dir():
        return cards
    for path in sorted(directory.glob("card-*.json")):
        try:
            card = RunningCard(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue  # a registration being written, or not ours to interpret
        if not _alive(card.pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        cards.append(card)
    return sorted(cards, key=lambda card: (card.port, card.pid))


def known_state_dirs() -> list[Path]:
    """State directories under the default location ($XDG_DATA_HOME/vcard/*)."""
    root = default_state_dir("x").parent
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if (path / STATE_FILE).is_file())


def select_cards(reader: str | None, state: Path | None, every: bool) -> list[RunningCard]:
    """The running cards a command names; a click error when none (or no choice) is given."""
    if sum((reader is not None, state is not None, every)) != 1:
        raise click.UsageError("name the card with exactly one of --reader NAME, --state DIR or --all")
    cards = running_cards()
    if reader is not None:
        chosen = [card for card in cards if card.reader == reader]
        what = f"reader {reader!r}"
    elif state is not None:
        wanted = os.path.realpath(state)
        chosen = [card for card in cards if not card.ephemeral and os.path.realpath(card.state) == wanted]
        what = f"state {state}"
    else:
        chosen = cards
        what = "this user"
    if not chosen:
        readers = ", ".join(card.reader for card in cards) or "none"
        raise click.ClickException(f"no running card for {what} (running cards are in: {readers})")
    return chosen


def _send(card: RunningCard, command: str) -> dict[str, Any]:
    try:
        return control_request(Path(card.control), {"command": command}, timeout=10.0)
    except ControlError as error:
        raise click.ClickException(f"{card.reader}: {error}") from None


def card_info(reader: str) -> dict[str, Any]:
    """`vcard info --reader NAME`: the running card's summary, ephemeral cards included."""
    (card,) = select_cards(reader, None, False)[:1]
    reply = _send(card, "info")
    summary: dict[str, Any] = reply.get("info", {})
    return summary


def reset_state(directory: Path, profile: str | None, load: Any, open_card: Any) -> str:
    """Replace the card state in `directory` by its profile's initial state.

    The directory is locked for the whole operation, so a running card makes it
    fail instead of being overwritten under it. The profile is `profile`, or the one
    the state records; the new state is written atomically like every save.
    """
    store = StateStore(directory)
    document = store.open()  # takes the lock; StateError if a card runs on it
    try:
        if document is None:
            raise StateError(f"{directory}/{STATE_FILE}: no card state here to reset")
        recorded = document.get("profile", {}) if isinstance(document, dict) else {}
        name = profile or recorded.get("path") or recorded.get("name")
        if not isinstance(name, str) or not name:
            raise StateError(f"{directory}/{STATE_FILE}: profile: missing; give --profile")
        loaded = load(name)
        fresh = open_card(loaded, None, ephemeral=True)
        try:
            store.save(fresh.state.document)
        finally:
            fresh.close()
        return str(loaded.name)
    finally:
        store.close()


# ---- commands ---------------------------------------------------------------------------------

reader_option = click.option("--reader", "-r", metavar="NAME", help="The card in this PC/SC reader.")
state_dir_option = click.option(
    "--state", type=click.Path(file_okay=False, path_type=Path), help="The card running on this state."
)
all_option = click.option("--all", "every", is_flag=True, help="Every running card of this user.")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cards(as_json: bool) -> None:
    """Running cards (pid, profile, state, reader, port) and known state directories."""
    cards = running_cards()
    running_states = {os.path.realpath(card.state) for card in cards if not card.ephemeral}
    states = [
        {"state": str(path), "running": os.path.realpath(path) in running_states}
        for path in known_state_dirs()
    ]
    if as_json:
        click.echo(json.dumps({"running": [asdict(card) for card in cards], "states": states}, indent=2))
        return
    if cards:
        click.echo(f"{'PID':>7}  {'PROFILE':<12} {'READER':<20} {'PORT':>5}  STATE")
        for card in cards:
            click.echo(f"{card.pid:>7}  {card.profile:<12} {card.reader:<20} {card.port:>5}  {card.state}")
    else:
        click.echo("no running cards")
    if states:
        click.echo("state directories:")
        for entry in states:
            click.echo(f"  {entry['state']}{'  (running)' if entry['running'] else ''}")


STOP_TIMEOUT = 10.0


def _each(command: str, reader: str | None, state: Path | None, every: bool, verb: str) -> None:
    for card in select_cards(reader, state, every):
        if command == "stop":
            _stop(card)
        else:
            _send(card, command)
        click.echo(f"{verb} {card.profile} card in {card.reader} (pid {card.pid})")


def _stop(card: RunningCard) -> None:
    """Ask the card's process to stop and wait until it has (it may close the socket before answering)."""
    try:
        control_request(Path(card.control), {"command": "stop"}, timeout=STOP_TIMEOUT)
    except ControlError as error:
        if _alive(card.pid) and "without answering" not in str(error):
            raise click.ClickException(f"{card.reader}: {error}") from None
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(card.pid):
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"{card.reader}: pid {card.pid} did not stop within {STOP_TIMEOUT:g} s"
            )
        time.sleep(0.05)


@click.command()
@reader_option
@state_dir_option
@all_option
def stop(reader: str | None, state: Path | None, every: bool) -> None:
    """Stop running cards: they leave their readers and their `vcard run` ends."""
    _each("stop", reader, state, every, "stopped")


@click.command()
@reader_option
@state_dir_option
@all_option
def remove(reader: str | None, state: Path | None, every: bool) -> None:
    """Take running cards out of their readers (they keep running; `vcard insert` puts them back)."""
    _each("remove", reader, state, every, "removed")


@click.command()
@reader_option
@state_dir_option
@all_option
def insert(reader: str | None, state: Path | None, every: bool) -> None:
    """Put removed cards back into their readers."""
    _each("insert", reader, state, every, "inserted")


@click.command()
@click.option("--slots", type=click.IntRange(1, 16), help="Make pcscd serve this many vpcd readers (root).")
@click.option(
    "--conf-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="reader.conf.d directory (default /etc/reader.conf.d).",
)
@click.option(
    "--library-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the driver copies go (default /usr/local/lib/vcard/pcsc).",
)
@click.option("--no-restart", is_flag=True, help="Write the configuration but do not restart pcscd.")
def readers(slots: int | None, conf_dir: Path | None, library_dir: Path | None, no_restart: bool) -> None:
    """List the vpcd readers pcscd serves, or change their number with --slots N.

    vpcd gives two readers; each further pair is a reader.conf.d stanza with its own
    copy of the driver library. pcscd serves at most 16 readers.
    """
    from .transport import readers as conf

    directory = conf_dir or conf.READER_CONF_DIR
    try:
        if slots is not None:
            if os.geteuid() != 0 and conf_dir is None:
                raise click.ClickException(
                    "--slots writes /etc/reader.conf.d and restarts pcscd: run it as root"
                )
            conf.apply(slots, directory, conf.DEBIAN_LIBRARY, library_dir or conf.LIBRARY_DIR)
            if not no_restart:
                _restart_pcscd()
        ports = conf.served_ports(directory)
    except conf.ReaderConfError as error:
        raise click.ClickException(str(error)) from None
    for port, name in sorted(ports.items()):
        click.echo(f"{name:<28} 127.0.0.1:{port}")


def _restart_pcscd() -> None:
    """Restart pcscd so it reads reader.conf.d again (systemd when it manages pcscd)."""
    if Path("/run/systemd/system").is_dir():
        result = subprocess.run(["systemctl", "restart", "pcscd"], check=False)
        if result.returncode != 0:
            raise click.ClickException("`systemctl restart pcscd` failed; restart pcscd by hand")
        return
    raise click.ClickException(
        "pcscd is not managed by systemd here: stop it and start it again (`make pcscd`)"
        " so it loads the new readers"
    )


def confirm_reset(directory: Path, yes: bool) -> None:
    if not yes and not click.confirm(
        f"Replace the card in {directory} by a new one (keys, certificates, PIN tries are lost)?",
        default=False,
    ):
        raise click.ClickException("nothing changed")


LIFECYCLE_COMMANDS: Sequence[click.Command] = (list_cards, stop, remove, insert, readers)
