"""`vcard logon-check`, `ca`, `enroll`, `kdc`, `discover`: sign-in rules, a test CA, enrollment, discovery.

    vcard ca init ./lab-ca
    vcard enroll --profile piv --user alice@VCARD.TEST --ca ./lab-ca --template windows --pin 123456
    vcard logon-check --profile piv
    vcard logon-check --reader "Virtual PCD 00 00" --rules mit --policy pkinit_eku_checking=scLogin --json
    vcard discover --profile gids --json
    vcard signin --reader "Virtual PCD 00 00" --user alice@VCARD.TEST --kdc 127.0.0.1:PORT --anchor ca.crt

Registered in vcard/cli.py with `main.add_command(...)`.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization

import minidriver as md
from signin import ca as ca_module
from signin import card as card_module
from signin import discovery as discovery_module
from signin import enroll as enroll_module
from signin import flow as flow_module
from signin import rules as rules_module
from signin.certinfo import CertificateFormatError
from signin.kdc import OPENSC_PKCS11, Kdc, KdcError
from signin.pkinit import krb5conf
from signin.pkinit import transport as pkinit_transport
from vcard.host import CallMeter, Connection, InProcessConnection, PcscConnection, PcscError

from .errors import StateError
from .profile import ProfileError, load_profile
from .runtime import VirtualCard


def _card_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--reader", "-r", metavar="NAME", help="PC/SC reader. Default: an in-process card."),
        click.option(
            "--state", type=click.Path(file_okay=False, path_type=Path), help="In-process: state dir."
        ),
        click.option(
            "--profile", "-p", metavar="NAME|PATH", help="In-process: the card's profile (default piv)."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _rule_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--rules and --policy: which system's certificate rules judge the card, with which policies."""
    options = [
        click.option(
            "--rules",
            "rule_set",
            type=click.Choice(list(rules_module.RULE_SETS)),
            default="windows",
            show_default=True,
        ),
        click.option(
            "--policy",
            "policies",
            multiple=True,
            metavar="NAME=VALUE",
            help="A rule policy (repeatable); see docs/signin.md.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@contextmanager
def _card(
    reader: str | None, state: Path | None, profile: str | None, writable: bool = False
) -> Iterator[md.CardData]:
    """The card of --reader through pcscd, or of --state / --profile in this process."""
    if reader:
        with card_module.open_card(reader=reader, writable=writable) as card_data:
            yield card_data
        return
    try:
        virtual = VirtualCard.open(load_profile(profile or "piv"), state, ephemeral=False)
    except (ProfileError, StateError) as error:
        raise click.ClickException(str(error)) from None
    try:
        with card_module.open_card(endpoint=virtual.card, writable=writable) as card_data:
            yield card_data
    finally:
        virtual.close()


def _timestamp(value: str | None) -> datetime.datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2030-01-01T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _verdict_json(verdict: rules_module.Verdict) -> dict[str, Any]:
    entry, facts = verdict.entry, verdict.facts
    return {
        "container": entry.container_index,
        "container_name": entry.container_name,
        "default_container": entry.default_container,
        "key_spec": rules_module.key_spec_name(entry.key_spec),
        "file": entry.file_name,
        "subject": facts.subject,
        "issuer": facts.issuer,
        "not_before": facts.not_before.isoformat(),
        "not_after": facts.not_after.isoformat(),
        "display_name": verdict.display_name,
        "offered": verdict.offered,
        "failed": verdict.failed,
        "error": verdict.error,
        "cache_index": verdict.cache_index,
        "replaced_by_container": verdict.replaced_by,
    }


def render_table(verdicts: list[rules_module.Verdict]) -> list[str]:
    """One line per certificate, then one indented line per failed rule."""
    lines = [f"{'#':>2}  {'container':<9}  {'key spec':<15}  {'verdict':<11}  display name"]
    for number, verdict in enumerate(verdicts, 1):
        entry = verdict.entry
        container = f"{entry.container_index}{' (def)' if entry.default_container else ''}"
        state = "offered" if verdict.offered else "not offered"
        lines.append(
            f"{number:>2}  {container:<9}  {rules_module.key_spec_name(entry.key_spec):<15}  {state:<11}  "
            f"{verdict.display_name}"
        )
        for rule, reason in verdict.failed.items():
            lines.append(f"{'':>4}failed {rule}: {reason}")
        if verdict.error:
            lines.append(f"{'':>4}error shown: {verdict.error}")
        if verdict.replaced_by is not None:
            lines.append(f"{'':>4}cache: entry replaced by container {verdict.replaced_by}'s certificate")
    return lines


@click.command("logon-check")
@_card_options
@_rule_options
@click.option(
    "--user", "principal", metavar="USER@REALM", help="MIT: the client principal (SAN must name it)."
)
@click.option("--at", "at", metavar="TIME", help="Judge validity at this ISO 8601 time instead of now.")
@click.option(
    "--legacy-csp",
    is_flag=True,
    help="Windows: model a CSP without PP_USER_CERTSTORE (default container only).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def logon_check(
    reader: str | None,
    state: Path | None,
    profile: str | None,
    rule_set: str,
    policies: tuple[str, ...],
    principal: str | None,
    at: str | None,
    legacy_csp: bool,
    as_json: bool,
) -> None:
    """Which of the card's certificates a sign-in system offers, and every rule each one fails."""
    try:
        parsed = rules_module.parse_policies(policies, rule_set)
        options = rules_module.options_from_policies(rule_set, parsed, not legacy_csp, principal)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    moment = _timestamp(at)

    def clock() -> datetime.datetime:
        return moment if moment is not None else rules_module.utc_now()

    try:
        with _card(reader, state, profile) as card_data:
            contents = card_module.read_certificates(card_data)
            applet = card_data.applet
    except card_module.CardReadError as error:
        raise click.ClickException(str(error)) from None
    except md.ScardError as error:
        raise click.ClickException(f"card: {error}") from None
    try:
        verdicts = rules_module.evaluate(contents.certificates, rule_set, options, clock)
    except CertificateFormatError as error:
        raise click.ClickException(f"certificate: {error}") from None
    if as_json:
        document = {
            "card": applet,
            "rules": rule_set,
            "policies": parsed,
            "at": clock().isoformat(),
            "certificates": [_verdict_json(verdict) for verdict in verdicts],
            "problems": contents.problems,
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"{applet} card, {rule_set} rules" + (f", policies {parsed}" if parsed else ""))
    if not verdicts:
        click.echo("no certificates on the card")
    else:
        for line in render_table(verdicts):
            click.echo(line)
    for problem in contents.problems:
        click.echo(f"problem: {problem}", err=True)


@click.group("ca")
def ca() -> None:
    """A local test CA (for a sign-in lab, not for production)."""


@ca.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="vcard test CA", show_default=True, help="The CA's common name.")
@click.option(
    "--key", "key_type", type=click.Choice(["rsa2048", "p256"]), default="rsa2048", show_default=True
)
@click.option("--days", type=click.IntRange(1), default=3650, show_default=True)
def ca_init(directory: Path, name: str, key_type: str, days: int) -> None:
    """Create DIRECTORY (0700) with ca.crt and ca.key (0600); an existing CA is never overwritten."""
    try:
        authority = ca_module.init_ca(directory, name, key_type, days)
    except (ca_module.CAError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"CA {authority.certificate.subject.rfc4514_string()} in {directory}")


@ca.command("kdc")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--realm", required=True, help="Kerberos realm, e.g. VCARD.TEST.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Where kdc.crt/kdc.key go (default DIR)."
)
def ca_kdc(directory: Path, realm: str, out: Path | None) -> None:
    """Issue a PKINIT KDC certificate (id-pkinit-KPKdc, krbtgt/REALM@REALM) and its key (0600)."""
    try:
        authority = ca_module.load_ca(directory)
        certificate, key = ca_module.issue_kdc(authority, realm)
        target = out or directory
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path = target / "kdc.key"
        if key_path.exists():
            raise ca_module.CAError(f"{key_path}: exists; not overwriting it")
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        (target / "kdc.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    except (ca_module.CAError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"KDC certificate for krbtgt/{realm}@{realm}: {target / 'kdc.crt'}, key {key_path}")


@click.command("enroll")
@_card_options
@click.option("--user", "principal", required=True, metavar="USER@REALM", help="UPN / Kerberos principal.")
@click.option(
    "--ca", "ca_dir", type=click.Path(file_okay=False, path_type=Path), help="CA directory (vcard ca init)."
)
@click.option(
    "--template", type=click.Choice(list(ca_module.TEMPLATES)), default="windows", show_default=True
)
@click.option("--container", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option(
    "--key",
    "key_type",
    type=click.Choice(list(enroll_module.KEY_TYPES)),
    default="rsa2048",
    show_default=True,
)
@click.option("--pin", help="User PIN (prompted when absent).")
@click.option("--management-key", metavar="HEX", help="PIV: 3DES management key (default: the PIV default).")
@click.option(
    "--csr", "csr_path", metavar="FILE", help="Write a PEM certificate request here ('-' = stdout) instead."
)
@click.option("--msroots", is_flag=True, help="Also put the CA certificate into mscp/msroots (GIDS).")
@click.option("--days", type=click.IntRange(1), default=365, show_default=True)
def enroll(
    reader: str | None,
    state: Path | None,
    profile: str | None,
    principal: str,
    ca_dir: Path | None,
    template: str,
    container: int,
    key_type: str,
    pin: str | None,
    management_key: str | None,
    csr_path: str | None,
    msroots: bool,
    days: int,
) -> None:
    """Generate a key in a container through the minidriver API and store a certificate for it."""
    try:
        authority = ca_module.load_ca(ca_dir) if ca_dir is not None else None
        key_bytes = bytes.fromhex(management_key) if management_key else enroll_module.DEFAULT_MANAGEMENT_KEY
    except ca_module.CAError as error:
        raise click.ClickException(str(error)) from None
    except ValueError:
        raise click.BadParameter("not hexadecimal", param_hint="--management-key") from None
    if pin is None:
        pin = click.prompt("User PIN", hide_input=True)
    try:
        with _card(reader, state, profile, writable=True) as card_data:
            result = enroll_module.enroll(
                card_data,
                card_data.applet or "",
                principal,
                template,
                pin.encode(),
                ca=authority,
                container=container,
                key_type=key_type,
                csr=csr_path is not None,
                msroots=msroots,
                management_key=key_bytes,
                days=days,
            )
    except (card_module.CardReadError, enroll_module.EnrollError, ca_module.CAError) as error:
        raise click.ClickException(str(error)) from None
    except md.ScardError as error:
        raise click.ClickException(f"card: {error}") from None
    if result.csr is not None and csr_path is not None:
        pem = result.csr.public_bytes(serialization.Encoding.PEM)
        if csr_path == "-":
            click.echo(pem.decode(), nl=False)
        else:
            Path(csr_path).write_bytes(pem)
            click.echo(f"container {result.container}: key generated, certificate request in {csr_path}")
        return
    assert result.certificate is not None
    click.echo(
        f"container {result.container}: key generated ({rules_module.key_spec_name(result.key_spec)}), "
        f"{template} certificate for {principal} written to {result.file_name}"
        + (", CA root added to mscp/msroots" if result.msroots else "")
    )


@click.command("kdc")
@click.option(
    "--ca", "ca_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="CA dir."
)
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="New, empty directory for the realm (database, configs, log).",
)
@click.option("--realm", default="VCARD.TEST", show_default=True)
@click.option("--user", "users", multiple=True, default=["alice"], show_default=True, help="Repeatable.")
@click.option(
    "--eku-checking",
    type=click.Choice(list(rules_module.EKU_CHECKING)),
    default="scLogin",
    show_default=True,
    help="pkinit_eku_checking.",
)
@click.option("--allow-upn/--no-allow-upn", default=True, show_default=True, help="pkinit_allow_upn.")
def kdc(
    ca_dir: Path, directory: Path, realm: str, users: tuple[str, ...], eku_checking: str, allow_upn: bool
) -> None:
    """Run a private MIT KDC with PKINIT on 127.0.0.1 (foreground, Ctrl-C stops it)."""
    directory = directory.resolve()
    try:
        authority = ca_module.load_ca(ca_dir)
        server = Kdc.start(directory, authority, realm, eku_checking, allow_upn)
    except (ca_module.CAError, KdcError, OSError) as error:
        raise click.ClickException(str(error)) from None
    try:
        for user in users:
            server.add_principal(user)
        click.echo(
            f"KDC for {realm} on 127.0.0.1:{server.port} (log {directory / 'kdc.log'}). In another shell:"
        )
        click.echo(f"  export KRB5_CONFIG={directory / 'krb5.conf'} KRB5CCNAME=FILE:{directory / 'ccache'}")
        click.echo(f"  kinit -X X509_user_identity=PKCS11:{OPENSC_PKCS11} {users[0]}@{realm}")
        click.echo(
            f"  vcard signin --reader 'Virtual PCD 00 00' --user {users[0]}@{realm}   # the Windows path"
        )
        assert server.process is not None
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the KDC on SIGTERM too
        server.process.wait()
    except KdcError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@click.command("discover")
@_card_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def discover(reader: str | None, state: Path | None, profile: str | None, as_json: bool) -> None:
    """Which minidriver Windows would bind to the card, step by step, as Microsoft documents it."""
    virtual = None
    try:
        if reader:
            connection: Connection = PcscConnection(reader)
        else:
            virtual = VirtualCard.open(load_profile(profile or "piv"), state, ephemeral=state is None)
            connection = InProcessConnection(virtual.card)
    except (ProfileError, StateError) as error:
        raise click.ClickException(str(error)) from None
    except PcscError as error:
        raise click.ClickException(f"card: {error}") from None
    try:
        with connection:
            result = discovery_module.discover(connection)
    except PcscError as error:
        raise click.ClickException(f"card: {error}") from None
    finally:
        if virtual is not None:
            virtual.close()
    result.meter = connection.meter.snapshot()
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    for line in discovery_module.render(result):
        click.echo(line)


def _default_ccache() -> Path:
    """KRB5CCNAME when it names a FILE: cache, else MIT's default /tmp/krb5cc_UID."""
    name = os.environ.get("KRB5CCNAME", "")
    if name.startswith("FILE:"):
        return Path(name[5:])
    if name and ":" not in name:
        return Path(name)
    return Path(f"/tmp/krb5cc_{os.getuid()}")


def _anchors(path: Path) -> list[Any]:
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as error:
        raise click.BadParameter(f"{path}: {error.strerror or error}", param_hint="--anchor") from None
    try:
        return (
            x509.load_pem_x509_certificates(data)
            if b"-----BEGIN" in data
            else [x509.load_der_x509_certificate(data)]
        )
    except ValueError as error:
        raise click.BadParameter(
            f"{path}: not a PEM or DER certificate ({error})", param_hint="--anchor"
        ) from None


def _realm_defaults(user: str, kdc_address: str | None, anchor: Path | None) -> tuple[str, Path]:
    """--kdc and --anchor, else the realm's `kdc` and `pkinit_anchors` in $KRB5_CONFIG."""
    if kdc_address is not None and anchor is not None:
        return kdc_address, anchor
    config = os.environ.get("KRB5_CONFIG", "")
    realm = user.rpartition("@")[2]
    found = krb5conf.RealmConfig()
    if config and realm:
        try:
            found = krb5conf.realm_config(Path(config.split(":")[0]), realm)
        except krb5conf.Krb5ConfError as error:
            raise click.ClickException(f"KRB5_CONFIG: {error}") from None
    if kdc_address is None:
        if not found.kdcs:
            raise click.UsageError(
                f"--kdc HOST:PORT is needed (no kdc for {realm or 'the realm'} in $KRB5_CONFIG)"
            )
        kdc_address = found.kdcs[0]
    if anchor is None:
        if not found.anchors:
            raise click.UsageError(
                f"--anchor CA.pem is needed (no pkinit_anchors FILE: for {realm or 'the realm'} "
                "in $KRB5_CONFIG)"
            )
        anchor = found.anchors[0]
    return kdc_address, anchor


def render_steps(result: flow_module.Result) -> list[str]:
    lines = []
    for step in result.steps:
        calls = ", ".join(
            f"{name.removeprefix('SCard')} {count}" for name, count in sorted(step.calls.items())
        )
        mark = "" if step.ok else "  FAILED"
        lines.append(
            f"{step.name:<11} {step.apdus:>3} APDUs {step.scard_calls:>3} SCard calls "
            f"{step.seconds * 1000:>8.1f} ms{mark}  {step.detail}"
        )
        if calls:
            lines.append(f"{'':<11} calls: {calls}")
    totals = result.card_totals()
    lines.append(
        f"{'card total':<11} {totals.get('SCardTransmit', 0):>3} APDUs {sum(totals.values()):>3} SCard calls"
        " (the KDC round trip makes none)"
    )
    return lines


@click.command("signin")
@_card_options
@click.option("--user", required=True, metavar="USER@REALM", help="Who signs in (UPN / client principal).")
@click.option(
    "--kdc", "kdc_address", metavar="HOST:PORT", help="The KDC (default: the realm's kdc in $KRB5_CONFIG)."
)
@click.option(
    "--anchor",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA certificate(s) (PEM/DER) the KDC's certificate must chain to "
    "(default: the realm's pkinit_anchors FILE: in $KRB5_CONFIG).",
)
@click.option(
    "--ccache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Credential cache file (default: KRB5CCNAME's FILE:, else /tmp/krb5cc_UID).",
)
@click.option("--pin", help="User PIN (prefer --pin-stdin; prompted when neither is given).")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from the first line of standard input.")
@_rule_options
@click.option(
    "--container", type=click.IntRange(0, 255), help="Use this container instead of matching --user."
)
@click.option(
    "--registered-atr",
    is_flag=True,
    help="Treat the card's ATR as registered in Calais\\SmartCards (discovery by ATR only, no APDU).",
)
@click.option(
    "--key-transport",
    is_flag=True,
    help="Ask for RSA key transport (reply key decrypted on the card) instead of Diffie-Hellman.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def signin(
    reader: str | None,
    state: Path | None,
    profile: str | None,
    user: str,
    kdc_address: str | None,
    anchor: Path | None,
    ccache: Path | None,
    pin: str | None,
    pin_stdin: bool,
    rule_set: str,
    policies: tuple[str, ...],
    container: int | None,
    registered_atr: bool,
    key_transport: bool,
    as_json: bool,
) -> None:
    """Sign in with the card as Windows does: discovery, certificates, PIN, PKINIT, TGT in a ccache."""
    kdc_address, anchor = _realm_defaults(user, kdc_address, anchor)
    try:
        address = pkinit_transport.parse_address(kdc_address)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--kdc") from None
    try:
        parsed = rules_module.parse_policies(policies, rule_set)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    anchors = _anchors(anchor)
    if pin_stdin:
        pin = sys.stdin.readline().rstrip("\r\n")
    elif pin is None:
        pin = click.prompt("PIN", hide_input=True, err=True)
    if not pin:
        raise click.UsageError("empty PIN")
    virtual = None
    try:
        if reader:
            connection: Connection = PcscConnection(reader, CallMeter())
        else:
            virtual = VirtualCard.open(load_profile(profile or "piv"), state, ephemeral=False)
            connection = InProcessConnection(virtual.card, CallMeter())
    except (ProfileError, StateError) as error:
        raise click.ClickException(str(error)) from None
    except PcscError as error:
        raise click.ClickException(f"card: {error}") from None
    known = (flow_module.registered_atr(connection.atr),) if registered_atr else discovery_module.KNOWN_ATRS
    options = flow_module.Options(
        user=user,
        kdc=address,
        anchors=anchors,
        ccache=ccache or _default_ccache(),
        rules=rule_set,
        policies=parsed,
        container=container,
        known_atrs=known,
        key_transport=key_transport,
    )
    session = flow_module.SignInSession(connection)
    try:
        result = session.sign_in(options, pin.encode())
        session.close(result)
    finally:
        if virtual is not None:
            virtual.close()
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        if result.error is not None:
            sys.exit(1)
        return
    for line in render_steps(result):
        click.echo(line)
    if result.error is not None:
        raise click.ClickException(f"{result.error.step}: {result.error}")
    assert result.tgt is not None
    click.echo(f"signed in: {result.tgt.server_name} for {result.tgt.client_name} in FILE:{options.ccache}")


COMMANDS = (logon_check, ca, enroll, kdc, discover, signin)
