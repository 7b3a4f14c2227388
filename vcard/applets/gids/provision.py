"""First-start content of the applet's state: a blank card or an initialised one.

An initialised card gets exactly what `gids-tool --initialize` would have
written (same FCPs, masterfile, cardapps, cardcf, an empty cmapfile, a cardid),
so that a profile card and a card initialised by OpenSC are indistinguishable;
the PIN and admin key are the security core's initial role values.
"""

from __future__ import annotations

from typing import Any

from ... import crypto
from ...apdu import ISOError
from ...errors import StateFieldError
from ...statefields import require_field, require_hex
from ...wire.gids_tables import FRESH_MASTERFILE_ENTRIES, encode_masterfile
from .constants import (
    ADMIN_KEY_FCP,
    CARDAPPS,
    CARDAPPS_VALUE,
    CARDCF,
    CARDCF_INITIAL,
    CARDID,
    CMAPFILE,
    FDB_BER_TLV_EF,
    FDB_KEY_EF,
    INIT_EF_FCPS,
    MASTERFILE,
)
from .filesystem import Fcp, FileSystem

LIFECYCLE_INITIALIZATION = "initialization"
LIFECYCLE_OPERATIONAL = "operational"
LIFECYCLE_TERMINATED = "terminated"
LIFECYCLES = (LIFECYCLE_INITIALIZATION, LIFECYCLE_OPERATIONAL, LIFECYCLE_TERMINATED)


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


def check(state: dict[str, Any]) -> dict[str, crypto.PrivateKey]:
    """Refuse a stored section the applet cannot read; returns the loaded keys by FID.

    An existing card is never re-provisioned: that would drop its keys and files.
    Keys are parsed here so that a corrupt PEM is named when the card opens, not
    answered with 6F00 when it is used.
    """
    lifecycle = require_field(state, "lifecycle", str, "")
    if lifecycle not in LIFECYCLES:
        raise StateFieldError(
            "lifecycle", f"unknown lifecycle {lifecycle!r}; expected one of {', '.join(LIFECYCLES)}"
        )
    files: dict[str, Any] = require_field(state, "files", dict, "")
    loaded: dict[str, crypto.PrivateKey] = {}
    for name in files:
        where = f"files.{name}"
        record = require_field(files, name, dict, "files")
        fcp_hex = require_hex(record, "fcp", where)
        try:
            fcp = Fcp.parse(bytes.fromhex(fcp_hex or ""))
        except ISOError as error:
            raise StateFieldError(f"{where}.fcp", f"not a readable FCP ({error})") from None
        if f"{fcp.fid:04X}" != name:
            raise StateFieldError(where, f"holds the FCP of file {fcp.fid:04X}")
        fdb = require_field(record, "fdb", int, where)
        if fdb != fcp.fdb or fdb not in (FDB_BER_TLV_EF, FDB_KEY_EF):
            raise StateFieldError(f"{where}.fdb", f"{fdb:#04x} does not match the FCP ({fcp.fdb:#04x})")
        require_field(record, "active", bool, where)
        if fdb == FDB_BER_TLV_EF:
            dos: dict[str, Any] = require_field(record, "dos", dict, where)
            for tag in dos:
                require_hex(dos, tag, f"{where}.dos")
            continue
        pem = require_field(record, "key", str, where, optional=True)
        if pem is not None:
            try:
                loaded[name] = crypto.private_key_from_pem(pem)
            except (ValueError, TypeError) as error:
                raise StateFieldError(f"{where}.key", f"not a readable private key ({error})") from None
    return loaded
