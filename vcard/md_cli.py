"""`vcard md`: the minidriver API from the command line, against a PC/SC reader or a card state.

    vcard md info --reader "Virtual PCD 00 00"
    vcard md info --profile gids --state /tmp/g          (in-process, no pcscd)
    vcard md certificates --out ./certs
    vcard md authenticate --role 1 --pin 123456 --session
    vcard md sign --container 0 --pin 123456 --hash sha256 --input file.txt
    vcard md decrypt --container 0 --pin 123456 --input cryptogram.bin --oaep

It lives in the CLI layer, not in the minidriver package: it builds in-process
cards (vcard.runtime), which the host-side minidriver package must not import.
vcard/cli.py registers the group (`main.add_command(md)`).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

import minidriver as api
from minidriver.constants import (
    AT_KEYEXCHANGE,
    CALG_MD5,
    CALG_SHA1,
    CALG_SHA_256,
    CALG_SHA_384,
    CALG_SHA_512,
    CARD_AUTHENTICATE_GENERATE_SESSION_PIN,
    CARD_AUTHENTICATE_SESSION_PIN,
    CARD_PADDING_INFO_PRESENT,
    CARD_PADDING_OAEP,
    CARD_PADDING_PKCS1,
    CARD_PADDING_PSS,
    CCP_PIN_IDENTIFIER,
    CP_CARD_AUTHENTICATED_STATE,
    CP_CARD_CACHE_MODE,
    CP_CARD_GUID,
    CP_CARD_LIST_PINS,
    CP_CARD_PIN_INFO,
    CP_CARD_PIN_STRENGTH_VERIFY,
    CP_CARD_READ_ONLY,
    CP_CARD_SERIAL_NO,
    ECDSA_KEYSPECS,
    MAX_PINS,
    PinCachePolicyType,
    PinPurpose,
    PinType,
    szBASE_CSP_DIR,
)
from minidriver.errors import ScardError
from minidriver.structures import (
    BCRYPT_OAEP_PADDING_INFO,
    BCRYPT_PSS_PADDING_INFO,
    CARD_RSA_DECRYPT_INFO,
    CARD_SIGNING_INFO,
    PIN_INFO,
)

from .profile import load_profile
from .runtime import VirtualCard

HASHES = {
    "sha1": CALG_SHA1,
    "sha256": CALG_SHA_256,
    "sha384": CALG_SHA_384,
    "sha512": CALG_SHA_512,
    "md5": CALG_MD5,
}
KEY_SPECS = {
    1: "AT_KEYEXCHANGE",
    2: "AT_SIGNATURE",
    3: "AT_ECDSA_P256",
    4: "AT_ECDSA_P384",
    5: "AT_ECDSA_P521",
    6: "AT_ECDHE_P256",
    7: "AT_ECDHE_P384",
    8: "AT_ECDHE_P521",
}


def _card_options(function: Any) -> Any:
    options = [
        click.option("--reader", "-r", help="PC/SC reader (name or part of it). Default: in-process card."),
        click.option(
            "--profile", "-p", metavar="NAME|PATH", help="In-process: profile of the card (default piv)."
        ),
        click.option(
            "--state", type=click.Path(file_okay=False, path_type=Path), help="In-process: state directory."
        ),
        click.option("--ephemeral", is_flag=True, help="In-process: throwaway card."),
        click.option("--applet", type=click.Choice(["piv", "gids"]), help="Skip detection."),
        click.option(
            "--delay-ms",
            type=click.FloatRange(min=0),
            default=0.0,
            help="Milliseconds added to every SCard call, APDUs and transactions alike (RDP model).",
        ),
        click.option("--counts", is_flag=True, help="Print APDU, SCard-call and byte counts at the end."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@contextmanager
def _card(options: dict[str, Any]) -> Iterator[api.CardData]:
    """CardAcquireContext on a reader or an in-process card; errors become click errors."""
    if options["state"] is not None and options["ephemeral"]:
        raise click.BadParameter("--state and --ephemeral exclude each other", param_hint="--state")
    with ExitStack() as stack:
        kwargs = {"applet": options["applet"], "idle_reset_seconds": None}
        try:
            if options["reader"]:
                card_data = api.CardData.connect(options["reader"], options["delay_ms"] / 1000, **kwargs)
            else:
                virtual = VirtualCard.open(
                    load_profile(options["profile"] or "piv"),
                    options["state"],
                    ephemeral=options["ephemeral"],
                )
                stack.callback(virtual.close)
                card_data = api.CardData.inprocess(virtual.card, options["delay_ms"] / 1000, **kwargs)
            stack.callback(card_data.close)
            api.CardAcquireContext(card_data, 0)
        except ScardError as error:
            raise click.ClickException(str(error)) from None
        except Exception as error:  # profile/state problems from the card side
            raise click.ClickException(f"{type(error).__name__}: {error}") from None
        try:
            yield card_data
        except ScardError as error:
            raise click.ClickException(str(error)) from None
        finally:
            if options["counts"]:
                counts = card_data.connection.meter.snapshot()
                click.echo(
                    f"# {counts['apdus']} APDUs, {counts['round_trips']} SCard calls, "
                    f"{counts['bytes_sent']} bytes sent, {counts['bytes_received']} bytes received",
                    err=True,
                )


def _pin(pin: str | None, role: int) -> bytes:
    if pin is None:
        pin = click.prompt(f"PIN for role {role}", hide_input=True)
    return pin.encode()


@click.group("md")
def md() -> None:
    """The Windows smart-card minidriver API (v7) against a reader or a card state."""


@md.command()
@_card_options
def info(**options: Any) -> None:
    """Properties, PINs and containers."""
    with _card(options) as card_data:
        ctx = card_data.pvVendorSpecific
        assert ctx is not None
        click.echo(f"card:            {ctx.backend.name} (CARD_DATA version {card_data.dwVersion})")
        click.echo(f"card identifier: {api.CardGetProperty(card_data, CP_CARD_GUID).hex()}")
        click.echo(f"serial number:   {api.CardGetProperty(card_data, CP_CARD_SERIAL_NO).hex()}")
        click.echo(f"read only:       {bool(api.dword(api.CardGetProperty(card_data, CP_CARD_READ_ONLY)))}")
        click.echo(f"cache mode:      {api.dword(api.CardGetProperty(card_data, CP_CARD_CACHE_MODE))}")
        capabilities = api.CardQueryCapabilities(card_data)
        click.echo(
            f"capabilities:    compression={capabilities.fCertificateCompression}"
            f" keygen={capabilities.fKeyGen}"
        )
        free = api.CardQueryFreeSpace(card_data)
        click.echo(
            f"free space:      {free.dwBytesAvailable:#x} bytes, {free.dwKeyContainersAvailable} containers"
        )
        pins = api.dword(api.CardGetProperty(card_data, CP_CARD_LIST_PINS))
        state = api.dword(api.CardGetProperty(card_data, CP_CARD_AUTHENTICATED_STATE))
        click.echo(f"PINs:            PIN_SET {pins:#04x}, authenticated {state:#04x}")
        for role in range(1, MAX_PINS):
            if not pins >> role & 1:
                continue
            pin_info = PIN_INFO.unpack(api.CardGetProperty(card_data, CP_CARD_PIN_INFO, None, role))
            strength = api.dword(api.CardGetProperty(card_data, CP_CARD_PIN_STRENGTH_VERIFY, None, role))
            label = ctx.roles()[role].label
            click.echo(
                f"  role {role} {label!r}: {PinType(pin_info.PinType).name},"
                f" {PinPurpose(pin_info.PinPurpose).name},"
                f" {PinCachePolicyType(pin_info.PinCachePolicy.PinCachePolicyType).name},"
                f" unblock {pin_info.dwUnblockPermission:#04x}, strength {strength:#x}"
            )
        click.echo("containers:")
        for index, container in sorted(ctx.containers(card_data).items()):
            pin_id = api.dword(api.CardGetContainerProperty(card_data, index, CCP_PIN_IDENTIFIER))
            click.echo(
                f"  {index:2d} {KEY_SPECS.get(container.key_spec, container.key_spec)} {container.algorithm}-"
                f"{container.bits} PIN {pin_id} {container.name!r}{' (default)' if container.default else ''}"
            )


@md.command()
@_card_options
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Write each certificate as DER."
)
def certificates(out: Path | None, **options: Any) -> None:
    """Certificates of the containers (mscp/kxcNN, mscp/kscNN)."""
    from cryptography import x509

    with _card(options) as card_data:
        names = [name for name in api.CardEnumFiles(card_data, szBASE_CSP_DIR) if name[:3] in ("kxc", "ksc")]
        for name in sorted(names):
            der = api.CardReadFile(card_data, szBASE_CSP_DIR, name)
            try:
                subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
            except ValueError:
                subject = "(not a certificate)"
            click.echo(f"{name}: {len(der)} bytes, {subject}")
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{name}.der").write_bytes(der)


@md.command()
@_card_options
@click.option("--role", type=int, default=1, show_default=True, help="PIN_ID.")
@click.option("--pin", help="PIN (prompted if absent; not for external roles).")
@click.option("--session", is_flag=True, help="CARD_AUTHENTICATE_GENERATE_SESSION_PIN: print a session PIN.")
@click.option("--session-pin", help="Authenticate with this session PIN (hex).")
def authenticate(role: int, pin: str | None, session: bool, session_pin: str | None, **options: Any) -> None:
    """CardAuthenticateEx for one role; prints the authenticated PIN_SET (and a session PIN)."""
    with _card(options) as card_data:
        ctx = card_data.pvVendorSpecific
        assert ctx is not None
        role_info = ctx.roles().get(role)
        if session_pin is not None:
            api.CardAuthenticateEx(card_data, role, CARD_AUTHENTICATE_SESSION_PIN, bytes.fromhex(session_pin))
        else:
            data = None if role_info is not None and role_info.external else _pin(pin, role)
            flags = CARD_AUTHENTICATE_GENERATE_SESSION_PIN if session else 0
            token, _ = api.CardAuthenticateEx(card_data, role, flags, data)
            if token:
                click.echo(f"session PIN: {token.hex()}")
        state = api.dword(api.CardGetProperty(card_data, CP_CARD_AUTHENTICATED_STATE))
        click.echo(f"authenticated PIN_SET: {state:#04x}")


def _read_input(path: str | None, text: str | None) -> bytes:
    if path:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    if text is not None:
        return text.encode()
    raise click.UsageError("give --input FILE or --text TEXT")


@md.command()
@_card_options
@click.option("--container", type=int, default=0, show_default=True)
@click.option("--pin", help="PIN of the container's role (prompted; not needed for ROLE_EVERYONE).")
@click.option("--hash", "hash_name", type=click.Choice(sorted(HASHES)), default="sha256", show_default=True)
@click.option("--pss", is_flag=True, help="RSA-PSS (salt = hash length) instead of PKCS#1 v1.5.")
@click.option("--input", "input_path", help="File to hash and sign ('-' = stdin).")
@click.option("--text", help="Text to hash and sign.")
def sign(
    container: int,
    pin: str | None,
    hash_name: str,
    pss: bool,
    input_path: str | None,
    text: str | None,
    **options: Any,
) -> None:
    """CardSignData over the hash of the input; prints the signature in the usual big-endian form (hex)."""
    digest = hashlib.new(hash_name, _read_input(input_path, text)).digest()
    with _card(options) as card_data:
        ctx = card_data.pvVendorSpecific
        assert ctx is not None
        found = ctx.container(card_data, container)
        if found.pin_id:
            role = ctx.roles().get(found.pin_id)
            data = None if role is not None and role.external else _pin(pin, found.pin_id)
            api.CardAuthenticateEx(card_data, found.pin_id, 0, data)
        if found.algorithm == "ec":
            info = CARD_SIGNING_INFO(
                2, container, found.key_spec if found.key_spec in ECDSA_KEYSPECS else 3, pbData=digest
            )
            click.echo(api.CardSignData(card_data, info).hex())
            return
        if pss:
            info = CARD_SIGNING_INFO(
                2,
                container,
                found.key_spec,
                CARD_PADDING_INFO_PRESENT,
                0,
                digest,
                pPaddingInfo=BCRYPT_PSS_PADDING_INFO(hash_name.upper(), len(digest)),
                dwPaddingType=CARD_PADDING_PSS,
            )
        else:
            info = CARD_SIGNING_INFO(2, container, found.key_spec, 0, HASHES[hash_name], digest)
        click.echo(api.CardSignData(card_data, info)[::-1].hex())


@md.command()
@_card_options
@click.option("--container", type=int, default=0, show_default=True)
@click.option("--pin", help="PIN of the container's role (prompted).")
@click.option("--oaep", is_flag=True, help="OAEP with SHA-256 instead of PKCS#1 v1.5.")
@click.option(
    "--input", "input_path", required=True, help="Cryptogram file, big-endian as usual ('-' = stdin)."
)
def decrypt(container: int, pin: str | None, oaep: bool, input_path: str, **options: Any) -> None:
    """CardRSADecrypt; prints the plaintext as hex."""
    cryptogram = _read_input(input_path, None)
    with _card(options) as card_data:
        ctx = card_data.pvVendorSpecific
        assert ctx is not None
        found = ctx.container(card_data, container)
        if found.pin_id:
            api.CardAuthenticateEx(card_data, found.pin_id, 0, _pin(pin, found.pin_id))
        info = CARD_RSA_DECRYPT_INFO(
            2,
            container,
            AT_KEYEXCHANGE,
            cryptogram[::-1],
            pPaddingInfo=BCRYPT_OAEP_PADDING_INFO("SHA256") if oaep else None,
            dwPaddingType=CARD_PADDING_OAEP if oaep else CARD_PADDING_PKCS1,
        )
        click.echo(api.CardRSADecrypt(card_data, info).hex())
