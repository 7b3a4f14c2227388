"""The redirection model: the time of a run when every remote SCard call crosses a link.

MS-RDPESC carries each WinSCard call as one device I/O request from the RDP server
to the client and one completion back, so a run of N remote calls moving B bytes
costs, over a link of round-trip time r and bandwidth b:

    local time + N * r + (B + N * framing) * 8 / b

"local time" is the run's own wall time with no link (it already contains the card's
work). Calls listed in `calllog.LOCAL_CALLS` are answered on the server and cost
nothing. `framing` is the per-call overhead of the transport, estimated from the
fixed parts of the PDUs:

- request: RDPDR DR_CONTROL_REQ header, 56 bytes (MS-RDPEFS 2.2.1.4.5), the NDR type
  serialization headers, 16 (MS-RPCE 2.2.6), the call's fixed fields with context and
  card handles, about 48; response: DR_DEVICE_IOCOMPLETION + output length, 20
  (MS-RDPEFS 2.2.1.5.5), NDR headers 16, return code and fixed fields about 24;
- each way a virtual-channel PDU (CHANNEL_PDU_HEADER 8, MCS/X.224/TPKT about 15) in a
  TLS record (about 29 with AES-GCM).

So about 172 bytes per request and 112 per response. At 4 Mbit/s that is 0.6 ms per
call: the RTT dominates by far at any WAN latency; bandwidth matters for certificates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .calllog import Workload

REQUEST_OVERHEAD = 172
RESPONSE_OVERHEAD = 112


@dataclass(frozen=True)
class Link:
    """A redirection link: round-trip time (s), bandwidth (bit/s, None = unlimited), framing."""

    rtt: float
    bandwidth: float | None = None
    request_overhead: int = REQUEST_OVERHEAD
    response_overhead: int = RESPONSE_OVERHEAD

    def __post_init__(self) -> None:
        if self.rtt < 0:
            raise ValueError(f"rtt must be >= 0 s, not {self.rtt}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0 bit/s, not {self.bandwidth}")


def link_seconds(work: Workload, link: Link) -> float:
    """The time the link adds to the run: one round trip per remote call plus the bytes on the wire."""
    calls = work.remote_calls
    seconds = calls * link.rtt
    if link.bandwidth is not None:
        wire = work.bytes_sent + work.bytes_received
        wire += calls * (link.request_overhead + link.response_overhead)
        seconds += wire * 8 / link.bandwidth
    return seconds


def predict(work: Workload, link: Link) -> float:
    """The run's time over the link: its own time plus what the link adds."""
    return work.local_seconds + link_seconds(work, link)


_DURATION_UNITS = {"": 1e-3, "ms": 1e-3, "s": 1.0, "us": 1e-6}
_BANDWIDTH_UNITS = {
    "": 1.0, "bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
    "bps": 1.0, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9,
}  # fmt: skip


def parse_duration(text: str) -> float:
    """'250ms', '0.25s' or '250' (ms) -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 250ms, 0.25s)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or ""]


def parse_bandwidth(text: str) -> float:
    """'4mbit', '4Mbit/s', '512kbit', '4000000' (bit/s) -> bits per second."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmg]?(?:bit|bps)?)(?:/s)?\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a bandwidth (e.g. 4mbit, 512kbit)")
    return float(match.group(1)) * _BANDWIDTH_UNITS[match.group(2)]


# pcsc-lite's event handler asks the reader driver for card presence, then sleeps
# PCSCLITE_STATUS_POLL_RATE (400 ms); vpcd answers "present?" by asking the card for its ATR
# (vsmartcard src/vpcd/vpcd.c, vicc_present), one more round trip on the same link.
PCSCD_POLL_SECONDS = 0.4


# A warm reset through vpcd (SCardDisconnect/EndTransaction/Reconnect with SCARD_RESET_CARD)
# measured at two round trips: IFDHPowerICC(IFD_RESET) sends the reset and then asks the card
# for its ATR (vsmartcard src/vpcd/ifd-vpcd.c), and pcscd asks again before it answers.
RESET_ROUND_TRIPS = 2


def vpcd_link_predict(
    own_seconds: float, apdus: int, rtt: float, power_ups: int = 1, resets: int = 0
) -> float:
    """A run's time when the card sits behind a link of `rtt` on vpcd (`vcard run --link-delay`).

    Every APDU and every ATR request at power-up is one round trip, a warm reset
    (`Workload.resets`: a disconnect or transaction end with SCARD_RESET_CARD, as
    yubico-piv-tool's libykpiv disconnects) `RESET_ROUND_TRIPS`. pcscd's presence poll
    (an ATR request) also takes the link, once per `PCSCD_POLL_SECONDS + 1.5 rtt`: its
    own round trip plus, on average, half of the one in flight it waits for. While it
    holds the link a client waiting for the link waits longer, so the client's time on the
    link stretches by 1 / (1 - share); its own work (process start-up, host crypto) does not
    wait for the link and is not stretched.
    """
    if rtt < 0:
        raise ValueError(f"rtt must be >= 0 s, not {rtt}")
    on_link = (apdus + power_ups + RESET_ROUND_TRIPS * resets) * rtt
    poll_share = rtt / (PCSCD_POLL_SECONDS + 1.5 * rtt)
    return own_seconds + on_link / (1 - poll_share)
