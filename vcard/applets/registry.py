"""The applet types a profile may name in `[applets.<type>]`, and their classes.

Owned here, once: the profile loader reads the names to validate a profile, the
runtime builds the applets from the classes.
"""

from __future__ import annotations

from collections.abc import Callable

from ..cardos import Applet
from ..context import AppletContext
from .gids import GidsApplet
from .iso import IsoApplet
from .piv import piv_applet
from .yubikey_mgmt import ManagementApplet, OtpApplet

AppletFactory = Callable[[AppletContext], Applet]

APPLET_TYPES: dict[str, AppletFactory] = {
    "iso": IsoApplet,
    "piv": piv_applet,  # the plain SP 800-73 class or the one with the Yubico extensions
    "gids": GidsApplet,
    "yubikey_mgmt": ManagementApplet,
    "yubikey_otp": OtpApplet,
}
