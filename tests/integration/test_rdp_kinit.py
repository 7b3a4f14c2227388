"""`vcard rdp trace` on MIT kinit signing in through OpenSC: its SCard calls by type, PIV and GIDS.

kinit's PKINIT through OpenSC's PKCS#11 module is the Linux client whose round trips a
redirected sign-in would pay; the counts are OpenSC's behaviour, so the test asserts
ranges around what was measured and that every call type is counted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import KDC_USER, CardFactory

from signin import card as card_module
from signin import enroll as enroll_module
from signin.kdc import OPENSC_PKCS11, Kdc
from signin.rdp.calllog import Workload, read_log
from signin.rdp.interposer import run_traced

pytestmark = pytest.mark.integration

USER = KDC_USER
PIN = "123456"
# (SCard calls, APDUs) measured here with the interposer, as ranges: OpenSC's presence
# polling adds or drops a few calls from run to run
# (156 calls / 68 APDUs on PIV, 272 / 94 on GIDS, where OpenSC's GIDS driver opens a
# transaction per file read)
KINIT_CALLS = {"piv": ((140, 175), (60, 78)), "gids": ((245, 300), (85, 105))}


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_kinit_sign_in_call_counts(profile: str, start_card: CardFactory, kdc: Kdc, tmp_path: Path) -> None:
    reader = start_card(profile, 0).reader
    with card_module.open_card(reader=reader, writable=True) as card_data:
        assert card_data.applet == profile
        enroll_module.enroll(card_data, profile, f"{USER}@{kdc.realm}", "windows", PIN.encode(), ca=kdc.ca)
    command = ["kinit", "-X", f"X509_user_identity=PKCS11:{OPENSC_PKCS11}", f"{USER}@{kdc.realm}"]
    run = run_traced(
        command, tmp_path / "kinit.jsonl", stdin=f"{PIN}\n".encode(), quiet=True, base_env=kdc.env
    )
    assert run.exit_code == 0, kdc.log()
    assert f"krbtgt/{kdc.realm}@{kdc.realm}" in kdc.klist()
    work = Workload.from_log(read_log(run.log))
    (low, high), (apdu_low, apdu_high) = KINIT_CALLS[profile]
    assert low <= work.remote_calls <= high, dict(work.calls)
    assert apdu_low <= work.apdus <= apdu_high, work.apdus
    for kind in (
        "SCardEstablishContext",
        "SCardListReaders",
        "SCardConnect",
        "SCardBeginTransaction",
        "SCardTransmit",
        "SCardEndTransaction",
        "SCardDisconnect",
        "SCardReleaseContext",
    ):
        assert work.calls[kind] > 0, kind
    assert work.calls["SCardBeginTransaction"] == work.calls["SCardEndTransaction"]
