"""GIDS RSA-2048 signatures per second through the card vs raw `cryptography`, one run.

    .venv/bin/python bench/bench_gids_sign.py [--seconds 0.6] [--rounds 5] [--cpu] [--strict]

The card is the shipped `gids` profile, ephemeral, in-process: the user PIN is
verified once, a key file is created and an RSA-2048 key generated on the card
(as OpenSC's pkcs15-init does), then each signature is what OpenSC sends per
C_Sign: MSE SET `00 22 41 B6 06 80 01 57 84 01 81` and PSO `00 2A 9E 9A 33
<DigestInfo(SHA-256)> 00`, both through `Card.transmit` (APDU parsing, the card
OS, the applet, the security core, the card padding the DigestInfo). The
reference signs the same digest with the same key through `cryptography`
(PKCS#1 v1.5, prehashed SHA-256). Both rates and their ratio come from this run:
`--rounds` rounds (default 5) in which the card and the reference run back to back for
`--seconds` each, the first side alternating; printed are the medians and the median of
the per-round ratios with the lowest and highest in brackets (target >= 0.95).
"""

from __future__ import annotations

import argparse
import hashlib
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from timing import CPU, WALL, compare

from vcard import crypto
from vcard.apdu import ResponseAPDU
from vcard.applets.gids import GidsApplet
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
KEY_FILE_FCP = bytes.fromhex(
    "6247820118 8302B081 8C058F10101000 A537"
    "B809800107830181950140 B809800187830181950140 B809800147830181950140"
    "B609800117830181950140 B609800157830181950140".replace(" ", "")
)

TARGET = 0.95


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=0.6, help="seconds per side per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (>= 3 for a spread)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time with the thread's CPU time (a busy machine) instead of wall time",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 below the target")
    args = parser.parse_args()

    virtual = VirtualCard.open(load_profile("gids"), ephemeral=True)
    card = virtual.card
    card.power_on()

    def ok(command: bytes) -> bytes:
        response = ResponseAPDU.parse(card.transmit(command))
        if response.sw != 0x9000:
            raise SystemExit(f"{command.hex().upper()} answered {response.sw:04X}")
        return response.data

    ok(bytes.fromhex("00A4040009A0000003974254465900"))
    ok(bytes.fromhex("0020008006") + b"123456")
    ok(bytes([0x00, 0xE0, 0x00, 0x00, len(KEY_FILE_FCP)]) + KEY_FILE_FCP)
    ok(bytes.fromhex("00440000"))
    ok(bytes.fromhex("0047000008AC068001078301 81".replace(" ", "")))

    applet = virtual.applets["gids"]
    assert isinstance(applet, GidsApplet)
    pem = applet.fs.require(0xB081).key_pem
    assert pem is not None
    key = crypto.private_key_from_pem(pem)  # the bench reads the state; no command returns it
    assert isinstance(key, rsa.RSAPrivateKey)

    digest = hashlib.sha256(b"benchmark").digest()
    mse = bytes.fromhex("002241B606800157840181")
    pso = bytes([0x00, 0x2A, 0x9E, 0x9A, 0x33]) + SHA256_DIGEST_INFO + digest + b"\x00"
    reference = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    ok(mse)
    assert ok(pso) == reference, "the card's signature differs from cryptography's"

    transmit = card.transmit

    def card_sign() -> None:
        # the status words are checked, the signature was compared above
        assert transmit(mse) == b"\x90\x00"
        assert transmit(pso)[-2:] == b"\x90\x00"

    def raw_sign() -> bytes:
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    result = compare(card_sign, raw_sign, args.rounds, args.seconds, CPU if args.cpu else WALL)
    virtual.close()
    rounds = f"{args.rounds} alternating rounds of {args.seconds:g} s per side"
    print(f"{'CPU' if args.cpu else 'wall'} time, median of {rounds} (lowest-highest)")
    print(f"GIDS card (MSE + PSO via Card.transmit): {result.rate:9.1f} signatures/s")
    print(f"cryptography key.sign (same key):        {result.baseline_rate:9.1f} signatures/s")
    verdict = "ok" if result.ratio >= TARGET else "LOW"
    print(f"ratio card / raw:                         {result.ratio_text()}  (>= {TARGET})  {verdict}")
    return 1 if verdict == "LOW" and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
