"""A private MIT Kerberos KDC with PKINIT, as a child process, for tests and the sign-in lab.

Everything lives in one directory: kdc.conf (KRB5_KDC_PROFILE), krb5.conf (KRB5_CONFIG,
so /etc/krb5.conf is never read or written), the database and its stash
(`kdb5_util create -s` with a random master password), the KDC's PKINIT certificate
issued by the lab CA (signin/ca.py), the log and the credential caches. The KDC runs
in the foreground (`krb5kdc -n`) on 127.0.0.1 and a free port, never as a system
service. Needs Debian's krb5-kdc, krb5-pkinit and krb5-user.

    with Kdc.start(workdir, ca, eku_checking="scLogin", allow_upn=True) as kdc:
        kdc.add_principal("alice")
        result = kdc.kinit_pkcs11("alice", pin="123456")
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization

from .ca import CA, issue_kdc

OPENSC_PKCS11 = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist")
START_TIMEOUT = 15.0


class KdcError(Exception):
    """The KDC could not be set up or started; the message quotes the tool's output."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if _which(tool) is None]


def _which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found is None and Path("/usr/sbin", tool).exists():
        return str(Path("/usr/sbin", tool))
    return found


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (the KDC listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise KdcError("no free port on 127.0.0.1")


@dataclass
class Kdc:
    directory: Path
    ca: CA
    realm: str = "VCARD.TEST"
    eku_checking: str = "kpClientAuth"
    allow_upn: bool = False
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # --- set-up ----------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        directory: Path,
        ca: CA,
        realm: str = "VCARD.TEST",
        eku_checking: str = "kpClientAuth",
        allow_upn: bool = False,
    ) -> Kdc:
        """Create the realm in `directory` (must be empty or absent) and start the KDC."""
        missing = missing_tools()
        if missing:
            packages = "krb5-kdc krb5-admin-server krb5-pkinit krb5-user"
            raise KdcError(f"missing {', '.join(missing)}: apt-get install {packages} (make system-deps)")
        directory = directory.resolve()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise KdcError(f"{directory}: not empty; a KDC directory is created fresh")
        kdc = cls(directory, ca, realm, eku_checking, allow_upn, free_port())
        kdc._write_pki()
        kdc._write_configs()
        kdc._run(
            ["kdb5_util", "create", "-s", "-r", realm, "-P", secrets.token_urlsafe(24)],
            what="kdb5_util create",
        )
        try:
            kdc._launch()
        except BaseException:
            kdc.stop()
            raise
        return kdc

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KRB5_CONFIG": str(self.directory / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(self.directory / "kdc.conf"),
            "KRB5CCNAME": f"FILE:{self.directory / 'ccache'}",
        }

    def _write_pki(self) -> None:
        certificate, key = issue_kdc(self.ca, self.realm)
        (self.directory / "ca.crt").write_bytes(self.ca.pem())
        (self.directory / "kdc.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        descriptor = os.open(self.directory / "kdc.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )

    def _write_configs(self) -> None:
        d = self.directory
        (d / "kadm5.acl").write_text("")
        (d / "krb5.conf").write_text(
            "[libdefaults]\n"
            f"    default_realm = {self.realm}\n"
            "    dns_lookup_kdc = false\n"
            "    dns_lookup_realm = false\n"
            "    rdns = false\n"
            "    udp_preference_limit = 1\n"
            "[realms]\n"
            f"    {self.realm} = {{\n"
            f"        kdc = 127.0.0.1:{self.port}\n"
            f"        pkinit_anchors = FILE:{d / 'ca.crt'}\n"
            "        pkinit_eku_checking = kpKDC\n"
            "    }\n"
        )
        self.write_kdc_conf()

    def write_kdc_conf(self) -> None:
        d = self.directory
        (d / "kdc.conf").write_text(
            "[kdcdefaults]\n"
            f"    kdc_listen = 127.0.0.1:{self.port}\n"
            f"    kdc_tcp_listen = 127.0.0.1:{self.port}\n"
            "[realms]\n"
            f"    {self.realm} = {{\n"
            f"        database_name = {d / 'principal'}\n"
            f"        key_stash_file = {d / 'stash'}\n"
            f"        acl_file = {d / 'kadm5.acl'}\n"
            "        max_life = 10h\n"
            f"        pkinit_identity = FILE:{d / 'kdc.crt'},{d / 'kdc.key'}\n"
            f"        pkinit_anchors = FILE:{d / 'ca.crt'}\n"
            f"        pkinit_eku_checking = {self.eku_checking}\n"
            f"        pkinit_allow_upn = {'true' if self.allow_upn else 'false'}\n"
            "    }\n"
            "[logging]\n"
            f"    kdc = FILE:{d / 'kdc.log'}\n"
        )

    def _run(
        self, command: list[str], what: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        tool = _which(command[0]) or command[0]
        result = subprocess.run(
            [tool, *command[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise KdcError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def _launch(self) -> None:
        tool = _which("krb5kdc") or "krb5kdc"
        self.process = subprocess.Popen(
            [tool, "-n", "-P", str(self.directory / "krb5kdc.pid")],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise KdcError(f"krb5kdc exited with {self.process.returncode}. Log:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise KdcError(f"krb5kdc not listening on 127.0.0.1:{self.port} after {START_TIMEOUT:.0f} s")

    # --- use -------------------------------------------------------------------------------------
    def reconfigure(self, eku_checking: str, allow_upn: bool) -> None:
        """Restart the KDC with other PKINIT options (same realm, database and port)."""
        self.stop()
        self.eku_checking, self.allow_upn = eku_checking, allow_upn
        self.write_kdc_conf()
        self._launch()

    def add_principal(self, name: str) -> str:
        """A user who must pre-authenticate and has no password key (PKINIT only)."""
        principal = f"{name}@{self.realm}"
        self._run(["kadmin.local", "-q", f"addprinc +requires_preauth -nokey {principal}"], what="addprinc")
        return principal

    def add_service(self, name: str) -> str:
        """A service principal with a random key, for `kvno` to prove a TGT is usable."""
        principal = f"{name}@{self.realm}"
        self._run(["kadmin.local", "-q", f"addprinc -randkey {principal}"], what="addprinc")
        return principal

    def kinit_pkcs11(
        self, user: str, pin: str, module: Path = OPENSC_PKCS11, timeout: float = 60.0, trace: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Unmodified kinit with the card through a PKCS#11 module; the PIN on stdin."""
        env = self.env
        if trace:
            env["KRB5_TRACE"] = "/dev/stderr"
        return subprocess.run(
            [
                _which("kinit") or "kinit",
                "-X",
                f"X509_user_identity=PKCS11:{module}",
                f"{user}@{self.realm}",
            ],
            input=pin + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    def klist(self) -> str:
        result = subprocess.run(
            [_which("klist") or "klist"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=False,
        )
        return result.stdout + result.stderr

    def destroy_tickets(self) -> None:
        (self.directory / "ccache").unlink(missing_ok=True)

    def log(self) -> str:
        path = self.directory / "kdc.log"
        return path.read_text(errors="replace") if path.exists() else "(no KDC log)"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Kdc:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
