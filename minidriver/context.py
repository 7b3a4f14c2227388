"""CARD_DATA, the minidriver context (pvVendorSpecific) and CardAcquireContext/CardDeleteContext.

Smart Card Minidriver Specification v7 §1 (versions, CARD_DATA, context entry points) and §7
(transactions and resets): the session state every other entry point works on lives here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vcard.atr import extended_length
from vcard.host import CardEndpoint, Connection, SmartCardProtocol

from .backends.base import Backend, Container, RoleInfo
from .cache import GLOBAL_CACHE, CacheStore, Freshness, FreshnessCache
from .constants import (
    CARD_DATA_CURRENT_VERSION,
    CARD_SECURE_KEY_INJECTION_NO_CARD_MODE,
    MINIMUM_SUPPORTED_VERSION,
    PinCachePolicyType,
)
from .errors import Scard, ScardError
from .rm import CONSOLE, DEFAULT_IDLE_RESET_SECONDS, CardHandle, ResourceManager, ResourceManagerHub, Session
from .structures import CARD_CACHE_FILE_FORMAT, StructureError
from .transport import connect_inprocess, connect_pcsc

log = logging.getLogger("minidriver.context")
R = TypeVar("R")

# --- CARD_DATA --------------------------------------------------------------------------------


@dataclass
class CardData:
    """CARD_DATA: what the caller fills (version, ATR, card name, handles, cache) plus the context.

    `hScard` is the resource-manager handle; `cache` stands for the
    pfnCspCache* callbacks (None disables caching); `pvVendorSpecific` is the
    minidriver's own context, set by CardAcquireContext.
    """

    dwVersion: int = CARD_DATA_CURRENT_VERSION
    pbAtr: bytes = b""
    pwszCardName: str = "vcard"
    hScard: CardHandle | None = None
    cache: CacheStore | None = GLOBAL_CACHE
    applet: str | None = None  # force "piv" or "gids" instead of probing
    piv_writable: bool = False  # PIV: optional write support (certificates, key generation) with the 9B key
    pvVendorSpecific: Context | None = None
    session_pin_cache: dict[int, bytes] = field(default_factory=dict)  # the CSP's cache: session PINs only
    session: Session = CONSOLE  # the logon session this CSP instance serves
    cache_scope: bytes = CONSOLE.cache_scope  # its data-cache entries' key prefix (shared only in legacy)
    extended: bool | None = None  # extended Lc/Le: None = as the ATR's card capabilities say

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_connection(
        cls,
        connection: Connection,
        version: int = CARD_DATA_CURRENT_VERSION,
        idle_reset_seconds: float | None = DEFAULT_IDLE_RESET_SECONDS,
        clock: Callable[[], float] | None = None,
        cache: CacheStore | None = GLOBAL_CACHE,
        applet: str | None = None,
        piv_writable: bool = False,
        session: Session = CONSOLE,
        hub: ResourceManagerHub | None = None,
        extended: bool | None = None,
        transaction_per_apdu: bool = False,
    ) -> CardData:
        """A CARD_DATA over `connection`; with `hub`, the card's resource manager is shared by
        every session of the process (terminal-server model), else it is this context's own."""
        if hub is not None:
            handle, scope = hub.connect(connection, session), hub.cache_scope(session)
        else:
            rm = ResourceManager(connection, idle_reset_seconds, clock or time.monotonic)
            handle, scope = rm.connect(session=session), session.cache_scope
        handle.transaction_per_apdu = transaction_per_apdu
        return cls(
            version,
            connection.atr,
            "vcard",
            handle,
            cache,
            applet,
            piv_writable,
            session=session,
            cache_scope=scope,
            extended=extended,
        )

    @classmethod
    def connect(cls, reader: str | None = None, delay: float = 0.0, **kwargs: Any) -> CardData:
        """A CARD_DATA for a PC/SC reader (first reader if None), ready for CardAcquireContext."""
        return cls.from_connection(connect_pcsc(reader, delay), **kwargs)

    @classmethod
    def inprocess(cls, card: CardEndpoint, delay: float = 0.0, **kwargs: Any) -> CardData:
        """A CARD_DATA for a card object in this process (no pcscd), counted like a reader."""
        return cls.from_connection(connect_inprocess(card, delay), **kwargs)

    @property
    def connection(self) -> Connection:
        """The PC/SC (or in-process) connection under the handle; its `meter` counts every call."""
        if self.hScard is None:
            raise ScardError(Scard.E_INVALID_HANDLE, "no card handle")
        return self.hScard.connection

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold one SCard transaction across several calls (what the Base CSP does)."""
        if self.hScard is None:
            raise ScardError(Scard.E_INVALID_HANDLE, "no card handle")
        ctx = self.pvVendorSpecific
        if ctx is not None:
            ctx.recover_if_needed(self)
        self.hScard.begin_transaction()
        try:
            if ctx is not None and self.hScard.depth == 1:  # not when nested in the caller's own
                ctx.start_transaction(self)
            yield
        finally:
            if self.hScard.in_transaction:
                self.hScard.end_transaction()
                if ctx is not None and not self.hScard.in_transaction:
                    ctx.transaction_ended()
            elif ctx is not None:
                ctx.transaction_ended()

    def close(self) -> None:
        if self.hScard is not None:
            self.hScard.disconnect()
            self.hScard.connection.close()


# --- the minidriver context ------------------------------------------------------------------


@dataclass
class Agreement:
    secret: bytes


class Context:
    """pvVendorSpecific: the backend, the authentication state and the per-transaction cache view."""

    def __init__(self, backend: Backend, handle: CardHandle, card_data: CardData | None = None) -> None:
        self.backend = backend
        self.card_data = card_data
        self.handle = handle
        self.auth = 0  # PIN_SET this layer authenticated (the card is asked when it can say)
        self.card_id: bytes | None = None
        self.fresh: FreshnessCache | None = None
        self.volatile_cardcf: CARD_CACHE_FILE_FORMAT | None = None
        self.needs_recovery = False
        self.auth_before_reset = 0
        self.agreements: dict[int, Agreement] = {}
        self.parent_window = 0
        self.pin_context = ""
        self._roles: dict[int, RoleInfo] | None = None
        self._containers: dict[int, Container] | None = None
        self.recoveries = 0

    # --- reset handling -------------------------------------------------------------------------
    def card_was_reset(self) -> None:
        """Called when a call sees SCARD_W_RESET_CARD: the card forgot everything."""
        if not self.needs_recovery:
            self.auth_before_reset = self.auth
        self.needs_recovery = True
        self.auth = 0
        self.transaction_ended()
        self.agreements.clear()

    def recover_if_needed(self, card_data: CardData) -> None:
        """After a reset: reconnect, re-select, re-authenticate from cached session PINs.

        Only roles that were authenticated before the reset and whose cache policy
        lets the CSP cache a PIN (Normal/Timed) are restored, and only from a
        session PIN: the minidriver never holds a PIN.
        """
        if not self.needs_recovery:
            return
        self.handle.reconnect()
        self.needs_recovery = False
        self.recoveries += 1
        self.handle.begin_transaction()
        try:
            self.backend.select()
            roles = self.roles(card_data)
            for pin_id, token in list(card_data.session_pin_cache.items()):
                if not self.auth_before_reset >> pin_id & 1:
                    continue
                role = roles.get(pin_id)
                if role is None or int(role.info.PinCachePolicy.PinCachePolicyType) not in (
                    PinCachePolicyType.PinCacheNormal,
                    PinCachePolicyType.PinCacheTimed,
                ):
                    continue
                try:
                    self.backend.verify_session_pin(pin_id, token)
                    self.auth |= 1 << pin_id
                    log.info("role %d re-authenticated from its session PIN after a reset", pin_id)
                except ScardError as error:
                    log.info("session PIN of role %d not accepted after the reset (%s)", pin_id, error.name)
                    card_data.session_pin_cache.pop(pin_id, None)
        finally:
            self.auth_before_reset = 0
            self.handle.end_transaction()

    # --- cache ----------------------------------------------------------------------------------
    def freshness(self, card_data: CardData) -> FreshnessCache | None:
        """The cache as this transaction sees it; reads cardid (once per card session) and cardcf."""
        if card_data.cache is None:
            return None
        if self.fresh is None:
            cardcf = self.read_cardcf()  # first: it also shows whether our application is selected
            if self.card_id is None:
                self.card_id = self.backend.card_id()
            self.fresh = FreshnessCache(card_data.cache, self.card_id, cardcf, card_data.cache_scope)
        return self.fresh

    def read_cardcf(self) -> CARD_CACHE_FILE_FORMAT:
        """The freshness read a transaction starts with (spec §4.4), from the card.

        The context keeps its application selected across transactions: a reset is reported by
        SCardBeginTransaction (SCARD_W_RESET_CARD, then `recover_if_needed` selects again), but
        another program selecting a different application on the same card is reported by nothing.
        So a failed read selects the application and reads once more before giving up.
        """
        if self.volatile_cardcf is not None:
            return self.volatile_cardcf
        raw = self._reselecting(self.backend.read_cardcf)
        try:
            return CARD_CACHE_FILE_FORMAT.unpack(raw)
        except StructureError as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"cardcf: {error}") from error

    def transaction_ended(self) -> None:
        """Out of the transaction the card may change: the cache view and the reads made end."""
        self.fresh = None
        self.backend.forget_reads()

    def _reselecting(self, read: Callable[[], R]) -> R:
        try:
            return read()
        except ScardError as error:
            if error.code in (Scard.W_RESET_CARD, Scard.W_REMOVED_CARD, Scard.E_NO_SMARTCARD):
                raise
            log.info("first read of the transaction failed (%s): selecting the application again", error.name)
            self.backend.select()
            return read()

    def start_transaction(self, card_data: CardData) -> None:
        """The start of a transaction the caller holds across calls (the Base CSP's): the card
        identity and cardcf are read first (spec §4.4), and a failed read selects again."""
        self.transaction_ended()
        self._reselecting(self.backend.refresh_identity)
        self.freshness(card_data)

    def require_writable(self) -> None:
        """Entry points that change the card refuse first on a read-only one (CP_CARD_READ_ONLY)."""
        if self.backend.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")

    def bump(self, pins: bool = False, containers: bool = False, files: bool = False) -> None:
        """Advance cardcf before a write, so every cache (other processes too) sees it as stale."""
        current = self.fresh.cardcf if self.fresh is not None else self.read_cardcf()
        new = current.bumped(pins, containers, files)
        try:
            self.backend.write_cardcf(new.pack())
            self.volatile_cardcf = None
        except ScardError as error:
            if error.code != Scard.E_UNSUPPORTED_FEATURE:
                raise
            self.volatile_cardcf = new  # read-only card: the counters live for this card session
        if self.fresh is not None:
            self.fresh.cardcf = new
        if containers:
            self._containers = None
        if pins:
            self._roles = None

    def cached(self, card_data: CardData, kind: Freshness, name: str, load: Callable[[], bytes]) -> bytes:
        fresh = self.freshness(card_data)
        if fresh is not None:
            data = fresh.get(kind, name)
            if data is not None:
                return data
        data = load()
        if fresh is not None:
            fresh.put(name, data)
        return data

    # --- roles and containers -------------------------------------------------------------------
    def roles(self, card_data: CardData | None = None) -> dict[int, RoleInfo]:
        """The card's PIN roles; the vendor capabilities behind them come from the cache when fresh."""
        if self._roles is None:
            vendor = self.backend.vendor
            if card_data is not None:
                raw = self.cached(
                    card_data,
                    Freshness.PINS,
                    "Cached_VendorCapabilities",
                    lambda: vendor.raw if vendor.loaded else vendor.fetch(),
                )
                if not vendor.loaded:
                    vendor.load(raw)
            self._roles = self.backend.roles()
        return self._roles

    def containers(self, card_data: CardData) -> dict[int, Container]:
        """Every container, from the cache when cardcf says it is still valid."""
        if self._containers is not None and self.fresh is not None:
            return self._containers
        raw = self.cached(
            card_data,
            Freshness.CONTAINERS,
            "Cached_Containers",
            lambda: b"\n".join(container.to_bytes() for container in self.backend.containers()),
        )
        items = [Container.from_bytes(line) for line in raw.split(b"\n") if line]
        self._containers = {container.index: container for container in items}
        return self._containers

    def container(self, card_data: CardData, index: int) -> Container:
        if not 0 <= index <= 0xFF:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"container index {index}")
        found = self.containers(card_data).get(index)
        if found is None:
            raise ScardError(Scard.E_NO_KEY_CONTAINER, f"no container {index}")
        return found

    def authenticated_state(self) -> int:
        self.roles(self.card_data)  # loads the vendor capabilities through the cache
        state = self.backend.authenticated_state()
        if state is not None:
            self.auth = state & ~1
        return self.auth


def context_of(card_data: CardData) -> Context:
    if not isinstance(card_data, CardData):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pCardData is not a CardData")
    ctx = card_data.pvVendorSpecific
    if ctx is None:
        raise ScardError(Scard.E_INVALID_HANDLE, "CardAcquireContext has not been called")
    return ctx


# --- context ----------------------------------------------------------------------------------


def CardAcquireContext(card_data: CardData, dwFlags: int = 0) -> None:
    """Negotiate the version, recognise the card (PIV or GIDS) and build the context."""
    if not isinstance(card_data, CardData):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pCardData")
    if dwFlags & ~CARD_SECURE_KEY_INJECTION_NO_CARD_MODE:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"invalid flags {dwFlags:#x}")
    if dwFlags & CARD_SECURE_KEY_INJECTION_NO_CARD_MODE:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "secure key injection no-card mode is not implemented")
    if card_data.dwVersion < MINIMUM_SUPPORTED_VERSION:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"version {card_data.dwVersion} < 4")
    card_data.dwVersion = min(card_data.dwVersion, CARD_DATA_CURRENT_VERSION)
    atr = card_data.pbAtr
    if not atr or not card_data.pwszCardName:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbAtr and pwszCardName are required")
    if not 2 <= len(atr) <= 0x22 or atr[0] in (0x00, 0xFF):
        raise ScardError(Scard.E_UNKNOWN_CARD, f"ATR {atr.hex()} is not an ISO 7816-3 ATR")
    handle = card_data.hScard
    if handle is None:
        raise ScardError(Scard.E_INVALID_HANDLE, "hScard")
    from .backends.gids import GidsBackend
    from .backends.piv import PivBackend

    candidates: list[type[Backend]] = [PivBackend, GidsBackend]
    if card_data.applet is not None:
        candidates = [cls for cls in candidates if cls.name == card_data.applet]
    # Extended Lc/Le when the ATR's card capabilities offer them (ISO 7816-4 §8.1.1.2.7): an
    # RSA-2048 signature or a certificate is then one APDU, not a chain and GET RESPONSEs.
    extended = extended_length(atr) if card_data.extended is None else card_data.extended
    channel = SmartCardProtocol(handle, extended=extended)
    handle.begin_transaction()
    try:
        for backend_class in candidates:
            if backend_class.probe(channel):
                backend = (
                    PivBackend(channel, writable=card_data.piv_writable)
                    if backend_class is PivBackend
                    else backend_class(channel)
                )
                break
        else:
            raise ScardError(Scard.E_UNKNOWN_CARD, "neither a PIV nor a GIDS application answers")
    finally:
        handle.end_transaction()
    card_data.pvVendorSpecific = Context(backend, handle, card_data)
    log.info("CardAcquireContext: %s card, CARD_DATA version %d", backend.name, card_data.dwVersion)


def CardDeleteContext(card_data: CardData) -> None:
    """Free the context. No transaction (the card may already be gone)."""
    ctx = context_of(card_data)
    ctx.agreements.clear()
    card_data.pvVendorSpecific = None
