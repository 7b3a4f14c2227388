"""PIV signature throughput: the applet in process and through pcscd, against raw `cryptography`.

Measured in one run on one machine, so only the ratios mean something:

- raw: `cryptography` signing with the very key the card holds (RSA-2048 PKCS#1 v1.5 of a
  SHA-256 digest, ECDSA P-256 of a SHA-256 digest);
- in-process: `Card.transmit` of the GENERAL AUTHENTICATE APDU a client sends (PIN verified
  once, PIN policy "once"), so APDU parsing, TLV, the security check and the response are
  all included (targets: >= 0.9x raw for RSA-2048, >= 0.7x for P-256);
- pcscd: the same APDU through pyscard -> pcscd -> vpcd -> `vcard run` (command chaining and
  GET RESPONSE as OpenSC does it), when pcscd and vpcd are available.

Usage: python bench/bench_piv_sign.py [--seconds 3] [--rounds 5] [--no-pcsc] [--strict]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from timing import rate  # noqa: E402  (bench/ is on sys.path when run as a script)

from vcard import tlv  # noqa: E402
from vcard.apdu import CommandAPDU, ResponseAPDU  # noqa: E402
from vcard.applets.piv import PivApplet  # noqa: E402
from vcard.applets.piv.keys import Algorithm, block_encrypt  # noqa: E402
from vcard.host import Disposition, Link, PcscConnection, SmartCardProtocol  # noqa: E402
from vcard.profile import load_profile  # noqa: E402
from vcard.runtime import VirtualCard  # noqa: E402

AID = bytes.fromhex("A000000308000010000100")
MGM = bytes.fromhex("010203040506070801020304050607080102030405060708")
DIGEST = hashlib.sha256(b"vcard benchmark").digest()
SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
RSA_BLOCK = b"\x00\x01" + b"\xff" * (256 - 3 - 51) + b"\x00" + SHA256_INFO + DIGEST


def best_of(
    raw: Callable[[], object], card: Callable[[], object], args: argparse.Namespace
) -> tuple[float, float]:
    """Best rate of each over `--rounds` alternating rounds: both sides see the same machine load."""
    raw_rates, card_rates = [], []
    for _ in range(args.rounds):
        raw_rates.append(rate(raw, args.seconds / args.rounds))
        card_rates.append(rate(card, args.seconds / args.rounds))
    return max(raw_rates), max(card_rates)


def exchange(link: Link, cla: int, ins: int, p1: int, p2: int, data: bytes = b"") -> ResponseAPDU:
    """A short-APDU client (vcard.host): CLA 10 chaining and GET RESPONSE, as OpenSC does."""
    return SmartCardProtocol(link).transmit(CommandAPDU(cla, ins, p1, p2, data, 256))


def prepare(link: Link, generate: bool) -> None:
    """SELECT, 9B mutual authentication, keys in 9A (RSA-2048) and 9D (P-256), PIN."""

    def ok(response: ResponseAPDU) -> ResponseAPDU:
        assert response.sw == 0x9000, f"{response.sw:04X}"
        return response

    ok(exchange(link, 0x00, 0xA4, 0x04, 0x00, AID))
    if generate:
        witness = tlv.find(
            ok(exchange(link, 0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028000"))).data, 0x7C, 0x80
        )
        assert witness is not None
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        decryptor = Cipher(TripleDES(MGM), modes.ECB()).decryptor()
        plain = decryptor.update(witness) + decryptor.finalize()
        body = tlv.encode(0x7C, [tlv.encode(0x80, plain), tlv.encode(0x81, bytes(8)), tlv.encode(0x82, b"")])
        answer = tlv.find(ok(exchange(link, 0x00, 0x87, 0x03, 0x9B, body)).data, 0x7C, 0x82)
        assert answer == block_encrypt(Algorithm.TDES, MGM, bytes(8))
        for slot, algorithm in ((0x9A, 0x07), (0x9D, 0x11)):
            template = tlv.encode(0xAC, tlv.encode(0x80, bytes([algorithm])))
            ok(exchange(link, 0x00, 0x47, 0x00, slot, template))
    ok(exchange(link, 0x00, 0x20, 0x00, 0x80, b"123456\xff\xff"))


def sign_apdus() -> tuple[bytes, bytes]:
    rsa_body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, RSA_BLOCK)])
    ec_body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, DIGEST)])
    # extended APDUs: one exchange per signature in process, like a client that can use them
    return (
        CommandAPDU(0x00, 0x87, 0x07, 0x9A, rsa_body, 65536, extended=True).encode(),
        CommandAPDU(0x00, 0x87, 0x11, 0x9D, ec_body, 256).encode(),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="time per measurement (split over the rounds)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (best of)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a ratio is below its target")
    parser.add_argument("--no-pcsc", action="store_true", help="skip the pcscd measurement")
    args = parser.parse_args()

    virtual = VirtualCard.open(load_profile("piv"), ephemeral=True)
    card = virtual.card
    card.power_on()
    prepare(card, generate=True)
    applet = virtual.applets["piv"]
    assert isinstance(applet, PivApplet)
    rsa_entry, ec_entry = applet.key_entry(0x9A), applet.key_entry(0x9D)
    assert rsa_entry is not None and ec_entry is not None
    rsa_key, ec_key = rsa_entry.key, ec_entry.key
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and isinstance(ec_key, ec.EllipticCurvePrivateKey)
    rsa_apdu, ec_apdu = sign_apdus()

    def card_sign(apdu: bytes) -> Callable[[], object]:
        def run() -> None:
            sw = ResponseAPDU.parse(card.transmit(apdu)).sw
            assert sw == 0x9000, f"{sw:04X}"

        return run

    rows: list[tuple[str, float, float, float | None, float]] = []
    raw_rsa, card_rsa = best_of(
        lambda: rsa_key.sign(DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256())),
        card_sign(rsa_apdu),
        args,
    )
    raw_ec, card_ec = best_of(
        lambda: ec_key.sign(DIGEST, ec.ECDSA(Prehashed(hashes.SHA256()))), card_sign(ec_apdu), args
    )
    virtual.close()

    pcsc_rates: dict[str, float | None] = {"RSA-2048": None, "P-256": None}
    if not args.no_pcsc:
        pcsc_rates = measure_pcsc(args.seconds)
    rows.append(("RSA-2048", raw_rsa, card_rsa, pcsc_rates["RSA-2048"], 0.9))
    rows.append(("P-256", raw_ec, card_ec, pcsc_rates["P-256"], 0.7))

    header = ("algorithm", "raw/s", "applet/s", "ratio", "target", "pcscd/s", "ratio")
    print("{:<10} {:>9} {:>9} {:>6} {:>7} {:>9} {:>6}".format(*header))
    failed = False
    for name, raw, inproc, pcsc, target in rows:
        pcsc_text = f"{pcsc:9.1f} {pcsc / raw:6.3f}" if pcsc else f"{'-':>9} {'-':>6}"
        verdict = "ok" if inproc / raw >= target else "LOW"
        failed |= verdict == "LOW"
        target_text = f">={target}"
        print(
            f"{name:<10} {raw:9.1f} {inproc:9.1f} {inproc / raw:6.3f} {target_text:>7} {pcsc_text}  {verdict}"
        )
    return 1 if failed and args.strict else 0


def measure_pcsc(seconds: float) -> dict[str, float | None]:
    """Signatures per second through pcscd (None when pcscd/vpcd are unavailable)."""
    try:
        from harness import CardProcess, environment_problem

        from vcard.testing import exclusive_slots
    except ImportError as error:
        print(f"pcscd measurement skipped: {error}", file=sys.stderr)
        return {"RSA-2048": None, "P-256": None}
    problem = environment_problem()
    if problem is not None:
        print(f"pcscd measurement skipped: {problem}", file=sys.stderr)
        return {"RSA-2048": None, "P-256": None}
    with exclusive_slots(), CardProcess(profile="piv", slot=0) as process:
        connection = PcscConnection(process.reader, disposition=Disposition.UNPOWER_CARD)
        try:
            prepare(connection, generate=True)
            rsa_body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, RSA_BLOCK)])
            ec_body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, DIGEST)])

            def sign(p1: int, p2: int, body: bytes) -> Callable[[], object]:
                def run() -> None:
                    assert exchange(connection, 0x00, 0x87, p1, p2, body).sw == 0x9000

                return run

            return {
                "RSA-2048": rate(sign(0x07, 0x9A, rsa_body), seconds),
                "P-256": rate(sign(0x11, 0x9D, ec_body), seconds),
            }
        finally:
            connection.close()


if __name__ == "__main__":
    sys.exit(main())
