"""The YubiKey management application and the OTP application's identification commands.

ykman and yubikit identify a YubiKey before they use any of its applications: through
a reader that is not a Yubico one they SELECT the OTP application (A0 00 00 05 27 20 01 01),
then the management application (A0 00 00 05 27 47 11 17), whose SELECT answers the
firmware version as text and whose READ CONFIG (INS 1D) answers the device information
TLVs (yubikit `management.py` `DeviceInfo.parse_tlvs`, `support.py` `read_info`):

    01 USB capabilities supported   02 serial            03 USB capabilities enabled
    04 form factor (| 80 FIPS, | 40 Security Key)         05 firmware version
    06 auto-eject timeout  07 challenge-response timeout  08 device flags
    0A configuration locked         0D/0E NFC capabilities supported/enabled
    14/15 FIPS capable/approved, 16 PIN complexity, 17 NFC restricted, 18 reset blocked (5.7)

Both applications describe the card's PIV application (same serial and version) and
claim only what the card has: the PIV capability. The configuration cannot be written,
so the device reports itself locked, and writes are refused with 6F00, what a YubiKey
answers a configuration write without its lock code (Yubico.NET.SDK docs, "Set device
info": "Response APDU for incorrect lock code provided"). The OTP application answers its status
and serial and programs nothing.

Profiles add them with `[applets.yubikey_mgmt]` (form_factor, nfc, fips, sky) and
`[applets.yubikey_otp]` (no keys); both need `[applets.piv]` with the Yubico extensions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .. import tlv
from ..apdu import SW, CommandAPDU, ISOError
from ..cardos import Applet, HandlerResult, command
from ..context import AppletContext
from ..tablereader import TableReader
from .piv.yubikey import YubicoCommands

MANAGEMENT_AID = bytes.fromhex("A000000527471117")
OTP_AID = bytes.fromhex("A000000527200101")  # yubikit selects the first 7 bytes

INS_READ_CONFIG = 0x1D
INS_WRITE_CONFIG = 0x1C
INS_SET_MODE = 0x16
INS_OTP_CONFIG = 0x01
INS_OTP_STATUS = 0x03
OTP_SLOT_DEVICE_SERIAL = 0x10

# yubikit management.py CAPABILITY
CAPABILITY_PIV = 0x0010
# FIPS capability bits (tags 14/15): bit 1 is PIV
FIPS_PIV = 0x0002

FORM_FACTORS = {
    "unknown": 0x00,
    "usb-a-keychain": 0x01,
    "usb-a-nano": 0x02,
    "usb-c-keychain": 0x03,
    "usb-c-nano": 0x04,
    "usb-c-lightning": 0x05,
    "usb-a-bio": 0x06,
    "usb-c-bio": 0x07,
}
FORM_FACTOR_FIPS = 0x80
FORM_FACTOR_SKY = 0x40
CHALLENGE_RESPONSE_TIMEOUT = 15  # seconds, a YubiKey's factory value

USB_ENABLED_SINCE = (5, 0, 0)
EXTENDED_INFO_SINCE = (5, 7, 0)  # tags 14..18


class _DeviceApplet(Applet):
    """Shared by both: the card's PIV application is the source of serial and version."""

    table: ClassVar[str] = ""

    def __init__(self, context: AppletContext) -> None:
        self.context = context
        self._piv: YubicoCommands | None = None

    def link_applets(self, applets: Mapping[str, Applet]) -> None:
        """Called by the runtime once every applet of the card exists."""
        piv = applets.get("piv")
        if not isinstance(piv, YubicoCommands):
            raise TableReader(self.context.profile_path, f"applets.{self.table}", self.context.config).error(
                None, "needs [applets.piv] with the Yubico extensions (the serial and version come from it)"
            )
        self._piv = piv

    @property
    def piv(self) -> YubicoCommands:
        if self._piv is None:
            raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "not linked to a PIV application")
        return self._piv

    @property
    def version(self) -> bytes:
        return bytes(self.piv.config.version)

    @property
    def serial(self) -> bytes:
        return self.piv.serial.to_bytes(4, "big")


class ManagementApplet(_DeviceApplet):
    """SELECT (version text) and READ CONFIG (device information); configuration writes refused."""

    name: ClassVar[str] = "yubikey_mgmt"
    table: ClassVar[str] = "yubikey_mgmt"
    aid = MANAGEMENT_AID

    def __init__(self, context: AppletContext) -> None:
        super().__init__(context)
        reader = TableReader(context.profile_path, "applets.yubikey_mgmt", context.config)
        form_factor = FORM_FACTORS[reader.text("form_factor", "usb-a-keychain", choices=list(FORM_FACTORS))]
        self.nfc = reader.boolean("nfc", True)
        self.fips = reader.boolean("fips", False)
        sky = reader.boolean("sky", False)
        reader.finish()
        self.form_factor = (
            form_factor | (FORM_FACTOR_FIPS if self.fips else 0) | (FORM_FACTOR_SKY if sky else 0)
        )

    def select(self, apdu: CommandAPDU) -> HandlerResult:
        return ".".join(str(part) for part in self.version).encode("ascii")

    @command(INS_READ_CONFIG)
    def read_config(self, apdu: CommandAPDU) -> HandlerResult:
        """Page P1 of the device information: one length byte, then TLVs; everything fits page 0."""
        if apdu.p2 != 0x00:
            raise ISOError(SW.INCORRECT_P1P2)
        body = self.device_info() if apdu.p1 == 0 else b""
        return bytes([len(body)]) + body

    @command(INS_WRITE_CONFIG, INS_SET_MODE)
    def write_config(self, apdu: CommandAPDU) -> HandlerResult:
        raise ISOError(SW.NO_PRECISE_DIAGNOSIS, "the configuration is locked (no lock code opens it)")

    def device_info(self) -> bytes:
        version = self.piv.config.version
        capabilities = CAPABILITY_PIV.to_bytes(2, "big")
        items = [
            tlv.encode(0x01, capabilities),
            tlv.encode(0x02, self.serial),
        ]
        if version >= USB_ENABLED_SINCE:
            items.append(tlv.encode(0x03, capabilities))
        items += [
            tlv.encode(0x04, bytes([self.form_factor])),
            tlv.encode(0x05, self.version),
            tlv.encode(0x06, b"\x00\x00"),
            tlv.encode(0x07, bytes([CHALLENGE_RESPONSE_TIMEOUT])),
            tlv.encode(0x08, b"\x00"),
            tlv.encode(0x0A, b"\x01"),
        ]
        if self.nfc:
            items += [tlv.encode(0x0D, capabilities), tlv.encode(0x0E, capabilities)]
        if version >= EXTENDED_INFO_SINCE:
            fips_capable = FIPS_PIV if self.fips else 0
            fips_approved = fips_capable if self.fips and not self._piv_defaults() else 0
            items += [
                tlv.encode(0x14, fips_capable.to_bytes(2, "big")),
                tlv.encode(0x15, fips_approved.to_bytes(2, "big")),
                tlv.encode(0x16, b"\x00"),
                tlv.encode(0x17, b"\x00"),
                tlv.encode(0x18, b"\x00\x00"),
            ]
        return b"".join(items)

    def _piv_defaults(self) -> bool:
        """A FIPS YubiKey's PIV is approved once PIN, PUK and management key left their factory values."""
        config, security = self.piv.config, self.piv.security
        roles = [config.pin_role, config.management_role, config.puk_role]
        return any(role is not None and security.is_default_value(role) for role in roles)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device_info": self.device_info().hex().upper() if self._piv else None}


class OtpApplet(_DeviceApplet):
    """The OTP application's status (SELECT, INS 03) and serial (INS 01 P1=10); no slot is programmable."""

    name: ClassVar[str] = "yubikey_otp"
    table: ClassVar[str] = "yubikey_otp"
    aid = OTP_AID

    def __init__(self, context: AppletContext) -> None:
        super().__init__(context)
        TableReader(context.profile_path, "applets.yubikey_otp", context.config).finish()

    def status(self) -> bytes:
        """Version, programming sequence 0 and touch level 0000 (no slot configured), as yubikit reads it."""
        return self.version + b"\x00\x00\x00"

    def select(self, apdu: CommandAPDU) -> HandlerResult:
        return self.status()

    @command(INS_OTP_STATUS)
    def read_status(self, apdu: CommandAPDU) -> HandlerResult:
        return self.status()

    @command(INS_OTP_CONFIG)
    def config_slot(self, apdu: CommandAPDU) -> HandlerResult:
        if apdu.p1 != OTP_SLOT_DEVICE_SERIAL:
            raise ISOError(
                SW.INCORRECT_P1P2, "only the serial (P1=10) is served: no OTP slot is programmable"
            )
        return self.serial
