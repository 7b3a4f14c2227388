"""Certificate propagation: copy a card's certificates (never its keys) into a certificate store.

What Windows' Certificate Propagation service (CertPropSvc) does in a user's session,
and in a remote-desktop session with a redirected reader, where a user's card
certificates end up in the remote session's profile (Microsoft, "How Smart Card Sign-in
Works in Windows", steps 18-21; "Certificate Propagation Service"):

* it follows the readers and reacts to insertion and removal (here:
  SCardGetStatusChange through vcard.host.readers, ended with SCardCancel; no polling);
* on insertion it reads every container's certificate through the minidriver
  (`mscp/cmapfile`, `mscp/kxcNN`, `mscp/kscNN`, the Windows file names) and copies it
  into the user's store, and the card's root certificates (`mscp/msroots`) into the
  trust anchors, as root propagation does;
* on removal the propagated certificates stay (Windows' default: "they remain in the
  user's certificate store"), or, with the "clean up certificates on smart card removal"
  policy, the user certificates of that card are removed (trust anchors stay);
* it is idempotent: a certificate already stored is left alone, one with the same index
  (subject + issuer, see signin.ts.stores) is replaced, so re-inserting a card never
  duplicates an entry and a certificate replaced on the card replaces the stored one.

Only files that hold certificates are read; no key is read or exported, and the card is
never authenticated.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from minidriver import CardAcquireContext, CardData, CardEnumFiles, CardReadFile, ScardError
from minidriver.structures import StructureError, unpack_cmapfile
from vcard.host import PcscError
from vcard.host.readers import ReaderMonitor, ReaderState

from .stores import CertStore, Tags, entry_for

log = logging.getLogger("signin.ts.certprop")

BASE_CSP_DIR = "mscp"
CONTAINER_MAP = "cmapfile"
ROOT_STORE = "msroots"
CARD_ID = "cardid"
MAX_CONTAINERS = 255


class RemovalPolicy(enum.Enum):
    """What happens to a card's propagated certificates when the card leaves the reader."""

    KEEP = "keep"  # Windows' default
    REMOVE = "remove"  # "Turn on certificate propagation ... clean up certificates on smart card removal"


@dataclass(frozen=True)
class CardCertificate:
    der: bytes
    container: str
    file: str
    root: bool


@dataclass(frozen=True)
class CardContents:
    card_id: str
    certificates: tuple[CardCertificate, ...]


class CardReadError(Exception):
    """The card could not be read (it left the reader, or it is not a minidriver card)."""


def read_card(card_data: Any) -> CardContents:
    """The card ID, each container's certificates and the root certificates of an acquired CARD_DATA."""
    card_id = CardReadFile(card_data, None, CARD_ID).hex()
    files = set(CardEnumFiles(card_data, BASE_CSP_DIR))
    certificates: list[CardCertificate] = []
    records = (
        unpack_cmapfile(CardReadFile(card_data, BASE_CSP_DIR, CONTAINER_MAP))
        if CONTAINER_MAP in files
        else []
    )
    for number, record in enumerate(records[:MAX_CONTAINERS]):
        if not record.is_valid:
            continue
        for prefix in ("kxc", "ksc"):
            name = f"{prefix}{number:02d}"
            if name in files:
                der = CardReadFile(card_data, BASE_CSP_DIR, name)
                certificates.append(CardCertificate(der, record.wszGuid or name, name, False))
    if ROOT_STORE in files:
        blob = CardReadFile(card_data, BASE_CSP_DIR, ROOT_STORE)
        for der in _root_certificates(blob):
            certificates.append(CardCertificate(der, ROOT_STORE, ROOT_STORE, True))
    return CardContents(card_id, tuple(certificates))


def _root_certificates(blob: bytes) -> list[bytes]:
    """msroots: a PKCS #7 (certificates only) bag, DER or PEM; an unreadable one is skipped with a warning."""
    loaders = (pkcs7.load_der_pkcs7_certificates, pkcs7.load_pem_pkcs7_certificates)
    for loader in loaders:
        try:
            return [certificate.public_bytes(Encoding.DER) for certificate in loader(blob)]
        except ValueError:
            continue
    log.warning(
        "msroots (%d bytes) is not a PKCS #7 certificate bag; no root certificate propagated", len(blob)
    )
    return []


def read_reader(reader: str) -> CardContents:
    """Connect to the card in `reader` through pcscd and read its certificates."""
    try:
        card_data = CardData.connect(reader, idle_reset_seconds=None)
    except (ScardError, PcscError) as error:
        raise CardReadError(f"{reader}: cannot connect: {error}") from None
    try:
        CardAcquireContext(card_data, 0)
        return read_card(card_data)
    except (ScardError, PcscError, StructureError) as error:
        raise CardReadError(f"{reader}: cannot read the certificates: {error}") from None
    finally:
        card_data.close()


@dataclass
class Outcome:
    """What one insertion or removal changed in the store."""

    event: str
    reader: str
    card_id: str = ""
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0

    def line(self) -> str:
        counts = " ".join(
            f"{name}={getattr(self, name)}"
            for name in ("added", "replaced", "unchanged", "removed", "skipped")
        )
        card = f" card={self.card_id}" if self.card_id else ""
        return f"{self.event} reader={self.reader!r}{card} {counts}"


@dataclass
class Propagator:
    """Applies insertions and removals to a store (no PC/SC here: see CertPropService)."""

    store: CertStore
    policy: RemovalPolicy = RemovalPolicy.KEEP
    cards: dict[str, str] = field(default_factory=dict)  # reader -> card ID of the card in it

    def inserted(self, reader: str, contents: CardContents) -> Outcome:
        outcome = Outcome("inserted", reader, contents.card_id)
        self.cards[reader] = contents.card_id
        stored = {(entry.index, entry.root): entry for entry in self.store.entries()}
        for certificate in contents.certificates:
            tags = Tags.of(contents.card_id, certificate.container, reader, certificate.file)
            try:
                entry = entry_for(certificate.der, tags, certificate.root)
            except ValueError as error:
                log.warning("%s %s: not a certificate (%s); skipped", reader, certificate.file, error)
                outcome.skipped += 1
                continue
            if entry is None:
                # no subject and no subject key identifier: Windows creates no cache entry either
                outcome.skipped += 1
                continue
            old = stored.get((entry.index, entry.root))
            if old == entry:
                outcome.unchanged += 1
                continue
            if old is not None:
                self.store.delete(old)
                outcome.replaced += 1
            else:
                outcome.added += 1
            self.store.add(entry)
            stored[(entry.index, entry.root)] = entry
        return outcome

    def removed(self, reader: str) -> Outcome:
        card_id = self.cards.pop(reader, "")
        outcome = Outcome("removed", reader, card_id)
        if self.policy is RemovalPolicy.REMOVE and card_id:
            for entry in self.store.entries():
                if not entry.root and entry.tags.card_id == card_id:
                    self.store.delete(entry)
                    outcome.removed += 1
        return outcome


class CertPropService:
    """Follows every reader and propagates on insertion / cleans up on removal until `stop()`.

    `read` turns a reader name into the card's certificates (read_reader through pcscd by
    default); `report` gets one Outcome per event (the CLI prints them).
    """

    def __init__(
        self,
        propagator: Propagator,
        read: Callable[[str], CardContents] = read_reader,
        report: Callable[[Outcome], None] = lambda _outcome: None,
        monitor: ReaderMonitor | None = None,
    ) -> None:
        self.propagator = propagator
        self.read = read
        self.report = report
        self.monitor = monitor if monitor is not None else ReaderMonitor()
        self.ready = threading.Event()

    def run(self) -> None:
        """Propagate the cards already inserted, then react to changes until stopped."""
        try:
            previous: dict[str, ReaderState] = {}
            current: dict[str, ReaderState] | None = self.monitor.snapshot()
            while current is not None:
                self._apply(previous, current)
                self.ready.set()
                previous = current
                current = self.monitor.wait(previous)
        finally:
            self.ready.set()
            self.monitor.close()

    def stop(self) -> None:
        """End `run` from another thread or a signal handler (SCardCancel)."""
        self.monitor.cancel()

    def _apply(self, previous: dict[str, ReaderState], current: dict[str, ReaderState]) -> None:
        for reader in sorted(set(previous) | set(current)):
            before = previous.get(reader)
            after = current.get(reader)
            was_in = before is not None and before.present
            is_in = after is not None and after.present
            # the event counter moves when a card left and came back between two waits
            swapped = (
                was_in
                and is_in
                and before is not None
                and after is not None
                and before.events != after.events
            )
            if was_in and (not is_in or swapped):
                self.report(self.propagator.removed(reader))
            if is_in and (not was_in or swapped):
                self._insert(reader)

    def _insert(self, reader: str) -> None:
        try:
            contents = self.read(reader)
        except CardReadError as error:
            log.warning("%s", error)
            self.report(Outcome("unreadable", reader))
            return
        self.report(self.propagator.inserted(reader, contents))
