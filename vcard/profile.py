"""TOML card profiles: loading, and validation with messages that name file, table and key.

A profile describes one kind of card (ATR, roles, applets). Users write their
own, so every mistake must come back as one sentence that says where it is, e.g.

    profiles/piv.toml: [security.roles[1]] retries: must be an integer from 1 to 15, got "x"

`TableReader` is the one validation helper: the loader uses it for the card-level
keys, `vcard.security.parse_role` for each `[[security.roles]]` table, and each
applet for its own `[applets.<type>]` table, so all messages look alike and
`finish()` catches misspelt keys everywhere instead of silently ignoring them.
"""

from __future__ import annotations

import difflib
import importlib
import json
import logging
import math
import os
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import atr as atr_module

if TYPE_CHECKING:
    from .security import RoleConfig

log = logging.getLogger("vcard.profile")

PROFILE_DIR = Path(__file__).parent / "profiles"

# Used when vcard.runtime (which owns the applet registry) cannot be imported.
FALLBACK_APPLET_TYPES = ("piv", "gids", "iso")

# Methods of TableReader are named after the types they read (`.str`, `.int`...),
# which shadows the builtins inside the class body; these aliases keep the
# annotations unambiguous.
_Str = str
_Int = int
_Float = float
_Bool = bool
_List = list

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


def _show(value: object) -> str:
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


def _suggest(word: str, candidates: Iterable[str]) -> str:
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
    Every getter takes the key, an optional default (leave it out for a required
    key; None is a valid default) and range/choice constraints, and raises a
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

    def has(self, key: _Str) -> _Bool:
        self._known.add(key)
        return key in self._table

    def error(self, key: _Str | None, problem: _Str) -> ProfileError:
        """A ProfileError located at `key` of this table (or at the table itself if None)."""
        location = display_path(self.path) + ":"
        if self.where:
            location += f" [{self.where}]"
        if key is not None:
            location += f" {_key_text(key)}:"
        elif self.where:
            location += ":"
        return ProfileError(f"{location} {problem}")

    def child_where(self, key: _Str) -> _Str:
        return f"{self.where}.{_key_text(key)}" if self.where else _key_text(key)

    def _get(
        self,
        key: _Str,
        default: object,
        accept: Callable[[object], _Bool],
        expected: _Str,
    ) -> Any:
        """The raw value if present and of the right type, else the default, else an error."""
        self._known.add(key)
        if key not in self._table:
            if default is MISSING:
                raise self.error(key, f"required key is missing ({expected})")
            return default
        value = self._table[key]
        if not accept(value):
            raise self.error(key, f"must be {expected}, got {_show(value)}")
        return value

    # -- scalar getters ------------------------------------------------------------

    @overload
    def str(self, key: _Str, *, choices: Collection[_Str] | None = None) -> _Str: ...
    @overload
    def str(self, key: _Str, default: _T, choices: Collection[_Str] | None = None) -> _Str | _T: ...
    def str(self, key: _Str, default: object = MISSING, choices: Collection[_Str] | None = None) -> Any:
        if choices is not None:
            expected = "one of " + ", ".join(json.dumps(c) for c in choices)
        else:
            expected = "a string"
        value = self._get(key, default, lambda v: isinstance(v, str), expected)
        if choices is not None and isinstance(value, str) and key in self._table and value not in choices:
            raise self.error(key, f"must be {expected}, got {_show(value)}{_suggest(value, choices)}")
        return value

    @overload
    def int(self, key: _Str, *, min: _Int | None = None, max: _Int | None = None) -> _Int: ...
    @overload
    def int(
        self, key: _Str, default: _T, min: _Int | None = None, max: _Int | None = None
    ) -> _Int | _T: ...
    def int(
        self, key: _Str, default: object = MISSING, min: _Int | None = None, max: _Int | None = None
    ) -> Any:
        expected = _range_text("an integer", min, max)

        def accept(v: object) -> _Bool:
            return (
                isinstance(v, int)
                and not isinstance(v, bool)
                and (min is None or v >= min)
                and (max is None or v <= max)
            )

        return self._get(key, default, accept, expected)

    @overload
    def float(self, key: _Str, *, min: _Float | None = None, max: _Float | None = None) -> _Float: ...
    @overload
    def float(
        self, key: _Str, default: _T, min: _Float | None = None, max: _Float | None = None
    ) -> _Float | _T: ...
    def float(
        self, key: _Str, default: object = MISSING, min: _Float | None = None, max: _Float | None = None
    ) -> Any:
        """A finite number; TOML integers are accepted (`idle_reset_seconds = 5`)."""
        expected = _range_text("a number", min, max)

        def accept(v: object) -> _Bool:
            return (
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and (min is None or v >= min)
                and (max is None or v <= max)
            )

        value = self._get(key, default, accept, expected)
        return float(value) if isinstance(value, int) and key in self._table else value

    @overload
    def bool(self, key: _Str) -> _Bool: ...
    @overload
    def bool(self, key: _Str, default: _T) -> _Bool | _T: ...
    def bool(self, key: _Str, default: object = MISSING) -> Any:
        return self._get(key, default, lambda v: isinstance(v, bool), "true or false")

    @overload
    def hex(self, key: _Str, *, lengths: Collection[_Int] | None = None) -> bytes: ...
    @overload
    def hex(self, key: _Str, default: _T, lengths: Collection[_Int] | None = None) -> bytes | _T: ...
    def hex(self, key: _Str, default: object = MISSING, lengths: Collection[_Int] | None = None) -> Any:
        """Bytes written as hex; spaces and colons between digits are allowed ("3B:8A", "3B 8A")."""
        expected = "hex bytes as a string"
        value = self._get(key, default, lambda v: isinstance(v, str), expected)
        if key not in self._table:
            return value
        try:
            data = parse_hex(value)
        except ValueError as problem:
            raise self.error(key, f"must be {expected}, got {_show(value)} ({problem})") from None
        if lengths is not None and len(data) not in lengths:
            wanted = sorted(lengths)
            text = " or ".join(filter(None, [", ".join(str(n) for n in wanted[:-1]), str(wanted[-1])]))
            raise self.error(key, f"must be {text} bytes, got {len(data)} bytes")
        return data

    # -- containers ----------------------------------------------------------------

    @overload
    def list(self, key: _Str) -> _List[Any]: ...
    @overload
    def list(self, key: _Str, default: _T) -> _List[Any] | _T: ...
    def list(self, key: _Str, default: object = MISSING) -> Any:
        value = self._get(key, default, lambda v: isinstance(v, list), "an array")
        return _List(value) if key in self._table else value

    def table(self, key: _Str, default: Mapping[_Str, Any] | _Missing = MISSING) -> TableReader:
        """A reader for a sub-table (`[where.key]`); `default` (e.g. {}) when it is optional."""
        where = self.child_where(key)
        value = self._get(key, default, lambda v: isinstance(v, Mapping), f"a table ([{where}])")
        return TableReader(self.path, where, value)

    def tables(self, key: _Str) -> _List[TableReader]:
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
        problems = [f"{_key_text(key)}: unknown key{_suggest(key, known)}" for key in unknown]
        where = f"[{self.where}] " if self.where else ""
        raise ProfileError(f"{display_path(self.path)}: {where}" + "; ".join(problems))


@dataclass(frozen=True)
class Profile:
    """A validated profile.

    `applets` holds the raw `[applets.<type>]` tables in file order: each applet
    validates its own table with a TableReader when the runtime builds it.
    `security` holds the `[security]` keys other than `roles`,
    `idle_reset_seconds` and `session_pins_survive_warm_reset` (already parsed
    here), for settings owned elsewhere such as the external PIN policy; their
    owner should read them with a TableReader (where="security") and `finish()` it.
    `session_pins_survive_warm_reset` (default false: issue 3's "until card reset
    or power-off") lets session PINs outlive a warm reset, as the minidriver spec
    wants ("at least until a cold reset") so a host can re-authenticate after
    Windows' idle reset.
    """

    name: str
    path: Path
    description: str
    atr: bytes
    default_applet: str | None
    applets: dict[str, dict[str, Any]]
    roles: tuple[RoleConfig, ...]
    idle_reset_seconds: float
    security: dict[str, Any]
    session_pins_survive_warm_reset: bool = False


def list_profile_names() -> list[str]:
    """Names of the profiles shipped with vcard, sorted."""
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


def list_profiles() -> list[Profile]:
    """Every shipped profile, loaded; a broken one raises its ProfileError (shipped ones must load)."""
    return [load_profile(name) for name in list_profile_names()]


def _resolve(name_or_path: str | Path) -> tuple[str, Path]:
    """(profile name, file) for a bare shipped name or a path."""
    if isinstance(name_or_path, Path):
        return name_or_path.stem, name_or_path
    text = name_or_path
    if "/" in text or os.sep in text or text.endswith(".toml"):
        path = Path(text).expanduser()
        return path.stem, path
    path = PROFILE_DIR / f"{text}.toml"
    if not text or not path.is_file():
        names = list_profile_names()
        raise ProfileError(
            f"unknown profile {json.dumps(text)}{_suggest(text, names)}; available: {', '.join(names)} "
            "(or give the path of a .toml file)"
        )
    return text, path


def _read_toml(path: Path) -> dict[str, Any]:
    shown = display_path(path)
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ProfileError(f"{shown}: no such profile file") from None
    except IsADirectoryError:
        raise ProfileError(f"{shown}: is a directory, not a profile file") from None
    except OSError as exc:
        raise ProfileError(f"{shown}: cannot read the profile: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{shown}: not valid UTF-8 at byte {exc.start}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{shown}: invalid TOML: {exc}") from exc


def known_applet_types() -> tuple[str, ...]:
    """The applet types the runtime can build (vcard.runtime.APPLET_TYPES), or the fallback set."""
    try:
        runtime = importlib.import_module("vcard.runtime")
    except ModuleNotFoundError as exc:
        # Only the runtime module itself being absent is expected; a module it
        # imports being missing is a real error and must surface.
        if exc.name != "vcard.runtime":
            raise
        return FALLBACK_APPLET_TYPES
    types = getattr(runtime, "APPLET_TYPES", None)
    if types is None:
        return FALLBACK_APPLET_TYPES
    return tuple(str(name) for name in types)


def _parse_roles(security: TableReader) -> tuple[RoleConfig, ...]:
    """Every `[[security.roles]]` table, with the checks that need all roles at once."""
    readers = security.tables("roles")
    if not readers:
        return ()
    # Imported here: vcard.security uses TableReader, so a top-level import would be circular.
    from .security import MAX_ROLES, RoleType, parse_role

    roles: list[RoleConfig] = []
    declared: dict[int, str] = {}
    for reader in readers:
        role = parse_role(reader)
        reader.finish()
        if not 0 <= role.role < MAX_ROLES:
            raise reader.error("role", f"must be an integer from 0 to {MAX_ROLES - 1}, got {role.role}")
        if role.role in declared:
            raise reader.error("role", f"role {role.role} is already declared in [{declared[role.role]}]")
        declared[role.role] = reader.where
        roles.append(role)
    undeclared = "not declared in any [[security.roles]] table"
    types = {role.role: role.type for role in roles}
    for reader, role in zip(readers, roles, strict=True):
        if role.unblocked_by is not None:
            if role.unblocked_by == role.role:
                raise reader.error("unblocked_by", f"a role cannot unblock itself (role {role.role})")
            if role.unblocked_by not in declared:
                raise reader.error("unblocked_by", f"role {role.unblocked_by} is {undeclared}")
            if types[role.unblocked_by] is RoleType.EMPTY:
                # An empty role is always "authenticated": it would let anyone reset the PIN.
                raise reader.error(
                    "unblocked_by", f'role {role.unblocked_by} is of type "empty" and proves nothing'
                )
        for other in role.changed_by:
            if other not in declared:
                raise reader.error("changed_by", f"role {other} is {undeclared}")
    return tuple(roles)


def load_profile(name_or_path: str | Path, applet_types: Collection[str] | None = None) -> Profile:
    """Load and validate a profile: a shipped one by name (`piv`) or a file (`./my.toml`, `x.toml`).

    `applet_types` is the set of allowed `[applets.<type>]` keys; by default the
    runtime's registry (see `known_applet_types`).
    """
    name, path = _resolve(name_or_path)
    data = _read_toml(path)
    top = TableReader(path, "", data)

    description = top.str("description", "")
    atr_bytes = top.hex("atr", None)
    default_applet = top.str("default_applet", None)
    applets_reader = top.table("applets", {})
    security = top.table("security", {})
    top.finish()

    if atr_bytes is None:
        atr_bytes = atr_module.build(b"vcard")
    else:
        problem = atr_module.check(atr_bytes)
        if problem is not None:
            raise top.error("atr", f"not a valid ATR: {problem}")

    allowed = tuple(applet_types) if applet_types is not None else known_applet_types()
    applets: dict[str, dict[str, Any]] = {}
    for applet_type in applets_reader.raw:
        if applet_type not in allowed:
            raise applets_reader.error(
                applet_type,
                f"unknown applet type{_suggest(applet_type, allowed)}; known types: {', '.join(allowed)}",
            )
        applets[applet_type] = dict(applets_reader.table(applet_type).raw)

    if default_applet is not None and default_applet not in applets:
        declared = ", ".join(applets) or "none"
        raise top.error(
            "default_applet",
            f"must name one of the [applets.<type>] tables (declared: {declared}), "
            f"got {_show(default_applet)}",
        )

    idle_reset_seconds = security.float("idle_reset_seconds", 0.0, min=0.0)
    session_pins_survive_warm_reset = security.bool("session_pins_survive_warm_reset", False)
    roles = _parse_roles(security)
    security.finish()  # a misspelt key (idle_reset_second) must not be ignored silently
    rest: dict[str, Any] = {}
    if not applets:
        raise top.error("applets", "missing: a card needs at least one [applets.<type>] table")
    if not roles:
        raise security.error("roles", "missing: a card needs at least one [[security.roles]] table")

    return Profile(
        name=name,
        path=path.resolve(),
        description=description,
        atr=atr_bytes,
        default_applet=default_applet,
        applets=applets,
        roles=roles,
        idle_reset_seconds=idle_reset_seconds,
        security=rest,
        session_pins_survive_warm_reset=session_pins_survive_warm_reset,
    )
