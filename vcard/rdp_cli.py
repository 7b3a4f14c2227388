"""`vcard rdp`: trace a PC/SC client's SCard calls, model them over a link, draw the chart."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click

from signin.rdp.calllog import CallLogError, Workload, read_log, summary_table
from signin.rdp.interposer import InterposerError, run_traced
from signin.rdp.model import Link, link_seconds, parse_bandwidth, parse_duration, predict


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


def _bandwidth(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_bandwidth(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from None


@click.group()
def rdp() -> None:
    """Smart-card redirection over RDP: every SCard call is a round trip (docs/rdp.md)."""


@rdp.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Call log (JSON lines) to write.",
)
@click.option(
    "--rtt", callback=_duration, metavar="DURATION", help="Delay every remote call by this (e.g. 50ms)."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def trace(log_path: Path | None, rtt: float | None, command: Sequence[str]) -> None:
    """Run COMMAND with the SCard interposer; print its calls by type. Use `--` before COMMAND."""
    scratch = None
    if log_path is None:
        scratch = tempfile.TemporaryDirectory(prefix="vcard-rdp-")
        log_path = Path(scratch.name) / "calls.jsonl"
    try:
        run = run_traced(command, log_path, (rtt or 0.0) * 1000)
        click.echo(summary_table(read_log(log_path)), err=True)
    except (InterposerError, CallLogError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        if scratch is not None:
            scratch.cleanup()
    if scratch is None:
        click.echo(f"call log: {log_path}", err=True)
    sys.exit(run.exit_code if run.exit_code >= 0 else 128 - run.exit_code)  # killed by a signal


@rdp.command()
@click.argument("log_path", metavar="LOG", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--rtt", callback=_duration, required=True, metavar="DURATION", help="Round-trip time, e.g. 250ms."
)
@click.option(
    "--bandwidth", callback=_bandwidth, metavar="RATE", help="Link rate, e.g. 4mbit (default: unlimited)."
)
def model(log_path: Path, rtt: float, bandwidth: float | None) -> None:
    """Predict the time of the run in LOG over a redirected link of RTT and BANDWIDTH."""
    try:
        work = Workload.from_log(read_log(log_path))
    except CallLogError as error:
        raise click.ClickException(str(error)) from None
    link = Link(rtt, bandwidth)
    rate = f"{bandwidth / 1e6:g} Mbit/s" if bandwidth else "unlimited bandwidth"
    click.echo(f"run: {work.name}")
    click.echo(
        f"remote calls: {work.remote_calls} ({work.apdus} APDUs),"
        f" bytes {work.bytes_sent} out / {work.bytes_received} in"
    )
    click.echo(f"own time: {work.local_seconds:.3f} s; the link adds {link_seconds(work, link):.3f} s")
    click.echo(f"predicted at {rtt * 1000:g} ms RTT, {rate}: {predict(work, link):.2f} s")


@rdp.command()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("rdp-signin"), show_default=True,
    help="Output stem: STEM.png and STEM.svg.",
)  # fmt: skip
@click.option(
    "--log", "logs", multiple=True, metavar="NAME=LOG",
    help="Add a real client's traced run as a curve (repeatable), e.g. 'OpenSC pkcs11-tool=p11.jsonl'.",
)  # fmt: skip
@click.option("--bandwidth", callback=_bandwidth, default="4mbit", show_default=True, metavar="RATE")
@click.option("--profile", type=click.Choice(["piv", "gids"]), default="piv", show_default=True)
def chart(out: Path, logs: Sequence[str], bandwidth: float, profile: str) -> None:
    """Draw sign-in time against RTT: naive CSP, Base CSP cold/warm, physical minimum, real clients."""
    from signin.rdp.chart import draw
    from signin.rdp.flows import lab_workloads

    from .profile import load_profile
    from .runtime import VirtualCard

    card = VirtualCard.open(load_profile(profile), None, ephemeral=True)
    try:
        workloads = lab_workloads(card.card, profile)
    finally:
        card.close()
    for item in logs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{item!r} is not NAME=LOG", param_hint="--log")
        try:
            workloads.append(Workload.from_log(read_log(Path(path)), name))
        except CallLogError as error:
            raise click.ClickException(str(error)) from None
    for work in workloads:
        seconds = predict(work, Link(0.25, bandwidth))
        click.echo(f"{work.name:<32} {work.remote_calls:>5} calls  {seconds:>8.1f} s at 250 ms")
    for written in draw(workloads, out, bandwidth):
        click.echo(f"wrote {written}")
