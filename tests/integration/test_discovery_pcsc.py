"""Windows discovery through the real pcscd: a PIV card and a GIDS card in two vpcd readers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import CardFactory

from signin.discovery import GIDS, PIV, discover
from vcard.cli import main
from vcard.host import PcscConnection

pytestmark = pytest.mark.integration


def test_discovery_through_pcscd_binds_piv_and_gids(start_card: CardFactory) -> None:
    piv_card = start_card("piv", 0)
    gids_card = start_card("tpm-vsc", 1)

    with PcscConnection(piv_card.reader) as connection:
        result = discover(connection)
    assert result.reader == piv_card.reader and result.binding == PIV, result.reason
    assert [step.sw for step in result.steps if step.name == "select PIV AID"] == [0x9000]
    sent = [step for step in result.steps if step.command is not None]
    calls = result.meter["calls"]
    assert calls["SCardTransmit"] == len(sent)
    assert calls["SCardConnect"] == calls["SCardStatus"] == 1

    answer = CliRunner().invoke(main, ["discover", "--reader", gids_card.reader, "--json"])
    assert answer.exit_code == 0, answer.output
    document = json.loads(answer.output)
    assert document["binding"] == GIDS and document["reader"] == gids_card.reader
    assert document["atr"].startswith("3B8D0180FBA000000397425446590")
    assert [step["sw"] for step in document["steps"] if step["step"] == "select GIDS AID"] == ["9000"]
    assert document["meter"]["calls"]["SCardDisconnect"] == 1
