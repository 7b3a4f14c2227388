"""What `vcard signin` takes from a krb5.conf (MIT profile format, krb5.conf(5)): a realm's KDC and anchors.

Only `[realms] REALM = { kdc = ... pkinit_anchors = FILE:... }` is read, so that the
sign-in lab's KRB5_CONFIG (written by signin/kdc.py) is enough to find the lab KDC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class Krb5ConfError(ValueError):
    """The file cannot be read or parsed (message names the file and line)."""


@dataclass
class RealmConfig:
    kdcs: list[str] = field(default_factory=list)
    anchors: list[Path] = field(default_factory=list)  # FILE: anchors only


def realm_config(path: Path, realm: str) -> RealmConfig:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise Krb5ConfError(f"{path}: {getattr(error, 'strerror', None) or error}") from None
    found = RealmConfig()
    section = ""
    stack: list[str] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and not stack:
            section = line.strip("[]").strip()
            continue
        if line == "}":
            if not stack:
                raise Krb5ConfError(f"{path}:{number}: '}}' without an open block")
            stack.pop()
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise Krb5ConfError(f"{path}:{number}: expected NAME = VALUE")
        name, value = name.strip(), value.strip()
        if value == "{":
            stack.append(name)
            continue
        if section == "realms" and stack == [realm]:
            if name == "kdc":
                found.kdcs.append(value)
            elif name == "pkinit_anchors" and value.startswith("FILE:"):
                found.anchors.append(Path(value[5:].split(",")[0]))
    if stack:
        raise Krb5ConfError(f"{path}: block {stack[-1]!r} is not closed")
    return found
