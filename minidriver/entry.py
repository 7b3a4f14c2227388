"""What every entry point shares: the wrapper (context, version gate, transaction, reset, SW
translation) and the parameter rules (flags, structure versions, PIN ids, buffer sizes).

Smart Card Minidriver Specification v7 §1.3 (general conventions) and §3.1 (buffer too small).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from vcard.host import ApduError

from .backends.base import RoleInfo
from .constants import MAX_PINS, ROLE_USER
from .context import CardData, Context, context_of
from .errors import Scard, ScardError

P = ParamSpec("P")
R = TypeVar("R")


def entry(min_version: int = 4, transacted: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap an entry point: context and version checks, transaction, reset reporting, SW translation."""

    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            card_data = args[0]
            if not isinstance(card_data, CardData):
                raise ScardError(Scard.E_INVALID_PARAMETER, "pCardData is not a CardData")
            ctx = context_of(card_data)
            if card_data.dwVersion < min_version:
                raise ScardError(
                    Scard.E_UNSUPPORTED_FEATURE,
                    f"{function.__name__} needs CARD_DATA version {min_version}",
                )
            if not transacted:
                return function(*args, **kwargs)
            try:
                ctx.recover_if_needed(card_data)
                ctx.handle.begin_transaction()
            except ScardError as error:
                if error.code == Scard.W_RESET_CARD:
                    ctx.card_was_reset()
                raise
            outermost = ctx.handle.depth == 1
            try:
                return function(*args, **kwargs)
            except ScardError as error:
                if error.code == Scard.W_RESET_CARD:
                    ctx.card_was_reset()
                raise
            except ApduError as error:
                raise ScardError(Scard.E_UNEXPECTED, f"{function.__name__}: SW {error.sw:04X}") from error
            finally:
                if ctx.handle.in_transaction:
                    try:
                        ctx.handle.end_transaction()
                    except ScardError as error:
                        if error.code == Scard.W_RESET_CARD:
                            ctx.card_was_reset()
                if outermost and not ctx.handle.in_transaction:
                    ctx.transaction_ended()

        return call

    return wrap


def check_flags(flags: int, allowed: int = 0) -> None:
    """Flags outside `allowed` are SCARD_E_INVALID_PARAMETER (spec §1.3)."""
    if flags & ~allowed:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"invalid flags {flags:#x}")


def check_version(version: int, current: int) -> None:
    """Versioned structures: 0 counts as 1, newer than we know is a mismatch."""
    if (version or 1) > current:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"structure version {version} > {current}")


def dword_bytes(value: int) -> bytes:
    """A DWORD/BOOL property value: 4 bytes little-endian."""
    return struct.pack("<I", value & 0xFFFFFFFF)


def fit(data: bytes, cb_data: int | None) -> bytes:
    """Get*Property: a buffer too small is ERROR_INSUFFICIENT_BUFFER (the needed size in the message)."""
    if cb_data is not None and cb_data < len(data):
        error = ScardError(Scard.ERROR_INSUFFICIENT_BUFFER, f"need {len(data)} bytes")
        error.needed = len(data)  # type: ignore[attr-defined]
        raise error
    return data


def pin_role(ctx: Context, pin_id: int) -> RoleInfo:
    """The role behind a PIN id 1..7; an id outside that range or absent from the card is invalid."""
    if not isinstance(pin_id, int) or not ROLE_USER <= pin_id < MAX_PINS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"PIN id {pin_id}")
    role = ctx.roles(ctx.card_data).get(pin_id)
    if role is None:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"no PIN {pin_id} on this card")
    return role
