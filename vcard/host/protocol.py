"""The protocol host code talks to: commands in, response data out, a typed error otherwise.

`SmartCardProtocol` stacks the processors of vcard.host.processors over a link and
offers what clients call (shaped like yubikit's `SmartCardProtocol`):

- `send_apdu(cla, ins, p1, p2, data, le)`: the response data, or `ApduError` for any
  status word but 9000 (the error keeps the data, e.g. for 63Cx answers);
- `transmit(command)`: the processed `ResponseAPDU` whatever its status word;
- `exchange(raw)`: one raw round trip, no processing (scripts, conformance tests);
- `select(aid)`.
"""

from __future__ import annotations

from ..apdu import CommandAPDU, ResponseAPDU, sw_name
from .processors import CommandChaining, Exchange, LengthRetry, Link, ResponseChaining, max_ne

SW_OK = 0x9000
SELECT = 0xA4


class ApduError(Exception):
    """The card answered with a status word other than 9000."""

    def __init__(self, sw: int, data: bytes = b"") -> None:
        self.sw = sw
        self.data = data
        super().__init__(f"SW {sw:04X} ({sw_name(sw)})")


class SmartCardProtocol:
    """Short or extended APDUs with command chaining, GET RESPONSE and 6Cxx retry over one link."""

    def __init__(self, link: Link, extended: bool = False) -> None:
        self.link = link
        self.extended = extended
        self._exchange = Exchange(link, extended)
        self._processor = CommandChaining(LengthRetry(ResponseChaining(self._exchange)), extended)

    def transmit(self, command: CommandAPDU) -> ResponseAPDU:
        """Send one command through every processor; the whole response, any status word."""
        return self._processor.send(command)

    def send_apdu(self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0) -> bytes:
        """Send a command and return its response data; `ApduError` unless the card says 9000.

        `le` is the Le field: 0 asks for as much as the format allows (Le = 00), None
        leaves Le out (ISO case 1 or 3), 1-65535 asks for that many bytes.
        """
        ne = None if le is None else (le or max_ne(self.extended))
        response = self.transmit(CommandAPDU(cla, ins, p1, p2, bytes(data), ne))
        if response.sw != SW_OK:
            raise ApduError(response.sw, response.data)
        return response.data

    def exchange(self, raw: bytes) -> ResponseAPDU:
        """One raw command exactly as given, one response (no chaining, no GET RESPONSE)."""
        return self._exchange.exchange(bytes(raw))

    def select(self, aid: bytes) -> bytes:
        """SELECT by DF name (AID); the answer's data (FCI or application property template)."""
        return self.send_apdu(0x00, SELECT, 0x04, 0x00, aid)
