"""The one host-side APDU stack: connection -> processors -> protocol (shaped like yubikit's).

    from vcard.host import PcscConnection, SmartCardProtocol

    with PcscConnection("Virtual PCD 00 00") as connection:
        protocol = SmartCardProtocol(connection)
        protocol.select(bytes.fromhex("A000000308000010000100"))

Host code (the minidriver layer, the script runner, the pytest plugin, tests and
benchmarks) reaches cards only through this package. It imports no card
implementation module: an in-process card is any object with `atr`, `transmit`,
`power_on`, `power_off` and `reset`.
"""

from .connection import (
    CallMeter,
    CardEndpoint,
    Connection,
    Disposition,
    InProcessConnection,
    PcscConnection,
    PcscError,
    list_readers,
)
from .processors import TRAFFIC, Link, ResponseError
from .protocol import ApduError, SmartCardProtocol

__all__ = [
    "TRAFFIC",
    "ApduError",
    "CallMeter",
    "CardEndpoint",
    "Connection",
    "Disposition",
    "InProcessConnection",
    "Link",
    "PcscConnection",
    "PcscError",
    "ResponseError",
    "SmartCardProtocol",
    "list_readers",
]
