"""`vcard script`: run APDU scripts against a PC/SC reader or a fresh in-process card.

Registered on the main `vcard` group by `vcard.cli` (`main.add_command(script)`).
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from ..host import InProcessConnection, PcscConnection, PcscError
from .parser import Case, ScriptError, parse_assignment, parse_script
from .runner import Connection, Runner, format_result

CONFORMANCE_DIR = Path(__file__).resolve().parent.parent / "conformance"


class ScriptUsageError(click.ClickException):
    """A script or option problem found before any APDU was sent: exit 2 like other usage errors."""

    exit_code = 2


def conformance_path(name: str) -> Path:
    """A shipped suite by name (`piv`, `gids`) or any path to a suite file."""
    candidate = CONFORMANCE_DIR / f"{name}.apdu"
    if candidate.exists():
        return candidate
    path = Path(name)
    if path.exists():
        return path
    known = ", ".join(sorted(p.stem for p in CONFORMANCE_DIR.glob("*.apdu") if not p.stem.startswith("_")))
    raise ScriptUsageError(f"--conformance {name}: no such suite (shipped: {known}) and no such file")


@contextmanager
def open_connection(reader: str | None, profile: str | None, state: Path | None) -> Iterator[Connection]:
    """A PC/SC connection, or a card from a profile in this process (fresh unless --state)."""
    if reader is not None:
        try:
            connection = PcscConnection(reader)
        except PcscError as error:
            raise click.ClickException(f"{error} (is pcscd running, and the card in the reader?)") from None
        try:
            yield connection
        finally:
            connection.close()
        return
    from ..profile import ProfileError, load_profile
    from ..runtime import VirtualCard
    from ..store import StateError

    assert profile is not None
    try:
        card = VirtualCard.open(load_profile(profile), state, ephemeral=state is None)
    except (ProfileError, StateError) as error:
        raise click.ClickException(str(error)) from None
    try:
        yield InProcessConnection(card.card)
    finally:
        card.close()


@click.command("script")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reader", "-r", metavar="NAME", help="PC/SC reader (exact name or a unique part of it).")
@click.option(
    "--profile", "-p", metavar="NAME|PATH", help="Run in-process against a fresh card from this profile."
)
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --profile: use (and change!) this card state instead of a fresh throwaway card.",
)
@click.option(
    "--conformance",
    "-c",
    "suites",
    multiple=True,
    metavar="NAME|PATH",
    help="Shipped suite: piv, piv-yubico, gids.",
)
@click.option(
    "--set", "-s", "assignments", multiple=True, metavar="NAME=VALUE", help="Override a script variable."
)
@click.option("--destructive", is_flag=True, help="Also run cases that block PINs or reset the card.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here.")
@click.option(
    "--case", "patterns", multiple=True, metavar="GLOB", help="Only cases whose 'group / name' matches."
)
@click.option("--verbose", "-v", is_flag=True, help="Print every exchange of every case.")
def script(
    files: Sequence[Path],
    reader: str | None,
    profile: str | None,
    state: Path | None,
    suites: Sequence[str],
    assignments: Sequence[str],
    destructive: bool,
    junit: Path | None,
    patterns: Sequence[str],
    verbose: bool,
) -> None:
    """Run APDU scripts (see docs/apdu-scripts.md) and report pass/fail per case.

    Exits 0 when every case passed or was skipped, 1 when a case failed, 2 when a
    script or an option is wrong (nothing was sent then).
    """
    paths = [*files, *(conformance_path(name) for name in suites)]
    if not paths:
        raise ScriptUsageError("give script FILEs or --conformance piv|gids")
    if (reader is None) == (profile is None):
        raise ScriptUsageError(
            "give exactly one of --reader NAME (PC/SC) or --profile NAME (in-process card)"
        )
    if state is not None and profile is None:
        raise ScriptUsageError("--state needs --profile")
    try:
        parsed = parse_script(list(paths))
        overrides = dict(parse_assignment(text) for text in assignments)
    except ScriptError as error:
        raise ScriptUsageError(str(error)) from None

    def selected(case: Case) -> bool:
        return not patterns or any(fnmatch.fnmatchcase(case.full_name, p) for p in patterns)

    with open_connection(reader, profile, state) as connection:
        try:
            runner = Runner(parsed, connection, overrides, destructive=destructive, select=selected)
        except ScriptError as error:
            raise ScriptUsageError(str(error)) from None
        outcome = runner.run(on_result=lambda result: click.echo(format_result(result, verbose)))
    click.echo(outcome.summary())
    if junit is not None:
        from .junit import write_junit

        write_junit(outcome, junit, name=" ".join(p.name for p in paths))
    if not outcome.ok:
        sys.exit(1)
