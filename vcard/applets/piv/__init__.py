"""PIV card application (NIST SP 800-73) with the YubiKey PIV extensions.

The applet is assembled from layers: `base` (state, SELECT, security helpers),
`commands` (the SP 800-73 Part 2 command set) and `yubikey` (Yubico's vendor
commands). Profiles configure it through their `[applets.piv]` table (docs/piv.md).
"""

from __future__ import annotations

from typing import ClassVar

from .yubikey import YubicoCommands


class PivApplet(YubicoCommands):
    """The PIV application: AID A0 00 00 03 08 00 00 10 00 01 00."""

    name: ClassVar[str] = "piv"


__all__ = ["PivApplet"]
