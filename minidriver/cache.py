"""The Base CSP's data cache: items stamped with cardcf freshness, keyed by card ID.

Windows keeps minidriver data (certificate files, cmapfile, container info,
properties) in the resource manager's global cache (SCardReadCache/
SCardWriteCache), keyed by the card's 16-byte `cardid` and the item name, and
stamped with the `cardcf` counters current when it was cached. At the start of
each transaction the CSP reads cardid and cardcf; an item is served from the
cache only while the relevant counter on the card has not moved. Every write
through this layer bumps the matching counter on the card (PIN changes ->
bPinsFreshness, containers/cmapfile -> wContainersFreshness, files ->
wFilesFreshness), so another process's cache sees the change.

`CacheStore` is the injectable interface that stands for the CARD_DATA
pfnCspCacheAddFile / LookupFile / DeleteFile callbacks; `GlobalCache` models the
machine-wide cache (one per process here). Entries are keyed by logon session as
well as by card (a terminal server's sessions never share them): the key starts
with the session's scope (`rm.Session.cache_scope`).
"""

from __future__ import annotations

import struct
import threading
from enum import StrEnum

from .structures import CARD_CACHE_FILE_FORMAT


class Freshness(StrEnum):
    """Which cardcf counter guards an item."""

    PINS = "pins"
    CONTAINERS = "containers"
    FILES = "files"


class CacheStore:
    """Where cached items live (the pfnCspCache* callbacks): opaque bytes by (card, name)."""

    def lookup(self, card_id: bytes, name: str) -> bytes | None:
        raise NotImplementedError

    def add(self, card_id: bytes, name: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, card_id: bytes, name: str) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError


class GlobalCache(CacheStore):
    """In-memory, thread-safe; shared by every CardData of the process unless one is given."""

    def __init__(self) -> None:
        self._items: dict[tuple[bytes, str], bytes] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def lookup(self, card_id: bytes, name: str) -> bytes | None:
        with self._lock:
            return self._items.get((card_id, name))

    def add(self, card_id: bytes, name: str, data: bytes) -> None:
        with self._lock:
            self._items[(card_id, name)] = bytes(data)

    def delete(self, card_id: bytes, name: str) -> None:
        with self._lock:
            self._items.pop((card_id, name), None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


GLOBAL_CACHE = GlobalCache()


def _counter(cf: CARD_CACHE_FILE_FORMAT, kind: Freshness) -> int:
    if kind is Freshness.PINS:
        return cf.bPinsFreshness
    if kind is Freshness.CONTAINERS:
        return cf.wContainersFreshness
    return cf.wFilesFreshness


class FreshnessCache:
    """The cache as one transaction sees it: a card ID and the cardcf read at its start.

    Item layout: the 6-byte cardcf snapshot taken when the item was stored, a
    DWORD length, then the data. Windows' items ("File System Requirements", cache file) carry 6 more
    bytes between snapshot and length whose meaning is not documented; they are
    left out, so items are not byte-compatible with a Windows cache dump.
    """

    def __init__(
        self, store: CacheStore, card_id: bytes, cardcf: CARD_CACHE_FILE_FORMAT, scope: bytes = b""
    ) -> None:
        self.store = store
        self.card_id = scope + card_id  # entries are the session's own (rm.Session.cache_scope)
        self.cardcf = cardcf
        self.hits = 0
        self.misses = 0

    def get(self, kind: Freshness, name: str) -> bytes | None:
        item = self.store.lookup(self.card_id, name)
        if item is None or len(item) < 10:
            self.misses += 1
            return None
        stamp = CARD_CACHE_FILE_FORMAT.unpack(item[:6])
        (length,) = struct.unpack_from("<I", item, 6)
        if _counter(stamp, kind) != _counter(self.cardcf, kind) or len(item) != 10 + length:
            self.store.delete(self.card_id, name)
            self.misses += 1
            return None
        self.hits += 1
        return item[10:]

    def put(self, name: str, data: bytes) -> None:
        self.store.add(self.card_id, name, self.cardcf.pack()[:6] + struct.pack("<I", len(data)) + data)

    def forget(self, name: str) -> None:
        self.store.delete(self.card_id, name)
