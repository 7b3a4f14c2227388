"""Typed, located reading of TOML tables: the one validation helper of profiles.

Used by the profile loader for the card-level keys, by `vcard.security.parse_role`
for each `[[security.roles]]` table and by each applet for its own
`[applets.<type>]` table, so all messages look alike, e.g.

    profiles/piv.toml: [security.roles[1]] retries: must be an integer from 1 to 15, got "x"

and `finish()` catches misspelt keys everywhere instead of silently ignoring them.
It imports nothing of vcard, so every layer may use it.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, overload

_T = TypeVar("_T")


class _Missing(Enum):
    MISSING = "MISSING"


MISSING = _Missing.MISSING
"""Default of TableReader getters meaning 'required': lets None be an ordinary default."""


class ProfileError(Exception):
    """A profile that cannot be used; the message names the file, the table, the key and the problem."""


def display_path(path: Path) -> str:
    """The path as given, or relative to the working directory when that is shorter."""
    text = str(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return text
    return relative if len(relative) < len(text) else text


def show_value(value: object) -> str:
    """A value as it would look in TOML, shortened, for 'got ...' in messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Mapping):
        return "a table"
    elif isinstance(value, str | int | float | list):
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key_text(key: str) -> str:
    """A key as TOML would write it (quoted unless it is a bare key)."""
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return json.dumps(key, ensure_ascii=False)


def suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def parse_hex(text: str) -> bytes:
    """Bytes written as hex at an edge (profile, CLI); spaces or colons may separate digits ("3B:8A").

    ValueError says what is wrong: the first character that is not a hex digit, or an odd digit count.
    """
    digits = "".join(text.replace(":", " ").split())
    bad = next((c for c in digits if c not in "0123456789abcdefABCDEF"), None)
    if bad is not None:
        raise ValueError(f"{bad!r} is not a hex digit")
    if len(digits) % 2:
        raise ValueError("odd number of hex digits")
    return bytes.fromhex(digits)


def _range_text(kind: str, low: float | None, high: float | None) -> str:
    def num(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else str(value)

    if low is not None and high is not None:
        return f"{kind} from {num(low)} to {num(high)}"
    if low is not None:
        return f"{kind} >= {num(low)}"
    if high is not None:
        return f"{kind} <= {num(high)}"
    return kind


class TableReader:
    """Typed, located access to one TOML table.

    `where` is the table's name in messages: "" for the top level,
    "security", "security.roles[0]" (array indices count from 0), "applets.piv".
    The getters are named after the TOML value they read (`text`, `integer`,
    `number`, `boolean`, `hex_bytes`, `array`, `table`, `tables`). Every getter
    takes the key, an optional default (leave it out for a required key; None is
    a valid default) and range/choice constraints, and raises a
    ProfileError naming the file, the table and the key. Call `finish()` once all
    keys are read: any key that no getter asked for is reported as unknown, with
    the closest known key as a suggestion.
    """

    def __init__(self, path: Path, where: str, table: Mapping[str, Any]) -> None:
        self.path = path
        self.where = where
        self._table = table
        self._known: set[str] = set()

    @property
    def raw(self) -> Mapping[str, Any]:
        """The table's values as tomllib returned them (iterate it for user-chosen keys, in file order)."""
        return self._table

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self._table

    def error(self, key: str | None, problem: str) -> ProfileError:
        """A ProfileError located at `key` of this table (or at the table itself if None)."""
        location = display_path(self.path) + ":"
        if self.where:
            location += f" [{self.where}]"
        if key is not None:
            location += f" {_key_text(key)}:"
        elif self.where:
            location += ":"
        return ProfileError(f"{location} {problem}")

    def child_where(self, key: str) -> str:
        return f"{self.where}.{_key_text(key)}" if self.where else _key_text(key)

    def _get(
        self,
        key: str,
        default: object,
        accept: Callable[[object], bool],
        expected: str,
    ) -> Any:
        """The raw value if present and of the right type, else the default, else an error."""
        self._known.add(key)
        if key not in self._table:
            if default is MISSING:
                raise self.error(key, f"required key is missing ({expected})")
            return default
        value = self._table[key]
        if not accept(value):
            raise self.error(key, f"must be {expected}, got {show_value(value)}")
        return value

    # -- scalar getters ------------------------------------------------------------

    @overload
    def text(self, key: str, *, choices: Collection[str] | None = None) -> str: ...
    @overload
    def text(self, key: str, default: _T, choices: Collection[str] | None = None) -> str | _T: ...
    def text(self, key: str, default: object = MISSING, choices: Collection[str] | None = None) -> Any:
        if choices is not None:
            expected = "one of " + ", ".join(json.dumps(c) for c in choices)
        else:
            expected = "a string"
        value = self._get(key, default, lambda v: isinstance(v, str), expected)
        if choices is not None and isinstance(value, str) and key in self._table and value not in choices:
            raise self.error(key, f"must be {expected}, got {show_value(value)}{suggest(value, choices)}")
        return value

    @overload
    def integer(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int: ...
    @overload
    def integer(
        self, key: str, default: _T, minimum: int | None = None, maximum: int | None = None
    ) -> int | _T: ...
    def integer(
        self, key: str, default: object = MISSING, minimum: int | None = None, maximum: int | None = None
    ) -> Any:
        expected = _range_text("an integer", minimum, maximum)

        def accept(v: object) -> bool:
            return (
                isinstance(v, int)
                and not isinstance(v, bool)
                and (minimum is None or v >= minimum)
                and (maximum is None or v <= maximum)
            )

        return self._get(key, default, accept, expected)

    @overload
    def number(self, key: str, *, minimum: float | None = None, maximum: float | None = None) -> float: ...
    @overload
    def number(
        self, key: str, default: _T, minimum: float | None = None, maximum: float | None = None
    ) -> float | _T: ...
    def number(
        self, key: str, default: object = MISSING, minimum: float | None = None, maximum: float | None = None
    ) -> Any:
        """A finite number; TOML integers are accepted (`idle_reset_seconds = 5`)."""
        expected = _range_text("a number", minimum, maximum)

        def accept(v: object) -> bool:
            return (
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and (minimum is None or v >= minimum)
                and (maximum is None or v <= maximum)
            )

        value = self._get(key, default, accept, expected)
        return float(value) if isinstance(value, int) and key in self._table else value

    @overload
    def boolean(self, key: str) -> bool: ...
    @overload
    def boolean(self, key: str, default: _T) -> bool | _T: ...
    def boolean(self, key: str, default: object = MISSING) -> Any:
        return self._get(key, default, lambda v: isinstance(v, bool), "true or false")

    @overload
    def hex_bytes(self, key: str, *, lengths: Collection[int] | None = None) -> bytes: ...
    @overload
    def hex_bytes(self, key: str, default: _T, lengths: Collection[int] | None = None) -> bytes | _T: ...
    def hex_bytes(self, key: str, default: object = MISSING, lengths: Collection[int] | None = None) -> Any:
        """Bytes written as hex; spaces and colons between digits are allowed ("3B:8A", "3B 8A")."""
        expected = "hex bytes as a string"
        value = self._get(key, default, lambda v: isinstance(v, str), expected)
        if key not in self._table:
            return value
        try:
            data = parse_hex(value)
        except ValueError as problem:
            raise self.error(key, f"must be {expected}, got {show_value(value)} ({problem})") from None
        if lengths is not None and len(data) not in lengths:
            wanted = sorted(lengths)
            text = " or ".join(filter(None, [", ".join(str(n) for n in wanted[:-1]), str(wanted[-1])]))
            raise self.error(key, f"must be {text} bytes, got {len(data)} bytes")
        return data

    # -- containers ----------------------------------------------------------------

    @overload
    def array(self, key: str) -> list[Any]: ...
    @overload
    def array(self, key: str, default: _T) -> list[Any] | _T: ...
    def array(self, key: str, default: object = MISSING) -> Any:
        value = self._get(key, default, lambda v: isinstance(v, list), "an array")
        return list(value) if key in self._table else value

    def table(self, key: str, default: Mapping[str, Any] | _Missing = MISSING) -> TableReader:
        """A reader for a sub-table (`[where.key]`); `default` (e.g. {}) when it is optional."""
        where = self.child_where(key)
        value = self._get(key, default, lambda v: isinstance(v, Mapping), f"a table ([{where}])")
        return TableReader(self.path, where, value)

    def tables(self, key: str) -> list[TableReader]:
        """Readers for an array of tables (`[[where.key]]`); none when the key is absent."""
        where = self.child_where(key)
        expected = f"an array of tables ([[{where}]])"
        value = self._get(
            key, [], lambda v: isinstance(v, list) and all(isinstance(t, Mapping) for t in v), expected
        )
        return [TableReader(self.path, f"{where}[{i}]", item) for i, item in enumerate(value)]

    def finish(self) -> None:
        """Raise ProfileError naming every key no getter asked for (typos, misplaced keys)."""
        unknown = [key for key in self._table if key not in self._known]
        if not unknown:
            return
        known = sorted(self._known)
        problems = [f"{_key_text(key)}: unknown key{suggest(key, known)}" for key in unknown]
        where = f"[{self.where}] " if self.where else ""
        raise ProfileError(f"{display_path(self.path)}: {where}" + "; ".join(problems))
