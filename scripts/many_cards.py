"""Sixteen cards in one `vcard run`, each answering through its own pcscd reader.

Runs a private pcscd in fresh mount and network namespaces (`unshare -mn`, root):
a tmpfs on /run/pcscd hides the machine's pcscd socket, the namespace's own
loopback carries the vpcd ports, and the reader configuration is the one
`vcard readers --slots 16` would write, generated in a temporary directory. The
machine's pcscd, its /etc/reader.conf.d and other users' cards are never touched.

It checks that every one of the 16 readers holds a card that answers SELECT with
9000, that a 17th card is refused with a message instead of waiting, and reports
the resident memory per idle card. Exits non-zero on any failure.

Usage: python scripts/many_cards.py [--cards N]      (as root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vcard.transport import readers

SELECT_ISO = bytes.fromhex("00A4040007F07663617264") + b"\x01"
PCSCD = "/usr/sbin/pcscd"
SOCKET = Path("/run/pcscd/pcscd.comm")


def outside(cards: int) -> int:
    """Prepare the configuration, then run `inside` in private namespaces."""
    if os.geteuid() != 0:
        print("many_cards: needs root (unshare -mn and a private pcscd)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="vcard-many-"))
    try:
        conf = work / "reader.conf.d"
        conf.mkdir()
        shutil.copyfile(readers.READER_CONF_DIR / "vpcd", conf / "vpcd")
        readers.apply(cards, conf, readers.DEBIAN_LIBRARY, work / "lib")
        script = (
            "set -e; mount -t tmpfs tmpfs /run/pcscd; ip link set lo up; "
            f'exec "{sys.executable}" "{__file__}" --inside "{conf}" --cards {cards}'
        )
        return subprocess.run(["unshare", "-mn", "bash", "-c", script], check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _start_cards(count: int, env: dict[str, str]) -> subprocess.Popen[str]:
    profiles = [arg for _ in range(count) for arg in ("--profile", "iso")]
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from vcard.cli import main; main()",
            "run",
            *profiles,
            "--ephemeral",
            "--wait",
            "30",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_present(names: list[str], timeout: float) -> list[str]:
    """The readers among `names` with a card, once all have one or the timeout passes."""
    from smartcard.scard import (
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCARD_STATE_PRESENT,
        SCARD_STATE_UNAWARE,
        SCardEstablishContext,
        SCardGetStatusChange,
        SCardReleaseContext,
    )

    deadline = time.monotonic() + timeout
    present: list[str] = []
    hresult, context = SCardEstablishContext(SCARD_SCOPE_USER)
    assert hresult == SCARD_S_SUCCESS
    try:
        while time.monotonic() < deadline:
            hresult, states = SCardGetStatusChange(
                context, 0, [(name, SCARD_STATE_UNAWARE) for name in names]
            )
            present = [name for name, state, _ in states if state & SCARD_STATE_PRESENT]
            if len(present) == len(names):
                break
            time.sleep(0.2)
    finally:
        SCardReleaseContext(context)
    return present


def inside(conf: Path, cards: int) -> int:
    from smartcard.System import readers as list_readers

    env = {**os.environ, "VCARD_READER_CONF_DIR": str(conf)}
    pcscd = subprocess.Popen(
        [PCSCD, "--foreground", "--config", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 15
        while not SOCKET.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        served = readers.served_ports(conf)
        time.sleep(1.0)
        names = [str(reader) for reader in list_readers()]
        expected = sorted(served.values())
        if sorted(names) != expected:
            failures.append(f"pcscd shows readers {names}, expected {expected}")

        one = _start_cards(1, env)
        _wait_present(expected[:1], 30)
        time.sleep(1.0)
        rss_one = _rss_kib(one.pid)
        one.terminate()
        one.wait(20)

        process = _start_cards(cards, env)
        try:
            present = _wait_present(expected, 60)
            if len(present) != cards:
                failures.append(f"{len(present)} of {cards} readers hold a card: {sorted(present)}")
            answered = 0
            for reader in list_readers():
                connection = reader.createConnection()
                try:
                    connection.connect()
                    _, sw1, sw2 = connection.transmit(list(SELECT_ISO))
                    if (sw1, sw2) == (0x90, 0x00):
                        answered += 1
                    else:
                        failures.append(f"{reader}: SELECT answered {sw1:02X}{sw2:02X}")
                finally:
                    connection.disconnect()
                    connection.release()
            time.sleep(2.0)  # idle
            rss_all = _rss_kib(process.pid)
        finally:
            process.terminate()
            process.wait(30)
        extra = _start_cards(cards + 1, env)
        try:
            _, error = extra.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            extra.kill()
            error = ""
            failures.append(f"{cards + 1} cards: vcard run waited instead of refusing")
        if extra.returncode == 0 or "has no vpcd slot" not in error:
            failures.append(
                f"{cards + 1} cards: expected a clear refusal, got exit {extra.returncode}: {error!r}"
            )
        per_card = (rss_all - rss_one) / max(1, cards - 1)
        print(
            f"{cards} cards in one vcard run: {answered} answered SELECT through pcscd"
            f" ({', '.join(expected)})"
        )
        print(
            f"RSS: 1 card {rss_one} KiB, {cards} cards {rss_all} KiB,"
            f" {per_card:.0f} KiB per further idle card"
        )
        print(f"card {cards + 1}: {error.strip().splitlines()[-1] if error.strip() else '(no message)'}")
    finally:
        pcscd.terminate()
        pcscd.wait(10)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="16 cards in one vcard run, through a private pcscd")
    parser.add_argument("--cards", type=int, default=readers.PCSCD_MAX_READERS)
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside is not None:
        return inside(args.inside, args.cards)
    return outside(args.cards)


if __name__ == "__main__":
    sys.exit(main())
