"""GIDS v2 (Microsoft Generic Identity Device Specification) applet.

Package layout: `constants` (AIDs, tags, FCPs), `tables` (masterfile, keymap,
cmapfile, cardcf codecs), `filesystem` (DO file system and access conditions),
`keys` (asymmetric key operations), `admin` (admin-key GENERAL AUTHENTICATE),
`config` (the `[applets.gids]` profile table), `provision` (first-start state),
`applet` (the command handlers).
"""

from .applet import GidsApplet

__all__ = ["GidsApplet"]
