"""The PIV and GIDS backends through the API: card-specific rules, PIV write support, cards
without the vcard vendor commands, and the status-word translations every backend shares."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils
from md_support import (
    GIDS_ADMIN_KEY,
    PIN,
    PIV_MANAGEMENT_KEY,
    PUK,
    Card,
    WithoutVendorCommands,
    auth_state,
    gids_card,
    open_card,
    raises,
)

import minidriver as md
from minidriver.backends.base import Backend, operation_error, tlv_encode, wrong_pin
from minidriver.backends.gids import KEYMAP, MASTERFILE, GidsBackend
from minidriver.cache import GlobalCache
from signin.ca import certificate_for
from signin.enroll import admin_response
from vcard.host import ApduError, InProcessConnection, SmartCardProtocol
from vcard.testing.provisioning import PivProvisioner

INVALID = md.SCARD_E_INVALID_PARAMETER
UNSUPPORTED = md.SCARD_E_UNSUPPORTED_FEATURE
UNKNOWN = md.CARD_DATA_VALUE_UNKNOWN


@pytest.fixture
def piv() -> Iterator[Card]:
    card = Card(open_card("piv"), {})
    yield card
    card.virtual.close()


@pytest.fixture
def gids() -> Iterator[Card]:
    card = gids_card()
    yield card
    card.virtual.close()


# --- status words --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sw", "code", "attempts"),
    [
        (0x63C2, md.SCARD_W_WRONG_CHV, 2),
        (0x63C0, md.SCARD_W_CHV_BLOCKED, 0),
        (0x6983, md.SCARD_W_CHV_BLOCKED, 0),
        (0x6982, md.SCARD_W_WRONG_CHV, UNKNOWN),
        (0x6300, md.SCARD_W_WRONG_CHV, UNKNOWN),
        (0x6A80, md.SCARD_W_WRONG_CHV, UNKNOWN),
        (0x6700, md.SCARD_W_WRONG_CHV, UNKNOWN),
        (0x6A88, INVALID, None),
        (0x6A86, INVALID, None),
        (0x6F00, md.SCARD_E_UNEXPECTED, None),
    ],
)
def test_failed_verification_status_words(sw: int, code: int, attempts: int | None) -> None:
    error = wrong_pin(sw)
    assert (error.code, error.attempts_remaining) == (code, attempts)


@pytest.mark.parametrize(
    ("sw", "code"),
    [
        (0x6982, md.SCARD_W_SECURITY_VIOLATION),
        (0x6985, md.SCARD_W_SECURITY_VIOLATION),
        (0x6A82, md.SCARD_E_FILE_NOT_FOUND),
        (0x6A88, md.SCARD_E_FILE_NOT_FOUND),
        (0x6A84, md.SCARD_E_WRITE_TOO_MANY),
        (0x6A80, INVALID),
        (0x6700, INVALID),
        (0x6984, INVALID),
        (0x6F00, md.SCARD_E_UNEXPECTED),
    ],
)
def test_failed_operation_status_words(sw: int, code: int) -> None:
    error = operation_error(ApduError(sw), "GET DATA")
    assert error.code == code and f"{sw:04X}" in str(error)


def test_the_backend_interface_defaults_to_a_read_only_card() -> None:
    """What a backend inherits for what its card cannot do (spec §8: entry exists, UNSUPPORTED)."""
    backend = Backend(SmartCardProtocol(InProcessConnection(WithoutVendorCommands(None), power_on=False)))
    assert backend.read_only and backend.capabilities() == md.CARD_CAPABILITIES(1, 1, 0)
    for call in (
        lambda: backend.write_cardcf(bytes(6)),
        lambda: backend.create_directory("apps", 1),
        lambda: backend.delete_directory("apps"),
        lambda: backend.create_file("apps", "f", 0, 1),
        lambda: backend.write_file("apps", "f", b""),
        lambda: backend.delete_file("apps", "f"),
        lambda: backend.create_container(0, 1, md.AT_KEYEXCHANGE, 2048, b"", 1),
        lambda: backend.delete_container(0),
        lambda: backend.get_challenge(md.ROLE_ADMIN),
        lambda: backend.authenticate_challenge(md.ROLE_ADMIN, b""),
        lambda: backend.change_pin(md.ROLE_USER, b"", b""),
        lambda: backend.unblock(md.ROLE_USER, md.ROLE_ADMIN, b"", b""),
    ):
        raises(UNSUPPORTED, call)


# --- PIV -----------------------------------------------------------------------------------------


def test_piv_pin_rules(piv: Card) -> None:
    cd = piv.card_data()
    puk_role = 3
    wrong = raises(md.SCARD_W_WRONG_CHV, lambda: md.CardAuthenticateEx(cd, md.ROLE_USER, 0, b"123456789"))
    assert wrong.attempts_remaining == UNKNOWN  # too long for PIV: refused before the card counts it
    raises(INVALID, lambda: md.CardAuthenticateEx(cd, puk_role, 0, PUK))  # the PUK only unblocks
    change = md.PIN_CHANGE_FLAG_CHANGEPIN
    raises(INVALID, lambda: md.CardChangeAuthenticatorEx(cd, change, 1, PIN, 1, b"123456789"))
    raises(
        INVALID, lambda: md.CardChangeAuthenticatorEx(cd, md.PIN_CHANGE_FLAG_UNBLOCK, puk_role, PUK, 2, b"x")
    )
    # the PIN is unblocked with the PUK, not with the management key
    response = admin_response(PIV_MANAGEMENT_KEY, md.CardGetChallenge(cd))
    raises(
        UNSUPPORTED,
        lambda: md.CardUnblockPin(
            cd, md.wszCARD_USER_USER, response, b"1111", 0, md.CARD_AUTHENTICATE_PIN_PIN
        ),
    )
    # the PUK changes like a PIN and then unblocks with its new value
    md.CardChangeAuthenticatorEx(cd, change, puk_role, PUK, puk_role, b"87654321")
    raises(
        md.SCARD_W_WRONG_CHV,
        lambda: md.CardChangeAuthenticatorEx(cd, md.PIN_CHANGE_FLAG_UNBLOCK, puk_role, PUK, 1, b"111111"),
    )
    raises(
        INVALID,
        lambda: md.CardChangeAuthenticatorEx(
            cd, md.PIN_CHANGE_FLAG_UNBLOCK, puk_role, b"87654321", 1, b"123456789"
        ),
    )
    md.CardChangeAuthenticatorEx(cd, md.PIN_CHANGE_FLAG_UNBLOCK, puk_role, b"87654321", 1, b"111111")
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, b"111111")


@pytest.fixture
def piv57() -> Iterator[Card]:
    """A PIV card claiming YubiKey 5.7, whose DELETE KEY lets the minidriver delete containers."""
    card = Card(open_card("piv", version="5.7.4"), {})
    yield card
    card.virtual.close()


def test_piv_write_support_rules_and_ecc_key_generation(piv57: Card) -> None:
    piv = piv57
    writer = piv.card_data(piv_writable=True)
    response = admin_response(PIV_MANAGEMENT_KEY, md.CardGetChallenge(writer))
    md.CardAuthenticateChallenge(writer, response)
    gen, imp = md.CARD_CREATE_CONTAINER_KEY_GEN, md.CARD_CREATE_CONTAINER_KEY_IMPORT
    for code, args in (
        (UNSUPPORTED, (0, imp, md.AT_KEYEXCHANGE, 2048, b"\x07\x02", md.ROLE_USER)),  # generation only
        (INVALID, (30, gen, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_USER)),  # no PIV slot for it
        (UNSUPPORTED, (0, gen, md.AT_KEYEXCHANGE, 1000, b"", md.ROLE_USER)),
    ):
        raises(code, lambda a=args: md.CardCreateContainerEx(writer, *a))
    # container 1 (9C) with ROLE_EVERYONE: generated with PIN policy "never", signs without a PIN
    md.CardCreateContainerEx(writer, 1, gen, md.AT_ECDSA_P256, 0, b"", md.ROLE_EVERYONE)
    blob = md.public_key_of(md.CardGetContainerInfo(writer, 1))
    assert isinstance(blob, md.BCRYPT_ECCKEY_BLOB) and blob.dwMagic == md.BCRYPT_ECDSA_PUBLIC_P256_MAGIC
    key = ec.EllipticCurvePublicNumbers(blob.x, blob.y, ec.SECP256R1()).public_key()
    assert md.dword(md.CardGetContainerProperty(writer, 1, md.CCP_PIN_IDENTIFIER)) == md.ROLE_EVERYONE
    reader = piv.card_data()  # no PIN, no admin
    digest = hashlib.sha256(b"no pin").digest()
    raw = md.CardSignData(reader, md.CARD_SIGNING_INFO(2, 1, md.AT_ECDSA_P256, pbData=digest))
    signature = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    access = md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc
    raises(md.ERROR_FILE_EXISTS, lambda: md.CardCreateFile(writer, "mscp", "cmapfile", 0, access))
    cmapfile = md.CardReadFile(writer, "mscp", "cmapfile")
    md.CardWriteFile(writer, "mscp", "cmapfile", 0, b"ignored")  # derived from the slots: not stored
    assert md.CardReadFile(piv.card_data(), "mscp", "cmapfile") == cmapfile
    md.CardDeleteContainer(writer, 1)
    raises(md.SCARD_E_NO_KEY_CONTAINER, lambda: md.CardGetContainerInfo(writer, 1))
    # a later writable view sees the change through cardcf (5FFF12 on a writable PIV card)
    raises(md.SCARD_E_NO_KEY_CONTAINER, lambda: md.CardGetContainerInfo(piv.card_data(piv_writable=True), 1))


def test_piv_without_the_vendor_commands(piv: Card) -> None:
    """A plain PIV card: the default roles (PIN, management key, PUK), state tracked by the layer."""
    cd = md.CardData.inprocess(WithoutVendorCommands(piv.virtual.card), cache=GlobalCache())
    md.CardAcquireContext(cd, 0)
    assert md.dword(md.CardGetProperty(cd, md.CP_CARD_LIST_PINS)) == 0b1110
    admin = md.PIN_INFO.unpack(md.CardGetProperty(cd, md.CP_CARD_PIN_INFO, None, md.ROLE_ADMIN))
    assert admin.PinType == md.PinType.ChallengeResponsePinType
    assert auth_state(cd) == 0
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    assert auth_state(cd) == md.CREATE_PIN_SET(md.ROLE_USER)
    raises(md.SCARD_W_WRONG_CHV, lambda: md.CardAuthenticateEx(cd, md.ROLE_USER, 0, b"000000"))
    assert auth_state(cd) == 0


# --- GIDS ----------------------------------------------------------------------------------------


def test_gids_rules(gids: Card) -> None:
    cd = gids.card_data()
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    gen = md.CARD_CREATE_CONTAINER_KEY_GEN
    for code, call in (
        (
            UNSUPPORTED,
            lambda: md.CardCreateDirectory(
                cd, "apps", md.CARD_DIRECTORY_ACCESS_CONDITION.AdminCreateDeleteDirAc
            ),
        ),
        (INVALID, lambda: md.CardCreateFile(cd, "mscp", "big", 0x7FFFFFFF, 1)),
        (UNSUPPORTED, lambda: md.CardCreateContainer(cd, 5, gen, md.AT_ECDSA_P256, 0, b"")),
        (
            UNSUPPORTED,
            lambda: md.CardCreateContainerEx(cd, 5, gen, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_EVERYONE),
        ),
        (INVALID, lambda: md.CardCreateContainer(cd, 5, gen, md.AT_KEYEXCHANGE, 1000, b"")),
        (
            UNSUPPORTED,
            lambda: md.CardChangeAuthenticatorEx(cd, md.PIN_CHANGE_FLAG_CHANGEPIN, 2, b"x", 2, b"y"),
        ),
        (
            INVALID,
            lambda: md.CardChangeAuthenticatorEx(cd, md.PIN_CHANGE_FLAG_CHANGEPIN, 1, PIN, 1, b"1" * 20),
        ),
    ):
        raises(code, call)
    md.CardChangeAuthenticator(cd, md.wszCARD_USER_USER, PIN, b"4321", 0, md.CARD_AUTHENTICATE_PIN_PIN)
    md.CardDeauthenticateEx(cd, md.PIN_SET_ALL_ROLES, 0)
    md.CardAuthenticatePin(cd, md.wszCARD_USER_USER, b"4321")


def test_gids_without_the_vendor_commands(gids: Card) -> None:
    """A plain GIDS card: the default roles; its log-out clears every role at once."""
    cd = md.CardData.inprocess(WithoutVendorCommands(gids.virtual.card), cache=GlobalCache())
    md.CardAcquireContext(cd, 0)
    assert md.dword(md.CardGetProperty(cd, md.CP_CARD_LIST_PINS)) == 0b110
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    challenge = md.CardGetChallengeEx(cd, md.ROLE_ADMIN, 0)
    md.CardAuthenticateEx(cd, md.ROLE_ADMIN, 0, admin_response(GIDS_ADMIN_KEY, challenge))
    assert auth_state(cd) == 0b110
    raises(UNSUPPORTED, lambda: md.CardDeauthenticateEx(cd, md.CREATE_PIN_SET(md.ROLE_USER), 0))
    assert auth_state(cd) == 0b110
    md.CardDeauthenticateEx(cd, md.PIN_SET_ALL_ROLES, 0)
    assert auth_state(cd) == 0
    raises(md.SCARD_W_SECURITY_VIOLATION, lambda: md.CardCreateDirectory(cd, "apps", 1))  # really logged out


def test_piv_containers_described_from_certificates_alone(piv: Card) -> None:
    """Slots with a certificate but no key metadata (keys loaded elsewhere): key and size from the
    certificate; a gzip-compressed certificate (CertInfo 01, SP 800-73-4 part 1) reads back as DER."""
    rsa_key = rsa.generate_private_key(65537, 2048).public_key()
    ec_key = ec.generate_private_key(ec.SECP384R1()).public_key()
    rsa_der, ec_der = certificate_for(rsa_key, "rsa"), certificate_for(ec_key, "ec")
    provisioner = PivProvisioner(InProcessConnection(piv.virtual.card, power_on=False))
    provisioner.select()
    provisioner.authenticate()
    for tag, body in (
        (
            0x5FC105,
            tlv_encode(0x70, gzip.compress(rsa_der)) + tlv_encode(0x71, b"\x01") + tlv_encode(0xFE, b""),
        ),
        (0x5FC10A, tlv_encode(0x70, ec_der) + tlv_encode(0x71, b"\x00") + tlv_encode(0xFE, b"")),
    ):
        data = tlv_encode(0x5C, tag.to_bytes(3, "big")) + tlv_encode(0x53, body)
        provisioner.apdu.send_apdu(0x00, 0xDB, 0x3F, 0xFF, data, le=None)
    provisioner.logout()
    cd = piv.card_data()
    assert md.CardReadFile(cd, "mscp", "kxc00") == rsa_der
    assert md.CardReadFile(cd, "mscp", "ksc01") == ec_der
    blob = md.public_key_of(md.CardGetContainerInfo(cd, 0))
    assert isinstance(blob, md.PUBLICKEYBLOB) and blob.modulus == rsa_key.public_numbers().n
    ecc = md.public_key_of(md.CardGetContainerInfo(cd, 1))
    assert isinstance(ecc, md.BCRYPT_ECCKEY_BLOB) and ecc.bits == 384 and ecc.x == ec_key.public_numbers().x
    records = md.structures.unpack_cmapfile(md.CardReadFile(cd, "mscp", "cmapfile"))
    assert (records[0].wKeyExchangeKeySizeBits, records[1].wSigKeySizeBits) == (2048, 384)


def test_gids_containers_files_and_an_uninitialised_card(gids: Card) -> None:
    cd = gids.card_data()
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    gen = md.CARD_CREATE_CONTAINER_KEY_GEN
    raises(
        INVALID, lambda: md.CardCreateContainer(cd, 200, gen, md.AT_KEYEXCHANGE, 2048, b"")
    )  # beyond the keymap
    raises(
        INVALID,
        lambda: md.CardCreateContainer(cd, 5, md.CARD_CREATE_CONTAINER_KEY_IMPORT, 1, 2048, b"garbage"),
    )
    # an existing container is overwritten (spec §1.4): a new key, still container 0
    old = md.public_key_of(md.CardGetContainerInfo(cd, 0))
    md.CardCreateContainer(cd, 0, gen, md.AT_KEYEXCHANGE, 1024, b"")
    new = md.public_key_of(md.CardGetContainerInfo(cd, 0))
    assert isinstance(old, md.PUBLICKEYBLOB) and isinstance(new, md.PUBLICKEYBLOB)
    assert (old.bitlen, new.bitlen) == (2048, 1024) and old.modulus != new.modulus
    raises(md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardReadFile(cd, "mscp", "nofile"))
    raises(md.SCARD_E_DIR_NOT_FOUND, lambda: md.CardEnumFiles(cd, "nodir"))
    admin_only = md.CARD_FILE_ACCESS_CONDITION.AdminReadWriteAc
    md.CardAuthenticateChallenge(cd, admin_response(GIDS_ADMIN_KEY, md.CardGetChallenge(cd)))
    md.CardCreateFile(cd, "mscp", "secret", 0, admin_only)
    assert md.CardGetFileInfo(cd, "mscp", "secret").AccessCondition == admin_only
    md.CardDeauthenticateEx(cd, md.CREATE_PIN_SET(md.ROLE_ADMIN), 0)
    raises(md.SCARD_W_SECURITY_VIOLATION, lambda: md.CardReadFile(cd, "mscp", "secret"))
    raises(
        md.SCARD_W_SECURITY_VIOLATION, lambda: md.CardWriteFile(cd, "mscp", "secret", 0, b"x")
    )  # user only
    blank = Card(open_card("gids-blank"), {})
    try:
        uninitialised = blank.card_data()  # the GIDS application answers, but has no file system yet
        for call in (
            lambda: md.CardReadFile(uninitialised, None, "cardid"),
            lambda: md.CardGetProperty(uninitialised, md.CP_CARD_GUID),
        ):
            error = raises(md.SCARD_E_UNEXPECTED, call)
            assert "not initialised" in str(error)
    finally:
        blank.virtual.close()


def test_gids_pin_change_unblock_and_an_unreadable_cmapfile(gids: Card) -> None:
    cd = gids.card_data()
    change, unblock = md.PIN_CHANGE_FLAG_CHANGEPIN, md.PIN_CHANGE_FLAG_UNBLOCK
    wrong = raises(
        md.SCARD_W_WRONG_CHV, lambda: md.CardChangeAuthenticatorEx(cd, change, 1, b"000000", 1, b"4321")
    )
    assert wrong.attempts_remaining == 2
    challenge = md.CardGetChallengeEx(cd, md.ROLE_ADMIN, 0)
    raises(md.SCARD_W_WRONG_CHV, lambda: md.CardChangeAuthenticatorEx(cd, unblock, 2, bytes(8), 1, b"4321"))
    response = admin_response(GIDS_ADMIN_KEY, md.CardGetChallengeEx(cd, md.ROLE_ADMIN, 0))
    raises(INVALID, lambda: md.CardChangeAuthenticatorEx(cd, unblock, 2, response, 1, b"9" * 20))
    response = admin_response(GIDS_ADMIN_KEY, md.CardGetChallengeEx(cd, md.ROLE_ADMIN, 0))
    assert md.CardChangeAuthenticatorEx(cd, unblock, 2, response, 1, b"4321") == UNKNOWN
    assert challenge  # (the first challenge was spent by the refused response)
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, b"4321")
    raises(md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardReadFile(cd, None, "nofile"))
    md.CardWriteFile(cd, "mscp", "cmapfile", 0, b"not a cmapfile")  # the Base CSP owns it; any bytes go
    other = gids.card_data()
    error = raises(md.SCARD_E_COMM_DATA_LOST, lambda: md.CardGetContainerInfo(other, 0))
    assert "cmapfile" in str(error)


def test_piv_write_support_certificate_files(piv: Card) -> None:
    writer = piv.card_data(piv_writable=True)
    md.CardAuthenticateChallenge(writer, admin_response(PIV_MANAGEMENT_KEY, md.CardGetChallenge(writer)))
    md.CardCreateContainer(writer, 2, md.CARD_CREATE_CONTAINER_KEY_GEN, md.AT_ECDHE_P256, 0, b"")
    blob = md.public_key_of(md.CardGetContainerInfo(writer, 2))
    assert isinstance(blob, md.BCRYPT_ECCKEY_BLOB) and blob.dwMagic == md.BCRYPT_ECDH_PUBLIC_P256_MAGIC
    key = ec.EllipticCurvePublicNumbers(blob.x, blob.y, ec.SECP256R1()).public_key()
    certificate = certificate_for(key, "key management")
    md.CardCreateFile(writer, "mscp", "kxc02", 0, md.CARD_FILE_ACCESS_CONDITION.EveryoneReadUserWriteAc)
    md.CardWriteFile(writer, "mscp", "kxc02", 0, certificate)
    assert md.CardReadFile(writer, "mscp", "kxc02") == certificate
    assert "kxc02" in md.CardEnumFiles(writer, "mscp")
    md.CardDeleteFile(writer, "mscp", "kxc02")
    assert "kxc02" not in md.CardEnumFiles(writer, "mscp")
    raises(md.SCARD_E_FILE_NOT_FOUND, lambda: md.CardReadFile(writer, "mscp", "kxc02"))
    raises(INVALID, lambda: md.CardCreateFile(writer, "mscp", "kxc30", 0, 1))  # no PIV slot for it
    raises(UNSUPPORTED, lambda: md.CardCreateFile(writer, "mscp", "notes", 0, 1))  # only certificates


def test_gids_data_the_layer_cannot_read_is_refused(gids: Card) -> None:
    """Certificates stored plain or corrupt, a malformed keymap or masterfile (written behind the layer)."""
    cd = gids.card_data()
    md.CardAuthenticateEx(cd, md.ROLE_USER, 0, PIN)
    md.CardAuthenticateChallenge(cd, admin_response(GIDS_ADMIN_KEY, md.CardGetChallenge(cd)))
    backend = cd.pvVendorSpecific.backend  # type: ignore[union-attr]
    assert isinstance(backend, GidsBackend)
    record = next(r for r in backend.masterfile() if r.filename == "kxc00")
    der = md.CardReadFile(cd, "mscp", "kxc00")
    backend.put_do(record.fid, record.do, der)  # stored plain by another tool: read as it is
    assert md.CardReadFile(gids.card_data(), "mscp", "kxc00") == der
    backend.put_do(record.fid, record.do, b"\x01\x00\x10\x00not zlib")
    raises(md.SCARD_E_COMM_DATA_LOST, lambda: md.CardReadFile(gids.card_data(), "mscp", "kxc00"))
    backend.put_do(*KEYMAP, b"\x02")
    raises(md.SCARD_E_COMM_DATA_LOST, lambda: md.CardGetContainerInfo(gids.card_data(), 0))
    backend.put_do(*MASTERFILE, b"\x01\x02\x03")
    raises(md.SCARD_E_COMM_DATA_LOST, lambda: md.CardEnumFiles(gids.card_data(), "mscp"))
