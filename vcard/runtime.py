"""Build a running card from a profile and a state directory.

`VirtualCard.open` is the one place where the pieces meet: the state store (or
an ephemeral in-memory one), the security core, the applets named by the
profile, the card OS, the vendor commands (session/external PINs) and the idle
reset. Transports and the CLI take a `VirtualCard`; applets only ever see their
`AppletContext`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .applets.registry import APPLET_TYPES
from .cardos import Applet, Card
from .context import AppletContext
from .errors import StateError, StateFieldError
from .profile import Profile
from .security import SecurityCore
from .store import CardState, StateStore, check_envelope, default_state_dir
from .vendor import VendorHandlers

log = logging.getLogger("vcard.runtime")


@dataclass
class VirtualCard:
    """A card built from a profile: Card OS + applets + security core + state."""

    profile: Profile
    state: CardState
    security: SecurityCore
    applets: dict[str, Applet]
    card: Card
    state_dir: Path | None
    vendor: VendorHandlers
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        profile: Profile,
        state_dir: Path | None = None,
        ephemeral: bool = False,
        trace_secrets: bool = False,
    ) -> VirtualCard:
        """Open (or create on first use) the card state for `profile` and build the card.

        `state_dir` None means the default directory for the profile's name;
        `ephemeral` keeps everything in memory (a throwaway card); `trace_secrets` shows
        PINs and keys in the card's trace (for debugging with test values only).
        """
        directory = None if ephemeral else (state_dir or default_state_dir(profile.name))
        store = StateStore(directory)
        document = store.open()
        try:
            is_new = document is None
            if document is None:
                document = CardState.new_document(profile.name, str(profile.path))
            else:
                with _located(store, ""):
                    check_envelope(document)
                _check_profile_matches(document, profile, directory)
            state = CardState(store, document, is_new)
            with _located(store, "security"):
                security = SecurityCore(
                    profile.roles,
                    state.section("security"),
                    state.commit,
                    is_new,
                    session_pins_survive_warm_reset=profile.session_pins_survive_warm_reset,
                )
            applets: dict[str, Applet] = {}
            for type_name, config in profile.applets.items():
                if not is_new and type_name not in document["applets"]:
                    # Building it afresh would look like a card that lost its keys.
                    raise StateError(
                        f"{store.describe()}: applets.{type_name}: missing (the card has no such applet)"
                    )
                context = AppletContext(
                    config=config,
                    profile_path=profile.path,
                    state=state.section("applets", type_name),
                    commit=state.commit,
                    security=security,
                    is_new=is_new,
                )
                with _located(store, f"applets.{type_name}"):
                    applets[type_name] = APPLET_TYPES[type_name](context)
            _link_applets(applets)
            default = applets.get(profile.default_applet) if profile.default_applet else None
            vendor = VendorHandlers(security, idle_reset_seconds=profile.idle_reset_seconds)
            card = Card(
                profile.atr,
                list(applets.values()),
                default_applet=default,
                on_reset=security.reset,
                commands=vendor.commands(),
                hooks=vendor.hooks(),
                trace_secrets=trace_secrets,
            )
            # A VERIFY EXTERNAL waiting for an operator must not lock out readers of the card.
            security.outside_wait = card.released
            # A PIN-always arming lasts one command of this card.
            security.command_number = lambda: card.commands_started
            if is_new:
                state.commit()
        except BaseException:
            store.close()
            raise
        return cls(profile, state, security, applets, card, directory, vendor)

    def close(self) -> None:
        """Release the state directory. Every change was committed when it happened."""
        self.state.store.close()

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for `vcard info`."""
        card_section = self.state.document.get("card", {})
        return {
            "profile": self.profile.name,
            "description": self.profile.description,
            "state": str(self.state_dir) if self.state_dir else "(ephemeral)",
            "atr": self.profile.atr.hex(" ").upper(),
            "serial": card_section.get("serial"),
            "created": card_section.get("created"),
            "security": self.security.describe(),
            "applets": [applet.describe() for applet in self.applets.values()],
        }


@contextmanager
def _located(store: StateStore, section: str) -> Iterator[None]:
    """Name the file and the section in a section owner's StateFieldError."""
    try:
        yield
    except StateFieldError as error:
        raise error.located(store.describe(), section) from None


def _link_applets(applets: dict[str, Applet]) -> None:
    """Let applets that describe the same device (YubiKey management: serial, version) find each other."""
    for applet in applets.values():
        link = getattr(applet, "link_applets", None)
        if callable(link):
            link(applets)


def _check_profile_matches(document: dict[str, Any], profile: Profile, directory: Path | None) -> None:
    recorded = document["profile"]["name"]
    if recorded != profile.name:
        raise StateError(
            f"{directory}/state.json: this card was created from profile {recorded!r}, not {profile.name!r};"
            f" use --profile {recorded} or another --state directory"
        )

