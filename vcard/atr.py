"""Answer-to-reset construction and validation (ISO 7816-3 section 8).

Profiles give an ATR in hex; `check` explains what is wrong with one so that the
profile loader can name the problem, and `build` makes a T=0/T=1 ATR around
historical bytes with the correct check byte.
"""

from __future__ import annotations


def tck(body: bytes) -> int:
    """The check byte: XOR of T0 .. last historical byte (TS excluded)."""
    value = 0
    for byte in body[1:]:
        value ^= byte
    return value


def build(historical: bytes) -> bytes:
    """TS=3B, T0, TD1=80 (T=0, TD2 follows), TD2=01 (T=1), historical bytes, TCK.

    Offering T=1 is what vpcd and pcscd expect (vpcd always transmits as T=1).
    """
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x3B, 0x80 | len(historical), 0x80, 0x01]) + historical
    return body + bytes([tck(body)])


def _interface_end(atr: bytes) -> tuple[int, bool] | None:
    """(index after the interface bytes, whether a TCK is due) or None if they run past the end.

    A TCK is due when a TDi announces any protocol other than T=0 (ISO 7816-3 8.2.5).
    """
    y = atr[1] & 0xF0
    pos = 2
    needs_tck = False
    while True:
        pos += bin(y & 0x70).count("1")  # TAi, TBi, TCi present
        if not y & 0x80:
            break
        if pos >= len(atr):
            return None
        td = atr[pos]
        needs_tck = needs_tck or td & 0x0F != 0
        y = td & 0xF0
        pos += 1
    return (pos, needs_tck) if pos <= len(atr) else None


def check(atr: bytes) -> str | None:
    """None if `atr` is a well-formed ATR, else a sentence saying what is wrong."""
    if not 2 <= len(atr) <= 33:
        return f"an ATR has 2 to 33 bytes, this one has {len(atr)}"
    if atr[0] not in (0x3B, 0x3F):
        return f"TS must be 3B or 3F, not {atr[0]:02X}"
    interface = _interface_end(atr)
    if interface is None:
        return "interface bytes run past the end of the ATR"
    pos, needs_tck = interface
    expected = pos + (atr[1] & 0x0F) + (1 if needs_tck else 0)
    if len(atr) != expected:
        return f"T0 and the interface bytes announce {expected} bytes, the ATR has {len(atr)}"
    if needs_tck and tck(atr[:-1]) != atr[-1]:
        return f"check byte TCK is {atr[-1]:02X}, should be {tck(atr[:-1]):02X}"
    return None


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of a well-formed ATR."""
    count = atr[1] & 0x0F
    has_tck = check(atr) is None and (_interface_end(atr) or (0, False))[1]
    end = len(atr) - (1 if has_tck else 0)
    return atr[end - count : end]


# Card capabilities (ISO 7816-4 §8.1.1.2.7): compact-TLV tag 7 in the historical bytes;
# its third byte is the "software function table 3": b7 (0x40) says the card takes extended
# Lc and Le fields, b8 (0x80) command chaining.
CAPABILITY_EXTENDED_LENGTH = 0x40
CAPABILITY_COMMAND_CHAINING = 0x80


def compact_tlv(historical: bytes) -> dict[int, bytes] | None:
    """The compact-TLV objects of historical bytes by tag (ISO 7816-4 §8.1.1), or None.

    Category indicator 00: objects then a 3-byte status indicator; 80: objects only
    (a status indicator, if any, is object 8). Any other category has no objects here.
    """
    if not historical or historical[0] not in (0x00, 0x80):
        return None
    body = historical[1:-3] if historical[0] == 0x00 else historical[1:]
    objects: dict[int, bytes] = {}
    pos = 0
    while pos < len(body):
        tag, length = body[pos] >> 4, body[pos] & 0x0F
        if pos + 1 + length > len(body):
            return None  # runs past the end: not compact-TLV after all
        objects[tag] = body[pos + 1 : pos + 1 + length]
        pos += 1 + length
    return objects


def software_functions(atr: bytes) -> int:
    """Third card-capabilities byte of a well-formed ATR's historical bytes; 0 when absent."""
    if check(atr) is not None:
        return 0
    capabilities = (compact_tlv(historical_bytes(atr)) or {}).get(0x7, b"")
    return capabilities[2] if len(capabilities) >= 3 else 0


def extended_length(atr: bytes) -> bool:
    """True when the ATR says the card takes extended Lc/Le (what a host should then send)."""
    return bool(software_functions(atr) & CAPABILITY_EXTENDED_LENGTH)
