"""`vcard ca`, `vcard enroll` then `vcard logon-check` on in-process PIV and GIDS cards."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import minidriver as md
from signin import ca as ca_module
from signin import card as card_module
from signin import certinfo
from signin import enroll as enroll_module
from vcard.cli import main
from vcard.profile import load_profile
from vcard.runtime import VirtualCard


@contextmanager
def inprocess_card(profile: str, state: Path | None = None, writable: bool = False) -> Iterator[md.CardData]:
    """CardAcquireContext on a card of `profile` in this process (fresh unless `state` is given)."""
    virtual = VirtualCard.open(load_profile(profile), state, ephemeral=state is None)
    try:
        with card_module.open_card(endpoint=virtual.card, writable=writable) as card_data:
            yield card_data
    finally:
        virtual.close()


USER = "alice@VCARD.TEST"


def run(*args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lab") / "ca"
    run("ca", "init", str(directory))
    return directory


def check(state: Path, profile: str, *extra: str) -> dict[str, Any]:
    result = run("logon-check", "--state", str(state), "--profile", profile, "--json", *extra)
    document: dict[str, Any] = json.loads(result.output)
    return document


def enroll(profile: str, state: Path, ca: Path, *extra: str, ok: bool = True) -> Result:
    """`vcard enroll` of USER on an in-process card kept in `state`, PIN given on the command line."""
    return run(
        "enroll",
        "--profile",
        profile,
        "--state",
        str(state),
        "--user",
        USER,
        "--ca",
        str(ca),
        *extra,
        "--pin",
        "123456",
        ok=ok,
    )


# --- the CA ----------------------------------------------------------------------------------


def test_ca_init_modes_and_refusal_to_overwrite(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    run("ca", "init", str(directory))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
    key_before = (directory / "ca.key").read_bytes()
    again = run("ca", "init", str(directory), ok=False)
    assert again.exit_code == 1
    assert "a CA already exists here; not overwriting it" in again.output
    assert "Traceback" not in again.output
    assert (directory / "ca.key").read_bytes() == key_before
    certificate = ca_module.load_ca(directory).certificate
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ca_module.CAError, match=r"ca\.crt: no CA certificate"):
        ca_module.load_ca(tmp_path)
    ca_module.init_ca(tmp_path / "a")
    ca_module.init_ca(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(ca_module.CAError, match=r"ca\.key: does not match .*ca\.crt"):
        ca_module.load_ca(tmp_path / "a")
    (tmp_path / "b" / "ca.key").write_bytes(b"garbage")
    with pytest.raises(ca_module.CAError, match=r"ca\.key: not an unencrypted PEM private key"):
        ca_module.load_ca(tmp_path / "b")
    result = enroll("piv", str(tmp_path / "card"), str(tmp_path / "b"), ok=False)
    assert result.exit_code == 1 and "ca.key: not an unencrypted PEM private key" in result.output


def test_templates_carry_what_each_target_needs(ca_dir: Path) -> None:
    authority = ca_module.load_ca(ca_dir)
    key = ca_module.new_key("rsa2048").public_key()
    windows = certinfo.facts(ca_module.issue_user(authority, key, "windows", USER))
    mit = certinfo.facts(ca_module.issue_user(authority, key, "mit", USER))
    both = certinfo.facts(ca_module.issue_user(authority, key, "both", USER))
    assert windows.upns == (USER,) and windows.pkinit_principals == ()
    assert windows.ekus == frozenset(
        {
            certinfo.EKU_SMARTCARD_LOGON.dotted_string,
            certinfo.EKU_CLIENT_AUTH.dotted_string,
        }
    )
    assert mit.pkinit_principals == (USER,) and mit.upns == ()
    assert mit.ekus == frozenset({certinfo.EKU_PKINIT_CLIENT_AUTH.dotted_string})
    assert both.upns == (USER,) and both.pkinit_principals == (USER,)
    for facts in (windows, mit, both):
        assert facts.key_usage == frozenset({"digital_signature", "key_encipherment"})
    issued = ca_module.issue_user(authority, key, "windows", USER)
    points = issued.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name is not None
    assert str(points[0].full_name[0].value).startswith("http://")


# --- enrollment then logon-check -------------------------------------------------------------


@pytest.mark.parametrize("profile", ["piv", "gids"])
def test_enrolled_certificate_is_offered(profile: str, ca_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / profile
    assert check(state, profile)["certificates"] == []
    enroll(profile, str(state), str(ca_dir), "--template", "windows")
    document = check(state, profile)
    assert document["card"] == profile
    (certificate,) = document["certificates"]
    assert certificate["offered"] is True
    assert certificate["display_name"] == USER
    assert certificate["default_container"] is True
    assert certificate["file"] == "mscp/kxc00"
    # A Windows-style certificate at an MIT KDC with the defaults: refused, as kinit shows.
    mit = check(state, profile, "--rules", "mit")["certificates"][0]
    assert mit["offered"] is False and mit["error"] == "Inconsistent key purpose"
    both = check(
        state,
        profile,
        "--rules",
        "mit",
        "--policy",
        "pkinit_eku_checking=scLogin",
        "--policy",
        "pkinit_allow_upn=on",
    )["certificates"][0]
    assert both["offered"] is True


def test_the_enrolled_key_is_the_certificate_key(ca_dir: Path) -> None:
    authority = ca_module.load_ca(ca_dir)
    with inprocess_card("gids", writable=True) as card_data:
        result = enroll_module.enroll(card_data, "gids", USER, "mit", b"123456", ca=authority)
        info = md.CardGetContainerInfo(card_data, 0)
        on_card = enroll_module.public_key_from_info(info)
        written = x509.load_der_x509_certificate(md.CardReadFile(card_data, "mscp", "kxc00"))
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert written == result.certificate
    assert written.public_key().public_bytes(der, spki) == on_card.public_bytes(der, spki)
    written.verify_directly_issued_by(authority.certificate)


def test_piv_signature_container_needs_the_signature_key_policy(ca_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "piv"
    enroll("piv", str(state), str(ca_dir), "--container", "1")
    (certificate,) = check(state, "piv")["certificates"]
    assert certificate["key_spec"] == "AT_SIGNATURE" and certificate["file"] == "mscp/ksc01"
    assert list(certificate["failed"]) == ["keyspec"]
    allowed = check(state, "piv", "--policy", "AllowSignatureOnlyKeys=on")["certificates"][0]
    assert allowed["offered"] is True


def test_piv_p256_enrollment_needs_the_ecc_policy(ca_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "piv"
    enroll("piv", str(state), str(ca_dir), "--key", "p256")
    (certificate,) = check(state, "piv")["certificates"]
    assert certificate["key_spec"] == "AT_ECDSA_P256"
    assert list(certificate["failed"]) == ["ecc"]
    assert check(state, "piv", "--policy", "EnumerateECCCerts=on")["certificates"][0]["offered"] is True
    assert check(
        state,
        "piv",
        "--rules",
        "mit",
        "--policy",
        "pkinit_eku_checking=scLogin",
        "--policy",
        "pkinit_allow_upn=on",
    )["certificates"][0]["failed"].keys() == {"client-keytype"}


def test_gids_msroots_holds_the_ca_root(ca_dir: Path) -> None:
    authority = ca_module.load_ca(ca_dir)
    with inprocess_card("gids", writable=True) as card_data:
        assert enroll_module.read_msroots(card_data) == []
        enroll_module.enroll(card_data, "gids", USER, "windows", b"123456", ca=authority, msroots=True)
        enroll_module.enroll(
            card_data, "gids", USER, "mit", b"123456", ca=authority, container=1, msroots=True
        )
        assert enroll_module.read_msroots(card_data) == [authority.certificate]  # not duplicated


def test_piv_msroots_is_refused_clearly(ca_dir: Path, tmp_path: Path) -> None:
    result = enroll("piv", str(tmp_path / "p"), str(ca_dir), "--msroots", ok=False)
    assert result.exit_code == 1
    assert "PIV has no mscp/msroots" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("profile", "key"), [("piv", "rsa2048"), ("piv", "p256"), ("gids", "rsa2048")])
def test_csr_is_signed_by_the_card_key(profile: str, key: str, tmp_path: Path) -> None:
    state = tmp_path / profile
    out = tmp_path / "alice.csr"
    result = run(
        "enroll",
        "-p",
        profile,
        "--state",
        str(state),
        "--user",
        USER,
        "--template",
        "both",
        "--key",
        key,
        "--csr",
        str(out),
        "--pin",
        "123456",
    )
    assert str(out) in result.output
    request = x509.load_pem_x509_csr(out.read_bytes())
    assert request.is_signature_valid
    requested = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert len(requested.get_values_for_type(x509.OtherName)) == 2
    with inprocess_card(profile, state) as card_data:
        on_card = enroll_module.public_key_from_info(md.CardGetContainerInfo(card_data, 0))
        assert card_module.read_certificates(card_data).certificates == []  # a CSR writes no certificate
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert request.public_key().public_bytes(der, spki) == on_card.public_bytes(der, spki)


def test_wrong_pin_costs_exactly_one_try_and_says_so(ca_dir: Path) -> None:
    authority = ca_module.load_ca(ca_dir)
    with inprocess_card("gids", writable=True) as card_data:
        with pytest.raises(enroll_module.EnrollError, match=r"user PIN \(CardAuthenticateEx\)"):
            enroll_module.enroll(card_data, "gids", USER, "windows", b"999999", ca=authority)
        with pytest.raises(md.ScardError) as second:
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"999999")
        assert second.value.attempts_remaining == 1  # of 3: the enrollment spent exactly one
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
        assert card_module.read_certificates(card_data).certificates == []


def test_bad_options_are_clear_errors(ca_dir: Path, tmp_path: Path) -> None:
    no_ca = run("enroll", "-p", "piv", "--state", str(tmp_path / "p"), "--user", USER, "--pin", "1", ok=False)
    assert "needs a CA" in no_ca.output
    bad_user = run(
        "enroll",
        "-p",
        "piv",
        "--state",
        str(tmp_path / "p"),
        "--user",
        "alice",
        "--ca",
        str(ca_dir),
        "--pin",
        "123456",
        ok=False,
    )
    assert "expected user@REALM" in bad_user.output
    bad_key = enroll("piv", str(tmp_path / "p"), str(ca_dir), "--management-key", "zz", ok=False)
    assert "not hexadecimal" in bad_key.output
    policy = run("logon-check", "-p", "piv", "--state", str(tmp_path / "p"), "--policy", "Nope", ok=False)
    assert policy.exit_code == 2 and "expected NAME=VALUE" in policy.output
    for result in (no_ca, bad_user, bad_key, policy):
        assert "Traceback" not in result.output


def test_logon_check_table_lists_every_failed_rule(ca_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "gids"
    enroll("gids", str(state), str(ca_dir), "--template", "mit")
    table = run("logon-check", "-p", "gids", "--state", str(state), "--at", "2100-01-01T00:00:00Z").output
    assert "not offered" in table
    for rule in ("time", "upn", "eku"):
        assert f"failed {rule}:" in table
    assert "failed keyusage" not in table


def test_a_failed_enrollment_leaves_no_role_authenticated(ca_dir: Path) -> None:
    authority = ca_module.load_ca(ca_dir)
    with inprocess_card("gids", writable=True) as card_data:
        with pytest.raises(enroll_module.EnrollError, match=r"CardCreateContainer\(0, KEY_GEN, p256\)"):
            enroll_module.enroll(card_data, "gids", USER, "windows", b"123456", ca=authority, key_type="p256")
        state = md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE))
        assert state & (1 << md.ROLE_USER) == 0
        md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")  # the PIN itself is untouched
        state = md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE))
        assert state & (1 << md.ROLE_USER)


def test_legacy_csp_and_force_reading_through_the_cli(ca_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "piv"
    for container in ("0", "2"):
        enroll("piv", str(state), str(ca_dir), "--container", container)

    def offered(*extra: str) -> list[bool]:
        return [c["offered"] for c in check(state, "piv", *extra)["certificates"]]

    assert offered() == [True, True]
    assert offered("--legacy-csp") == [True, False]
    assert offered("--legacy-csp", "--policy", "ForceReadingAllCertificates=on") == [True, True]
    assert list(check(state, "piv", "--legacy-csp")["certificates"][1]["failed"]) == ["read"]
