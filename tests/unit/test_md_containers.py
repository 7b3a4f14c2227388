"""Container and crypto entry points (minidriver spec §1.4 "Containers", "Crypto", §5): the rules.

The crypto that succeeds is in test_md_scenarios.py (both transports); here each entry
point's documented failures, and the success paths the scenarios do not take.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from md_support import PIN, Card, raises

import minidriver as md
from minidriver.cache import GlobalCache

INVALID = md.SCARD_E_INVALID_PARAMETER
UNSUPPORTED = md.SCARD_E_UNSUPPORTED_FEATURE
MISMATCH = md.ERROR_REVISION_MISMATCH


@pytest.fixture
def cd(piv: Card) -> Iterator[md.CardData]:
    card_data = piv.card_data()
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    yield card_data
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)


def _sign(card_data: md.CardData, index: int, spec: int, data: bytes, **kwargs: Any) -> bytes:
    return md.CardSignData(
        card_data, md.CARD_SIGNING_INFO(kwargs.pop("dwVersion", 2), index, spec, pbData=data, **kwargs)
    )


SHA256 = hashlib.sha256(b"m").digest()
PSS = {"dwSigningFlags": md.CARD_PADDING_INFO_PRESENT, "dwPaddingType": md.CARD_PADDING_PSS}


# --- container info and key sizes --------------------------------------------------------------


def test_container_info_rules_and_public_key_of(cd: md.CardData, piv: Card) -> None:
    rsa_key = md.public_key_of(md.CardGetContainerInfo(cd, 0, 0, 1))
    assert isinstance(rsa_key, md.PUBLICKEYBLOB) and rsa_key.modulus == piv.keys[0x9A].public_numbers().n
    ec_key = md.public_key_of(md.CardGetContainerInfo(cd, 1, 0, 0))  # version 0 counts as 1
    assert isinstance(ec_key, md.BCRYPT_ECCKEY_BLOB) and ec_key.x == piv.keys[0x9C].public_numbers().x
    raises(INVALID, lambda: md.CardGetContainerInfo(cd, 0, 1))
    raises(MISMATCH, lambda: md.CardGetContainerInfo(cd, 0, 0, 2))
    raises(INVALID, lambda: md.CardGetContainerInfo(cd, 256))
    raises(INVALID, lambda: md.CardGetContainerInfo(cd, -1))
    raises(md.SCARD_E_NO_KEY_CONTAINER, lambda: md.CardGetContainerInfo(cd, 9))


def test_key_sizes_follow_the_key_spec(cd: md.CardData, gids: Card) -> None:
    rsa_sizes = md.CardQueryKeySizes(cd, md.AT_KEYEXCHANGE)
    assert rsa_sizes.dwMinimumBitlen <= 2048 == rsa_sizes.dwDefaultBitlen <= rsa_sizes.dwMaximumBitlen
    assert md.CardQueryKeySizes(cd, md.AT_SIGNATURE, 0, 1) == rsa_sizes
    for spec, bits in ((md.AT_ECDSA_P256, 256), (md.AT_ECDHE_P384, 384)):
        ecc = md.CardQueryKeySizes(cd, spec)
        assert (ecc.dwMinimumBitlen, ecc.dwDefaultBitlen, ecc.dwMaximumBitlen) == (bits, bits, bits)
    raises(UNSUPPORTED, lambda: md.CardQueryKeySizes(cd, md.AT_ECDSA_P521))  # a spec PIV has no curve for
    raises(INVALID, lambda: md.CardQueryKeySizes(cd, 9))
    raises(INVALID, lambda: md.CardQueryKeySizes(cd, md.AT_SIGNATURE, 1))
    raises(MISMATCH, lambda: md.CardQueryKeySizes(cd, md.AT_SIGNATURE, 0, 2))
    raises(UNSUPPORTED, lambda: md.CardQueryKeySizes(gids.card_data(), md.AT_ECDSA_P256))  # GIDS: RSA only


# --- CardSignData ----------------------------------------------------------------------------


def test_sign_rejects_bad_signing_info(cd: md.CardData) -> None:
    sha1 = hashlib.sha1(b"m").digest()
    for code, call in (
        (INVALID, lambda: md.CardSignData(cd, {"bContainerIndex": 0})),  # type: ignore[arg-type]
        (MISMATCH, lambda: _sign(cd, 0, md.AT_KEYEXCHANGE, SHA256, dwVersion=3)),
        (INVALID, lambda: _sign(cd, 0, md.AT_KEYEXCHANGE, b"")),
        (md.SCARD_E_NO_KEY_CONTAINER, lambda: _sign(cd, 9, md.AT_KEYEXCHANGE, SHA256)),
        (INVALID, lambda: _sign(cd, 0, md.AT_ECDSA_P256, SHA256)),  # RSA container, EC spec
        (INVALID, lambda: _sign(cd, 1, md.AT_SIGNATURE, SHA256)),  # EC container, RSA spec
        (UNSUPPORTED, lambda: _sign(cd, 0, md.AT_KEYEXCHANGE, SHA256, aiHashAlg=0x1234)),
        (INVALID, lambda: _sign(cd, 0, md.AT_KEYEXCHANGE, sha1, aiHashAlg=md.CALG_SHA_256)),  # wrong length
        (md.SCARD_E_INSUFFICIENT_BUFFER, lambda: _sign(cd, 0, md.AT_KEYEXCHANGE, bytes(250))),  # > k - 11
        (INVALID, lambda: _sign(cd, 0, md.AT_KEYEXCHANGE, SHA256, **PSS)),  # PSS without its info
        (
            INVALID,
            lambda: _sign(
                cd, 0, md.AT_KEYEXCHANGE, SHA256, pPaddingInfo=md.BCRYPT_PSS_PADDING_INFO("SHA256", 20), **PSS
            ),
        ),
        (
            UNSUPPORTED,
            lambda: _sign(
                cd, 0, md.AT_KEYEXCHANGE, SHA256, pPaddingInfo=md.BCRYPT_PSS_PADDING_INFO("MD4", 32), **PSS
            ),
        ),
        (
            UNSUPPORTED,
            lambda: _sign(
                cd,
                0,
                md.AT_KEYEXCHANGE,
                SHA256,
                dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
                dwPaddingType=md.CARD_PADDING_PKCS1,
                pPaddingInfo=md.BCRYPT_PKCS1_PADDING_INFO("SHAMD5"),
            ),
        ),
        (
            INVALID,
            lambda: _sign(
                cd,
                0,
                md.AT_KEYEXCHANGE,
                SHA256,
                dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
                dwPaddingType=0x10,
            ),
        ),
        (
            INVALID,
            lambda: _sign(
                cd,
                0,
                md.AT_KEYEXCHANGE,
                SHA256,
                dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
                dwPaddingType=md.CARD_PADDING_NONE,
            ),
        ),
    ):
        raises(code, call)


def test_sign_buffer_size_only_and_raw_padding(cd: md.CardData, piv: Card) -> None:
    info = md.CARD_SIGNING_INFO(2, 0, md.AT_KEYEXCHANGE, md.CARD_BUFFER_SIZE_ONLY, md.CALG_SHA_256, SHA256)
    assert md.CardSignData(cd, info) == b"" and (info.cbSignedData, info.pbSignedData) == (256, b"")
    info = md.CARD_SIGNING_INFO(2, 1, md.AT_ECDSA_P256, md.CARD_BUFFER_SIZE_ONLY, 0, SHA256)
    assert md.CardSignData(cd, info) == b"" and info.cbSignedData == 64
    key: rsa.RSAPublicKey = piv.keys[0x9A]
    block = b"\x00\x01" + b"\xff" * 200 + b"\x00" + bytes(range(53))  # a modulus-sized block, as given
    signature = _sign(
        cd,
        0,
        md.AT_KEYEXCHANGE,
        block,
        dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
        dwPaddingType=md.CARD_PADDING_NONE,
    )
    numbers = key.public_numbers()
    assert pow(int.from_bytes(signature, "little"), numbers.e, numbers.n) == int.from_bytes(block, "big")
    # PKCS#1 padding without a BCRYPT_PKCS1_PADDING_INFO: no DigestInfo, the data signed as given
    signature = _sign(
        cd,
        0,
        md.AT_KEYEXCHANGE,
        SHA256,
        dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
        dwPaddingType=md.CARD_PADDING_PKCS1,
    )
    assert key.recover_data_from_signature(signature[::-1], padding.PKCS1v15(), None) == SHA256


# --- CardRSADecrypt --------------------------------------------------------------------------


def test_rsa_decrypt_rules(cd: md.CardData, piv: Card) -> None:
    key: rsa.RSAPublicKey = piv.keys[0x9A]
    ciphertext = key.encrypt(b"x", padding.PKCS1v15())[::-1]
    oaep = key.encrypt(b"x", padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None))[::-1]

    def decrypt(**kwargs: Any) -> bytes:
        fields = {"dwVersion": 2, "bContainerIndex": 0, "dwKeySpec": md.AT_KEYEXCHANGE, "pbData": ciphertext}
        return md.CardRSADecrypt(cd, md.CARD_RSA_DECRYPT_INFO(**{**fields, **kwargs}))

    for code, call in (
        (INVALID, lambda: md.CardRSADecrypt(cd, md.CARD_SIGNING_INFO())),  # type: ignore[arg-type]
        (MISMATCH, lambda: decrypt(dwVersion=3)),
        (MISMATCH, lambda: decrypt(dwVersion=1)),  # CARD_DATA v7 needs the v2 structure
        (INVALID, lambda: decrypt(dwKeySpec=md.AT_SIGNATURE)),
        (INVALID, lambda: decrypt(bContainerIndex=3)),  # 9E: a signature key
        (INVALID, lambda: decrypt(bContainerIndex=2)),  # 9D: an EC key
        (md.SCARD_E_NO_KEY_CONTAINER, lambda: decrypt(bContainerIndex=9)),
        (md.SCARD_E_INSUFFICIENT_BUFFER, lambda: decrypt(pbData=ciphertext[:255])),
        (INVALID, lambda: decrypt(dwPaddingType=md.CARD_PADDING_OAEP)),  # OAEP without its info
        (
            UNSUPPORTED,
            lambda: decrypt(
                dwPaddingType=md.CARD_PADDING_OAEP, pPaddingInfo=md.BCRYPT_OAEP_PADDING_INFO("MD4")
            ),
        ),
        (INVALID, lambda: decrypt(dwPaddingType=md.CARD_PADDING_PSS)),
        (INVALID, lambda: decrypt(pbData=b"\xff" * 256)),  # not below the modulus: the card refuses it
        (
            md.SCARD_E_UNEXPECTED,
            lambda: decrypt(pbData=oaep, dwPaddingType=md.CARD_PADDING_PKCS1),
        ),
        (
            md.SCARD_E_UNEXPECTED,
            lambda: decrypt(
                dwPaddingType=md.CARD_PADDING_OAEP, pPaddingInfo=md.BCRYPT_OAEP_PADDING_INFO("SHA256")
            ),
        ),
    ):
        raises(code, call)
    assert decrypt(dwPaddingType=0) == b"x"  # 0 is PKCS#1, the pre-v7 default


def test_rsa_decrypt_v1_structure_before_v7_returns_the_raw_block(piv: Card) -> None:
    card_data = md.CardData.inprocess(piv.virtual.card, cache=GlobalCache())
    card_data.dwVersion = 6
    md.CardAcquireContext(card_data, 0)
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    key: rsa.RSAPublicKey = piv.keys[0x9A]
    info = md.CARD_RSA_DECRYPT_INFO(1, 0, md.AT_KEYEXCHANGE, key.encrypt(b"v1", padding.PKCS1v15())[::-1])
    block = md.CardRSADecrypt(card_data, info)[::-1]
    assert block[:2] == b"\x00\x02" and block.endswith(b"\x00v1") and info.cbData == 256
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)


# --- ECDH -------------------------------------------------------------------------------------


def _peer_blob(curve: ec.EllipticCurve | None = None, kind: str = "ecdh") -> bytes:
    curve = curve or ec.SECP256R1()
    numbers = ec.generate_private_key(curve).public_key().public_numbers()
    return md.BCRYPT_ECCKEY_BLOB.public(kind, curve.key_size, numbers.x, numbers.y).pack()


def test_dh_agreement_rules(cd: md.CardData) -> None:
    blob = _peer_blob()
    private = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    private_blob = md.BCRYPT_ECCKEY_BLOB(
        md.BCRYPT_ECDH_PRIVATE_P256_MAGIC,
        private.public_numbers.x,
        private.public_numbers.y,
        private.private_value,
    ).pack()
    for code, info in (
        (MISMATCH, md.CARD_DH_AGREEMENT_INFO(1, 2, 0, pbPublicKey=blob)),
        (INVALID, md.CARD_DH_AGREEMENT_INFO(2, 2, 1, pbPublicKey=blob)),
        (INVALID, md.CARD_DH_AGREEMENT_INFO(2, 0, 0, pbPublicKey=blob)),  # an RSA container
        (md.SCARD_E_NO_KEY_CONTAINER, md.CARD_DH_AGREEMENT_INFO(2, 9, 0, pbPublicKey=blob)),
        (INVALID, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=b"ECK1")),
        (INVALID, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=_peer_blob(ec.SECP384R1()))),
        (INVALID, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=private_blob)),
    ):
        raises(code, lambda i=info: md.CardConstructDHAgreement(cd, i))


def test_derive_key_rules(cd: md.CardData) -> None:
    index = md.CardConstructDHAgreement(cd, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=_peer_blob()))
    for code, info in (
        (MISMATCH, md.CARD_DERIVE_KEY(3, 0, md.BCRYPT_KDF_HASH, index)),
        (UNSUPPORTED, md.CARD_DERIVE_KEY(2, md.CARD_RETURN_KEY_HANDLE, md.BCRYPT_KDF_HASH, index)),
        (INVALID, md.CARD_DERIVE_KEY(2, 0, md.BCRYPT_KDF_HASH, (index + 1) % 256)),
        (INVALID, md.CARD_DERIVE_KEY(2, 0, md.BCRYPT_KDF_HASH, index, {"KDF_HASH_ALGORITHM": b"MD4"})),
        (UNSUPPORTED, md.CARD_DERIVE_KEY(2, 0, md.BCRYPT_KDF_TLS_PRF, index)),
        (INVALID, md.CARD_DERIVE_KEY(2, 0, "PBKDF2", index)),
    ):
        raises(code, lambda i=info: md.CardDeriveKey(cd, i))
    derived = md.CardDeriveKey(
        cd, md.CARD_DERIVE_KEY(1, 0, md.BCRYPT_KDF_HMAC, index)
    )  # v1 structure is fine
    assert len(derived) == 20  # HMAC-SHA1 keyed with the secret itself
    raises(INVALID, lambda: md.CardDestroyDHAgreement(cd, index, 1))
    md.CardDestroyDHAgreement(cd, index)
    raises(INVALID, lambda: md.CardDestroyDHAgreement(cd, index))


def test_agreements_are_limited_to_256_and_dropped_with_the_context(piv: Card) -> None:
    card_data = piv.card_data()
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    blob = _peer_blob()
    indexes = [
        md.CardConstructDHAgreement(card_data, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=blob))
        for _ in range(256)
    ]
    assert sorted(indexes) == list(range(256))
    raises(
        md.SCARD_E_NO_MEMORY,
        lambda: md.CardConstructDHAgreement(card_data, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=blob)),
    )
    md.CardDestroyDHAgreement(card_data, 7)
    assert md.CardConstructDHAgreement(card_data, md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=blob)) == 7
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    md.CardDeleteContext(card_data)
    raises(md.SCARD_E_INVALID_HANDLE, lambda: md.CardDestroyDHAgreement(card_data, 7))


def test_dh_entry_points_need_card_data_version_5(piv: Card) -> None:
    card_data = md.CardData.inprocess(piv.virtual.card, cache=GlobalCache())
    card_data.dwVersion = 4
    md.CardAcquireContext(card_data, 0)
    raises(UNSUPPORTED, lambda: md.CardDeriveKey(card_data, md.CARD_DERIVE_KEY()))
    raises(UNSUPPORTED, lambda: md.CardDestroyDHAgreement(card_data, 0))


# --- create and delete containers (GIDS: the writable card) -----------------------------------


def test_create_container_rules(gids: Card, piv: Card) -> None:
    card_data = gids.card_data()
    gen = md.CARD_CREATE_CONTAINER_KEY_GEN
    raises(
        md.SCARD_W_SECURITY_VIOLATION,
        lambda: md.CardCreateContainer(card_data, 5, gen, md.AT_KEYEXCHANGE, 2048, b""),
    )
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    for code, args in (
        (INVALID, (5, 0, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_USER)),
        (INVALID, (5, 3, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_USER)),
        (INVALID, (256, gen, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_USER)),
        (INVALID, (5, gen, 9, 2048, b"", md.ROLE_USER)),
        (INVALID, (5, md.CARD_CREATE_CONTAINER_KEY_IMPORT, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_USER)),
        (md.SCARD_W_SECURITY_VIOLATION, (5, gen, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_ADMIN)),
        (INVALID, (5, gen, md.AT_KEYEXCHANGE, 2048, b"", 6)),  # no role 6 on this card
        (INVALID, (5, gen, md.AT_KEYEXCHANGE, 2048, b"", md.MAX_PINS)),
    ):
        raises(code, lambda a=args: md.CardCreateContainerEx(card_data, *a))
    with pytest.raises(md.ScardError) as no_such:
        md.CardGetContainerInfo(card_data, 5)
    assert no_such.value.code == md.SCARD_E_NO_KEY_CONTAINER  # nothing was created by the failures
    raises(INVALID, lambda: md.CardDeleteContainer(card_data, 0, 1))
    raises(md.SCARD_E_NO_KEY_CONTAINER, lambda: md.CardDeleteContainer(card_data, 5))
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
    read_only = piv.card_data()
    raises(UNSUPPORTED, lambda: md.CardCreateContainer(read_only, 5, gen, md.AT_KEYEXCHANGE, 2048, b""))
    raises(
        UNSUPPORTED,
        lambda: md.CardCreateContainerEx(read_only, 5, gen, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_EVERYONE),
    )
    older = md.CardData.inprocess(gids.virtual.card, cache=GlobalCache())
    older.dwVersion = 6
    md.CardAcquireContext(older, 0)
    raises(
        UNSUPPORTED,
        lambda: md.CardCreateContainerEx(older, 5, gen, md.AT_KEYEXCHANGE, 2048, b"", md.ROLE_USER),
    )


def test_create_container_ex_generates_a_key_that_signs(gids: Card) -> None:
    card_data = gids.card_data()
    md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    before = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(card_data, None, "cardcf"))
    md.CardCreateContainerEx(
        card_data, 4, md.CARD_CREATE_CONTAINER_KEY_GEN, md.AT_SIGNATURE, 2048, b"", md.ROLE_USER
    )
    after = md.CARD_CACHE_FILE_FORMAT.unpack(md.CardReadFile(card_data, None, "cardcf"))
    assert after.wContainersFreshness > before.wContainersFreshness
    blob = md.public_key_of(md.CardGetContainerInfo(card_data, 4))
    assert isinstance(blob, md.PUBLICKEYBLOB) and blob.bitlen == 2048
    key = rsa.RSAPublicNumbers(blob.public_exponent, blob.modulus).public_key()
    signature = _sign(card_data, 4, md.AT_SIGNATURE, SHA256, aiHashAlg=md.CALG_SHA_256)
    key.verify(signature[::-1], SHA256, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    assert md.dword(md.CardGetContainerProperty(card_data, 4, md.CCP_PIN_IDENTIFIER)) == md.ROLE_USER
    md.CardDeleteContainer(card_data, 4)
    raises(md.SCARD_E_NO_KEY_CONTAINER, lambda: md.CardGetContainerInfo(card_data, 4))
    md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
