"""Provisioning helpers for tests, benchmarks and demos: put keys and certificates on a card.

Host-side tooling (it was part of the minidriver package and moved here with the
rest of the test infrastructure). Only APDUs through a transport (the layer's rule): authenticate the PIV
management key, GENERATE a key pair in a slot, PUT DATA a certificate whose
public key is the card's key (issued by a throwaway host CA, which is all a
minidriver test needs of a certificate). GIDS provisioning follows the same
path through the minidriver API itself (CardCreateContainer + CardWriteFile).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from minidriver.backends.base import tlv_dict, tlv_encode
from signin.ca import certificate_for
from signin.enroll import admin_response
from vcard.host import ApduError, Link, SmartCardProtocol

DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
PIV_AID = bytes.fromhex("A00000030800001000")
PIV_CERT_OBJECTS = {0x9A: 0x5FC105, 0x9C: 0x5FC10A, 0x9D: 0x5FC10B, 0x9E: 0x5FC101}
PIV_ALGORITHMS = {
    "rsa1024": 0x06,
    "rsa2048": 0x07,
    "rsa3072": 0x05,
    "rsa4096": 0x16,
    "p256": 0x11,
    "p384": 0x14,
}

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class PivProvisioner:
    """Put keys and certificates on a PIV card over APDUs (management key authentication first)."""

    def __init__(self, link: Link, management_key: bytes = DEFAULT_MANAGEMENT_KEY) -> None:
        self.apdu = SmartCardProtocol(link)
        self.management_key = management_key

    def select(self) -> None:
        self.apdu.send_apdu(0x00, 0xA4, 0x04, 0x00, PIV_AID)

    def authenticate(self) -> None:
        """External authentication with the 3DES management key (9B)."""
        answer = self.apdu.send_apdu(0x00, 0x87, 0x03, 0x9B, tlv_encode(0x7C, tlv_encode(0x81, b"")))
        challenge = tlv_dict(tlv_dict(answer)[0x7C])[0x81]
        response = admin_response(self.management_key, challenge)
        self.apdu.send_apdu(0x00, 0x87, 0x03, 0x9B, tlv_encode(0x7C, tlv_encode(0x82, response)), le=None)

    def generate(self, slot: int, algorithm: str, pin_policy: int | None = None) -> PublicKey:
        """GENERATE ASYMMETRIC KEY PAIR; returns the public key."""
        template = tlv_encode(0x80, bytes([PIV_ALGORITHMS[algorithm]]))
        if pin_policy is not None:
            template += tlv_encode(0xAA, bytes([pin_policy]))
        answer = self.apdu.send_apdu(0x00, 0x47, 0x00, slot, tlv_encode(0xAC, template))
        public = tlv_dict(tlv_dict(answer)[0x7F49])
        if algorithm.startswith("rsa"):
            n = int.from_bytes(public[0x81], "big")
            e = int.from_bytes(public[0x82], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        curve: ec.EllipticCurve = ec.SECP256R1() if algorithm == "p256" else ec.SECP384R1()
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, public[0x86])

    def put_certificate(self, slot: int, certificate: bytes) -> None:
        tag = PIV_CERT_OBJECTS[slot]
        body = tlv_encode(0x70, certificate) + tlv_encode(0x71, b"\x00") + tlv_encode(0xFE, b"")
        data = tlv_encode(0x5C, tag.to_bytes(3, "big")) + tlv_encode(0x53, body)
        self.apdu.send_apdu(0x00, 0xDB, 0x3F, 0xFF, data, le=None)

    def provision(
        self, slots: dict[int, str], pin_policies: dict[int, int] | None = None
    ) -> dict[int, PublicKey]:
        """Generate a key and store a certificate in each slot: {0x9A: "rsa2048", 0x9C: "p256", ...}."""
        pin_policies = pin_policies or {}
        self.select()
        self.authenticate()
        keys: dict[int, PublicKey] = {}
        try:
            for slot, algorithm in slots.items():
                key = self.generate(slot, algorithm, pin_policies.get(slot))
                self.put_certificate(slot, certificate_for(key, f"vcard slot {slot:02X}"))
                keys[slot] = key
        finally:
            self.logout()
        return keys

    def logout(self) -> None:
        """Leave nothing authenticated (as yubico-piv-tool does by disconnecting with a reset)."""
        reset = getattr(self.apdu.link, "reset", None)
        if callable(reset):
            reset()
            return
        with contextlib.suppress(ApduError):
            self.apdu.send_apdu(0x80, 0x5F, 0x00, 0x00, b"\xff", le=None)  # vendor DEAUTHENTICATE, all roles


def provision_gids(card_data: Any, pin: bytes = b"123456") -> dict[int, rsa.RSAPublicKey]:
    """Through the minidriver API: container 0 = generated key-exchange key + kxc00,
    container 1 = imported signature key + ksc01 (what a Windows enrolment leaves)."""
    import minidriver as api
    from minidriver.constants import (
        AT_KEYEXCHANGE,
        AT_SIGNATURE,
        CARD_CREATE_CONTAINER_KEY_GEN,
        CARD_CREATE_CONTAINER_KEY_IMPORT,
        CARD_FILE_ACCESS_CONDITION,
        PIN_SET_ALL_ROLES,
        ROLE_USER,
    )
    from minidriver.structures import PRIVATEKEYBLOB, PUBLICKEYBLOB

    access = CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc
    api.CardAuthenticateEx(card_data, ROLE_USER, 0, pin)
    api.CardCreateContainer(card_data, 0, CARD_CREATE_CONTAINER_KEY_GEN, AT_KEYEXCHANGE, 2048, b"")
    blob = PUBLICKEYBLOB.unpack(api.CardGetContainerInfo(card_data, 0).pbKeyExPublicKey)
    generated = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    api.CardCreateFile(card_data, "mscp", "kxc00", 0, access)
    api.CardWriteFile(card_data, "mscp", "kxc00", 0, certificate_for(generated, "gids kxc00"))
    private = rsa.generate_private_key(65537, 2048)
    n = private.private_numbers()
    key_blob = PRIVATEKEYBLOB(n.public_numbers.n, 65537, n.p, n.q, n.dmp1, n.dmq1, n.iqmp, n.d).pack()
    api.CardCreateContainer(card_data, 1, CARD_CREATE_CONTAINER_KEY_IMPORT, AT_SIGNATURE, 2048, key_blob)
    api.CardCreateFile(card_data, "mscp", "ksc01", 0, access)
    api.CardWriteFile(card_data, "mscp", "ksc01", 0, certificate_for(private.public_key(), "gids ksc01"))
    api.CardDeauthenticateEx(card_data, PIN_SET_ALL_ROLES, 0)
    return {0: generated, 1: private.public_key()}


# --- OpenSC's minidriver API test sequence (src/tests/opensc-minidriver-test.c, apiTests) -------


def opensc_api_sequence(
    card_data: object, pin: bytes, wrong_pin: bytes = b"3456"
) -> list[tuple[str, bool, str]]:
    """Run the API test sequence of OpenSC's minidriver test; returns (step, passed, detail) per check.

    Expectations follow the spec where OpenSC's own are OpenSC-specific: CP_CARD_READ_ONLY
    and CP_SUPPORTS_WIN_X509_ENROLLMENT must agree with the card (PIV read-only, GIDS
    writable), CP_CARD_CACHE_MODE must be one of the three modes, CP_CARD_PIN_STRENGTH_VERIFY
    must include PLAINTEXT, and mscp/msroots (optional per the spec) is not required.
    """
    import minidriver as api
    from minidriver.constants import (
        AT_SIGNATURE,
        CP_CARD_AUTHENTICATED_STATE,
        CP_CARD_CACHE_MODE,
        CP_CARD_CAPABILITIES,
        CP_CARD_FREE_SPACE,
        CP_CARD_GUID,
        CP_CARD_KEYSIZES,
        CP_CARD_LIST_PINS,
        CP_CARD_PIN_INFO,
        CP_CARD_PIN_STRENGTH_VERIFY,
        CP_CARD_READ_ONLY,
        CP_CARD_SERIAL_NO,
        CP_KEY_IMPORT_SUPPORT,
        CP_SUPPORTS_WIN_X509_ENROLLMENT,
        IS_PIN_SET,
        ROLE_USER,
        wszCARD_USER_USER,
    )
    from minidriver.errors import Scard, ScardError
    from minidriver.structures import PIN_INFO

    assert isinstance(card_data, api.CardData)
    results: list[tuple[str, bool, str]] = []

    def step(
        name: str, call: Callable[[], object], check: Callable[[object], bool] = lambda _: True
    ) -> object:
        try:
            value = call()
        except ScardError as error:
            results.append((name, False, error.name))
            return None
        ok = bool(check(value))
        results.append((name, ok, "" if ok else repr(value)[:120]))
        return value

    def prop(name: str, flags: int = 0) -> Callable[[], int]:
        return lambda: api.dword(api.CardGetProperty(card_data, name, None, flags))

    step("CardAcquireContext", lambda: api.CardAcquireContext(card_data, 0))
    step("CardQueryFreeSpace", lambda: api.CardQueryFreeSpace(card_data, 0))
    step(
        "CardGetProperty(CP_CARD_FREE_SPACE)",
        lambda: api.CardGetProperty(card_data, CP_CARD_FREE_SPACE),
        lambda v: isinstance(v, bytes) and len(v) == 16,
    )
    step("CardQueryCapabilities", lambda: api.CardQueryCapabilities(card_data))
    step(
        "CardGetProperty(CP_CARD_CAPABILITIES)",
        lambda: api.CardGetProperty(card_data, CP_CARD_CAPABILITIES),
        lambda v: isinstance(v, bytes) and len(v) == 12,
    )
    step("CardQueryKeySizes", lambda: api.CardQueryKeySizes(card_data, AT_SIGNATURE, 0))
    step(
        "CardGetProperty(CP_CARD_KEYSIZES)",
        lambda: api.CardGetProperty(card_data, CP_CARD_KEYSIZES, None, AT_SIGNATURE),
        lambda v: isinstance(v, bytes) and len(v) == 20,
    )
    ctx = card_data.pvVendorSpecific
    read_only = bool(ctx.backend.read_only) if ctx is not None else None
    step("CardGetProperty(CP_CARD_READ_ONLY)", prop(CP_CARD_READ_ONLY), lambda v: bool(v) == read_only)
    step("CardGetProperty(CP_CARD_CACHE_MODE)", prop(CP_CARD_CACHE_MODE), lambda v: v in (1, 2, 3))
    step(
        "CardGetProperty(CP_SUPPORTS_WIN_X509_ENROLLMENT)",
        prop(CP_SUPPORTS_WIN_X509_ENROLLMENT),
        lambda v: bool(v) == (not read_only),
    )
    step(
        "CardGetProperty(CP_CARD_GUID)",
        lambda: api.CardGetProperty(card_data, CP_CARD_GUID),
        lambda v: isinstance(v, bytes) and len(v) == 16,
    )
    step(
        "CardGetProperty(CP_CARD_SERIAL_NO)",
        lambda: api.CardGetProperty(card_data, CP_CARD_SERIAL_NO),
        lambda v: isinstance(v, bytes) and len(v) > 0,
    )
    step(
        "CardGetProperty(CP_CARD_PIN_INFO)",
        lambda: PIN_INFO.unpack(api.CardGetProperty(card_data, CP_CARD_PIN_INFO, 36, ROLE_USER)),
        lambda v: isinstance(v, PIN_INFO) and v.dwVersion == 6,
    )
    step(
        "CardGetProperty(CP_CARD_LIST_PINS)",
        prop(CP_CARD_LIST_PINS),
        lambda v: isinstance(v, int) and IS_PIN_SET(v, ROLE_USER),
    )
    step("CardGetProperty(CP_CARD_AUTHENTICATED_STATE)", prop(CP_CARD_AUTHENTICATED_STATE), lambda v: v == 0)
    step(
        "CardGetProperty(CP_CARD_PIN_STRENGTH_VERIFY)",
        prop(CP_CARD_PIN_STRENGTH_VERIFY, ROLE_USER),
        lambda v: isinstance(v, int) and bool(v & 1),
    )
    step("CardGetProperty(CP_KEY_IMPORT_SUPPORT)", prop(CP_KEY_IMPORT_SUPPORT), lambda v: v == 0)
    step(
        "CardReadFile(cardid)",
        lambda: api.CardReadFile(card_data, None, "cardid"),
        lambda v: isinstance(v, bytes) and len(v) == 16,
    )
    step(
        "CardReadFile(cardcf)",
        lambda: api.CardReadFile(card_data, None, "cardcf"),
        lambda v: isinstance(v, bytes) and len(v) == 6,
    )
    step(
        "CardReadFile(cardapps)",
        lambda: api.CardReadFile(card_data, None, "cardapps"),
        lambda v: isinstance(v, bytes) and len(v) == 8,
    )
    step(
        "CardReadFile(mscp/cmapfile)",
        lambda: api.CardReadFile(card_data, "mscp", "cmapfile"),
        lambda v: isinstance(v, bytes) and len(v) > 0,
    )
    step(
        "CardGetFileInfo(mscp/cmapfile)",
        lambda: api.CardGetFileInfo(card_data, "mscp", "cmapfile"),
        lambda v: getattr(v, "cbFileSize", 0) > 0,
    )
    step(
        "CardReadFile(mscp/kxc00)",
        lambda: api.CardReadFile(card_data, "mscp", "kxc00"),
        lambda v: isinstance(v, bytes) and len(v) > 0,
    )
    step("CardEnumFiles(root)", lambda: api.CardEnumFiles(card_data, None), lambda v: bool(v))
    step("CardGetContainerInfo(0)", lambda: api.CardGetContainerInfo(card_data, 0, 0))
    state = prop(CP_CARD_AUTHENTICATED_STATE)
    step(
        "CardAuthenticatePin(user)",
        lambda: api.CardAuthenticatePin(card_data, wszCARD_USER_USER, pin),
        lambda v: v == 0xFFFFFFFF,
    )
    step("CP_CARD_AUTHENTICATED_STATE after PIN", state, lambda v: v == 2)
    try:
        api.CardAuthenticatePin(card_data, wszCARD_USER_USER, wrong_pin)
        results.append(("CardAuthenticatePin(user) wrong PIN", False, "succeeded"))
    except ScardError as error:
        ok = error.code == Scard.W_WRONG_CHV and error.attempts_remaining == 2
        results.append(
            ("CardAuthenticatePin(user) wrong PIN", ok, f"{error.name} {error.attempts_remaining}")
        )
    step("CP_CARD_AUTHENTICATED_STATE after wrong PIN", state, lambda v: v == 0)
    step(
        "CardAuthenticatePin(user) again",
        lambda: api.CardAuthenticatePin(card_data, wszCARD_USER_USER, pin),
        lambda v: v == 0xFFFFFFFF,
    )
    step("CP_CARD_AUTHENTICATED_STATE after PIN again", state, lambda v: v == 2)
    step("CardDeauthenticate(user)", lambda: api.CardDeauthenticate(card_data, wszCARD_USER_USER, 0))
    step("CP_CARD_AUTHENTICATED_STATE after deauthentication", state, lambda v: v == 0)
    step("CardDeleteContext", lambda: api.CardDeleteContext(card_data))
    return results
