"""The YubiKey management and OTP applications, the version gates of the Yubico PIV layer,
and the profile checks that keep a YubiKey-style profile's claims coherent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vcard import tlv
from vcard.profile import PROFILE_DIR, ProfileError, load_profile
from vcard.runtime import VirtualCard

MANAGEMENT_SELECT = "00A4040008A000000527471117"
OTP_SELECT = "00A4040007A0000005272001"
PIV_SELECT = "00A4040005A000000308"


class Session:
    def __init__(self, virtual: VirtualCard) -> None:
        self.virtual = virtual
        virtual.card.power_on()

    def send(self, apdu: str) -> tuple[bytes, int]:
        response = self.virtual.card.transmit(bytes.fromhex(apdu))
        return response[:-2], int.from_bytes(response[-2:], "big")

    def ok(self, apdu: str) -> bytes:
        data, sw = self.send(apdu)
        assert sw == 0x9000, f"{apdu}: {sw:04X}"
        return data

    def sw(self, apdu: str) -> int:
        return self.send(apdu)[1]

    def device_info(self) -> dict[int, bytes]:
        self.ok(MANAGEMENT_SELECT)
        page = self.ok("001D000000")
        assert page[0] == len(page) - 1
        return tlv.to_dict(page[1:])

    def piv_serial(self) -> bytes:
        self.ok(PIV_SELECT)
        return self.ok("00F8000000")


def open_card(profile: str | Path, **overrides: dict[str, object]) -> VirtualCard:
    loaded = load_profile(profile)
    for table, values in overrides.items():
        loaded.applets[table] = {**loaded.applets.get(table, {}), **values}
    return VirtualCard.open(loaded, None, ephemeral=True)


@pytest.fixture
def yubikey5() -> Iterator[Session]:
    virtual = open_card("yubikey5")
    yield Session(virtual)
    virtual.close()


def test_management_select_answers_the_firmware_version_as_text(yubikey5: Session) -> None:
    assert yubikey5.ok(MANAGEMENT_SELECT) == b"5.7.4"


def test_device_info_describes_this_card(yubikey5: Session) -> None:
    info = yubikey5.device_info()
    assert info[0x02] == yubikey5.piv_serial()  # one serial for the whole device
    assert info[0x05] == bytes([5, 7, 4])
    assert info[0x01] == info[0x03] == info[0x0D] == info[0x0E] == b"\x00\x10"  # PIV, and only PIV
    assert info[0x04] == b"\x01"  # USB-A keychain, neither FIPS nor Security Key
    assert info[0x0A] == b"\x01"  # locked: the configuration cannot be written
    assert info[0x14] == info[0x15] == b"\x00\x00"  # 5.7 reports FIPS capable/approved
    yubikey5.ok(MANAGEMENT_SELECT)
    assert yubikey5.ok("001D010000") == b"\x00"  # no second page
    assert yubikey5.sw("001D000100") == 0x6A86


def test_configuration_writes_are_refused_as_on_a_locked_yubikey(yubikey5: Session) -> None:
    yubikey5.ok(MANAGEMENT_SELECT)
    before = yubikey5.device_info()
    assert yubikey5.sw("001C00000403020000") == 0x6F00  # USB enabled = nothing
    assert yubikey5.sw("0016110000") == 0x6F00  # SET MODE
    assert yubikey5.device_info() == before


def test_otp_application_status_and_serial(yubikey5: Session) -> None:
    assert yubikey5.ok(OTP_SELECT) == bytes([5, 7, 4, 0, 0, 0])  # no slot programmed
    assert yubikey5.ok("00A4040008A000000527200101") == bytes([5, 7, 4, 0, 0, 0])  # the full AID
    assert yubikey5.ok("0003000000") == bytes([5, 7, 4, 0, 0, 0])
    assert yubikey5.ok("0001100000") == yubikey5.piv_serial()
    yubikey5.ok(OTP_SELECT)
    assert yubikey5.sw("000101003A" + "00" * 58) == 0x6A86  # programming slot 1 is not offered
    assert yubikey5.sw("0004000000") == 0x6D00


def test_fips_flags_and_approval_follow_the_piv_defaults() -> None:
    from yubikit.piv import MANAGEMENT_KEY_TYPE, PivSession
    from yubikit_scenario import DEFAULT_KEY, InProcessConnection

    virtual = open_card("yubikey5", yubikey_mgmt={"fips": True})
    try:
        session = Session(virtual)
        info = session.device_info()
        assert info[0x04] == b"\x81" and info[0x14] == b"\x00\x02" and info[0x15] == b"\x00\x00"
        piv = PivSession(InProcessConnection(virtual.card))
        piv.change_pin("123456", "24681357")
        piv.change_puk("12345678", "13572468")
        assert session.device_info()[0x15] == b"\x00\x00"  # the management key is still the default
        piv = PivSession(InProcessConnection(virtual.card))
        piv.authenticate(DEFAULT_KEY)
        piv.set_management_key(MANAGEMENT_KEY_TYPE.AES192, bytes(range(24)))
        assert session.device_info()[0x15] == b"\x00\x02"  # PIV approved
    finally:
        virtual.close()


def test_a_5_4_card_reports_no_5_7_fields() -> None:
    virtual = open_card("piv")
    try:
        info = Session(virtual).device_info()
        assert info[0x05] == bytes([5, 4, 3]) and 0x03 in info
        assert not {0x14, 0x15, 0x16, 0x17, 0x18} & set(info)
    finally:
        virtual.close()


@pytest.mark.parametrize(
    ("version", "absent", "present"),
    [
        ("5.4.3", ["00F6FF9A00"], ["00F7009B00", "00F8000000"]),
        ("5.2.7", ["00F6FF9A00", "00F7009B00"], ["00F8000000"]),
        ("4.3.5", ["00F6FF9A00", "00F7009B00", "00F8000000"], ["00FD000000"]),
    ],
)
def test_instructions_follow_the_claimed_version(version: str, absent: list[str], present: list[str]) -> None:
    virtual = open_card("piv", piv={"version": version})
    try:
        session = Session(virtual)
        session.ok(PIV_SELECT)
        assert session.ok("00FD000000") == bytes(int(part) for part in version.split("."))
        for apdu in absent:
            assert session.sw(apdu) == 0x6D00, apdu
        for apdu in present:
            assert session.sw(apdu) == 0x9000, apdu
    finally:
        virtual.close()


def test_piv_plain_has_no_yubico_instruction_and_no_yubikey_application() -> None:
    virtual = open_card("piv-plain")
    try:
        session = Session(virtual)
        assert session.ok(PIV_SELECT)[:1] == b"\x61"
        for ins in ("F6", "F7", "F8", "F9", "FA", "FB", "FD", "FE", "FF"):
            assert session.sw(f"00{ins}000000") == 0x6D00, ins
        assert session.sw(MANAGEMENT_SELECT) == 0x6A82 and session.sw(OTP_SELECT) == 0x6A82
        assert session.sw("00CB3FFF055C035FFF0100") == 0x6A82  # no attestation certificate either
    finally:
        virtual.close()


def _profile_text(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    text = (PROFILE_DIR / f"{name}.toml").read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}-changed.toml"
    path.write_text(text)
    return path


def test_a_profile_cannot_offer_key_types_its_version_lacks(tmp_path: Path) -> None:
    path = _profile_text(tmp_path, "piv", ('"p384"]', '"p384", "ed25519"]'))
    with pytest.raises(
        ProfileError, match=r"\[applets.piv\] algorithms: ed25519 needs a YubiKey version >= 5.7.0"
    ):
        VirtualCard.open(load_profile(path), None, ephemeral=True)


def test_an_aes_management_key_needs_5_4(tmp_path: Path) -> None:
    path = _profile_text(
        tmp_path,
        "yubikey5",
        ('version = "5.7.4"', 'version = "5.3.0"'),
        ('"rsa3072", "rsa4096", "p256", "p384", "ed25519", "x25519"]', '"p256", "p384"]'),
    )
    with pytest.raises(
        ProfileError, match=r"\[applets.piv\] version: an AES management key needs .* >= 5.4.0"
    ):
        VirtualCard.open(load_profile(path), None, ephemeral=True)


def test_the_yubikey_applications_need_the_yubico_piv_layer(tmp_path: Path) -> None:
    path = _profile_text(
        tmp_path, "piv", ('label = "vcard PIV"', 'label = "vcard PIV"\nyubico_extensions = false')
    )
    with pytest.raises(
        ProfileError, match=r"\[applets.yubikey_mgmt\]: needs \[applets.piv\] with the Yubico"
    ):
        VirtualCard.open(load_profile(path), None, ephemeral=True)


def test_management_table_keys_are_checked(tmp_path: Path) -> None:
    path = _profile_text(
        tmp_path, "yubikey5", ('form_factor = "usb-a-keychain"', 'form_factor = "usb-a-keyring"')
    )
    with pytest.raises(ProfileError, match=r"\[applets.yubikey_mgmt\] form_factor: must be one of"):
        VirtualCard.open(load_profile(path), None, ephemeral=True)
