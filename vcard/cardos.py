"""The card operating system: ATR, power, applet registry, SELECT, chaining, GET RESPONSE.

`Card.transmit` takes raw command bytes and always returns a well-formed response
ending in a status word: malformed APDUs get ISO status words and an unexpected
exception inside an applet becomes 6F00 with a logged traceback. The card never
stops answering.

Applets follow the Java Card model: `select`, `deselect`, `process`, with a table
from INS to handler methods built by the `@command(INS)` decorator.

A `Card` is configured when it is built, not patched afterwards: card-level
commands (routed before the selected applet, e.g. vcard.vendor), hooks run before
every command (PIN-always window, idle reset) and observers of exchanges and
power events (the APDU recorder) are constructor arguments; observers can also be
added later with `add_observer`. Without observers the per-command path does no
extra work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from .apdu import SW, CommandAPDU, ISOError, ResponseAPDU, bytes_remaining, ins_name, sw_name
from .redact import command_text, response_text
from .wire.ins import IsoIns

log = logging.getLogger("vcard.cardos")
trace_log = logging.getLogger("vcard.trace")

MIN_PARTIAL_AID = 5  # the RID; clients select PIV and GIDS with 5-, 9- and 11-byte forms
DEFAULT_MAX_CHAIN_BYTES = 65536 + 1024
# Plain ints and bytes for the per-command path (an enum attribute lookup costs more than a global).
_SELECT = int(IsoIns.SELECT)
_GET_RESPONSE = int(IsoIns.GET_RESPONSE)
_SUCCESS = int(SW.SUCCESS)
_SUCCESS_BYTES = _SUCCESS.to_bytes(2, "big")
_NO_PRECISE_DIAGNOSIS = int(SW.NO_PRECISE_DIAGNOSIS).to_bytes(2, "big")
_monotonic = time.monotonic
_parse = CommandAPDU.parse
_DEBUG = logging.DEBUG
_perf_counter = time.perf_counter

HandlerResult = bytes | ResponseAPDU | None
F = TypeVar("F", bound=Callable[..., HandlerResult])
CardCommand = Callable[[CommandAPDU], HandlerResult]
"""A card-level command handler, keyed by (CLA without the chaining bit, INS)."""
CardHook = Callable[["Card"], None]
"""Runs before each command (chain fragments included); may raise ISOError to refuse it."""


class PowerEvent(StrEnum):
    POWER_ON = "power on"
    POWER_OFF = "power off"
    RESET = "reset"


class CardObserver:
    """Watches a card without changing it; subclasses override what they need.

    Observers run inside the card lock, after the response is encoded, so they see
    exchanges in order; an exception in an observer is logged and never reaches
    the host.
    """

    def on_exchange(self, command: bytes, response: bytes, elapsed: float) -> None:
        """One command and the encoded response; `elapsed` in seconds (processing only)."""

    def on_power(self, event: PowerEvent) -> None:
        """A cold start of an unpowered card, a power-off or a warm reset."""


def command(*instructions: int) -> Callable[[F], F]:
    """Mark an applet method as the handler for one or more INS bytes."""

    def mark(method: F) -> F:
        method._vcard_ins = instructions  # type: ignore[attr-defined]
        return method

    return mark


class Applet:
    """Base class of card applications.

    Subclasses set `aid` and `name`, decorate handlers with `@command(XxxIns.Y)` (vcard.wire.ins), and
    raise `ISOError(SW.X)` for every failure. Handlers return response data (bytes),
    a ResponseAPDU for a non-9000 answer that carries data, or None.
    """

    aid: bytes = b""
    name: ClassVar[str] = "applet"
    # Proprietary CLA values (chaining bit cleared) this applet defines; any other class
    # with b8 set is answered 6E00 before the applet sees it.
    proprietary_classes: ClassVar[frozenset[int]] = frozenset()
    # INS -> handler method name, built per class from the @command marks; an instance may
    # narrow it (an applet configured as an older version lacks some instructions).
    _commands: dict[int, str] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[int, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for ins in getattr(value, "_vcard_ins", ()):
                    table[ins] = attr
        cls._commands = table

    def select(self, apdu: CommandAPDU) -> HandlerResult:
        """Called on SELECT by AID (also when re-selected); returns the FCI or similar."""
        return b""

    def deselect(self) -> None:
        """Called when another applet is selected: drop application security status."""

    def reset(self) -> None:
        """Called on card reset and power-off: drop every volatile state."""
        self.deselect()

    @cached_property
    def _handlers(self) -> dict[int, Callable[[CommandAPDU], HandlerResult]]:
        """INS -> bound handler, made at the first command (after the subclass narrowed `_commands`)."""
        return {ins: getattr(self, name) for ins, name in self._commands.items()}

    def process(self, apdu: CommandAPDU) -> HandlerResult:
        handler = self._handlers.get(apdu.ins)
        if handler is None:
            raise ISOError(SW.INS_NOT_SUPPORTED, f"{self.name} has no instruction {apdu.ins:02X}")
        return handler(apdu)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for `vcard info`."""
        return {"name": self.name, "aid": self.aid.hex().upper()}

    def ins_label(self, ins: int) -> str:
        """Name of an INS for traces: the handler name if the applet has one."""
        handler = self._commands.get(ins)
        return handler.upper() if handler else ins_name(ins)


class Card:
    """An ICC: an ATR, power state, registered applets and the ISO 7816-4 plumbing.

    Thread-safe: the vpcd transport, a control socket and tests may call in from
    different threads; commands are processed one at a time.

    Two locks: `_command_lock` makes the card single-threaded (a command or power
    change runs to its end before the next starts, as on a real card), and `lock`
    guards the card's state for readers such as `vcard info`. A command holds both,
    but lets go of `lock` while it waits for a person outside the card (`released`),
    so the state stays readable during a PIN-pad wait while commands still queue.
    """

    def __init__(
        self,
        atr: bytes,
        applets: Sequence[Applet] = (),
        default_applet: Applet | None = None,
        max_chain_bytes: int = DEFAULT_MAX_CHAIN_BYTES,
        on_reset: Callable[[bool], None] | None = None,
        commands: Mapping[tuple[int, int], CardCommand] | None = None,
        hooks: Sequence[CardHook] = (),
        observers: Sequence[CardObserver] = (),
        trace_secrets: bool = False,
    ) -> None:
        self.atr = atr
        self.applets = list(applets)
        self.default_applet = default_applet
        self.max_chain_bytes = max_chain_bytes
        self.lock = threading.RLock()
        self._command_lock = threading.RLock()
        self.powered = False
        self.selected: Applet | None = default_applet
        self.on_reset = on_reset
        self.last_command_time = time.monotonic()
        # Commands begun since the card was built, a chain counting once: what the security
        # core's PIN-always window counts in (vcard.runtime connects the two).
        self.commands_started = 0
        self._chain: tuple[tuple[int, int, int, int], bytearray] | None = None
        self._pending_response = b""
        self._commands: dict[tuple[int, int], CardCommand] = dict(commands or {})
        self._command_classes = frozenset(cla for cla, _ in self._commands)
        self._hooks: tuple[CardHook, ...] = tuple(hooks)
        self._observers: tuple[CardObserver, ...] = tuple(observers)
        # The trace hides PINs, keys and session PINs (vcard.redact) unless this is set
        # (`--trace-secrets`, for debugging a card whose secrets are test values).
        self.trace_secrets = trace_secrets
        # Where trace entries go instead of a `vcard.trace` log record, when set (`vcard run
        # --trace` sets vcard.tracelog's writer: the same line, without building a record).
        self.trace_sink: Callable[[str], None] | None = None

    def add_observer(self, observer: CardObserver) -> None:
        """Start telling `observer` about exchanges and power events."""
        with self.lock:
            self._observers = (*self._observers, observer)

    def remove_observer(self, observer: CardObserver) -> None:
        with self.lock:
            self._observers = tuple(o for o in self._observers if o is not observer)

    @property
    def in_chain(self) -> bool:
        """True while a command chain (CLA bit 0x10) is open: its pieces count as one command."""
        return self._chain is not None

    # ---- power -------------------------------------------------------------

    # `on_reset(cold)` tells the owner of card-wide volatile state (the security core)
    # which kind of reset happened: a cold one (power cycle) ends the card session, a
    # warm one (vpcd control code 02, SCARD_RESET_CARD) keeps power, so state the
    # profile declares warm-reset-proof (session PINs, minidriver spec) may survive it.

    def power_on(self) -> None:
        """Cold start (vpcd 01); nothing happens when the card is already powered."""
        with self._command_lock, self.lock:
            was_powered = self.powered
            if not was_powered:
                self._clear_volatile(cold=True)
            self.powered = True
            if not was_powered:
                self._notify_power(PowerEvent.POWER_ON)

    def power_off(self) -> None:
        """Power removed (vpcd 00): a cold reset for everything volatile."""
        with self._command_lock, self.lock:
            self._clear_volatile(cold=True)
            self.powered = False
            self._notify_power(PowerEvent.POWER_OFF)

    def reset(self) -> None:
        """Warm reset (vpcd 02): applets start over, the power stays on."""
        with self._command_lock, self.lock:
            self._clear_volatile(cold=False)
            self.powered = True
            self._notify_power(PowerEvent.RESET)

    def _notify_power(self, event: PowerEvent) -> None:
        for observer in self._observers:
            try:
                observer.on_power(event)
            except Exception:
                log.exception("card observer %r failed on %s", observer, event)

    def _clear_volatile(self, cold: bool) -> None:
        for applet in self.applets:
            applet.reset()
        self.selected = self.default_applet
        if self.selected is not None:
            self.selected.select(CommandAPDU(0x00, IsoIns.SELECT, 0x04, 0x00, self.selected.aid))
        self._chain = None
        self._pending_response = b""
        if self.on_reset is not None:
            self.on_reset(cold)

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let readers of the card's state in while the current command waits for an operator.

        The next command still waits for this one (`_command_lock`). Outside a
        command of the calling thread there is nothing to let go of.
        """
        try:
            self.lock.release()
        except RuntimeError:  # this thread does not hold the card lock
            yield
            return
        try:
            yield
        finally:
            self.lock.acquire()

    # ---- command processing -----------------------------------------------

    def transmit(self, raw: bytes) -> bytes:
        """Process one command APDU; always returns data + SW1 SW2."""
        # acquire/release, not `with`: the context-manager protocol of two locks costs about
        # as much as parsing the APDU, on every command
        self._command_lock.acquire()
        try:
            self.lock.acquire()
            try:
                if self._observers or self.trace_sink is not None or trace_log.isEnabledFor(_DEBUG):
                    return self._transmit_watched(raw)
                encoded = self._respond(raw)
                self.last_command_time = _monotonic()
                return encoded
            finally:
                self.lock.release()
        finally:
            self._command_lock.release()

    def _transmit_watched(self, raw: bytes) -> bytes:
        """`transmit` timed, traced and shown to the observers (only when someone watches)."""
        started = _perf_counter()
        encoded = self._respond(raw)
        self.last_command_time = _monotonic()
        elapsed = _perf_counter() - started
        if self.trace_sink is not None or trace_log.isEnabledFor(logging.DEBUG):
            self._trace(raw, encoded, elapsed)
        for observer in self._observers:
            try:
                observer.on_exchange(raw, encoded, elapsed)
            except Exception:
                log.exception("card observer %r failed", observer)
        return encoded

    def _respond(self, raw: bytes) -> bytes:
        """The encoded answer to one command: hooks, then the command; every failure becomes a status word.

        One method for the whole path of an ordinary command (parse, class, chaining,
        routing, Le): each Python call it saves is paid on every APDU, and more so in a
        card process whose caches went cold while it waited for the next frame. Rare
        cases (proprietary classes, GET RESPONSE, chains, no applet) leave it for helpers.
        """
        if self._chain is None:  # the fragments of a chain after the first are the same command
            self.commands_started += 1
        try:
            for hook in self._hooks:
                hook(self)
            apdu = _parse(raw)
            cla = raw[0]
            ins = raw[1]
            if (cla == 0xFF) if cla & 0x80 else (cla & 0x6F):  # b8-b5 other than chaining, or FF
                self._check_class(cla)
            if ins == _GET_RESPONSE and not cla & 0x80:
                data, sw = self._get_response(apdu)
            else:
                self._pending_response = b""
                if self._chain is not None or (cla & 0x90) == 0x10:
                    assembled = self._assemble_chain(apdu)
                    if assembled is None:
                        return _SUCCESS_BYTES
                    apdu = assembled
                selected = self.selected
                if cla & 0xEF in self._command_classes or cla & 0x80 or selected is None:
                    result = self._dispatch(apdu)
                elif ins == _SELECT and raw[2] == 0x04:
                    result = self._select_by_aid(apdu)
                else:
                    result = selected.process(apdu)
                if result is None:
                    return _SUCCESS_BYTES
                if type(result) is bytes:
                    length = len(result)
                    ne = apdu.ne
                    # within any Le's limit (apdu.response_limit), computed only for longer answers
                    if (length <= 256 and (ne is None or length <= ne)) or length <= apdu.response_limit:
                        return result + _SUCCESS_BYTES
                if isinstance(result, ResponseAPDU):
                    data, sw = result
                else:
                    data, sw = self._limit(result, apdu.response_limit)
        except ISOError as error:
            data, sw = b"", error.sw
        except Exception:  # the card must keep answering whatever an applet does
            log.exception("unexpected error processing %s", command_text(raw))
            self._chain = None
            return _NO_PRECISE_DIAGNOSIS
        try:
            return bytes(data + sw.to_bytes(2, "big"))
        except Exception:  # an applet answered with a status word or data that cannot be sent
            log.exception("invalid response with SW %04X to %s", sw, command_text(raw))
            return _NO_PRECISE_DIAGNOSIS

    def _trace(self, raw: bytes, encoded: bytes, elapsed: float) -> None:
        """One trace entry; everything in it is built here, never on the untraced path."""
        if len(raw) < 2:
            label = "MALFORMED"
        elif self.selected is not None:
            label = self.selected.ins_label(raw[1])
        else:
            label = ins_name(raw[1])
        if self.trace_secrets:
            command, data = raw.hex(" ").upper(), encoded[:-2].hex(" ").upper()
        else:
            command = command_text(raw)
            # response_text hides what must be hidden; its last four characters are the SW
            data = response_text(raw, encoded)[:-4].rstrip()
        sw = (encoded[-2] << 8) | encoded[-1]
        answer = f"{data} {sw:04X}" if data else f"{sw:04X}"
        entry = f"> {label} {command}\n< {answer} {sw_name(sw)} ({elapsed * 1000:.2f} ms)"
        if self.trace_sink is not None:
            self.trace_sink(entry)
            return
        # makeRecord + handle is Logger.debug without its search of the stack for the caller
        # (several microseconds per APDU); the record names this function instead.
        trace_log.handle(
            trace_log.makeRecord(trace_log.name, logging.DEBUG, __file__, 0, entry, (), None, "transmit")
        )

    @staticmethod
    def _check_class(cla: int) -> None:
        if cla == 0xFF:
            raise ISOError(SW.CLA_NOT_SUPPORTED)
        if cla & 0x80:
            return  # proprietary class: the applet decides
        if cla & 0x40:  # further interindustry class (ISO 7816-4 5.4.1)
            if cla & 0x20:
                raise ISOError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
            # b4-b1 hold the channel number minus four: every such CLA names channel 4..19
            raise ISOError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
        if cla & 0x20:
            raise ISOError(SW.CLA_NOT_SUPPORTED)
        if cla & 0x0C:
            raise ISOError(SW.SECURE_MESSAGING_NOT_SUPPORTED)
        if cla & 0x03:
            raise ISOError(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)

    def _assemble_chain(self, apdu: CommandAPDU) -> CommandAPDU | None:
        """Collect CLA|0x10 command chains; None while the chain is still open."""
        if self._chain is None and not apdu.is_chained:
            return apdu  # the common case: a whole command
        key = (apdu.cla & ~0x10 & 0xFF, apdu.ins, apdu.p1, apdu.p2)
        if self._chain is not None and self._chain[0] != key:
            self._chain = None
            if apdu.is_chained:
                raise ISOError(SW.LAST_COMMAND_OF_CHAIN_EXPECTED, "chain interrupted")
        if apdu.is_chained:
            buffer = self._chain[1] if self._chain is not None else bytearray()
            if len(buffer) + len(apdu.data) > self.max_chain_bytes:
                self._chain = None
                raise ISOError(SW.NOT_ENOUGH_MEMORY, f"command chain over {self.max_chain_bytes} bytes")
            buffer += apdu.data
            self._chain = (key, buffer)
            return None
        if self._chain is None:
            return apdu
        data = bytes(self._chain[1]) + apdu.data
        self._chain = None
        if len(data) > self.max_chain_bytes:
            raise ISOError(SW.NOT_ENOUGH_MEMORY, f"command chain over {self.max_chain_bytes} bytes")
        return CommandAPDU(apdu.cla, apdu.ins, apdu.p1, apdu.p2, data, apdu.ne, apdu.extended)

    def _limit(self, data: bytes, limit: int) -> tuple[bytes, int]:
        if len(data) <= limit:
            return data, _SUCCESS
        self._pending_response = data[limit:]
        return data[:limit], bytes_remaining(len(self._pending_response))

    def _get_response(self, apdu: CommandAPDU) -> tuple[bytes, int]:
        if apdu.p1 or apdu.p2:
            raise ISOError(SW.INCORRECT_P1P2)
        if not self._pending_response:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "no response data pending")
        data = self._pending_response
        self._pending_response = b""
        return self._limit(data, apdu.response_limit)

    def _dispatch(self, apdu: CommandAPDU) -> HandlerResult:
        """Routing for what `_respond` leaves out: card-level commands, proprietary classes, no applet."""
        card_command = self._commands.get((apdu.cla & ~0x10 & 0xFF, apdu.ins))
        if card_command is not None:
            return card_command(apdu)
        if apdu.cla & 0x80 and (
            self.selected is None or apdu.cla & ~0x10 & 0xFF not in self.selected.proprietary_classes
        ):
            # an unknown proprietary class must not run as if it were 00 (ISO 7816-4 5.4.1)
            raise ISOError(SW.CLA_NOT_SUPPORTED, f"class {apdu.cla:02X}")
        if apdu.ins == _SELECT and apdu.p1 == 0x04 and apdu.cla & 0x80 == 0:
            return self._select_by_aid(apdu)
        if self.selected is None:
            if apdu.ins == _SELECT:
                return self._select_master_file(apdu)
            raise ISOError(SW.INS_NOT_SUPPORTED, "no applet selected")
        return self.selected.process(apdu)

    def find_applet(self, aid_prefix: bytes) -> Applet | None:
        """The applet whose AID starts with `aid_prefix` (right-truncated AID, >= the RID)."""
        if len(aid_prefix) < MIN_PARTIAL_AID:
            return None
        for applet in self.applets:
            if applet.aid.startswith(aid_prefix):
                return applet
        return None

    def _select_by_aid(self, apdu: CommandAPDU) -> HandlerResult:
        if apdu.p2 & 0x03:
            raise ISOError(SW.FUNCTION_NOT_SUPPORTED, "only first-occurrence selection")
        applet = self.find_applet(apdu.data)
        if applet is None:
            raise ISOError(SW.FILE_NOT_FOUND, f"no applet {apdu.data.hex().upper()}")
        if applet is not self.selected:
            if self.selected is not None:
                self.selected.deselect()
            self.selected = None
        result = applet.select(apdu)
        self.selected = applet
        return result

    @staticmethod
    def _select_master_file(apdu: CommandAPDU) -> HandlerResult:
        """A card without a selected applet still knows its MF (3F00)."""
        if apdu.p1 == 0x00 and apdu.data in (b"", b"\x3f\x00"):
            return b""
        raise ISOError(SW.FILE_NOT_FOUND)
