"""`make reliability`: a bounded black-box campaign against the card, re-run on demand.

Four parts, each counting what must stay zero:

* fuzz: random and mutated command APDUs into every shipped profile (state on disk,
  trace on). Escapes: an exception the card had to catch (logged traceback) or a
  malformed answer. Leaks: a profile secret (PIN, PUK, key) in any log line.
  Corrupt states: the state directory does not load again afterwards.
* vpcd: abusive frames from a fake vpcd into the real link (1-byte frames, garbage,
  frames cut short). Escapes: a frame that expects an answer gets none in 5 s.
* kills: a worker process runs VERIFY (wrong and right PIN) / CHANGE REFERENCE DATA /
  PUT DATA on a PIV and on a GIDS state in turn, and is killed with SIGKILL at a random
  moment. Regained tries: more tries left after the kill than the last operation that
  may have run allows. Corrupt states: the state does not load (torn or unreadable), or
  a data object holds neither its old nor its new value. The report says in which
  operation each kill landed.
* inputs: malformed profiles, states and command-line values through the real CLI.
  Tracebacks: a Python traceback on stderr; corrupt states: the file was changed.

Usage: python scripts/reliability.py [--apdus N] [--frames N] [--kills N] [--kill-cards piv,gids]
                                     [--only fuzz,vpcd,kills,inputs] [--seed S]
e.g. the kill campaign alone: `make reliability ARGS="--only kills --kills 1000"`.
Exits 1 if any count is not zero. Not part of `make test` (it takes a few minutes);
tests/unit/test_kill_campaign.py runs a few dozen kills of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcard.profile import list_profile_names, load_profile
from vcard.runtime import VirtualCard
from vcard.transport.vpcd import VpcdLink

PIV_SELECT = bytes.fromhex("00A4040005A000000308")
PIN = b"123456\xff\xff"
WRONG_PIN = b"999999\xff\xff"
PUK = b"12345678"
VALID_SW1 = {0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x90}
SEEDS = [
    "00A4040005A000000308",
    "00A4040009A00000039742544659",
    "00200080083132333435363738",
    "0020008008" + WRONG_PIN.hex(),
    "00200080",
    "0024008010" + PIN.hex() + PIN.hex(),
    "002C008010" + "3132333435363738" + PIN.hex(),
    "00CB3FFF055C035FC10200",
    "00CB3FFF025C017E00",
    "0087039B047C02810000",
    "00DB3FFF0A5C035FC109530301020304",
    "0047009A05AC03800111",
    "80CB800000",
    "805A000000",
    "00C0000000",
    "10DB3FFF035C035F",
    "00CA010100",
    "00DA01010401020304",
    "0084000008",
]


@dataclass
class Counts:
    apdus: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    kills: int = 0
    inputs: int = 0
    escapes: int = 0
    leaks: int = 0
    corrupt: int = 0
    regained: int = 0
    tracebacks: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(text)


class Collector(logging.Handler):
    """Keeps every formatted log line (with tracebacks) for the leak and escape checks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.tracebacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.tracebacks += 1
        self.lines.append(self.format(record))


@contextlib.contextmanager
def collecting() -> Iterator[Collector]:
    collector = Collector()
    root = logging.getLogger("vcard")
    old = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(old)


def profile_secrets(name: str) -> list[bytes]:
    """The secret values a profile ships, as they could appear in a log."""
    found: list[bytes] = []
    for role in load_profile(name).roles:
        value = getattr(role, "initial", None)
        if isinstance(value, bytes) and len(value) >= 4:
            found.append(value)
    return found


def leaked(text: str, secrets_: list[bytes]) -> bool:
    upper = text.upper()
    return any(
        form in upper
        for secret in secrets_
        for form in (secret.hex().upper(), secret.hex(" ").upper(), secret.hex(":").upper())
    )


def mutate(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.25:
        return rng.randbytes(rng.randint(0, 300))
    raw = bytearray(bytes.fromhex(rng.choice(SEEDS)))
    for _ in range(rng.randint(0, 4)):
        if not raw:
            break
        index = rng.randrange(len(raw))
        action = rng.random()
        if action < 0.5:
            raw[index] = rng.randrange(256)
        elif action < 0.7:
            del raw[index]
        elif action < 0.9:
            raw.insert(index, rng.randrange(256))
        else:
            raw += rng.randbytes(rng.randint(1, 40))
    if choice > 0.9 and len(raw) >= 1:
        raw[0] = rng.choice([0x00, 0x10, 0x0C, 0x80, 0x90, 0xEC, 0xFF])
    return bytes(raw)


def fuzz(counts: Counts, per_profile: int, rng: random.Random, work: Path) -> None:
    for name in list_profile_names():
        state = work / f"fuzz-{name}"
        secrets_ = profile_secrets(name)
        with collecting() as collector:
            virtual = VirtualCard.open(load_profile(name), state)
            try:
                for _ in range(per_profile):
                    if rng.random() < 0.01:
                        virtual.card.reset()
                    command = mutate(rng)
                    answer = virtual.card.transmit(command)
                    if len(answer) < 2 or answer[-2] not in VALID_SW1:
                        counts.escapes += 1
                        counts.note(f"fuzz {name}: {command.hex()} -> {answer.hex()}")
            finally:
                virtual.close()
        counts.apdus[name] = per_profile
        counts.escapes += collector.tracebacks
        if collector.tracebacks:
            counts.note(f"fuzz {name}: {collector.tracebacks} caught tracebacks")
        # a fuzzed command may carry a shipped PIN in clear when it is not a PIN command;
        # only commands whose data must be hidden count
        counts.leaks += sum(1 for line in collector.lines if leaked_in_hidden(line, secrets_))
        try:
            VirtualCard.open(load_profile(name), state).close()
        except Exception as error:  # any failure to reopen is a corrupt state
            counts.corrupt += 1
            counts.note(f"fuzz {name}: state does not reopen: {error}")


def leaked_in_hidden(line: str, secrets_: list[bytes]) -> bool:
    """A secret in a trace line of a command whose data must be hidden (VERIFY, CHANGE, ...)."""
    from vcard.redact import command_is_secret

    for part in line.split("\n"):
        if not part.startswith("> "):
            continue
        words = part.split()
        if len(words) < 3:
            continue
        try:
            raw = bytes.fromhex(words[2])
        except ValueError:
            continue
        if command_is_secret(raw) and leaked(part, secrets_):
            return True
    return False


class StandInVpcd:
    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(10)
        self.port: int = self.server.getsockname()[1]

    def accept(self) -> socket.socket:
        conn, _ = self.server.accept()
        conn.settimeout(5)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


def _recv_frame(conn: socket.socket) -> bytes | None:
    try:
        data = b""
        while len(data) < 2:
            chunk = conn.recv(2 - len(data))
            if not chunk:
                return None
            data += chunk
        size = int.from_bytes(data, "big")
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                return None
            body += chunk
        return body
    except TimeoutError:
        return None


def vpcd_frames(counts: Counts, frames: int, rng: random.Random) -> None:
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    vpcd = StandInVpcd()
    link = VpcdLink(virtual.card, "127.0.0.1", vpcd.port, name="reliability")
    logging.getLogger("vcard.transport").setLevel(logging.ERROR)
    link.start()
    try:
        conn = vpcd.accept()
        sent = 0
        while sent < frames:
            kind = rng.random()
            if kind < 0.02:
                payload = bytes([rng.choice([0, 1, 2])])  # real control codes, or a client's 1-byte APDU
                conn.sendall(b"\x00\x01" + payload)
                sent += 1
                if rng.random() < 0.5:
                    # vpcd polls presence at once: nothing unsolicited may arrive first
                    conn.sendall(b"\x00\x01\x04")
                    reply = _recv_frame(conn)
                    if reply != virtual.card.atr:
                        counts.escapes += 1
                        counts.note(f"vpcd: ATR poll after {payload.hex()} got {reply!r}")
                else:
                    reply = _recv_frame(conn)  # silence: the link must answer 6700 within its grace
                    if reply != b"\x67\x00":
                        counts.escapes += 1
                        counts.note(f"vpcd: 1-byte {payload.hex()} then silence got {reply!r}")
                continue
            if kind < 0.04:
                # a frame cut short, then the connection drops: the link must come back
                conn.sendall(b"\x01\x00" + rng.randbytes(rng.randint(0, 200)))
                conn.close()
                conn = vpcd.accept()
                sent += 1
                continue
            payload = bytes([rng.randrange(256)]) if kind < 0.2 else mutate(rng)[:65535]
            frame = len(payload).to_bytes(2, "big") + payload
            cut = rng.randint(0, len(frame))
            conn.sendall(frame[:cut])
            conn.sendall(frame[cut:])
            sent += 1
            if len(payload) == 1 and payload[0] in (0, 1, 2):
                conn.sendall(b"\x00\x01\x04")  # a presence poll follows a real control code
                payload = b"\x04"
            reply = _recv_frame(conn)
            if reply is None or (payload != b"\x04" and (len(reply) < 2 or reply[-2] not in VALID_SW1)):
                counts.escapes += 1
                counts.note(f"vpcd: {payload[:16].hex()} got {reply!r}")
                conn.close()
                conn = vpcd.accept()
        conn.close()
    finally:
        link.stop()
        vpcd.server.close()
        virtual.close()
    counts.frames = frames


# ---- kills ---------------------------------------------------------------------------------------

# One cycle of the worker: (operation, tries left afterwards, or None if unchanged).
CYCLE = [
    ("verify-wrong", 2),
    ("verify-wrong", 1),
    ("change", 3),
    ("verify-wrong", 2),
    ("verify", 3),
    ("put", None),
]
OPERATIONS = ("verify-wrong", "verify", "change", "put")
PRINTED_TAG = bytes.fromhex("5FC109")
GIDS_SELECT = bytes.fromhex("00A4040009A0000003974254465900")
GIDS_PIN = b"123456"
GIDS_WRONG_PIN = b"999999"
GIDS_FILE = 0xA010  # EF of the minidriver files: PUT DATA under the user PIN
GIDS_TAG = 0xDF24
GIDS_ADMIN_KEY = bytes(24)
KILL_CARDS = ("piv", "gids")


@dataclass
class KillTally:
    """Where the kills landed: in an operation of the cycle (per card), or between two."""

    during: dict[str, int] = field(default_factory=dict)

    def add(self, card: str, landed: str) -> None:
        key = f"{card} {landed}"
        self.during[key] = self.during.get(key, 0) + 1


def _command(card: str, operation: str, number: int) -> bytes:
    """The APDU of one cycle operation on `card` (PIN commands, and PUT DATA of the op number)."""
    value = number.to_bytes(4, "big")
    if card == "piv":
        if operation == "verify-wrong":
            return bytes.fromhex("0020008008") + WRONG_PIN
        if operation == "verify":
            return bytes.fromhex("0020008008") + PIN
        if operation == "change":
            return bytes.fromhex("0024008010") + PIN + PIN
        body = bytes([0x5C, 3]) + PRINTED_TAG + bytes([0x53, len(value)]) + value
        return bytes([0x00, 0xDB, 0x3F, 0xFF, len(body)]) + body
    if operation == "verify-wrong":
        return bytes([0x00, 0x20, 0x00, 0x80, len(GIDS_WRONG_PIN)]) + GIDS_WRONG_PIN
    if operation == "verify":
        return bytes([0x00, 0x20, 0x00, 0x80, len(GIDS_PIN)]) + GIDS_PIN
    if operation == "change":
        return bytes([0x00, 0x24, 0x00, 0x80, 2 * len(GIDS_PIN)]) + GIDS_PIN + GIDS_PIN
    # after the cycle's right VERIFY, which PUT DATA into A010 needs
    body = GIDS_TAG.to_bytes(2, "big") + bytes([len(value)]) + value
    return bytes([0x00, 0xDB, GIDS_FILE >> 8, GIDS_FILE & 0xFF, len(body)]) + body


def worker(card_name: str, state: Path, first: int) -> None:
    """Runs CYCLE forever from op number `first`, printing `start N` / `done N` around each op."""
    from vcard.host import InProcessConnection
    from vcard.testing.provisioning import PivProvisioner

    virtual = VirtualCard.open(load_profile(card_name), state)
    card = virtual.card
    card.power_on()
    if card_name == "piv":
        provisioner = PivProvisioner(InProcessConnection(virtual.card, power_on=False))
        provisioner.select()
        provisioner.authenticate()  # PUT DATA of printed information needs the management key
    else:
        card.transmit(GIDS_SELECT)
    number = first
    out = sys.stdout
    while True:
        operation, _ = CYCLE[number % len(CYCLE)]
        command = _command(card_name, operation, number)
        out.write(f"start {number}\n")
        out.flush()
        card.transmit(command)
        out.write(f"done {number}\n")
        out.flush()
        number += 1


def _tries(status: bytes) -> int:
    if status[-2] == 0x63:
        return status[-1] & 0x0F
    if status[-2:] == b"\x90\x00":
        return 3
    if status[-2:] == b"\x69\x83":
        return 0
    raise RuntimeError(f"VERIFY status answered {status.hex().upper()}")


def _read_back(card_name: str, state: Path) -> tuple[int, int | None]:
    """(tries left, value PUT DATA wrote) of the state, opening it like any user.

    Then back to 3 tries for the next worker: the PUK (PIV) or the admin key (GIDS)
    unblocks a PIN whose last try an interrupted command used, and the value is read
    under the PIN, whose right VERIFY restores the counter.
    """
    virtual = VirtualCard.open(load_profile(card_name), state)
    try:
        card = virtual.card
        card.power_on()
        if card_name == "piv":
            card.transmit(PIV_SELECT)
            tries = _tries(card.transmit(bytes.fromhex("00200080")))
            if tries == 0:
                card.transmit(bytes.fromhex("002C008010") + PUK + PIN)
            card.transmit(bytes.fromhex("0020008008") + PIN)
            answer = card.transmit(bytes.fromhex("00CB3FFF055C035FC10900"))
        else:
            card.transmit(GIDS_SELECT)
            tries = _tries(card.transmit(bytes.fromhex("00200080")))
            if tries == 0:
                _gids_unblock(card)
            card.transmit(bytes([0x00, 0x20, 0x00, 0x80, len(GIDS_PIN)]) + GIDS_PIN)
            tag_list = bytes([0x5C, 2]) + GIDS_TAG.to_bytes(2, "big")
            answer = card.transmit(
                bytes([0x00, 0xCB, GIDS_FILE >> 8, GIDS_FILE & 0xFF, 4]) + tag_list + b"\x00"
            )
        value = None
        if answer[-2:] == b"\x90\x00" and len(answer) >= 6:
            value = int.from_bytes(answer[-6:-2], "big")
        return tries, value
    finally:
        virtual.close()


def _gids_unblock(card: Any) -> None:
    """Mutual authentication with the admin key (as OpenSC's gids-tool), then RESET RETRY COUNTER P1 02."""
    from vcard import tlv
    from vcard.applets.gids.admin import host_mutual_cryptogram

    def ok(answer: bytes) -> bytes:
        if answer[-2:] != b"\x90\x00":
            raise RuntimeError(f"GIDS unblock answered {answer[-2:].hex().upper()}")
        return answer[:-2]

    ok(card.transmit(bytes.fromhex("0022C1A403830180")))
    host_random = random.SystemRandom().randbytes(16)
    challenge = tlv.encode(0x7C, [tlv.encode(0x81, host_random)])
    answer = ok(card.transmit(bytes([0x00, 0x87, 0x00, 0x00, len(challenge)]) + challenge + b"\x00"))
    card_random = tlv.find(answer, 0x7C, 0x81)
    if card_random is None:
        raise RuntimeError("GIDS mutual authentication: no card random")
    cryptogram = host_mutual_cryptogram("3des", GIDS_ADMIN_KEY, card_random, host_random)
    response = tlv.encode(0x7C, [tlv.encode(0x82, cryptogram)])
    ok(card.transmit(bytes([0x00, 0x87, 0x00, 0x00, len(response)]) + response + b"\x00"))
    ok(card.transmit(bytes([0x00, 0x2C, 0x02, 0x80, len(GIDS_PIN)]) + GIDS_PIN))


def kills(
    counts: Counts,
    number: int,
    rng: random.Random,
    work: Path,
    cards: tuple[str, ...] = KILL_CARDS,
    tally: KillTally | None = None,
) -> None:
    """`number` kills, spread over `cards` in turn; each card has its own state directory."""
    runs = {name: _KillRun(name, work / f"kills-{name}") for name in cards}
    for index in range(number):
        runs[cards[index % len(cards)]].kill_once(counts, rng, tally)


class _KillRun:
    """One card's state under repeated kills: where the next worker starts, what PUT DATA last left."""

    def __init__(self, card: str, state: Path) -> None:
        self.card = card
        self.state = state
        VirtualCard.open(load_profile(card), state).close()
        self.last_put: int | None = None
        self.op = 0

    def kill_once(self, counts: Counts, rng: random.Random, tally: KillTally | None) -> None:
        process = subprocess.Popen(
            [sys.executable, __file__, "--worker", self.card, str(self.state), str(self.op)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        lines: list[str] = []
        first = process.stdout.readline()  # the worker has opened the state and started
        # Counted from the first operation: the worker's start-up (imports, opening the state)
        # takes longer than the window, so a deadline set before would always land in op one.
        deadline = time.monotonic() + rng.uniform(0.0, 0.25)
        lines.append(first)
        reader = threading.Thread(target=lines.extend, args=(process.stdout,), daemon=True)
        reader.start()
        time.sleep(max(0.0, deadline - time.monotonic()))
        process.send_signal(signal.SIGKILL)
        process.wait()
        reader.join(5)
        counts.kills += 1
        started = [int(line.split()[1]) for line in lines if line.startswith("start")]
        done = {int(line.split()[1]) for line in lines if line.startswith("done")}
        if not started:
            error = process.stderr.read()[-300:] if process.stderr else ""
            counts.note(f"kill {self.card}: worker died before its first operation: {error}")
            return
        last = started[-1]
        if tally is not None:
            tally.add(self.card, "between operations" if last in done else CYCLE[last % len(CYCLE)][0])
        before = _tries_after(last - 1, self.op)
        if last in done:
            allowed_tries = {_tries_after(last)}
        else:
            # a PIN command cut short may have used its try (counted before the check, so a
            # crash never gives it back) without reaching the reset a right PIN brings
            allowed_tries = {before, _tries_after(last)}
            if CYCLE[last % len(CYCLE)][0] != "put":
                allowed_tries.add(before - 1)
        puts = [n for n in started if CYCLE[n % len(CYCLE)][0] == "put"]
        allowed_values = {self.last_put}
        for n in puts:
            allowed_values = {n} if n in done else allowed_values | {n}
        try:
            tries, value = _read_back(self.card, self.state)
        except Exception as error:  # a state that no longer opens is the failure counted here
            counts.corrupt += 1
            counts.note(f"kill {self.card} after op {last}: state does not open: {error}")
            # start again from a fresh card, so the campaign goes on
            shutil.rmtree(self.state, ignore_errors=True)
            VirtualCard.open(load_profile(self.card), self.state).close()
            self.last_put, self.op = None, 0
            return
        if tries > max(allowed_tries):
            counts.regained += 1
            counts.note(
                f"kill {self.card} after op {last}: {tries} tries left, at most {max(allowed_tries)} allowed"
            )
        elif tries not in allowed_tries:
            counts.corrupt += 1
            expected = sorted(allowed_tries)
            counts.note(f"kill {self.card} after op {last}: {tries} tries left, expected one of {expected}")
        if value not in allowed_values:
            counts.corrupt += 1
            counts.note(
                f"kill {self.card} after op {last}: PUT DATA value {value}, expected {allowed_values}"
            )
        self.last_put = value
        self.op = (last // len(CYCLE) + 1) * len(CYCLE)  # next worker starts a fresh cycle at 3 tries


def _tries_after(number: int, start: int | None = None) -> int:
    """Tries left after op `number` of the cycle (3 before the first op of a worker)."""
    if start is not None and number < start:
        return 3
    position = number % len(CYCLE)
    for index in range(position, -1, -1):
        tries = CYCLE[index][1]
        if tries is not None:
            return tries
    return 3


# ---- malformed inputs ----------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from vcard.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def malformed_inputs(counts: Counts, work: Path) -> None:
    base = work / "inputs"
    base.mkdir()
    profiles = {
        "empty": "",
        "not-toml": "[[[",
        "bad-type": "description = 5\n[applets.iso]",
        "unknown-security-key": "[security]\nidle_reset_second = 5\n[applets.iso]",
        "bad-atr": 'atr = "3B 8G"\n[applets.iso]',
        "no-roles": "[applets.piv]",
        "unknown-applet": "[applets.nope]",
        "binary": "\x00\x01\x02",
    }
    for name, text in profiles.items():
        path = base / f"{name}.toml"
        path.write_text(text)
        _check(counts, f"profile {name}", _cli("apdu", "--profile", str(path), "--ephemeral", "00A4040000"))
    edits: dict[str, object] = {
        "no-security": lambda d: d.pop("security"),
        "keys-none": lambda d: d["applets"]["piv"].__setitem__("keys", "none"),
        "roles-list": lambda d: d["security"].__setitem__("roles", [1, 2]),
        "schema": lambda d: d.__setitem__("schema", 99),
        "serial-type": lambda d: d["card"].__setitem__("serial", 5),
        "not-object": None,
        "truncated": None,
        "directory": None,
    }
    for name, edit in edits.items():
        state = base / f"state-{name}"
        VirtualCard.open(load_profile("piv"), state).close()
        path = state / "state.json"
        if name == "not-object":
            path.write_text("[]")
        elif name == "truncated":
            path.write_bytes(path.read_bytes()[:100])
        elif name == "directory":
            path.unlink()
            path.mkdir()
        else:
            document = json.loads(path.read_text())
            edit(document)  # type: ignore[operator]
            path.write_text(json.dumps(document))
        before = _snapshot(path)
        for args in (
            ("info", "--profile", "piv", "--state", str(state)),
            ("apdu", "--profile", "piv", "--state", str(state), "00A4040005A000000308"),
        ):
            _check(counts, f"state {name}", _cli(*args))
        if _snapshot(path) != before:
            counts.corrupt += 1
            counts.note(f"state {name}: the file was rewritten")
    for args in (
        ("apdu", "--ephemeral", ""),
        ("apdu", "--ephemeral", "zz"),
        ("apdu", "--ephemeral", "00 A4 [01"),
        ("apdu", "--ephemeral", "--state", str(base / "x"), "00A40400"),
        ("md", "info", "--ephemeral", "--delay-ms", "-5"),
        ("run", "--vpcd", "nohost"),
        ("run", "--wait", "soon", "--ephemeral"),
        ("info", "--reader", "No Such Reader"),
        ("stop",),
        ("reset", "--state", str(base / "nothing"), "--yes"),
    ):
        _check(counts, " ".join(args), _cli(*args))


def _snapshot(path: Path) -> object:
    if path.is_dir():
        return ("dir", sorted(os.listdir(path)))
    return path.read_bytes() if path.exists() else None


def _check(counts: Counts, what: str, result: subprocess.CompletedProcess[str]) -> None:
    counts.inputs += 1
    if "Traceback" in result.stderr or result.returncode == 0:
        counts.tracebacks += 1 if "Traceback" in result.stderr else 0
        counts.escapes += 0 if "Traceback" in result.stderr else 1
        counts.note(f"input {what}: exit {result.returncode}: {result.stderr.strip()[-300:]}")


PARTS = ("fuzz", "vpcd", "kills", "inputs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--apdus", type=int, default=50000, help="fuzzed APDUs per profile")
    parser.add_argument("--frames", type=int, default=10000, help="abusive vpcd frames")
    parser.add_argument(
        "--kills",
        type=int,
        default=200,
        help="SIGKILLs during PIN and data commands, spread over --kill-cards",
    )
    parser.add_argument(
        "--kill-cards",
        default=",".join(KILL_CARDS),
        help=f"cards the kills run on, in turn (default {','.join(KILL_CARDS)})",
    )
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"parts to run, comma-separated (default {','.join(PARTS)})"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]))
        return 0
    parts = [part for part in args.only.split(",") if part]
    cards = tuple(card for card in args.kill_cards.split(",") if card)
    unknown = [part for part in parts if part not in PARTS] + [
        card for card in cards if card not in KILL_CARDS
    ]
    if unknown or not parts or not cards:
        parser.error(f"unknown or empty --only / --kill-cards: {', '.join(unknown) or 'nothing given'}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    counts = Counts()
    tally = KillTally()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vcard-reliability-"))
    os.chmod(work, 0o700)
    try:
        if "fuzz" in parts:
            fuzz(counts, args.apdus, rng, work)
        if "vpcd" in parts:
            vpcd_frames(counts, args.frames, rng)
        if "kills" in parts:
            kills(counts, args.kills, rng, work, cards, tally)
        if "inputs" in parts:
            malformed_inputs(counts, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fuzzed = ", ".join(f"{name} {number}" for name, number in counts.apdus.items())
    print(f"reliability (seed {seed}, {time.monotonic() - started:.0f} s, parts: {', '.join(parts)})")
    print(f"  APDUs fuzzed per profile: {fuzzed or 'none'}")
    print(f"  abusive vpcd frames: {counts.frames}")
    print(f"  kill -9 during VERIFY / CHANGE REFERENCE DATA / PUT DATA on {', '.join(cards)}: {counts.kills}")
    for where, number in sorted(tally.during.items()):
        print(f"    {where}: {number}")
    print(f"  malformed inputs: {counts.inputs}")
    print(
        f"  {counts.escapes} escapes / {counts.leaks} leaks / {counts.corrupt} corrupt states /"
        f" {counts.regained} regained tries / {counts.tracebacks} tracebacks"
    )
    for note in counts.notes:
        print(f"  ! {note}")
    bad = counts.escapes + counts.leaks + counts.corrupt + counts.regained + counts.tracebacks
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
