"""`vcard signin`: the Windows smart-card sign-in, step by step, with what each step costs on the card.

discovery (which minidriver binds) → enumeration (the container map, every certificate,
the sign-in rules; the certificate for --user) → PIN (CardAuthenticatePin) → signature
(the AuthPack, CardSignData) → KDC (the AS exchange, no card call) → reply (DH, decrypt,
credential cache). Every step records the SCard calls (by name), APDUs and time the
connection's meter counted while it ran, so the KDC round trip stays apart from the
card's cost.

The card work is one SCard transaction, from enumeration to the signature (Windows'
Base CSP holds one across a CryptAcquireContext/CryptSignHash sequence), and the PIN
is deauthenticated before it ends: the card is never left verified for the next client.
A `SignInSession` can sign in twice on the same card context: the second time the
minidriver's data cache (cardcf freshness) serves the container map and certificates,
which is the warm case of a Windows logon after the credential provider enumerated the
card at insertion.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

import minidriver as md
from vcard.host import Connection, PcscError

from . import card as card_module
from . import discovery as discovery_module
from . import rules as rules_module
from .certinfo import CertificateFormatError
from .pkinit import client as pkinit_client
from .pkinit import messages, transport
from .pkinit.card_signer import CardDecryptor, CardSigner

APPLETS = {discovery_module.PIV: "piv", discovery_module.GIDS: "gids"}


def registered_atr(atr: bytes) -> discovery_module.KnownAtr:
    """A Calais\\SmartCards entry for exactly this ATR, naming the inbox class minidriver (the state
    after Windows has seen the card once): discovery then needs no APDU."""
    return discovery_module.KnownAtr(
        "vcard (registered ATR)",
        atr,
        b"\xff" * len(atr),
        "Windows inbox smart card class minidriver (msclmd.dll)",
    )


class SignInError(Exception):
    """The sign-in stopped at `step`; the message is what a user needs (no traceback)."""

    def __init__(self, step: str, message: str, kdc_error: messages.KdcError | None = None) -> None:
        self.step = step
        self.kdc_error = kdc_error  # the KRB-ERROR, when the KDC refused
        super().__init__(message)

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"step": self.step, "message": str(self)}
        if self.kdc_error is not None:
            document["krb_error"] = {"code": self.kdc_error.code, "e_text": self.kdc_error.text}
        return document


@dataclass
class Step:
    name: str
    detail: str = ""
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ok: bool = True

    @property
    def apdus(self) -> int:
        return self.calls.get("SCardTransmit", 0)

    @property
    def scard_calls(self) -> int:
        return sum(self.calls.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "apdus": self.apdus,
            "scard_calls": self.scard_calls,
            "calls": self.calls,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class Options:
    user: str
    kdc: tuple[str, int]
    anchors: list[x509.Certificate]
    ccache: Path
    rules: str = "windows"
    policies: dict[str, str] = field(default_factory=dict)
    container: int | None = None
    known_atrs: tuple[discovery_module.KnownAtr, ...] = discovery_module.KNOWN_ATRS
    clock: Callable[[], datetime.datetime] = rules_module.utc_now
    timeout: float = 10.0
    key_transport: bool = False  # RSA key transport instead of Diffie-Hellman


@dataclass
class Result:
    steps: list[Step] = field(default_factory=list)
    applet: str | None = None
    certificate: dict[str, Any] | None = None
    tgt: pkinit_client.Tgt | None = None
    error: SignInError | None = None

    def card_totals(self) -> dict[str, int]:
        """SCard calls by name over every step but the KDC's (which makes none)."""
        total: Counter[str] = Counter()
        for step in self.steps:
            total.update(step.calls)
        return dict(total)

    def as_json(self) -> dict[str, Any]:
        totals = self.card_totals()
        return {
            "ok": self.error is None,
            "error": None if self.error is None else self.error.as_json(),
            "card": self.applet,
            "certificate": self.certificate,
            "steps": [step.as_json() for step in self.steps],
            "card_cost": {
                "apdus": totals.get("SCardTransmit", 0),
                "scard_calls": sum(totals.values()),
                "calls": totals,
            },
            "tgt": None
            if self.tgt is None
            else {
                "client": self.tgt.client_name,
                "server": self.tgt.server_name,
                "enctype": self.tgt.key.enctype,
                "authtime": self.tgt.authtime.isoformat(),
                "endtime": self.tgt.endtime.isoformat(),
                "kdc_certificate": self.tgt.kdc_certificate.subject.rfc4514_string(),
            },
        }


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {
        name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)
    }


class SignInSession:
    """One card connection; `sign_in` can run more than once on it (cold, then warm)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.card_data: md.CardData | None = None
        self.applet: str | None = None
        # Calls already attributed to a step. A step gets every call since the previous one ended,
        # so the connection's own (SCardEstablishContext, Connect, ...) belong to the first step.
        self._counted: dict[str, int] = {}

    @contextlib.contextmanager
    def _step(self, result: Result, name: str) -> Iterator[Step]:
        step = Step(name)
        before = self._counted
        started = time.perf_counter()
        try:
            yield step
        except SignInError:
            step.ok = False
            raise
        finally:
            step.seconds = time.perf_counter() - started
            self._counted = dict(self.connection.meter.snapshot()["calls"])
            step.calls = _diff(self._counted, before)
            result.steps.append(step)

    def sign_in(self, options: Options, pin: bytes) -> Result:
        result = Result()
        try:
            self._run(options, pin, result)
        except SignInError as error:
            result.error = error
        return result

    def close(self, result: Result | None = None) -> None:
        """CardDeleteContext, SCardDisconnect, SCardReleaseContext (counted into `result`)."""
        if result is None:
            result = Result()
        with self._step(result, "release"):
            if self.card_data is not None:
                with contextlib.suppress(md.ScardError):
                    if self.card_data.pvVendorSpecific is not None:
                        md.CardDeleteContext(self.card_data)
                self.card_data.close()
            else:
                self.connection.close()

    # --- the steps ---------------------------------------------------------------------------
    def _run(self, options: Options, pin: bytes, result: Result) -> None:
        try:
            messages.split_principal(options.user)
        except ValueError as error:
            raise SignInError("arguments", str(error)) from None
        with contextlib.ExitStack() as held:
            try:
                if self.card_data is None:
                    with self._step(result, "discovery") as step:
                        self._discover(options, step, held)
                result.applet = self.applet
                card_data = self.card_data
                assert card_data is not None
                with self._step(result, "enumeration") as step:
                    if card_data.hScard is None or not card_data.hScard.in_transaction:
                        held.enter_context(card_data.transaction())  # warm: the discovery's is not held
                    entry, result.certificate = self._enumerate(card_data, options, step)
                    if options.key_transport and entry.key_spec != md.AT_KEYEXCHANGE:
                        raise SignInError(
                            "enumeration",
                            "RSA key transport needs an RSA key-exchange key (AT_KEYEXCHANGE), not "
                            f"{rules_module.key_spec_name(entry.key_spec)}",
                        )
                with self._step(result, "pin") as step:
                    held.callback(self._deauthenticate, card_data)  # also when the PIN or signature fails
                    self._pin(card_data, pin, step)
                with self._step(result, "signature") as step:
                    request = self._sign(card_data, entry, options, step)
                    if not options.key_transport:
                        held.close()  # deauthenticate, end the transaction: counted with the signature
                decrypt_key = None
                if options.key_transport:  # the card decrypts the reply key: keep the session
                    decrypt_key = CardDecryptor(card_data, entry.container_index)
                self._kdc_and_reply(options, request, result, decrypt_key, held)
            except (md.ScardError, PcscError) as error:  # a transaction failed, or the card went away
                raise SignInError("card", f"card: {error}") from None

    def _kdc_and_reply(
        self,
        options: Options,
        request: pkinit_client.Request,
        result: Result,
        decrypt_key: CardDecryptor | None,
        held: contextlib.ExitStack,
    ) -> None:
        with self._step(result, "kdc") as step:
            try:
                reply = transport.exchange(options.kdc, request.der, options.timeout)
            except transport.TransportError as error:
                raise SignInError("kdc", str(error)) from None
            step.detail = (
                f"AS-REQ {len(request.der)} bytes to {options.kdc[0]}:{options.kdc[1]}, reply {len(reply)}"
            )
        with self._step(result, "reply") as step:
            try:
                tgt = pkinit_client.process_reply(
                    request, reply, options.anchors, options.clock(), decrypt_key
                )
            except messages.KdcError as error:
                raise SignInError("reply", str(error), error) from None
            except messages.ReplyError as error:
                raise SignInError("reply", f"KDC reply refused: {error}") from None
            except md.ScardError as error:
                raise SignInError(
                    "reply", f"CardRSADecrypt failed with SCARD_{error.name} ({error})"
                ) from None
            finally:
                held.close()  # key transport: deauthenticate and end the transaction, counted here
            try:
                tgt.write_ccache(options.ccache)
            except OSError as error:
                raise SignInError("reply", f"{options.ccache}: {error.strerror or error}") from None
            result.tgt = tgt
            how = "RSA key transport, reply key decrypted on the card" if decrypt_key else "Diffie-Hellman"
            step.detail = f"TGT {tgt.server_name} for {tgt.client_name} in FILE:{options.ccache} ({how})"

    def _discover(self, options: Options, step: Step, held: contextlib.ExitStack) -> None:
        """Bind a minidriver and CardAcquireContext, inside the transaction the sign-in then keeps."""
        atr = self.connection.atr
        registered = next((entry for entry in options.known_atrs if entry.matches(atr)), None)
        if registered is not None:
            # The registry names the class minidriver; its CardAcquireContext picks PIV or GIDS mode.
            applet = APPLETS.get(registered.name)
            step.detail = (
                f"ATR {atr.hex().upper()} registered as {registered.name!r}: {registered.minidriver}"
            )
        else:
            found = discovery_module.discover(self.connection, options.known_atrs)
            if found.binding is None:
                raise SignInError("discovery", f"no minidriver bound: {found.reason}")
            applet = APPLETS.get(found.binding)
            if applet is None:
                raise SignInError("discovery", f"card {found.binding!r}: a minidriver vcard does not model")
            step.detail = f"{found.minidriver}; {found.reason}"
        card_data = md.CardData.from_connection(self.connection, applet=applet, idle_reset_seconds=None)
        held.enter_context(card_data.transaction())
        try:
            md.CardAcquireContext(card_data, 0)
        except md.ScardError as error:
            raise SignInError("discovery", f"CardAcquireContext: {error}") from None
        context = card_data.pvVendorSpecific
        assert context is not None
        self.card_data, self.applet = card_data, context.backend.name

    def _enumerate(
        self, card_data: md.CardData, options: Options, step: Step
    ) -> tuple[rules_module.CardCertificate, dict[str, Any]]:
        try:
            contents = card_module.read_certificates(card_data, container_info=False)
        except card_module.CardReadError as error:
            raise SignInError("enumeration", str(error)) from None
        try:
            rule_options = rules_module.options_from_policies(
                options.rules, options.policies, True, options.user
            )
            verdicts = rules_module.evaluate(
                contents.certificates, options.rules, rule_options, options.clock
            )
        except (ValueError, CertificateFormatError) as error:
            raise SignInError("enumeration", f"certificate rules: {error}") from None
        wanted = options.user.casefold()
        chosen = None
        for verdict in verdicts:
            if options.container is not None:
                if verdict.entry.container_index != options.container:
                    continue
            else:
                names = {name.casefold() for name in (*verdict.facts.upns, *verdict.facts.pkinit_principals)}
                if wanted not in names:
                    continue
            if not verdict.offered:
                failed = "; ".join(f"{rule}: {reason}" for rule, reason in verdict.failed.items())
                raise SignInError(
                    "enumeration",
                    f"container {verdict.entry.container_index}'s certificate is not offered by the "
                    f"{options.rules} rules ({failed})",
                )
            chosen = verdict
            break
        count = len(verdicts)
        if chosen is None:
            which = f"container {options.container}" if options.container is not None else options.user
            raise SignInError(
                "enumeration", f"no certificate for {which} among the card's {count} certificate(s)"
            )
        step.detail = (
            f"{count} certificate(s); container {chosen.entry.container_index} offered: {chosen.display_name}"
        )
        return chosen.entry, {
            "container": chosen.entry.container_index,
            "key_spec": rules_module.key_spec_name(chosen.entry.key_spec),
            "display_name": chosen.display_name,
            "subject": chosen.facts.subject,
            "file": chosen.entry.file_name,
        }

    @staticmethod
    def _deauthenticate(card_data: md.CardData) -> None:
        with contextlib.suppress(md.ScardError):
            md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)

    @staticmethod
    def _sign(
        card_data: md.CardData, entry: rules_module.CardCertificate, options: Options, step: Step
    ) -> pkinit_client.Request:
        signer = CardSigner(card_data, entry.container_index, entry.key_spec, entry.certificate)
        try:
            request = pkinit_client.build_request(
                options.user, signer, options.clock(), key_transport=options.key_transport
            )
        except md.ScardError as error:
            raise SignInError("signature", f"CardSignData failed with SCARD_{error.name} ({error})") from None
        step.detail = (
            f"AuthPack signed by container {entry.container_index} "
            f"({rules_module.key_spec_name(entry.key_spec)}, {signer.signature_algorithm})"
        )
        return request

    def _pin(self, card_data: md.CardData, pin: bytes, step: Step) -> None:
        try:
            md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, pin)
        except md.ScardError as error:
            left = error.attempts_remaining
            tries = f", {left} tr{'y' if left == 1 else 'ies'} left" if left is not None else ""
            what = "wrong PIN: " if error.code == md.Scard.W_WRONG_CHV else ""
            raise SignInError(
                "pin", f"{what}CardAuthenticatePin failed with SCARD_{error.name} (0x{error.code:08X}){tries}"
            ) from None
        step.detail = "user PIN verified"
