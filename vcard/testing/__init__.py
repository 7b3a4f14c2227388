"""Test infrastructure shipped with the package, for the pytest plugin, the test suite and benchmarks.

- `cards`: run `vcard run` on a vpcd slot of the local pcscd and watch reader presence;
- `slots`: the machine-wide lock (`exclusive_slots`) that queues users of the vpcd slots;
- `provisioning`: host-side helpers that put keys and certificates on a card and
  OpenSC's minidriver API test sequence (import it explicitly: it loads the
  minidriver package and `cryptography`).

It lives in the package, not in tests/, because the pytest plugin (which other
projects load) cannot import vcard's own tests/.
"""

from .cards import (
    CARD_START_TIMEOUT,
    CARD_STOP_TIMEOUT,
    CardProcessError,
    card_present,
    reader_states,
    running_card,
    vcard_run_command,
    wait_for_presence,
)
from .slots import LOCK_PATH, exclusive_slots

__all__ = [
    "CARD_START_TIMEOUT",
    "CARD_STOP_TIMEOUT",
    "LOCK_PATH",
    "CardProcessError",
    "card_present",
    "exclusive_slots",
    "reader_states",
    "running_card",
    "vcard_run_command",
    "wait_for_presence",
]
