"""Minidriver sign-in flows counted in SCard calls: the Base CSP cold and warm, the naive CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from minidriver.cache import GlobalCache
from signin.rdp.calllog import Workload
from signin.rdp.flows import (
    PHYSICAL_MINIMUM,
    CardSource,
    TransactionPerApdu,
    base_sign_in,
    naive_sign_in,
    provision,
)
from signin.rdp.model import Link, predict
from vcard.host import InProcessConnection
from vcard.profile import load_profile
from vcard.rdp_cli import rdp
from vcard.runtime import VirtualCard

SEED = Link(0.25, 4e6)


@pytest.fixture(scope="module", params=["piv", "gids"])
def source(request: pytest.FixtureRequest) -> Iterator[CardSource]:
    card = VirtualCard.open(load_profile(request.param), None, ephemeral=True)
    found = CardSource(request.param, lambda: InProcessConnection(card.card), request.param)
    provision(found)
    yield found
    card.close()


def test_transaction_per_apdu_wraps_each_transmit_and_drops_spanning_transactions(source: CardSource) -> None:
    connection = TransactionPerApdu(source.connect())
    connection.meter.reset()
    connection.begin_transaction()
    connection.transmit(bytes.fromhex("00A4040000"))
    connection.transmit(bytes.fromhex("00A4040000"))
    connection.end_transaction()
    calls = connection.meter.snapshot()["calls"]
    assert calls == {"SCardBeginTransaction": 2, "SCardTransmit": 2, "SCardEndTransaction": 2}
    connection.close()
    assert connection.meter.snapshot()["calls"]["SCardDisconnect"] == 1


def test_base_csp_warm_needs_fewer_calls_than_cold_and_one_transaction(source: CardSource) -> None:
    cache = GlobalCache()
    cold = base_sign_in(source, cache)
    warm = base_sign_in(source, cache)
    for work in (cold, warm):
        assert work.calls["SCardBeginTransaction"] == work.calls["SCardEndTransaction"] == 1
        assert work.remote_calls == work.apdus + 2  # the sign-in is APDUs inside one transaction
    assert warm.apdus < cold.apdus / 2  # certificates and container map come from the cache
    assert predict(warm, SEED) < predict(cold, SEED) < 10


def test_naive_csp_reconnects_and_takes_a_transaction_per_apdu(source: CardSource) -> None:
    from signin.rdp.flows import NAIVE_OPERATIONS

    naive = naive_sign_in(source)
    operations = len(NAIVE_OPERATIONS)
    for opening in ("SCardEstablishContext", "SCardConnect", "SCardDisconnect", "SCardReleaseContext"):
        assert naive.calls[opening] == operations
    assert naive.calls["SCardBeginTransaction"] == naive.calls["SCardTransmit"] == naive.apdus
    warm = base_sign_in(source, GlobalCache())
    assert naive.remote_calls > 10 * warm.remote_calls
    assert predict(naive, SEED) > 60  # minutes, not seconds, at 250 ms / 4 Mbit/s


def test_physical_minimum_is_five_round_trips() -> None:
    assert PHYSICAL_MINIMUM.remote_calls == 5
    assert predict(PHYSICAL_MINIMUM, Link(0.25)) == pytest.approx(1.25)


def test_chart_command_writes_png_and_svg_with_a_real_client_curve(tmp_path: Path) -> None:
    log = tmp_path / "p11.jsonl"
    log.write_text('{"call":"SCardTransmit","rc":0,"sent":5,"received":2,"start":1.0,"end":1.1,"pid":1}\n')
    result = CliRunner().invoke(rdp, ["chart", "--out", str(tmp_path / "chart"), "--log", f"a client={log}"])
    assert result.exit_code == 0, result.output
    assert "a client" in result.output and "naive CSP (PIV)" in result.output
    png = (tmp_path / "chart.png").read_bytes()
    svg = (tmp_path / "chart.svg").read_text()
    assert png.startswith(b"\x89PNG") and "<svg" in svg
    bad = CliRunner().invoke(rdp, ["chart", "--out", str(tmp_path / "c"), "--log", "nolog"])
    assert bad.exit_code == 2 and "is not NAME=LOG" in bad.output


def test_workload_from_meter_matches_snapshot(source: CardSource) -> None:
    connection = source.connect()
    connection.transmit(bytes.fromhex("00A4040000"))
    work = Workload.from_meter("m", connection.meter.snapshot())
    assert work.calls["SCardConnect"] == 1 and work.apdus == 1 and work.bytes_sent == 5
    connection.close()
