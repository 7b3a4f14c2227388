"""Raw RSA on the card: fast path vs OpenSSL vs the blinded Python path, RSA-2048, one run.

    .venv/bin/python bench/bench_crypto_raw.py [--seconds 1.0]

Prints operations per second for
  key.sign            OpenSSL PKCS#1 v1.5 signature of a SHA-256 digest (the reference)
  rsa_sign_block      the card's entry point on the same PKCS#1 v1.5 block (fast path)
  rsa_raw_private     the blinded CRT path in Python (what PSS / decipher blocks use)
and the ratios to the reference, all measured in this run.
"""

from __future__ import annotations

import argparse
import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from timing import rate

from vcard import crypto


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()

    key = crypto.generate_private_key("rsa2048")
    assert isinstance(key, rsa.RSAPrivateKey)
    n, e = crypto.rsa_public_numbers(key)
    digest = hashlib.sha256(b"benchmark").digest()
    reference = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    block = pow(int.from_bytes(reference, "big"), e, n).to_bytes(256, "big")
    if crypto.rsa_sign_block(key, block) != reference or crypto.rsa_raw_private(key, block) != reference:
        raise SystemExit("results differ: not benchmarking a broken implementation")

    results = {
        "key.sign (OpenSSL)": rate(
            lambda: key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())), args.seconds
        ),
        "rsa_sign_block (fast path)": rate(lambda: crypto.rsa_sign_block(key, block), args.seconds),
        "rsa_raw_private (blinded CRT)": rate(lambda: crypto.rsa_raw_private(key, block), args.seconds),
    }
    base = results["key.sign (OpenSSL)"]
    print("RSA-2048 private operations, same run")
    for name, value in results.items():
        print(f"  {name:32s} {value:10.1f} ops/s   {value / base:6.3f} x key.sign")


if __name__ == "__main__":
    main()
