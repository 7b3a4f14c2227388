"""GIDS RSA-2048 signatures per second through the card vs raw `cryptography`, one run.

    .venv/bin/python bench/bench_gids_sign.py [--seconds 2.0]

The card is the shipped `gids` profile, ephemeral, in-process: the user PIN is
verified once, a key file is created and an RSA-2048 key generated on the card
(as OpenSC's pkcs15-init does), then each signature is what OpenSC sends per
C_Sign: MSE SET `00 22 41 B6 06 80 01 57 84 01 81` and PSO `00 2A 9E 9A 33
<DigestInfo(SHA-256)> 00`, both through `Card.transmit` (APDU parsing, the card
OS, the applet, the security core, the card padding the DigestInfo). The
reference signs the same digest with the same key through `cryptography`
(PKCS#1 v1.5, prehashed SHA-256). Both rates and their ratio come from this run.
"""

from __future__ import annotations

import argparse
import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from timing import rate

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




def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
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

    def card_sign() -> bytes:
        ok(mse)
        return ok(pso)

    def raw_sign() -> bytes:
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    card_rate = rate(card_sign, args.seconds)
    raw_rate = rate(raw_sign, args.seconds)
    virtual.close()
    print(f"GIDS card (MSE + PSO via Card.transmit): {card_rate:9.1f} signatures/s")
    print(f"cryptography key.sign (same key):        {raw_rate:9.1f} signatures/s")
    print(f"ratio card / raw:                         {card_rate / raw_rate:9.3f}")


if __name__ == "__main__":
    main()
