"""First-start content of the applet's state: a blank card or an initialised one.

An initialised card gets exactly what `gids-tool --initialize` would have
written (same FCPs, masterfile, cardapps, cardcf, an empty cmapfile, a cardid),
so that a profile card and a card initialised by OpenSC are indistinguishable;
the PIN and admin key are the security core's initial role values.
"""

from __future__ import annotations

from typing import Any

from ... import crypto
from ...wire.gids_tables import FRESH_MASTERFILE_ENTRIES, encode_masterfile
from .constants import (
    ADMIN_KEY_FCP,
    CARDAPPS,
    CARDAPPS_VALUE,
    CARDCF,
    CARDCF_INITIAL,
    CARDID,
    CMAPFILE,
    INIT_EF_FCPS,
    MASTERFILE,
)
from .filesystem import FileSystem

LIFECYCLE_INITIALIZATION = "initialization"
LIFECYCLE_OPERATIONAL = "operational"
LIFECYCLE_TERMINATED = "terminated"


def blank(state: dict[str, Any]) -> None:
    """No files, no PIN: the application waits in initialisation mode."""
    state.clear()
    state.update({"lifecycle": LIFECYCLE_INITIALIZATION, "files": {}})


def initialised(state: dict[str, Any], card_id: bytes | None) -> None:
    """The file system `gids-tool --initialize` creates, activated."""
    blank(state)
    fs = FileSystem(state)
    for fcp in INIT_EF_FCPS.values():
        fs.create(fcp, active=True)
    fs.create(ADMIN_KEY_FCP, active=True)
    contents = {
        MASTERFILE: encode_masterfile(FRESH_MASTERFILE_ENTRIES),
        CARDAPPS: CARDAPPS_VALUE,
        CARDCF: CARDCF_INITIAL,
        CARDID: card_id if card_id is not None else crypto.random_bytes(16),
    }
    for (fid, tag), value in contents.items():
        fs.require(fid).put_do(tag, value)
    fs.require(CMAPFILE[0]).put_do(CMAPFILE[1], b"")  # present and empty
    state["lifecycle"] = LIFECYCLE_OPERATIONAL
