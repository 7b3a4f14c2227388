"""PIV signature throughput: the applet in process and through pcscd, against raw `cryptography`.

Measured in one run on one machine, so only the ratios mean something:

- raw: `cryptography` signing with the very key the card holds (RSA-2048 PKCS#1 v1.5 of a
  SHA-256 digest, ECDSA P-256 of a SHA-256 digest, ECDSA P-384 of a SHA-384 digest), the
  signature algorithm object built per call as a caller of `key.sign` writes it;
- in-process: `Card.transmit` of the GENERAL AUTHENTICATE APDU a client sends (PIN verified
  once, PIN policy "once"; RSA in slot 9A, P-256 in 9D, P-384 in retired slot 82), so APDU
  parsing, TLV, the security check and the response are all included; the benchmark only
  checks the status word of each answer (targets: >= 0.95x raw for RSA-2048 and P-384,
  >= 0.85x for P-256);
- pcscd: the same APDU through pyscard -> pcscd -> vpcd -> `vcard run` (command chaining and
  GET RESPONSE as OpenSC does it), when pcscd and vpcd are available.

The in-process figures come from `--rounds` rounds (default 5); in each round the applet
and raw `cryptography` run back to back for `--seconds` each, the first side alternating.
The ratio printed is the median of the per-round ratios, with the lowest and highest in
brackets. Before timing, one signature of each algorithm is verified with the public key.

Usage: python bench/bench_piv_sign.py [--seconds 0.6] [--rounds 5] [--cpu] [--no-pcsc] [--strict]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from timing import CPU, WALL, Comparison, compare, rate  # noqa: E402  (bench/ is on sys.path when run as a script)

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
DIGEST_384 = hashlib.sha384(b"vcard benchmark").digest()
SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
RSA_BLOCK = b"\x00\x01" + b"\xff" * (256 - 3 - 51) + b"\x00" + SHA256_INFO + DIGEST
OK = b"\x90\x00"


@dataclass(frozen=True)
class Case:
    """One algorithm: where its key lives, what the client sends, what it must reach."""

    name: str
    algorithm: int
    slot: int
    challenge: bytes
    target: float

    def body(self) -> bytes:
        return tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(0x81, self.challenge)])

    def apdu(self) -> bytes:
        # extended APDUs: one exchange per signature in process, like a client that can use them
        extended = len(self.challenge) > 200
        return CommandAPDU(
            0x00, 0x87, self.algorithm, self.slot, self.body(), 65536 if extended else 256, extended=extended
        ).encode()


CASES = (
    Case("RSA-2048", 0x07, 0x9A, RSA_BLOCK, 0.95),
    Case("P-256", 0x11, 0x9D, DIGEST, 0.85),
    Case("P-384", 0x14, 0x82, DIGEST_384, 0.95),
)


def exchange(link: Link, cla: int, ins: int, p1: int, p2: int, data: bytes = b"") -> ResponseAPDU:
    """A short-APDU client (vcard.host): CLA 10 chaining and GET RESPONSE, as OpenSC does."""
    return SmartCardProtocol(link).transmit(CommandAPDU(cla, ins, p1, p2, data, 256))


def prepare(link: Link, generate: bool) -> None:
    """SELECT, 9B mutual authentication, a key per case (PIN policy: the slot's default), PIN."""

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
        for case in CASES:
            template = tlv.encode(0xAC, tlv.encode(0x80, bytes([case.algorithm])))
            ok(exchange(link, 0x00, 0x47, 0x00, case.slot, template))
    ok(exchange(link, 0x00, 0x20, 0x00, 0x80, b"123456\xff\xff"))


def raw_signer(key: object, case: Case) -> Callable[[], object]:
    """`cryptography` signing the case's digest with `key`, as a caller of `key.sign` writes it."""
    if isinstance(key, rsa.RSAPrivateKey):
        return lambda: key.sign(DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if case.challenge is DIGEST_384:
        return lambda: key.sign(DIGEST_384, ec.ECDSA(Prehashed(hashes.SHA384())))
    return lambda: key.sign(DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))


def check_signature(key: object, case: Case, answer: bytes) -> None:
    """The card's answer `7C { 82 signature }` verifies with the slot's public key."""
    response = ResponseAPDU.parse(answer)
    assert response.sw == 0x9000, f"{case.name}: {response.sw:04X}"
    signature = tlv.find(response.data, 0x7C, 0x82)
    assert signature is not None, f"{case.name}: no 7C/82 in the answer"
    if isinstance(key, rsa.RSAPrivateKey):
        key.public_key().verify(signature, DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        chosen = hashes.SHA384() if case.challenge is DIGEST_384 else hashes.SHA256()
        key.public_key().verify(signature, case.challenge, ec.ECDSA(Prehashed(chosen)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=0.6, help="seconds per side per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (>= 3 for a spread)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a ratio is below its target")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time with the thread's CPU time (a busy machine) instead of wall time",
    )
    parser.add_argument("--no-pcsc", action="store_true", help="skip the pcscd measurement")
    args = parser.parse_args()

    virtual = VirtualCard.open(load_profile("piv"), ephemeral=True)
    card = virtual.card
    card.power_on()
    prepare(card, generate=True)
    applet = virtual.applets["piv"]
    assert isinstance(applet, PivApplet)

    def card_signer(apdu: bytes) -> Callable[[], object]:
        def run() -> None:
            answer = card.transmit(apdu)
            assert answer[-2:] == OK, answer[-2:].hex()

        return run

    clock = CPU if args.cpu else WALL
    results: list[tuple[Case, Comparison]] = []
    for case in CASES:
        entry = applet.key_entry(case.slot)
        assert entry is not None, f"no key in {case.slot:02X}"
        apdu = case.apdu()
        check_signature(entry.key, case, card.transmit(apdu))
        results.append(
            (case, compare(card_signer(apdu), raw_signer(entry.key, case), args.rounds, args.seconds, clock))
        )
    virtual.close()

    pcsc_rates: dict[str, float] = {}
    if not args.no_pcsc:
        pcsc_rates = measure_pcsc(args.seconds * args.rounds)

    rounds = f"{args.rounds} alternating rounds of {args.seconds:g} s per side"
    print(f"in process, {'CPU' if args.cpu else 'wall'} time: median of {rounds} (lowest-highest)")
    header = ("algorithm", "raw/s", "applet/s", "ratio (spread)", "target", "pcscd/s", "ratio")
    print("{:<9} {:>9} {:>9} {:>20} {:>7} {:>9} {:>6}".format(*header))
    failed = False
    for case, result in results:
        pcsc = pcsc_rates.get(case.name)
        pcsc_text = f"{pcsc:9.1f} {pcsc / result.baseline_rate:6.3f}" if pcsc else f"{'-':>9} {'-':>6}"
        verdict = "ok" if result.ratio >= case.target else "LOW"
        failed |= verdict == "LOW"
        print(
            f"{case.name:<9} {result.baseline_rate:9.1f} {result.rate:9.1f} {result.ratio_text():>20}"
            f" {'>=' + str(case.target):>7} {pcsc_text}  {verdict}"
        )
    return 1 if failed and args.strict else 0


def measure_pcsc(seconds: float) -> dict[str, float]:
    """Signatures per second through pcscd (empty when pcscd/vpcd are unavailable)."""
    try:
        from harness import CardProcess, environment_problem

        from vcard.testing import exclusive_slots
    except ImportError as error:
        print(f"pcscd measurement skipped: {error}", file=sys.stderr)
        return {}
    problem = environment_problem()
    if problem is not None:
        print(f"pcscd measurement skipped: {problem}", file=sys.stderr)
        return {}
    with exclusive_slots(), CardProcess(profile="piv", slot=0) as process:
        connection = PcscConnection(process.reader, disposition=Disposition.UNPOWER_CARD)
        try:
            prepare(connection, generate=True)

            def sign(case: Case) -> Callable[[], object]:
                body = case.body()

                def run() -> None:
                    assert exchange(connection, 0x00, 0x87, case.algorithm, case.slot, body).sw == 0x9000

                return run

            return {case.name: rate(sign(case), seconds / len(CASES)) for case in CASES}
        finally:
            connection.close()


if __name__ == "__main__":
    sys.exit(main())
