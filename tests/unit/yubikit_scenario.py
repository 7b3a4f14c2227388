"""yubikit's ManagementSession and PivSession scripted through every call ykman's commands make.

`run(connect)` takes a function returning a fresh yubikit SmartCardConnection (in process
or through pcscd) and checks each step's effect on the card, so one scenario serves the
unit test (tests/unit/test_yubikit.py) and the pcscd test, which runs this file:

    python tests/unit/yubikit_scenario.py --reader "Virtual PCD 00 00"

What a profile's version lacks (yubikit's version gates) must be refused by yubikit with
NotSupportedError *and* answer 6D00 on the card (the instruction does not exist there).
Returns the names of the steps done, so callers can assert the whole list ran.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from ykman.piv import generate_csr, generate_self_signed_certificate
from yubikit.core import TRANSPORT, NotSupportedError, Version
from yubikit.core.smartcard import ApduError, SmartCardConnection, SmartCardProtocol
from yubikit.management import CAPABILITY, DeviceConfig, ManagementSession
from yubikit.piv import (
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    OBJECT_ID,
    PIN_POLICY,
    SLOT,
    TOUCH_POLICY,
    InvalidPinError,
    PivSession,
)
from yubikit.support import get_name, read_info

PIN, PUK = "123456", "12345678"
DEFAULT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
NEW_AES192 = bytes(range(0x10, 0x28))
VALID = (datetime.datetime(2025, 1, 1), datetime.datetime(2035, 1, 1))
KEY_TYPES = {
    SLOT.RETIRED1: KEY_TYPE.RSA2048,
    SLOT.RETIRED2: KEY_TYPE.RSA3072,
    SLOT.RETIRED3: KEY_TYPE.RSA4096,
    SLOT.RETIRED4: KEY_TYPE.ECCP256,
    SLOT.RETIRED5: KEY_TYPE.ECCP384,
    SLOT.RETIRED6: KEY_TYPE.ED25519,
    SLOT.RETIRED7: KEY_TYPE.X25519,
}
SINCE_5_7 = (KEY_TYPE.RSA3072, KEY_TYPE.RSA4096, KEY_TYPE.ED25519, KEY_TYPE.X25519)

Connect = Callable[[], SmartCardConnection]


class InProcessConnection(SmartCardConnection):
    """A yubikit connection straight to a vcard `Card` (anything with `atr` and `transmit`)."""

    def __init__(self, card: Any) -> None:
        self.card = card

    @property
    def transport(self) -> TRANSPORT:
        usb = self.card.atr[1] & 0xF0 == 0xF0  # ykman/pcsc: a T0 of Fx means a USB YubiKey
        return TRANSPORT.USB if usb else TRANSPORT.NFC

    def close(self) -> None:
        pass

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        response = self.card.transmit(bytes(apdu))
        return response[:-2], int.from_bytes(response[-2:], "big")


def expected_steps(version: tuple[int, int, int]) -> list[str]:
    """The steps `run` reports on a card of this version: everything, minus what 5.7 added."""
    generated = [t for t in KEY_TYPES.values() if version >= (5, 7, 0) or t not in SINCE_5_7]
    moved = "move+delete" if version >= (5, 7, 0) else "move+delete refused by version"
    return [
        "management",
        "piv info",
        *[f"generate+attest {key_type.name}" for key_type in generated],
        "certificate+request",
        "objects",
        moved,
        "access",
        "set-retries",
        "reset",
    ]


def run(connect: Connect) -> list[str]:
    done: list[str] = []
    with connect() as connection:
        version, serial = _identify(connection, done)
    with connect() as connection:
        _piv(PivSession(connection), version, serial, done)
    return done


def _identify(connection: SmartCardConnection, done: list[str]) -> tuple[Version, int]:
    info = read_info(connection)
    assert info.serial, info
    for transport, supported in info.supported_capabilities.items():  # the card claims PIV, and only PIV
        assert supported == CAPABILITY.PIV == info.config.enabled_capabilities[transport], info
    assert get_name(info, None).startswith("YubiKey 5"), get_name(info, None)
    management = ManagementSession(connection)
    assert management.version == info.version
    assert management.read_device_info().serial == info.serial
    assert info.is_locked
    try:
        management.write_device_config(DeviceConfig({}, None, None, None))
    except ApduError as error:
        assert error.sw == 0x6F00, hex(error.sw)  # a locked YubiKey's answer without the lock code
    else:
        raise AssertionError("a configuration write was accepted")
    done.append("management")
    return info.version, info.serial


def _piv(piv: PivSession, version: Version, serial: int, done: list[str]) -> None:
    assert piv.version == version
    assert piv.get_serial() == serial
    is_5_7 = version >= (5, 7, 0)
    default_type = MANAGEMENT_KEY_TYPE.AES192 if is_5_7 else MANAGEMENT_KEY_TYPE.TDES
    assert piv.management_key_type == default_type
    assert piv.get_management_key_metadata().default_value
    assert piv.get_pin_metadata().attempts_remaining == 3
    done.append("piv info")

    piv.authenticate(DEFAULT_KEY)
    piv.verify_pin(PIN)
    attestation_ca = piv.get_certificate(SLOT.ATTESTATION)
    for slot, key_type in KEY_TYPES.items():
        if key_type in SINCE_5_7 and not is_5_7:
            _refused_by_version(piv, slot, key_type)
            continue
        public = piv.generate_key(slot, key_type, PIN_POLICY.ONCE, TOUCH_POLICY.NEVER)
        metadata = piv.get_slot_metadata(slot)
        assert metadata.key_type == key_type and metadata.generated
        assert metadata.public_key == public
        _use(piv, slot, key_type, public)
        attestation = piv.attest_key(slot)
        assert attestation.public_key() == public
        _verify_signed_by(attestation, attestation_ca)
        done.append(f"generate+attest {key_type.name}")

    slot = SLOT.AUTHENTICATION
    public = piv.generate_key(slot, KEY_TYPE.ECCP256)
    certificate = generate_self_signed_certificate(piv, slot, public, "CN=vcard ykman", *VALID)
    piv.put_certificate(slot, certificate)
    assert piv.get_certificate(slot) == certificate
    csr = generate_csr(piv, slot, public, "CN=vcard request")
    assert csr.is_signature_valid and csr.public_key() == public
    done.append("certificate+request")

    data = piv.get_object(OBJECT_ID.from_slot(slot))
    piv.put_object(0x5F0001, data)  # outside SP 800-73's 5FC1xx, as `piv objects import` allows
    assert piv.get_object(0x5F0001) == data
    piv.put_object(0x5F0001, None)
    done.append("objects")

    try:
        piv.attest_key(SLOT.SIGNATURE)
    except ApduError as error:
        assert error.sw == 0x6A80, hex(error.sw)  # empty slot, as a YubiKey answers
    else:
        raise AssertionError("an empty slot was attested")

    if is_5_7:
        piv.move_key(slot, SLOT.KEY_MANAGEMENT)
        assert piv.get_slot_metadata(SLOT.KEY_MANAGEMENT).public_key == public
        piv.delete_key(SLOT.KEY_MANAGEMENT)
        _absent(piv, SLOT.KEY_MANAGEMENT)
        done.append("move+delete")
    else:
        for call in (lambda: piv.move_key(slot, SLOT.KEY_MANAGEMENT), lambda: piv.delete_key(slot)):
            try:
                call()
            except NotSupportedError:
                pass
            else:
                raise AssertionError("yubikit let a pre-5.7 card move or delete a key")
        assert _raw(piv, 0xF6, 0xFF, slot) == 0x6D00
        done.append("move+delete refused by version")

    piv.change_pin(PIN, "654321")
    piv.change_pin("654321", PIN)
    piv.change_puk(PUK, "87654321")
    piv.change_puk("87654321", PUK)
    piv.authenticate(DEFAULT_KEY)
    piv.set_management_key(MANAGEMENT_KEY_TYPE.AES192, NEW_AES192)
    piv.authenticate(NEW_AES192)
    assert piv.get_management_key_metadata().key_type == MANAGEMENT_KEY_TYPE.AES192
    piv.set_management_key(default_type, DEFAULT_KEY)
    piv.authenticate(DEFAULT_KEY)
    done.append("access")

    piv.verify_pin(PIN)
    piv.set_pin_attempts(5, 4)
    pin = piv.get_pin_metadata()
    assert (pin.total_attempts, pin.attempts_remaining) == (5, 5)
    assert piv.get_puk_metadata().total_attempts == 4
    piv.verify_pin(PIN)
    done.append("set-retries")

    piv.reset()
    assert piv.management_key_type == default_type
    assert piv.get_pin_metadata().default_value and piv.get_pin_metadata().total_attempts == 3
    _absent(piv, SLOT.RETIRED1)
    try:
        piv.verify_pin("000000")
    except InvalidPinError as error:
        assert error.attempts_remaining == 2
    piv.verify_pin(PIN)
    done.append("reset")


def _use(piv: PivSession, slot: SLOT, key_type: KEY_TYPE, public: object) -> None:
    """Sign (or agree a secret) with the new key and check the result against its public key."""
    message = b"vcard"
    if isinstance(public, x25519.X25519PublicKey):
        peer = x25519.X25519PrivateKey.generate()
        assert piv.calculate_secret(slot, peer.public_key()) == peer.exchange(public)
        return
    if isinstance(public, ec.EllipticCurvePublicKey):
        peer_ec = ec.generate_private_key(public.curve)
        assert piv.calculate_secret(slot, peer_ec.public_key()) == peer_ec.exchange(ec.ECDH(), public)
        signature = piv.sign(slot, key_type, message, hashes.SHA256())
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public, rsa.RSAPublicKey):
        signature = piv.sign(slot, key_type, message, hashes.SHA256(), padding.PKCS1v15())
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(piv.sign(slot, key_type, message, None), message)


def _verify_signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> None:
    assert certificate.issuer == issuer.subject
    certificate.verify_directly_issued_by(issuer)


def _refused_by_version(piv: PivSession, slot: SLOT, key_type: KEY_TYPE) -> None:
    try:
        piv.generate_key(slot, key_type)
    except NotSupportedError:
        pass
    else:
        raise AssertionError(f"yubikit generated {key_type.name} on a pre-5.7 card")
    template = bytes([0xAC, 0x03, 0x80, 0x01, key_type])
    assert _raw(piv, 0x47, 0x00, slot, template) == 0x6A80  # not offered by the card either


def _absent(piv: PivSession, slot: SLOT) -> None:
    try:
        piv.get_slot_metadata(slot)
    except ApduError as error:
        assert error.sw == 0x6A88, hex(error.sw)
    else:
        raise AssertionError(f"slot {slot} still holds a key")


def _raw(piv: PivSession, ins: int, p1: int, p2: int, data: bytes = b"") -> int:
    protocol: SmartCardProtocol = piv.protocol
    try:
        protocol.send_apdu(0, ins, p1, p2, data)
    except ApduError as error:
        return error.sw
    return 0x9000


def main() -> int:
    """Run the scenario on a card in a PC/SC reader (ykman's own connection class)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", required=True)
    reader_name = parser.parse_args().reader
    from ykman.pcsc import list_devices

    devices = list_devices(reader_name)
    if len(devices) != 1:
        print(f"expected one reader named {reader_name!r}, found {len(devices)}", file=sys.stderr)
        return 2
    device = devices[0]
    done = run(lambda: device.open_connection(SmartCardConnection))
    print("\n".join(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
