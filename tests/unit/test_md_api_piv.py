"""The minidriver API over the PIV applet, in-process: OpenSC's test sequence, crypto, cache."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

import minidriver as md
from minidriver.cache import GlobalCache
from vcard.host import InProcessConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import PivProvisioner

SLOTS = {0x9A: "rsa2048", 0x9C: "p256", 0x9D: "p256", 0x9E: "rsa2048"}


@dataclass
class PivCard:
    card: Any
    keys: dict[int, Any]

    def card_data(self, **kwargs: Any) -> md.CardData:
        kwargs.setdefault("cache", GlobalCache())
        return md.CardData.inprocess(self.card, **kwargs)


@pytest.fixture(scope="module")
def piv() -> Iterator[PivCard]:
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    keys = PivProvisioner(InProcessConnection(virtual.card)).provision(SLOTS)
    yield PivCard(virtual.card, keys)
    virtual.close()


@pytest.fixture
def cd(piv: PivCard) -> Iterator[md.CardData]:
    card_data = piv.card_data()
    md.CardAcquireContext(card_data, 0)
    yield card_data
    if card_data.pvVendorSpecific is not None:
        md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
        md.CardDeleteContext(card_data)


def test_version_negotiation(piv: PivCard) -> None:
    card_data = piv.card_data()
    card_data.dwVersion = 9
    md.CardAcquireContext(card_data, 0)
    assert card_data.dwVersion == 7
    old = piv.card_data()
    old.dwVersion = 3
    with pytest.raises(md.ScardError) as raised:
        md.CardAcquireContext(old, 0)
    assert raised.value.code == md.ERROR_REVISION_MISMATCH
    v5 = piv.card_data()
    v5.dwVersion = 5
    md.CardAcquireContext(v5, 0)
    with pytest.raises(md.ScardError) as gated:
        md.CardGetProperty(v5, md.CP_CARD_GUID)
    assert gated.value.code == md.SCARD_E_UNSUPPORTED_FEATURE


def test_acquire_rejects_bad_input(piv: PivCard) -> None:
    card_data = piv.card_data()
    with pytest.raises(md.ScardError) as flags:
        md.CardAcquireContext(card_data, 0x100)
    assert flags.value.code == md.SCARD_E_INVALID_PARAMETER
    card_data.pbAtr = b"\xff\x00"
    with pytest.raises(md.ScardError) as atr:
        md.CardAcquireContext(card_data, 0)
    assert atr.value.code == md.SCARD_E_UNKNOWN_CARD
    with pytest.raises(md.ScardError) as no_context:
        md.CardReadFile(card_data, None, "cardid")
    assert no_context.value.code == md.SCARD_E_INVALID_HANDLE


def test_read_only_card_properties_and_writes(cd: md.CardData) -> None:
    assert md.dword(md.CardGetProperty(cd, md.CP_CARD_READ_ONLY)) == 1
    assert md.CardQueryCapabilities(cd).fKeyGen == 0
    free = md.CardQueryFreeSpace(cd)
    assert (free.dwBytesAvailable, free.dwKeyContainersAvailable) == (0, 0)
    for call in (
        lambda: md.CardWriteFile(cd, "mscp", "kxc00", 0, b"x"),
        lambda: md.CardCreateFile(cd, "mscp", "foo", 0, 1),
        lambda: md.CardDeleteContainer(cd, 0),
        lambda: md.CardSetProperty(cd, md.CP_CARD_GUID, bytes(16)),
    ):
        with pytest.raises(md.ScardError) as raised:
            call()
        assert raised.value.code == md.SCARD_E_UNSUPPORTED_FEATURE
    md.CardSetProperty(cd, md.CP_PARENT_WINDOW, bytes(8))
    md.CardSetProperty(cd, md.CP_PIN_CONTEXT_STRING, "Sign in".encode("utf-16-le"))


def test_containers_follow_the_windows_piv_mapping(cd: md.CardData, piv: PivCard) -> None:
    info = md.CardGetContainerInfo(cd, 0)
    blob = md.PUBLICKEYBLOB.unpack(info.pbKeyExPublicKey)
    assert blob.modulus == piv.keys[0x9A].public_numbers().n and not info.pbSigPublicKey
    ecdsa = md.BCRYPT_ECCKEY_BLOB.unpack(md.CardGetContainerInfo(cd, 1).pbSigPublicKey)
    assert ecdsa.dwMagic == md.BCRYPT_ECDSA_PUBLIC_P256_MAGIC and ecdsa.x == piv.keys[0x9C].public_numbers().x
    ecdh = md.BCRYPT_ECCKEY_BLOB.unpack(md.CardGetContainerInfo(cd, 2).pbKeyExPublicKey)
    assert ecdh.dwMagic == md.BCRYPT_ECDH_PUBLIC_P256_MAGIC
    pin_ids = [md.dword(md.CardGetContainerProperty(cd, i, md.CCP_PIN_IDENTIFIER)) for i in range(4)]
    assert pin_ids == [md.ROLE_USER, md.ROLE_USER, md.ROLE_USER, md.ROLE_EVERYONE]
    assert sorted(md.CardEnumFiles(cd, "mscp")) == ["cmapfile", "ksc01", "ksc03", "kxc00", "kxc02"]
    records = md.structures.unpack_cmapfile(md.CardReadFile(cd, "mscp", "cmapfile"))
    assert records[0].bFlags == 3 and records[0].wKeyExchangeKeySizeBits == 2048
    assert records[1].wSigKeySizeBits == 256 and records[2].wKeyExchangeKeySizeBits == 256
    with pytest.raises(md.ScardError) as missing:
        md.CardGetContainerInfo(cd, 7)
    assert missing.value.code == md.SCARD_E_NO_KEY_CONTAINER
    with pytest.raises(md.ScardError) as small:
        md.CardGetContainerProperty(cd, 0, md.CCP_PIN_IDENTIFIER, 2)
    assert small.value.code == md.ERROR_INSUFFICIENT_BUFFER


def _sign(cd: md.CardData, index: int, spec: int, data: bytes, **kwargs: Any) -> bytes:
    return md.CardSignData(cd, md.CARD_SIGNING_INFO(2, index, spec, pbData=data, **kwargs))


def test_files_and_errors(cd: md.CardData, piv: PivCard) -> None:
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(md.CardReadFile(cd, "mscp", "kxc00"))
    assert certificate.public_key().public_numbers() == piv.keys[0x9A].public_numbers()
    assert md.CardGetFileInfo(cd, "mscp", "kxc00").cbFileSize == len(md.CardReadFile(cd, "mscp", "kxc00"))
    cases = [
        (lambda: md.CardReadFile(cd, "mscp", "kxc09"), md.SCARD_E_FILE_NOT_FOUND),
        (lambda: md.CardReadFile(cd, "nodir", "x"), md.SCARD_E_DIR_NOT_FOUND),
        (lambda: md.CardReadFile(cd, "mscp", "toolongname"), md.SCARD_E_INVALID_PARAMETER),
        (lambda: md.CardReadFile(cd, "mscp", "cmapfile", 1), md.SCARD_E_INVALID_PARAMETER),
        (lambda: md.CardGetProperty(cd, "No Such Property"), md.SCARD_E_INVALID_PARAMETER),
        (lambda: md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, None, 9), md.SCARD_E_INVALID_PARAMETER),
        (lambda: md.CardAuthenticateEx(cd, 0, 0, b"1"), md.SCARD_E_INVALID_PARAMETER),
        (lambda: md.CardAuthenticateEx(cd, 1, 0x1, b"123456"), md.SCARD_E_INVALID_PARAMETER),
        (lambda: md.CardImportSessionKey(cd, 0, None, "", "", b""), md.SCARD_E_UNSUPPORTED_FEATURE),
        (lambda: md.MDEncryptData(cd, 0, "", b""), md.SCARD_E_UNSUPPORTED_FEATURE),
        (lambda: md.CardGetProperty(cd, md.CP_ENUM_ALGORITHMS), md.SCARD_E_INVALID_PARAMETER),
    ]
    for call, code in cases:
        with pytest.raises(md.ScardError) as raised:
            call()
        assert raised.value.code == code


def test_pin_change_unblock_and_challenge_response(piv: PivCard) -> None:
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    md.CardChangeAuthenticatorEx(card_data, md.PIN_CHANGE_FLAG_CHANGEPIN, 1, b"123456", 1, b"654321", 0)
    for _ in range(3):
        with pytest.raises(md.ScardError):
            md.CardAuthenticateEx(card_data, 1, 0, b"000000")
    with pytest.raises(md.ScardError) as blocked:
        md.CardAuthenticateEx(card_data, 1, 0, b"654321")
    assert blocked.value.code == md.SCARD_W_CHV_BLOCKED and blocked.value.attempts_remaining == 0
    md.CardChangeAuthenticatorEx(card_data, md.PIN_CHANGE_FLAG_UNBLOCK, 3, b"12345678", 1, b"111111", 0)
    md.CardAuthenticateEx(card_data, 1, 0, b"111111")
    from signin.enroll import admin_response
    from vcard.testing.provisioning import DEFAULT_MANAGEMENT_KEY

    challenge = md.CardGetChallenge(card_data)
    with pytest.raises(md.ScardError) as wrong:
        md.CardAuthenticateChallenge(card_data, bytes(8))
    assert wrong.value.code == md.SCARD_W_WRONG_CHV
    challenge = md.CardGetChallenge(card_data)
    md.CardAuthenticateChallenge(card_data, admin_response(DEFAULT_MANAGEMENT_KEY, challenge))
    state = md.dword(md.CardGetProperty(card_data, md.CP_CARD_AUTHENTICATED_STATE))
    assert state == 0x06
    virtual.close()


def test_warm_cache_sign_in_costs_a_handful_of_apdus(piv: PivCard) -> None:
    cache = GlobalCache()

    def sign_in() -> int:
        card_data = md.CardData.inprocess(piv.card, cache=cache)
        md.CardAcquireContext(card_data, 0)
        card_data.connection.meter.reset()
        with card_data.transaction():
            md.CardReadFile(card_data, "mscp", "cmapfile")
            md.CardReadFile(card_data, "mscp", "kxc00")
            md.CardGetContainerInfo(card_data, 0)
            md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, b"123456")
            _sign(card_data, 0, md.AT_KEYEXCHANGE, hashlib.sha256(b"x").digest(), aiHashAlg=md.CALG_SHA_256)
            md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
        return card_data.connection.meter.apdus

    cold = sign_in()
    warm = sign_in()
    assert warm < cold
    assert warm <= 8  # CHUID, VERIFY, GENERAL AUTHENTICATE (chained + GET RESPONSE), deauthenticate


def test_optional_write_support_generates_and_stores_certificates() -> None:
    from signin.ca import certificate_for
    from signin.enroll import admin_response
    from vcard.testing.provisioning import DEFAULT_MANAGEMENT_KEY

    # DELETE KEY (F6) came with YubiKey 5.7; the piv profile claims 5.4.3, so claim 5.7.4 here
    # (a 5.7 whose management key was set to 3DES, which 5.7 still supports)
    profile = load_profile("piv")
    profile.applets["piv"] = {**profile.applets["piv"], "version": "5.7.4"}
    virtual = VirtualCard.open(profile, None, ephemeral=True)
    cache = GlobalCache()
    writer = md.CardData.inprocess(virtual.card, cache=cache, piv_writable=True)
    md.CardAcquireContext(writer, 0)
    reader = md.CardData.inprocess(virtual.card, cache=cache)  # a read-only view in another "process"
    md.CardAcquireContext(reader, 0)
    assert md.dword(md.CardGetProperty(writer, md.CP_CARD_READ_ONLY)) == 0
    with pytest.raises(md.ScardError) as no_admin:
        md.CardCreateContainer(writer, 0, md.CARD_CREATE_CONTAINER_KEY_GEN, md.AT_KEYEXCHANGE, 2048, b"")
    assert no_admin.value.code == md.SCARD_W_SECURITY_VIOLATION
    assert md.CardEnumFiles(reader, "mscp") == ["cmapfile"]  # cached now
    md.CardAuthenticateChallenge(writer, admin_response(DEFAULT_MANAGEMENT_KEY, md.CardGetChallenge(writer)))
    md.CardCreateContainer(writer, 0, md.CARD_CREATE_CONTAINER_KEY_GEN, md.AT_KEYEXCHANGE, 2048, b"")
    blob = md.PUBLICKEYBLOB.unpack(md.CardGetContainerInfo(writer, 0).pbKeyExPublicKey)
    key = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    md.CardCreateFile(writer, "mscp", "kxc00", 0, md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc)
    certificate = certificate_for(key, "written through the minidriver")
    md.CardWriteFile(writer, "mscp", "kxc00", 0, certificate)
    reader_view = md.CardData.inprocess(virtual.card, cache=cache, piv_writable=True)
    md.CardAcquireContext(reader_view, 0)
    assert md.CardReadFile(reader_view, "mscp", "kxc00") == certificate  # cardcf (5FFF12) moved
    md.CardAuthenticateEx(reader_view, md.ROLE_USER, 0, b"123456")
    digest = hashlib.sha256(b"w").digest()
    signature = _sign(reader_view, 0, md.AT_KEYEXCHANGE, digest, aiHashAlg=md.CALG_SHA_256)
    key.verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    md.CardDeleteContainer(writer, 0)
    with pytest.raises(md.ScardError) as gone:
        md.CardGetContainerInfo(writer, 0)
    assert gone.value.code == md.SCARD_E_NO_KEY_CONTAINER
    virtual.close()
