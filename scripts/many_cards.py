"""Sixteen cards in one `vcard run`, each answering through its own pcscd reader.

Runs a private pcscd in fresh mount and network namespaces (`unshare -mn`, root):
a tmpfs on /run/pcscd hides the machine's pcscd socket, the namespace's own
loopback carries the vpcd ports, and the reader configuration is the one
`vcard readers --slots 16` would write, generated in a temporary directory. The
machine's pcscd, its /etc/reader.conf.d and other users' cards are never touched.

It checks that every one of the 16 readers holds a card that answers SELECT with
9000, that a 17th card is refused with a message instead of waiting, and reports
the resident memory per idle card. Exits non-zero on any failure.

With `--busy SECONDS` it then measures throughput with every card busy: one client
process per reader sends SELECTs for SECONDS, all starting together, first against
the N cards in one `vcard run`, then against N `vcard run` processes of one card
each, alternating for `--rounds` rounds; it prints the aggregate APDU/s of both and
their ratio (one process / N processes).

Usage: python scripts/many_cards.py [--cards N] [--busy SECONDS [--rounds R]]     (as root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vcard.transport import readers

SELECT_ISO = bytes.fromhex("00A4040007F07663617264") + b"\x01"
PCSCD = "/usr/sbin/pcscd"
SOCKET = Path("/run/pcscd/pcscd.comm")


def outside(cards: int, busy: float, rounds: int) -> int:
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
            f" --busy {busy} --rounds {rounds}"
        )
        return subprocess.run(["unshare", "-mn", "bash", "-c", script], check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _start_cards(
    count: int, env: dict[str, str], port: int | None = None, stderr: int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """`vcard run` with `count` iso cards on consecutive vpcd ports from `port` (default: the first)."""
    profiles = [arg for _ in range(count) for arg in ("--profile", "iso")]
    endpoint = [] if port is None else ["--vpcd", f"127.0.0.1:{port}"]
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from vcard.cli import main; main()",
            "run",
            *profiles,
            *endpoint,
            "--ephemeral",
            "--wait",
            "30",
        ],
        env=env,
        stderr=stderr,
        text=True,
    )


def client(reader: str, start: float, seconds: float) -> int:
    """Send SELECTs to `reader` from the wall-clock time `start` for `seconds`; print how many."""
    from smartcard.System import readers as list_readers

    (target,) = [r for r in list_readers() if str(r) == reader]
    connection = target.createConnection()
    connection.connect()
    apdu = list(SELECT_ISO)
    for _ in range(20):  # warm-up
        connection.transmit(apdu)
    time.sleep(max(0.0, start - time.time()))
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, sw1, sw2 = connection.transmit(apdu)
        if (sw1, sw2) != (0x90, 0x00):
            print(f"SELECT answered {sw1:02X}{sw2:02X}", file=sys.stderr)
            return 1
        done += 1
    connection.disconnect()
    print(done)
    return 0


def _busy_rate(names: list[str], seconds: float) -> float:
    """Aggregate SELECTs per second with one client process per reader, all at once."""
    start = time.time() + 3.0  # time for every client to start and connect
    clients = [
        subprocess.Popen(
            [sys.executable, __file__, "--client", name, "--start", str(start), "--busy", str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    total = 0
    for process in clients:
        output, _ = process.communicate(timeout=seconds + 60)
        if process.returncode != 0:
            raise RuntimeError(f"a client failed (exit {process.returncode})")
        total += int(output.split()[-1])
    return total / seconds


def _busy(names: list[str], ports: list[int], env: dict[str, str], seconds: float, rounds: int) -> str:
    """One vcard run with every card against one process per card, alternating; a summary line."""
    one: list[float] = []
    many: list[float] = []
    for _ in range(rounds):
        process = _start_cards(len(names), env, ports[0], subprocess.DEVNULL)
        try:
            if len(_wait_present(names, 60)) != len(names):
                raise RuntimeError("not every card of the single process came in")
            one.append(_busy_rate(names, seconds))
        finally:
            process.terminate()
            process.wait(30)
        _wait_absent(names, 30)
        processes = [_start_cards(1, env, port, subprocess.DEVNULL) for port in ports]
        try:
            if len(_wait_present(names, 90)) != len(names):
                raise RuntimeError("not every single-card process came in")
            many.append(_busy_rate(names, seconds))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
        _wait_absent(names, 30)
    ratios = [a / b for a, b in zip(one, many, strict=True)]
    rounds_text = ", ".join(f"{a:,.0f}/{b:,.0f}" for a, b in zip(one, many, strict=True))
    return (
        f"busy: {len(names)} cards in one process {statistics.median(one):,.0f} APDU/s,"
        f" in {len(names)} processes {statistics.median(many):,.0f} APDU/s (medians of {rounds} rounds):"
        f" ratio {statistics.median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f}; {rounds_text})"
    )


def _wait_absent(names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _wait_present(names, 0) and time.monotonic() < deadline:
        time.sleep(0.2)


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
        while True:
            hresult, states = SCardGetStatusChange(
                context, 0, [(name, SCARD_STATE_UNAWARE) for name in names]
            )
            present = [name for name, state, _ in states if state & SCARD_STATE_PRESENT]
            if len(present) == len(names) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
    finally:
        SCardReleaseContext(context)
    return present


def inside(conf: Path, cards: int, busy: float, rounds: int) -> int:
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
        if busy > 0 and not failures:
            ports = sorted(served)[:cards]
            try:
                print(_busy([served[port] for port in ports], ports, env, busy, rounds), flush=True)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                failures.append(f"busy measurement: {error}")
    finally:
        pcscd.terminate()
        pcscd.wait(10)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="16 cards in one vcard run, through a private pcscd")
    parser.add_argument("--cards", type=int, default=readers.PCSCD_MAX_READERS)
    parser.add_argument(
        "--busy", type=float, default=0.0, metavar="SECONDS", help="also measure APDU/s with every card busy"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the --busy measurement")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--client", metavar="READER", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.busy < 0 or args.rounds < 1:
        parser.error("--busy must be >= 0 and --rounds >= 1")
    if args.client is not None:
        return client(args.client, args.start, args.busy)
    if args.inside is not None:
        return inside(args.inside, args.cards, args.busy, args.rounds)
    return outside(args.cards, args.busy, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
