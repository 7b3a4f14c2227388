"""Our Windows-path PKINIT client (`vcard signin`) at the real MIT KDC, through pcscd and in-process.

The card signs the AuthPack through the minidriver layer; the KDC answers with
Diffie-Hellman; the TGT lands in a FILE: credential cache that MIT's own `klist`
reads and `kvno` uses. The failures are the KDC's own (KRB-ERROR code and e-text,
and its log line) or the client's, before anything is sent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import KDC_USER, CardFactory
from cryptography import x509
from test_kdc_kinit import pin_status, write_custom

from signin import card as card_module
from signin import enroll as enroll_module
from signin.kdc import Kdc
from vcard.cli import main

pytestmark = pytest.mark.integration

PRINCIPAL = f"{KDC_USER}@VCARD.TEST"
PIN = "123456"
SERVICE = "host/service.vcard.test"
EC_POLICY = ["--policy", "EnumerateECCCerts=on"]


def signin(
    kdc: Kdc, ccache: Path, card: list[str], pin: str = PIN, extra: tuple[str, ...] = ()
) -> tuple[int, dict]:
    arguments = [
        "signin",
        *card,
        "--user",
        PRINCIPAL,
        "--kdc",
        f"127.0.0.1:{kdc.port}",
        "--anchor",
        str(kdc.directory / "ca.crt"),
        "--ccache",
        str(ccache),
        "--pin-stdin",
        "--json",
        *extra,
    ]
    result = CliRunner().invoke(main, arguments, input=f"{pin}\n")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def klist(kdc: Kdc, ccache: Path) -> str:
    result = subprocess.run(
        ["klist", "-c", f"FILE:{ccache}"],
        capture_output=True,
        text=True,
        env=kdc.env,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


def kvno(kdc: Kdc, ccache: Path, service: str) -> subprocess.CompletedProcess[str]:
    env = {**kdc.env, "KRB5CCNAME": f"FILE:{ccache}"}
    return subprocess.run(["kvno", service], capture_output=True, text=True, env=env, timeout=30, check=False)


def enroll_reader(reader: str, kdc: Kdc, key_type: str = "rsa2048") -> None:
    with card_module.open_card(reader=reader, writable=True) as card_data:
        assert card_data.applet is not None
        enroll_module.enroll(
            card_data, card_data.applet, PRINCIPAL, "windows", PIN.encode(), ca=kdc.ca, key_type=key_type
        )


def assert_signed_in(kdc: Kdc, ccache: Path, document: dict) -> None:
    assert document["ok"], document
    assert document["tgt"]["server"] == "krbtgt/VCARD.TEST@VCARD.TEST"
    listing = klist(kdc, ccache)
    assert f"Default principal: {PRINCIPAL}" in listing and "krbtgt/VCARD.TEST@VCARD.TEST" in listing, listing
    assert ccache.stat().st_mode & 0o777 == 0o600
    # the TGT is usable: MIT's kvno gets a service ticket with it
    used = kvno(kdc, ccache, f"{SERVICE}@VCARD.TEST")
    assert used.returncode == 0, used.stderr + kdc.log()
    assert SERVICE in klist(kdc, ccache)


@pytest.fixture(scope="module")
def service(lab: Kdc) -> str:
    """A service principal in the lab realm, for kvno."""
    lab.add_service(SERVICE)
    return SERVICE


@pytest.mark.parametrize(("profile", "key_type"), [("piv", "rsa2048"), ("piv", "p256"), ("gids", "rsa2048")])
def test_signs_in_through_pcscd(
    profile: str, key_type: str, start_card: CardFactory, kdc: Kdc, service: str, tmp_path: Path
) -> None:
    card = start_card(profile, 0)
    enroll_reader(card.reader, kdc, key_type)
    ccache = tmp_path / "ccache"
    extra = tuple(EC_POLICY) if key_type == "p256" else ()
    code, document = signin(kdc, ccache, ["--reader", card.reader], extra=extra)
    assert code == 0, document
    assert document["card"] == profile
    assert document["certificate"]["key_spec"] == (
        "AT_ECDSA_P256" if key_type == "p256" else "AT_KEYEXCHANGE"
    )
    assert [step["step"] for step in document["steps"]] == [
        "discovery",
        "enumeration",
        "pin",
        "signature",
        "kdc",
        "reply",
        "release",
    ]
    kdc_step = next(step for step in document["steps"] if step["step"] == "kdc")
    assert kdc_step["scard_calls"] == 0
    assert_signed_in(kdc, ccache, document)
    # the PIN is not left verified for the next client
    assert pin_status(card.reader, profile) == 0x63C3


@pytest.mark.parametrize(("profile", "key_type"), [("piv", "rsa2048"), ("piv", "p256"), ("gids", "rsa2048")])
def test_signs_in_in_process(profile: str, key_type: str, kdc: Kdc, service: str, tmp_path: Path) -> None:
    state = tmp_path / "card"
    card = ["--state", str(state), "--profile", profile]
    enrolled = CliRunner().invoke(
        main,
        [
            "enroll",
            *card,
            "--user",
            PRINCIPAL,
            "--ca",
            str(kdc.ca.directory),
            "--pin",
            PIN,
            "--key",
            key_type,
        ],
    )
    assert enrolled.exit_code == 0, enrolled.output
    ccache = tmp_path / "ccache"
    extra = tuple(EC_POLICY) if key_type == "p256" else ()
    code, document = signin(kdc, ccache, card, extra=extra)
    assert code == 0, document
    assert document["card"] == profile
    assert_signed_in(kdc, ccache, document)


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_wrong_pin_costs_one_try(profile: str, start_card: CardFactory, kdc: Kdc, tmp_path: Path) -> None:
    card = start_card(profile, 0)
    enroll_reader(card.reader, kdc)
    log_before = len(kdc.log())
    assert pin_status(card.reader, profile) == 0x63C3
    code, document = signin(kdc, tmp_path / "ccache", ["--reader", card.reader], pin="000000")
    assert code == 1
    assert document["error"]["step"] == "pin"
    message = document["error"]["message"]
    assert "SCARD_W_WRONG_CHV" in message and "2 tries left" in message, message
    assert pin_status(card.reader, profile) == 0x63C2
    assert not (tmp_path / "ccache").exists()
    assert "AS_REQ" not in kdc.log()[log_before:]  # nothing was sent
    code, document = signin(kdc, tmp_path / "ccache", ["--reader", card.reader])
    assert code == 0, document
    assert pin_status(card.reader, profile) == 0x63C3


@pytest.mark.parametrize(
    ("eku_checking", "allow_upn", "code", "name", "message"),
    [
        ("kpClientAuth", True, 77, "KDC_ERR_INCONSISTENT_KEY_PURPOSE", "Inconsistent key purpose"),
        ("scLogin", False, 75, "KDC_ERR_CLIENT_NAME_MISMATCH", "Client name mismatch"),
    ],
)
def test_kdc_refusals(
    eku_checking: str,
    allow_upn: bool,
    code: int,
    name: str,
    message: str,
    start_card: CardFactory,
    lab: Kdc,
    tmp_path: Path,
) -> None:
    card = start_card("piv", 0)
    enroll_reader(card.reader, lab)
    lab.reconfigure(eku_checking, allow_upn)
    log_before = len(lab.log())
    exit_code, document = signin(lab, tmp_path / "ccache", ["--reader", card.reader])
    assert exit_code == 1
    assert document["error"]["step"] == "reply"
    assert document["error"]["krb_error"]["code"] == code, document["error"]
    assert f"{name} ({message})" in document["error"]["message"], document["error"]
    new_log = lab.log()[log_before:]
    assert "AS_REQ" in new_log and message in new_log, new_log
    assert not (tmp_path / "ccache").exists()


def test_no_digital_signature_is_refused_on_the_client(
    start_card: CardFactory, kdc: Kdc, tmp_path: Path
) -> None:
    card = start_card("piv", 0)
    write_custom(
        kdc, card.reader, x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    )
    log_before = len(kdc.log())
    code, document = signin(kdc, tmp_path / "ccache", ["--reader", card.reader])
    assert code == 1
    assert document["error"]["step"] == "enumeration"
    assert "keyusage" in document["error"]["message"], document["error"]
    assert kdc.log()[log_before:] == ""  # nothing reached the KDC
    steps = [step["step"] for step in document["steps"]]
    assert steps == ["discovery", "enumeration", "release"]  # no PIN asked of the card, nothing signed


def test_kdc_unreachable_is_a_clear_error(start_card: CardFactory, kdc: Kdc, tmp_path: Path) -> None:
    card = start_card("piv", 0)
    enroll_reader(card.reader, kdc)
    kdc.stop()
    try:
        result = CliRunner().invoke(
            main,
            [
                "signin",
                "--reader",
                card.reader,
                "--user",
                PRINCIPAL,
                "--kdc",
                f"127.0.0.1:{kdc.port}",
                "--anchor",
                str(kdc.directory / "ca.crt"),
                "--ccache",
                str(tmp_path / "cc"),
                "--pin-stdin",
            ],
            input=f"{PIN}\n",
        )
    finally:
        kdc.reconfigure(kdc.eku_checking, kdc.allow_upn)
    assert result.exit_code == 1
    assert "Error: kdc: KDC 127.0.0.1:" in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_rsa_key_transport_at_the_kdc(
    profile: str, start_card: CardFactory, kdc: Kdc, service: str, tmp_path: Path
) -> None:
    """The KDC answers with encKeyPack; the card decrypts the content-encryption key (CardRSADecrypt)."""
    card = start_card(profile, 0)
    enroll_reader(card.reader, kdc)
    ccache = tmp_path / "ccache"
    code, document = signin(kdc, ccache, ["--reader", card.reader], extra=("--key-transport",))
    assert code == 0, document
    reply = next(step for step in document["steps"] if step["step"] == "reply")
    assert "RSA key transport" in reply["detail"] and reply["apdus"] >= 1
    assert_signed_in(kdc, ccache, document)
    assert pin_status(card.reader, profile) == 0x63C3
