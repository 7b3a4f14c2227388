"""PIV card application (NIST SP 800-73), optionally with the YubiKey PIV extensions.

The applet is assembled from layers: `base` (state, SELECT, security helpers),
`commands` (the SP 800-73 Part 2 command set) and `yubikey` (Yubico's vendor
commands). Profiles configure it through their `[applets.piv]` table (docs/piv.md);
`yubico_extensions = false` builds the standard card alone (`StandardPivApplet`).
"""

from __future__ import annotations

from typing import ClassVar

from ...cardos import Applet
from ...context import AppletContext
from .commands import PivCommands
from .yubikey import YubicoCommands


class StandardPivApplet(PivCommands):
    """A plain SP 800-73-4 card: AID A0 00 00 03 08 00 00 10 00 01 00, no vendor instructions."""

    name: ClassVar[str] = "piv"


class PivApplet(YubicoCommands):
    """The PIV application with Yubico's extensions (INS F6..FF), as on a YubiKey."""

    name: ClassVar[str] = "piv"


def piv_applet(context: AppletContext) -> Applet:
    """The runtime's factory for `[applets.piv]`: the profile decides whether Yubico's layer is there.

    A value that is not true/false falls through to `PivApplet`, whose configuration
    parser then refuses it with a message naming the file and key.
    """
    if context.config.get("yubico_extensions", True) is False:
        return StandardPivApplet(context)
    return PivApplet(context)


__all__ = ["PivApplet", "StandardPivApplet", "piv_applet"]
