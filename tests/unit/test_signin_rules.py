"""Sign-in rule sets: each Windows rule in isolation, each policy's exact effect, the other systems."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from signin_support import (
    BOTH_STYLE,
    MIT_STYLE,
    NO_DIGITAL_SIGNATURE,
    NOW,
    SCLOGIN_ONLY,
    USER,
    WINDOWS_STYLE,
    Spec,
    build,
    clock,
)

import minidriver as md
from signin import certinfo, rules
from signin.rules import CardCertificate, MitOptions, Options, WindowsOptions

GOOD = WINDOWS_STYLE


def entry(
    spec: Spec, index: int = 0, key_spec: int = md.AT_KEYEXCHANGE, default: bool = True
) -> CardCertificate:
    return CardCertificate(build(spec), index, key_spec, default_container=default)


def windows(
    entries: list[CardCertificate], *policies: str, user_certstore: bool = True
) -> list[rules.Verdict]:
    options = Options(windows=WindowsOptions(frozenset(policies), user_certstore))
    return rules.evaluate(entries, "windows", options, clock)


def one(card_cert: CardCertificate, *policies: str, user_certstore: bool = True) -> rules.Verdict:
    (verdict,) = windows([card_cert], *policies, user_certstore=user_certstore)
    return verdict


# --- Windows: one certificate per rule, failing exactly that rule ------------------------------

FAIL_EXACTLY = {
    "time": (dataclasses.replace(GOOD, not_after=NOW - datetime.timedelta(days=1)), md.AT_KEYEXCHANGE),
    "keyspec": (GOOD, md.AT_SIGNATURE),
    "upn": (dataclasses.replace(GOOD, upn=None), md.AT_KEYEXCHANGE),
    "keyusage": (dataclasses.replace(GOOD, digital_signature=False), md.AT_KEYEXCHANGE),
    "eku": (dataclasses.replace(GOOD, ekus=[ExtendedKeyUsageOID.CLIENT_AUTH]), md.AT_KEYEXCHANGE),
    "ecc": (dataclasses.replace(GOOD, ec_key=True), md.AT_ECDSA_P256),
}


def test_a_good_windows_logon_certificate_is_offered() -> None:
    verdict = one(entry(GOOD))
    assert verdict.offered
    assert verdict.failed == {}
    assert verdict.display_name == USER


@pytest.mark.parametrize("rule", sorted(FAIL_EXACTLY))
def test_each_windows_rule_fails_alone(rule: str) -> None:
    spec, key_spec = FAIL_EXACTLY[rule]
    verdict = one(entry(spec, key_spec=key_spec))
    assert not verdict.offered
    assert set(verdict.failed) == {rule}


def test_not_yet_valid_fails_time_only() -> None:
    spec = dataclasses.replace(GOOD, not_before=NOW + datetime.timedelta(days=1))
    verdict = one(entry(spec))
    assert set(verdict.failed) == {"time"}
    assert "not yet valid" in verdict.failed["time"]


def test_the_clock_is_the_one_injected() -> None:
    spec = dataclasses.replace(GOOD, not_after=NOW + datetime.timedelta(hours=1))
    later = NOW + datetime.timedelta(hours=2)
    assert rules.evaluate([entry(spec)], "windows", clock=clock)[0].offered
    assert set(rules.evaluate([entry(spec)], "windows", clock=lambda: later)[0].failed) == {"time"}


def test_a_malformed_upn_fails_upn_only() -> None:
    verdict = one(entry(dataclasses.replace(GOOD, upn="alice")))
    assert set(verdict.failed) == {"upn"}


def test_no_key_usage_extension_fails_keyusage_only() -> None:
    verdict = one(entry(dataclasses.replace(GOOD, key_usage=False)))
    assert set(verdict.failed) == {"keyusage"}


def test_legacy_csp_reads_only_the_default_key_exchange_certificate() -> None:
    default = entry(GOOD, 0, default=True)
    other = entry(dataclasses.replace(GOOD, subject="bob", upn="bob@VCARD.TEST"), 3, default=False)
    first, second = windows([other, default], user_certstore=False)
    assert first.entry.container_index == 0 and first.offered  # default container first
    assert set(second.failed) == {"read"}


def test_enumeration_order_is_default_container_first_then_by_index() -> None:
    entries = [entry(GOOD, 5, default=False), entry(GOOD, 2, default=True), entry(GOOD, 1, default=False)]
    assert [v.entry.container_index for v in windows(entries)] == [2, 1, 5]


# --- Windows policies flip exactly what they should ------------------------------------------

SIGNATURE_KEY = entry(GOOD, 1, md.AT_SIGNATURE, default=False)
EXPIRED = entry(dataclasses.replace(GOOD, not_after=NOW - datetime.timedelta(days=1)), 2, default=False)
NOT_YET = entry(dataclasses.replace(GOOD, not_before=NOW + datetime.timedelta(days=1)), 3, default=False)
NO_UPN = entry(dataclasses.replace(GOOD, upn=None), 4, default=False)
NO_EKU = entry(dataclasses.replace(GOOD, ekus=None), 5, default=False)
ANY_EKU = entry(
    dataclasses.replace(GOOD, ekus=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), 6, default=False
)
CLIENT_AUTH_ONLY = entry(dataclasses.replace(GOOD, ekus=[ExtendedKeyUsageOID.CLIENT_AUTH]), 7, default=False)
EMAIL_EKU = entry(dataclasses.replace(GOOD, ekus=[ExtendedKeyUsageOID.EMAIL_PROTECTION]), 8, default=False)
ECC = entry(dataclasses.replace(GOOD, ec_key=True), 9, md.AT_ECDSA_P256, default=False)
NO_DS = entry(dataclasses.replace(GOOD, digital_signature=False), 10, default=False)
DEFAULT_GOOD = entry(GOOD, 0, default=True)
CARD = [
    DEFAULT_GOOD,
    SIGNATURE_KEY,
    EXPIRED,
    NOT_YET,
    NO_UPN,
    NO_EKU,
    ANY_EKU,
    CLIENT_AUTH_ONLY,
    EMAIL_EKU,
    ECC,
    NO_DS,
]

FLIPS = {
    "AllowSignatureOnlyKeys": {1},
    "AllowTimeInvalidCertificates": {2, 3},
    "X509HintsNeeded": {4},
    "AllowCertificatesWithNoEKU": {5, 6, 7},
    "EnumerateECCCerts": {9},
}


def _offered(verdicts: list[rules.Verdict]) -> set[int]:
    return {v.entry.container_index for v in verdicts if v.offered}


def test_without_policies_only_the_good_certificate_is_offered() -> None:
    assert _offered(windows(CARD)) == {0}


@pytest.mark.parametrize("policy", sorted(FLIPS))
def test_each_policy_flips_exactly_its_certificates(policy: str) -> None:
    before = _offered(windows(CARD))
    after = _offered(windows(CARD, policy))
    assert after - before == FLIPS[policy]
    assert before - after == set()


def test_force_reading_all_certificates_flips_exactly_the_unread_ones() -> None:
    legacy = [DEFAULT_GOOD, entry(GOOD, 4, default=False), SIGNATURE_KEY]
    before = windows(legacy, user_certstore=False)
    after = windows(legacy, "ForceReadingAllCertificates", user_certstore=False)
    assert {v.entry.container_index for v in before if "read" in v.failed} == {4, 1}
    assert _offered(after) - _offered(before) == {4}  # 1 is still an AT_SIGNATURE key
    assert {v.entry.container_index: set(v.failed) for v in after} == {0: set(), 1: {"keyspec"}, 4: set()}
    # With PP_USER_CERTSTORE (the Base CSP) the policy changes nothing.
    assert _offered(windows(legacy, "ForceReadingAllCertificates")) == _offered(windows(legacy))


def test_every_policy_together_still_refuses_what_no_policy_covers() -> None:
    offered = _offered(windows(CARD, *rules.WINDOWS_POLICIES))
    assert offered == set(range(11)) - {8, 10}  # e-mail-protection EKU, no digitalSignature


# --- display name and smart-card cache index -------------------------------------------------


def test_display_name_is_upn_then_email_then_subject() -> None:
    with_upn = one(entry(dataclasses.replace(GOOD, email="a@example.test")), "X509HintsNeeded")
    with_email = one(entry(dataclasses.replace(GOOD, upn=None, email="a@example.test")), "X509HintsNeeded")
    subject_only = one(entry(dataclasses.replace(GOOD, upn=None)), "X509HintsNeeded")
    assert with_upn.display_name == USER
    assert with_email.display_name == "a@example.test"
    assert subject_only.display_name == "CN=alice"


def test_cache_index_subject_then_ski_then_none() -> None:
    by_subject = one(entry(GOOD))
    by_ski = one(entry(dataclasses.replace(GOOD, subject=None)))
    neither = one(entry(dataclasses.replace(GOOD, subject=None, ski=False)))
    assert by_subject.cache_index == "subject=CN=alice|issuer=CN=rules test CA"
    assert by_ski.cache_index is not None and by_ski.cache_index.startswith("ski=")
    assert by_ski.facts.ski is not None and by_ski.facts.ski.hex() in by_ski.cache_index
    assert neither.cache_index is None


def test_a_later_certificate_with_the_same_index_replaces_the_cache_entry() -> None:
    first, other, second = windows(
        [
            entry(GOOD, 0, default=True),
            entry(dataclasses.replace(GOOD, subject="bob"), 1, default=False),
            entry(GOOD, 2, default=False),
        ]
    )
    assert first.replaced_by == 2
    assert other.replaced_by is None and second.replaced_by is None


# --- MIT (pkinit_eku_checking x pkinit_allow_upn), as measured with kinit on Debian 12 ----------


def mit(
    spec: Spec,
    eku: str = "kpClientAuth",
    allow_upn: bool = False,
    key_spec: int = md.AT_KEYEXCHANGE,
    principal: str | None = USER,
) -> rules.Verdict:
    options = Options(mit=MitOptions(eku, allow_upn, principal))
    (verdict,) = rules.evaluate([entry(spec, key_spec=key_spec)], "mit", options, clock)
    return verdict


@pytest.mark.parametrize(
    ("eku", "allow_upn", "failed", "error"),
    [
        ("kpClientAuth", False, {"eku", "name"}, "Inconsistent key purpose"),
        ("kpClientAuth", True, {"eku"}, "Inconsistent key purpose"),
        ("scLogin", False, {"name"}, "Client name mismatch"),
        ("scLogin", True, set(), None),
    ],
)
def test_mit_windows_style_certificate(
    eku: str, allow_upn: bool, failed: set[str], error: str | None
) -> None:
    verdict = mit(WINDOWS_STYLE, eku, allow_upn)
    assert set(verdict.failed) == failed
    assert verdict.error == error


@pytest.mark.parametrize("eku", ["kpClientAuth", "scLogin"])
def test_mit_style_and_both_sign_in_with_either_eku_checking(eku: str) -> None:
    assert mit(MIT_STYLE, eku).offered
    assert mit(BOTH_STYLE, eku).offered
    assert mit(BOTH_STYLE, eku, allow_upn=True).offered


def test_mit_no_digital_signature_fails_on_the_client() -> None:
    strict = mit(NO_DIGITAL_SIGNATURE, "scLogin", True)
    assert set(strict.failed) == {"client-sign", "eku"}
    assert strict.error == "Pre-authentication failed"
    relaxed = mit(NO_DIGITAL_SIGNATURE, "none", True)
    assert set(relaxed.failed) == {"client-sign"}


def test_mit_acceptable_eku_without_digital_signature_is_inconsistent_at_the_kdc() -> None:
    spec = dataclasses.replace(MIT_STYLE, key_usage=False)  # no keyUsage: OpenSC signs, the KDC refuses
    verdict = mit(spec)
    assert set(verdict.failed) == {"eku"}
    assert verdict.error == "Inconsistent key purpose"


def test_mit_1_20_client_signs_only_with_rsa() -> None:
    verdict = mit(dataclasses.replace(WINDOWS_STYLE, ec_key=True), "scLogin", True, md.AT_ECDSA_P256)
    assert set(verdict.failed) == {"client-keytype"}
    options = Options(mit=MitOptions("scLogin", True, USER, client_ec=True))
    ec_entry = entry(dataclasses.replace(WINDOWS_STYLE, ec_key=True), key_spec=md.AT_ECDSA_P256)
    assert rules.evaluate([ec_entry], "mit", options, clock)[0].offered


def test_mit_principal_must_match_the_san() -> None:
    assert set(mit(MIT_STYLE, principal="bob@VCARD.TEST").failed) == {"name"}
    assert mit(MIT_STYLE, principal=None).offered


@pytest.mark.parametrize(
    ("shift", "ending"), [(-400, "certificate has expired"), (+400, "certificate is not yet valid")]
)
def test_mit_client_verifies_its_own_certificate_time(shift: int, ending: str) -> None:
    later = dataclasses.replace(MIT_STYLE, not_before=NOW + datetime.timedelta(days=shift))
    spec = dataclasses.replace(later, not_after=later.not_before + datetime.timedelta(days=1))
    verdict = mit(spec)
    assert set(verdict.failed) == {"client-time"}
    assert verdict.error == f"Pre-authentication failed: Failed to verify own certificate (depth 0): {ending}"


# --- SSSD default matchrule and FreeRDP ------------------------------------------------------


def _single(spec: Spec, rule_set: str) -> rules.Verdict:
    (verdict,) = rules.evaluate([entry(spec)], rule_set, clock=clock)
    return verdict


def test_sssd_default_rule_needs_client_auth_and_digital_signature() -> None:
    assert _single(WINDOWS_STYLE, "sssd").offered
    assert set(_single(SCLOGIN_ONLY, "sssd").failed) == {"eku"}
    assert set(_single(dataclasses.replace(WINDOWS_STYLE, digital_signature=False), "sssd").failed) == {
        "keyusage"
    }
    assert set(_single(MIT_STYLE, "sssd").failed) == {"eku"}


def test_freerdp_needs_sclogin_and_a_user_name() -> None:
    assert _single(WINDOWS_STYLE, "freerdp").offered
    assert _single(SCLOGIN_ONLY, "freerdp").offered
    assert set(_single(MIT_STYLE, "freerdp").failed) == {"eku", "user"}
    email_only = _single(dataclasses.replace(WINDOWS_STYLE, upn=None, email="a@example.test"), "freerdp")
    assert email_only.offered and email_only.display_name == "a@example.test"
    assert set(_single(dataclasses.replace(WINDOWS_STYLE, upn=None), "freerdp").failed) == {"user"}


def test_the_same_certificates_side_by_side() -> None:
    """Windows-style vs SC-logon-only vs MIT-style: the verdicts users trip over."""
    table = {
        name: {rule_set: _single(spec, rule_set).offered for rule_set in ("windows", "sssd", "freerdp")}
        for name, spec in {"win": WINDOWS_STYLE, "sconly": SCLOGIN_ONLY, "mit": MIT_STYLE}.items()
    }
    assert table == {
        "win": {"windows": True, "sssd": True, "freerdp": True},
        "sconly": {"windows": True, "sssd": False, "freerdp": True},
        "mit": {"windows": False, "sssd": False, "freerdp": False},
    }


# --- certificate facts and bad input ---------------------------------------------------------


def test_krb5_principal_name_round_trip() -> None:
    for principal in ("alice@VCARD.TEST", "krbtgt/VCARD.TEST@VCARD.TEST"):
        assert (
            certinfo.decode_krb5_principal_name(certinfo.encode_krb5_principal_name(principal)) == principal
        )


def test_a_malformed_upn_other_name_is_a_clear_error() -> None:
    spec = dataclasses.replace(GOOD, upn=None)
    certificate = build(spec)
    bad = x509.OtherName(certinfo.OID_UPN, b"\x04\x03abc")  # OCTET STRING, not UTF8String
    builder = (
        x509.CertificateBuilder()
        .subject_name(certificate.subject)
        .issuer_name(certificate.issuer)
        .public_key(certificate.public_key())
        .serial_number(1)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.SubjectAlternativeName([bad]), critical=False)
    )
    signed = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    with pytest.raises(certinfo.CertificateFormatError, match="UPN otherName: not a UTF8String"):
        certinfo.facts(signed)


def test_unknown_rule_set_and_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown rule set 'kerberos'"):
        rules.evaluate([], "kerberos")
    with pytest.raises(ValueError, match="unknown Windows policies AllowEverything"):
        windows([entry(GOOD)], "AllowEverything")
    with pytest.raises(ValueError, match="AllowSignatureOnlyKeys"):
        rules.parse_policies(["AllowSignatureKeys=on"])
    with pytest.raises(ValueError, match="expected on or off"):
        rules.options_from_policies("windows", {"EnumerateECCCerts": "maybe"})
    with pytest.raises(ValueError, match="pkinit_eku_checking"):
        rules.options_from_policies("mit", {"pkinit_eku_checking": "kpKDC"})
    assert rules.parse_policies(["enumerateecccerts=ON"]) == {"EnumerateECCCerts": "ON"}
