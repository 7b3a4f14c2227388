"""`vcard certprop`: certificate propagation from the cards in pcscd's readers into a store."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from vcard.host import PcscError

from .certprop import CertPropService, Outcome, Propagator, RemovalPolicy
from .stores import StoreError, open_store

log = logging.getLogger("signin.ts.cli")


@click.command()
@click.option(
    "--store",
    required=True,
    metavar="DEST",
    help="sql:DIR (an NSS database, e.g. sql:$HOME/.pki/nssdb) or pem:DIR (a PEM directory,"
    " created if absent).",
)
@click.option(
    "--on-removal",
    type=click.Choice([policy.value for policy in RemovalPolicy]),
    default=RemovalPolicy.KEEP.value,
    show_default=True,
    help="keep the propagated certificates when the card leaves (Windows' default), or remove them.",
)
@click.option("--once", is_flag=True, help="Propagate the cards inserted now, then exit.")
@click.option("--verbose", "-v", is_flag=True, help="Log what is read and written.")
def certprop(store: str, on_removal: str, once: bool, verbose: bool) -> None:
    """Copy the certificates of every inserted card (never a key) into a store, like Windows' CertPropSvc.

    Follows the readers with SCardGetStatusChange. Each certificate is tagged with the card ID,
    container and reader; the card's root certificates (mscp/msroots) become trust anchors.
    Re-insertion updates entries and never duplicates them. Prints one line per event; stops on
    SIGINT/SIGTERM.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        propagator = Propagator(open_store(store), RemovalPolicy(on_removal))
    except StoreError as error:
        raise click.ClickException(str(error)) from None

    def report(outcome: Outcome) -> None:
        click.echo(outcome.line())
        sys.stdout.flush()

    try:
        service = CertPropService(propagator, report=report)
    except PcscError as error:  # pcscd not running
        raise click.ClickException(f"cannot follow the readers: {error}") from None
    finished = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            service.run()
        except BaseException as error:  # reported by the main thread
            failure.append(error)
        finally:
            finished.set()

    # The main thread only waits: a blocked SCardGetStatusChange would delay signal handlers.
    worker = threading.Thread(target=work, name="certprop", daemon=True)

    def on_signal(_signum: int, _frame: Any) -> None:
        finished.set()
        service.ready.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.start()
        # run() sets `ready` after the first pass (and on its way out)
        (service.ready if once else finished).wait()
    finally:
        service.stop()
        worker.join(10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        problem = failure[0]
        if isinstance(problem, StoreError):
            raise click.ClickException(str(problem))
        raise click.ClickException(f"{type(problem).__name__}: {problem}")
