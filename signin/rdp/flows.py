"""Sign-in flows through the public minidriver API, measured in SCard calls.

- `base_sign_in`: what a Windows logon asks of the Base CSP (the bench_minidriver flow):
  acquire a context, read cardcf, the container map and each container's certificate
  and info in one transaction, then PIN, sign and deauthenticate in a second. With a
  `GlobalCache` it is the Base CSP: "cold" on an empty cache, "warm" when the same
  cache is used again (a later logon, cardcf unchanged).
- `naive_sign_in`: the seed's unoptimised CSP for the same logon. It keeps no data
  cache (cache=None), opens a new PC/SC connection and context for every CSP
  operation, re-reads the container map and every certificate each time, and takes a
  transaction per APDU (`TransactionPerApdu`, a connection wrapper: the minidriver's
  resource manager is not changed).
- `PHYSICAL_MINIMUM`: Begin, read cardcf, VERIFY, sign, End.

Every call is counted by the host stack's `CallMeter`, the same call names the
interposer logs for a real client.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import padding, rsa

import minidriver as md
from minidriver.cache import CacheStore, GlobalCache
from vcard.host import CardEndpoint, Connection, Disposition, InProcessConnection

from ..ca import certificate_for
from ..enroll import admin_response
from .calllog import Workload

DEFAULT_PIN = b"123456"
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")


class TransactionPerApdu(Connection):
    """A connection on which nothing spans calls: every APDU is Begin, Transmit, End.

    Begin/End from the layer above are dropped (the naive CSP holds no transaction);
    everything else goes to the wrapped connection, which counts it once.
    """

    def __init__(self, inner: Connection) -> None:
        super().__init__(inner.meter)
        self.inner = inner
        self.reader = inner.reader

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def transmit(self, apdu: bytes) -> bytes:
        self.inner.begin_transaction()
        try:
            return self.inner.transmit(apdu)
        finally:
            self.inner.end_transaction()

    def begin_transaction(self) -> None:
        pass

    def end_transaction(self, disposition: int = Disposition.LEAVE_CARD) -> None:
        if disposition != Disposition.LEAVE_CARD:
            self.inner.begin_transaction()
            self.inner.end_transaction(disposition)

    def reconnect(self, initialization: int = Disposition.LEAVE_CARD) -> None:
        self.inner.reconnect(initialization)

    def close(self, disposition: int = Disposition.LEAVE_CARD) -> None:
        self.closed = True
        self.inner.close(disposition)


ConnectionFactory = Callable[[], Connection]


@dataclass(frozen=True)
class CardSource:
    """How to reach one card: a new connection per call (in-process or a PC/SC reader).

    `applet` ("piv"/"gids") is the card module Windows would pick from the ATR before
    CardAcquireContext (the Calais database), so no other applet is probed; None probes.
    """

    name: str
    connect: ConnectionFactory
    applet: str | None = None

    def card_data(
        self,
        connection: Connection | None = None,
        cache: CacheStore | None = None,
        piv_writable: bool = False,
    ) -> md.CardData:
        """A CARD_DATA on `connection` (a new one if None), ready for CardAcquireContext."""
        return md.CardData.from_connection(
            connection or self.connect(), cache=cache, applet=self.applet, piv_writable=piv_writable
        )


def _close(card_data: md.CardData) -> None:
    md.CardDeleteContext(card_data)
    card_data.close()


def provision(source: CardSource, pin: bytes = DEFAULT_PIN) -> None:
    """Container 0: a generated RSA-2048 key-exchange key and its certificate (PIV slot 9A, GIDS kxc00)."""
    setup = source.card_data(cache=None, piv_writable=True)
    md.CardAcquireContext(setup, 0)
    backend = setup.pvVendorSpecific.backend.name if setup.pvVendorSpecific else ""
    if backend == "piv":
        md.CardAuthenticateChallenge(
            setup, admin_response(DEFAULT_MANAGEMENT_KEY, md.CardGetChallenge(setup))
        )
    else:
        md.CardAuthenticateEx(setup, md.ROLE_USER, 0, pin)
    md.CardCreateContainer(setup, 0, md.CARD_CREATE_CONTAINER_KEY_GEN, md.AT_KEYEXCHANGE, 2048, b"")
    blob = md.PUBLICKEYBLOB.unpack(md.CardGetContainerInfo(setup, 0).pbKeyExPublicKey)
    key = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    if backend != "piv":
        md.CardCreateFile(setup, "mscp", "kxc00", 0, md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc)
    md.CardWriteFile(setup, "mscp", "kxc00", 0, certificate_for(key, "alice"))
    md.CardDeauthenticateEx(setup, md.PIN_SET_ALL_ROLES, 0)
    _close(setup)


def _read_containers(card_data: md.CardData) -> list[int]:
    """cmapfile, then each valid container's certificate file and info; the container indexes."""
    records = md.structures.unpack_cmapfile(md.CardReadFile(card_data, "mscp", "cmapfile"))
    names = md.CardEnumFiles(card_data, "mscp")
    found = []
    for index, record in enumerate(records):
        if not record.is_valid:
            continue
        prefix = "kxc" if record.wKeyExchangeKeySizeBits else "ksc"
        if f"{prefix}{index:02d}" in names:
            md.CardReadFile(card_data, "mscp", f"{prefix}{index:02d}")
        md.CardGetContainerInfo(card_data, index)
        found.append(index)
    return found


def _sign(card_data: md.CardData, container: int) -> bytes:
    digest = hashlib.sha256(b"PKINIT AuthPack").digest()
    info = md.CARD_SIGNING_INFO(2, container, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, digest)
    return md.CardSignData(card_data, info)


def base_sign_in(source: CardSource, cache: GlobalCache, pin: bytes = DEFAULT_PIN) -> Workload:
    """One logon through the Base CSP on a card connected beforehand, sharing `cache`.

    The card handle exists before the logon starts (the credential provider connects when
    the card is inserted), so SCardEstablishContext/ListReaders/Connect/Status and the
    closing Disconnect/ReleaseContext are not part of the sign-in; the logon holds one
    transaction from CardAcquireContext to the deauthentication.
    """
    card_data = source.card_data(cache=cache)
    meter = card_data.connection.meter
    meter.reset()
    started = time.perf_counter()
    with card_data.transaction():
        md.CardAcquireContext(card_data, 0)
        md.CardReadFile(card_data, None, "cardcf")
        containers = _read_containers(card_data)
        if not containers:
            raise md.ScardError(md.SCARD_E_NO_KEY_CONTAINER, f"{source.name}: no container to sign with")
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
        _sign(card_data, containers[0])
        md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    work = Workload.from_meter("Base CSP", meter.snapshot(), time.perf_counter() - started)
    _close(card_data)
    return work


# What a smart-card logon asks the CSP, one CryptoAPI call after another: LogonUI lists the
# certificates; LSA opens the user's container, takes its certificate and public key; Kerberos
# PKINIT verifies the PIN and signs the AuthPack, then decrypts the reply key (RSA key transport),
# and the context is released. The naive CSP turns each into connect + acquire + re-read.
NAIVE_OPERATIONS = (
    "enumerate certificates",
    "open container",
    "get certificate",
    "get public key",
    "verify PIN and sign",
    "verify PIN and decrypt",
    "release context",
)


def naive_sign_in(source: CardSource, pin: bytes = DEFAULT_PIN) -> Workload:
    """The same logon through the naive CSP: every operation reconnects and re-reads everything."""
    total = Workload("naive CSP")
    started = time.perf_counter()
    for operation in NAIVE_OPERATIONS:
        card_data = source.card_data(TransactionPerApdu(source.connect()), cache=None)
        md.CardAcquireContext(card_data, 0)
        containers = _read_containers(card_data)
        if not containers:
            raise md.ScardError(md.SCARD_E_NO_KEY_CONTAINER, f"{source.name}: no container to sign with")
        if operation == "verify PIN and sign":
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
            _sign(card_data, containers[0])
        elif operation == "verify PIN and decrypt":
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
            blob = md.PUBLICKEYBLOB.unpack(md.CardGetContainerInfo(card_data, containers[0]).pbKeyExPublicKey)
            public = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
            ciphertext = public.encrypt(b"\x42" * 32, padding.PKCS1v15())
            info = md.CARD_RSA_DECRYPT_INFO(
                2, containers[0], md.AT_KEYEXCHANGE, ciphertext[::-1], dwPaddingType=md.CARD_PADDING_PKCS1
            )
            md.CardRSADecrypt(card_data, info)
        elif operation == "release context":
            md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
        meter = card_data.connection.meter
        _close(card_data)
        snapshot = meter.snapshot()
        total.calls.update(Counter(snapshot["calls"]))
        total.bytes_sent += snapshot["bytes_sent"]
        total.bytes_received += snapshot["bytes_received"]
    total.local_seconds = time.perf_counter() - started
    return total


# Begin, read cardcf (READ BINARY / GET DATA, ~6 bytes out), VERIFY (13 bytes), sign (RSA-2048:
# a 256-byte block in, 256 + SW out), End: the least any CSP can do for a logon signature.
PHYSICAL_MINIMUM = Workload(
    "physical minimum",
    Counter({"SCardBeginTransaction": 1, "SCardTransmit": 3, "SCardEndTransaction": 1}),
    bytes_sent=5 + 13 + 262,
    bytes_received=8 + 2 + 258,
)


def lab_workloads(card: CardEndpoint, profile: str = "piv") -> list[Workload]:
    """The chart's minidriver curves on a fresh in-process card of `profile` ("piv" or "gids"):
    naive, Base CSP cold/warm, minimum."""
    source = CardSource(f"{profile} (in-process)", lambda: InProcessConnection(card), profile)
    provision(source)
    cache = GlobalCache()
    cold = base_sign_in(source, cache)
    warm = base_sign_in(source, cache)
    naive = naive_sign_in(source)
    cold.name, warm.name, naive.name = (
        f"Base CSP cold ({profile.upper()})",
        f"Base CSP warm ({profile.upper()})",
        f"naive CSP ({profile.upper()})",
    )
    return [naive, cold, warm, PHYSICAL_MINIMUM]
