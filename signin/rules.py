"""Which card certificates a sign-in system offers, and why not: Windows, MIT Kerberos, SSSD, FreeRDP.

A pure engine: the input is the card's certificates with their container facts
(index, key spec, default container flag) in enumeration order, the policies, and a
clock; the output is one `Verdict` per certificate with every rule it failed.
Nothing here talks to a card (signin/card.py reads them through the minidriver layer).

Sources of the rule sets (documentation read, not code run; nothing here runs Windows):

- windows: Microsoft "Certificate Requirements and Enumeration" (the credential
  provider's step 8 checks, the display name, the smart-card cache index and its
  replacement rule) and "Smart Card Group Policy and Registry Settings" (the policy
  names below are those registry values under ...\\SmartCardCredentialProvider).
- mit: MIT krb5 1.20 KDC, src/plugins/preauth/pkinit (pkinit_eku_checking,
  pkinit_allow_upn; the EKU check also requires the digitalSignature key usage),
  with the client being kinit through OpenSC's PKCS#11 module.
- sssd: sss-certmap(5), the default matching rule `<KU>digitalSignature<EKU>clientAuth`.
- freerdp: FreeRDP 3 smart-card logon (libfreerdp smartcardlogon.c): only certificates
  with the smart-card-logon EKU, user taken from the UPN, else the e-mail address.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509

from minidriver import (
    AT_ECDHE_P256,
    AT_ECDHE_P384,
    AT_ECDHE_P521,
    AT_ECDSA_P256,
    AT_ECDSA_P384,
    AT_ECDSA_P521,
    AT_KEYEXCHANGE,
    AT_SIGNATURE,
)

from . import certinfo
from .certinfo import CertFacts

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


KEY_SPEC_NAMES = {
    AT_KEYEXCHANGE: "AT_KEYEXCHANGE",
    AT_SIGNATURE: "AT_SIGNATURE",
    AT_ECDSA_P256: "AT_ECDSA_P256",
    AT_ECDSA_P384: "AT_ECDSA_P384",
    AT_ECDSA_P521: "AT_ECDSA_P521",
    AT_ECDHE_P256: "AT_ECDHE_P256",
    AT_ECDHE_P384: "AT_ECDHE_P384",
    AT_ECDHE_P521: "AT_ECDHE_P521",
}


def key_spec_name(key_spec: int) -> str:
    return KEY_SPEC_NAMES.get(key_spec, f"key spec {key_spec}")


@dataclass(frozen=True)
class CardCertificate:
    """One certificate as the card presents it: the certificate plus its container's facts."""

    certificate: x509.Certificate
    container_index: int
    key_spec: int
    default_container: bool = False
    container_name: str = ""
    file_name: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome for one certificate: offered or not, and every rule that failed (rule -> why)."""

    entry: CardCertificate
    facts: CertFacts
    failed: dict[str, str]
    display_name: str = ""
    cache_index: str | None = None
    replaced_by: int | None = None  # container index whose certificate replaces this cache entry
    error: str | None = None  # the message the real system shows for the first failure, where known

    @property
    def offered(self) -> bool:
        return not self.failed


# --- Windows -----------------------------------------------------------------------------------

WINDOWS_POLICIES = {
    "AllowCertificatesWithNoEKU": "also offer certificates with no EKU, the any-purpose EKU or clientAuth",
    "AllowSignatureOnlyKeys": 'offer signature-only keys ("Allow signature keys valid for Logon")',
    "AllowTimeInvalidCertificates": "offer expired and not-yet-valid certificates",
    "EnumerateECCCerts": 'offer ECC certificates ("Allow ECC certificates to be used for logon")',
    "ForceReadingAllCertificates": "read every container even when the CSP has no PP_USER_CERTSTORE",
    "X509HintsNeeded": 'offer certificates without a UPN, the user types a hint ("Allow user name hint")',
}
WINDOWS_RULES = ("read", "time", "keyspec", "upn", "keyusage", "eku", "ecc")


@dataclass(frozen=True)
class WindowsOptions:
    policies: frozenset[str] = frozenset()
    # The Base CSP over a minidriver answers PP_USER_CERTSTORE (every container's certificates);
    # False models a CSP that does not, where only the default container's key exchange
    # certificate is read ("Certificate Requirements and Enumeration", steps 5-7) unless
    # ForceReadingAllCertificates is on.
    user_certstore: bool = True


def windows_display_name(facts: CertFacts) -> str:
    """UPN, else e-mail, else subject (Certificate Requirements and Enumeration, step 8)."""
    if facts.upns:
        return facts.upns[0]
    if facts.emails:
        return facts.emails[0]
    return facts.subject


def windows_cache_index(facts: CertFacts) -> str | None:
    """Subject + issuer; without a subject, SKI + issuer; with neither, no cache entry."""
    if not facts.subject_empty:
        return f"subject={facts.subject}|issuer={facts.issuer}"
    if facts.ski is not None:
        return f"ski={facts.ski.hex()}|issuer={facts.issuer}"
    return None


def _valid_upn(upn: str) -> bool:
    user, at, suffix = upn.rpartition("@")
    return bool(at and user and suffix)


def _windows(
    entries: list[CardCertificate],
    facts_list: list[CertFacts],
    now: datetime.datetime,
    options: WindowsOptions,
) -> list[Verdict]:
    policies = options.policies
    unknown = sorted(policies - set(WINDOWS_POLICIES))
    if unknown:
        raise ValueError(
            f"unknown Windows policies {', '.join(unknown)}: known are {', '.join(WINDOWS_POLICIES)}"
        )
    verdicts: list[Verdict] = []
    for entry, facts in zip(entries, facts_list, strict=True):
        failed: dict[str, str] = {}
        if (
            not options.user_certstore
            and "ForceReadingAllCertificates" not in policies
            and not (entry.default_container and entry.key_spec == AT_KEYEXCHANGE)
        ):
            failed["read"] = "not read: only the default container's key exchange certificate is read"
        if not facts.valid_at(now) and "AllowTimeInvalidCertificates" not in policies:
            state = "expired" if now > facts.not_after else "not yet valid"
            failed["time"] = f"{state} (valid {facts.not_before:%Y-%m-%d} to {facts.not_after:%Y-%m-%d})"
        if entry.key_spec == AT_SIGNATURE and "AllowSignatureOnlyKeys" not in policies:
            failed["keyspec"] = "in the AT_SIGNATURE part of its container"
        if not any(_valid_upn(upn) for upn in facts.upns) and "X509HintsNeeded" not in policies:
            failed["upn"] = (
                f"no valid UPN in the SAN ({', '.join(facts.upns)})" if facts.upns else "no UPN in the SAN"
            )
        if not facts.has_ku("digital_signature"):
            failed["keyusage"] = (
                "no keyUsage extension" if facts.key_usage is None else "keyUsage lacks digitalSignature"
            )
        if not facts.has_eku(certinfo.EKU_SMARTCARD_LOGON):
            relaxed = "AllowCertificatesWithNoEKU" in policies and (
                facts.ekus is None
                or facts.has_eku(certinfo.EKU_ANY)
                or facts.has_eku(certinfo.EKU_CLIENT_AUTH)
            )
            if not relaxed:
                failed["eku"] = "no EKU extension" if facts.ekus is None else "EKU lacks smart-card logon"
        if facts.key_type == "ec" and "EnumerateECCCerts" not in policies:
            failed["ecc"] = "ECC certificate"
        verdicts.append(
            Verdict(
                entry,
                facts,
                failed,
                display_name=windows_display_name(facts),
                cache_index=windows_cache_index(facts),
            )
        )
    # A later offered certificate with the same index replaces the earlier cache entry.
    last: dict[str, int] = {}
    for position, verdict in enumerate(verdicts):
        if verdict.offered and verdict.cache_index is not None:
            last[verdict.cache_index] = position
    result = []
    for position, verdict in enumerate(verdicts):
        winner = last.get(verdict.cache_index) if verdict.offered and verdict.cache_index else None
        if winner is not None and winner != position:
            verdict = dataclasses.replace(verdict, replaced_by=verdicts[winner].entry.container_index)
        result.append(verdict)
    return result


# --- MIT Kerberos (KDC 1.20 + kinit through OpenSC) ----------------------------------------

# In the order kinit meets them: it verifies its own certificate before signing the AuthPack;
# the KDC checks the EKU before the name.
MIT_RULES = ("client-time", "client-keytype", "client-sign", "eku", "name")
MIT_ERRORS = {
    "client-keytype": "Pre-authentication failed",  # kinit: krb5 1.20 signs with CKM_RSA_PKCS only
    "client-sign": "Pre-authentication failed",  # OpenSC marks the key decrypt-only
    "eku": "Inconsistent key purpose",
    "name": "Client name mismatch",
}
_OWN_CERTIFICATE = "Pre-authentication failed: Failed to verify own certificate (depth 0): certificate "
EKU_CHECKING = ("kpClientAuth", "scLogin", "none")


@dataclass(frozen=True)
class MitOptions:
    eku_checking: str = "kpClientAuth"  # the KDC's pkinit_eku_checking
    allow_upn: bool = False  # the KDC's pkinit_allow_upn
    principal: str | None = None  # the client principal kinit asks for; None = any SAN principal
    client_ec: bool = False  # krb5 >= 1.22 clients sign with EC keys too


def _mit(
    entries: list[CardCertificate], facts_list: list[CertFacts], now: datetime.datetime, options: MitOptions
) -> list[Verdict]:
    if options.eku_checking not in EKU_CHECKING:
        raise ValueError(
            f"pkinit_eku_checking must be one of {', '.join(EKU_CHECKING)}, not {options.eku_checking!r}"
        )
    verdicts = []
    for entry, facts in zip(entries, facts_list, strict=True):
        failed: dict[str, str] = {}
        if facts.key_type != "rsa" and not options.client_ec:
            failed["client-keytype"] = f"{facts.key_type} key: MIT krb5 1.20 PKINIT signs with RSA only"
        if facts.key_usage is not None and "digital_signature" not in facts.key_usage:
            failed["client-sign"] = "keyUsage lacks digitalSignature: OpenSC refuses to sign with the key"
        if now > facts.not_after:
            failed["client-time"] = "expired: kinit verifies its own certificate first"
        elif now < facts.not_before:
            failed["client-time"] = "not yet valid: kinit verifies its own certificate first"
        if options.eku_checking != "none":
            accepted = {certinfo.EKU_PKINIT_CLIENT_AUTH.dotted_string}
            if options.eku_checking == "scLogin":
                accepted.add(certinfo.EKU_SMARTCARD_LOGON.dotted_string)
            if facts.ekus is None or not accepted & facts.ekus:
                failed["eku"] = f"EKU lacks {' or '.join(sorted(accepted))}"
            elif not facts.has_ku("digital_signature"):
                failed["eku"] = "acceptable EKU but no digitalSignature key usage"
        names = list(facts.pkinit_principals) + (list(facts.upns) if options.allow_upn else [])
        if options.principal is not None:
            if options.principal not in names:
                failed["name"] = (
                    f"no SAN principal{' or UPN' if options.allow_upn else ''} {options.principal}"
                )
        elif not names:
            failed["name"] = "no id-pkinit-san" + (" or UPN" if options.allow_upn else " (UPN not allowed)")
        errors = {
            **MIT_ERRORS,
            "client-time": _OWN_CERTIFICATE
            + ("has expired" if now > facts.not_after else "is not yet valid"),
        }
        first = next((errors[rule] for rule in MIT_RULES if rule in failed), None)
        display = (facts.pkinit_principals or facts.upns or (facts.subject,))[0]
        verdicts.append(Verdict(entry, facts, failed, display_name=display, error=first))
    return verdicts


# --- SSSD ----------------------------------------------------------------------------------

SSSD_RULES = ("time", "keyusage", "eku")


def _sssd(
    entries: list[CardCertificate], facts_list: list[CertFacts], now: datetime.datetime
) -> list[Verdict]:
    verdicts = []
    for entry, facts in zip(entries, facts_list, strict=True):
        failed: dict[str, str] = {}
        if not facts.valid_at(now):
            failed["time"] = "outside its validity period (p11_child verifies the certificate)"
        if not facts.has_ku("digital_signature"):
            failed["keyusage"] = "default matchrule <KU>digitalSignature not met"
        if not facts.has_eku(certinfo.EKU_CLIENT_AUTH):
            failed["eku"] = "default matchrule <EKU>clientAuth not met"
        verdicts.append(Verdict(entry, facts, failed, display_name=facts.subject))
    return verdicts


# --- FreeRDP 3 smart-card logon ------------------------------------------------------------

FREERDP_RULES = ("eku", "user")


def _freerdp(entries: list[CardCertificate], facts_list: list[CertFacts]) -> list[Verdict]:
    verdicts = []
    for entry, facts in zip(entries, facts_list, strict=True):
        failed: dict[str, str] = {}
        if not facts.has_eku(certinfo.EKU_SMARTCARD_LOGON):
            failed["eku"] = "no smart-card logon EKU"
        user = (facts.upns or facts.emails or ("",))[0]
        if not user:
            failed["user"] = "neither UPN nor e-mail to take the user name from"
        verdicts.append(Verdict(entry, facts, failed, display_name=user or facts.subject))
    return verdicts


# --- entry point ---------------------------------------------------------------------------

RULE_SETS = {"windows": WINDOWS_RULES, "mit": MIT_RULES, "sssd": SSSD_RULES, "freerdp": FREERDP_RULES}


@dataclass(frozen=True)
class Options:
    windows: WindowsOptions = field(default_factory=WindowsOptions)
    mit: MitOptions = field(default_factory=MitOptions)


def ordered(entries: Iterable[CardCertificate]) -> list[CardCertificate]:
    """Enumeration order: the default container first, then every container by index."""
    return sorted(entries, key=lambda entry: (not entry.default_container, entry.container_index))


def evaluate(
    entries: Iterable[CardCertificate],
    rules: str = "windows",
    options: Options | None = None,
    clock: Clock = utc_now,
) -> list[Verdict]:
    """Judge every certificate under one rule set; verdicts in enumeration order."""
    if rules not in RULE_SETS:
        raise ValueError(f"unknown rule set {rules!r}: choose one of {', '.join(RULE_SETS)}")
    options = options or Options()
    listed = ordered(entries)
    facts_list = [certinfo.facts(entry.certificate) for entry in listed]
    now = clock()
    if rules == "windows":
        return _windows(listed, facts_list, now, options.windows)
    if rules == "mit":
        return _mit(listed, facts_list, now, options.mit)
    if rules == "sssd":
        return _sssd(listed, facts_list, now)
    return _freerdp(listed, facts_list)


def parse_policies(items: Iterable[str], rules: str = "windows") -> dict[str, str]:
    """`NAME=on|off` (case-insensitive names) → {canonical name: value}; ValueError names the item."""
    known = {name.lower(): name for name in POLICY_NAMES[rules]}
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        canonical = known.get(name.strip().lower())
        if not sep or canonical is None:
            choices = ", ".join(POLICY_NAMES[rules]) or f"(none: --rules {rules} has no policies)"
            raise ValueError(f"--policy {item!r}: expected NAME=VALUE with NAME one of {choices}")
        result[canonical] = value.strip()
    return result


POLICY_NAMES: Mapping[str, tuple[str, ...]] = {
    "windows": tuple(WINDOWS_POLICIES),
    "mit": ("pkinit_eku_checking", "pkinit_allow_upn", "client_ec"),
    "sssd": (),
    "freerdp": (),
}

ON = ("on", "true", "yes", "1")
OFF = ("off", "false", "no", "0")


def _boolean(name: str, value: str) -> bool:
    if value.lower() in ON:
        return True
    if value.lower() in OFF:
        return False
    raise ValueError(f"--policy {name}={value}: expected on or off")


def options_from_policies(
    rules: str, policies: Mapping[str, str], user_certstore: bool = True, principal: str | None = None
) -> Options:
    """Options for `evaluate` from parsed `--policy` values (and the user kinit would ask for)."""
    if rules == "windows":
        enabled = frozenset(name for name, value in policies.items() if _boolean(name, value))
        return Options(windows=WindowsOptions(enabled, user_certstore))
    if rules == "mit":
        eku = policies.get("pkinit_eku_checking", "kpClientAuth")
        if eku not in EKU_CHECKING:
            raise ValueError(f"--policy pkinit_eku_checking={eku}: expected one of {', '.join(EKU_CHECKING)}")
        return Options(
            mit=MitOptions(
                eku_checking=eku,
                allow_upn=_boolean("pkinit_allow_upn", policies.get("pkinit_allow_upn", "off")),
                principal=principal,
                client_ec=_boolean("client_ec", policies.get("client_ec", "off")),
            )
        )
    return Options()
