"""Checked reading of the JSON sections of the card state.

The owner of a section (the security core, an applet) reads its fields with
these helpers when a card opens from an existing state: a missing field or a value
of the wrong type is refused with a `StateFieldError`, never replaced by a
default. The store checks the document envelope with the same helpers.
"""

from __future__ import annotations

from typing import Any

from .errors import StateFieldError

JSONType = type[dict[str, Any]] | type[list[Any]] | type[str] | type[int] | type[bool]
_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    bool: "a boolean",
}


def require_field(
    section: dict[str, Any], key: str, kind: JSONType, where: str, optional: bool = False
) -> Any:
    """`section[key]` when present and of JSON type `kind` (None too if `optional`).

    Otherwise StateFieldError naming `where.key`: a missing field or a value of the
    wrong type is refused, never replaced by a default.
    """
    dotted = f"{where}.{key}" if where else key
    if key not in section:
        raise StateFieldError(dotted, "missing")
    value = section[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StateFieldError(dotted, f"must be {_TYPE_NAMES[kind]}, got {json_type(value)}")
    return value


def require_hex(section: dict[str, Any], key: str, where: str, optional: bool = False) -> str | None:
    """A hex string field (how the state stores bytes)."""
    value: str | None = require_field(section, key, str, where, optional)
    if value is not None:
        try:
            bytes.fromhex(value)
        except ValueError:
            raise StateFieldError(f"{where}.{key}" if where else key, "must be hexadecimal") from None
    return value


def json_type(value: object) -> str:
    """The JSON name of a value's type, for 'got ...' in messages."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"
