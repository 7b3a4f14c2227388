"""Terminal-server sessions signing in while one session idles in a transaction (`vcard ts simulate`).

Each session is a thread with its own session ID and connect time, its own
connection and its own CSP context, sharing the process's resource manager
(`minidriver.rm.ResourceManagerHub`), as on a terminal server where every user's
Base CSP runs against the same SCardSvr. Session 1 begins a transaction on card 1
and sits idle for `hold` seconds; every other session signs in on card
(index mod cards): context, container map, certificates, PIN, then deauthenticate.

With the Windows behaviour (the default) the idle transaction is reset after the
idle rule's seconds and the others go on; with `legacy` the CSP's session-unaware
card-handle cache keeps one lock across sessions for the whole transaction, and
everyone waits the whole hold, on every card.

Host side only: the command line (vcard/ts_cli.py) supplies the cards, in-process
ones from the card runtime or PC/SC readers.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import minidriver as md
from minidriver.cache import GlobalCache
from minidriver.rm import ResourceManagerHub, Session
from vcard.host import CardEndpoint


@dataclass
class Timeline:
    """One session's sign-in: seconds spent waiting for the card, working, and in all."""

    session: int
    card: int
    wait: float = 0.0
    work: float = 0.0
    total: float = 0.0
    outcome: str = ""


Opener = Callable[[Session, ResourceManagerHub, GlobalCache], md.CardData]


def inprocess_opener(cards: Sequence[CardEndpoint], index: int) -> Opener:
    def open_card(session: Session, hub: ResourceManagerHub, cache: GlobalCache) -> md.CardData:
        return md.CardData.inprocess(cards[index], session=session, hub=hub, cache=cache)

    return open_card


def pcsc_opener(readers: Sequence[str], index: int) -> Opener:
    def open_card(session: Session, hub: ResourceManagerHub, cache: GlobalCache) -> md.CardData:
        return md.CardData.connect(readers[index], session=session, hub=hub, cache=cache)

    return open_card


def retry_after_reset(card_data: md.CardData, call: Callable[[], object]) -> object:
    """What the Base CSP does with SCARD_W_RESET_CARD (someone's idle reset): reconnect, retry once."""
    try:
        return call()
    except md.ScardError as error:
        if error.code != md.Scard.W_RESET_CARD:
            raise
        if card_data.pvVendorSpecific is None and card_data.hScard is not None:
            card_data.hScard.reconnect()
        return call()


def sign_in(card_data: md.CardData, pin: bytes) -> None:
    """The card work of a smart-card logon: context, containers and certificates, PIN, deauthenticate."""
    retry_after_reset(card_data, lambda: md.CardAcquireContext(card_data, 0))
    cmap = retry_after_reset(card_data, lambda: md.CardReadFile(card_data, "mscp", "cmapfile"))
    assert isinstance(cmap, bytes)
    names = retry_after_reset(card_data, lambda: md.CardEnumFiles(card_data, "mscp"))
    assert isinstance(names, list)
    for name in names:
        if name[:3] in ("kxc", "ksc"):
            retry_after_reset(card_data, functools.partial(md.CardReadFile, card_data, "mscp", name))
    retry_after_reset(card_data, lambda: md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin))
    retry_after_reset(card_data, lambda: md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0))
    md.CardDeleteContext(card_data)


def simulate(
    openers: Sequence[Opener],
    sessions: int,
    hold: float,
    idle_reset_seconds: float | None = 5.0,
    legacy: bool = False,
    pin: bytes = b"123456",
) -> list[Timeline]:
    """Run the scenario; one timeline per session, the holder (session 1) first."""
    if sessions < 2:
        raise ValueError("the scenario needs at least 2 sessions: one that holds, one that signs in")
    hub = ResourceManagerHub(idle_reset_seconds, legacy=legacy)
    cache = GlobalCache()
    started = time.monotonic()
    holder = Timeline(1, 1)
    holding = threading.Event()

    def hold_card() -> None:
        card_data = openers[0](Session(1), hub, cache)
        handle = card_data.hScard
        assert handle is not None
        handle.begin_transaction()
        holding.set()
        time.sleep(hold)
        try:
            handle.end_transaction()
            holder.outcome = "ended its transaction"
        except md.ScardError as error:
            holder.outcome = f"{error.name} (its idle transaction was reset)"
        finally:
            card_data.close()
        holder.total = time.monotonic() - started
        holder.work = holder.total

    timelines = [holder]
    threads = [threading.Thread(target=hold_card, name="session-1")]
    threads[0].start()
    holding.wait()

    def user(timeline: Timeline, opener: Opener) -> None:
        begun = time.monotonic()
        card_data = opener(Session(timeline.session), hub, cache)
        try:
            sign_in(card_data, pin)
            timeline.outcome = "signed in"
        except md.ScardError as error:
            timeline.outcome = error.name
        finally:
            handle = card_data.hScard
            timeline.wait = handle.waited if handle is not None else 0.0
            card_data.close()
        timeline.total = time.monotonic() - begun
        timeline.work = timeline.total - timeline.wait

    for number in range(2, sessions + 1):
        index = (number - 2) % len(openers)
        timeline = Timeline(number, index + 1)
        timelines.append(timeline)
        threads.append(
            threading.Thread(target=user, args=(timeline, openers[index]), name=f"session-{number}")
        )
        threads[-1].start()
    for thread in threads:
        thread.join()
    return timelines


def format_timelines(timelines: Sequence[Timeline]) -> str:
    lines = [f"{'session':>7} {'card':>4} {'wait s':>8} {'work s':>8} {'total s':>8}  outcome"]
    for t in timelines:
        lines.append(f"{t.session:>7} {t.card:>4} {t.wait:>8.2f} {t.work:>8.2f} {t.total:>8.2f}  {t.outcome}")
    return "\n".join(lines)
