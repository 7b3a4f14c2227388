"""`vcard signin` on in-process cards against a KDC written in the test (no MIT KDC needed here).

The MIT KDC runs in tests/integration/test_signin_pkinit_kdc.py; here the flow's steps,
its cost accounting and every error path of the command are checked.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pkinit_support import USER, Lab, answer, fake_kdc, krb_error, make_lab

from signin import flow
from vcard.cli import main
from vcard.host import CallMeter, InProcessConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

PIN = "123456"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return make_lab(tmp_path_factory.mktemp("flow"))


_ENROLLED: dict[tuple[Path, str, str], Path] = {}


def enrolled(lab: Lab, directory: Path, profile: str, key_type: str = "rsa2048") -> list[str]:
    """A card state enrolled through `vcard enroll` (once per lab and key; each test gets a copy)."""
    key = (lab.ca.directory, profile, key_type)
    if key not in _ENROLLED:
        template = lab.ca.directory.parent / f"{profile}-{key_type}"
        card = ["--state", str(template), "--profile", profile]
        result = CliRunner().invoke(
            main,
            ["enroll", *card, "--user", USER, "--ca", str(lab.ca.directory), "--pin", PIN, "--key", key_type],
        )
        assert result.exit_code == 0, result.output
        _ENROLLED[key] = template
    state = directory / f"{profile}-{key_type}"
    shutil.copytree(_ENROLLED[key], state)
    return ["--state", str(state), "--profile", profile]


def run_signin(
    lab: Lab, card: list[str], address: tuple[str, int], ccache: Path, pin: str = PIN, *extra: str
) -> Result:
    return CliRunner().invoke(
        main,
        [
            "signin",
            *card,
            "--user",
            USER,
            "--kdc",
            f"{address[0]}:{address[1]}",
            "--anchor",
            str(lab.ca.certificate_path),
            "--ccache",
            str(ccache),
            "--pin-stdin",
            *extra,
        ],
        input=f"{pin}\n",
    )


def kdc_answering(lab: Lab) -> Callable[[bytes], bytes]:
    return lambda request: answer(request, lab.kdc)


@pytest.mark.parametrize(("profile", "key_type"), [("piv", "rsa2048"), ("piv", "p256"), ("gids", "rsa2048")])
def test_signin_steps_and_costs(lab: Lab, tmp_path: Path, profile: str, key_type: str) -> None:
    card = enrolled(lab, tmp_path, profile, key_type)
    extra = ["--policy", "EnumerateECCCerts=on"] if key_type == "p256" else []
    with fake_kdc(kdc_answering(lab)) as address:
        result = run_signin(lab, card, address, tmp_path / "cc", PIN, "--json", *extra)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    assert document["ok"] and document["card"] == profile
    assert document["tgt"]["client"] == USER
    names = [step["step"] for step in document["steps"]]
    assert names == ["discovery", "enumeration", "pin", "signature", "kdc", "reply", "release"]
    by_name = {step["step"]: step for step in document["steps"]}
    assert by_name["kdc"]["scard_calls"] == 0 and by_name["reply"]["scard_calls"] == 0
    assert by_name["discovery"]["calls"]["SCardConnect"] == 1
    assert by_name["pin"]["apdus"] >= 1 and by_name["signature"]["apdus"] >= 1
    assert by_name["release"]["calls"] == {"SCardDisconnect": 1, "SCardReleaseContext": 1}
    total = sum(step["scard_calls"] for step in document["steps"])
    assert document["card_cost"]["scard_calls"] == total
    assert (tmp_path / "cc").stat().st_mode & 0o777 == 0o600
    assert PIN not in result.output


def test_text_output_names_each_step(lab: Lab, tmp_path: Path) -> None:
    card = enrolled(lab, tmp_path, "piv")
    with fake_kdc(kdc_answering(lab)) as address:
        result = run_signin(lab, card, address, tmp_path / "cc")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("discovery", "enumeration", "pin", "signature", "kdc", "reply", "release", "card total"):
        assert any(line.startswith(name) for line in lines), (name, result.output)
    assert f"signed in: krbtgt/VCARD.TEST@VCARD.TEST for {USER}" in result.output
    assert PIN not in result.output


def test_warm_sign_in_reads_nothing_again(lab: Lab, tmp_path: Path) -> None:
    """Cold, then warm on the same card context: the data cache serves the container map and
    certificate after the freshness check; a warm sign-in stays within 8 SCard calls, and each
    sign-in holds one transaction from CardAcquireContext (cold) or enumeration (warm) to the end."""
    card = enrolled(lab, tmp_path, "gids")
    virtual = VirtualCard.open(load_profile("gids"), Path(card[1]), ephemeral=False)
    try:
        connection = InProcessConnection(virtual.card, CallMeter())
        session = flow.SignInSession(connection)
        with fake_kdc(kdc_answering(lab)) as address:
            options = flow.Options(
                USER,
                address,
                [lab.ca.certificate],
                tmp_path / "cc",
                known_atrs=(flow.registered_atr(connection.atr),),
            )
            cold = session.sign_in(options, PIN.encode())
            warm = session.sign_in(options, PIN.encode())
        session.close(warm)
    finally:
        virtual.close()
    assert cold.error is None and warm.error is None, (cold.error, warm.error)
    cold_enumeration = next(step for step in cold.steps if step.name == "enumeration")
    warm_enumeration = next(step for step in warm.steps if step.name == "enumeration")
    assert warm_enumeration.apdus < cold_enumeration.apdus
    assert warm.steps[0].name == "enumeration"  # no discovery, no connect
    warm_card = sum(step.scard_calls for step in warm.steps if step.name != "release")
    assert warm_card <= 8, warm.as_json()
    for run in (cold, warm):
        totals = run.card_totals()
        assert totals["SCardBeginTransaction"] == totals["SCardEndTransaction"] == 1, totals


def test_wrong_pin_reports_the_minidriver_error_and_tries_left(lab: Lab, tmp_path: Path) -> None:
    card = enrolled(lab, tmp_path, "piv")
    requests: list[bytes] = []
    with fake_kdc(lambda request: requests.append(request) or answer(request, lab.kdc)) as address:
        result = run_signin(lab, card, address, tmp_path / "cc", "999999")
    assert result.exit_code == 1
    assert (
        "Error: pin: wrong PIN: CardAuthenticatePin failed with SCARD_W_WRONG_CHV (0x8010006B), 2 tries left"
        in (result.output)
    )
    assert requests == [] and not (tmp_path / "cc").exists()
    assert "999999" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        (lambda request: krb_error(24, "bad signature"), "reply: KDC refused: KDC_ERR_PREAUTH_FAILED"),
        (lambda request: b"\x00garbage", "reply: KDC reply refused: KDC reply: tag 0x00"),
        (lambda request: b"\x6b\x03\x30\x01\x00", "reply: KDC reply refused: AS-REP: malformed"),
    ],
)
def test_kdc_answers_become_clear_errors(
    lab: Lab, tmp_path: Path, respond: Callable[[bytes], bytes], message: str
) -> None:
    card = enrolled(lab, tmp_path, "piv")
    with fake_kdc(respond) as address:
        result = run_signin(lab, card, address, tmp_path / "cc")
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output, result.output
    assert "Traceback" not in result.output


def test_unreachable_kdc(lab: Lab, tmp_path: Path) -> None:
    card = enrolled(lab, tmp_path, "piv")
    with socket.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        address = ("127.0.0.1", int(unused.getsockname()[1]))
        result = run_signin(lab, card, address, tmp_path / "cc")
    assert result.exit_code == 1
    assert f"Error: kdc: KDC 127.0.0.1:{address[1]}: Connection refused" in result.output, result.output


def test_no_certificate_for_the_user(lab: Lab, tmp_path: Path) -> None:
    card = enrolled(lab, tmp_path, "piv")
    result = CliRunner().invoke(
        main,
        [
            "signin",
            *card,
            "--user",
            "bob@VCARD.TEST",
            "--kdc",
            "127.0.0.1:9",
            "--anchor",
            str(lab.ca.certificate_path),
            "--ccache",
            str(tmp_path / "cc"),
            "--pin-stdin",
        ],
        input=f"{PIN}\n",
    )
    assert result.exit_code == 1
    assert (
        "Error: enumeration: no certificate for bob@VCARD.TEST among the card's 1 certificate(s)"
        in result.output
    )


def test_ec_certificate_needs_the_ecc_policy(lab: Lab, tmp_path: Path) -> None:
    card = enrolled(lab, tmp_path, "piv", "p256")
    with fake_kdc(kdc_answering(lab)) as address:
        result = run_signin(lab, card, address, tmp_path / "cc")
    assert result.exit_code == 1
    assert "not offered by the windows rules (ecc: ECC certificate)" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kdc", "host:notaport"], "--kdc"),
        (["--anchor", "/nonexistent/ca.crt"], "--anchor"),
        (["--user", "alice"], "expected a principal name@REALM"),
    ],
)
def test_bad_arguments(lab: Lab, tmp_path: Path, arguments: list[str], message: str) -> None:
    base = {"--user": USER, "--kdc": "127.0.0.1:9", "--anchor": str(lab.ca.certificate_path)}
    base.update(dict(zip(arguments[::2], arguments[1::2], strict=True)))
    flat = [item for pair in base.items() for item in pair]
    result = CliRunner().invoke(
        main,
        ["signin", "--profile", "piv", "--state", str(tmp_path / "s"), *flat, "--pin-stdin"],
        input="1\n",
    )
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output, result.output


def test_kdc_and_anchor_from_krb5_config(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the sign-in lab: KRB5_CONFIG names the realm's KDC and anchors, so neither option is needed."""
    card = enrolled(lab, tmp_path, "piv")
    with fake_kdc(kdc_answering(lab)) as address:
        config = tmp_path / "krb5.conf"
        config.write_text(
            "[libdefaults]\n    default_realm = VCARD.TEST\n[realms]\n"
            "    OTHER.TEST = {\n        kdc = 127.0.0.1:1\n    }\n"
            f"    VCARD.TEST = {{\n        kdc = {address[0]}:{address[1]}\n"
            f"        pkinit_anchors = FILE:{lab.ca.certificate_path}\n"
            "        pkinit_eku_checking = kpKDC\n    }\n"
        )
        monkeypatch.setenv("KRB5_CONFIG", str(config))
        monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'from-env'}")
        result = CliRunner().invoke(main, ["signin", *card, "--user", USER, "--pin-stdin"], input=f"{PIN}\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-env").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[realms]\n    VCARD.TEST = {\n        kdc\n    }\n", "krb5.conf:3: expected NAME = VALUE"),
        ("[realms]\n    VCARD.TEST = {\n", "block 'VCARD.TEST' is not closed"),
        ("[realms]\n}\n", "krb5.conf:2: '}' without an open block"),
        ("[realms]\n    VCARD.TEST = {\n    }\n", "--kdc HOST:PORT is needed (no kdc for VCARD.TEST"),
    ],
)
def test_krb5_config_problems_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    config = tmp_path / "krb5.conf"
    config.write_text(text)
    monkeypatch.setenv("KRB5_CONFIG", str(config))
    result = CliRunner().invoke(
        main,
        ["signin", "--profile", "piv", "--state", str(tmp_path / "s"), "--user", USER, "--pin-stdin"],
        input="1\n",
    )
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_rsa_key_transport_decrypts_the_reply_key_on_the_card(lab: Lab, tmp_path: Path, profile: str) -> None:
    card = enrolled(lab, tmp_path, profile)
    with fake_kdc(kdc_answering(lab)) as address:
        result = run_signin(lab, card, address, tmp_path / "cc", PIN, "--key-transport", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    steps = {step["step"]: step for step in document["steps"]}
    assert "RSA key transport, reply key decrypted on the card" in steps["reply"]["detail"]
    assert steps["reply"]["apdus"] >= 1  # CardRSADecrypt, then the deauthentication
    assert steps["reply"]["calls"]["SCardEndTransaction"] == 1  # the transaction ends after the reply
    assert "SCardEndTransaction" not in steps["signature"]["calls"]


def test_key_transport_needs_an_rsa_key(lab: Lab, tmp_path: Path) -> None:
    card = enrolled(lab, tmp_path, "piv", "p256")
    result = run_signin(
        lab,
        card,
        ("127.0.0.1", 9),
        tmp_path / "cc",
        PIN,
        "--key-transport",
        "--policy",
        "EnumerateECCCerts=on",
    )
    assert result.exit_code == 1
    assert (
        "RSA key transport needs an RSA key-exchange key (AT_KEYEXCHANGE), not AT_ECDSA_P256" in result.output
    )
