"""Minidriver sign-in cost: APDUs cold vs warm cache, and the time of both over a simulated slow link.

The flow is what a Windows logon does through the Base CSP: acquire a context,
read the container map and the certificates, authenticate the user PIN, sign,
deauthenticate. "Cold" starts with an empty data cache; "warm" repeats the flow
as a new process would, with the cache filled by the cold run (cardcf unchanged).

Each round trip then gets a fixed delay (default 100 ms, as smart-card redirection
over RDP costs) and both flows are timed again, in the same run. Printed numbers
are counts and ratios from this run; nothing here is a pass/fail threshold.

    .venv/bin/python bench/bench_minidriver.py                 # in-process PIV and GIDS cards
    .venv/bin/python bench/bench_minidriver.py --pcscd           # also: `vcard run` cards through pcscd
    .venv/bin/python bench/bench_minidriver.py --reader "Virtual PCD 00 00" --pin 123456   # any card
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import minidriver as md
from minidriver.cache import GlobalCache
from signin.ca import certificate_for
from vcard.host import InProcessConnection, PcscConnection
from vcard.testing.provisioning import PivProvisioner


def sign_in(make: Any, cache: GlobalCache, pin: bytes, delay: float) -> tuple[dict[str, int], float]:
    """One logon-like flow on a fresh CardData (a new process); returns (counters, seconds)."""
    card_data: md.CardData = make(cache)
    card_data.connection.meter.delay = delay
    card_data.connection.meter.reset()
    started = time.perf_counter()
    md.CardAcquireContext(card_data, 0)
    with card_data.transaction():
        md.CardReadFile(card_data, None, "cardcf")
        records = md.structures.unpack_cmapfile(md.CardReadFile(card_data, "mscp", "cmapfile"))
        names = md.CardEnumFiles(card_data, "mscp")
        for index, record in enumerate(records):
            if not record.is_valid:
                continue
            prefix = "kxc" if record.wKeyExchangeKeySizeBits else "ksc"
            if f"{prefix}{index:02d}" in names:
                md.CardReadFile(card_data, "mscp", f"{prefix}{index:02d}")
            md.CardGetContainerInfo(card_data, index)
    with card_data.transaction():
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
        info = md.CARD_SIGNING_INFO(
            2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, hashlib.sha256(b"logon").digest()
        )
        md.CardSignData(card_data, info)
        md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    elapsed = time.perf_counter() - started
    counters = card_data.connection.meter.snapshot()
    md.CardDeleteContext(card_data)
    if isinstance(card_data.connection, PcscConnection):
        card_data.close()
    return counters, elapsed


def _provision_gids(make: Any) -> None:
    """Container 0 (generated RSA-2048 key-exchange key) and its certificate kxc00, through the API."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    setup: md.CardData = make(None)
    md.CardAcquireContext(setup, 0)
    md.CardAuthenticateEx(setup, md.ROLE_USER, 0, b"123456")
    md.CardCreateContainer(setup, 0, md.CARD_CREATE_CONTAINER_KEY_GEN, md.AT_KEYEXCHANGE, 2048, b"")
    blob = md.PUBLICKEYBLOB.unpack(md.CardGetContainerInfo(setup, 0).pbKeyExPublicKey)
    key = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    md.CardCreateFile(setup, "mscp", "kxc00", 0, md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc)
    md.CardWriteFile(setup, "mscp", "kxc00", 0, certificate_for(key, "bench"))
    md.CardDeauthenticateEx(setup, md.PIN_SET_ALL_ROLES, 0)
    md.CardDeleteContext(setup)
    setup.close()


def inprocess_cards() -> dict[str, Any]:
    """A provisioned PIV card (9A RSA-2048) and GIDS card (container 0 RSA-2048), in memory."""
    from vcard.profile import load_profile
    from vcard.runtime import VirtualCard

    piv = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    PivProvisioner(InProcessConnection(piv.card)).provision({0x9A: "rsa2048", 0x9C: "p256", 0x9D: "p256"})
    gids = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    _provision_gids(lambda cache: md.CardData.inprocess(gids.card, cache=cache))
    return {
        "PIV (in-process)": lambda cache: md.CardData.inprocess(piv.card, cache=cache),
        "GIDS (in-process)": lambda cache: md.CardData.inprocess(gids.card, cache=cache),
    }


@contextlib.contextmanager
def pcscd_cards() -> Iterator[dict[str, Any]]:
    """PIV and GIDS cards in `vcard run` processes on vpcd slots 0 and 1, under the vpcd lock."""
    from vcard.testing import exclusive_slots, running_card

    with exclusive_slots(), contextlib.ExitStack() as stack:
        cards: dict[str, Any] = {}
        for slot, profile in enumerate(("piv", "gids")):
            reader = stack.enter_context(running_card(profile, slot))
            if profile == "piv":
                with PcscConnection(reader) as connection:
                    PivProvisioner(connection).provision({0x9A: "rsa2048"})
            else:
                _provision_gids(lambda cache, reader=reader: md.CardData.connect(reader, cache=cache))
            cards[f"{profile.upper()} (pcscd)"] = lambda cache, reader=reader: md.CardData.connect(
                reader, cache=cache
            )
        yield cards


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reader", help="Measure a PC/SC reader instead of the in-process cards.")
    parser.add_argument(
        "--pcscd", action="store_true", help="Also measure PIV/GIDS `vcard run` cards via pcscd."
    )
    parser.add_argument("--pin", default="123456")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="Simulated round-trip time.")
    args = parser.parse_args()
    pin = args.pin.encode()
    delay = args.delay_ms / 1000
    with contextlib.ExitStack() as stack:
        if args.reader:
            cards = {f"{args.reader} (pcscd)": lambda cache: md.CardData.connect(args.reader, cache=cache)}
        else:
            cards = inprocess_cards()
            if args.pcscd:
                cards.update(stack.enter_context(pcscd_cards()))
        report(cards, pin, delay, args.delay_ms)


def report(cards: dict[str, Any], pin: bytes, delay: float, delay_ms: float) -> None:
    header = f"time @ {delay_ms:g} ms RTT"
    print(f"{'card':<28} {'flow':<5} {'APDUs':>6} {'round trips':>12} {'bytes':>7} {header:>20}")
    for name, make in cards.items():
        cache = GlobalCache()
        cold, _ = sign_in(make, cache, pin, 0.0)
        warm, _ = sign_in(make, cache, pin, 0.0)
        timed_cache = GlobalCache()
        _, cold_time = sign_in(make, timed_cache, pin, delay)
        _, warm_time = sign_in(make, timed_cache, pin, delay)
        for flow, counts, seconds in (("cold", cold, cold_time), ("warm", warm, warm_time)):
            total = counts["bytes_sent"] + counts["bytes_received"]
            trips = counts["round_trips"]
            print(f"{name:<28} {flow:<5} {counts['apdus']:>6} {trips:>12} {total:>7} {seconds:>18.2f} s")
        print(
            f"{'':<28} warm/cold: {warm['apdus'] / cold['apdus']:.2f} of the APDUs, "
            f"{warm_time / cold_time:.2f} of the time"
        )


if __name__ == "__main__":
    main()
