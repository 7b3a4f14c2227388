"""The minidriver API over the GIDS applet, in-process: file system, containers, cardcf, crypto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

import minidriver as md
from minidriver.backends.gids import GidsBackend
from minidriver.cache import GlobalCache
from signin.enroll import admin_response
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import provision_gids

ADMIN_KEY = bytes(24)  # profile gids: 24 zero bytes


@pytest.fixture(scope="module")
def gids() -> Iterator[tuple[Any, dict[int, rsa.RSAPublicKey]]]:
    virtual = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    keys = provision_gids(card_data)
    md.CardDeleteContext(card_data)
    yield virtual.card, keys
    virtual.close()


@pytest.fixture
def cd(gids: tuple[Any, dict[int, rsa.RSAPublicKey]]) -> Iterator[md.CardData]:
    card_data = md.CardData.inprocess(gids[0], cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    yield card_data
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    md.CardDeleteContext(card_data)


def test_writable_card_properties(cd: md.CardData) -> None:
    assert md.dword(md.CardGetProperty(cd, md.CP_CARD_READ_ONLY)) == 0
    assert md.dword(md.CardGetProperty(cd, md.CP_SUPPORTS_WIN_X509_ENROLLMENT)) == 1
    assert md.CardQueryCapabilities(cd) == md.CARD_CAPABILITIES(1, 1, 1)
    assert md.CardGetProperty(cd, md.CP_CARD_GUID) == md.CardReadFile(cd, None, "cardid")
    pin_info = md.PIN_INFO.unpack(md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, None, md.ROLE_ADMIN))
    assert pin_info.PinType == md.PinType.ChallengeResponsePinType


def test_certificates_are_stored_compressed_and_read_back_plain(cd: md.CardData, gids: Any) -> None:
    der = md.CardReadFile(cd, "mscp", "kxc00")
    certificate = x509.load_der_x509_certificate(der)
    assert certificate.public_key().public_numbers() == gids[1][0].public_numbers()
    backend = cd.pvVendorSpecific.backend  # type: ignore[union-attr]
    assert isinstance(backend, GidsBackend)
    record = next(r for r in backend.masterfile() if r.filename == "kxc00")
    stored = backend.get_do(record.fid, record.do)
    assert stored is not None and stored[:2] == b"\x01\x00" and stored[4:5] == b"\x78"  # 01 00 len zlib
    assert int.from_bytes(stored[2:4], "little") == len(der)


def test_containers_and_cmapfile(cd: md.CardData) -> None:
    records = md.structures.unpack_cmapfile(md.CardReadFile(cd, "mscp", "cmapfile"))
    assert records[0].bFlags == 0x03 and records[0].wKeyExchangeKeySizeBits == 2048
    assert records[1].bFlags == 0x01 and records[1].wSigKeySizeBits == 2048
    assert md.CardGetContainerInfo(cd, 1).pbSigPublicKey[:8] == bytes.fromhex("0602000000240000")
    assert md.dword(md.CardGetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER)) == md.ROLE_USER


def test_file_system_operations_and_freshness(gids: Any) -> None:
    cache = GlobalCache()
    first = md.CardData.inprocess(gids[0], cache=cache)
    md.CardAcquireContext(first, 0)
    other = md.CardData.inprocess(gids[0], cache=cache)  # another "process" sharing the global cache
    md.CardAcquireContext(other, 0)
    with pytest.raises(md.ScardError) as denied:
        md.CardCreateDirectory(first, "apps", md.CARD_DIRECTORY_ACCESS_CONDITION.UserCreateDeleteDirAc)
    assert denied.value.code == md.SCARD_W_SECURITY_VIOLATION
    md.CardAuthenticateEx(first, md.ROLE_USER, 0, b"123456")
    before = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(first, None, "cardcf"))
    md.CardCreateDirectory(first, "apps", md.CARD_DIRECTORY_ACCESS_CONDITION.UserCreateDeleteDirAc)
    md.CardCreateFile(first, "apps", "data", 0, md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc)
    md.CardWriteFile(first, "apps", "data", 0, b"version 1")
    assert md.CardReadFile(other, "apps", "data") == b"version 1"  # now cached for `other`
    md.CardWriteFile(first, "apps", "data", 0, b"version 2")
    assert md.CardReadFile(other, "apps", "data") == b"version 2"  # wFilesFreshness moved: re-read
    after = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(first, None, "cardcf"))
    assert after.wFilesFreshness >= before.wFilesFreshness + 4
    assert md.CardEnumFiles(first, "apps") == ["data"]
    assert (
        md.CardGetFileInfo(first, "apps", "data").AccessCondition
        == md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc
    )
    cases = [
        (lambda: md.CardCreateDirectory(first, "apps", 1), md.ERROR_FILE_EXISTS),
        (lambda: md.CardCreateFile(first, "apps", "data", 0, 1), md.ERROR_FILE_EXISTS),
        (lambda: md.CardDeleteDirectory(first, "apps"), md.ERROR_DIR_NOT_EMPTY),
        (lambda: md.CardCreateFile(first, "nodir", "x", 0, 1), md.SCARD_E_DIR_NOT_FOUND),
        (lambda: md.CardWriteFile(first, "apps", "nofile", 0, b"x"), md.SCARD_E_FILE_NOT_FOUND),
        (lambda: md.CardDeleteDirectory(first, "nodir"), md.SCARD_E_DIR_NOT_FOUND),
    ]
    for call, code in cases:
        with pytest.raises(md.ScardError) as raised:
            call()
        assert raised.value.code == code
    md.CardDeleteFile(first, "apps", "data", 0)
    with pytest.raises(md.ScardError) as empty:
        md.CardEnumFiles(first, "apps")
    assert empty.value.code == md.SCARD_E_FILE_NOT_FOUND
    md.CardDeleteDirectory(first, "apps")
    with pytest.raises(md.ScardError) as gone:
        md.CardReadFile(other, "apps", "data")
    assert gone.value.code == md.SCARD_E_DIR_NOT_FOUND
    md.CardDeauthenticateEx(first, md.PIN_SET_ALL_ROLES, 0)


def test_admin_challenge_response_and_unblock(gids: Any) -> None:
    virtual = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    for _ in range(3):
        with pytest.raises(md.ScardError):
            md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, b"0000")
    with pytest.raises(md.ScardError) as blocked:
        md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, b"123456")
    assert blocked.value.code == md.SCARD_W_CHV_BLOCKED
    challenge = md.CardGetChallenge(card_data)
    md.CardUnblockPin(
        card_data,
        md.wszCARD_USER_USER,
        admin_response(ADMIN_KEY, challenge),
        b"4321",
        0,
        md.CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE,
    )
    md.CardAuthenticatePin(card_data, md.wszCARD_USER_USER, b"4321")
    challenge = md.CardGetChallengeEx(card_data, md.ROLE_ADMIN, 0)
    md.CardAuthenticateEx(card_data, md.ROLE_ADMIN, 0, admin_response(ADMIN_KEY, challenge))
    assert md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE)) == 0x06
    md.CardDeauthenticateEx(card_data, md.CREATE_PIN_SET(md.ROLE_ADMIN), 0)
    assert md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE)) == 0x02
    virtual.close()


def test_delete_container(gids: Any) -> None:
    virtual = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    provision_gids(card_data)
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
    md.CardDeleteContainer(card_data, 1, 0)
    with pytest.raises(md.ScardError) as missing:
        md.CardGetContainerInfo(card_data, 1)
    assert missing.value.code == md.SCARD_E_NO_KEY_CONTAINER
    assert md.structures.unpack_cmapfile(md.CardReadFile(card_data, "mscp", "cmapfile"))[1].bFlags == 0
    md.CardGetContainerInfo(card_data, 0)
    virtual.close()
