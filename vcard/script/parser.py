"""APDU scripts: the text format (see docs/apdu-scripts.md) parsed into dataclasses.

A script is read completely before anything is sent to a card, so that every
syntax problem is reported up front as `file:line: problem` instead of halfway
through a run that has already blocked a PIN. What can only be known while
running (variable values, captured bytes) is kept as templates and patterns that
the runner renders and matches.

Line-oriented grammar (comments start with `#` at the start of a line or after
whitespace; a trailing `\\` joins the next line)::

    var NAME = VALUE            default of a variable (`--set NAME=...` overrides)
    include PATH                another script, relative to this file
    group NAME                  group (JUnit test suite) of the cases that follow
    setup NAME | none           define run before each following case of this file
    define NAME ... end         reusable steps
    case NAME [destructive] ... end

    > COMMAND                   send; hex, `${expr}`, `[data]` (Lc computed), "text"
    < [DATA] SW                 expected response: data pattern and status word
    reset                       warm reset of the card (a new card session)
    call NAME                   run a define
    set NAME = VALUE            assign a variable while running
    assert VALUE == PATTERN     compare computed bytes with a data pattern
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..apdu import SW
from .functions import Expr, ExpressionError, evaluate, parse_expression, parse_text_literal, variables_of


class ScriptError(Exception):
    """A script that cannot be parsed or run; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Location:
    """Where a statement was written, for every message about it."""

    path: str
    line: int  # 0: not a line of a file (a whole file, a --set option, a pytest helper argument)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


def _fail(location: Location, problem: str) -> ScriptError:
    return ScriptError(f"{location}: {problem}")


# ---- byte templates (commands and values) --------------------------------------


@dataclass(frozen=True)
class Hex:
    """Literal bytes."""

    value: bytes


@dataclass(frozen=True)
class Subst:
    """`${expr}`: bytes computed when the step runs."""

    expr: Expr
    source: str


@dataclass(frozen=True)
class LcGroup:
    """`[ ... ]`: command data preceded by its Lc, computed when the step runs."""

    parts: tuple[Hex | Subst, ...]


BytePart = Hex | Subst | LcGroup


@dataclass(frozen=True)
class ByteTemplate:
    """A sequence of bytes that may depend on variables."""

    parts: tuple[BytePart, ...]
    source: str

    def render(self, variables: Mapping[str, bytes]) -> bytes:
        out = bytearray()
        for part in self.parts:
            if isinstance(part, LcGroup):
                data = _render_parts(part.parts, variables)
                if len(data) == 0:
                    continue
                if len(data) <= 255:
                    out += bytes([len(data)]) + data
                else:
                    out += b"\x00" + len(data).to_bytes(2, "big") + data
            else:
                out += _render_parts((part,), variables)
        return bytes(out)

    @property
    def variables(self) -> set[str]:
        names: set[str] = set()
        for part in self.parts:
            for inner in part.parts if isinstance(part, LcGroup) else (part,):
                if isinstance(inner, Subst):
                    names |= variables_of(inner.expr)
        return names


def _render_parts(parts: tuple[Hex | Subst, ...], variables: Mapping[str, bytes]) -> bytes:
    out = bytearray()
    for part in parts:
        if isinstance(part, Hex):
            out += part.value
        else:
            try:
                out += evaluate(part.expr, variables)
            except ExpressionError as error:
                raise ExpressionError(f"${{{part.source}}}: {error}") from None
    return bytes(out)


# ---- response patterns ---------------------------------------------------------


@dataclass(frozen=True)
class Nibbles:
    """Literal hex digits; `?` stands for any one hex digit."""

    text: str


@dataclass(frozen=True)
class AnyBytes:
    """`*`: any number of bytes, including none."""


@dataclass(frozen=True)
class Capture:
    """`{NAME:n}` (n bytes) or `{NAME:*}` (any number): bytes saved in a variable."""

    name: str
    length: int | None


PatternPiece = Nibbles | AnyBytes | Capture | Subst


@dataclass(frozen=True)
class DataPattern:
    """Expected response data: exact, masked, a regular expression, or anything.

    Everything is matched as uppercase hex without spaces, so masks and regular
    expressions see the same text the failure messages show.
    """

    pieces: tuple[PatternPiece, ...] = ()
    regex: str | None = None
    source: str = ""

    @property
    def is_any(self) -> bool:
        return self.regex is None and self.pieces == (AnyBytes(),)

    def compile(self, variables: Mapping[str, bytes]) -> re.Pattern[str]:
        if self.regex is not None:
            return re.compile(self.regex, re.IGNORECASE)
        out = []
        for piece in self.pieces:
            if isinstance(piece, Nibbles):
                out.append("".join("[0-9A-F]" if c == "?" else c for c in piece.text))
            elif isinstance(piece, AnyBytes):
                out.append("(?:[0-9A-F]{2})*?")
            elif isinstance(piece, Capture):
                count = "*?" if piece.length is None else f"{{{piece.length}}}"
                out.append(f"(?P<{piece.name}>(?:[0-9A-F]{{2}}){count})")
            else:
                try:
                    value = evaluate(piece.expr, variables)
                except ExpressionError as error:
                    raise ExpressionError(f"${{{piece.source}}}: {error}") from None
                out.append(value.hex().upper())
        return re.compile("".join(out))

    def match(self, data: bytes, variables: Mapping[str, bytes]) -> dict[str, bytes] | None:
        """Captured variables if `data` matches, else None."""
        found = self.compile(variables).fullmatch(data.hex().upper())
        if found is None:
            return None
        captures: dict[str, bytes] = {}
        for name, value in found.groupdict().items():
            if value is None:
                continue
            if len(value) % 2:
                raise ExpressionError(f"regular expression group {name} captured an odd number of hex digits")
            captures[name] = bytes.fromhex(value)
        return captures

    def describe(self, variables: Mapping[str, bytes]) -> str:
        """The pattern with `${...}` replaced by the values it had, for failure messages."""
        if self.regex is not None:
            return f"/{self.regex}/"
        out = []
        for piece in self.pieces:
            if isinstance(piece, Nibbles):
                text = piece.text
                out.append(" ".join(text[i : i + 2] for i in range(0, len(text), 2)))
            elif isinstance(piece, AnyBytes):
                out.append("*")
            elif isinstance(piece, Capture):
                out.append(f"{{{piece.name}:{'*' if piece.length is None else piece.length}}}")
            else:
                try:
                    out.append(evaluate(piece.expr, variables).hex(" ").upper())
                except ExpressionError:
                    out.append(f"${{{piece.source}}}")
        return " ".join(part for part in out if part) or "(no data)"


@dataclass(frozen=True)
class SwAlternative:
    """One accepted status word: `value` under `mask` (0 bits are wildcards), maybe capturing SW2.

    With `computed`, the low bytes come from an expression when the step runs: the
    whole SW (`${expr}`, two bytes) or SW2 after a literal SW1 (`63${sub(T, 1)}`).
    """

    value: int
    mask: int
    capture: str | None = None
    computed: Subst | None = None

    def matches(self, sw: int, variables: Mapping[str, bytes]) -> bool:
        if self.computed is None:
            return sw & self.mask == self.value
        try:
            tail = evaluate(self.computed.expr, variables)
        except ExpressionError as error:
            raise ExpressionError(f"${{{self.computed.source}}}: {error}") from None
        width = 2 if self.mask == 0 else 1
        if len(tail) != width:
            raise ExpressionError(f"${{{self.computed.source}}} gave {len(tail)} bytes for {width} of the SW")
        return sw == (self.value | int.from_bytes(tail, "big"))


@dataclass(frozen=True)
class SwPattern:
    alternatives: tuple[SwAlternative, ...]
    source: str

    def match(self, sw: int, variables: Mapping[str, bytes] | None = None) -> dict[str, bytes] | None:
        for alternative in self.alternatives:
            if alternative.matches(sw, variables or {}):
                return {alternative.capture: bytes([sw & 0xFF])} if alternative.capture else {}
        return None

    def describe(self, variables: Mapping[str, bytes]) -> str:
        """The pattern with computed parts replaced by their values, for failure messages."""
        out = []
        for alternative in self.alternatives:
            if alternative.computed is None:
                out.append(_sw_text(alternative))
                continue
            try:
                tail = evaluate(alternative.computed.expr, variables)
                out.append(
                    f"{alternative.value >> 8:02X}{tail.hex().upper()}"
                    if alternative.mask
                    else tail.hex().upper()
                )
            except ExpressionError:
                out.append(f"${{{alternative.computed.source}}}")
        return "|".join(out)


def _sw_text(alternative: SwAlternative) -> str:
    digits = ""
    for shift in (12, 8, 4, 0):
        digits += "?" if not (alternative.mask >> shift) & 0xF else f"{(alternative.value >> shift) & 0xF:X}"
    if alternative.capture:
        return f"{digits[:2]}{{{alternative.capture}}}"
    return digits


@dataclass(frozen=True)
class Expectation:
    data: DataPattern
    sw: SwPattern


# ---- steps, cases, scripts -----------------------------------------------------


@dataclass(frozen=True)
class Send:
    location: Location
    command: ByteTemplate
    expect: Expectation
    expect_location: Location


@dataclass(frozen=True)
class Reset:
    location: Location


@dataclass(frozen=True)
class CallDefine:
    location: Location
    name: str


@dataclass(frozen=True)
class SetVar:
    location: Location
    name: str
    value: ByteTemplate


@dataclass(frozen=True)
class Assert:
    """`assert VALUE == PATTERN` (or `!=`: the value must not match)."""

    location: Location
    value: ByteTemplate
    pattern: DataPattern
    negate: bool = False


Step = Send | Reset | CallDefine | SetVar | Assert


@dataclass
class Define:
    name: str
    location: Location
    steps: list[Step] = field(default_factory=list)


@dataclass
class Case:
    name: str
    location: Location
    group: str
    destructive: bool = False
    setup: str | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.group} / {self.name}" if self.group else self.name


@dataclass(frozen=True)
class Variable:
    """A `var` line: a default value; `text` means it was written as "quoted text"."""

    name: str
    default: ByteTemplate
    text: bool
    location: Location


@dataclass
class Script:
    cases: list[Case] = field(default_factory=list)
    defines: dict[str, Define] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


# ---- lexical helpers -----------------------------------------------------------

MAX_RESPONSE_DATA = 65536  # extended Le; also keeps capture counts within what `re` accepts
_HEX_DIGITS = set("0123456789abcdefABCDEF")
_CAPTURE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):(\*|[0-9]+)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SW_TOKEN = re.compile(r"([0-9A-Fa-f?]{4})\Z|([0-9A-Fa-f?]{2})\{([A-Za-z_][A-Za-z0-9_]*)\}\Z")


def strip_comment(line: str) -> str:
    """Drop a `#` comment (at line start or after whitespace, outside "quotes")."""
    quoted = False
    for index, char in enumerate(line):
        if char == '"' and (index == 0 or line[index - 1] != "\\"):
            quoted = not quoted
        elif char == "#" and not quoted and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def _find_closing_brace(text: str, start: int, location: Location) -> int:
    """Index of the `}` closing a `${` whose body starts at `start` (quotes may hold braces)."""
    quoted = False
    for index in range(start, len(text)):
        char = text[index]
        if char == '"' and text[index - 1] != "\\":
            quoted = not quoted
        elif char == "}" and not quoted:
            return index
    raise _fail(location, f"'${{' at column {start - 1} is never closed with '}}'")


def _subst(text: str, start: int, location: Location) -> tuple[Subst, int]:
    end = _find_closing_brace(text, start + 2, location)
    source = text[start + 2 : end]
    try:
        expr = parse_expression(source)
    except ExpressionError as error:
        raise _fail(location, str(error)) from None
    return Subst(expr, source.strip()), end + 1


def parse_bytes(text: str, location: Location, allow_lc: bool = True) -> ByteTemplate:
    """Hex with optional spaces, `"text"`, `${expr}` and (in commands) `[data]` groups."""
    parts: list[BytePart] = []
    group: list[Hex | Subst] | None = None
    digits: list[str] = []
    index = 0

    def flush() -> None:
        if not digits:
            return
        if len(digits) % 2:
            raise _fail(location, f"odd number of hex digits in {''.join(digits)!r}: write whole bytes")
        target = group if group is not None else parts
        target.append(Hex(bytes.fromhex("".join(digits))))
        digits.clear()

    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in _HEX_DIGITS:
            digits.append(char)
            index += 1
        elif text.startswith("${", index):
            flush()
            subst, index = _subst(text, index, location)
            (group if group is not None else parts).append(subst)
        elif char == '"':
            flush()
            end = index + 1
            while end < len(text) and (text[end] != '"' or text[end - 1] == "\\"):
                end += 1
            if end >= len(text):
                raise _fail(location, 'unterminated "text"')
            value = parse_text_literal(text[index : end + 1])
            (group if group is not None else parts).append(Hex(value))
            index = end + 1
        elif char == "[" and allow_lc:
            if group is not None:
                raise _fail(location, "'[' inside '[...]': data groups do not nest")
            flush()
            group = []
            index += 1
        elif char == "]" and allow_lc:
            if group is None:
                raise _fail(location, "']' without '['")
            flush()
            parts.append(LcGroup(tuple(group)))
            group = None
            index += 1
        else:
            raise _fail(location, f"unexpected {char!r} at column {index + 1} in {text.strip()!r}")
    if group is not None:
        raise _fail(location, "'[' is never closed with ']'")
    flush()
    return ByteTemplate(tuple(parts), text.strip())


def parse_data_pattern(text: str, location: Location) -> DataPattern:
    """Response data: hex with `?` digits, `*`, `{NAME:n}`, `${expr}`; or `/regex/`; or `any`."""
    text = text.strip()
    if text in ("*", "any"):
        return DataPattern((AnyBytes(),), source=text)
    if text.startswith("/"):
        if len(text) < 2 or not text.endswith("/"):
            raise _fail(location, f"regular expression {text!r} must end with '/'")
        regex = text[1:-1]
        try:
            re.compile(regex)
        except re.error as error:
            raise _fail(location, f"bad regular expression /{regex}/: {error}") from None
        return DataPattern(regex=regex, source=text)
    pieces: list[PatternPiece] = []
    digits: list[str] = []
    names: set[str] = set()
    index = 0

    def flush() -> None:
        if digits:
            if len(digits) % 2:
                raise _fail(location, f"odd number of hex digits in {''.join(digits)!r}: write whole bytes")
            pieces.append(Nibbles("".join(digits).upper()))
            digits.clear()

    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in _HEX_DIGITS or char == "?":
            digits.append(char)
            index += 1
        elif char == "*":
            flush()
            pieces.append(AnyBytes())
            index += 1
        elif text.startswith("${", index):
            flush()
            subst, index = _subst(text, index, location)
            pieces.append(subst)
        elif char == "{":
            flush()
            match = _CAPTURE.match(text, index)
            if match is None:
                raise _fail(
                    location, f"bad capture {text[index:].split()[0]!r}: write {{NAME:8}} or {{NAME:*}}"
                )
            name, count = match.group(1), match.group(2)
            if count != "*" and int(count) > MAX_RESPONSE_DATA:
                raise _fail(
                    location, f"{{{name}:{count}}}: no response carries more than {MAX_RESPONSE_DATA} bytes"
                )
            if name in names:
                raise _fail(location, f"{name} is captured twice in one pattern")
            names.add(name)
            pieces.append(Capture(name, None if count == "*" else int(count)))
            index = match.end()
        else:
            raise _fail(location, f"unexpected {char!r} at column {index + 1} in expected data {text!r}")
    flush()
    return DataPattern(tuple(pieces), source=text)


def parse_sw(text: str, location: Location) -> SwPattern:
    """`9000`, `63C?`, `61{LEFT}`, a name from vcard.apdu.SW, or alternatives joined by `|`."""
    alternatives = []
    for token in _split_alternatives(text):
        token = token.strip()
        computed = re.fullmatch(r"([0-9A-Fa-f]{2})?(\$\{.*\})", token)
        if computed is not None:
            subst, end = _subst(token, len(computed.group(1) or ""), location)
            if end != len(token):
                raise _fail(location, f"unexpected {token[end:]!r} after ${{...}} in status word {token!r}")
            if computed.group(1):
                alternatives.append(SwAlternative(int(computed.group(1), 16) << 8, 0xFF00, computed=subst))
            else:
                alternatives.append(SwAlternative(0, 0, computed=subst))
            continue
        if token.upper() in SW.__members__:
            alternatives.append(SwAlternative(int(SW[token.upper()]), 0xFFFF))
            continue
        match = _SW_TOKEN.match(token)
        if match is None:
            raise _fail(
                location,
                f"status word {token!r} should be four hex digits such as 9000 or 63C? (no space inside),"
                " SW1 with a capture such as 61{LEFT}, or a name such as SECURITY_STATUS_NOT_SATISFIED",
            )
        digits = match.group(1) or match.group(2) + "??"
        value = mask = 0
        for char in digits:
            value <<= 4
            mask <<= 4
            if char != "?":
                value |= int(char, 16)
                mask |= 0xF
        alternatives.append(SwAlternative(value, mask, match.group(3)))
    return SwPattern(tuple(alternatives), text.strip())


def _split_alternatives(text: str) -> list[str]:
    """Split on `|` outside `${...}`."""
    parts = [""]
    depth = 0
    for char in text:
        if char == "{" and parts[-1].endswith("$"):
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        if char == "|" and not depth:
            parts.append("")
        else:
            parts[-1] += char
    return parts


def _split_last_word(text: str) -> tuple[str, str]:
    """Data and status word: the last word, where `${...}` may contain spaces."""
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        if char == "}":
            depth += 1
        elif char == "{" and depth:
            depth -= 1
        elif char.isspace() and not depth:
            return text[:index].strip(), text[index + 1 :].strip()
    return "", text.strip()


def parse_expectation(text: str, location: Location) -> Expectation:
    """`< [DATA] SW`: the last word is the status word, the rest the data pattern."""
    text = text.strip()
    if not text:
        raise _fail(location, "'<' needs at least a status word, e.g. '< 9000' or '< * 9000'")
    if text.startswith("/"):
        end = text.rfind("/")
        if end == 0:
            raise _fail(location, f"regular expression {text!r} must end with '/'")
        data_text, sw_text = text[: end + 1], text[end + 1 :]
        if not sw_text.strip():
            raise _fail(location, "a status word must follow the regular expression, e.g. '< /7C.*/ 9000'")
    else:
        data_text, sw_text = _split_last_word(text)
    return Expectation(parse_data_pattern(data_text, location), parse_sw(sw_text, location))


# ---- the statement parser ------------------------------------------------------


@dataclass
class _FileState:
    """What applies to the rest of one file: its current group and setup."""

    group: str
    setup: str | None = None


class Parser:
    """Reads scripts and their includes into one `Script`."""

    def __init__(self) -> None:
        self.script = Script()
        self._stack: list[Path] = []
        self._included: set[Path] = set()
        self._calls: list[tuple[Location, str, str | None]] = []  # (where, define, inside which define)
        self._setups: list[tuple[Location, str]] = []

    def parse_file(self, path: Path, group: str | None = None, location: Location | None = None) -> None:
        resolved = path.resolve()
        if resolved in self._stack:
            chain = " -> ".join(p.name for p in [*self._stack, resolved])
            raise _fail(location or Location(str(path), 0), f"include cycle: {chain}")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            where = f"{location}: " if location else ""
            raise ScriptError(f"{where}cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError as error:
            raise ScriptError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        self._stack.append(resolved)
        self._included.add(resolved)  # a file named on the command line is not read again by an include
        self.script.files.append(path)
        try:
            self.parse_text(text, str(path), path.parent, group)
        finally:
            self._stack.pop()

    def parse_text(self, text: str, name: str, directory: Path, group: str | None = None) -> None:
        state = _FileState(group if group is not None else "")
        block: Case | Define | None = None
        implicit: Case | None = None
        pending: tuple[Location, ByteTemplate] | None = None

        for location, line in _logical_lines(text, name):
            keyword, _, rest = line.replace("\t", " ").partition(" ")
            rest = rest.strip()
            if keyword != "<" and not line.startswith("<") and pending is not None:
                raise _fail(pending[0], "command has no expected response: add a '<' line (e.g. '< * ????')")
            if line.startswith(">"):
                target = block if block is not None else implicit
                if target is None:
                    implicit = target = Case(f"{Path(name).name}:{location.line}", location, state.group)
                    implicit.setup = state.setup
                    self.script.cases.append(implicit)
                pending = (location, parse_bytes(line[1:], location))
                continue
            if line.startswith("<"):
                if pending is None:
                    raise _fail(location, "'<' without a '>' command before it")
                target = block if block is not None else implicit
                assert target is not None
                target.steps.append(
                    Send(pending[0], pending[1], parse_expectation(line[1:], location), location)
                )
                pending = None
                continue
            if keyword in ("reset", "call", "set", "assert"):
                step = self._step(keyword, rest, location)
                target = block if block is not None else implicit
                if target is None:
                    implicit = target = Case(f"{Path(name).name}:{location.line}", location, state.group)
                    implicit.setup = state.setup
                    self.script.cases.append(implicit)
                if isinstance(step, CallDefine):
                    self._calls.append(
                        (location, step.name, target.name if isinstance(target, Define) else None)
                    )
                target.steps.append(step)
                continue
            if keyword == "end":
                if block is None:
                    raise _fail(location, "'end' without 'case' or 'define'")
                if rest:
                    raise _fail(location, f"unexpected {rest!r} after 'end'")
                block = None
                continue
            if block is not None:
                kind = "case" if isinstance(block, Case) else "define"
                raise _fail(
                    location,
                    f"{keyword!r} is not allowed inside {kind} {block.name!r} (started at line"
                    f" {block.location.line}); did you forget 'end'?",
                )
            implicit = None
            if keyword == "case":
                block = self._case_header(rest, location, state)
                self.script.cases.append(block)
            elif keyword == "define":
                if not _NAME.match(rest):
                    raise _fail(
                        location, f"define needs a name made of letters, digits and '_', got {rest!r}"
                    )
                if rest in self.script.defines:
                    raise _fail(
                        location, f"define {rest} already exists ({self.script.defines[rest].location})"
                    )
                block = Define(rest, location)
                self.script.defines[rest] = block
            elif keyword == "var":
                self._var(rest, location)
            elif keyword == "include":
                target_path = directory / _unquote(rest, location, "include needs a path")
                # include once: suites share a common file (defines, vars) and may run together
                if target_path.resolve() not in self._included or target_path.resolve() in self._stack:
                    self.parse_file(target_path, state.group, location)
            elif keyword == "group":
                state.group = _unquote(rest, location, "group needs a name")
            elif keyword == "setup":
                if rest == "none":
                    state.setup = None
                elif _NAME.match(rest):
                    state.setup = rest
                    self._setups.append((location, rest))
                else:
                    raise _fail(location, f"setup needs the name of a define (or 'none'), got {rest!r}")
            else:
                raise _fail(
                    location,
                    f"unknown statement {keyword!r}; expected '>', '<', case, define, end, var, set, include,"
                    " group, setup, call, reset or assert",
                )
        if pending is not None:
            raise _fail(pending[0], "command has no expected response: add a '<' line (e.g. '< * ????')")
        if block is not None:
            kind = "case" if isinstance(block, Case) else "define"
            raise _fail(block.location, f"{kind} {block.name!r} is never closed with 'end'")

    def _step(self, keyword: str, rest: str, location: Location) -> Step:
        if keyword == "reset":
            if rest:
                raise _fail(location, f"unexpected {rest!r} after 'reset'")
            return Reset(location)
        if keyword == "call":
            if not _NAME.match(rest):
                raise _fail(location, f"call needs the name of a define, got {rest!r}")
            return CallDefine(location, rest)
        if keyword == "set":
            name, value = _assignment(rest, location, "set")
            return SetVar(location, name, parse_bytes(value, location, allow_lc=False))
        operator = re.search(r"\s(==|!=)\s", f" {rest} ")
        if operator is None:
            raise _fail(location, "assert needs 'VALUE == PATTERN' or 'VALUE != PATTERN'")
        value_text, pattern_text = rest[: operator.start() - 1 + 1], rest[operator.end() - 1 :]
        return Assert(
            location,
            parse_bytes(value_text, location, allow_lc=False),
            parse_data_pattern(pattern_text, location),
            negate=operator.group(1) == "!=",
        )

    def _var(self, rest: str, location: Location) -> None:
        name, value = _assignment(rest, location, "var")
        template = parse_bytes(value, location, allow_lc=False)
        is_text = value.strip().startswith('"') and value.strip().endswith('"')
        existing = self.script.variables.get(name)
        if existing is not None and existing.default.source != template.source:
            raise _fail(location, f"var {name} already has another default at {existing.location}")
        self.script.variables[name] = Variable(name, template, is_text, location)

    def _case_header(self, rest: str, location: Location, state: _FileState) -> Case:
        try:
            words = shlex.split(rest, comments=False)
        except ValueError as error:
            raise _fail(location, f"case header: {error}") from None
        if not words:
            raise _fail(location, 'case needs a name, e.g. case "VERIFY with the right PIN"')
        case = Case(words[0], location, state.group, setup=state.setup)
        for option in words[1:]:
            if option == "destructive":
                case.destructive = True
            else:
                raise _fail(
                    location,
                    f"unknown case option {option!r} (known: destructive); quote names with spaces:"
                    f' case "{" ".join(words)}"',
                )
        return case

    def finish(self) -> Script:
        """Check cross references (defines used by call and setup, call cycles)."""
        defines = self.script.defines
        for location, name, _inside in self._calls:
            if name not in defines:
                raise _fail(
                    location, f"call {name}: no such define (known: {', '.join(sorted(defines)) or 'none'})"
                )
        for location, name in self._setups:
            if name not in defines:
                raise _fail(
                    location, f"setup {name}: no such define (known: {', '.join(sorted(defines)) or 'none'})"
                )
        for define in defines.values():
            _check_cycle(define, defines, [])
        return self.script


def _check_cycle(define: Define, defines: Mapping[str, Define], chain: list[str]) -> None:
    if define.name in chain:
        raise _fail(
            define.location, f"define {define.name} calls itself: {' -> '.join([*chain, define.name])}"
        )
    for step in define.steps:
        if isinstance(step, CallDefine):
            _check_cycle(defines[step.name], defines, [*chain, define.name])


def _assignment(rest: str, location: Location, keyword: str) -> tuple[str, str]:
    name, separator, value = rest.partition("=")
    name = name.strip()
    if not separator or not _NAME.match(name):
        raise _fail(location, f"{keyword} needs 'NAME = VALUE', got {rest!r}")
    if not value.strip():
        raise _fail(location, f'{keyword} {name}: the value is empty (write "" for empty text)')
    return name, value


def _unquote(text: str, location: Location, problem: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text:
        raise _fail(location, problem)
    return text


def _logical_lines(text: str, name: str) -> list[tuple[Location, str]]:
    """Non-empty lines without comments, with `\\` continuations joined."""
    lines: list[tuple[Location, str]] = []
    buffer = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw).strip()
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        line = (buffer + line).strip()
        buffer = ""
        if line:
            lines.append((Location(name, start), line))
    if buffer.strip():
        lines.append((Location(name, start), buffer.strip()))
    return lines


def parse_script(paths: list[Path] | Path) -> Script:
    """Parse one or more script files (in order) into one Script."""
    parser = Parser()
    for path in [paths] if isinstance(paths, Path) else paths:
        parser.parse_file(path)
    return parser.finish()


def parse_string(text: str, name: str = "<script>", directory: Path | None = None) -> Script:
    """Parse script text given directly (tests, the pytest plugin's helpers)."""
    parser = Parser()
    parser.parse_text(text, name, directory or Path.cwd())
    return parser.finish()


def parse_assignment(text: str) -> tuple[str, str]:
    """`NAME=VALUE` from the command line (`--set`)."""
    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator or not _NAME.match(name):
        raise ScriptError(f"--set {text!r}: expected NAME=VALUE")
    return name, value
