"""GIDS applet, APDU level: SELECT, DO file system and ACLs, PINs, admin key, keys, lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gids_support import DEFAULT_ADMIN_KEY, FRESH_MASTERFILE, GIDS_TOOL_INITIALIZE, Host

from vcard import tlv
from vcard.applets.gids.admin import host_mutual_cryptogram
from vcard.applets.gids.constants import ADMIN_KEY_FCP, EF_ATR, INIT_EF_FCPS
from vcard.crypto import cbc_encrypt

FCI = bytes.fromhex("61124F0BA0000003974254465902017303400 1C0".replace(" ", ""))
SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host("gids")
    h.select()
    yield h
    h.close()


@pytest.fixture
def blank() -> Iterator[Host]:
    h = Host("gids-blank")
    yield h
    h.close()


def rsa_public(template: bytes) -> rsa.RSAPublicKey:
    modulus = tlv.find(template, 0x7F49, 0x81)
    exponent = tlv.find(template, 0x7F49, 0x82)
    assert modulus is not None and exponent is not None
    return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()


# ---- SELECT -------------------------------------------------------------------------------


def test_select_by_partial_aid_returns_the_fci(host: Host) -> None:
    assert host.select() == (FCI, 0x9000)
    assert host.hex("00A404000BA000000397425446590201 00") == (FCI, 0x9000)


def test_select_variants(host: Host) -> None:
    assert host.hex("00A4040C09A00000039742545659") == (b"", 0x6A82)  # not our AID
    assert host.hex("00A4040C09A0000003974254465900") == (b"", 0x9000)
    assert host.hex("00A4040409A0000003974254465900") == (
        bytes.fromhex("620882013 88C03033030".replace(" ", "")),
        0x9000,
    )
    assert host.hex("00A4000C023FFF") == (b"", 0x9000)
    assert host.hex("00A4000C02A010") == (b"", 0x9000)
    assert host.hex("00A4000402A010") == (INIT_EF_FCPS[0xA010], 0x9000)
    assert host.hex("00A4000C02B0FF")[1] == 0x6A82
    assert host.hex("00A4080002500000")[1] == 0x6A82  # OpenSC's PKCS#15 probes must fail


@pytest.mark.parametrize(
    "aid",
    ["A000000308000010000100", "A0000003974349445F0100", "A000000151000000", "A0000003080000100001"],
)
def test_foreign_aids_answer_6a82(host: Host, aid: str) -> None:
    assert host.hex(f"00A40400{len(aid) // 2:02X}{aid}00")[1] == 0x6A82


# ---- data objects ---------------------------------------------------------------------------


def test_initialised_card_holds_the_minidriver_files(host: Host) -> None:
    assert host.get_do(0xA000, 0xDF1F) == (tlv.encode(0xDF1F, FRESH_MASTERFILE), 0x9000)
    assert host.get_do(0xA010, 0xDF23) == (bytes.fromhex("DF2300"), 0x9000)  # present and empty
    assert host.get_do(0xA010, 0xDF21) == (bytes.fromhex("DF21086D73637000000000"), 0x9000)
    assert host.get_do(0xA010, 0xDF22) == (bytes.fromhex("DF2206000000000000"), 0x9000)
    cardid, sw = host.get_do(0xA012, 0xDF20)
    assert sw == 0x9000 and cardid[:3] == bytes.fromhex("DF2010")
    assert host.get_do(0xA000, 0xDF20)[1] == 0x6A88  # no keymap before the first key
    assert host.hex("00CB2F01025C0000") == (EF_ATR, 0x9000)


def test_card_ids_are_unique_per_card() -> None:
    ids = set()
    for _ in range(3):
        h = Host("gids")
        ids.add(h.get_do(0xA012, 0xDF20)[0])
        h.close()
    assert len(ids) == 3


def test_get_data_errors(host: Host) -> None:
    assert host.get_do(0xA015, 0xDF20)[1] == 0x6A82  # no such EF
    assert host.get_do(0xA010, 0xDF30)[1] == 0x6A88  # no such DO
    assert host.get_do(0xA011, 0xDF20)[1] == 0x6982  # A011: GET never
    assert host.hex("00CBFFFF045C02DF2000")[1] == 0x6A86
    assert host.hex("00CB3FFF045C027F7300")[1] == 0x6A88  # no PUK on this card
    assert host.hex("00CBA010025C05")[1] == 0x6A80  # malformed 5C


def test_get_all_dos_concatenated(host: Host) -> None:
    data, sw = host.hex("00CBA010025C0000")
    assert sw == 0x9000
    assert [item.tag for item in tlv.decode(data)] == [0xDF21, 0xDF22, 0xDF23]


def test_put_data_needs_the_pin_or_admin(host: Host) -> None:
    assert host.put_do(0xA010, 0xDF24, b"cert") == 0x6982
    assert host.verify() == 0x9000
    assert host.put_do(0xA010, 0xDF24, b"cert") == 0x9000
    assert host.get_do(0xA010, 0xDF24) == (tlv.encode(0xDF24, b"cert"), 0x9000)
    assert host.put_do(0xA012, 0xDF20, bytes(16)) == 0x6982  # cardid: admin only
    assert host.put_do(0xA014, 0xDF20, b"x") == 0x6982
    assert host.get_do(0xA013, 0xDF20)[1] == 0x6A88  # A013: PIN may read
    assert host.hex("00200082") == (b"", 0x9000)  # log out
    assert host.get_do(0xA013, 0xDF20)[1] == 0x6982
    assert host.mutual_auth() == 0x9000
    assert host.put_do(0xA012, 0xDF20, bytes(16)) == 0x9000
    assert host.put_do(0xA014, 0xDF20, b"x") == 0x9000


def test_zero_length_put_empties_then_deletes(host: Host) -> None:
    host.verify()
    assert host.put_do(0xA010, 0xDF24, b"data") == 0x9000
    assert host.put_do(0xA010, 0xDF24, b"") == 0x9000
    assert host.get_do(0xA010, 0xDF24) == (bytes.fromhex("DF2400"), 0x9000)
    assert host.put_do(0xA010, 0xDF24, b"") == 0x9000
    assert host.get_do(0xA010, 0xDF24)[1] == 0x6A88
    assert host.put_do(0xA010, 0xDF25, b"") == 0x9000  # absent: an empty DO is created
    assert host.get_do(0xA010, 0xDF25) == (bytes.fromhex("DF2500"), 0x9000)


def test_large_do_is_chained_in_and_out(host: Host) -> None:
    host.verify()
    value = bytes(range(256)) * 6
    assert host.put_do(0xA010, 0xDF24, value) == 0x9000
    assert host.get_do(0xA010, 0xDF24) == (tlv.encode(0xDF24, value), 0x9000)


# ---- PINs -------------------------------------------------------------------------------------


def test_pin_status_and_blocking(host: Host) -> None:
    assert host.hex("00CB3FFF045C027F7100") == (bytes.fromhex("7F7106970103930103"), 0x9000)
    assert host.hex("00200080")[1] == 0x63C3
    assert host.verify(b"000000") == 0x63C2
    assert host.hex("00CB3FFF045C027F7100")[0] == bytes.fromhex("7F7106970102930103")
    assert host.verify(b"000000") == 0x63C1
    assert host.verify(b"000000") == 0x63C0
    assert host.verify() == 0x6983
    assert host.hex("00200080")[1] == 0x6983


def test_verify_status_query_and_logout(host: Host) -> None:
    assert host.verify() == 0x9000
    assert host.hex("00200080")[1] == 0x9000
    assert host.hex("00200082")[1] == 0x9000
    assert host.hex("00200080")[1] == 0x63C3
    assert host.hex("0020008106313233343536")[1] == 0x6A88  # no PUK
    assert host.hex("0020018006313233343536")[1] == 0x6A86


def test_change_pin_old_new_without_separator(host: Host) -> None:
    assert host.send(0x24, 0x00, 0x80, b"123456" + b"87654321")[1] == 0x9000
    assert host.hex("00200080")[1] == 0x9000  # left verified
    assert host.verify(b"123456") == 0x63C2
    assert host.verify(b"87654321") == 0x9000
    assert host.send(0x24, 0x00, 0x80, b"87654321" + b"12")[1] == 0x6700  # new PIN too short
    assert host.send(0x24, 0x00, 0x80, b"1234")[1] == 0x6700


def test_set_pin_p1_01_needs_the_pin_once_operational(host: Host) -> None:
    assert host.send(0x24, 0x01, 0x80, b"654321")[1] == 0x6982
    host.verify()
    assert host.send(0x24, 0x01, 0x80, b"654321")[1] == 0x9000
    assert host.verify(b"654321") == 0x9000


# ---- admin key ------------------------------------------------------------------------------


def test_mutual_authentication(host: Host) -> None:
    assert host.mutual_auth() == 0x9000
    assert host.applet.security.is_authenticated(2)
    assert host.hex("00200082")[1] == 0x9000
    assert not host.applet.security.is_authenticated(2)
    assert host.mutual_auth(key=bytes(range(24))) == 0x6982
    assert not host.applet.security.is_authenticated(2)


def test_mutual_authentication_card_cryptogram_is_r1_r2_z2(host: Host) -> None:
    host.hex("0022C1A403830180")
    r1 = bytes(range(16))
    answer, _ = host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x81, r1)]), 256)
    r2 = tlv.find(answer, 0x7C, 0x81)
    assert r2 is not None
    cryptogram = host_mutual_cryptogram("3des", DEFAULT_ADMIN_KEY, r2, r1)
    answer, sw = host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, cryptogram)]), 256)
    assert sw == 0x9000 and len(answer) == 44
    from vcard.crypto import cbc_decrypt

    plain = cbc_decrypt("3des", DEFAULT_ADMIN_KEY, bytes(8), answer[4:])
    assert plain[:16] == r1 and plain[16:32] == r2 and plain[39] == 0x80


def test_general_authenticate_errors(host: Host) -> None:
    assert host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, bytes(40))]))[1] == 0x6985
    assert host.hex("0087000004 7C028200".replace(" ", ""))[1] == 0x6985
    assert host.hex("00870000037C0181")[1] == 0x6984  # malformed
    assert host.hex("00870000027A00")[1] == 0x6984
    assert host.hex("0022C1A403830181")[1] == 0x6984  # no such symmetric key


def test_external_authentication(host: Host) -> None:
    answer, sw = host.hex("00870000047C02810000")
    assert sw == 0x9000
    challenge = tlv.find(answer, 0x7C, 0x81)
    assert challenge is not None and len(challenge) == 8
    response = cbc_encrypt("3des", DEFAULT_ADMIN_KEY, bytes(8), challenge)
    assert host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, response)]))[1] == 0x9000
    assert host.applet.security.is_authenticated(2)
    answer, _ = host.hex("00870000047C02810000")
    assert host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, bytes(8))]))[1] == 0x6982


def test_change_admin_key_then_back(host: Host) -> None:
    new_key = bytes(range(24))
    template = "7024840180A51F8718{}8803B073DC"
    assert host.hex("00DB3FFF26" + template.format(new_key.hex()))[1] == 0x6982
    assert host.mutual_auth() == 0x9000
    assert host.hex("00DB3FFF26" + template.format(new_key.hex()))[1] == 0x9000
    host.hex("00200082")
    assert host.mutual_auth() == 0x6982
    assert host.mutual_auth(new_key) == 0x9000
    assert host.hex("00DB3FFF26" + template.format(DEFAULT_ADMIN_KEY.hex()))[1] == 0x9000
    host.hex("00200082")
    assert host.mutual_auth() == 0x9000


def test_aes_admin_key(host: Host) -> None:
    aes_key = bytes(range(16))
    assert host.mutual_auth() == 0x9000
    assert host.hex("00DB3FFF1E" + f"701C840180A5178710{aes_key.hex()}8803B073DC")[1] == 0x9000
    host.hex("00200082")
    assert host.mutual_auth(aes_key, "aes128") == 0x9000
    answer, _ = host.hex("00870000047C02810000")
    challenge = tlv.find(answer, 0x7C, 0x81)
    assert challenge is not None and len(challenge) == 16
    response = cbc_encrypt("aes128", aes_key, bytes(16), challenge)
    assert host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, response)]))[1] == 0x9000


def test_unblock_with_the_admin_key(host: Host) -> None:
    for _ in range(3):
        host.verify(b"999999")
    assert host.verify() == 0x6983
    assert host.send(0x2C, 0x02, 0x80, b"24682468")[1] == 0x6982  # admin not authenticated
    assert host.mutual_auth() == 0x9000
    assert host.send(0x2C, 0x02, 0x80, b"12")[1] == 0x6700
    assert host.send(0x2C, 0x02, 0x80, b"24682468")[1] == 0x9000
    assert not host.applet.security.is_authenticated(2)  # admin status dropped
    assert host.hex("00200082")[1] == 0x9000
    assert host.verify(b"24682468") == 0x9000


# ---- keys -------------------------------------------------------------------------------------


def test_generate_sign_decipher_rsa2048_as_opensc(host: Host) -> None:
    assert host.create_key_file() == 0x6982  # creating EFs needs the PIN
    host.verify()
    assert host.create_key_file() == 0x9000
    assert host.generate() == (b"", 0x9000)  # OpenSC: no Le, reads 7F49 afterwards
    template, sw = host.public_key()
    assert sw == 0x9000 and len(template) == 270
    assert template[:9] == bytes.fromhex("7F4982010981820100")
    public = rsa_public(template)
    assert public.key_size == 2048

    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"message")
    hashed = digest.finalize()
    assert host.hex("002241B606800157840181")[1] == 0x9000
    signature, sw = host.send(0x2A, 0x9E, 0x9A, SHA256_PREFIX + hashed, 256)
    assert sw == 0x9000
    public.verify(signature, b"message", padding.PKCS1v15(), hashes.SHA256())

    ciphertext = public.encrypt(b"secret session key", padding.PKCS1v15())
    assert host.hex("002241B806800147840181")[1] == 0x9000
    assert host.send(0x2A, 0x80, 0x86, ciphertext, 256) == (b"secret session key", 0x9000)
    assert host.send(0x2A, 0x80, 0x86, b"\x00" + ciphertext, 256) == (b"secret session key", 0x9000)
    assert host.send(0x2A, 0x80, 0x86, ciphertext[1:], 256)[1] == 0x6700

    oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    assert host.hex("002241B806800187840181")[1] == 0x9000
    assert host.send(0x2A, 0x80, 0x86, public.encrypt(b"oaep", oaep), 256) == (b"oaep", 0x9000)


def test_private_operations_need_the_pin(host: Host) -> None:
    host.verify()
    host.create_key_file()
    host.generate()
    assert host.hex("002241B606800157840181")[1] == 0x9000
    host.applet.security.idle_reset()  # the PIN status goes, the security environment stays
    assert host.send(0x2A, 0x9E, 0x9A, SHA256_PREFIX + bytes(32), 256)[1] == 0x6982
    host.verify()
    assert host.send(0x2A, 0x9E, 0x9A, SHA256_PREFIX + bytes(32), 256)[1] == 0x9000
    assert host.hex("00200082")[1] == 0x9000  # log out: PIN status and security environment go
    assert host.send(0x2A, 0x9E, 0x9A, SHA256_PREFIX + bytes(32), 256)[1] == 0x6985
    assert host.hex("002241B606800157840181")[1] == 0x6982
    assert host.generate()[1] == 0x6982
    assert host.public_key()[1] == 0x9000  # the public key is readable by everyone


def test_generate_with_le_answers_the_public_key(host: Host) -> None:
    host.verify()
    host.create_key_file(0x81, 0x06)
    template, sw = host.generate(0x81, 0x06, le=256)
    assert sw == 0x9000
    assert template[:5] == bytes.fromhex("7F49818881") and rsa_public(template).key_size == 1024
    assert host.public_key() == (template, 0x9000)


def test_security_environment_errors(host: Host) -> None:
    host.verify()
    assert host.send(0x2A, 0x9E, 0x9A, bytes(51))[1] == 0x6985  # no MSE
    assert host.hex("002241B606800157840182")[1] == 0x6984  # no such key
    assert host.create_key_file(0x81, 0x07, sign_only=True) == 0x9000
    assert host.generate()[1] == 0x9000
    assert host.hex("002241B806800147840181")[1] == 0x6984  # a signature-only key does not decipher
    assert host.hex("002241B606800150840181")[1] == 0x9000  # size nibble 0 is tolerated
    assert host.hex("0022F2B6")[1] == 0x6A81
    assert host.send(0x2A, 0x9E, 0x9A, bytes(300))[1] == 0x6700
    assert host.hex("002A8086020000")[1] == 0x6985  # MSE was for signing
    assert host.generate(0x81, 0x05)[1] == 0x6A81  # unsupported algorithm
    assert host.generate(0x82)[1] == 0x6984  # no key file


def test_raw_signature_with_a_host_padded_block(host: Host) -> None:
    host.verify()
    host.create_key_file()
    host.generate()
    public = rsa_public(host.public_key()[0])
    block = b"\x00\x01" + b"\xff" * (256 - 3 - 51) + b"\x00" + SHA256_PREFIX + bytes(32)
    assert host.hex("002241B606800117840181")[1] == 0x9000
    signature, sw = host.send(0x2A, 0x9E, 0x9A, block, 256)
    assert sw == 0x9000
    assert pow(int.from_bytes(signature, "big"), 65537, public.public_numbers().n) == int.from_bytes(
        block, "big"
    )


def test_ecc_p256_generate_and_sign(host: Host) -> None:
    host.verify()
    assert host.create_key_file(0x81, 0x0C) == 0x9000
    template, sw = host.generate(0x81, 0x0C, le=256)
    assert sw == 0x9000
    point = tlv.find(template, 0x7F49, 0x86)
    assert point is not None and len(point) == 65
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    digest = bytes(range(32))
    host.hex("002241B60680015C840181")
    signature, sw = host.send(0x2A, 0x9E, 0x9A, digest, 256)
    assert sw == 0x9000 and len(signature) == 64
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    public.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def rsa_import_template(key_ref: int, key: rsa.RSAPrivateKey) -> bytes:
    numbers = key.private_numbers()
    values = [
        0,
        numbers.public_numbers.n,
        numbers.public_numbers.e,
        numbers.d,
        numbers.p,
        numbers.q,
        numbers.dmp1,
        numbers.dmq1,
        numbers.iqmp,
    ]
    integers = [tlv.encode(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big")) for v in values]
    sequence = tlv.encode(0x30, integers)
    value_template = tlv.encode(
        0xA5, [bytes.fromhex("830102"), bytes.fromhex("840100"), tlv.encode(0x87, sequence)]
    )
    return tlv.encode(0x70, [tlv.encode(0x84, bytes([key_ref])), value_template])


def test_import_rsa_key_chained(host: Host) -> None:
    key = rsa.generate_private_key(65537, 2048)
    data = rsa_import_template(0x81, key)
    assert host.send(0xDB, 0x3F, 0xFF, data)[1] == 0x6984  # no key file yet
    host.verify()
    host.create_key_file()
    assert host.send(0xDB, 0x3F, 0xFF, data)[1] == 0x9000
    assert rsa_public(host.public_key()[0]).public_numbers() == key.public_key().public_numbers()
    host.hex("002241B606800157840181")
    signature, sw = host.send(0x2A, 0x9E, 0x9A, SHA256_PREFIX + bytes(32), 256)
    assert sw == 0x9000
    key.public_key().verify(signature, bytes(32), padding.PKCS1v15(), _prehashed_sha256())
    broken = rsa_import_template(0x81, key).replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)
    assert host.send(0xDB, 0x3F, 0xFF, broken)[1] == 0x6A80


def _prehashed_sha256() -> hashes.HashAlgorithm:
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    return Prehashed(hashes.SHA256())  # type: ignore[return-value]


def test_delete_key_file(host: Host) -> None:
    host.verify()
    host.create_key_file()
    host.generate()
    host.hex("00200082")
    assert host.hex("00A4000C02B081")[1] == 0x9000
    assert host.hex("00E40000")[1] == 0x6982  # the DF's delete condition: PIN or admin
    host.verify()
    assert host.hex("00E40000")[1] == 0x9000
    assert host.public_key()[1] == 0x6984
    assert host.create_key_file() == 0x9000  # the slot can be reused


def test_create_file_errors(host: Host) -> None:
    host.verify()
    assert host.send(0xE0, 0, 0, INIT_EF_FCPS[0xA010])[1] == 0x6A89  # exists
    assert host.send(0xE0, 0, 0, bytes.fromhex("620382 0138".replace(" ", "")))[1] == 0x6A80
    assert host.hex("00E0000003620100")[1] == 0x6A80


def test_ef_in_creation_state_refuses_data(host: Host) -> None:
    host.verify()
    assert host.send(0xE0, 0, 0, bytes.fromhex("620C8201398302A0158C03033000"))[1] == 0x9000
    assert host.put_do(0xA015, 0xDF20, b"x") == 0x6985
    assert host.hex("00440000")[1] == 0x9000
    assert host.put_do(0xA015, 0xDF20, b"x") == 0x9000


def test_get_challenge(host: Host) -> None:
    first, sw = host.hex("0084000008")
    assert sw == 0x9000 and len(first) == 8
    assert host.hex("0084000008")[0] != first


# ---- lifecycle ------------------------------------------------------------------------------


def test_blank_card_initialised_like_gids_tool(blank: Host) -> None:
    assert blank.select() == (FCI, 0x9000)
    assert blank.get_do(0xA000, 0xDF1F)[1] == 0x6A82  # OpenSC's "is the card new" test
    assert blank.hex("00CB3FFF045C027F7100")[1] == 0x9000
    assert blank.verify() == 0x6984  # no PIN yet
    assert blank.hex("00870000047C02810000")[1] == 0x6986  # no GA in initialisation mode
    for command in GIDS_TOOL_INITIALIZE:
        _, sw = blank.hex(command)
        assert sw == 0x9000, command
    assert blank.get_do(0xA000, 0xDF1F) == (tlv.encode(0xDF1F, FRESH_MASTERFILE), 0x9000)
    assert blank.get_do(0xA012, 0xDF20) == (bytes.fromhex("DF2010000102030405060708090A0B0C0D0E0F"), 0x9000)
    assert blank.get_do(0xA010, 0xDF23) == (bytes.fromhex("DF2300"), 0x9000)
    # now operational: ACLs apply, the PIN and the admin key work
    assert blank.put_do(0xA010, 0xDF24, b"x") == 0x6982
    assert blank.verify(b"123456") == 0x9000
    assert blank.mutual_auth() == 0x9000
    assert blank.send(0xE0, 0, 0, ADMIN_KEY_FCP)[1] == 0x6A89


def test_initialisation_mode_and_terminate(blank: Host) -> None:
    for command in GIDS_TOOL_INITIALIZE:
        blank.hex(command)
    assert blank.hex("00E60000")[1] == 0x6982  # admin only
    assert blank.mutual_auth() == 0x9000
    assert blank.hex("00E60000")[1] == 0x9000
    assert blank.get_do(0xA000, 0xDF1F)[1] == 0x6285
    assert blank.select()[1] == 0x6285


def test_state_persists_but_security_status_does_not(tmp_path: Path) -> None:
    first = Host("gids", tmp_path)
    first.select()
    first.verify()
    first.create_key_file()
    template, _ = first.generate(le=256)
    card_id = first.get_do(0xA012, 0xDF20)[0]
    first.close()
    second = Host("gids", tmp_path)
    second.select()
    assert second.public_key() == (template, 0x9000)
    assert second.get_do(0xA012, 0xDF20)[0] == card_id
    assert second.hex("00200080")[1] == 0x63C3
    assert "PRIVATE KEY" not in str(second.virtual.describe())
    second.close()


def test_reset_drops_the_security_status(host: Host) -> None:
    host.verify()
    host.mutual_auth()
    host.card.reset()
    host.select()
    assert host.hex("00200080")[1] == 0x63C3
    assert not host.applet.security.is_authenticated(2)


def test_tpm_vsc_profile() -> None:
    h = Host("tpm-vsc")
    assert h.card.atr == bytes.fromhex("3B8D0180FBA000000397425446590401CF")
    fci, sw = h.select()
    assert sw == 0x9000 and tlv.find(fci, 0x61, 0x4F) == bytes.fromhex("A000000397425446590401")
    assert h.verify(b"1234567") == 0x63C4  # 8..127 characters: a wrong length costs a try too
    assert h.verify(b"12345678") == 0x9000
    assert h.hex("00CB3FFF045C027F7300")[1] == 0x6A88  # no PUK: unblock through the admin key
    assert h.mutual_auth(bytes.fromhex("0102030405060708") * 3) == 0x9000
    h.close()


def test_windows_style_import_in_240_byte_chunks(host: Host) -> None:
    key = rsa.generate_private_key(65537, 2048)
    data = rsa_import_template(0x81, key)
    host.verify()
    host.create_key_file()
    chunks = [data[i : i + 240] for i in range(0, len(data), 240)]
    for chunk in chunks[:-1]:
        assert host.raw(bytes([0x10, 0xDB, 0x3F, 0xFF, len(chunk)]) + chunk).sw == 0x9000
    assert host.raw(bytes([0x00, 0xDB, 0x3F, 0xFF, len(chunks[-1])]) + chunks[-1]).sw == 0x9000
    assert rsa_public(host.public_key()[0]).public_numbers() == key.public_key().public_numbers()
    assert host.hex("00228 1A403830180".replace(" ", ""))[1] == 0x9000  # Windows' MSE P1 81 for the admin key


def test_key_files_are_never_readable_as_data(host: Host) -> None:
    host.verify()
    host.create_key_file()
    host.generate()
    assert host.hex("00CBB081045C02DF2000")[1] == 0x6981
    assert host.hex("00CB0000045C02DF2000")[1] in (0x6981, 0x6A82)
    assert host.hex("00A4000402B081")[0] == host.applet.fs.require(0xB081).fcp_bytes  # FCP only


GIDS_INS = [0xA4, 0xCB, 0xDB, 0xE0, 0x44, 0xE4, 0xE6, 0x20, 0x24, 0x2C, 0x22, 0x2A, 0x47, 0x87, 0x84, 0xC0]


@settings(max_examples=300, deadline=None)
@given(
    ins=st.sampled_from(GIDS_INS),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=300),
    verified=st.booleans(),
)
def test_any_command_gets_a_deliberate_status_word(
    ins: int, p1: int, p2: int, data: bytes, verified: bool
) -> None:
    """Whatever arrives, the applet answers with a chosen status word, never 6F00 (an internal error)."""
    h = Host("gids")
    try:
        h.select()
        if verified:
            h.verify()
        _, sw = h.send(ins, p1, p2, data, 256)
        assert sw != 0x6F00
        assert h.select()[1] == 0x9000 or ins == 0xE6
    finally:
        h.close()
