"""`vcard certprop` through the real pcscd: a PIV card's certificates reach an NSS database (checked
with `certutil -L`) within a second of insertion, leave it or stay per policy within a second of
removal, no key is ever stored, and 100 insert/remove cycles leave exactly one entry per certificate.

The card is a `piv` card in "Virtual PCD 00 00" with P-256 keys and certificates in 9A and 9C;
it is taken out and put back with SIGUSR1/SIGUSR2 to its `vcard run` process.
"""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from harness import CardProcess, pcsc_connection, require_clients

from vcard.testing.provisioning import PivProvisioner

pytestmark = pytest.mark.integration

require_clients(None if shutil.which("certutil") else "certutil missing: `apt-get install -y libnss3-tools`")

CardFactory = Callable[..., CardProcess]
PROPAGATION_LIMIT = 1.0
CYCLES = 100
SLOTS = {0x9A: "p256", 0x9C: "p256"}


def certutil(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["certutil", "-d", f"sql:{directory}", *args], capture_output=True, check=False)


def listing(directory: Path) -> dict[str, str]:
    """Nickname -> trust flags of every certificate in the database (`certutil -L`)."""
    output = certutil(directory, "-L").stdout.decode()
    rows = {}
    for line in output.splitlines()[4:]:
        if line.strip():
            nick, trust = line.rsplit(None, 1)
            rows[nick.strip()] = trust
    return rows


@pytest.fixture
def nssdb(tmp_path: Path) -> Path:
    directory = tmp_path / "nssdb"
    directory.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True)
    return directory


@pytest.fixture
def piv_card(start_card: CardFactory) -> tuple[CardProcess, list[bytes]]:
    """A PIV card with two certificates; returns the process and the certificates' DER."""
    card = start_card("piv", 0)
    connection = pcsc_connection(card.reader)
    try:
        PivProvisioner(connection).provision(SLOTS)
    finally:
        connection.close()
    return card, read_certificates(card.reader)


def read_certificates(reader: str) -> list[bytes]:
    """The certificates on the card, read over PIV GET DATA (what certprop must copy)."""
    from minidriver import CardAcquireContext, CardData, CardEnumFiles, CardReadFile

    card_data = CardData.connect(reader, idle_reset_seconds=None)
    try:
        CardAcquireContext(card_data, 0)
        names = sorted(name for name in CardEnumFiles(card_data, "mscp") if name[:3] in ("kxc", "ksc"))
        return [CardReadFile(card_data, "mscp", name) for name in names]
    finally:
        card_data.close()


class Service:
    """A running `vcard certprop` whose output lines are collected by a thread."""

    def __init__(self, store: str, policy: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vcard", "certprop", "--store", store, "--on-removal", policy],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, event: str, timeout: float = 10.0) -> str:
        """The next output line, which must report `event`."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"certprop reported no {event!r} within {timeout} s") from None
        assert line.startswith(event + " "), line
        return line

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                "certprop did not stop on SIGTERM (SCardCancel did not end its wait)"
            ) from None
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read()


@contextmanager
def running_service(store: str, policy: str) -> Iterator[Service]:
    service = Service(store, policy)
    try:
        yield service
    finally:
        code, errors = service.stop()
        assert code == 0 and "Traceback" not in errors, errors


def wait_until(check: Callable[[], bool], limit: float) -> float:
    """Seconds until `check()` held (certutil is asked repeatedly); fails after 3 x limit."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit * 3, "the store did not reach the expected state"
        time.sleep(0.02)
    return time.monotonic() - started


def stored_der(directory: Path, nick: str) -> bytes:
    return certutil(directory, "-L", "-n", nick, "-r").stdout


def test_insertion_and_removal_within_a_second(
    piv_card: tuple[CardProcess, list[bytes]], nssdb: Path
) -> None:
    card, certificates = piv_card
    with running_service(f"sql:{nssdb}", "remove") as service:
        line = service.expect("inserted")  # the card already in the reader at start
        assert "added=2" in line, line
        rows = listing(nssdb)
        assert len(rows) == 2 and all(trust == ",," for trust in rows.values()), rows
        assert sorted(stored_der(nssdb, nick) for nick in rows) == sorted(certificates)
        assert all(f"reader={card.reader}" in nick and "card=" in nick for nick in rows)
        subjects = {x509.load_der_x509_certificate(der).subject for der in certificates}
        assert len(subjects) == 2

        card.signal(signal.SIGUSR1)
        removed = wait_until(lambda: not listing(nssdb), PROPAGATION_LIMIT)
        assert "removed=2" in service.expect("removed")
        card.signal(signal.SIGUSR2)
        inserted = wait_until(lambda: len(listing(nssdb)) == 2, PROPAGATION_LIMIT)
        service.expect("inserted")
        print(f"certprop: removed from the store {removed:.2f} s, back {inserted:.2f} s after the event")
        assert removed <= PROPAGATION_LIMIT and inserted <= PROPAGATION_LIMIT

    # only certificates: no key was ever written to the database
    keys = certutil(nssdb, "-K")
    assert b"no keys found" in keys.stdout + keys.stderr, keys


def test_once_into_a_pem_directory(piv_card: tuple[CardProcess, list[bytes]], tmp_path: Path) -> None:
    card, certificates = piv_card
    store = tmp_path / "pem"
    result = subprocess.run(
        [sys.executable, "-m", "vcard", "certprop", "--store", f"pem:{store}", "--once"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"inserted reader={card.reader!r}") and "added=2" in result.stdout
    files = sorted((store / "certs").glob("*.pem"))
    assert len(files) == 2
    stored = [x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER) for path in files]
    assert sorted(stored) == sorted(certificates)


def test_keep_policy_and_a_hundred_cycles_leave_one_entry_per_certificate(
    piv_card: tuple[CardProcess, list[bytes]], nssdb: Path
) -> None:
    card, certificates = piv_card
    with running_service(f"sql:{nssdb}", "keep") as service:
        assert "added=2" in service.expect("inserted")
        first = listing(nssdb)
        for cycle in range(CYCLES):
            card.signal(signal.SIGUSR1)
            assert "removed=0" in service.expect("removed"), cycle
            if cycle == 0:
                assert listing(nssdb) == first  # kept after removal (Windows' default)
            card.signal(signal.SIGUSR2)
            line = service.expect("inserted")
            assert "added=0 replaced=0 unchanged=2" in line, (cycle, line)
    rows = listing(nssdb)
    assert rows == first
    assert sorted(stored_der(nssdb, nick) for nick in rows) == sorted(certificates)
