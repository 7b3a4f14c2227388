"""Host-side helpers for the GIDS tests: a card built from a profile and the APDUs OpenSC sends.

No tests here; `test_gids_*.py` import it (tests/unit is on sys.path under pytest's
default import mode). The byte strings are the ones OpenSC's card-gids.c and
gids-tool send (src/libopensc/card-gids.c, src/tools/gids-tool.c).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from vcard import tlv
from vcard.apdu import CommandAPDU, ResponseAPDU
from vcard.applets.gids import GidsApplet
from vcard.applets.gids.admin import host_mutual_cryptogram
from vcard.host import SmartCardProtocol
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

GIDS_SELECT = bytes.fromhex("00A4040009A0000003974254465900")
DEFAULT_PIN = b"123456"
DEFAULT_ADMIN_KEY = bytes(24)


def key_file_fcp(key_ref: int, algid: int = 0x07, sign_only: bool = False) -> bytes:
    """The key EF FCP OpenSC's pkcs15-init creates (key exchange, or signature only)."""
    if sign_only:
        crts = bytes.fromhex(f"B6098001{0x10 + algid:02X}830183950140B6098001{0x50 + algid:02X}830183950140")
    else:
        crts = b"".join(
            bytes.fromhex(f"{tag:02X}098001{pad + algid:02X}8301{key_ref:02X}950140")
            for tag, pad in ((0xB8, 0x00), (0xB8, 0x80), (0xB8, 0x40), (0xB6, 0x10), (0xB6, 0x50))
        )
    body = bytes.fromhex(f"820118 8302B0{key_ref:02X} 8C058F10101000".replace(" ", "")) + tlv.encode(
        0xA5, crts
    )
    return tlv.encode(0x62, body)


class Host:
    """A card from a shipped profile, driven the way a PC/SC host would (short APDUs only)."""

    def __init__(self, profile: str = "gids", state_dir: Path | None = None) -> None:
        self.virtual = VirtualCard.open(
            load_profile(profile), state_dir=state_dir, ephemeral=state_dir is None
        )
        self.card = self.virtual.card
        self.card.power_on()
        self.protocol = SmartCardProtocol(self.card)

    @property
    def applet(self) -> GidsApplet:
        applet = self.virtual.applets["gids"]
        assert isinstance(applet, GidsApplet)
        return applet

    def close(self) -> None:
        self.virtual.close()

    def raw(self, command: bytes) -> ResponseAPDU:
        """One raw exchange, exactly the bytes given."""
        return self.protocol.exchange(command)

    def send(
        self, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None, cla: int = 0x00
    ) -> tuple[bytes, int]:
        """One command (chained in 255-byte blocks if longer), then GET RESPONSE until 9000/error."""
        data_out, sw = self.protocol.transmit(CommandAPDU(cla, ins, p1, p2, data, le))
        return data_out, sw

    def hex(self, text: str) -> tuple[bytes, int]:
        """Send one APDU written in hex (spaces allowed), following 61xx."""
        data_out, sw = self.protocol.transmit(CommandAPDU.parse(bytes.fromhex(text.replace(" ", ""))))
        return data_out, sw

    # ---- operations ------------------------------------------------------------------------

    def select(self) -> tuple[bytes, int]:
        return self.hex(GIDS_SELECT.hex())

    def verify(self, pin: bytes = DEFAULT_PIN) -> int:
        return self.send(0x20, 0x00, 0x80, pin)[1]

    def get_do(self, fid: int, tag: int) -> tuple[bytes, int]:
        return self.send(0xCB, fid >> 8, fid & 0xFF, tlv.encode(0x5C, tag.to_bytes(2, "big")), 256)

    def put_do(self, fid: int, tag: int, value: bytes) -> int:
        return self.send(0xDB, fid >> 8, fid & 0xFF, tlv.encode(tag, value))[1]

    def mutual_auth(self, key: bytes = DEFAULT_ADMIN_KEY, algorithm: str = "3des") -> int:
        """OpenSC's gids_authenticate_admin; returns the last status word."""
        _, sw = self.hex("0022C1A403830180")
        if sw != 0x9000:
            return sw
        host_random = secrets.token_bytes(16)
        answer, sw = self.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x81, host_random)]), 256)
        if sw != 0x9000:
            return sw
        card_random = tlv.find(answer, 0x7C, 0x81)
        assert card_random is not None and len(card_random) == 16
        cryptogram = host_mutual_cryptogram(algorithm, key, card_random, host_random)
        answer, sw = self.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, cryptogram)]), 256)
        return sw

    def create_key_file(self, key_ref: int = 0x81, algid: int = 0x07, sign_only: bool = False) -> int:
        _, sw = self.send(0xE0, 0, 0, key_file_fcp(key_ref, algid, sign_only))
        if sw != 0x9000:
            return sw
        return self.hex("00440000")[1]

    def generate(self, key_ref: int = 0x81, algid: int = 0x07, le: int | None = None) -> tuple[bytes, int]:
        return self.send(0x47, 0, 0, bytes.fromhex(f"AC068001{algid:02X}8301{key_ref:02X}"), le)

    def public_key(self, key_ref: int = 0x81) -> tuple[bytes, int]:
        return self.send(0xCB, 0x3F, 0xFF, bytes.fromhex(f"70088401{key_ref:02X}A5037F4980"), 256)


FRESH_MASTERFILE = bytes.fromhex(
    # OpenSC gids_initialize's masterfile[] (141 bytes): mscp/, cardid, cardapps, cardcf, mscp/cmapfile
    "016d736370000000000000000000000000000000000000000000a00000000000000000000000636172646964000000"
    "000020df000012a00000000000000000000000636172646170707300000021df000010a00000000000000000000000"
    "636172646366000000000022df000010a000006d7363700000000000636d617066696c6500000023df000010a00000"
)

GIDS_TOOL_INITIALIZE = [
    # what `gids-tool --initialize --pin 123456 --admin-key 00..00 --serial-number 00..0F` sends
    "00A4040C09A0000003974254465900",
    "0024018006313233343536",
    "00E000000E620C8201398302A0008C03033000",
    "00440000",
    "00E000000E620C8201398302A0108C03033000",
    "00440000",
    "00E000000E620C8201398302A0118C030330FF",
    "00440000",
    "00E000000E620C8201398302A0128C03032000",
    "00440000",
    "00E000000E620C8201398302A0138C03033030",
    "00440000",
    "00E000000E620C8201398302A0148C03032020",
    "00440000",
    "00E000001C621A8201188302B0808C04870020FFA50BA4098001028301809501C0",
    "00440000",
    "00DB3FFF267024840180A51F8718" + "00" * 24 + "8803B073DC",
    "00DBA00091DF1F818D" + FRESH_MASTERFILE.hex(),
    "00DBA0100BDF21086D73637000000000",
    "00DBA01009DF2206000000000000",
    "00DBA01003DF2300",
    "00DBA01213DF2010000102030405060708090A0B0C0D0E0F",
    "00A4000C023FFF",
    "00440000",
]
