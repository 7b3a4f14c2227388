"""`vcard ts`: terminal-server scenarios on the command line (signin.ts.simulate does the work).

It lives in the CLI layer, not in the signin package: it builds in-process cards
(vcard.runtime), which the host-side signin package must not import.
"""

from __future__ import annotations

from contextlib import ExitStack

import click

import minidriver as md
from signin.ts.simulate import format_timelines, inprocess_opener, pcsc_opener, simulate

from .profile import ProfileError, load_profile
from .runtime import VirtualCard


@click.group("ts")
def ts() -> None:
    """Terminal-server scenarios: sessions sharing cards and the five-second rule."""


@ts.command("simulate")
@click.option(
    "--sessions", type=click.IntRange(min=2), default=8, show_default=True, help="Sessions (threads)."
)
@click.option("--cards", type=click.IntRange(min=1), default=1, show_default=True, help="In-process cards.")
@click.option(
    "--hold",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Seconds session 1 holds its idle transaction on card 1.",
)
@click.option(
    "--idle-reset",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="The five-second rule's seconds (0: never reset).",
)
@click.option("--legacy", is_flag=True, help="The session-unaware CSP cache lock (the bug), not the fix.")
@click.option(
    "--reader",
    "readers",
    multiple=True,
    metavar="NAME",
    help="Use the card in this PC/SC reader (repeat for several cards) instead of in-process cards.",
)
@click.option("--profile", default="piv", show_default=True, help="Profile of the in-process cards.")
@click.option("--pin", default="123456", show_default=True, help="The user PIN of the cards.")
def simulate_command(
    sessions: int,
    cards: int,
    hold: float,
    idle_reset: float,
    legacy: bool,
    readers: tuple[str, ...],
    profile: str,
    pin: str,
) -> None:
    """Session 1 holds a transaction idle; every other session signs in meanwhile.

    Prints each session's wait (for someone else's transaction), work and total
    seconds. Through pcscd with --reader, else on in-process cards.
    """
    with ExitStack() as stack:
        if readers:
            openers = [pcsc_opener(readers, index) for index in range(len(readers))]
        else:
            try:
                loaded = load_profile(profile)
            except ProfileError as error:
                raise click.ClickException(str(error)) from None
            endpoints = []
            for _ in range(cards):
                virtual = VirtualCard.open(loaded, None, ephemeral=True)
                stack.callback(virtual.close)
                endpoints.append(virtual.card)
            openers = [inprocess_opener(endpoints, index) for index in range(cards)]
        behaviour = "legacy CSP cache lock" if legacy else "Windows (five-second rule, per-session cache)"
        click.echo(
            f"# {sessions} sessions, {len(openers)} card(s), session 1 idles {hold:g} s in a transaction;"
            f" {behaviour}, idle reset after {idle_reset:g} s",
            err=True,
        )
        try:
            timelines = simulate(openers, sessions, hold, idle_reset or None, legacy, pin.encode())
        except md.ScardError as error:
            raise click.ClickException(str(error)) from None
    click.echo(format_timelines(timelines))
