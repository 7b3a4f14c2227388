"""How the minidriver layer reaches a card: the host APDU stack (vcard.host), in Windows terms.

The minidriver does not keep a transport of its own. It opens a `vcard.host`
connection (PC/SC through pcscd, or a card in this process), puts the resource
manager's handle (`rm.CardHandle`, transactions and the five-second rule) on top,
and talks APDUs through `vcard.host.SmartCardProtocol` over that handle. This module
adds the one thing the Windows API needs on top: PC/SC failures become `ScardError`
with the Windows code (pcsc-lite's codes differ from Windows' for some conditions).

Every SCard call is counted by the connection's `CallMeter`, which can also delay
each call by a fixed time: a model of smart-card redirection over RDP, where every
SCard call is a network round trip to the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vcard.host import CallMeter, CardEndpoint, Connection, InProcessConnection, PcscConnection, PcscError

from .errors import Scard, ScardError, from_pcsc


@contextmanager
def scard_errors() -> Iterator[None]:
    """Turn a PC/SC failure into the `ScardError` a Windows caller would see."""
    try:
        yield
    except PcscError as error:
        code = from_pcsc(error.code) if error.code is not None else Scard.F_UNKNOWN_ERROR
        raise ScardError(code, str(error)) from None


def connect_pcsc(reader: str | None = None, delay: float = 0.0) -> Connection:
    """SCardEstablishContext + SCardConnect to `reader` (first reader if None)."""
    with scard_errors():
        return PcscConnection(reader, CallMeter(delay))


def connect_inprocess(card: CardEndpoint, delay: float = 0.0) -> Connection:
    """A card object in this process, counted like a PC/SC reader."""
    return InProcessConnection(card, CallMeter(delay))
