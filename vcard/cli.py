"""`vcard`: run virtual cards, inspect their state, send APDUs.

Every command that takes a card accepts `--profile NAME|PATH` and either
`--state DIR` (default: the profile's directory under the XDG data home) or
`--ephemeral` (a throwaway card in memory).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from signin.ts.cli import certprop

from . import __version__
from .apdu import ResponseAPDU, sw_name
from .md_cli import md
from .pinpad import pinpad, register_pinpad
from .profile import PROFILE_DIR, ProfileError, list_profile_names, load_profile, parse_hex
from .rdp_cli import rdp
from .runtime import VirtualCard
from .script.cli import script
from .signin_cli import COMMANDS as SIGNIN_COMMANDS
from .store import StateError, default_state_dir
from .ts_cli import ts

log = logging.getLogger("vcard.cli")


def default_profile_name() -> str:
    """The PIV card once it exists, else the bare ISO card."""
    return "piv" if (PROFILE_DIR / "piv.toml").exists() else "iso"


def _setup_logging(trace: bool, verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose or trace else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("vcard").setLevel(logging.INFO)
    if trace:
        logging.getLogger("vcard.trace").setLevel(logging.DEBUG)


@contextmanager
def _open_card(profile: str | None, state: Path | None, ephemeral: bool) -> Iterator[VirtualCard]:
    """Open a card, turning profile and state problems into clean CLI errors."""
    try:
        loaded = load_profile(profile or default_profile_name())
        card = VirtualCard.open(loaded, state, ephemeral=ephemeral)
    except (ProfileError, StateError) as error:
        raise click.ClickException(str(error)) from None
    try:
        yield card
    finally:
        card.close()


def _state_dir(profile: str | None, state: Path | None) -> Path:
    """`--state`, or the profile's default directory; a name that cannot be one is a CLI error."""
    if state is not None:
        return state
    try:
        return default_state_dir(Path(profile or default_profile_name()).stem)
    except StateError as error:
        raise click.ClickException(str(error)) from None


def _parse_hex(value: str) -> bytes:
    try:
        return parse_hex(value)
    except ValueError as problem:
        raise click.BadParameter(f"{value!r} is not hexadecimal ({problem})") from None


profile_option = click.option(
    "--profile",
    "-p",
    metavar="NAME|PATH",
    help="Profile name (see `vcard profiles`) or path to a .toml file. Default: piv.",
)
state_option = click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (default: $XDG_DATA_HOME/vcard/<profile>).",
)
ephemeral_option = click.option("--ephemeral", is_flag=True, help="Throwaway card kept in memory.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vcard")
def main() -> None:
    """A virtual PIV/GIDS smart card for pcscd (through vsmartcard's vpcd)."""


@main.command()
@click.option(
    "--profile",
    "-p",
    "profiles",
    metavar="NAME|PATH",
    multiple=True,
    help="Profile of the card; repeat for several cards on consecutive vpcd slots. Default: piv.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory, one per --profile in the same order.",
)
@ephemeral_option
@click.option(
    "--vpcd",
    default="127.0.0.1:35963",
    show_default=True,
    metavar="HOST:PORT",
    help="Where vpcd listens; card n uses PORT+n (reader 'Virtual PCD 00 0n').",
)
@click.option("--no-quickack", is_flag=True, help="Do not re-arm TCP_QUICKACK (to measure what it buys).")
@click.option(
    "--link-delay",
    type=click.FloatRange(min=0, max=60000),
    default=0.0,
    metavar="MS",
    help="Hold every reply to vpcd this long: one RTT per frame of a remote reader (docs/rdp.md).",
)
@click.option(
    "--idle-reinsert",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Take a card out of the reader and back in after SECONDS without an APDU, so pcscd releases"
    " an idle transaction (Windows' five-second rule); 0 turns it off."
    " Default: the profile's idle_reinsert_seconds.",
)
@click.option("--trace", is_flag=True, help="Log every APDU with decoded INS and SW names and timing.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write what clients send and get as an APDU script (docs/apdu-scripts.md);"
    " with several cards, FILE-n.apdu per card.",
)
def run(
    profiles: Sequence[str],
    states: Sequence[Path],
    ephemeral: bool,
    vpcd: str,
    no_quickack: bool,
    link_delay: float,
    idle_reinsert: float | None,
    trace: bool,
    record: Path | None,
) -> None:
    """Run cards in the foreground, attached to pcscd through vpcd.

    Ctrl-C or SIGTERM removes the cards cleanly; SIGUSR1 removes them from the
    reader and SIGUSR2 inserts them again. A control socket `control.sock` in
    each state directory accepts `remove`, `insert`, `info` and `pinpad`.
    """
    from .control import ControlServer
    from .script.recorder import Recorder, install_recorder
    from .transport.idle_reset import IdleReinsert, attach_idle_reinsert
    from .transport.vpcd import VpcdLink, parse_endpoint

    _setup_logging(trace, verbose=True)
    try:
        host, base_port = parse_endpoint(vpcd)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--vpcd") from None
    names = list(profiles) or [default_profile_name()]
    if states and len(states) != len(names):
        raise click.BadParameter(
            f"give one --state per --profile ({len(names)} profiles, {len(states)} states)",
            param_hint="--state",
        )
    if states and ephemeral:
        raise click.BadParameter("--state and --ephemeral exclude each other", param_hint="--state")

    cards: list[VirtualCard] = []
    links: list[VpcdLink] = []
    watchers: list[IdleReinsert] = []
    servers: list[ControlServer] = []
    recorders: list[Recorder] = []
    scratch: list[tempfile.TemporaryDirectory[str]] = []
    stop = threading.Event()
    try:
        for index, name in enumerate(names):
            try:
                loaded = load_profile(name)
                card = VirtualCard.open(loaded, states[index] if states else None, ephemeral=ephemeral)
            except (ProfileError, StateError) as error:
                raise click.ClickException(str(error)) from None
            cards.append(card)
            if record is not None:
                target = record
                if len(names) > 1:
                    target = record.with_name(f"{record.stem}-{index}{record.suffix}")
                recorders.append(install_recorder(card.card, target, description=f"profile {loaded.name}"))
            link = VpcdLink(
                card.card,
                host,
                base_port + index,
                quickack=not no_quickack,
                name=loaded.name,
                delay=link_delay / 1000,
            )
            links.append(link)
            if card.state_dir is not None:
                control_dir = card.state_dir
            else:
                holder = tempfile.TemporaryDirectory(prefix="vcard-")
                scratch.append(holder)
                control_dir = Path(holder.name)
            server = ControlServer(control_dir / "control.sock")
            _register_control(server, card, link)
            server.start()
            servers.append(server)
            log.info(
                "card %r (%s) -> vpcd %s:%d, control socket %s",
                loaded.name,
                card.state_dir or "ephemeral",
                host,
                base_port + index,
                control_dir / "control.sock",
            )
            link.start()
            seconds = loaded.idle_reinsert_seconds if idle_reinsert is None else idle_reinsert
            watcher = attach_idle_reinsert(link, seconds)
            if watcher is not None:
                watchers.append(watcher)
                log.info("card %r: out and back in after %g s without an APDU", loaded.name, seconds)

        def on_stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: removing the cards", signum)
            stop.set()

        def on_remove(_signum: int, _frame: Any) -> None:
            for link in links:
                link.remove()

        def on_insert(_signum: int, _frame: Any) -> None:
            for link in links:
                link.insert()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGUSR1, on_remove)
        signal.signal(signal.SIGUSR2, on_insert)
        while not stop.wait(0.5):
            pass
    finally:
        for watcher in watchers:
            watcher.stop()
        for link in links:
            link.stop()
        for recorder in recorders:
            recorder.close()
        for server in servers:
            server.stop()
        for card in cards:
            card.close()
        for holder in scratch:
            holder.cleanup()


def _register_control(server: Any, card: VirtualCard, link: Any) -> None:
    def remove(_request: dict[str, Any]) -> dict[str, Any]:
        link.remove()
        return {"ok": True}

    def insert(_request: dict[str, Any]) -> dict[str, Any]:
        link.insert()
        return {"ok": True}

    def info(_request: dict[str, Any]) -> dict[str, Any]:
        with card.card.lock:
            return {"ok": True, "info": card.describe()}

    server.register("remove", remove)
    server.register("insert", insert)
    server.register("info", info)
    register_pinpad(server, card)


@main.command()
def profiles() -> None:
    """List the profiles that ship with vcard."""
    for name in list_profile_names():
        try:
            loaded = load_profile(name)
        except ProfileError as error:
            click.echo(f"{name:<14} BROKEN: {error}")
            continue
        click.echo(f"{name:<14} {loaded.description}")


@main.command()
@profile_option
@state_option
def init(profile: str | None, state: Path | None) -> None:
    """Create a card's state from its profile (the first `run` does this too)."""
    directory = _state_dir(profile, state)
    if (directory / "state.json").exists():
        raise click.ClickException(f"{directory}/state.json already exists; choose another --state")
    with _open_card(profile, directory, False) as card:
        click.echo(f"created {card.profile.name} card in {card.state_dir}")


@main.command()
@profile_option
@state_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(profile: str | None, state: Path | None, as_json: bool) -> None:
    """Summarise a card: applets, objects, keys, roles and tries left.

    Asks the running card through its control socket when it is running.
    """
    directory = _state_dir(profile, state)
    summary = _info_from_running_card(directory)
    if summary is None:
        with _open_card(profile, directory, False) as card:
            summary = card.describe()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)


def _info_from_running_card(directory: Path) -> dict[str, Any] | None:
    from .control import ControlError, control_request

    socket_path = directory / "control.sock"
    if not socket_path.exists():
        return None
    try:
        reply = control_request(socket_path, {"command": "info"}, timeout=5.0)
    except ControlError:
        return None
    summary: dict[str, Any] | None = reply.get("info") if reply.get("ok") else None
    return summary


def _print_summary(summary: dict[str, Any], indent: int = 0) -> None:
    pad = "  " * indent
    for key, value in summary.items():
        if isinstance(value, dict):
            click.echo(f"{pad}{key}:")
            _print_summary(value, indent + 1)
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            click.echo(f"{pad}{key}:")
            for item in value:
                label = item.get("name") or item.get("label") or ""
                click.echo(f"{pad}  - {label}")
                _print_summary({k: v for k, v in item.items() if k not in ("name",)}, indent + 2)
        else:
            click.echo(f"{pad}{key}: {value}")


@main.command()
@profile_option
@state_option
@ephemeral_option
@click.option("--trace", is_flag=True, help="Log decoded APDUs with timing.")
@click.argument("apdus", nargs=-1, required=True)
def apdu(profile: str | None, state: Path | None, ephemeral: bool, trace: bool, apdus: Sequence[str]) -> None:
    """Send APDUs (hex) in-process to a card's state and print the responses.

    The card is powered on once; APDUs run in order in one card session, so a
    VERIFY holds for the commands after it. Exits 1 if the last status word is
    not 9000 or 61xx.
    """
    _setup_logging(trace)
    commands = [_parse_hex(text) for text in apdus]
    last_sw = 0x9000
    with _open_card(profile, state, ephemeral) as card:
        card.card.power_on()
        for command in commands:
            response = ResponseAPDU.parse(card.card.transmit(command))
            last_sw = response.sw
            data = response.data.hex().upper()
            click.echo(f"{data + ' ' if data else ''}{response.sw:04X} {sw_name(response.sw)}")
    if last_sw != 0x9000 and last_sw & 0xFF00 != 0x6100:
        sys.exit(1)


# Commands that live beside the module they serve.
main.add_command(pinpad)
main.add_command(script)
main.add_command(md)
main.add_command(ts)
for _command in SIGNIN_COMMANDS:
    main.add_command(_command)
main.add_command(rdp)
main.add_command(certprop)
