"""`vcard`: run virtual cards, inspect their state, send APDUs.

Every command that takes a card accepts `--profile NAME|PATH` and either
`--state DIR` (default: the profile's directory under the XDG data home) or
`--ephemeral` (a throwaway card in memory).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
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
from .tracelog import LINE_FORMAT, TRACE_LOGGER, TraceLineHandler
from .ts_cli import ts

log = logging.getLogger("vcard.cli")


def default_profile_name() -> str:
    """The PIV card once it exists, else the bare ISO card."""
    return "piv" if (PROFILE_DIR / "piv.toml").exists() else "iso"


def _setup_logging(trace: bool, verbose: bool = False) -> TraceLineHandler | None:
    """Log to stderr; with `trace`, the handler the cards' trace entries go to (hand its
    `entry` to `Card.trace_sink`)."""
    logging.basicConfig(
        level=logging.INFO if verbose or trace else logging.WARNING,
        format=LINE_FORMAT,
        stream=sys.stderr,
    )
    logging.getLogger("vcard").setLevel(logging.INFO)
    if not trace:
        return None
    # logging's documented optimisation: records skip what the line format never shows
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    trace_log = logging.getLogger(TRACE_LOGGER)
    trace_log.setLevel(logging.DEBUG)
    trace_log.propagate = False
    for handler in trace_log.handlers:
        if isinstance(handler, TraceLineHandler):
            return handler
    handler = TraceLineHandler(sys.stderr)
    trace_log.addHandler(handler)
    return handler


@contextmanager
def _open_card(
    profile: str | None, state: Path | None, ephemeral: bool, trace_secrets: bool = False
) -> Iterator[VirtualCard]:
    """Open a card, turning profile and state problems into clean CLI errors."""
    if state is not None and ephemeral:
        # the state would be silently ignored
        raise click.BadParameter("--state and --ephemeral exclude each other", param_hint="--state")
    try:
        loaded = load_profile(profile or default_profile_name())
        card = VirtualCard.open(loaded, state, ephemeral=ephemeral, trace_secrets=trace_secrets)
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


def _parse_command_apdu(value: str, position: int) -> bytes:
    """One APDU argument: hex, with the scripts' `[data]` groups (Lc computed) and "text"."""
    from .script.functions import ExpressionError
    from .script.parser import Location, ScriptError, parse_bytes

    where = f"APDU {position}"
    try:
        raw = parse_bytes(value, Location("command line", 0)).render({})
    except (ScriptError, ExpressionError) as problem:
        raise click.BadParameter(f"{value!r}: {problem}", param_hint=where) from None
    if len(raw) < 4:
        raise click.BadParameter(
            f"{value!r} is {len(raw)} bytes; a command APDU has at least CLA INS P1 P2", param_hint=where
        )
    return raw


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
trace_secrets_option = click.option(
    "--trace-secrets",
    is_flag=True,
    help="Implies --trace and shows PINs, PUKs, keys and session PINs in clear (debugging test cards only).",
)


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
@click.option(
    "--wait",
    "wait_text",
    default="30",
    show_default=True,
    metavar="SECONDS|forever",
    help="Give up when a card is not in its reader after this long; `forever` for services.",
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
@click.option(
    "--trace", is_flag=True, help="Log every APDU with decoded INS and SW names and timing (secrets hidden)."
)
@trace_secrets_option
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
    wait_text: str,
    no_quickack: bool,
    link_delay: float,
    idle_reinsert: float | None,
    trace: bool,
    trace_secrets: bool,
    record: Path | None,
) -> None:
    """Run cards in the foreground, attached to pcscd through vpcd.

    Ctrl-C or SIGTERM removes the cards cleanly; SIGUSR1 removes them from the
    reader and SIGUSR2 inserts them again. A control socket `control.sock` in
    each state directory accepts `remove`, `insert`, `info`, `stop` and `pinpad`
    (`vcard list`, `stop`, `remove`, `insert` find running cards for you).
    """
    from .control import ControlServer
    from .lifecycle import RunningCard, register
    from .script.recorder import Recorder, install_recorder
    from .transport.idle_reset import IdleReinsert, attach_idle_reinsert
    from .transport.readers import ReaderConfError, port_problem, served_ports
    from .transport.vpcd import VpcdLink, parse_endpoint

    tracer = _setup_logging(trace or trace_secrets, verbose=True)
    try:
        host, base_port = parse_endpoint(vpcd)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--vpcd") from None
    give_up_after = _parse_wait(wait_text)
    names = list(profiles) or [default_profile_name()]
    for index in range(len(names)):
        problem = port_problem(host, base_port + index)
        if problem is not None:
            raise click.ClickException(f"card {index + 1} ({names[index]}): {problem}")
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
    registrations: list[Path] = []
    try:
        served = served_ports()
    except ReaderConfError:
        served = {}  # port_problem already let an unreadable configuration pass: names are a nicety
    stop = threading.Event()
    try:
        for index, name in enumerate(names):
            try:
                loaded = load_profile(name)
                state_dir = states[index] if states else None
                card = VirtualCard.open(loaded, state_dir, ephemeral=ephemeral, trace_secrets=trace_secrets)
            except (ProfileError, StateError) as error:
                raise click.ClickException(str(error)) from None
            cards.append(card)
            if tracer is not None:
                card.card.trace_sink = tracer.entry
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
            server.register("stop", _stop_handler(stop))
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
            registrations.append(
                register(
                    RunningCard(
                        os.getpid(),
                        loaded.name,
                        str(card.state_dir) if card.state_dir else "ephemeral",
                        served.get(base_port + index, f"vpcd {host}:{base_port + index}"),
                        base_port + index,
                        str(control_dir / "control.sock"),
                    )
                )
            )

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
        _wait_for_readers(links, stop, give_up_after)
        while not stop.wait(0.5):
            pass
    finally:
        for watcher in watchers:
            watcher.stop()
        for path in registrations:
            path.unlink(missing_ok=True)
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


def _stop_handler(stop: threading.Event) -> Any:
    """The control request `stop`: the same clean shutdown as SIGTERM."""

    def handle(_request: dict[str, Any]) -> dict[str, Any]:
        stop.set()
        return {"ok": True}

    return handle


WAIT_NOTICE_SECONDS = 2.0
"""After this long without a reader, `vcard run` says what it waits for."""


def _parse_wait(text: str) -> float | None:
    """`--wait`: seconds (> 0) or `forever` (None)."""
    if text.strip().lower() == "forever":
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a number of seconds nor 'forever'", param_hint="--wait"
        ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise click.BadParameter(
            f"{text!r}: give a number of seconds above 0, or 'forever'", param_hint="--wait"
        )
    return seconds


def _wait_for_readers(links: Sequence[Any], stop: threading.Event, give_up_after: float | None) -> None:
    """Say what a card waits for after 2 s, and give up at `give_up_after` (None: never)."""
    started = time.monotonic()
    told = False
    while not stop.is_set():
        waiting = [link for link in links if not link.connected]
        if not waiting:
            if told:
                log.info("every card is in its reader")
            return
        elapsed = time.monotonic() - started
        if give_up_after is not None and elapsed >= give_up_after:
            problems = "; ".join(f"{link.endpoint}: {link.waiting_reason()}" for link in waiting)
            raise click.ClickException(
                f"no vpcd reader took the card within {give_up_after:g} s ({problems}); is pcscd running with"
                " vsmartcard-vpcd (`make pcscd`)? Use --wait forever to keep waiting"
            )
        if not told and elapsed >= WAIT_NOTICE_SECONDS:
            told = True
            for link in waiting:
                log.info(
                    "waiting for vpcd at %s (%s) — is pcscd running with vsmartcard-vpcd?%s",
                    link.endpoint,
                    link.waiting_reason(),
                    "" if give_up_after is None else f" giving up after {give_up_after:g} s",
                )
        stop.wait(0.1)


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
@click.option("--force", is_flag=True, help="Replace an existing card in the state directory by a new one.")
def init(profile: str | None, state: Path | None, force: bool) -> None:
    """Create a card's state from its profile (the first `run` does this too)."""
    directory = _state_dir(profile, state)
    if (directory / "state.json").exists():
        if not force:
            raise click.ClickException(
                f"{directory}/state.json already exists; choose another --state, or --force to replace it"
            )
        name = _reset(directory, profile or default_profile_name())
        click.echo(f"replaced the card in {directory} by a new {name} card")
        return
    with _open_card(profile, directory, False) as card:
        click.echo(f"created {card.profile.name} card in {card.state_dir}")


@main.command()
@profile_option
@click.option(
    "--state", type=click.Path(file_okay=False, path_type=Path), required=True, help="State directory."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def reset(profile: str | None, state: Path, yes: bool) -> None:
    """Put a card back in its profile's initial state (new keys, PINs and tries as shipped).

    The profile is the one the card was made from unless --profile names another.
    A running card on this state is never reset under it: stop it first.
    """
    from .lifecycle import confirm_reset

    if not (state / "state.json").exists():
        raise click.ClickException(f"{state}/state.json does not exist: nothing to reset (see `vcard init`)")
    confirm_reset(state, yes)
    name = _reset(state, profile)
    click.echo(f"reset {state} to a new {name} card")


def _reset(directory: Path, profile: str | None) -> str:
    from .lifecycle import reset_state

    try:
        return reset_state(directory, profile, load_profile, VirtualCard.open)
    except (ProfileError, StateError) as error:
        raise click.ClickException(str(error)) from None


@main.command()
@profile_option
@state_option
@click.option("--reader", "-r", metavar="NAME", help="The running card in this reader (ephemeral ones too).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(profile: str | None, state: Path | None, reader: str | None, as_json: bool) -> None:
    """Summarise a card: applets, objects, keys, roles and tries left.

    Asks the running card through its control socket when it is running.
    """
    if reader is not None:
        from .lifecycle import card_info

        running = card_info(reader)
        click.echo(json.dumps(running, indent=2)) if as_json else _print_summary(running)
        return
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
@click.option("--trace", is_flag=True, help="Log decoded APDUs with timing (secrets hidden).")
@trace_secrets_option
@click.argument("apdus", nargs=-1, required=True)
def apdu(
    profile: str | None,
    state: Path | None,
    ephemeral: bool,
    trace: bool,
    trace_secrets: bool,
    apdus: Sequence[str],
) -> None:
    """Send APDUs in-process to a card's state and print the responses.

    Each APDU is hex, as in APDU scripts: `"00 20 00 80 [31 32 33 34 35 36 FF FF]"`
    puts Lc before the bracketed data.

    The card is powered on once; APDUs run in order in one card session, so a
    VERIFY holds for the commands after it. Exits 1 if the last status word is
    not 9000 or 61xx.
    """
    tracer = _setup_logging(trace or trace_secrets)
    commands = [_parse_command_apdu(text, index) for index, text in enumerate(apdus, 1)]
    last_sw = 0x9000
    with _open_card(profile, state, ephemeral, trace_secrets) as card:
        if tracer is not None:
            card.card.trace_sink = tracer.entry
        card.card.power_on()
        for command in commands:
            response = ResponseAPDU.parse(card.card.transmit(command))
            last_sw = response.sw
            data = response.data.hex().upper()
            click.echo(f"{data + ' ' if data else ''}{response.sw:04X} {sw_name(response.sw)}")
    if last_sw != 0x9000 and last_sw & 0xFF00 != 0x6100:
        sys.exit(1)


def _lifecycle_commands() -> Sequence[click.Command]:
    from .lifecycle import LIFECYCLE_COMMANDS

    return LIFECYCLE_COMMANDS


# Commands that live beside the module they serve.
main.add_command(pinpad)
main.add_command(script)
main.add_command(md)
main.add_command(ts)
for _command in SIGNIN_COMMANDS:
    main.add_command(_command)
main.add_command(rdp)
main.add_command(certprop)
for _command in _lifecycle_commands():
    main.add_command(_command)
