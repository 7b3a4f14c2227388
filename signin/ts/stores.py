"""Certificate stores that certificate propagation writes to: an NSS database or a PEM directory.

Each stored entry carries where it came from (card ID, container, reader, file) and its
index. The index follows the rule Windows uses for its smart-card certificate cache
(Microsoft, "How Smart Card Sign-in Works in Windows"): subject name + issuer when the
certificate has a subject, else subject key identifier + issuer, and no entry at all
when it has neither. Another certificate with the same index replaces the entry.

Only certificates are ever written: a store has no operation that takes a key.

NSS (`sql:DIR`, what Firefox, Chromium and NSS-based tools read as `$HOME/.pki/nssdb`)
is driven through `certutil` (Debian package libnss3-tools): the tags live in the
nickname, e.g. `alice [certprop 1f0c... card=... container=... reader=... file=kxc00]`.
User certificates get no trust flags; root certificates (the card's msroots) are
trust anchors with `CT,C,C`. The PEM directory keeps `certs/<index>.pem` and
`anchors/<index>.pem`, each with the tags as header lines before the PEM block
(OpenSSL ignores text outside the block); directories are 0700, files 0600.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

CERTUTIL = "certutil"
CERTUTIL_TIMEOUT = 30.0
ROOT_TRUST = "CT,C,C"
USER_TRUST = ",,"


class StoreError(Exception):
    """A store cannot be used or holds something this code cannot read; says which and why."""


@dataclass(frozen=True)
class Tags:
    """Where a propagated certificate came from. Build with `Tags.of` so that every store can
    keep the values exactly (no ':' ',' ']' or line breaks, single spaces)."""

    card_id: str
    container: str
    reader: str
    file: str

    @classmethod
    def of(cls, card_id: str, container: str, reader: str, file: str) -> Tags:
        return cls(*(_tag_text(value) for value in (card_id, container, reader, file)))


def _tag_text(text: str) -> str:
    # ':' separates a token name from a nickname in NSS; ']' and ',' would break the listing's parsing
    return " ".join(re.sub(r"[:\],]", "_", text).split()) or "_"


@dataclass(frozen=True)
class Entry:
    """A certificate as a store holds it: DER, tags, whether it is a trust anchor, its index."""

    index: str
    der: bytes
    tags: Tags
    root: bool


def index_of(certificate: x509.Certificate) -> str | None:
    """The cache index: subject + issuer, else subject key identifier + issuer, else None."""
    issuer = certificate.issuer.public_bytes()
    if len(certificate.subject) > 0:
        material = b"subject\0" + certificate.subject.public_bytes() + b"\0" + issuer
    else:
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return None
        material = b"ski\0" + ski.value.digest + b"\0" + issuer
    return hashlib.sha256(material).hexdigest()[:32]


def entry_for(der: bytes, tags: Tags, root: bool) -> Entry | None:
    """The entry to store for a certificate read from a card; None when it has no index."""
    certificate = x509.load_der_x509_certificate(der)
    index = index_of(certificate)
    if index is None:
        return None
    return Entry(index, der, tags, root)


class CertStore(Protocol):
    """What certificate propagation needs of a store."""

    description: str

    def entries(self) -> list[Entry]: ...

    def add(self, entry: Entry) -> None: ...

    def delete(self, entry: Entry) -> None: ...


def open_store(spec: str) -> CertStore:
    """`sql:DIR` (an existing NSS database) or `pem:DIR` / `DIR` (a PEM directory, created if absent)."""
    if spec.startswith("sql:"):
        return NssStore(Path(spec[4:]).expanduser())
    if spec.startswith(("dbm:", "extern:", "rdb:")):
        raise StoreError(
            f"--store {spec}: only NSS sql: databases are supported (legacy {spec.split(':')[0]}: is not)"
        )
    path = spec[4:] if spec.startswith("pem:") else spec
    if not path:
        raise StoreError("--store: empty directory name")
    return PemDirectory(Path(path).expanduser())


# ---- NSS ---------------------------------------------------------------------------------

_NICK_TAGS = re.compile(
    r"\[certprop (?P<index>[0-9a-f]{32}) card=(?P<card>[^ \]]*) container=(?P<container>.*?)"
    r" reader=(?P<reader>.*?) file=(?P<file>[^ \]]*)\]$"
)
_LISTING_LINE = re.compile(r"^(?P<nick>.*\S)\s+(?P<trust>[A-Za-z]*,[A-Za-z]*,[A-Za-z]*)$")


class NssStore:
    """An NSS sql: database, through certutil."""

    def __init__(self, directory: Path) -> None:
        if shutil.which(CERTUTIL) is None:
            raise StoreError("certutil not found: install it with `apt-get install -y libnss3-tools`")
        if not directory.is_dir():
            raise StoreError(f"NSS database sql:{directory}: no such directory")
        if not (directory / "cert9.db").is_file():
            raise StoreError(
                f"NSS database sql:{directory}: no cert9.db; create one with"
                f" `certutil -N -d sql:{directory} --empty-password`"
            )
        self.directory = directory
        self.description = f"NSS database sql:{directory}"

    def _certutil(self, *args: str, stdin: bytes | None = None) -> bytes:
        command = [CERTUTIL, "-d", f"sql:{self.directory}", *args]
        try:
            result = subprocess.run(
                command, input=stdin, capture_output=True, timeout=CERTUTIL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise StoreError(f"{self.description}: `certutil {' '.join(args)}` did not finish") from None
        if result.returncode != 0:
            message = (result.stderr or result.stdout).decode(errors="replace").strip()
            raise StoreError(f"{self.description}: `certutil {' '.join(args)}` failed: {message}")
        return result.stdout

    def nicknames(self) -> dict[str, str]:
        """Every certificate nickname in the database with its trust flags."""
        listing = self._certutil("-L").decode(errors="replace")
        found: dict[str, str] = {}
        for line in listing.splitlines():
            match = _LISTING_LINE.match(line.rstrip())
            if match and match["nick"] != "Certificate Nickname":
                found[match["nick"]] = match["trust"]
        return found

    def entries(self) -> list[Entry]:
        entries = []
        for nick, trust in self.nicknames().items():
            match = _NICK_TAGS.search(nick)
            if match is None:
                continue  # not ours
            der = self._certutil("-L", "-n", nick, "-r")
            tags = Tags(match["card"], match["container"], match["reader"], match["file"])
            entries.append(Entry(match["index"], der, tags, root="C" in trust.split(",")[0]))
        return entries

    @staticmethod
    def nickname(entry: Entry) -> str:
        certificate = x509.load_der_x509_certificate(entry.der)
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        label = _tag_text(str(names[0].value)) if names else "certificate"
        tags = entry.tags
        return (
            f"{label} [certprop {entry.index} card={tags.card_id} container={tags.container}"
            f" reader={tags.reader} file={tags.file}]"
        )

    def add(self, entry: Entry) -> None:
        trust = ROOT_TRUST if entry.root else USER_TRUST
        self._certutil("-A", "-n", self.nickname(entry), "-t", trust, stdin=entry.der)

    def delete(self, entry: Entry) -> None:
        self._certutil("-D", "-n", self.nickname(entry))


# ---- PEM directory ---------------------------------------------------------------------------

_HEADER = re.compile(r"^(?P<key>[A-Za-z-]+): (?P<value>.*)$")


class PemDirectory:
    """`certs/<index>.pem` and `anchors/<index>.pem` under one directory."""

    def __init__(self, directory: Path) -> None:
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"PEM store {directory}: exists and is not a directory")
        self.directory = directory
        self.description = f"PEM directory {directory}"
        for sub in (directory, directory / "certs", directory / "anchors"):
            try:
                sub.mkdir(mode=0o700, exist_ok=True)
            except OSError as error:
                raise StoreError(f"PEM store {sub}: cannot create it: {error.strerror}") from None

    def _path(self, index: str, root: bool) -> Path:
        return self.directory / ("anchors" if root else "certs") / f"{index}.pem"

    def entries(self) -> list[Entry]:
        entries = []
        for root in (False, True):
            for path in sorted((self.directory / ("anchors" if root else "certs")).glob("*.pem")):
                entries.append(self._read(path, root))
        return entries

    def _read(self, path: Path, root: bool) -> Entry:
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise StoreError(f"{path}: cannot read it: {error}") from None
        headers: dict[str, str] = {}
        for line in text.split("-----BEGIN", 1)[0].splitlines():
            match = _HEADER.match(line)
            if match:
                headers[match["key"]] = match["value"]
        missing = [key for key in ("Card-ID", "Container", "Reader", "File") if key not in headers]
        if missing:
            raise StoreError(f"{path}: not a certprop entry (no {', '.join(missing)} header); move it away")
        try:
            certificate = x509.load_pem_x509_certificate(text.encode("ascii"))
        except ValueError as error:
            raise StoreError(f"{path}: no readable PEM certificate ({error}); move it away") from None
        tags = Tags(headers["Card-ID"], headers["Container"], headers["Reader"], headers["File"])
        return Entry(path.stem, certificate.public_bytes(Encoding.DER), tags, root)

    def add(self, entry: Entry) -> None:
        certificate = x509.load_der_x509_certificate(entry.der)
        tags = entry.tags
        header = "".join(
            f"{key}: {' '.join(value.split())}\n"
            for key, value in (
                ("Subject", certificate.subject.rfc4514_string()),
                ("Card-ID", tags.card_id),
                ("Container", tags.container),
                ("Reader", tags.reader),
                ("File", tags.file),
            )
        )
        body = header + certificate.public_bytes(Encoding.PEM).decode("ascii")
        target = self._path(entry.index, entry.root)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".pem")
        try:
            with os.fdopen(handle, "w", encoding="ascii") as file:
                file.write(body)
            os.chmod(temporary, 0o600)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def delete(self, entry: Entry) -> None:
        self._path(entry.index, entry.root).unlink(missing_ok=True)
