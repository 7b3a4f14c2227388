"""Sign-in flows through the public minidriver API, measured in SCard calls.

- `BaseCsp`: what a Windows logon asks of the Base CSP: in one transaction, read cardcf,
  the container map and each container's certificate and info, present the PIN, sign,
  deauthenticate. The first logon acquires the card context and fills the cardcf-stamped
  cache ("cold"); a later one reuses both ("warm"): cardcf read, VERIFY, sign,
  deauthenticate. `base_sign_in` is one cold logon.
- `naive_sign_in`: the seed's unoptimised CSP for the same logon (`naive_operations` lists
  the CryptoAPI calls): no data cache, a new PC/SC connection and context for every
  operation, the container map and every certificate re-read each time, short APDUs only,
  and a transaction per APDU (the resource manager's `transaction_per_apdu` switch).
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
from vcard.host import CardEndpoint, Connection, InProcessConnection

from ..ca import certificate_for
from ..enroll import admin_response
from .calllog import Workload

DEFAULT_PIN = b"123456"
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")


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


class BaseCsp:
    """The Base CSP on one card: its data cache (cardcf-stamped) and its card context.

    The CSP keeps the card context it acquired (CARD_DATA, the minidriver context) for as long
    as the card stays in the reader -- the "smart card handle cache" of the CSP card modules
    (Microsoft KB949538) -- so a later logon does not call CardAcquireContext again: it begins
    a transaction (SCardBeginTransaction would report a reset: SCARD_W_RESET_CARD, Windows 8 and
    later), reads cardcf, and takes the container map and certificates from the cache.
    The card handle exists before the logon starts (the credential provider connects when the
    card is inserted), so SCardEstablishContext/ListReaders/Connect/Status are not part of it.
    """

    def __init__(self, source: CardSource, cache: GlobalCache | None = None) -> None:
        self.source = source
        self.cache = cache if cache is not None else GlobalCache()
        self.card_data: md.CardData | None = None

    def sign_in(self, pin: bytes = DEFAULT_PIN) -> Workload:
        """One logon: cold the first time (context acquired, cache filled), warm afterwards."""
        cold = self.card_data is None
        if self.card_data is None:
            self.card_data = self.source.card_data(cache=self.cache)
        card_data = self.card_data
        meter = card_data.connection.meter
        meter.reset()
        started = time.perf_counter()
        with card_data.transaction():
            if cold:
                md.CardAcquireContext(card_data, 0)
            md.CardReadFile(card_data, None, "cardcf")  # warm: read as the transaction started
            containers = _read_containers(card_data)
            if not containers:
                raise md.ScardError(
                    md.SCARD_E_NO_KEY_CONTAINER, f"{self.source.name}: no container to sign with"
                )
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
            _sign(card_data, containers[0])
            md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
        name = f"Base CSP {'cold' if cold else 'warm'}"
        return Workload.from_meter(name, meter.snapshot(), time.perf_counter() - started)

    def close(self) -> None:
        if self.card_data is not None:
            _close(self.card_data)
            self.card_data = None


def base_sign_in(source: CardSource, cache: GlobalCache, pin: bytes = DEFAULT_PIN) -> Workload:
    """One logon through a Base CSP that has not seen the card yet (a cold context) sharing `cache`."""
    csp = BaseCsp(source, cache)
    try:
        return csp.sign_in(pin)
    finally:
        csp.close()


# What a smart-card logon asks the CSP, one CryptoAPI call after another (Microsoft, "Smart Card
# Sign-in Flow in Windows" and "Base CSP and KSP-based architecture": the smart card credential
# provider in LogonUI enumerates the certificates, then LSA's Kerberos package acquires the
# container, presents the PIN, signs the PKINIT AuthPack and, with RSA key transport, decrypts
# the reply key). The naive CSP turns every one of them into connect + acquire + re-read.
def naive_operations(containers: int) -> list[str]:
    """The CryptoAPI calls of one logon on a card with `containers` certificates (one tile each)."""
    operations = ["enumerate containers (CryptAcquireContext VERIFYCONTEXT, PP_ENUMCONTAINERS)"]
    for index in range(containers):
        operations += [
            f"credential provider: CryptAcquireContext container {index}",
            f"credential provider: CryptGetUserKey container {index}",
            f"credential provider: CryptGetKeyParam KP_CERTIFICATE container {index}",
        ]
    operations += [f"tile {index}: CryptAcquireContext" for index in range(containers)]
    operations += [
        "Kerberos: CryptAcquireContext",
        "Kerberos: CryptSetProvParam PP_KEYEXCHANGE_PIN",
        "Kerberos: CryptGetUserKey",
        "Kerberos: CryptGetKeyParam KP_CERTIFICATE",
        "Kerberos: CryptSignHash (PKINIT AuthPack)",
        "Kerberos: CryptDecrypt (reply key)",
        "Kerberos: CryptReleaseContext",
    ]
    return operations


def naive_sign_in(source: CardSource, pin: bytes = DEFAULT_PIN) -> Workload:
    """The same logon through the naive CSP: for every operation it finds the card again
    (SCardEstablishContext, ListReaders, GetStatusChange, Connect, Status), acquires a new
    context, re-reads the container map and every certificate, with no data cache, short
    APDUs only and a transaction per APDU; the PIN goes with every private-key operation."""
    total = Workload("naive CSP")
    started = time.perf_counter()
    operations: list[str] | None = None
    done = 0
    while operations is None or done < len(operations):
        connection = source.connect()
        connection.meter.record("SCardGetStatusChange")  # card selection: the reader's state
        card_data = md.CardData.from_connection(
            connection, cache=None, applet=source.applet, extended=False, transaction_per_apdu=True
        )
        md.CardAcquireContext(card_data, 0)
        containers = _read_containers(card_data)
        if not containers:
            raise md.ScardError(md.SCARD_E_NO_KEY_CONTAINER, f"{source.name}: no container to sign with")
        if operations is None:
            operations = naive_operations(len(containers))
        operation = operations[done]
        if "PIN" in operation:
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
        elif "CryptSignHash" in operation:
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
            _sign(card_data, containers[0])
        elif "CryptDecrypt" in operation:
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
            _decrypt(card_data, containers[0])
        elif "CryptReleaseContext" in operation:
            md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
        meter = card_data.connection.meter
        _close(card_data)
        snapshot = meter.snapshot()
        total.calls.update(Counter(snapshot["calls"]))
        total.bytes_sent += snapshot["bytes_sent"]
        total.bytes_received += snapshot["bytes_received"]
        done += 1
    total.local_seconds = time.perf_counter() - started
    return total


def _decrypt(card_data: md.CardData, container: int) -> bytes:
    """CardRSADecrypt of a reply key encrypted to the container's public key (RSA key transport)."""
    blob = md.PUBLICKEYBLOB.unpack(md.CardGetContainerInfo(card_data, container).pbKeyExPublicKey)
    public = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    ciphertext = public.encrypt(b"\x42" * 32, padding.PKCS1v15())
    info = md.CARD_RSA_DECRYPT_INFO(
        2, container, md.AT_KEYEXCHANGE, ciphertext[::-1], dwPaddingType=md.CARD_PADDING_PKCS1
    )
    return md.CardRSADecrypt(card_data, info)


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
    csp = BaseCsp(source)
    cold = csp.sign_in()
    warm = csp.sign_in()
    csp.close()
    naive = naive_sign_in(source)
    cold.name, warm.name, naive.name = (
        f"Base CSP cold ({profile.upper()})",
        f"Base CSP warm ({profile.upper()})",
        f"naive CSP ({profile.upper()})",
    )
    return [naive, cold, warm, PHYSICAL_MINIMUM]
