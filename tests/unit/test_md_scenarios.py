"""The minidriver's end-to-end scenarios, written once and run over both transports.

Each scenario runs in-process (a `vcard.runtime.VirtualCard` in this process) and, marked
`integration`, through the real pcscd + vpcd (`vcard run` cards in vpcd readers, started as
the `vcard_pcsc_reader` fixture starts them): OpenSC's minidriver test sequence, then the crypto.
Every crypto result is checked with `cryptography` against the public keys the provisioning
returned: RSA PKCS#1 v1.5 and PSS signatures, ECDSA, RSA decryption (PKCS#1, OAEP, raw)
and ECDH with CardDeriveKey's KDFs.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

import minidriver as md
from minidriver.cache import GlobalCache
from vcard.host import InProcessConnection, PcscConnection
from vcard.profile import load_profile
from vcard.pytest_plugin import pcsc_unavailable
from vcard.runtime import VirtualCard
from vcard.testing import exclusive_slots, running_card
from vcard.testing.provisioning import PivProvisioner, opensc_api_sequence, provision_gids

PIN = b"123456"
PIV_SLOTS = {0x9A: "rsa2048", 0x9C: "p256", 0x9D: "p256", 0x9E: "rsa2048"}
TRANSPORTS = ["inprocess", pytest.param("pcsc", marks=pytest.mark.integration)]
HASHES = [
    (md.CALG_SHA1, "sha1", hashes.SHA1()),
    (md.CALG_SHA_256, "sha256", hashes.SHA256()),
    (md.CALG_SHA_384, "sha384", hashes.SHA384()),
    (md.CALG_SHA_512, "sha512", hashes.SHA512()),
    (md.CALG_MD5, "md5", hashes.MD5()),
]


@dataclass
class Provisioned:
    """A provisioned card behind one transport: how to open a CARD_DATA on it, and its public keys.

    `rsa` maps container index -> (key spec, public key) for the RSA containers; `ec` maps
    container index -> public key for the EC ones (PIV only).
    """

    connect: Callable[[], md.CardData]
    rsa: dict[int, tuple[int, rsa.RSAPublicKey]]
    ec: dict[int, ec.EllipticCurvePublicKey]

    @contextlib.contextmanager
    def session(self) -> Iterator[md.CardData]:
        """CardAcquireContext ... CardDeauthenticateEx(all) + CardDeleteContext, as the Base CSP does."""
        card_data = self.connect()
        md.CardAcquireContext(card_data, 0)
        try:
            yield card_data
        finally:
            md.CardDeauthenticateEx(card_data, md.PIN_SET_ALL_ROLES, 0)
            md.CardDeleteContext(card_data)
            card_data.close()


def _piv(connect: Callable[[], md.CardData], keys: dict[int, Any]) -> Provisioned:
    # Windows' PIV mapping: 9A -> container 0 (key exchange), 9C -> 1, 9D -> 2 (ECDH), 9E -> 3
    return Provisioned(
        connect,
        rsa={0: (md.AT_KEYEXCHANGE, keys[0x9A]), 3: (md.AT_SIGNATURE, keys[0x9E])},
        ec={1: keys[0x9C], 2: keys[0x9D]},
    )


def _gids(connect: Callable[[], md.CardData], keys: dict[int, rsa.RSAPublicKey]) -> Provisioned:
    return Provisioned(connect, rsa={0: (md.AT_KEYEXCHANGE, keys[0]), 1: (md.AT_SIGNATURE, keys[1])}, ec={})


@pytest.fixture(scope="module")
def piv_inprocess() -> Iterator[Provisioned]:
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    keys = PivProvisioner(InProcessConnection(virtual.card)).provision(PIV_SLOTS)
    yield _piv(lambda: md.CardData.inprocess(virtual.card, cache=GlobalCache()), keys)
    virtual.close()


@pytest.fixture(scope="module")
def gids_inprocess() -> Iterator[Provisioned]:
    virtual = VirtualCard.open(load_profile("gids"), None, ephemeral=True)
    card_data = md.CardData.inprocess(virtual.card, cache=GlobalCache())
    md.CardAcquireContext(card_data, 0)
    keys = provision_gids(card_data, PIN)
    md.CardDeleteContext(card_data)
    yield _gids(lambda: md.CardData.inprocess(virtual.card, cache=GlobalCache()), keys)
    virtual.close()


# PC/SC: one `vcard run` card per application for the whole module (PIV in vpcd slot 0, GIDS
# in slot 1), under the machine-wide vpcd lock held from the first PC/SC test to the module's
# end, so the scenarios queue once behind other users of pcscd rather than once per test.
PCSC_SLOTS = {"piv": 0, "gids": 1}


@pytest.fixture(scope="module")
def pcsc_lock() -> Iterator[None]:
    if os.environ.get("VCARD_SKIP_INTEGRATION", "") not in ("", "0"):
        pytest.skip("VCARD_SKIP_INTEGRATION=1: PC/SC transport skipped on request")
    for slot in PCSC_SLOTS.values():
        reason = pcsc_unavailable(slot)
        if reason is not None:
            pytest.fail(f"the PC/SC scenarios need pcscd + vpcd: {reason}", pytrace=False)
    with exclusive_slots():
        yield


@pytest.fixture(scope="module")
def piv_pcsc(pcsc_lock: None) -> Iterator[Provisioned]:
    with running_card("piv", PCSC_SLOTS["piv"]) as reader:
        with PcscConnection(reader) as connection:
            keys = PivProvisioner(connection).provision(PIV_SLOTS)  # ends with a card reset
        yield _piv(lambda: md.CardData.connect(reader, cache=GlobalCache()), keys)


@pytest.fixture(scope="module")
def gids_pcsc(pcsc_lock: None) -> Iterator[Provisioned]:
    with running_card("gids", PCSC_SLOTS["gids"]) as reader:
        card_data = md.CardData.connect(reader, cache=GlobalCache())
        md.CardAcquireContext(card_data, 0)
        try:
            keys = provision_gids(card_data, PIN)
        finally:
            md.CardDeleteContext(card_data)
            card_data.close()
        yield _gids(lambda: md.CardData.connect(reader, cache=GlobalCache()), keys)


@pytest.fixture
def card(applet: str, transport: str, request: pytest.FixtureRequest) -> Provisioned:
    """The provisioned card of `applet` behind `transport` (shared by the module's tests)."""
    provisioned: Provisioned = request.getfixturevalue(f"{applet}_{transport}")
    return provisioned


both_applets = pytest.mark.parametrize("applet", ["piv", "gids"])
piv_only = pytest.mark.parametrize("applet", ["piv"])
over_transports = pytest.mark.parametrize("transport", TRANSPORTS)


def _sign(card_data: md.CardData, index: int, spec: int, data: bytes, **kwargs: Any) -> bytes:
    return md.CardSignData(card_data, md.CARD_SIGNING_INFO(2, index, spec, pbData=data, **kwargs))


def _authenticate(card_data: md.CardData) -> None:
    session_pin, attempts = md.CardAuthenticateEx(card_data, md.ROLE_USER, 0, PIN)
    assert (session_pin, attempts) == (None, md.CARD_DATA_VALUE_UNKNOWN)


# --- OpenSC's minidriver test sequence -------------------------------------------------------

# The entry points OpenSC's sequence calls, each a mandatory one for a read-only card (spec §8).
SEQUENCE_ENTRY_POINTS = {
    "CardAcquireContext",
    "CardQueryFreeSpace",
    "CardQueryCapabilities",
    "CardQueryKeySizes",
    "CardGetProperty",
    "CardReadFile",
    "CardGetFileInfo",
    "CardEnumFiles",
    "CardGetContainerInfo",
    "CardAuthenticatePin",
    "CardDeauthenticate",
}


@over_transports
@both_applets
def test_opensc_minidriver_test_sequence(card: Provisioned) -> None:
    card_data = card.connect()
    try:
        results = opensc_api_sequence(card_data, PIN)
    finally:
        card_data.close()
    assert [(name, detail) for name, ok, detail in results if not ok] == []
    assert {name.split("(")[0] for name, _ok, _detail in results} >= SEQUENCE_ENTRY_POINTS


# --- RSA signatures ---------------------------------------------------------------------------


@over_transports
@both_applets
def test_rsa_pkcs1_v15_signatures_verify(card: Provisioned) -> None:
    with card.session() as card_data:
        _authenticate(card_data)
        for index, (spec, key) in card.rsa.items():
            for calg, name, algorithm in HASHES:
                digest = hashlib.new(name, b"message").digest()
                signature = _sign(card_data, index, spec, digest, aiHashAlg=calg)
                # RSA signatures come back little-endian (spec §5.1)
                key.verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(algorithm))
            digest = hashlib.sha384(b"padding info").digest()
            signature = _sign(
                card_data,
                index,
                spec,
                digest,
                dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
                pPaddingInfo=md.BCRYPT_PKCS1_PADDING_INFO("SHA384"),
                dwPaddingType=md.CARD_PADDING_PKCS1,
            )
            key.verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA384()))
            # no hash algorithm: the data is signed as it is (the TLS 1.0 MD5+SHA1 case)
            tls = hashlib.md5(b"tls").digest() + hashlib.sha1(b"tls").digest()
            signature = _sign(card_data, index, spec, tls)
            assert key.recover_data_from_signature(signature[::-1], padding.PKCS1v15(), None) == tls


@over_transports
@both_applets
def test_rsa_pss_signatures_verify(card: Provisioned) -> None:
    with card.session() as card_data:
        _authenticate(card_data)
        for index, (spec, key) in card.rsa.items():
            for alg_id, name, algorithm in (
                ("SHA256", "sha256", hashes.SHA256()),
                ("SHA1", "sha1", hashes.SHA1()),
            ):
                digest = hashlib.new(name, b"pss").digest()
                signature = _sign(
                    card_data,
                    index,
                    spec,
                    digest,
                    dwSigningFlags=md.CARD_PADDING_INFO_PRESENT,
                    pPaddingInfo=md.BCRYPT_PSS_PADDING_INFO(alg_id, len(digest)),
                    dwPaddingType=md.CARD_PADDING_PSS,
                )
                key.verify(
                    signature[::-1],
                    digest,
                    padding.PSS(padding.MGF1(algorithm), len(digest)),
                    utils.Prehashed(algorithm),
                )


@over_transports
@piv_only
def test_signing_needs_the_pin_except_for_the_card_authentication_key(card: Provisioned) -> None:
    digest = hashlib.sha256(b"who").digest()
    with card.session() as card_data:
        with pytest.raises(md.ScardError) as locked:
            _sign(card_data, 0, md.AT_KEYEXCHANGE, digest, aiHashAlg=md.CALG_SHA_256)
        assert locked.value.code == md.SCARD_W_SECURITY_VIOLATION
        spec, key = card.rsa[3]  # 9E: ROLE_EVERYONE
        signature = _sign(card_data, 3, spec, digest, aiHashAlg=md.CALG_SHA_256)
        key.verify(signature[::-1], digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


# --- ECDSA ------------------------------------------------------------------------------------


@over_transports
@piv_only
def test_ecdsa_signatures_verify(card: Provisioned) -> None:
    key = card.ec[1]
    with card.session() as card_data:
        # as the Base CSP does, the container is looked up before the PIN-always key is used
        blob = md.BCRYPT_ECCKEY_BLOB.unpack(md.CardGetContainerInfo(card_data, 1).pbSigPublicKey)
        assert (blob.x, blob.y) == (key.public_numbers().x, key.public_numbers().y)
        for name, algorithm in (
            ("sha256", hashes.SHA256()),
            ("sha384", hashes.SHA384()),
            ("sha1", hashes.SHA1()),
        ):
            digest = hashlib.new(name, b"ecdsa").digest()
            _authenticate(card_data)  # 9C is PIN-always: the PIN right before each signature
            info = md.CARD_SIGNING_INFO(2, 1, md.AT_ECDSA_P256, pbData=digest)
            raw = md.CardSignData(card_data, info)
            assert (len(raw), info.pbSignedData, info.cbSignedData) == (64, raw, 64)  # r || s, big-endian
            der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            key.verify(der, digest, ec.ECDSA(utils.Prehashed(algorithm)))


# --- RSA decryption ---------------------------------------------------------------------------


@over_transports
@both_applets
def test_rsa_decrypt_pkcs1_oaep_and_raw(card: Provisioned) -> None:
    _spec, key = card.rsa[0]
    with card.session() as card_data:
        _authenticate(card_data)
        plain = b"\x5a" + b"\xa5" * 47
        info = md.CARD_RSA_DECRYPT_INFO(
            2,
            0,
            md.AT_KEYEXCHANGE,
            key.encrypt(plain, padding.PKCS1v15())[::-1],
            dwPaddingType=md.CARD_PADDING_PKCS1,
        )
        assert md.CardRSADecrypt(card_data, info) == plain
        assert (info.pbData, info.cbData) == (plain, len(plain))
        for alg_id, algorithm, label in (
            ("SHA256", hashes.SHA256(), None),
            ("SHA1", hashes.SHA1(), b"label"),
        ):
            ciphertext = key.encrypt(b"oaep secret", padding.OAEP(padding.MGF1(algorithm), algorithm, label))
            info = md.CARD_RSA_DECRYPT_INFO(
                2,
                0,
                md.AT_KEYEXCHANGE,
                ciphertext[::-1],
                pPaddingInfo=md.BCRYPT_OAEP_PADDING_INFO(alg_id, label or b""),
                dwPaddingType=md.CARD_PADDING_OAEP,
            )
            assert md.CardRSADecrypt(card_data, info) == b"oaep secret"
        ciphertext = key.encrypt(b"raw", padding.PKCS1v15())
        raw = md.CardRSADecrypt(
            card_data,
            md.CARD_RSA_DECRYPT_INFO(
                2, 0, md.AT_KEYEXCHANGE, ciphertext[::-1], dwPaddingType=md.CARD_PADDING_NONE
            ),
        )
        block = raw[::-1]  # little-endian out: the block's leading 00 02 come last
        assert len(raw) == 256 and block[:2] == b"\x00\x02" and block.endswith(b"\x00raw")


# --- ECDH -------------------------------------------------------------------------------------


@over_transports
@piv_only
def test_ecdh_agreement_and_every_kdf(card: Provisioned) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    secret = peer.exchange(ec.ECDH(), card.ec[2])
    numbers = peer.public_key().public_numbers()
    blob = md.BCRYPT_ECCKEY_BLOB.public("ecdh", 256, numbers.x, numbers.y).pack()
    with card.session() as card_data:
        _authenticate(card_data)
        agreement = md.CARD_DH_AGREEMENT_INFO(2, 2, 0, pbPublicKey=blob)
        index = md.CardConstructDHAgreement(card_data, agreement)
        assert agreement.bSecretAgreementIndex == index

        def derive(kdf: str, params: dict[str, bytes], **kwargs: Any) -> md.CARD_DERIVE_KEY:
            info = md.CARD_DERIVE_KEY(2, kwargs.pop("dwFlags", 0), kdf, index, params, **kwargs)
            md.CardDeriveKey(card_data, info)
            return info

        hashed = derive(
            md.BCRYPT_KDF_HASH,
            {"KDF_HASH_ALGORITHM": b"SHA256", "KDF_SECRET_PREPEND": b"pre", "KDF_SECRET_APPEND": b"post"},
        )
        assert hashed.pbDerivedKey == hashlib.sha256(b"pre" + secret + b"post").digest()
        default = derive(md.BCRYPT_KDF_HASH, {})  # SHA1 by default
        assert default.pbDerivedKey == hashlib.sha1(secret).digest()
        keyed = derive(md.BCRYPT_KDF_HMAC, {"KDF_HASH_ALGORITHM": b"SHA384", "KDF_HMAC_KEY": b"key"})
        assert keyed.pbDerivedKey == hmac.new(b"key", secret, "sha384").digest()
        other = {"KDF_ALGORITHMID": b"AES", "KDF_PARTYUINFO": b"alice", "KDF_PARTYVINFO": b"bob"}
        concat = derive(
            md.BCRYPT_KDF_SP80056A_CONCAT, {"KDF_HASH_ALGORITHM": b"SHA256", **other}, dwKeyLen=48
        )
        expected = ConcatKDFHash(hashes.SHA256(), 48, b"AESalicebob").derive(secret)
        assert (concat.pbDerivedKey, concat.cbDerivedKey) == (expected, 48)
        size_only = derive(
            md.BCRYPT_KDF_HASH, {"KDF_HASH_ALGORITHM": b"SHA512"}, dwFlags=md.CARD_BUFFER_SIZE_ONLY
        )
        assert (size_only.pbDerivedKey, size_only.cbDerivedKey) == (b"", 64)
        md.CardDestroyDHAgreement(card_data, index, 0)
        with pytest.raises(md.ScardError) as gone:
            derive(md.BCRYPT_KDF_HASH, {})
        assert gone.value.code == md.SCARD_E_INVALID_PARAMETER
