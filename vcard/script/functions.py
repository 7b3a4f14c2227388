"""Expressions inside `${...}` in APDU scripts: variables and a few built-in functions.

Scripts are mostly literal hex, but some exchanges cannot be written down in
advance: a management-key challenge must be encrypted with the key, a PIN must
be padded to 8 bytes, a length depends on a user-supplied value. `${NAME}` and
`${function(args)}` cover those cases without turning the format into a
programming language: there are no operators, loops or conditions, only the
functions in `FUNCTIONS`, each a thin wrapper over `vcard.crypto` or a byte
operation.

Grammar (inside `${` and `}`)::

    expr  := NAME | FUNC '(' [arg (',' arg)*] ')'
    arg   := expr | 0xHEX | DECIMAL | "text"

Names are variables; hex literals need the `0x` prefix so that a variable named
`CAFE` and the bytes CA FE can never be confused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .. import crypto


class ExpressionError(ValueError):
    """A malformed or failing `${...}` expression; the caller adds file and line."""


# ---- AST -----------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """A reference to a script variable."""

    name: str


@dataclass(frozen=True)
class Literal:
    """Bytes written in the script: `0xCAFE` or `"text"`."""

    value: bytes


@dataclass(frozen=True)
class Number:
    """A decimal integer argument such as a length or an offset."""

    value: int


@dataclass(frozen=True)
class Call:
    """A call of a built-in function."""

    name: str
    args: tuple[Expr, ...]


Expr = Var | Literal | Number | Call


# ---- built-in functions --------------------------------------------------------

BYTES = "bytes"
INT = "int"


@dataclass(frozen=True)
class Function:
    """A built-in: its parameter kinds (`bytes`/`int`), whether the last repeats, and the code."""

    params: tuple[str, ...]
    implementation: Callable[..., bytes]
    doc: str
    variadic: bool = False


def _ecb(algorithm: str, encrypt: bool) -> Callable[[bytes, bytes], bytes]:
    def run(key: bytes, data: bytes) -> bytes:
        size = crypto.block_size(algorithm)
        if not data or len(data) % size:
            raise ExpressionError(
                f"{algorithm} data must be a non-empty multiple of {size} bytes, got {len(data)}"
            )
        operation = crypto.block_encrypt if encrypt else crypto.block_decrypt
        return b"".join(operation(algorithm, key, data[i : i + size]) for i in range(0, len(data), size))

    return run


def _aes_algorithm(key: bytes) -> str:
    names = {16: "aes128", 24: "aes192", 32: "aes256"}
    if len(key) not in names:
        raise ExpressionError(f"an AES key is 16, 24 or 32 bytes, got {len(key)}")
    return names[len(key)]


def _aes_ecb(encrypt: bool) -> Callable[[bytes, bytes], bytes]:
    def run(key: bytes, data: bytes) -> bytes:
        return _ecb(_aes_algorithm(key), encrypt)(key, data)

    return run


def _cbc(algorithm: str | None, encrypt: bool) -> Callable[[bytes, bytes, bytes], bytes]:
    def run(key: bytes, iv: bytes, data: bytes) -> bytes:
        name = algorithm or _aes_algorithm(key)
        operation = crypto.cbc_encrypt if encrypt else crypto.cbc_decrypt
        return operation(name, key, iv, data)

    return run


def _pad(data: bytes, length: int, fill: bytes) -> bytes:
    if len(fill) != 1:
        raise ExpressionError(f"pad: the fill is one byte, got {len(fill)}")
    if len(data) > length:
        raise ExpressionError(f"pad: {len(data)} bytes do not fit in {length}")
    return data + fill * (length - len(data))


def _length(data: bytes) -> bytes:
    """Lc-style length: one byte below 256, else two."""
    n = len(data)
    return bytes([n]) if n < 256 else n.to_bytes(2, "big")


def _ber_length(data: bytes) -> bytes:
    n = len(data)
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


def _slice(data: bytes, start: int, length: int) -> bytes:
    if start + length > len(data):
        raise ExpressionError(f"slice: bytes {start}..{start + length} are outside {len(data)} bytes")
    return data[start : start + length]


def _random(length: int) -> bytes:
    return crypto.random_bytes(length)


def _byte(value: int) -> bytes:
    if not 0 <= value <= 255:
        raise ExpressionError(f"byte: {value} is not in 0..255")
    return bytes([value])


def ecb(cipher: str, key: bytes, data: bytes, encrypt: bool) -> bytes:
    """ECB with a cipher named "3des" or "aes" (the key length picks AES-128/192/256).

    What `encrypt(...)`/`decrypt(...)` compute; the recorder uses it to recognise which
    known key answered a challenge. Raises ExpressionError (a ValueError).
    """
    name = cipher.lower()
    if name == "3des":
        algorithm = "3des"
    elif name == "aes":
        algorithm = _aes_algorithm(key)
    else:
        raise ExpressionError(f'cipher {cipher!r}: use "3des" or "aes"')
    return _ecb(algorithm, encrypt)(key, data)


def _encrypt(name: bytes, key: bytes, data: bytes) -> bytes:
    return ecb(name.decode(errors="replace"), key, data, encrypt=True)


def _decrypt(name: bytes, key: bytes, data: bytes) -> bytes:
    return ecb(name.decode(errors="replace"), key, data, encrypt=False)


def _rsa_public(modulus: bytes, exponent: bytes, data: bytes) -> bytes:
    """Raw RSA with a public key: checks a card's raw signature or builds a cryptogram for it."""
    n = int.from_bytes(modulus, "big")
    if n < 3:
        raise ExpressionError("rsa_public: the modulus is too small")
    x = int.from_bytes(data, "big")
    if x >= n:
        raise ExpressionError("rsa_public: the data is not smaller than the modulus")
    return pow(x, int.from_bytes(exponent, "big"), n).to_bytes(len(modulus.lstrip(b"\x00")), "big")


def _ecdsa_verify(point: bytes, digest: bytes, signature: bytes) -> bytes:
    """01 when a DER ECDSA signature over a digest verifies with an uncompressed point, else 00."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    curves: dict[int, ec.EllipticCurve] = {65: ec.SECP256R1(), 97: ec.SECP384R1(), 133: ec.SECP521R1()}
    curve = curves.get(len(point))
    if curve is None:
        raise ExpressionError(f"ecdsa_verify: a {len(point)}-byte point is not P-256, P-384 or P-521")
    digests: dict[int, hashes.HashAlgorithm] = {
        20: hashes.SHA1(),
        32: hashes.SHA256(),
        48: hashes.SHA384(),
        64: hashes.SHA512(),
    }
    algorithm = digests.get(len(digest))
    if algorithm is None:
        raise ExpressionError(f"ecdsa_verify: a {len(digest)}-byte digest is not SHA-1/256/384/512")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
        key.verify(signature, digest, ec.ECDSA(utils.Prehashed(algorithm)))
    except (InvalidSignature, ValueError):
        return b"\x00"
    return b"\x01"


def _add(value: bytes, amount: int) -> bytes:
    result = int.from_bytes(value, "big") + amount
    if not 0 <= result < 1 << (8 * len(value)):
        raise ExpressionError(f"add: {result} does not fit in {len(value)} byte(s)")
    return result.to_bytes(len(value), "big")


def _sub(value: bytes, amount: int) -> bytes:
    return _add(value, -amount)


def _cat(*parts: bytes) -> bytes:
    return b"".join(parts)


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ExpressionError(f"xor: operands of {len(a)} and {len(b)} bytes")
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


FUNCTIONS: dict[str, Function] = {
    "3des_encrypt": Function((BYTES, BYTES), _ecb("3des", True), "3DES-ECB (24-byte key) over whole blocks"),
    "3des_decrypt": Function((BYTES, BYTES), _ecb("3des", False), "3DES-ECB decryption"),
    "aes_encrypt": Function((BYTES, BYTES), _aes_ecb(True), "AES-ECB, key size picks AES-128/192/256"),
    "aes_decrypt": Function((BYTES, BYTES), _aes_ecb(False), "AES-ECB decryption"),
    "3des_cbc_encrypt": Function(
        (BYTES, BYTES, BYTES), _cbc("3des", True), "3DES-CBC (key, iv, data), no padding"
    ),
    "3des_cbc_decrypt": Function((BYTES, BYTES, BYTES), _cbc("3des", False), "3DES-CBC decryption"),
    "aes_cbc_encrypt": Function(
        (BYTES, BYTES, BYTES), _cbc(None, True), "AES-CBC (key, iv, data), no padding"
    ),
    "aes_cbc_decrypt": Function((BYTES, BYTES, BYTES), _cbc(None, False), "AES-CBC decryption"),
    "encrypt": Function((BYTES, BYTES, BYTES), _encrypt, 'ECB with a cipher named "3des" or "aes"'),
    "decrypt": Function((BYTES, BYTES, BYTES), _decrypt, 'ECB decryption, cipher "3des" or "aes"'),
    "rsa_public": Function((BYTES, BYTES, BYTES), _rsa_public, "raw RSA x^e mod n (modulus, exponent, data)"),
    "ecdsa_verify": Function((BYTES, BYTES, BYTES), _ecdsa_verify, "01 if (point, digest, DER sig) verifies"),
    "add": Function((BYTES, INT), _add, "add a number to a big-endian value of the same width"),
    "sub": Function((BYTES, INT), _sub, "subtract a number (e.g. the tries left in 63Cx)"),
    "pad": Function((BYTES, INT, BYTES), _pad, "right-pad data to a length with a fill byte"),
    "len": Function((BYTES,), _length, "length of data as one byte (two when 256 or more)"),
    "berlen": Function((BYTES,), _ber_length, "BER-TLV length field of data (short, 81 xx or 82 xx xx)"),
    "slice": Function((BYTES, INT, INT), _slice, "slice(data, start, length)"),
    "random": Function((INT,), _random, "fresh random bytes (host-side challenges)"),
    "byte": Function((INT,), _byte, "a decimal number 0..255 as one byte"),
    "cat": Function((BYTES,), _cat, "concatenate any number of byte strings", variadic=True),
    "xor": Function((BYTES, BYTES), _xor, "bytewise XOR of two equal-length strings"),
}


# ---- parsing -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<hex>0[xX][0-9A-Fa-f]*)
      | (?P<number>[0-9]+(?![A-Za-z_0-9]))
      | (?P<name>[A-Za-z0-9_]+)
      | (?P<text>"(?:[^"\\]|\\.)*")
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ExpressionError(f"unexpected {text[position:].strip()[:10]!r} in ${{{text}}}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_text_literal(quoted: str) -> bytes:
    """`"text"` to UTF-8 bytes; backslash escapes `\\"` and `\\\\` only."""
    body = quoted[1:-1]
    out = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            index += 1
            char = body[index]
        out.append(char)
        index += 1
    return "".join(out).encode()


def parse_expression(text: str) -> Expr:
    """Parse the inside of `${...}`; raises ExpressionError naming the problem."""
    tokens = _tokens(text)
    if not tokens:
        raise ExpressionError("empty ${}")
    expr, position = _parse(tokens, 0, text, top=True)
    if position != len(tokens):
        raise ExpressionError(f"unexpected {tokens[position][1]!r} after the expression in ${{{text}}}")
    return expr


def _parse(tokens: list[tuple[str, str]], position: int, text: str, top: bool = False) -> tuple[Expr, int]:
    if position >= len(tokens):
        raise ExpressionError(f"${{{text}}} ends too early")
    kind, value = tokens[position]
    if kind == "hex" and not top:
        digits = value[2:]
        if len(digits) % 2:
            raise ExpressionError(f"{value} is not a whole number of bytes")
        return Literal(bytes.fromhex(digits)), position + 1
    if kind == "text" and not top:
        return Literal(parse_text_literal(value)), position + 1
    if kind == "number" and not top:
        return Number(int(value)), position + 1
    if kind in ("name", "number"):
        followed_by_paren = position + 1 < len(tokens) and tokens[position + 1] == ("punct", "(")
        if followed_by_paren:
            return _parse_call(tokens, position, text)
        if kind == "name" and NAME_RE.match(value):
            return Var(value), position + 1
    if top:
        raise ExpressionError(f"${{{text}}}: expected a variable name or a function call, got {value!r}")
    raise ExpressionError(f"${{{text}}}: unexpected {value!r}")


def _parse_call(tokens: list[tuple[str, str]], position: int, text: str) -> tuple[Expr, int]:
    name = tokens[position][1]
    function = FUNCTIONS.get(name)
    if function is None:
        raise ExpressionError(f"unknown function {name}(); known: {', '.join(sorted(FUNCTIONS))}")
    position += 2
    args: list[Expr] = []
    if position < len(tokens) and tokens[position] == ("punct", ")"):
        position += 1
    else:
        while True:
            arg, position = _parse(tokens, position, text)
            args.append(arg)
            if position >= len(tokens):
                raise ExpressionError(f"${{{text}}}: missing ')'")
            if tokens[position] == ("punct", ")"):
                position += 1
                break
            if tokens[position] != ("punct", ","):
                raise ExpressionError(f"${{{text}}}: expected ',' or ')', got {tokens[position][1]!r}")
            position += 1
    _check_arity(name, function, len(args))
    for index, arg in enumerate(args):
        kind = function.params[min(index, len(function.params) - 1)]
        if kind == BYTES and isinstance(arg, Number):
            raise ExpressionError(
                f"{name}() argument {index + 1} is bytes: write 0x{arg.value:02X} or byte({arg.value}),"
                f" not {arg.value}"
            )
    return Call(name, tuple(args)), position


def _check_arity(name: str, function: Function, count: int) -> None:
    expected = len(function.params)
    if function.variadic:
        if count < 1:
            raise ExpressionError(f"{name}() needs at least one argument")
    elif count != expected:
        raise ExpressionError(f"{name}() takes {expected} argument{'s' * (expected != 1)}, got {count}")


def variables_of(expr: Expr) -> set[str]:
    """Every variable an expression reads (for parse-time checks and recorder templates)."""
    if isinstance(expr, Var):
        return {expr.name}
    if isinstance(expr, Call):
        names: set[str] = set()
        for arg in expr.args:
            names |= variables_of(arg)
        return names
    return set()


# ---- evaluation ----------------------------------------------------------------


def evaluate(expr: Expr, variables: Mapping[str, bytes]) -> bytes:
    """The bytes an expression stands for; unknown variables and bad arguments raise ExpressionError."""
    if isinstance(expr, Var):
        try:
            return variables[expr.name]
        except KeyError:
            raise ExpressionError(f"variable {expr.name} is not set") from None
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Number):
        raise ExpressionError(f"{expr.value} is a number; bytes are written 0x{expr.value:02X}")
    function = FUNCTIONS[expr.name]
    values: list[bytes | int] = []
    for index, arg in enumerate(expr.args):
        kind = function.params[min(index, len(function.params) - 1)]
        if kind == INT:
            values.append(_as_int(arg, variables))
        else:
            values.append(evaluate(arg, variables))
    try:
        return function.implementation(*values)
    except ExpressionError:
        raise
    except (ValueError, OverflowError) as error:  # e.g. a wrong key size, len() of 64 KiB or more
        raise ExpressionError(f"{expr.name}(): {error}") from None


def _as_int(arg: Expr, variables: Mapping[str, bytes]) -> int:
    if isinstance(arg, Number):
        return arg.value
    value = evaluate(arg, variables)
    if not value:
        raise ExpressionError("an empty value cannot be used as a number")
    return int.from_bytes(value, "big")


def describe_functions() -> Sequence[str]:
    """One line per built-in, for `vcard script --help-functions` and the docs."""
    lines = []
    for name, function in sorted(FUNCTIONS.items()):
        params = ", ".join(function.params) + (", ..." if function.variadic else "")
        lines.append(f"{name}({params}): {function.doc}")
    return lines
