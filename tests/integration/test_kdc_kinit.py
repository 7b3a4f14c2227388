"""PKINIT sign-in at a real MIT KDC with unmodified `kinit` through OpenSC, PIV and GIDS, through pcscd.

The KDC (signin/kdc.py) runs as a child process with its own realm, database and
configuration in a temporary directory on 127.0.0.1 and a free port. Each card is
enrolled through the minidriver API over PC/SC (signin/enroll.py) with a certificate
from a lab CA the KDC trusts. The messages asserted are kinit's on Debian 12 (krb5 1.20.1).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import KDC_USER, CardFactory
from cryptography import x509
from harness import pcsc_connection, transmit

from signin import ca as ca_module
from signin import card as card_module
from signin import enroll as enroll_module
from signin import rules
from signin.kdc import Kdc
from vcard.cli import main

pytestmark = pytest.mark.integration

USER = KDC_USER
PRINCIPAL = "alice@VCARD.TEST"
PIN = "123456"
SELECT = {"piv": "00A4040009A00000030800001000", "gids": "00A404000BA00000039742544659020100"}


def enroll(reader: str, ca: ca_module.CA, template: str = "windows", key_type: str = "rsa2048") -> None:
    with card_module.open_card(reader=reader, writable=True) as card_data:
        assert card_data.applet is not None
        enroll_module.enroll(
            card_data, card_data.applet, PRINCIPAL, template, PIN.encode(), ca=ca, key_type=key_type
        )


def pin_status(reader: str, applet: str) -> int:
    """VERIFY without data (ISO 7816-4): the PIN's status word, without spending a try."""
    connection = pcsc_connection(reader)
    try:
        sw = transmit(connection, SELECT[applet])[1]
        assert sw == 0x9000 or sw & 0xFF00 == 0x6100, f"SELECT {applet}: {sw:04X}"
        return transmit(connection, "00200080")[1]
    finally:
        connection.close()


def signed_in(kdc: Kdc) -> bool:
    return "krbtgt/VCARD.TEST@VCARD.TEST" in kdc.klist() and f"Default principal: {PRINCIPAL}" in kdc.klist()


def write_custom(kdc: Kdc, reader: str, key_usage: x509.KeyUsage | None = None, **issue: Any) -> None:
    """A key generated through the minidriver, and a windows-template certificate changed as asked."""
    with card_module.open_card(reader=reader, writable=True) as card_data, card_data.transaction():
        enroll_module.authenticate(card_data, "piv", PIN.encode())
        key_spec, public_key = enroll_module.generate_key(card_data, 0, "rsa2048")
        extensions = [
            (key_usage, True)
            if key_usage is not None and isinstance(extension, x509.KeyUsage)
            else (extension, critical)
            for extension, critical in ca_module.template_extensions("windows", PRINCIPAL)
        ]
        certificate = ca_module.issue(
            kdc.ca, public_key, ca_module.subject_for(PRINCIPAL), extensions, **issue
        )
        enroll_module.write_certificate(card_data, 0, key_spec, certificate)


def mit_prediction(reader: str, kdc: Kdc) -> rules.Verdict:
    with card_module.open_card(reader=reader) as card_data:
        entries = card_module.read_certificates(card_data).certificates
    options = rules.Options(mit=rules.MitOptions(kdc.eku_checking, kdc.allow_upn, PRINCIPAL))
    (verdict,) = rules.evaluate(entries, "mit", options)
    return verdict


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_kinit_signs_in_with_the_enrolled_card(profile: str, start_card: CardFactory, kdc: Kdc) -> None:
    card = start_card(profile, 0)
    enroll(card.reader, kdc.ca)
    result = kdc.kinit_pkcs11(USER, PIN)
    assert result.returncode == 0, result.stdout + result.stderr + kdc.log()
    assert "PIN:" in result.stdout  # the PIN came from stdin, at kinit's own prompt
    assert signed_in(kdc)
    # logon-check on the same card, through pcscd, agrees: offered to Windows and to this KDC.
    for extra in (
        [],
        [
            "--rules",
            "mit",
            "--policy",
            "pkinit_eku_checking=scLogin",
            "--policy",
            "pkinit_allow_upn=on",
            "--user",
            PRINCIPAL,
        ],
    ):
        output = CliRunner().invoke(main, ["logon-check", "--reader", card.reader, "--json", *extra])
        assert output.exit_code == 0, output.output
        document = json.loads(output.output)
        assert document["card"] == profile
        assert [c["offered"] for c in document["certificates"]] == [True]


@pytest.mark.parametrize(
    ("eku_checking", "allow_upn", "message"),
    [
        ("kpClientAuth", False, "Inconsistent key purpose"),
        ("kpClientAuth", True, "Inconsistent key purpose"),
        ("scLogin", False, "Client name mismatch"),
    ],
)
def test_windows_style_certificate_needs_sclogin_and_allow_upn(
    eku_checking: str, allow_upn: bool, message: str, start_card: CardFactory, lab: Kdc
) -> None:
    card = start_card("piv", 0)
    enroll(card.reader, lab.ca, "windows")
    lab.reconfigure(eku_checking, allow_upn)
    lab.destroy_tickets()
    result = lab.kinit_pkcs11(USER, PIN)
    assert result.returncode == 1
    assert f"kinit: {message} while getting initial credentials" in result.stderr
    assert not signed_in(lab)
    # The MIT rule set predicts the same first error for this KDC configuration.
    assert mit_prediction(card.reader, lab).error == message


def test_mit_template_signs_in_with_the_kdc_defaults(start_card: CardFactory, lab: Kdc) -> None:
    card = start_card("piv", 0)
    enroll(card.reader, lab.ca, "mit")
    lab.reconfigure("kpClientAuth", False)
    lab.destroy_tickets()
    result = lab.kinit_pkcs11(USER, PIN)
    assert result.returncode == 0, result.stderr + lab.log()
    assert signed_in(lab)


def test_kinit_1_20_cannot_sign_in_with_an_ec_key(start_card: CardFactory, kdc: Kdc) -> None:
    """krb5 1.20 PKINIT signs with CKM_RSA_PKCS only (EC client keys arrived in krb5 1.22)."""
    card = start_card("piv", 0)
    enroll(card.reader, kdc.ca, key_type="p256")
    log_before = len(kdc.log())
    result = kdc.kinit_pkcs11(USER, PIN)
    assert result.returncode == 1
    assert "kinit: Pre-authentication failed" in result.stderr
    assert "pkinit" not in kdc.log()[log_before:].lower()  # refused by the client, as the MIT rules say
    with card_module.open_card(reader=card.reader) as card_data:
        entries = card_module.read_certificates(card_data).certificates
    options = rules.Options(mit=rules.MitOptions("scLogin", True, PRINCIPAL))
    assert [set(v.failed) for v in rules.evaluate(entries, "mit", options)] == [{"client-keytype"}]


@pytest.mark.parametrize(("days_from_now", "ending"), [(-10, "has expired"), (10, "is not yet valid")])
def test_kinit_refuses_its_own_certificate_outside_validity(
    days_from_now: int, ending: str, start_card: CardFactory, kdc: Kdc
) -> None:
    card = start_card("piv", 0)
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days_from_now)
    write_custom(kdc, card.reader, days=1, not_before=start)
    log_before = len(kdc.log())
    result = kdc.kinit_pkcs11(USER, PIN)
    assert result.returncode == 1
    message = f"Pre-authentication failed: Failed to verify own certificate (depth 0): certificate {ending}"
    assert f"kinit: {message} while getting initial credentials" in result.stderr
    assert "pkinit" not in kdc.log()[log_before:].lower()
    verdict = mit_prediction(card.reader, kdc)
    assert set(verdict.failed) == {"client-time"} and verdict.error == message


def test_certificate_without_digital_signature_is_refused_by_the_client(
    start_card: CardFactory, kdc: Kdc
) -> None:
    card = start_card("piv", 0)
    write_custom(
        kdc, card.reader, x509.KeyUsage(False, False, True, False, False, False, False, False, False)
    )
    log_before = len(kdc.log())
    result = kdc.kinit_pkcs11(USER, PIN)
    assert result.returncode == 1
    assert "kinit: Pre-authentication failed" in result.stderr
    assert not signed_in(kdc)
    # Refused on the client: no PKINIT request reached the KDC (only the first, empty AS-REQ).
    new_log = kdc.log()[log_before:]
    assert "pkinit" not in new_log.lower() and "ISSUE" not in new_log
    assert "NEEDED_PREAUTH" in new_log
    verdict = mit_prediction(card.reader, kdc)
    assert "client-sign" in verdict.failed and verdict.error == "Pre-authentication failed"


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_wrong_pin_costs_exactly_one_try(profile: str, start_card: CardFactory, kdc: Kdc) -> None:
    card = start_card(profile, 0)
    enroll(card.reader, kdc.ca)
    assert pin_status(card.reader, profile) == 0x63C3
    result = kdc.kinit_pkcs11(USER, "000000")
    assert result.returncode == 1
    assert "kinit: Pre-authentication failed" in result.stderr
    assert not signed_in(kdc)
    assert pin_status(card.reader, profile) == 0x63C2
    right = kdc.kinit_pkcs11(USER, PIN)
    assert right.returncode == 0, right.stderr
    # The right PIN restores the counter: PIV keeps the PIN verified across connections (9000),
    # GIDS drops the verified state at SELECT and shows the full counter (63C3).
    assert pin_status(card.reader, profile) == {"piv": 0x9000, "gids": 0x63C3}[profile]
