"""Application identifiers the card answers to and the host selects."""

from __future__ import annotations

PIV_AID = bytes.fromhex("A000000308000010000100")
"""NIST SP 800-73-4 part 1 §2.2: RID A0 00 00 03 08, PIX 00 00 10 00 01 00 (application + version)."""
PIV_AID_PREFIX = PIV_AID[:9]
"""The right-truncated AID (no version) that OpenSC, Windows and the minidriver layer SELECT."""
NIST_RID = PIV_AID[:5]

GIDS_AID = bytes.fromhex("A000000397425446590201")
"""Full GIDS AID: registered prefix A0 00 00 03 97 42 54 46 59, spec revision 02, reserved 01."""
GIDS_AID_PREFIX = GIDS_AID[:9]
"""What OpenSC (src/libopensc/card-gids.c) and Windows send in SELECT (right-truncated AID)."""

ISO_APPLET_AID = bytes.fromhex("F07663617264") + b"\x01"
"""The bare ISO applet of vcard: proprietary RID F0 + "vcard" + 01."""

SC_PNP_AID = bytes.fromhex("A0000003974349445F0100")
"""Microsoft's smart card Plug and Play AID ("Discovery Process", Windows driver docs): Windows
selects it, then asks GET DATA 7F68 for the card identifier (a list of GUIDs)."""
