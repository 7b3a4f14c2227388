"""Raw RSA on the card: fast path vs OpenSSL vs the blinded Python path, RSA-2048, one run.

    .venv/bin/python bench/bench_crypto_raw.py [--seconds 0.4] [--rounds 5] [--cpu]

Prints operations per second for
  key.sign            OpenSSL PKCS#1 v1.5 signature of a SHA-256 digest (the reference)
  rsa_sign_block      the card's entry point on the same PKCS#1 v1.5 block (fast path)
  rsa_raw_private     the blinded CRT path in Python (what PSS / decipher blocks use)
and the ratios to the reference, all measured in this run: `--rounds` rounds in which each
path and the reference run back to back for `--seconds` each, the first side alternating;
the ratio is the median of the per-round ratios, the lowest and highest in brackets.
"""

from __future__ import annotations

import argparse
import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from timing import CPU, WALL, compare

from vcard import crypto


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=0.4, help="seconds per side per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (>= 3 for a spread)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time with the thread's CPU time (a busy machine) instead of wall time",
    )
    args = parser.parse_args()

    clock = CPU if args.cpu else WALL
    key = crypto.generate_private_key("rsa2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    n, e = crypto.rsa_public_numbers(key)
    digest = hashlib.sha256(b"benchmark").digest()
    reference = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    block = pow(int.from_bytes(reference, "big"), e, n).to_bytes(256, "big")
    if crypto.rsa_sign_block(key, block) != reference or crypto.rsa_raw_private(key, block) != reference:
        raise SystemExit("results differ: not benchmarking a broken implementation")

    def key_sign() -> bytes:
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    results = {
        "rsa_sign_block (fast path)": compare(
            lambda: crypto.rsa_sign_block(key, block), key_sign, args.rounds, args.seconds, clock
        ),
        "rsa_raw_private (blinded CRT)": compare(
            lambda: crypto.rsa_raw_private(key, block), key_sign, args.rounds, args.seconds, clock
        ),
    }
    kind = "CPU" if args.cpu else "wall"
    print(f"RSA-2048 private operations, {kind} time, median of {args.rounds} rounds (lowest-highest)")
    print(f"  {'key.sign (OpenSSL)':32s} {results['rsa_sign_block (fast path)'].baseline_rate:10.1f} ops/s")
    for name, result in results.items():
        print(f"  {name:32s} {result.rate:10.1f} ops/s   {result.ratio_text()} x key.sign")


if __name__ == "__main__":
    main()
