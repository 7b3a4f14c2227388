"""What an applet is given when the runtime builds a card from a profile.

Applets never read files, sockets or the profile TOML themselves: they get their
validated profile table, a persistent JSON section of the card state with a
`commit` that makes it durable, and the card's shared security core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .security import SecurityCore


@dataclass
class AppletContext:
    """Everything an applet may touch.

    - `config`: the profile's `[applets.<name>]` table (plain TOML values); the
      applet validates it with `vcard.profile.TableReader` so errors name the file.
    - `profile_path`: the profile file, for error messages.
    - `state`: this applet's section of the card state document. JSON types only
      (str, int, bool, list, dict, None); bytes are stored as hex strings.
    - `commit`: write the whole card state durably (atomic, fsynced) before the
      card answers. Call it after every change that must survive a crash.
    - `security`: the card's SecurityCore (roles, PIN_SET status, retry counters).
    - `is_new`: True when the state was just created from the profile (first start),
      so the applet should populate `state` from `config`.
    """

    config: Mapping[str, Any]
    profile_path: Path
    state: dict[str, Any]
    commit: Callable[[], None]
    security: SecurityCore
    is_new: bool
