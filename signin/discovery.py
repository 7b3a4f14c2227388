"""Smart-card discovery as Windows documents it: which minidriver Windows would bind, and why.

Nothing here runs Windows. The steps, their order and the binding rule come from
Microsoft's "Smart Card Discovery Process" page (windows-driver-docs, smartcard/
discovery-process.md) and "Windows Inbox Smart Card Minidriver"
(smartcard/windows-inbox-smart-card-minidriver.md):

1. ATR: Winscard compares the card's ATR, under each registered ATRMask, with the
   ATRs under HKLM\\SOFTWARE\\Microsoft\\Cryptography\\Calais\\SmartCards. A match
   names the card and its minidriver; no discovery APDU is needed for the binding.
2. Plug and Play: SELECT the SC-PnP AID, then GET DATA 7F68 whatever that SELECT
   answered; the first GUID of the CardID answer is the device ID. Without one,
   SELECT MF, SELECT EF.ATR (2F01) and READ BINARY.
3. SELECT the PIV AID (A0 00 00 03 08 00 00 10 00; the last two bytes of the
   full AID are not sent). Success: a PIV device, bound to the inbox class
   minidriver (msclmd.dll) in PIV mode.
4. Only if the PIV SELECT failed: SELECT the MS GIDS AID (A0 00 00 03 97 42 54 46
   59). Success: a GIDS device, bound to the same class minidriver in GIDS mode.
5. Neither: Winscard finds no card name, so no minidriver is bound (from Windows 8
   Plug and Play pairs the card with the inbox NULL driver). The class minidriver,
   once loaded for a card, would treat such a card as GIDS, but nothing loads it.

The class minidriver's own CardAcquireContext discovery tries PIV first, then GIDS,
so a card answering both AIDs runs in PIV mode; this module follows that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vcard.apdu import CommandAPDU, sw_name
from vcard.atr import historical_bytes
from vcard.host import Connection, SmartCardProtocol
from vcard.tlv import TLVError, decode, decode_one
from vcard.wire.aids import GIDS_AID_PREFIX, PIV_AID_PREFIX, SC_PNP_AID

SW_OK = 0x9000
SELECT = 0xA4
GET_DATA = 0xCA
READ_BINARY = 0xB0
CARD_ID_TAG = 0x7F68
MF = b"\x3f\x00"
EF_ATR = b"\x2f\x01"

PIV = "PIV"
GIDS = "GIDS"
MINIDRIVERS = {
    PIV: "Windows inbox smart card class minidriver (msclmd.dll), PIV mode",
    GIDS: "Windows inbox smart card class minidriver (msclmd.dll), GIDS mode",
}


@dataclass(frozen=True)
class KnownAtr:
    """One Calais\\SmartCards registry entry: a card name, its ATR, its ATRMask and minidriver."""

    name: str
    atr: bytes
    mask: bytes
    minidriver: str

    def matches(self, atr: bytes) -> bool:
        if len(atr) != len(self.atr) or len(self.mask) != len(self.atr):
            return False
        return all(a & m == r & m for a, m, r in zip(atr, self.mask, self.atr, strict=True))


KNOWN_ATRS: tuple[KnownAtr, ...] = ()
"""vcard's ATRs are registered with no Windows installation, so by default nothing matches."""


@dataclass(frozen=True)
class Step:
    """One discovery step: the command sent (None for the ATR look-up), the answer and what it means."""

    name: str
    command: bytes | None
    sw: int | None
    data: bytes
    outcome: str

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "command": self.command.hex().upper() if self.command is not None else None,
            "sw": f"{self.sw:04X}" if self.sw is not None else None,
            "data": self.data.hex().upper(),
            "outcome": self.outcome,
        }


@dataclass
class Discovery:
    """What discovery found: the steps, the binding (PIV, GIDS, a registered card, or None) and why."""

    reader: str
    atr: bytes
    steps: list[Step] = field(default_factory=list)
    binding: str | None = None
    minidriver: str | None = None
    reason: str = ""
    device_id: str | None = None
    meter: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "reader": self.reader,
            "atr": self.atr.hex().upper(),
            "steps": [step.as_json() for step in self.steps],
            "binding": self.binding,
            "minidriver": self.minidriver,
            "reason": self.reason,
            "device_id": self.device_id,
            "meter": self.meter,
        }


class CardIdError(ValueError):
    """A GET DATA 7F68 answer that is not a CardID structure."""


def parse_card_id(data: bytes) -> tuple[str, list[bytes]]:
    """Vendor and GUIDs of a CardID (DER SEQUENCE {version INTEGER DEFAULT 0, vendor IA5String, guids}).

    The answer may come wrapped in its 7F68 tag; both forms are read.
    """
    try:
        outer = decode_one(data)
        if outer.tag == CARD_ID_TAG:
            outer = decode_one(outer.value)
        if outer.tag != 0x30:
            raise CardIdError(f"CardID must be a SEQUENCE (30), not tag {outer.tag:X}")
        fields = decode(outer.value)
        if fields and fields[0].tag == 0x02:
            fields = fields[1:]
        if len(fields) != 2 or fields[0].tag != 0x16 or fields[1].tag != 0x30:
            raise CardIdError("CardID must hold vendor (IA5String, 16) then guids (SEQUENCE, 30)")
        guids = [item.value for item in decode(fields[1].value)]
    except TLVError as error:
        raise CardIdError(f"CardID is not valid DER: {error}") from None
    if not guids or any(len(guid) != 16 for guid in guids):
        raise CardIdError("CardID guids must be one or more 16-byte OCTET STRINGs")
    return fields[0].value.decode("ascii", "replace"), guids


class _Prober:
    """Sends discovery commands and records each as a step."""

    def __init__(self, protocol: SmartCardProtocol, steps: list[Step]) -> None:
        self.protocol = protocol
        self.steps = steps

    def send(self, name: str, command: CommandAPDU, success: str, failure: str) -> Step:
        response = self.protocol.transmit(command)
        ok = response.sw == SW_OK
        outcome = success if ok else f"{failure} ({response.sw:04X} {sw_name(response.sw)})"
        step = Step(name, command.encode(), response.sw, response.data, outcome)
        self.steps.append(step)
        return step


def _select_aid(aid: bytes, le: bool) -> CommandAPDU:
    return CommandAPDU(0x00, SELECT, 0x04, 0x00, aid, 256 if le else None)


def discover(connection: Connection, known_atrs: tuple[KnownAtr, ...] = KNOWN_ATRS) -> Discovery:
    """Run the documented discovery steps on `connection`; the meter counts what they cost."""
    atr = connection.atr
    result = Discovery(reader=connection.reader, atr=atr)
    steps = result.steps
    registered = next((entry for entry in known_atrs if entry.matches(atr)), None)
    if registered is not None:
        steps.append(Step("atr", None, None, atr, f"ATR matches registered card {registered.name!r}"))
    else:
        steps.append(Step("atr", None, None, atr, "no ATR match in Calais\\SmartCards, continue"))

    probe = _Prober(SmartCardProtocol(connection), steps)
    probe.send(
        "select SC-PnP AID", _select_aid(SC_PNP_AID, True), "SC-PnP application", "no SC-PnP application"
    )
    card_id = probe.send(
        "get data 7F68",
        CommandAPDU(0x00, GET_DATA, 0x7F, 0x68, b"", 256),
        "card identifier",
        "no card identifier",
    )
    if card_id.sw == SW_OK:
        try:
            vendor, guids = parse_card_id(card_id.data)
            result.device_id = f"{vendor}:{guids[0].hex().upper()}"
        except CardIdError as error:
            steps[-1] = Step(card_id.name, card_id.command, card_id.sw, card_id.data, f"unusable: {error}")
    if result.device_id is None:
        mf = probe.send("select MF", CommandAPDU(0x00, SELECT, 0x00, 0x0C, MF), "MF selected", "no MF")
        if mf.sw == SW_OK:
            ef = probe.send(
                "select EF.ATR", CommandAPDU(0x00, SELECT, 0x02, 0x0C, EF_ATR), "EF.ATR selected", "no EF.ATR"
            )
            if ef.sw == SW_OK:
                probe.send(
                    "read EF.ATR",
                    CommandAPDU(0x00, READ_BINARY, 0x00, 0x00, b"", 256),
                    "EF.ATR read",
                    "unreadable",
                )

    piv = probe.send(
        "select PIV AID", _select_aid(PIV_AID_PREFIX, False), "PIV application", "no PIV application"
    )
    gids = None
    if piv.sw != SW_OK:
        gids = probe.send(
            "select GIDS AID", _select_aid(GIDS_AID_PREFIX, True), "GIDS application", "no GIDS application"
        )

    historical = historical_bytes(atr).hex().upper()
    if registered is not None:
        result.binding, result.minidriver = registered.name, registered.minidriver
        result.reason = "the ATR matches a Calais\\SmartCards entry (Winscard discovery step 2)"
    elif piv.sw == SW_OK:
        result.binding, result.minidriver = PIV, MINIDRIVERS[PIV]
        result.reason = "no ATR match; SELECT of the PIV AID succeeded (class minidriver tries PIV first)"
    elif gids is not None and gids.sw == SW_OK:
        result.binding, result.minidriver = GIDS, MINIDRIVERS[GIDS]
        result.reason = "no ATR match; PIV AID not found; SELECT of the MS GIDS AID succeeded"
    else:
        result.reason = (
            "no ATR match and neither the PIV nor the MS GIDS AID can be selected: Winscard finds "
            "no card name, so no minidriver is bound (Windows 8+ pairs the card with the NULL driver)"
        )
    if result.device_id is None and result.binding in (PIV, GIDS):
        result.device_id = historical or f"{result.binding}-compatible"
    elif result.device_id is None and historical:
        result.device_id = historical
    result.meter = connection.meter.snapshot()
    return result


def render(result: Discovery) -> list[str]:
    """Human-readable lines: one per step, then the binding and its reason."""
    lines = [f"reader: {result.reader}", f"ATR:    {result.atr.hex().upper()}"]
    for step in result.steps:
        command = step.command.hex().upper() if step.command is not None else "-"
        answer = f"{step.sw:04X} {step.data.hex().upper()}".rstrip() if step.sw is not None else "-"
        lines.append(f"  {step.name:<18} > {command}")
        lines.append(f"  {'':<18} < {answer}: {step.outcome}")
    lines.append(
        f"binding:    {result.binding or 'none'}" + (f" ({result.minidriver})" if result.minidriver else "")
    )
    lines.append(f"reason:     {result.reason}")
    lines.append(f"device id:  {result.device_id or 'none'}")
    meter = result.meter
    calls = ", ".join(f"{name} {count}" for name, count in sorted(meter.get("calls", {}).items()))
    lines.append(f"cost:       {meter.get('apdus', 0)} APDUs; SCard calls: {calls}")
    return lines
