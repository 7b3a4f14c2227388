"""Minidriver sign-in flows counted in SCard calls: the Base CSP cold and warm, the naive CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import minidriver as md
from minidriver.cache import GlobalCache
from signin.rdp.calllog import Workload
from signin.rdp.flows import (
    PHYSICAL_MINIMUM,
    BaseCsp,
    CardSource,
    base_sign_in,
    naive_operations,
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
    card_data = md.CardData.from_connection(source.connect(), cache=None, transaction_per_apdu=True)
    meter = card_data.connection.meter
    meter.reset()
    handle = card_data.hScard
    assert handle is not None
    handle.begin_transaction()
    handle.transmit(bytes.fromhex("00A4040000"))
    handle.transmit(bytes.fromhex("00A4040000"))
    handle.end_transaction()
    calls = meter.snapshot()["calls"]
    assert calls == {"SCardBeginTransaction": 2, "SCardTransmit": 2, "SCardEndTransaction": 2}
    card_data.close()
    assert meter.snapshot()["calls"]["SCardDisconnect"] == 1


def test_warm_sign_in_is_four_apdus_in_one_transaction(source: CardSource) -> None:
    csp = BaseCsp(source)
    cold, warm, again = csp.sign_in(), csp.sign_in(), csp.sign_in()
    csp.close()
    assert (cold.name, warm.name, again.name) == ("Base CSP cold", "Base CSP warm", "Base CSP warm")
    for work in (warm, again):
        # freshness read, VERIFY, one extended sign APDU, deauthenticate; Begin and End around them
        assert work.apdus <= 4 and work.remote_calls <= 8
        assert predict(work, SEED) <= 2.0
    assert cold.remote_calls <= 25 and predict(cold, SEED) <= 5.0


def test_warm_context_selects_again_when_another_program_took_the_card() -> None:
    card = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    source = CardSource("piv", lambda: InProcessConnection(card.card), "piv")
    provision(source)
    csp = BaseCsp(source)
    csp.sign_in()
    other = InProcessConnection(card.card)
    assert other.transmit(bytes.fromhex("00A4040008A000000527200101"))[-2:] == b"\x90\x00"  # OTP applet
    warm = csp.sign_in()  # would fail on the OTP applet without the new SELECT
    assert warm.apdus == 6  # failed freshness read, SELECT, then the usual four
    assert csp.sign_in().apdus == 4
    csp.close()
    card.close()


def test_gids_warm_sign_sets_the_security_environment_again_when_another_program_changed_it() -> None:
    card = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    source = CardSource("gids", lambda: InProcessConnection(card.card), "gids")
    provision(source)
    csp = BaseCsp(source)
    csp.sign_in()
    assert csp.sign_in().apdus == 4  # no MSE SET: the environment from the last logon still holds
    # another program sets a decipher environment on the same key between the logons
    other = InProcessConnection(card.card)
    assert other.transmit(bytes.fromhex("0020008006") + b"123456")[-2:] == b"\x90\x00"
    assert other.transmit(bytes.fromhex("002241B806800107840181"))[-2:] == b"\x90\x00"
    warm = csp.sign_in()  # CardSignData checks the signature: it must verify
    assert warm.apdus == 6  # PSO refused, MSE SET, PSO again
    csp.close()
    card.close()


def test_a_change_by_another_context_is_seen_by_the_warm_cache() -> None:
    card = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    source = CardSource("gids", lambda: InProcessConnection(card.card), "gids")
    provision(source)
    csp = BaseCsp(source)
    csp.sign_in()
    assert csp.card_data is not None
    before = md.CardReadFile(csp.card_data, "mscp", "kxc00")
    # another process (its own context, no shared cache) replaces the certificate: cardcf moves
    writer = source.card_data(cache=None)
    md.CardAcquireContext(writer, 0)
    md.CardAuthenticateEx(writer, md.ROLE_USER, 0, b"123456")
    md.CardWriteFile(writer, "mscp", "kxc00", 0, before + b"\x00")
    md.CardDeauthenticateEx(writer, md.PIN_SET_ALL_ROLES, 0)
    writer.close()
    assert md.CardReadFile(csp.card_data, "mscp", "kxc00") == before + b"\x00"
    assert csp.sign_in().apdus > 4  # the certificate came from the card again
    assert csp.sign_in().apdus == 4  # and is cached again
    csp.close()
    card.close()


def test_base_csp_warm_needs_fewer_calls_than_cold_and_one_transaction(source: CardSource) -> None:
    cache = GlobalCache()
    csp = BaseCsp(source, cache)
    cold, warm = csp.sign_in(), csp.sign_in()
    csp.close()
    # a new CSP instance (another process) on the same machine-wide cache: a new context, cached data
    new_context = base_sign_in(source, cache)
    for work in (cold, warm, new_context):
        assert work.calls["SCardBeginTransaction"] == work.calls["SCardEndTransaction"] == 1
        assert work.remote_calls == work.apdus + 2  # the sign-in is APDUs inside one transaction
    assert warm.apdus < new_context.apdus < cold.apdus  # certificates and container map from the cache
    assert warm.apdus < cold.apdus / 2
    assert predict(warm, SEED) < predict(new_context, SEED) < predict(cold, SEED) < 10


def test_naive_csp_reconnects_and_takes_a_transaction_per_apdu(source: CardSource) -> None:
    naive = naive_sign_in(source)
    operations = len(naive_operations(1))
    for opening in ("SCardEstablishContext", "SCardConnect", "SCardDisconnect", "SCardReleaseContext"):
        assert naive.calls[opening] == operations
    assert naive.calls["SCardBeginTransaction"] == naive.calls["SCardTransmit"] == naive.apdus
    assert naive.calls["SCardGetStatusChange"] == operations
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


def test_gids_reads_a_data_object_once_per_transaction() -> None:
    card = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    source = CardSource("gids", lambda: InProcessConnection(card.card), "gids")
    provision(source)
    card_data = source.card_data(cache=None)
    md.CardAcquireContext(card_data, 0)
    meter = card_data.connection.meter
    meter.reset()
    with card_data.transaction():
        first = md.CardReadFile(card_data, "mscp", "cmapfile")
        inside = meter.apdus
        assert md.CardReadFile(card_data, "mscp", "cmapfile") == first
        assert meter.apdus == inside  # masterfile and cmapfile were read in this transaction
    md.CardReadFile(card_data, "mscp", "cmapfile")
    assert meter.apdus == 2 * inside  # a new transaction reads the card again
    card_data.close()
    card.close()


def test_a_nested_transaction_does_not_read_the_card_again(source: CardSource) -> None:
    csp = BaseCsp(source)
    csp.sign_in()
    card_data = csp.card_data
    assert card_data is not None
    meter = card_data.connection.meter
    with card_data.transaction():
        started = meter.apdus  # the freshness read of the outer transaction
        with card_data.transaction():
            md.CardReadFile(card_data, None, "cardcf")
            md.CardReadFile(card_data, "mscp", "cmapfile")
        assert meter.apdus == started
    csp.close()
