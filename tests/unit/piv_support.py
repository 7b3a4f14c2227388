"""Helpers for the PIV applet tests: build a card from a profile and talk to it in APDUs.

Not a test module itself. The card is built by `vcard.runtime.VirtualCard`, as every
other card is, so the tests see the card the CLI and the transports serve.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcard import tlv
from vcard.apdu import CommandAPDU, ResponseAPDU
from vcard.applets.piv import PivApplet
from vcard.cardos import Card
from vcard.host import SmartCardProtocol
from vcard.profile import Profile, load_profile
from vcard.runtime import VirtualCard
from vcard.security import SecurityCore
from vcard.store import CardState

PIV_AID = bytes.fromhex("A000000308000010000100")
MGM_3DES = bytes.fromhex("010203040506070801020304050607080102030405060708")


def pin_block(pin: bytes | str) -> bytes:
    value = pin.encode() if isinstance(pin, str) else pin
    return value.ljust(8, b"\xff")


@dataclass
class PivCard:
    """A card holding the PIV applet, with one method per APDU family the tests use."""

    card: Card
    applet: PivApplet
    security: SecurityCore
    state: CardState
    profile: Profile

    @property
    def commits(self) -> int:
        """How many commits saved a change (in memory too; a commit that changed nothing saves nothing)."""
        return self.state.store.writes

    def send(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", ne: int | None = 256
    ) -> ResponseAPDU:
        """One command with command chaining and GET RESPONSE, as a PC/SC client does (vcard.host)."""
        return SmartCardProtocol(self.card).transmit(CommandAPDU(cla, ins, p1, p2, data, ne))

    def raw(self, apdu: bytes) -> ResponseAPDU:
        """One raw exchange, exactly the bytes given."""
        return SmartCardProtocol(self.card).exchange(apdu)

    def select(self, aid: bytes = PIV_AID) -> ResponseAPDU:
        return self.send(0x00, 0xA4, 0x04, 0x00, aid)

    def verify(self, pin: bytes | str = "123456", ref: int = 0x80) -> int:
        return self.send(0x00, 0x20, 0x00, ref, pin_block(pin) if pin != b"" else b"", ne=None).sw

    def get_data(self, tag: int) -> ResponseAPDU:
        return self.send(0x00, 0xCB, 0x3F, 0xFF, tlv.encode(0x5C, tlv.tag_bytes(tag)))

    def put_data(self, tag: int, value: bytes) -> int:
        data = tlv.encode(0x5C, tlv.tag_bytes(tag)) + tlv.encode(0x53, value)
        return self.send(0x00, 0xDB, 0x3F, 0xFF, data, ne=None).sw

    def authenticate_mgm(self, key: bytes = MGM_3DES, algorithm: int = 0x03) -> int:
        """Mutual authentication exactly as yubico-piv-tool runs it."""
        from vcard.applets.piv.keys import Algorithm, block_encrypt, block_size

        alg = Algorithm(algorithm)
        size = block_size(alg)
        first = self.send(0x00, 0x87, algorithm, 0x9B, bytes.fromhex("7C028000"))
        if first.sw != 0x9000:
            return first.sw
        witness_encrypted = tlv.find(first.data, 0x7C, 0x80)
        assert witness_encrypted is not None and len(witness_encrypted) == size
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if alg == Algorithm.TDES:
            from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

            cipher = Cipher(TripleDES(key), modes.ECB())
        else:
            cipher = Cipher(algorithms.AES(key), modes.ECB())
        decryptor = cipher.decryptor()
        witness = decryptor.update(witness_encrypted) + decryptor.finalize()
        challenge = bytes(range(size))
        body = tlv.encode(
            0x7C, [tlv.encode(0x80, witness), tlv.encode(0x81, challenge), tlv.encode(0x82, b"")]
        )
        second = self.send(0x00, 0x87, algorithm, 0x9B, body)
        if second.sw != 0x9000:
            return second.sw
        assert tlv.find(second.data, 0x7C, 0x82) == block_encrypt(alg, key, challenge)
        return second.sw

    def generate(
        self, slot: int, algorithm: int, pin_policy: int | None = None, touch: int | None = None
    ) -> ResponseAPDU:
        items = [tlv.encode(0x80, bytes([algorithm]))]
        if pin_policy is not None:
            items.append(tlv.encode(0xAA, bytes([pin_policy])))
        if touch is not None:
            items.append(tlv.encode(0xAB, bytes([touch])))
        return self.send(0x00, 0x47, 0x00, slot, tlv.encode(0xAC, items))

    def sign(self, slot: int, algorithm: int, data: bytes, tag: int = 0x81) -> ResponseAPDU:
        body = tlv.encode(0x7C, [tlv.encode(0x82, b""), tlv.encode(tag, data)])
        return self.send(0x00, 0x87, algorithm, slot, body)


def build(profile: str | Path = "piv", config_overrides: dict[str, Any] | None = None) -> PivCard:
    """A powered, ephemeral card built by the runtime from a profile (PIV applet selected by default).

    `config_overrides` replaces keys of the profile's `[applets.piv]` table, as an edited
    profile file would; the applet validates the result when the runtime builds it.
    """
    loaded = load_profile(profile)
    if config_overrides:
        loaded = dataclasses.replace(
            loaded, applets={**loaded.applets, "piv": {**loaded.applets["piv"], **config_overrides}}
        )
    virtual = VirtualCard.open(loaded, state_dir=None, ephemeral=True)
    applet = virtual.applets["piv"]
    assert isinstance(applet, PivApplet)
    virtual.card.power_on()
    return PivCard(virtual.card, applet, virtual.security, virtual.state, loaded)
