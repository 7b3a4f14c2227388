"""Record what clients send to a card, as an APDU script that replays green.

`install_recorder(card, path)` adds an observer to a `Card` that sees every
exchange and power event (Card.add_observer). Every card session (from a power-on or reset to the
next) becomes one case that starts with `reset`, so replaying the script against
a card in the same starting state repeats the same sessions.

A recording is only useful if it replays, and some responses differ on every
run. The rule (documented in docs/apdu-scripts.md, "Recording sessions"):

- status words are always compared exactly;
- response data is compared exactly, except
  - for commands whose answer is random or depends on a key generated on the
    card: GENERAL AUTHENTICATE (87), GENERATE ASYMMETRIC KEY PAIR (47), GET
    CHALLENGE (84), PERFORM SECURITY OPERATION (2A), Yubico ATTEST (F9) and GET
    METADATA (F7), GIDS public-key reads (GET DATA with a `70` template), and the
    GET RESPONSEs that continue them: recorded as `*` ("any data");
  - for any command that got different data at different times in the same
    recording (the card's answer is evidently not a function of the command);
- challenge-response authentications are rewritten so that the replay computes
  the answer to the new challenge: the card's witness or challenge is captured
  (`{WITNESS_1:8}`) and the client's reply becomes `${decrypt("3des", MGMT_KEY,
  WITNESS_1)}` and the like. This works when the key is one of the known
  defaults (or given to `install_recorder`); otherwise the exchange is kept
  literally with a comment saying it will not replay.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__, crypto, tlv
from ..apdu import CommandAPDU, ISOError, ResponseAPDU, sw_name
from ..cardos import Card, CardObserver, PowerEvent
from ..wire.ins import IsoIns, YubicoIns
from .functions import ecb

DEFAULT_KEYS: dict[str, bytes] = {
    "MGMT_KEY": bytes.fromhex("010203040506070801020304050607080102030405060708"),
    "ADMIN_KEY": bytes(24),
}
"""Keys the recorder tries when it meets a challenge-response: the PIV and GIDS factory defaults."""

RANDOM_INS = frozenset(
    {
        IsoIns.GENERAL_AUTHENTICATE,
        IsoIns.GENERATE_ASYMMETRIC_KEY_PAIR,
        IsoIns.GET_CHALLENGE,
        IsoIns.PERFORM_SECURITY_OPERATION,
        YubicoIns.ATTEST,
        YubicoIns.GET_METADATA,
    }
)
"""Commands whose answers differ on every run (signatures, keys, challenges, attestations)."""
FLUSH_EVERY = 50
GIDS_IV = bytes(8)


@dataclass
class Exchange:
    command: bytes
    response: bytes


@dataclass
class Session:
    opened_by: str
    exchanges: list[Exchange] = field(default_factory=list)


@dataclass
class _Pending:
    """A witness or challenge the card sent, waiting for the client's answer."""

    kind: str  # "witness" (PIV mutual), "challenge" (external), "gids" (GIDS mutual)
    name: str
    value: bytes
    cipher: str


def _spaced(data: bytes) -> str:
    return data.hex(" ").upper()


def _template(data: bytes) -> dict[int, bytes] | None:
    """The children of a 7C dynamic authentication template, or None."""
    try:
        outer = tlv.decode_one(data, 0x7C)
        return {item.tag: item.value for item in outer.children()}
    except Exception:  # not a template: nothing to rewrite
        return None


def _command_data(command: bytes) -> bytes:
    """Data field of a command (empty when it has none or does not parse)."""
    try:
        return CommandAPDU.parse(command).data
    except ISOError:
        return b""


def _piv_cipher(p1: int) -> str:
    return "aes" if p1 in (0x08, 0x0A, 0x0C) else "3des"


def _ecb(cipher: str, key: bytes, data: bytes, encrypt: bool) -> bytes | None:
    """What the replay's `encrypt`/`decrypt` would compute, or None when the key cannot be this cipher's."""
    try:
        return ecb(cipher, key, data, encrypt)
    except ValueError:
        return None


_CLIENT_HALF = {"witness": (0x80, "decrypt"), "challenge": (0x82, "encrypt")}
"""PIV: the tag of the client's answer to a pending witness/challenge, and the function computing it."""


class Recorder:
    """Collects card sessions and writes them as a script (rewritten atomically as it grows)."""

    def __init__(self, path: Path, keys: Mapping[str, bytes] | None = None, description: str = "") -> None:
        self.path = Path(path)
        self.keys = dict(DEFAULT_KEYS if keys is None else keys)
        self.description = description
        self.sessions: list[Session] = [Session("start")]
        self.started = datetime.now(UTC)
        self._lock = threading.Lock()
        self._unflushed = 0
        self.closed = False

    # ---- events --------------------------------------------------------------

    def exchange(self, command: bytes, response: bytes) -> None:
        with self._lock:
            self.sessions[-1].exchanges.append(Exchange(bytes(command), bytes(response)))
            self._unflushed += 1
            if self._unflushed >= FLUSH_EVERY:
                self._flush()

    def boundary(self, event: str) -> None:
        """A power-on or reset: the next exchanges belong to a new case."""
        with self._lock:
            if self.sessions[-1].exchanges:
                self.sessions.append(Session(event))
                self._flush()
            else:
                self.sessions[-1].opened_by = event

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self._flush()
                self.closed = True

    # ---- output --------------------------------------------------------------

    def _flush(self) -> None:
        self._unflushed = 0
        text = self.render()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def render(self) -> str:
        """The whole recording as script text."""
        varying = self._varying_commands()
        used_keys: set[str] = set()
        counter = [0]
        body: list[str] = []
        number = 0
        for session in self.sessions:
            if not session.exchanges:
                continue
            number += 1
            body.append(f'case "session {number} ({session.opened_by})"')
            body.append("  reset")
            body.extend(self._render_session(session, varying, used_keys, counter))
            body.append("end")
            body.append("")
        header = [
            f"# Recorded by vcard {__version__} from {self.started:%Y-%m-%d %H:%M} UTC"
            + (f": {self.description}" if self.description else "")
            + ".",
            "# Replay it against a card in the same starting state, e.g. a copy of the state directory:",
            f"#   vcard script {self.path.name} --profile PROFILE --state COPY",
            "# Data of random answers is '*' (see docs/apdu-scripts.md, 'Recording sessions').",
            "",
        ]
        for name in sorted(used_keys):
            header.append(f"var {name} = {self.keys[name].hex().upper()}")
        if used_keys:
            header.append("")
        return "\n".join(header + body)

    def _varying_commands(self) -> set[bytes]:
        seen: dict[bytes, set[bytes]] = {}
        for session in self.sessions:
            for exchange in session.exchanges:
                if len(exchange.response) >= 2:
                    answer = ResponseAPDU.parse(exchange.response).data
                    seen.setdefault(exchange.command, set()).add(answer)
        return {command for command, answers in seen.items() if len(answers) > 1}

    def _render_session(
        self, session: Session, varying: set[bytes], used_keys: set[str], counter: list[int]
    ) -> list[str]:
        lines: list[str] = []
        pending: _Pending | None = None
        chain_random = False
        for exchange in session.exchanges:
            command, response = exchange.command, exchange.response
            if len(command) < 4 or len(response) < 2:
                lines.append(f"  > {_spaced(command)}")
                lines.append(f"  < {'* ' if len(response) > 2 else ''}????")
                continue
            data, sw = ResponseAPDU.parse(response)
            ins = command[1]
            if ins == IsoIns.GET_RESPONSE:
                random_answer = chain_random
            else:
                random_answer = ins in RANDOM_INS or (ins == 0xCB and _command_data(command)[:1] == b"\x70")
                chain_random = random_answer
            random_answer = random_answer or command in varying
            command_text = _spaced(command)
            expect_text = f"{_spaced(data)} {sw:04X}" if data else f"{sw:04X}"
            if random_answer and data:
                expect_text = f"* {sw:04X}"
            comment = ""
            result = None
            if ins == 0x87 and command[0] & 0xEF == 0x00 and sw == 0x9000:
                result = self._authentication(command, data, pending, used_keys, counter)
            if result is not None:
                command_text, expect_text, pending, comment = result
                expect_text = f"{expect_text} {sw:04X}" if expect_text else f"{sw:04X}"
            elif ins != IsoIns.GET_RESPONSE:
                pending = None
            if comment:
                lines.append(f"  # {comment}")
            lines.append(f"  > {command_text}")
            lines.append(f"  < {expect_text}  # {sw_name(sw)}" if sw != 0x9000 else f"  < {expect_text}")
        return lines

    def _authentication(
        self,
        command: bytes,
        data: bytes,
        pending: _Pending | None,
        used_keys: set[str],
        counter: list[int],
    ) -> tuple[str, str, _Pending | None, str] | None:
        """Rewrite one step of a challenge-response; None leaves the exchange to the general rule."""
        request = _template(_command_data(command))
        answer = _template(data) if data else None
        if request is None:
            return None
        p1, p2 = command[2], command[3]
        cipher = "3des" if p2 == 0x00 and p1 == 0x00 else _piv_cipher(p1)
        # the card's half: a witness (80) or challenge (81) requested with an empty tag
        if answer is not None:
            for tag, kind in ((0x80, "witness"), (0x81, "challenge")):
                if request.get(tag) == b"" and tag in answer and len(answer) == 1:
                    counter[0] += 1
                    name = f"{kind.upper()}_{counter[0]}"
                    value = answer[tag]
                    expect = f"7C {len(value) + 2:02X} {tag:02X} {len(value):02X} {{{name}:{len(value)}}}"
                    return _spaced(command), expect, _Pending(kind, name, value, cipher), ""
            if (
                p1 == 0x00
                and p2 == 0x00
                and len(request.get(0x81, b"")) == 16
                and len(answer.get(0x81, b"")) == 16
            ):
                counter[0] += 1
                name = f"CARD_RANDOM_{counter[0]}"
                expect = f"7C 12 81 10 {{{name}:16}}"
                return _spaced(command), expect, _Pending("gids", name, answer[0x81], "3des"), ""
        if pending is None:
            return None
        # the client's half: replace the bytes that depend on the card's random value
        if pending.kind in _CLIENT_HALF and request.get(_CLIENT_HALF[pending.kind][0]):
            tag, function = _CLIENT_HALF[pending.kind]
            for key_name, key in self.keys.items():
                if _ecb(pending.cipher, key, pending.value, encrypt=function == "encrypt") == request[tag]:
                    used_keys.add(key_name)
                    expression = f'${{{function}("{pending.cipher}", {key_name}, {pending.name})}}'
                    expect = _spaced(data) if data else ""
                    return _replace(command, request[tag], expression), expect, None, ""
        elif pending.kind == "gids" and len(request.get(0x82, b"")) == 40:
            for key_name, key in self.keys.items():
                try:
                    plain = crypto.cbc_decrypt("3des", key, GIDS_IV, request[0x82])
                except ValueError:
                    continue
                if plain[:16] == pending.value:
                    used_keys.add(key_name)
                    expression = (
                        f"${{3des_cbc_encrypt({key_name}, 0x{GIDS_IV.hex()}, "
                        f"cat({pending.name}, 0x{plain[16:].hex().upper()}))}}"
                    )
                    return _replace(command, request[0x82], expression), "*" if data else "", None, ""
        else:
            return None
        note = f"the key answering {pending.name} is not known to the recorder: this exchange will not replay"
        return _spaced(command), f"{_spaced(data)}" if data else "", None, note


def _replace(command: bytes, value: bytes, expression: str) -> str:
    index = command.find(value, 5)
    return f"{_spaced(command[:index])} {expression} {_spaced(command[index + len(value) :])}".strip()


class _RecorderTap(CardObserver):
    """Feeds a card's exchanges and power events to a Recorder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def on_exchange(self, command: bytes, response: bytes, elapsed: float) -> None:
        self.recorder.exchange(command, response)

    def on_power(self, event: PowerEvent) -> None:
        self.recorder.boundary(str(event))


def install_recorder(
    card: Card,
    path: Path,
    keys: Mapping[str, bytes] | None = None,
    description: str = "",
) -> Recorder:
    """Record every exchange and power event of `card` (a vcard.cardos.Card) into `path`.

    Call `close()` on the result when the card stops (the file is also rewritten at
    every card session boundary, so an interrupted run keeps its finished sessions).
    """
    recorder = Recorder(path, keys, description)
    card.add_observer(_RecorderTap(recorder))
    recorder._flush()
    return recorder
