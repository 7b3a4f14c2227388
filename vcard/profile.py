"""TOML card profiles: loading, and validation with messages that name file, table and key.

A profile describes one kind of card (ATR, roles, applets). Users write their
own, so every mistake must come back as one sentence that says where it is, e.g.

    profiles/piv.toml: [security.roles[1]] retries: must be an integer from 1 to 15, got "x"

Validation goes through `vcard.tablereader.TableReader` (re-exported here with
`ProfileError`, `MISSING`, `parse_hex` and `display_path`), the one helper the
loader, `vcard.security.parse_role` and every applet use for their tables.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import atr as atr_module
from .applets.registry import APPLET_TYPES
from .security import MAX_ROLES, RoleConfig, RoleType, parse_role
from .tablereader import MISSING as MISSING
from .tablereader import ProfileError as ProfileError
from .tablereader import TableReader as TableReader
from .tablereader import display_path as display_path
from .tablereader import parse_hex as parse_hex
from .tablereader import show_value, suggest

log = logging.getLogger("vcard.profile")

PROFILE_DIR = Path(str(resources.files("vcard.profiles")))
"""The shipped profiles: the repository's top-level profiles/, installed as the package vcard.profiles."""

@dataclass(frozen=True)
class Profile:
    """A validated profile.

    `applets` holds the raw `[applets.<type>]` tables in file order: each applet
    validates its own table with a TableReader when the runtime builds it.
    `security` holds the `[security]` keys other than `roles`,
    `idle_reset_seconds` and `session_pins_survive_warm_reset` (already parsed
    here), for settings owned elsewhere such as the external PIN policy; their
    owner should read them with a TableReader (where="security") and `finish()` it.
    `session_pins_survive_warm_reset` (default false: session PINs last "until card
    reset or power-off") lets session PINs outlive a warm reset, as the minidriver spec
    wants ("at least until a cold reset") so a host can re-authenticate after
    Windows' idle reset. `idle_reinsert_seconds` (default 0: off) makes `vcard run` take an
    idle card out of vpcd's reader and put it back, so pcscd releases a transaction left
    idle on it (vcard.transport.idle_reset).
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
    idle_reinsert_seconds: float = 0.0


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
            f"unknown profile {json.dumps(text)}{suggest(text, names)}; available: {', '.join(names)} "
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
    """The applet types a profile may declare (the keys of vcard.applets.registry.APPLET_TYPES)."""
    return tuple(APPLET_TYPES)


def _parse_roles(security: TableReader) -> tuple[RoleConfig, ...]:
    """Every `[[security.roles]]` table, with the checks that need all roles at once."""
    readers = security.tables("roles")
    if not readers:
        return ()
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
    applet registry (see `known_applet_types`).
    """
    name, path = _resolve(name_or_path)
    data = _read_toml(path)
    top = TableReader(path, "", data)

    description = top.text("description", "")
    atr_bytes = top.hex_bytes("atr", None)
    default_applet = top.text("default_applet", None)
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
                f"unknown applet type{suggest(applet_type, allowed)}; known types: {', '.join(allowed)}",
            )
        applets[applet_type] = dict(applets_reader.table(applet_type).raw)

    if default_applet is not None and default_applet not in applets:
        declared = ", ".join(applets) or "none"
        raise top.error(
            "default_applet",
            f"must name one of the [applets.<type>] tables (declared: {declared}), "
            f"got {show_value(default_applet)}",
        )

    idle_reset_seconds = security.number("idle_reset_seconds", 0.0, minimum=0.0)
    idle_reinsert_seconds = security.number("idle_reinsert_seconds", 0.0, minimum=0.0)
    session_pins_survive_warm_reset = security.boolean("session_pins_survive_warm_reset", False)
    roles = _parse_roles(security)
    parsed = {"roles", "idle_reset_seconds", "idle_reinsert_seconds", "session_pins_survive_warm_reset"}
    rest = {key: value for key, value in security.raw.items() if key not in parsed}

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
        idle_reinsert_seconds=idle_reinsert_seconds,
    )
