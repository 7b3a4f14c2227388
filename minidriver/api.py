"""The minidriver entry points, as module-level functions with the spec's names.

Each function takes a `CardData` first, then the spec's inputs in the spec's
order; out-parameters are returned (a tuple where there are several); failures
raise `ScardError` whose `.code` is the Windows DWORD.

The layer plays both Windows roles above the card: the minidriver (parameter,
flag and version rules; mapping to the card through a backend) and the parts of
the Base CSP that the spec's behaviour depends on (transactions around every
call, the cardcf-stamped data cache, the session-PIN cache used to recover
after a reset). What is modelled and what is not is listed in docs/minidriver.md.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn, ParamSpec, TypeVar

from vcard.host import ApduError, CardEndpoint, Connection, SmartCardProtocol

from .backends.base import Backend, Container, RoleInfo
from .cache import GLOBAL_CACHE, CacheStore, Freshness, FreshnessCache
from .constants import (
    AT_KEYEXCHANGE,
    AT_SIGNATURE,
    BCRYPT_KDF_HASH,
    BCRYPT_KDF_HMAC,
    BCRYPT_KDF_SP80056A_CONCAT,
    BCRYPT_KDF_TLS_PRF,
    CARD_AUTHENTICATE_GENERATE_SESSION_PIN,
    CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE,
    CARD_AUTHENTICATE_PIN_PIN,
    CARD_AUTHENTICATE_SESSION_PIN,
    CARD_BUFFER_SIZE_ONLY,
    CARD_CREATE_CONTAINER_KEY_GEN,
    CARD_CREATE_CONTAINER_KEY_IMPORT,
    CARD_DATA_CURRENT_VERSION,
    CARD_DATA_VALUE_UNKNOWN,
    CARD_PADDING_INFO_PRESENT,
    CARD_PADDING_NONE,
    CARD_PADDING_OAEP,
    CARD_PADDING_PKCS1,
    CARD_PADDING_PSS,
    CARD_PIN_SILENT_CONTEXT,
    CARD_PIN_STRENGTH_PLAINTEXT,
    CARD_RETURN_KEY_HANDLE,
    CARD_SECURE_KEY_INJECTION_NO_CARD_MODE,
    CCP_ASSOCIATED_ECDH_KEY,
    CCP_CONTAINER_INFO,
    CCP_PIN_IDENTIFIER,
    CP_CARD_AUTHENTICATED_STATE,
    CP_CARD_CACHE_MODE,
    CP_CARD_CAPABILITIES,
    CP_CARD_FREE_SPACE,
    CP_CARD_GUID,
    CP_CARD_KEYSIZES,
    CP_CARD_LIST_PINS,
    CP_CARD_PIN_INFO,
    CP_CARD_PIN_STRENGTH_CHANGE,
    CP_CARD_PIN_STRENGTH_UNBLOCK,
    CP_CARD_PIN_STRENGTH_VERIFY,
    CP_CARD_READ_ONLY,
    CP_CARD_SERIAL_NO,
    CP_CHAINING_MODES,
    CP_ENUM_ALGORITHMS,
    CP_KEY_IMPORT_SUPPORT,
    CP_PADDING_SCHEMES,
    CP_PARENT_WINDOW,
    CP_PIN_CONTEXT_STRING,
    CP_SUPPORTS_WIN_X509_ENROLLMENT,
    ECDHE_KEYSPECS,
    ECDSA_KEYSPECS,
    MAX_FILE_NAME_LEN,
    MAX_PINS,
    MINIMUM_SUPPORTED_VERSION,
    PIN_CHANGE_FLAG_CHANGEPIN,
    PIN_CHANGE_FLAG_UNBLOCK,
    PIN_SET_ALL_ROLES,
    ROLE_ADMIN,
    ROLE_EVERYONE,
    ROLE_USER,
    RSA_KEYSPECS,
    PinCachePolicyType,
    PinType,
    szBASE_CSP_DIR,
    szCACHE_FILE,
    szCARD_IDENTIFIER_FILE,
    szCONTAINER_MAP_FILE,
    wszCARD_USER_ADMIN,
    wszCARD_USER_USER,
)
from .errors import Scard, ScardError
from .padding import (
    CALG_NAMES,
    HASH_LENGTHS,
    PaddingError,
    digest_info,
    oaep_unpad,
    pkcs1_type1,
    pkcs1_type2_unpad,
    pss_encode,
)
from .rm import CONSOLE, DEFAULT_IDLE_RESET_SECONDS, CardHandle, ResourceManager, ResourceManagerHub, Session
from .structures import (
    BCRYPT_ECCKEY_BLOB,
    BCRYPT_OAEP_PADDING_INFO,
    BCRYPT_PKCS1_PADDING_INFO,
    BCRYPT_PSS_PADDING_INFO,
    CARD_CACHE_FILE_FORMAT,
    CARD_CAPABILITIES,
    CARD_DERIVE_KEY,
    CARD_DH_AGREEMENT_INFO,
    CARD_FILE_INFO,
    CARD_FREE_SPACE_INFO,
    CARD_KEY_SIZES,
    CARD_RSA_DECRYPT_INFO,
    CARD_SIGNING_INFO,
    CONTAINER_INFO,
    PIN_CACHE_POLICY,
    PIN_INFO,
    PUBLICKEYBLOB,
    StructureError,
)
from .transport import connect_inprocess, connect_pcsc

log = logging.getLogger("minidriver.api")

P = ParamSpec("P")
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
    pvVendorSpecific: _Context | None = None
    session_pin_cache: dict[int, bytes] = field(default_factory=dict)  # the CSP's cache: session PINs only
    session: Session = CONSOLE  # the logon session this CSP instance serves
    cache_scope: bytes = CONSOLE.cache_scope  # its data-cache entries' key prefix (shared only in legacy)

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
    ) -> CardData:
        """A CARD_DATA over `connection`; with `hub`, the card's resource manager is shared by
        every session of the process (terminal-server model), else it is this context's own."""
        if hub is not None:
            handle, scope = hub.connect(connection, session), hub.cache_scope(session)
        else:
            rm = ResourceManager(connection, idle_reset_seconds, clock or time.monotonic)
            handle, scope = rm.connect(session=session), session.cache_scope
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
            yield
        finally:
            if self.hScard.in_transaction:
                self.hScard.end_transaction()
                if ctx is not None and not self.hScard.in_transaction:
                    ctx.fresh = None
            elif ctx is not None:
                ctx.fresh = None

    def close(self) -> None:
        if self.hScard is not None:
            self.hScard.disconnect()
            self.hScard.connection.close()


# --- the minidriver context ------------------------------------------------------------------


@dataclass
class _Agreement:
    secret: bytes


class _Context:
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
        self.agreements: dict[int, _Agreement] = {}
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
        self.fresh = None
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
            if self.card_id is None:
                self.card_id = self.backend.card_id()
            self.fresh = FreshnessCache(
                card_data.cache, self.card_id, self.read_cardcf(), card_data.cache_scope
            )
        return self.fresh

    def read_cardcf(self) -> CARD_CACHE_FILE_FORMAT:
        if self.volatile_cardcf is not None:
            return self.volatile_cardcf
        try:
            return CARD_CACHE_FILE_FORMAT.unpack(self.backend.read_cardcf())
        except StructureError as error:
            raise ScardError(Scard.E_COMM_DATA_LOST, f"cardcf: {error}") from error

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


# --- entry-point machinery --------------------------------------------------------------------


def _context(card_data: CardData) -> _Context:
    if not isinstance(card_data, CardData):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pCardData is not a CardData")
    ctx = card_data.pvVendorSpecific
    if ctx is None:
        raise ScardError(Scard.E_INVALID_HANDLE, "CardAcquireContext has not been called")
    return ctx


def _entry(min_version: int = 4, transacted: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap an entry point: context and version checks, transaction, reset reporting, SW translation."""

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def entry(*args: P.args, **kwargs: P.kwargs) -> R:
            card_data = args[0]
            if not isinstance(card_data, CardData):
                raise ScardError(Scard.E_INVALID_PARAMETER, "pCardData is not a CardData")
            ctx = _context(card_data)
            if card_data.dwVersion < min_version:
                raise ScardError(
                    Scard.E_UNSUPPORTED_FEATURE,
                    f"{function.__name__} needs CARD_DATA version {min_version}",
                )
            if not transacted:
                return function(*args, **kwargs)
            try:
                ctx.recover_if_needed(card_data)
                ctx.handle.begin_transaction()
            except ScardError as error:
                if error.code == Scard.W_RESET_CARD:
                    ctx.card_was_reset()
                raise
            outermost = ctx.handle.depth == 1
            try:
                return function(*args, **kwargs)
            except ScardError as error:
                if error.code == Scard.W_RESET_CARD:
                    ctx.card_was_reset()
                raise
            except ApduError as error:
                raise ScardError(Scard.E_UNEXPECTED, f"{function.__name__}: SW {error.sw:04X}") from error
            finally:
                if ctx.handle.in_transaction:
                    try:
                        ctx.handle.end_transaction()
                    except ScardError as error:
                        if error.code == Scard.W_RESET_CARD:
                            ctx.card_was_reset()
                if outermost and not ctx.handle.in_transaction:
                    ctx.fresh = None

        return entry

    return wrap


def _check_flags(flags: int, allowed: int = 0) -> None:
    if flags & ~allowed:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"invalid flags {flags:#x}")


def _check_version(version: int, current: int) -> None:
    """Versioned structures: 0 counts as 1, newer than we know is a mismatch."""
    if (version or 1) > current:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"structure version {version} > {current}")


def _dword(value: int) -> bytes:
    return struct.pack("<I", value & 0xFFFFFFFF)


def _fit(data: bytes, cb_data: int | None) -> bytes:
    """Get*Property: a buffer too small is ERROR_INSUFFICIENT_BUFFER (the needed size in the message)."""
    if cb_data is not None and cb_data < len(data):
        error = ScardError(Scard.ERROR_INSUFFICIENT_BUFFER, f"need {len(data)} bytes")
        error.needed = len(data)  # type: ignore[attr-defined]
        raise error
    return data


def _role(ctx: _Context, pin_id: int) -> RoleInfo:
    if not isinstance(pin_id, int) or not ROLE_USER <= pin_id < MAX_PINS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"PIN id {pin_id}")
    role = ctx.roles(ctx.card_data).get(pin_id)
    if role is None:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"no PIN {pin_id} on this card")
    return role


def _user_role(user_id: str) -> int:
    if user_id == wszCARD_USER_USER:
        return ROLE_USER
    if user_id == wszCARD_USER_ADMIN:
        return ROLE_ADMIN
    raise ScardError(Scard.E_INVALID_PARAMETER, f"user id {user_id!r}")


def _name(name: str | None, what: str) -> str:
    """A directory or file name: at most 8 ANSI characters legal in Windows names, lowercased (spec 4.1)."""
    if not name:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{what} is required")
    if not isinstance(name, str) or len(name) > MAX_FILE_NAME_LEN or not name.isascii():
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{what} {name!r}: at most 8 ANSI characters")
    if any(ch in name for ch in '\\/:*?"<>|\0'):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{what} {name!r}: character not allowed")
    return name.lower()


def _directory(name: str | None) -> str | None:
    """pszDirectoryName: None (or "") is the root directory."""
    return _name(name, "pszDirectoryName") if name else None


def _path(directory: str | None, name: str | None) -> tuple[str | None, str]:
    """(pszDirectoryName, pszFileName) checked and normalised."""
    return _directory(directory), _name(name, "pszFileName")


# --- context ----------------------------------------------------------------------------------


def CardAcquireContext(card_data: CardData, dwFlags: int = 0) -> None:
    """Negotiate the version, recognise the card (PIV or GIDS) and build the context."""
    if not isinstance(card_data, CardData):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pCardData")
    _check_flags(dwFlags, CARD_SECURE_KEY_INJECTION_NO_CARD_MODE)
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
    channel = SmartCardProtocol(handle)
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
    card_data.pvVendorSpecific = _Context(backend, handle, card_data)
    log.info("CardAcquireContext: %s card, CARD_DATA version %d", backend.name, card_data.dwVersion)


def CardDeleteContext(card_data: CardData) -> None:
    """Free the context. No transaction (the card may already be gone)."""
    ctx = _context(card_data)
    ctx.agreements.clear()
    card_data.pvVendorSpecific = None


@_entry()
def CardQueryCapabilities(card_data: CardData, dwVersion: int = 1) -> CARD_CAPABILITIES:
    _check_version(dwVersion, 1)
    return _context(card_data).backend.capabilities()


# --- containers -------------------------------------------------------------------------------


@_entry()
def CardCreateContainer(
    card_data: CardData, bContainerIndex: int, dwFlags: int, dwKeySpec: int, dwKeySize: int, pbKeyData: bytes
) -> None:
    """CardCreateContainerEx with the container bound to ROLE_USER."""
    _create_container(card_data, bContainerIndex, dwFlags, dwKeySpec, dwKeySize, pbKeyData, ROLE_USER)


@_entry(min_version=7)
def CardCreateContainerEx(
    card_data: CardData,
    bContainerIndex: int,
    dwFlags: int,
    dwKeySpec: int,
    dwKeySize: int,
    pbKeyData: bytes,
    PinId: int,
) -> None:
    _create_container(card_data, bContainerIndex, dwFlags, dwKeySpec, dwKeySize, pbKeyData, PinId)


def _create_container(
    card_data: CardData, index: int, flags: int, key_spec: int, key_size: int, key_data: bytes, pin_id: int
) -> None:
    ctx = _context(card_data)
    if flags not in (CARD_CREATE_CONTAINER_KEY_GEN, CARD_CREATE_CONTAINER_KEY_IMPORT):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags {flags:#x}")
    if not 0 <= index <= 0xFF:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"container index {index}")
    if key_spec not in RSA_KEYSPECS | ECDSA_KEYSPECS | ECDHE_KEYSPECS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {key_spec}")
    if flags == CARD_CREATE_CONTAINER_KEY_IMPORT and not key_data:
        raise ScardError(Scard.E_INVALID_PARAMETER, "import without key data")
    if pin_id == ROLE_ADMIN:
        raise ScardError(Scard.W_SECURITY_VIOLATION, "a key container cannot belong to the admin role")
    if pin_id != ROLE_EVERYONE:
        _role(ctx, pin_id)
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    ctx.freshness(card_data)
    ctx.bump(containers=True, files=True)
    ctx.backend.create_container(index, flags, key_spec, key_size, key_data, pin_id)
    ctx._containers = None


@_entry()
def CardDeleteContainer(card_data: CardData, bContainerIndex: int, dwReserved: int = 0) -> None:
    ctx = _context(card_data)
    if dwReserved:
        raise ScardError(Scard.E_INVALID_PARAMETER, "dwReserved must be 0")
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    ctx.container(card_data, bContainerIndex)
    ctx.bump(containers=True, files=True)
    ctx.backend.delete_container(bContainerIndex)
    ctx._containers = None


@_entry()
def CardGetContainerInfo(
    card_data: CardData, bContainerIndex: int, dwFlags: int = 0, dwVersion: int = 1
) -> CONTAINER_INFO:
    """Public keys of a container: PUBLICKEYBLOB (RSA) or BCRYPT_ECCKEY_BLOB (EC) in the Sig or KeyEx slot."""
    _check_flags(dwFlags)
    _check_version(dwVersion, 1)
    ctx = _context(card_data)
    return _container_info(ctx.container(card_data, bContainerIndex))


def _container_info(container: Container) -> CONTAINER_INFO:
    if container.key_spec in (AT_SIGNATURE, *ECDSA_KEYSPECS):
        return CONTAINER_INFO(1, 0, 0, container.public_key)
    return CONTAINER_INFO(1, 0, 0, b"", 0, container.public_key)


# --- authentication ---------------------------------------------------------------------------


def _verify_pin(ctx: _Context, pin_id: int, pin: bytes) -> None:
    try:
        ctx.backend.verify(pin_id, pin)
    except ScardError as error:
        if error.code in (Scard.W_WRONG_CHV, Scard.W_CHV_BLOCKED):
            ctx.auth &= ~(1 << pin_id)
        raise
    ctx.auth |= 1 << pin_id


@_entry()
def CardAuthenticatePin(card_data: CardData, pwszUserId: str, pbPin: bytes) -> int:
    """Legacy PIN authentication for "user" (or "admin" where the admin is a PIN).

    Returns cAttemptsRemaining, which is CARD_DATA_VALUE_UNKNOWN after a success;
    on failure the count travels in ScardError.attempts_remaining.
    """
    ctx = _context(card_data)
    pin_id = _user_role(pwszUserId)
    if not pbPin:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbPin is empty")
    role = _role(ctx, pin_id)
    if role.challenge:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{pwszUserId} authenticates by challenge-response")
    _verify_pin(ctx, pin_id, bytes(pbPin))
    return CARD_DATA_VALUE_UNKNOWN


@_entry()
def CardGetChallenge(card_data: CardData) -> bytes:
    ctx = _context(card_data)
    _role(ctx, ROLE_ADMIN)
    return ctx.backend.get_challenge(ROLE_ADMIN)


@_entry()
def CardAuthenticateChallenge(card_data: CardData, pbResponseData: bytes) -> int:
    ctx = _context(card_data)
    if not pbResponseData:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbResponseData is empty")
    try:
        ctx.backend.authenticate_challenge(ROLE_ADMIN, bytes(pbResponseData))
    except ScardError as error:
        if error.code == Scard.W_WRONG_CHV:
            ctx.auth &= ~(1 << ROLE_ADMIN)
        raise
    ctx.auth |= 1 << ROLE_ADMIN
    return CARD_DATA_VALUE_UNKNOWN


@_entry()
def CardUnblockPin(
    card_data: CardData,
    pwszUserId: str,
    pbAuthenticationData: bytes,
    pbNewPinData: bytes,
    cRetryCount: int,
    dwFlags: int,
) -> None:
    ctx = _context(card_data)
    if _user_role(pwszUserId) != ROLE_USER:
        raise ScardError(Scard.E_INVALID_PARAMETER, "only the user PIN can be unblocked")
    if dwFlags not in (CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE, CARD_AUTHENTICATE_PIN_PIN):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags {dwFlags:#x}")
    if cRetryCount:
        raise ScardError(Scard.E_INVALID_PARAMETER, "changing the retry count is not supported")
    ctx.backend.unblock(ROLE_USER, ROLE_ADMIN, bytes(pbAuthenticationData), bytes(pbNewPinData))
    _bump_pins(ctx)


@_entry()
def CardChangeAuthenticator(
    card_data: CardData,
    pwszUserId: str,
    pbCurrentAuthenticator: bytes,
    pbNewAuthenticator: bytes,
    cRetryCount: int,
    dwFlags: int,
) -> int:
    ctx = _context(card_data)
    pin_id = _user_role(pwszUserId)
    if dwFlags not in (CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE, CARD_AUTHENTICATE_PIN_PIN):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags {dwFlags:#x}")
    if cRetryCount:
        raise ScardError(Scard.E_INVALID_PARAMETER, "changing the retry count is not supported")
    _role(ctx, pin_id)
    ctx.backend.change_pin(pin_id, bytes(pbCurrentAuthenticator), bytes(pbNewAuthenticator))
    ctx.auth |= 1 << pin_id
    _bump_pins(ctx)
    return CARD_DATA_VALUE_UNKNOWN


def _bump_pins(ctx: _Context) -> None:
    """After a PIN change: advance bPinsFreshness (cached PIN info is stale).

    Done after the change because writing cardcf itself needs the authentication
    the change brought; a card that still refuses keeps its counters.
    """
    try:
        ctx.bump(pins=True)
    except ScardError as error:
        if error.code != Scard.W_SECURITY_VIOLATION:
            raise
        log.info("cardcf not writable after the PIN change; PIN freshness unchanged")


@_entry()
def CardDeauthenticate(card_data: CardData, pwszUserId: str, dwFlags: int = 0) -> None:
    _check_flags(dwFlags)
    _deauthenticate(_context(card_data), 1 << _user_role(pwszUserId), card_data)


def _deauthenticate(ctx: _Context, pin_set: int, card_data: CardData) -> None:
    pin_set &= ~1 & PIN_SET_ALL_ROLES  # the ROLE_EVERYONE bit is ignored
    ctx.roles(card_data)
    ctx.backend.deauthenticate(pin_set)
    ctx.auth &= ~pin_set
    for pin_id in range(MAX_PINS):
        if pin_set >> pin_id & 1:
            card_data.session_pin_cache.pop(pin_id, None)


@_entry(min_version=6)
def CardGetChallengeEx(card_data: CardData, PinId: int, dwFlags: int = 0) -> bytes:
    _check_flags(dwFlags)
    ctx = _context(card_data)
    role = _role(ctx, PinId)
    if not role.challenge:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"PIN {PinId} is not a challenge-response PIN")
    return ctx.backend.get_challenge(PinId)


@_entry(min_version=6)
def CardAuthenticateEx(
    card_data: CardData, PinId: int, dwFlags: int, pbPinData: bytes | None
) -> tuple[bytes | None, int]:
    """Authenticate role PinId. Returns (session PIN or None, cAttemptsRemaining).

    Plain: verify the PIN, the role stays authenticated. GENERATE_SESSION_PIN:
    verify and return a session PIN without leaving the role unlocked.
    SESSION_PIN: pbPinData is a session PIN. External roles take no PIN data and
    always return a session PIN (Windows caches it instead of a PIN).
    Challenge-response roles take the response to CardGetChallengeEx.
    """
    ctx = _context(card_data)
    _check_flags(
        dwFlags,
        CARD_PIN_SILENT_CONTEXT | CARD_AUTHENTICATE_GENERATE_SESSION_PIN | CARD_AUTHENTICATE_SESSION_PIN,
    )
    generate = bool(dwFlags & CARD_AUTHENTICATE_GENERATE_SESSION_PIN)
    with_session = bool(dwFlags & CARD_AUTHENTICATE_SESSION_PIN)
    if generate and with_session:
        raise ScardError(Scard.E_INVALID_PARAMETER, "GENERATE_SESSION_PIN and SESSION_PIN together")
    role = _role(ctx, PinId)
    data = bytes(pbPinData) if pbPinData else b""
    policy = int(role.info.PinCachePolicy.PinCachePolicyType)
    cacheable = policy in (PinCachePolicyType.PinCacheNormal, PinCachePolicyType.PinCacheTimed)

    if with_session:
        if not role.session_pins:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"PIN {PinId} has no session PINs")
        if not data:
            raise ScardError(Scard.E_INVALID_PARAMETER, "session PIN missing")
        try:
            ctx.backend.verify_session_pin(PinId, data)
        except ScardError:
            ctx.auth &= ~(1 << PinId)
            raise
        ctx.auth |= 1 << PinId
        if cacheable:
            card_data.session_pin_cache[PinId] = data
        return None, CARD_DATA_VALUE_UNKNOWN

    if role.external:
        if data:
            raise ScardError(Scard.E_INVALID_PARAMETER, "an external PIN takes no PIN data")
        token = ctx.backend.generate_session_pin(PinId, None)
        if generate:
            ctx.backend.deauthenticate(1 << PinId)
            ctx.auth &= ~(1 << PinId)
        else:
            ctx.auth |= 1 << PinId
        if cacheable:
            card_data.session_pin_cache[PinId] = token
        return token, CARD_DATA_VALUE_UNKNOWN

    if role.challenge:
        if generate:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "no session PINs for challenge-response roles")
        if not data:
            raise ScardError(Scard.E_INVALID_PARAMETER, "response missing")
        try:
            ctx.backend.authenticate_challenge(PinId, data)
        except ScardError:
            ctx.auth &= ~(1 << PinId)
            raise
        ctx.auth |= 1 << PinId
        return None, CARD_DATA_VALUE_UNKNOWN

    if not data:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbPinData is empty")
    if generate:
        if not role.session_pins:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"PIN {PinId} has no session PINs")
        try:
            token = ctx.backend.generate_session_pin(PinId, data)
        except ScardError as error:
            if error.code in (Scard.W_WRONG_CHV, Scard.W_CHV_BLOCKED):
                ctx.auth &= ~(1 << PinId)
            raise
        ctx.auth &= ~(1 << PinId)
        if cacheable:
            card_data.session_pin_cache[PinId] = token
        return token, CARD_DATA_VALUE_UNKNOWN
    _verify_pin(ctx, PinId, data)
    return None, CARD_DATA_VALUE_UNKNOWN


@_entry(min_version=6)
def CardChangeAuthenticatorEx(
    card_data: CardData,
    dwFlags: int,
    dwAuthenticatingPinId: int,
    pbAuthenticatingPinData: bytes,
    dwTargetPinId: int,
    pbTargetData: bytes,
    cRetryCount: int = 0,
) -> int:
    """Change a PIN (auth == target) or unblock one with another role's PIN."""
    ctx = _context(card_data)
    _check_flags(dwFlags, PIN_CHANGE_FLAG_UNBLOCK | PIN_CHANGE_FLAG_CHANGEPIN | CARD_PIN_SILENT_CONTEXT)
    kind = dwFlags & (PIN_CHANGE_FLAG_UNBLOCK | PIN_CHANGE_FLAG_CHANGEPIN)
    if kind not in (PIN_CHANGE_FLAG_UNBLOCK, PIN_CHANGE_FLAG_CHANGEPIN):
        raise ScardError(Scard.E_INVALID_PARAMETER, "exactly one of UNBLOCK / CHANGEPIN")
    if cRetryCount:
        raise ScardError(Scard.E_INVALID_PARAMETER, "cRetryCount must be 0")
    _role(ctx, dwAuthenticatingPinId)
    _role(ctx, dwTargetPinId)
    if not pbTargetData:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbTargetData is empty")
    if kind == PIN_CHANGE_FLAG_CHANGEPIN:
        if dwAuthenticatingPinId != dwTargetPinId:
            raise ScardError(Scard.E_INVALID_PARAMETER, "a PIN change authenticates with the same PIN")
        ctx.backend.change_pin(dwTargetPinId, bytes(pbAuthenticatingPinData), bytes(pbTargetData))
        ctx.auth |= 1 << dwTargetPinId
    else:
        if dwAuthenticatingPinId == dwTargetPinId:
            raise ScardError(Scard.E_INVALID_PARAMETER, "a PIN cannot unblock itself")
        ctx.backend.unblock(
            dwTargetPinId, dwAuthenticatingPinId, bytes(pbAuthenticatingPinData), bytes(pbTargetData)
        )
    card_data.session_pin_cache.pop(dwTargetPinId, None)
    _bump_pins(ctx)
    return CARD_DATA_VALUE_UNKNOWN


@_entry(min_version=6)
def CardDeauthenticateEx(card_data: CardData, PinId: int, dwFlags: int = 0) -> None:
    """Deauthenticate every role in the PIN_SET `PinId` (0xFF = all); the others stay authenticated."""
    _check_flags(dwFlags)
    _deauthenticate(_context(card_data), PinId, card_data)


# --- files ------------------------------------------------------------------------------------


def _file_kind(directory: str | None, name: str) -> Freshness:
    return (
        Freshness.CONTAINERS
        if (directory, name) == (szBASE_CSP_DIR, szCONTAINER_MAP_FILE)
        else Freshness.FILES
    )


@_entry()
def CardCreateDirectory(card_data: CardData, pszDirectory: str, AccessCondition: int) -> None:
    ctx = _context(card_data)
    directory = _name(pszDirectory, "pszDirectory")
    if AccessCondition not in (1, 2):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"AccessCondition {AccessCondition}")
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    ctx.bump(files=True)
    ctx.backend.create_directory(directory, AccessCondition)


@_entry()
def CardDeleteDirectory(card_data: CardData, pszDirectory: str) -> None:
    ctx = _context(card_data)
    directory = _name(pszDirectory, "pszDirectory")
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    ctx.bump(files=True)
    ctx.backend.delete_directory(directory)


@_entry()
def CardCreateFile(
    card_data: CardData,
    pszDirectoryName: str | None,
    pszFileName: str,
    cbInitialCreationSize: int,
    AccessCondition: int,
) -> None:
    ctx = _context(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    if not 1 <= AccessCondition <= 6 or AccessCondition == 4:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"AccessCondition {AccessCondition}")
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    ctx.bump(files=True, containers=_file_kind(directory, name) is Freshness.CONTAINERS)
    ctx.backend.create_file(directory, name, cbInitialCreationSize, AccessCondition)


@_entry()
def CardReadFile(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwFlags: int = 0
) -> bytes:
    """Whole file. cardid and cardcf are always read from the card, never from the cache."""
    _check_flags(dwFlags)
    ctx = _context(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    if directory is None and name == szCACHE_FILE:
        # Read from the card (never from the cache); it also starts this transaction's cache view.
        fresh = ctx.freshness(card_data) if ctx.fresh is None else None
        return (fresh.cardcf if fresh is not None else ctx.read_cardcf()).pack()
    if directory is None and name == szCARD_IDENTIFIER_FILE:
        return ctx.backend.card_id()
    return ctx.cached(
        card_data,
        _file_kind(directory, name),
        f"Cached_GeneralFile/{directory or ''}/{name}",
        lambda: ctx.backend.read_file(directory, name),
    )


@_entry()
def CardWriteFile(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwFlags: int, pbData: bytes
) -> None:
    _check_flags(dwFlags)
    ctx = _context(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    if directory is None and name == szCACHE_FILE:
        ctx.backend.write_cardcf(bytes(pbData))
        if ctx.fresh is not None:
            ctx.fresh.cardcf = CARD_CACHE_FILE_FORMAT.unpack(bytes(pbData))
        return
    kind = _file_kind(directory, name)
    ctx.freshness(card_data)
    ctx.bump(files=True, containers=kind is Freshness.CONTAINERS)
    ctx.backend.write_file(directory, name, bytes(pbData))
    if ctx.fresh is not None:
        ctx.fresh.put(f"Cached_GeneralFile/{directory or ''}/{name}", bytes(pbData))


@_entry()
def CardDeleteFile(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwFlags: int = 0
) -> None:
    _check_flags(dwFlags)
    ctx = _context(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    if ctx.backend.read_only:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
    ctx.bump(files=True, containers=_file_kind(directory, name) is Freshness.CONTAINERS)
    ctx.backend.delete_file(directory, name)


@_entry()
def CardEnumFiles(card_data: CardData, pszDirectoryName: str | None, dwFlags: int = 0) -> list[str]:
    """File names of a directory (the C multi-string as a list); empty directory is FILE_NOT_FOUND."""
    _check_flags(dwFlags)
    ctx = _context(card_data)
    directory = _directory(pszDirectoryName)
    raw = ctx.cached(
        card_data,
        Freshness.FILES,
        f"Cached_EnumFiles/{directory or ''}",
        lambda: "\0".join(ctx.backend.enum_files(directory)).encode("ascii"),
    )
    names = [name for name in raw.decode("ascii").split("\0") if name]
    if not names:
        raise ScardError(Scard.E_FILE_NOT_FOUND, f"directory {directory or '(root)'} is empty")
    return names


@_entry()
def CardGetFileInfo(
    card_data: CardData, pszDirectoryName: str | None, pszFileName: str, dwVersion: int = 1
) -> CARD_FILE_INFO:
    _check_version(dwVersion, 1)
    ctx = _context(card_data)
    directory, name = _path(pszDirectoryName, pszFileName)
    raw = ctx.cached(
        card_data,
        _file_kind(directory, name),
        f"Cached_FileInfo/{directory or ''}/{name}",
        lambda: ctx.backend.file_info(directory, name).pack(),
    )
    return CARD_FILE_INFO.unpack(raw)


@_entry()
def CardQueryFreeSpace(card_data: CardData, dwFlags: int = 0, dwVersion: int = 1) -> CARD_FREE_SPACE_INFO:
    _check_flags(dwFlags)
    _check_version(dwVersion, 1)
    return _context(card_data).backend.free_space()


@_entry()
def CardQueryKeySizes(
    card_data: CardData, dwKeySpec: int, dwFlags: int = 0, dwVersion: int = 1
) -> CARD_KEY_SIZES:
    _check_flags(dwFlags)
    _check_version(dwVersion, 1)
    if dwKeySpec not in RSA_KEYSPECS | ECDSA_KEYSPECS | ECDHE_KEYSPECS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {dwKeySpec}")
    return _context(card_data).backend.key_sizes(dwKeySpec)


# --- crypto -----------------------------------------------------------------------------------


def _modulus_bytes(container: Container) -> int:
    return (container.bits + 7) // 8


def _hash_name_for(alg: str | None) -> str | None:
    if alg is None:
        return None
    name = alg.upper()
    if name not in HASH_LENGTHS or name == "SHAMD5":
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"hash {alg}")
    return name


@_entry()
def CardSignData(card_data: CardData, pInfo: CARD_SIGNING_INFO) -> bytes:
    """Sign a hash with a container's key; RSA output little-endian, ECDSA raw r||s.

    Also stores the result in pInfo.pbSignedData/cbSignedData, as the C call does.
    """
    ctx = _context(card_data)
    if not isinstance(pInfo, CARD_SIGNING_INFO):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pInfo")
    if pInfo.dwVersion not in (0, 1, 2):
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"CARD_SIGNING_INFO version {pInfo.dwVersion}")
    if not pInfo.pbData:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbData is empty")
    container = ctx.container(card_data, pInfo.bContainerIndex)
    key_spec = pInfo.dwKeySpec
    if container.algorithm == "ec":
        if key_spec not in ECDSA_KEYSPECS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {key_spec} for an ECDSA container")
        size = 2 * ((container.bits + 7) // 8)
        if pInfo.dwSigningFlags & CARD_BUFFER_SIZE_ONLY:
            pInfo.cbSignedData = size
            return b""
        signature = ctx.backend.sign_raw(container, bytes(pInfo.pbData))
        pInfo.pbSignedData, pInfo.cbSignedData = signature, len(signature)
        return signature
    if key_spec not in RSA_KEYSPECS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {key_spec} for an RSA container")
    k = _modulus_bytes(container)
    if pInfo.dwSigningFlags & CARD_BUFFER_SIZE_ONLY:
        pInfo.cbSignedData = k
        return b""
    data = bytes(pInfo.pbData)
    padded_on_card: bytes | None = None
    try:
        if pInfo.dwVersion == 2 and pInfo.dwSigningFlags & CARD_PADDING_INFO_PRESENT:
            padding = pInfo.dwPaddingType
            info = pInfo.pPaddingInfo
            if padding == CARD_PADDING_PKCS1:
                alg = info.pszAlgId if isinstance(info, BCRYPT_PKCS1_PADDING_INFO) else None
                payload = digest_info(_hash_name_for(alg), data)
                padded_on_card = _sign_pkcs1(ctx, container, payload, k)
            elif padding == CARD_PADDING_PSS:
                if not isinstance(info, BCRYPT_PSS_PADDING_INFO):
                    raise ScardError(Scard.E_INVALID_PARAMETER, "PSS without BCRYPT_PSS_PADDING_INFO")
                hash_name = _hash_name_for(info.pszAlgId)
                assert hash_name is not None
                if len(data) != HASH_LENGTHS[hash_name] or info.cbSalt != len(data):
                    raise ScardError(Scard.E_INVALID_PARAMETER, "PSS salt length must equal the hash length")
                padded_on_card = ctx.backend.sign_raw(
                    container, pss_encode(data, hash_name.lower(), info.cbSalt, container.bits)
                )
            elif padding == CARD_PADDING_NONE:
                if len(data) != k:
                    raise ScardError(Scard.E_INVALID_PARAMETER, "raw signing needs a modulus-sized block")
                padded_on_card = ctx.backend.sign_raw(container, data)
            else:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"dwPaddingType {padding}")
        else:
            if pInfo.aiHashAlg and pInfo.aiHashAlg not in CALG_NAMES:
                raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"aiHashAlg {pInfo.aiHashAlg:#x}")
            hash_name = CALG_NAMES.get(pInfo.aiHashAlg) if pInfo.aiHashAlg else None
            if hash_name and len(data) != HASH_LENGTHS[hash_name]:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"{hash_name} hash of {len(data)} bytes")
            padded_on_card = _sign_pkcs1(ctx, container, digest_info(hash_name, data), k)
    except PaddingError as error:
        raise ScardError(Scard.E_INSUFFICIENT_BUFFER, str(error)) from error
    signature = padded_on_card[::-1]  # the minidriver returns RSA signatures little-endian
    pInfo.pbSignedData, pInfo.cbSignedData = signature, len(signature)
    return signature


def _sign_pkcs1(ctx: _Context, container: Container, payload: bytes, k: int) -> bytes:
    if ctx.backend.pkcs1_on_card:
        return ctx.backend.sign_pkcs1(container, payload)
    return ctx.backend.sign_raw(container, pkcs1_type1(payload, k))


@_entry()
def CardRSADecrypt(card_data: CardData, pInfo: CARD_RSA_DECRYPT_INFO) -> bytes:
    """Decrypt a little-endian modulus-sized block; v2 info removes the padding (v7 rule)."""
    ctx = _context(card_data)
    if not isinstance(pInfo, CARD_RSA_DECRYPT_INFO):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pInfo")
    if pInfo.dwVersion > 2:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"CARD_RSA_DECRYPT_INFO version {pInfo.dwVersion}")
    if pInfo.dwVersion < 2 and card_data.dwVersion >= 7:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, "version 7 needs CARD_RSA_DECRYPT_INFO version 2")
    if pInfo.dwKeySpec != AT_KEYEXCHANGE:
        raise ScardError(Scard.E_INVALID_PARAMETER, "decryption needs an AT_KEYEXCHANGE key")
    container = ctx.container(card_data, pInfo.bContainerIndex)
    if container.algorithm != "rsa" or container.key_spec != AT_KEYEXCHANGE:
        raise ScardError(Scard.E_INVALID_PARAMETER, "not an RSA key-exchange container")
    k = _modulus_bytes(container)
    data = bytes(pInfo.pbData)
    if len(data) < k:
        raise ScardError(Scard.E_INSUFFICIENT_BUFFER, f"cbData {len(data)} < {k}")
    block = ctx.backend.decrypt_raw(container, data[:k][::-1])
    block = b"\x00" * (k - len(block)) + block
    if pInfo.dwVersion < 2 or pInfo.dwPaddingType == CARD_PADDING_NONE:
        result = block[::-1]
    else:
        try:
            if pInfo.dwPaddingType == CARD_PADDING_OAEP:
                info = pInfo.pPaddingInfo
                if not isinstance(info, BCRYPT_OAEP_PADDING_INFO):
                    raise ScardError(Scard.E_INVALID_PARAMETER, "OAEP without BCRYPT_OAEP_PADDING_INFO")
                hash_name = _hash_name_for(info.pszAlgId)
                assert hash_name is not None
                result = oaep_unpad(block, hash_name.lower(), info.pbLabel)
            elif pInfo.dwPaddingType in (CARD_PADDING_PKCS1, 0):
                result = pkcs1_type2_unpad(block)
            else:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"dwPaddingType {pInfo.dwPaddingType}")
        except PaddingError as error:
            raise ScardError(Scard.E_UNEXPECTED, "decryption error") from error
    pInfo.pbData, pInfo.cbData = result, len(result)
    return result


@_entry()
def CardConstructDHAgreement(card_data: CardData, pAgreementInfo: CARD_DH_AGREEMENT_INFO) -> int:
    """ECDH with a container's key; the secret stays here, the caller gets an index."""
    ctx = _context(card_data)
    if pAgreementInfo.dwVersion != 2:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, "CARD_DH_AGREEMENT_INFO version must be 2")
    _check_flags(pAgreementInfo.dwFlags)
    container = ctx.container(card_data, pAgreementInfo.bContainerIndex)
    if container.algorithm != "ec":
        raise ScardError(Scard.E_INVALID_PARAMETER, "not an EC container")
    try:
        peer = BCRYPT_ECCKEY_BLOB.unpack(bytes(pAgreementInfo.pbPublicKey))
    except (StructureError, KeyError) as error:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"peer key: {error}") from error
    if peer.bits != container.bits or peer.d is not None:
        raise ScardError(Scard.E_INVALID_PARAMETER, "peer key is not a public key on the container's curve")
    size = peer.cbKey
    secret = ctx.backend.ecdh(
        container, b"\x04" + peer.x.to_bytes(size, "big") + peer.y.to_bytes(size, "big")
    )
    index = next((i for i in range(256) if i not in ctx.agreements), None)
    if index is None:
        raise ScardError(Scard.E_NO_MEMORY, "all 256 agreement indexes are in use")
    ctx.agreements[index] = _Agreement(secret)
    pAgreementInfo.bSecretAgreementIndex = index
    return index


@_entry(min_version=5)
def CardDeriveKey(card_data: CardData, pAgreementInfo: CARD_DERIVE_KEY) -> bytes:
    """KDF over an agreement: HASH (prepend/append), HMAC, SP800_56A_CONCAT. TLS_PRF unsupported."""
    ctx = _context(card_data)
    info = pAgreementInfo
    if info.dwVersion not in (1, 2):
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"CARD_DERIVE_KEY version {info.dwVersion}")
    if info.dwFlags & CARD_RETURN_KEY_HANDLE:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "CARD_RETURN_KEY_HANDLE")
    agreement = ctx.agreements.get(info.bSecretAgreementIndex)
    if agreement is None:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"agreement {info.bSecretAgreementIndex}")
    params = info.parameters
    hash_name = params.get("KDF_HASH_ALGORITHM", b"SHA1").decode().upper()
    if hash_name not in ("SHA1", "SHA256", "SHA384", "SHA512", "MD5"):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"hash {hash_name}")
    algorithm = hash_name.lower()
    secret = agreement.secret
    if info.pwszKDF == BCRYPT_KDF_HASH:
        derived = hashlib.new(
            algorithm, params.get("KDF_SECRET_PREPEND", b"") + secret + params.get("KDF_SECRET_APPEND", b"")
        ).digest()
    elif info.pwszKDF == BCRYPT_KDF_HMAC:
        key = params.get("KDF_HMAC_KEY", secret)
        derived = hmac.new(
            key,
            params.get("KDF_SECRET_PREPEND", b"") + secret + params.get("KDF_SECRET_APPEND", b""),
            algorithm,
        ).digest()
    elif info.pwszKDF == BCRYPT_KDF_SP80056A_CONCAT:
        other = b"".join(
            params.get(name, b"")
            for name in (
                "KDF_ALGORITHMID",
                "KDF_PARTYUINFO",
                "KDF_PARTYVINFO",
                "KDF_SUPPPUBINFO",
                "KDF_SUPPPRIVINFO",
            )
        )
        length = info.dwKeyLen or hashlib.new(algorithm).digest_size
        derived = b""
        counter = 1
        while len(derived) < length:
            derived += hashlib.new(algorithm, counter.to_bytes(4, "big") + secret + other).digest()
            counter += 1
        derived = derived[:length]
    elif info.pwszKDF == BCRYPT_KDF_TLS_PRF:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "TLS_PRF")
    else:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"KDF {info.pwszKDF!r}")
    if info.dwFlags & CARD_BUFFER_SIZE_ONLY:
        info.cbDerivedKey = len(derived)
        return b""
    info.pbDerivedKey, info.cbDerivedKey = derived, len(derived)
    return derived


@_entry(min_version=5)
def CardDestroyDHAgreement(card_data: CardData, bSecretAgreementIndex: int, dwFlags: int = 0) -> None:
    _check_flags(dwFlags)
    ctx = _context(card_data)
    if ctx.agreements.pop(bSecretAgreementIndex, None) is None:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"agreement {bSecretAgreementIndex}")


# --- properties -------------------------------------------------------------------------------


@_entry(min_version=6)
def CardGetContainerProperty(
    card_data: CardData, bContainerIndex: int, wszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    _check_flags(dwFlags)
    ctx = _context(card_data)
    container = ctx.container(card_data, bContainerIndex)
    if wszProperty == CCP_CONTAINER_INFO:
        info = _container_info(container)
        return _fit(info.pack(), cbData)
    if wszProperty == CCP_PIN_IDENTIFIER:
        return _fit(_dword(container.pin_id), cbData)
    if wszProperty == CCP_ASSOCIATED_ECDH_KEY and card_data.dwVersion >= 7:
        partner = container.extra.get("ecdh_partner")
        if partner is None:
            raise ScardError(Scard.E_INVALID_PARAMETER, "no associated ECDH key")
        return _fit(bytes([partner]), cbData)
    raise ScardError(Scard.E_INVALID_PARAMETER, f"container property {wszProperty!r}")


@_entry(min_version=6)
def CardSetContainerProperty(
    card_data: CardData, bContainerIndex: int, wszProperty: str, pbData: bytes, dwFlags: int = 0
) -> None:
    _check_flags(dwFlags)
    ctx = _context(card_data)
    container = ctx.container(card_data, bContainerIndex)
    if wszProperty == CCP_PIN_IDENTIFIER:
        if len(pbData) != 4:
            raise ScardError(Scard.E_INVALID_PARAMETER, "PIN_ID is a DWORD")
        pin_id = struct.unpack("<I", pbData)[0]
        if pin_id != ROLE_EVERYONE:
            _role(ctx, pin_id)
        if ctx.backend.read_only:
            raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "read-only card")
        ctx.bump(containers=True)
        ctx.backend.set_container_pin(container, pin_id)
        return
    if wszProperty in (CCP_CONTAINER_INFO, CCP_ASSOCIATED_ECDH_KEY):
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{wszProperty!r} cannot be set on this card")
    raise ScardError(Scard.E_INVALID_PARAMETER, f"container property {wszProperty!r}")


@_entry(min_version=6)
def CardGetProperty(
    card_data: CardData, wszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    """Card properties; DWORD/BOOL values come back as 4 little-endian bytes."""
    ctx = _context(card_data)
    backend = ctx.backend
    if wszProperty == CP_CARD_KEYSIZES:
        if dwFlags not in RSA_KEYSPECS | ECDSA_KEYSPECS | ECDHE_KEYSPECS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags (key spec) {dwFlags}")
        return _fit(
            ctx.cached(
                card_data,
                Freshness.FILES,
                f"Cached_CardProperty_Key Sizes_{dwFlags}",
                lambda: backend.key_sizes(dwFlags).pack(),
            ),
            cbData,
        )
    if wszProperty in (
        CP_CARD_PIN_INFO,
        CP_CARD_PIN_STRENGTH_VERIFY,
        CP_CARD_PIN_STRENGTH_CHANGE,
        CP_CARD_PIN_STRENGTH_UNBLOCK,
    ):
        if not 0 <= dwFlags < MAX_PINS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags (PIN id) {dwFlags}")
        if wszProperty == CP_CARD_PIN_INFO and dwFlags == ROLE_EVERYONE:
            # Everyone is no secret: type 0, purpose 0, never cached (as OpenSC reports it).
            never = PIN_CACHE_POLICY(PinCachePolicyType=PinCachePolicyType.PinCacheNone)
            everyone = PIN_INFO(PinCachePolicy=never)
            return _fit(everyone.pack(), cbData)
        role = _role(ctx, dwFlags)
        if wszProperty == CP_CARD_PIN_INFO:
            return _fit(role.info.pack(), cbData)
        if wszProperty == CP_CARD_PIN_STRENGTH_VERIFY:
            return _fit(_dword(role.strength_verify), cbData)
        # Change and unblock take the new value in plaintext, which only a PIN role can use:
        # an external role (PIN pad, biometric) or a challenge-response key has no PIN to set.
        plain = int(role.info.PinType) == PinType.AlphaNumericPinType
        return _fit(_dword(CARD_PIN_STRENGTH_PLAINTEXT if plain else 0), cbData)
    _check_flags(dwFlags)
    if wszProperty == CP_CARD_FREE_SPACE:
        return _fit(backend.free_space().pack(), cbData)
    if wszProperty == CP_CARD_CAPABILITIES:
        return _fit(backend.capabilities().pack(), cbData)
    if wszProperty == CP_CARD_READ_ONLY:
        return _fit(_dword(int(backend.read_only)), cbData)
    if wszProperty == CP_CARD_CACHE_MODE:
        return _fit(_dword(backend.cache_mode), cbData)
    if wszProperty == CP_SUPPORTS_WIN_X509_ENROLLMENT:
        return _fit(_dword(int(not backend.read_only)), cbData)
    if wszProperty == CP_CARD_GUID:
        return _fit(backend.card_id(), cbData)
    if wszProperty == CP_CARD_SERIAL_NO:
        return _fit(backend.serial_number(), cbData)
    if wszProperty == CP_CARD_LIST_PINS:
        pins = 0
        for pin_id in ctx.roles(card_data):
            pins |= 1 << pin_id
        return _fit(_dword(pins), cbData)
    if wszProperty == CP_CARD_AUTHENTICATED_STATE:
        return _fit(_dword(ctx.authenticated_state()), cbData)
    if wszProperty == CP_KEY_IMPORT_SUPPORT and card_data.dwVersion >= 7:
        return _fit(_dword(0), cbData)
    if wszProperty in (CP_PARENT_WINDOW, CP_PIN_CONTEXT_STRING):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{wszProperty!r} is write-only")
    if wszProperty in (CP_ENUM_ALGORITHMS, CP_PADDING_SCHEMES, CP_CHAINING_MODES):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"{wszProperty!r}: no secure key injection")
    raise ScardError(Scard.E_INVALID_PARAMETER, f"unknown property {wszProperty!r}")


@_entry(min_version=6, transacted=False)
def CardSetProperty(card_data: CardData, wszProperty: str, pbData: bytes, dwFlags: int = 0) -> None:
    """Only CP_PARENT_WINDOW and CP_PIN_CONTEXT_STRING are settable (the read-only-card rule)."""
    ctx = _context(card_data)
    _check_flags(dwFlags)
    if wszProperty == CP_PARENT_WINDOW:
        if len(pbData) not in (4, 8):
            raise ScardError(Scard.E_INVALID_PARAMETER, "HWND is pointer-sized")
        ctx.parent_window = int.from_bytes(pbData, "little")
        return
    if wszProperty == CP_PIN_CONTEXT_STRING:
        text = bytes(pbData).decode("utf-16-le", errors="replace").rstrip("\0")
        ctx.pin_context = text
        return
    if wszProperty in (
        CP_CARD_FREE_SPACE,
        CP_CARD_CAPABILITIES,
        CP_CARD_KEYSIZES,
        CP_CARD_LIST_PINS,
        CP_CARD_AUTHENTICATED_STATE,
        CP_CARD_PIN_STRENGTH_VERIFY,
        CP_CARD_PIN_STRENGTH_CHANGE,
        CP_CARD_PIN_STRENGTH_UNBLOCK,
        CP_KEY_IMPORT_SUPPORT,
        CP_CARD_READ_ONLY,
        CP_CARD_CACHE_MODE,
        CP_SUPPORTS_WIN_X509_ENROLLMENT,
        CP_CARD_GUID,
        CP_CARD_SERIAL_NO,
        CP_CARD_PIN_INFO,
    ):
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{wszProperty!r} cannot be set on this card")
    raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"unknown property {wszProperty!r}")


# --- secure key injection (v7): not implemented, as in OpenSC ----------------------------------


def _ski(card_data: CardData, name: str) -> NoReturn:
    _context(card_data)
    if card_data.dwVersion < 7:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{name} needs CARD_DATA version 7")
    raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"{name}: secure key injection is not implemented")


def CardGetSharedKeyHandle(card_data: CardData, pbInput: bytes) -> tuple[bytes, int]:
    _ski(card_data, "CardGetSharedKeyHandle")


def CardImportSessionKey(
    card_data: CardData,
    bContainerIndex: int,
    pPaddingInfo: Any,
    pwszBlobType: str,
    pwszAlgId: str,
    pbInput: bytes,
    dwFlags: int = 0,
) -> int:
    _ski(card_data, "CardImportSessionKey")


def CardGetAlgorithmProperty(
    card_data: CardData, pwszAlgId: str, pwszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    _ski(card_data, "CardGetAlgorithmProperty")


def CardGetKeyProperty(
    card_data: CardData, hKey: int, pwszProperty: str, cbData: int | None = None, dwFlags: int = 0
) -> bytes:
    _ski(card_data, "CardGetKeyProperty")


def CardSetKeyProperty(
    card_data: CardData, hKey: int, pwszProperty: str, pbInput: bytes, dwFlags: int = 0
) -> None:
    _ski(card_data, "CardSetKeyProperty")


def CardDestroyKey(card_data: CardData, hKey: int) -> None:
    _ski(card_data, "CardDestroyKey")


def CardProcessEncryptedData(
    card_data: CardData,
    hKey: int,
    pwszSecureFunction: str,
    pEncryptedData: list[bytes],
    cbOutput: int,
    dwFlags: int = 0,
) -> bytes:
    _ski(card_data, "CardProcessEncryptedData")


def MDImportSessionKey(card_data: CardData, pwszBlobType: str, pwszAlgId: str, pbInput: bytes) -> int:
    _ski(card_data, "MDImportSessionKey")


def MDEncryptData(
    card_data: CardData, hKey: int, pwszSecureFunction: str, pbInput: bytes, dwFlags: int = 0
) -> list[bytes]:
    _ski(card_data, "MDEncryptData")


# helpers for callers ---------------------------------------------------------------------------


def dword(data: bytes) -> int:
    """Decode a DWORD/BOOL property value."""
    if len(data) != 4:
        raise ValueError(f"a DWORD is 4 bytes, not {len(data)}")
    return int(struct.unpack("<I", data)[0])


def public_key_of(container_info: CONTAINER_INFO) -> PUBLICKEYBLOB | BCRYPT_ECCKEY_BLOB:
    """Decode whichever public key a CONTAINER_INFO holds."""
    blob = container_info.pbSigPublicKey or container_info.pbKeyExPublicKey
    if blob[:1] == b"\x06":
        return PUBLICKEYBLOB.unpack(blob)
    return BCRYPT_ECCKEY_BLOB.unpack(blob)
