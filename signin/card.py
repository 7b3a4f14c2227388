"""Reading a card's containers and certificates through the minidriver API, as the Base CSP does.

The container map (mscp/cmapfile) says which containers exist and which is the
default; CardGetContainerInfo says which part of the container holds the key
(signature or key exchange); the certificate of that part is mscp/kscNN or
mscp/kxcNN (Windows Smart Card Minidriver Specification v7, §6 "Card file system").
The default container is read first, then every other container by index.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import minidriver as md
from vcard.host import CardEndpoint

from .rules import CardCertificate


class CardReadError(Exception):
    """The card could not be opened or its container map is unreadable (message says which)."""


@dataclass
class CardContents:
    certificates: list[CardCertificate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # containers skipped, with the reason


APPLETS = ("piv", "gids")


@contextmanager
def open_card(
    reader: str | None = None,
    endpoint: CardEndpoint | None = None,
    writable: bool = False,
) -> Iterator[md.CardData]:
    """CardAcquireContext on a PC/SC reader, or on a card object in this process (`endpoint`).

    `card_data.applet` says which minidriver bound ("piv" or "gids"): each is tried in
    turn, PIV first, as CardAcquireContext itself probes. No data cache (`cache=None`):
    a sign-in check must see what is on the card now, not what an earlier CARD_DATA of
    this process cached. `writable` turns on the PIV minidriver's optional write support
    (GIDS is always writable).
    """
    with ExitStack() as stack:
        kwargs: dict[str, Any] = {"idle_reset_seconds": None, "cache": None, "piv_writable": writable}
        if (reader is None) == (endpoint is None):
            raise ValueError("open_card needs a reader or an in-process card, not both")
        try:
            card_data = None
            for applet in APPLETS:
                candidate = (
                    md.CardData.connect(reader, applet=applet, **kwargs)
                    if endpoint is None
                    else md.CardData.inprocess(endpoint, applet=applet, **kwargs)
                )
                try:
                    md.CardAcquireContext(candidate, 0)
                except md.ScardError as error:
                    candidate.close()
                    if error.code == md.Scard.E_UNKNOWN_CARD:
                        continue
                    raise
                card_data = candidate
                break
            if card_data is None:
                raise CardReadError("card: neither a PIV nor a GIDS application answers")
            stack.callback(card_data.close)
        except md.ScardError as error:
            raise CardReadError(f"card: {error}") from None
        except (OSError, ValueError) as error:
            raise CardReadError(f"card: {type(error).__name__}: {error}") from None
        yield card_data


def key_spec_of(info: md.CONTAINER_INFO) -> int:
    """The container's key spec from where CardGetContainerInfo put the public key."""
    signature = bool(info.pbSigPublicKey)
    blob = md.public_key_of(info)
    if isinstance(blob, md.PUBLICKEYBLOB):
        return md.AT_SIGNATURE if signature else md.AT_KEYEXCHANGE
    ecdsa = {256: md.AT_ECDSA_P256, 384: md.AT_ECDSA_P384, 521: md.AT_ECDSA_P521}
    ecdhe = {256: md.AT_ECDHE_P256, 384: md.AT_ECDHE_P384, 521: md.AT_ECDHE_P521}
    return (ecdsa if signature else ecdhe)[blob.bits]


def container_map(card_data: md.CardData) -> list[md.CONTAINER_MAP_RECORD]:
    raw = md.CardReadFile(card_data, md.szBASE_CSP_DIR, md.szCONTAINER_MAP_FILE)
    size = md.CONTAINER_MAP_RECORD.SIZE
    if len(raw) % size:
        raise CardReadError(f"mscp/cmapfile: length {len(raw)} is not a multiple of {size}")
    return [md.CONTAINER_MAP_RECORD.unpack(raw[i : i + size]) for i in range(0, len(raw), size)]


def key_spec_from_map(record: md.CONTAINER_MAP_RECORD, certificate: x509.Certificate) -> int:
    """The key spec as the Base CSP finds it without CardGetContainerInfo: the container map says
    which half holds a key (wKeyExchangeKeySizeBits / wSigKeySizeBits), the certificate which algorithm."""
    exchange = bool(record.wKeyExchangeKeySizeBits)
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.curve.key_size
        table = ECDHE_BY_BITS if exchange else ECDSA_BY_BITS
        if bits in table:
            return table[bits]
    return md.AT_KEYEXCHANGE if exchange else md.AT_SIGNATURE


ECDSA_BY_BITS = {256: md.AT_ECDSA_P256, 384: md.AT_ECDSA_P384, 521: md.AT_ECDSA_P521}
ECDHE_BY_BITS = {256: md.AT_ECDHE_P256, 384: md.AT_ECDHE_P384, 521: md.AT_ECDHE_P521}


def read_certificates(card_data: md.CardData, container_info: bool = True) -> CardContents:
    """Every container's certificate, the default container first (one transaction).

    `container_info=False` skips CardGetContainerInfo (the public key is not needed to find
    or judge a certificate) and takes the key spec from the container map and the
    certificate, as the Base CSP's certificate enumeration can: fewer card round trips.
    """
    contents = CardContents()
    with card_data.transaction():
        try:
            records = container_map(card_data)
        except md.ScardError as error:
            if error.code == md.Scard.E_FILE_NOT_FOUND:
                return contents  # no containers at all
            raise CardReadError(f"mscp/cmapfile: {error}") from None
        valid = [(index, record) for index, record in enumerate(records) if record.is_valid]
        valid.sort(key=lambda item: (not item[1].bFlags & md.CONTAINER_MAP_DEFAULT_CONTAINER, item[0]))
        for index, record in valid:
            if container_info:
                try:
                    info = md.CardGetContainerInfo(card_data, index)
                    key_spec = key_spec_of(info)
                except md.ScardError as error:
                    contents.problems.append(f"container {index}: CardGetContainerInfo: {error}")
                    continue
                exchange = key_spec in (md.AT_KEYEXCHANGE, *md.ECDHE_KEYSPECS)
            else:
                exchange = bool(record.wKeyExchangeKeySizeBits)
            prefix = md.szUSER_KEYEXCHANGE_CERT_PREFIX if exchange else md.szUSER_SIGNATURE_CERT_PREFIX
            name = f"{prefix}{index:02d}"
            try:
                der = md.CardReadFile(card_data, md.szBASE_CSP_DIR, name)
            except md.ScardError as error:
                if error.code != md.Scard.E_FILE_NOT_FOUND:
                    contents.problems.append(f"container {index}: mscp/{name}: {error}")
                continue
            try:
                certificate = x509.load_der_x509_certificate(der)
            except ValueError as error:
                contents.problems.append(f"container {index}: mscp/{name} is not a DER certificate ({error})")
                continue
            if not container_info:
                key_spec = key_spec_from_map(record, certificate)
            contents.certificates.append(
                CardCertificate(
                    certificate,
                    index,
                    key_spec,
                    default_container=bool(record.bFlags & md.CONTAINER_MAP_DEFAULT_CONTAINER),
                    container_name=record.wszGuid,
                    file_name=f"{md.szBASE_CSP_DIR}/{name}",
                )
            )
    return contents
