"""Windows' five-second rule through the real pcscd: an idle transaction on card 1 must not block
sign-ins on card 1 or card 2 for longer than five seconds (vcard.transport.idle_reset).

Two `multi-pin` cards (PIV, the Windows-like profile with `idle_reinsert_seconds = 5`) sit in
"Virtual PCD 00 00" (alice) and "Virtual PCD 00 01" (bob), each with a P-256 key and certificate
in slot 9A. Client A connects to card 1, begins a transaction, sends one APDU and idles for 20 s.
One second later two clients B sign with `pkcs11-tool --sign`: one with alice's key on card 1, one
with bob's key on card 2. OpenSC's slot scan connects to every card, so both wait for card 1.

With the option on, both signatures are made within 5 s + B's own time (measured beforehand on
the idle cards) + pcscd's presence poll; with it off (`vcard run --idle-reinsert 0`) both wait
for the whole 20 s, until A ends its transaction.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import CardProcess, require_clients

from vcard.host import Disposition, PcscConnection, PcscError
from vcard.host.readers import ReaderMonitor

pytestmark = pytest.mark.integration

MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
PIN = "123456"
HOLD = 20.0
IDLE_LIMIT = 5.0
START_GAP = 1.0  # B starts this long after A began its transaction
# pcscd sees the card leave at its next presence poll (0.4 s) and back at the one after; one
# poll more for scheduling on a loaded 2-core machine
PCSCD_SLACK = 1.2
SELECT_PIV = bytes.fromhex("00A4040009A0000003080000100000")
USERS = ("alice", "bob")

require_clients(
    None
    if shutil.which("pkcs11-tool") and shutil.which("yubico-piv-tool") and Path(MODULE).exists()
    else "OpenSC (pkcs11-tool, opensc-pkcs11.so) or yubico-piv-tool missing"
)

CardFactory = Callable[..., CardProcess]


@dataclass
class Outcome:
    user: str
    seconds: float
    code: int
    output: str
    attempts: int = 1


class Clients:
    """yubico-piv-tool and pkcs11-tool with a private HOME and OpenSC's file cache off."""

    def __init__(self, home: Path) -> None:
        self.home = home
        conf = home / "opensc.conf"
        conf.write_text("app default {\n  framework pkcs15 { use_file_caching = no; }\n}\n")
        self.env = {**os.environ, "HOME": str(home), "OPENSC_CONF": str(conf)}
        (home / "digest").write_bytes(bytes(range(32)))

    def run(self, *args: str) -> tuple[int, str]:
        result = subprocess.run(args, env=self.env, capture_output=True, timeout=120, cwd=self.home)
        return result.returncode, (result.stdout + result.stderr).decode(errors="replace")

    def ok(self, *args: str) -> str:
        code, output = self.run(*args)
        assert code == 0, f"`{' '.join(args)}` exited {code}:\n{output}"
        return output

    def provision(self, reader: str, user: str) -> None:
        """A P-256 key generated in 9A and a certificate for it naming `user` (OpenSC's token label)."""
        public_pem = self.home / f"{user}.pub"
        self.ok("yubico-piv-tool", "-r", reader, "-a", "generate", "-s", "9a", "-A", "ECCP256",
                "-o", str(public_pem))  # fmt: skip
        public_key = serialization.load_pem_public_key(public_pem.read_bytes())
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        issuer = ec.generate_private_key(ec.SECP256R1())  # the certificate only has to name the key
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer")]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(issuer, hashes.SHA256())
        )
        cert_pem = self.home / f"{user}.crt"
        cert_pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        self.ok("yubico-piv-tool", "-r", reader, "-a", "import-certificate", "-s", "9a", "-i", str(cert_pem))

    def sign(self, user: str, reader: str | None = None) -> Outcome:
        """`pkcs11-tool --sign` with `user`'s key (login, ECDSA of a 32-byte digest), timed.

        With `reader`, behave like a sign-in screen: when the token vanished under the first
        attempt (the card was taken out and put back), wait for the card to be back in `reader`
        (SCardGetStatusChange, no polling) and sign once more. The time covers both attempts.
        """
        started = time.monotonic()
        code, output = self._sign(user)
        attempts = 1
        if code != 0 and reader is not None and "No slot with token" in output:
            wait_for_card(reader, timeout=5.0)
            code, output = self._sign(user)
            attempts = 2
        return Outcome(user, time.monotonic() - started, code, output, attempts)

    def _sign(self, user: str) -> tuple[int, str]:
        return self.run(
            "pkcs11-tool", "--module", MODULE, "--token-label", user, "--login", "--pin", PIN,
            "--sign", "--mechanism", "ECDSA", "--id", "01",
            "--input-file", "digest", "--output-file", f"{user}.sig",
        )  # fmt: skip


def wait_for_card(reader: str, timeout: float) -> None:
    """Return once `reader` holds a card (fail after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    with ReaderMonitor() as monitor:
        states = monitor.snapshot()
        while not states[reader].present:
            left = deadline - time.monotonic()
            assert left > 0, f"no card back in {reader!r} within {timeout} s"
            changed = monitor.wait(states, timeout=left)
            assert changed is not None
            states = changed


class Holder:
    """Client A: a transaction on card 1, one APDU, then idle until `release` or HOLD seconds."""

    def __init__(self, reader: str) -> None:
        self.connection = PcscConnection(reader, disposition=Disposition.LEAVE_CARD)
        self.release = threading.Event()
        self.end_error: PcscError | None = None
        self.connection.begin_transaction()
        self.connection.transmit(SELECT_PIV)
        self.began = time.monotonic()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        self.release.wait(HOLD)
        try:
            self.connection.end_transaction()
        except PcscError as error:  # the card was taken out under the transaction
            self.end_error = error
        self.ended = time.monotonic()
        self.connection.close()

    def finish(self) -> None:
        self.release.set()
        self._thread.join(10)


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    return Clients(tmp_path)


def start_cards(start_card: CardFactory, clients: Clients, idle_reinsert: str) -> list[str]:
    readers = []
    for slot, user in enumerate(USERS):
        card = start_card("multi-pin", slot, ("--idle-reinsert", idle_reinsert))
        clients.provision(card.reader, user)
        readers.append(card.reader)
    return readers


def signatures_while_held(clients: Clients, reader: str, wait_for_b: bool) -> tuple[list[Outcome], Holder]:
    """Both users sign while A holds card 1; returns their outcomes (started START_GAP after A)."""
    holder = Holder(reader)
    outcomes: list[Outcome] = []
    try:
        time.sleep(START_GAP)
        # alice's card is the one taken out and put back: she signs like a sign-in screen (retry once
        # the card is back); bob's card stays in, so he must succeed at the first attempt
        retry = {"alice": reader, "bob": None}
        threads = [
            threading.Thread(target=lambda u=user: outcomes.append(clients.sign(u, retry[u])))
            for user in USERS
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HOLD + 60)
    finally:
        if wait_for_b:
            holder.finish()
    return sorted(outcomes, key=lambda outcome: outcome.user), holder


def let_the_cards_settle(readers: list[str]) -> None:
    """Let the idle period after provisioning and `own_times` run out, so that no reinsertion left
    over from them falls into the scenario: after IDLE_LIMIT each card was either taken out and put
    back, or powered down by pcscd (which disarms the card's timer: pcscd powers down a card nobody
    uses, after its grace period). Then wait until both cards are in."""
    time.sleep(IDLE_LIMIT + 1.0)
    for reader in readers:
        wait_for_card(reader, timeout=5.0)


def own_times(clients: Clients) -> dict[str, float]:
    """Each signature's time with nobody holding a card."""
    times = {}
    for user in USERS:
        outcome = clients.sign(user)
        assert outcome.code == 0, outcome.output
        times[user] = outcome.seconds
    return times


def test_idle_transaction_released_after_five_seconds(start_card: CardFactory, clients: Clients) -> None:
    readers = start_cards(start_card, clients, str(IDLE_LIMIT))
    alone = own_times(clients)
    let_the_cards_settle(readers)
    outcomes, holder = signatures_while_held(clients, readers[0], wait_for_b=True)
    report = {
        o.user: f"{o.seconds:.2f} s in {o.attempts} attempt(s) (alone {alone[o.user]:.2f} s)"
        for o in outcomes
    }
    for outcome in outcomes:
        assert outcome.code == 0, f"{outcome.user}: {outcome.output}"
        limit = IDLE_LIMIT - START_GAP + alone[outcome.user] + PCSCD_SLACK
        assert outcome.seconds <= limit, f"{outcome.user} waited too long: {report}"
    # A's transaction was taken from it: the card left the reader under it
    assert holder.end_error is not None, "A's transaction survived the idle reinsertion"
    print("five-second rule on:", report, "A:", holder.end_error)


def test_idle_transaction_blocks_everyone_with_the_option_off(
    start_card: CardFactory, clients: Clients
) -> None:
    readers = start_cards(start_card, clients, "0")
    alone = own_times(clients)
    outcomes, holder = signatures_while_held(clients, readers[0], wait_for_b=False)
    report = {
        o.user: f"{o.seconds:.2f} s in {o.attempts} attempt(s) (alone {alone[o.user]:.2f} s)"
        for o in outcomes
    }
    for outcome in outcomes:
        assert outcome.code == 0, f"{outcome.user}: {outcome.output}"
        # blocked until A's 20 s were over, whatever card B used
        assert outcome.seconds >= HOLD - START_GAP - 0.5, f"{outcome.user} was not blocked: {report}"
    holder.finish()
    assert holder.end_error is None, f"A's transaction ended with {holder.end_error}"
    print("five-second rule off:", report)
