"""Minidriver sign-in cost: APDUs cold vs warm cache, and the time of both over a simulated slow link.

The flow is what a Windows logon does through the Base CSP, in one transaction on a
card connected beforehand: acquire a context, read cardcf, the container map and the
certificates, authenticate the user PIN, sign, deauthenticate. "cold" starts with no
context and an empty data cache; "new process" acquires a new context on the filled
cache; "warm" is the CSP's kept context (its transaction starts with the cardcf read).

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


def sign_in(card_data: md.CardData, pin: bytes, delay: float, acquire: bool) -> tuple[dict[str, int], float]:
    """One logon in one transaction, the card already connected; returns (counters, seconds).

    `acquire`: a CSP that has no context for the card yet (CardAcquireContext, then cardcf);
    otherwise the CSP's kept context, whose transaction starts with the cardcf read.
    """
    card_data.connection.meter.delay = delay
    card_data.connection.meter.reset()
    started = time.perf_counter()
    with card_data.transaction():
        if acquire:
            md.CardAcquireContext(card_data, 0)
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
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, pin)
        info = md.CARD_SIGNING_INFO(
            2, 0, md.AT_KEYEXCHANGE, 0, md.CALG_SHA_256, hashlib.sha256(b"logon").digest()
        )
        md.CardSignData(card_data, info)
        md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    elapsed = time.perf_counter() - started
    card_data.connection.meter.delay = 0.0
    return card_data.connection.meter.snapshot(), elapsed


def flows(make: Any, pin: bytes, delay: float) -> list[tuple[str, dict[str, int], float]]:
    """cold (no context, empty cache), new process (no context, cache filled), warm (kept context)."""
    cache = GlobalCache()
    first = make(cache)
    cold = sign_in(first, pin, delay, acquire=True)
    second = make(cache)
    new_process = sign_in(second, pin, delay, acquire=True)
    warm = sign_in(second, pin, delay, acquire=False)
    for card_data in (first, second):
        md.CardDeleteContext(card_data)
        card_data.close()
    return [("cold", *cold), ("new process", *new_process), ("warm", *warm)]


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
    print(f"{'card':<20} {'flow':<12} {'APDUs':>6} {'SCard calls':>12} {'bytes':>7} {header:>20}")
    for name, make in cards.items():
        counted = flows(make, pin, 0.0)
        timed = flows(make, pin, delay)
        for (flow, counts, _), (_, _, seconds) in zip(counted, timed, strict=True):
            total = counts["bytes_sent"] + counts["bytes_received"]
            trips = counts["round_trips"]
            print(f"{name:<20} {flow:<12} {counts['apdus']:>6} {trips:>12} {total:>7} {seconds:>18.2f} s")
        cold, warm = counted[0][1], counted[2][1]
        print(f"{'':<20} warm/cold: {warm['apdus'] / cold['apdus']:.2f} of the APDUs")


if __name__ == "__main__":
    main()
