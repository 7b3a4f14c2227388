"""APDU processors: small layers between a protocol and a link, each with one job.

A processor takes a `CommandAPDU` and returns a `ResponseAPDU`. The stack a
`SmartCardProtocol` builds, from the top:

    CommandChaining   data longer than one short APDU -> CLA bit 0x10 blocks (short format)
    LengthRetry       6Cxx -> the same command again with Le = xx
    ResponseChaining  61xx -> GET RESPONSE until the card has given everything
    Exchange          encode (short or extended), transmit over the link, parse; TRAFFIC log

Counting and per-call delay are the link's (`CallMeter` in vcard.host.connection):
every PC/SC call is counted there, not only APDUs.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from .. import redact
from ..apdu import EXTENDED_MAX_NE, SHORT_MAX_NE, CommandAPDU, ResponseAPDU
from ..wire.ins import IsoIns

TRAFFIC = 5  # below DEBUG, as yubikit does: every APDU in and out
logging.addLevelName(TRAFFIC, "TRAFFIC")
log = logging.getLogger("vcard.host")

SHORT_MAX_DATA = 255
CHAINING_BIT = 0x10
_SW_OK = 0x9000


class ResponseError(Exception):
    """The link answered with fewer than two bytes: no status word. `response` has what came."""

    def __init__(self, message: str, response: bytes) -> None:
        self.response = response
        super().__init__(message)


class Link(Protocol):
    """Anything that moves one raw APDU: a connection, or the minidriver's card handle."""

    def transmit(self, apdu: bytes) -> bytes: ...


class ApduProcessor(Protocol):
    def send(self, command: CommandAPDU) -> ResponseAPDU: ...


class Exchange:
    """The bottom layer: one command, one round trip, one response; logged with secrets hidden."""

    def __init__(self, link: Link, extended: bool = False) -> None:
        self.link = link
        self.extended = extended

    def send(self, command: CommandAPDU) -> ResponseAPDU:
        if not self.extended and command.ne is not None and command.ne > SHORT_MAX_NE:
            command = command._replace(ne=SHORT_MAX_NE)
        return self.exchange(command._replace(extended=self.extended).encode())

    def exchange(self, raw: bytes) -> ResponseAPDU:
        """Send raw bytes as they are (scripts and conformance tests need exactly their bytes)."""
        if not log.isEnabledFor(TRAFFIC):
            return _parse(raw, self.link.transmit(raw))
        log.log(TRAFFIC, "> %s", redact.command_text(raw))
        started = time.perf_counter()
        response = self.link.transmit(raw)
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.log(TRAFFIC, "< %s (%.1f ms)", redact.response_text(raw, response), elapsed_ms)
        return _parse(raw, response)


def _parse(command: bytes, response: bytes) -> ResponseAPDU:
    if len(response) < 2:
        raise ResponseError(
            f"the answer to {redact.command_text(command)} has {len(response)} bytes and no status word",
            bytes(response),
        )
    return ResponseAPDU.parse(response)


class ResponseChaining:
    """61xx: collect the rest with GET RESPONSE (ISO 7816-4 §5.3.4), as many times as it takes."""

    def __init__(self, inner: ApduProcessor) -> None:
        self.inner = inner

    def send(self, command: CommandAPDU) -> ResponseAPDU:
        response = self.inner.send(command)
        if response.sw1 != 0x61:
            return response
        data = [response.data]
        while response.sw1 == 0x61:
            response = self.inner.send(
                CommandAPDU(command.cla & 0x03, IsoIns.GET_RESPONSE, 0, 0, ne=response.sw2 or SHORT_MAX_NE)
            )
            data.append(response.data)
        return ResponseAPDU(b"".join(data), response.sw)


class LengthRetry:
    """6Cxx: the card names the exact Le; send the same command again with it."""

    def __init__(self, inner: ApduProcessor) -> None:
        self.inner = inner

    def send(self, command: CommandAPDU) -> ResponseAPDU:
        response = self.inner.send(command)
        if response.sw1 == 0x6C:
            return self.inner.send(command._replace(ne=response.sw2 or SHORT_MAX_NE))
        return response


class CommandChaining:
    """Short format: command data longer than 255 bytes goes in blocks with CLA bit 0x10
    (ISO 7816-4 §5.3.3). Every block but the last must be answered 9000; an error stops
    the chain and is the answer. The extended format sends the data in one APDU."""

    def __init__(self, inner: ApduProcessor, extended: bool = False, block: int = SHORT_MAX_DATA) -> None:
        self.inner = inner
        self.extended = extended
        self.block = block

    def send(self, command: CommandAPDU) -> ResponseAPDU:
        data = command.data
        if self.extended or len(data) <= self.block:
            return self.inner.send(command)
        last = (len(data) - 1) // self.block * self.block
        for offset in range(0, last, self.block):
            block = CommandAPDU(
                command.cla | CHAINING_BIT,
                command.ins,
                command.p1,
                command.p2,
                data[offset : offset + self.block],
            )
            response = self.inner.send(block)
            if response.sw != _SW_OK:
                return response
        return self.inner.send(command._replace(data=data[last:]))


def max_ne(extended: bool) -> int:
    """The largest Ne a command can ask for in this format (what Le = 00 / 0000 means)."""
    return EXTENDED_MAX_NE if extended else SHORT_MAX_NE
