"""Certificate propagation in-process: a GIDS card read through the minidriver layer, copied into a
real NSS database (certutil) and a PEM directory; idempotence, the index rule, removal policies,
reader events, and clean errors for stores the code cannot use."""

from __future__ import annotations

import datetime
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

import minidriver as md
from minidriver.cache import GlobalCache
from minidriver.constants import CARD_FILE_ACCESS_CONDITION, PIN_SET_ALL_ROLES, ROLE_USER
from signin.ca import certificate_for
from signin.ts.certprop import (
    CardCertificate,
    CardContents,
    CertPropService,
    Propagator,
    RemovalPolicy,
    read_card,
)
from signin.ts.stores import NssStore, PemDirectory, StoreError, Tags, entry_for, index_of, open_store
from vcard.cli import main
from vcard.host.readers import ReaderState
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import provision_gids

needs_certutil = pytest.mark.skipif(
    shutil.which("certutil") is None, reason="certutil (libnss3-tools) missing"
)
READER = "Virtual PCD 00 00"


def make_root(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def gids_card() -> Iterator[Any]:
    """A GIDS card with kxc00, ksc01 and an msroots bag of one root, as a Windows enrolment leaves it."""
    virtual = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    provision_gids(card_data)
    root = x509.load_der_x509_certificate(make_root("Card Root CA"))
    md.CardAuthenticateEx(card_data, ROLE_USER, 0, b"123456")
    md.CardCreateFile(card_data, "mscp", "msroots", 0, CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc)
    md.CardWriteFile(card_data, "mscp", "msroots", 0, pkcs7.serialize_certificates([root], Encoding.DER))
    md.CardDeauthenticateEx(card_data, PIN_SET_ALL_ROLES, 0)
    md.CardDeleteContext(card_data)
    yield virtual.card
    virtual.close()


def acquire(card: Any) -> Any:
    card_data = md.CardData.inprocess(card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    return card_data


@pytest.fixture
def nssdb(tmp_path: Path) -> Path:
    if shutil.which("certutil") is None:
        pytest.skip("certutil (libnss3-tools) missing")
    directory = tmp_path / "nssdb"
    directory.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True)
    return directory


def certutil_listing(directory: Path) -> dict[str, str]:
    """Nickname -> trust flags, as `certutil -L` prints them."""
    output = subprocess.run(
        ["certutil", "-L", "-d", f"sql:{directory}"], capture_output=True, text=True, check=True
    ).stdout
    rows = {}
    for line in output.splitlines()[4:]:
        if line.strip():
            nick, trust = line.rsplit(None, 1)
            rows[nick.strip()] = trust
    return rows


def test_read_card_returns_every_certificate_and_the_roots(gids_card: Any) -> None:
    contents = read_card(acquire(gids_card))
    assert len(contents.card_id) == 32  # 16-byte card ID, hex
    files = {(c.file, c.root) for c in contents.certificates}
    assert files == {("kxc00", False), ("ksc01", False), ("msroots", True)}
    subjects = {x509.load_der_x509_certificate(c.der).subject.rfc4514_string() for c in contents.certificates}
    assert subjects == {"CN=gids kxc00", "CN=gids ksc01", "CN=Card Root CA"}


@needs_certutil
def test_nss_propagation_tags_trust_and_no_keys(gids_card: Any, nssdb: Path) -> None:
    contents = read_card(acquire(gids_card))
    propagator = Propagator(NssStore(nssdb))
    outcome = propagator.inserted(READER, contents)
    assert (outcome.added, outcome.replaced, outcome.unchanged) == (3, 0, 0)
    listing = certutil_listing(nssdb)
    assert len(listing) == 3, listing
    by_label = {nick.split(" [")[0]: (nick, trust) for nick, trust in listing.items()}
    _root_nick, root_trust = by_label["Card Root CA"]
    assert root_trust == "CT,C,C"  # a trust anchor
    user_nick, user_trust = by_label["gids kxc00"]
    assert user_trust == ",,"  # a user certificate, no trust and no key
    assert f"card={contents.card_id}" in user_nick and f"reader={READER}" in user_nick
    assert "file=kxc00" in user_nick and "container=" in user_nick
    # keys never exported: the database holds no key at all
    keys = subprocess.run(["certutil", "-K", "-d", f"sql:{nssdb}"], capture_output=True, text=True)
    assert "no keys found" in (keys.stdout + keys.stderr)
    # the stored certificate is the card's
    der = subprocess.run(["certutil", "-L", "-d", f"sql:{nssdb}", "-n", user_nick, "-r"], capture_output=True)
    kxc = next(c.der for c in contents.certificates if c.file == "kxc00")
    assert der.stdout == kxc


@pytest.mark.parametrize("kind", ["nss", "pem"])
def test_reinsertion_is_idempotent_and_replacement_follows_the_index(
    gids_card: Any, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = NssStore(request.getfixturevalue("nssdb")) if kind == "nss" else PemDirectory(tmp_path / "pem")
    propagator = Propagator(store)
    contents = read_card(acquire(gids_card))
    propagator.inserted(READER, contents)
    first = sorted(store.entries(), key=lambda e: (e.index, e.root))
    for _ in range(3):
        propagator.removed(READER)
        again = propagator.inserted(READER, contents)
        assert (again.added, again.replaced, again.unchanged) == (0, 0, 3)
    assert sorted(store.entries(), key=lambda e: (e.index, e.root)) == first

    # the same card in another reader: same certificates, new tag -> replaced in place, no duplicate
    moved = propagator.inserted("Virtual PCD 00 01", contents)
    assert (moved.added, moved.replaced) == (0, 3)
    assert {e.tags.reader for e in store.entries()} == {"Virtual PCD 00 01"}

    # a new certificate with the same subject and issuer replaces the stored one (Windows' cache index)
    old = next(c for c in contents.certificates if c.file == "kxc00")
    renewed_der = certificate_for(ec.generate_private_key(ec.SECP256R1()).public_key(), "gids kxc00")
    assert renewed_der != old.der
    renewed = CardContents(
        contents.card_id,
        tuple(
            CardCertificate(renewed_der, c.container, c.file, c.root) if c.file == "kxc00" else c
            for c in contents.certificates
        ),
    )
    outcome = propagator.inserted("Virtual PCD 00 01", renewed)
    assert (outcome.added, outcome.replaced, outcome.unchanged) == (0, 1, 2)
    stored = {e.tags.file: e.der for e in store.entries()}
    assert len(store.entries()) == 3
    assert stored["kxc00"] == renewed_der


@pytest.mark.parametrize("kind", ["nss", "pem"])
def test_awkward_reader_names_stay_idempotent(
    gids_card: Any, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A reader name with NSS's token separator, commas, brackets and a line break."""
    store = NssStore(request.getfixturevalue("nssdb")) if kind == "nss" else PemDirectory(tmp_path / "pem")
    propagator = Propagator(store)
    reader = "ACME: Reader, [model]\n 00  00"
    contents = read_card(acquire(gids_card))
    assert propagator.inserted(reader, contents).added == 3
    again = propagator.inserted(reader, contents)
    assert (again.added, again.replaced, again.unchanged) == (0, 0, 3)
    assert {e.tags.reader for e in store.entries()} == {"ACME_ Reader_ [model_ 00 00"}


@pytest.mark.parametrize("kind", ["nss", "pem"])
def test_removal_policy(gids_card: Any, kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    contents = read_card(acquire(gids_card))
    for policy, left in ((RemovalPolicy.KEEP, 3), (RemovalPolicy.REMOVE, 1)):
        directory = tmp_path / policy.value
        if kind == "nss":
            directory.mkdir()
            subprocess.run(["certutil", "-N", "-d", f"sql:{directory}", "--empty-password"], check=True)
            store: Any = NssStore(directory)
        else:
            store = PemDirectory(directory)
        propagator = Propagator(store, policy)
        propagator.inserted(READER, contents)
        outcome = propagator.removed(READER)
        assert outcome.removed == 3 - left
        entries = store.entries()
        assert len(entries) == left
        if policy is RemovalPolicy.REMOVE:
            assert [e.root for e in entries] == [True]  # trust anchors stay
    if kind == "nss":
        request.getfixturevalue("nssdb")  # certutil present (skips otherwise)


def test_pem_directory_modes_and_headers(gids_card: Any, tmp_path: Path) -> None:
    store = PemDirectory(tmp_path / "pem")
    Propagator(store).inserted(READER, read_card(acquire(gids_card)))
    assert stat.S_IMODE((tmp_path / "pem").stat().st_mode) == 0o700
    files = sorted((tmp_path / "pem").rglob("*.pem"))
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert f"Reader: {READER}\n" in text and "Card-ID: " in text
        x509.load_pem_x509_certificate(text.encode())  # OpenSSL-readable despite the headers
    assert len(list((tmp_path / "pem" / "anchors").glob("*.pem"))) == 1


def test_pem_directory_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    store = PemDirectory(tmp_path / "pem")
    bad = tmp_path / "pem" / "certs" / "0123.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(StoreError, match=r"0123\.pem: not a certprop entry"):
        store.entries()
    assert bad.read_text() == "not a certificate\n"  # refused, never rewritten


def test_index_rule_subject_then_ski_then_none() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")])

    def build(subject: x509.Name, ski: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if ski:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
            )
        return builder.sign(key, hashes.SHA256())

    named = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    # same subject + issuer: same index whatever the rest (a renewed certificate replaces the old)
    assert index_of(build(named, False)) == index_of(build(named, True))
    assert index_of(build(x509.Name([]), True)) is not None
    assert index_of(build(x509.Name([]), True)) != index_of(build(named, True))
    assert index_of(build(x509.Name([]), False)) is None
    der = build(x509.Name([]), False).public_bytes(Encoding.DER)
    assert entry_for(der, Tags("id", "c", READER, "kxc00"), False) is None


def test_store_specs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="only NSS sql: databases"):
        open_store(f"dbm:{tmp_path}")
    if shutil.which("certutil"):
        with pytest.raises(StoreError, match=r"no cert9\.db; create one with `certutil -N"):
            open_store(f"sql:{tmp_path}")
        with pytest.raises(StoreError, match="no such directory"):
            open_store(f"sql:{tmp_path / 'missing'}")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is not a directory"):
        open_store(str(tmp_path / "file"))


def test_cli_reports_a_bad_store_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certprop", "--store", f"dbm:{tmp_path}"])
    assert result.exit_code == 1
    assert "Error: --store dbm:" in result.output and "Traceback" not in result.output


class FakeMonitor:
    """Plays a scripted sequence of reader states; None ends the run like SCardCancel."""

    def __init__(self, states: list[dict[str, ReaderState] | None]) -> None:
        self.states = states
        self.closed = False

    def snapshot(self) -> dict[str, ReaderState]:
        first = self.states.pop(0)
        assert first is not None
        return first

    def wait(self, _previous: dict[str, ReaderState]) -> dict[str, ReaderState] | None:
        return self.states.pop(0)

    def cancel(self) -> None:
        self.states = [None]

    def close(self) -> None:
        self.closed = True


def state(present: bool, events: int) -> dict[str, ReaderState]:
    return {READER: ReaderState(READER, (events << 16) | (0x20 if present else 0x10), b"")}


def test_service_follows_insertion_removal_and_a_missed_swap(tmp_path: Path) -> None:
    """Insertion, removal, and a card out and back in between two waits (counter +2, still present)."""
    store = PemDirectory(tmp_path / "pem")
    reads: list[str] = []
    root = make_root("R")

    def read(reader: str) -> CardContents:
        reads.append(reader)
        return CardContents("ab" * 16, (CardCertificate(root, "msroots", "msroots", True),))

    monitor = FakeMonitor(
        [state(False, 0), state(True, 1), state(False, 2), state(True, 3), state(True, 5), None]
    )
    events: list[str] = []
    service = CertPropService(Propagator(store), read, lambda o: events.append(o.event), monitor)  # type: ignore[arg-type]
    service.run()
    assert events == ["inserted", "removed", "inserted", "removed", "inserted"]
    assert reads == [READER] * 3
    assert monitor.closed and len(store.entries()) == 1
