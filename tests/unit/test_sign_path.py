"""The PIV and GIDS signature paths: what a signature must not cost, and caches that follow the state.

A signature on a card whose PIN is verified writes nothing to the state and parses no
key (the key objects are loaded once and kept in memory); the caches the applets keep
for that (PIV key entries, GIDS key objects and parsed FCPs) follow a key or a file
that is replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from piv_support import PivCard
from test_gids_support import Host

from vcard import crypto, tlv
from vcard.applets.piv import PivApplet
from vcard.profile import load_profile
from vcard.runtime import VirtualCard

SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
DIGEST = hashlib.sha256(b"message").digest()
DIGEST_384 = hashlib.sha384(b"message").digest()


def files_of(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `directory` with what a write would change (mtime, size, inode)."""
    return {
        str(path.relative_to(directory)): (path.stat().st_mtime_ns, path.stat().st_size, path.stat().st_ino)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def no_key_parsing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """From here on, parsing a stored private key fails the test."""

    def refuse(text: str) -> crypto.PrivateKey:
        raise AssertionError("a private key was parsed on the signature path")

    yield monkeypatch.setattr(crypto, "private_key_from_pem", refuse)


def public_key(template: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    items = tlv.to_dict(tlv.decode_one(template, 0x7F49).value)
    if 0x81 in items:
        return rsa.RSAPublicNumbers(int.from_bytes(items[0x82]), int.from_bytes(items[0x81])).public_key()
    point = items[0x86]
    curve = ec.SECP256R1() if len(point) == 65 else ec.SECP384R1()
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)


def piv_signature(card: PivCard, slot: int, algorithm: int, challenge: bytes) -> bytes:
    response = card.sign(slot, algorithm, challenge)
    assert response.sw == 0x9000, f"{response.sw:04X}"
    signature = tlv.find(response.data, 0x7C, 0x82)
    assert signature is not None
    return signature


def persistent_piv(directory: Path) -> PivCard:
    profile = load_profile("piv")
    virtual = VirtualCard.open(profile, state_dir=directory)
    applet = virtual.applets["piv"]
    assert isinstance(applet, PivApplet)
    virtual.card.power_on()
    card = PivCard(virtual.card, applet, virtual.security, virtual.state, profile)
    assert card.select().sw == 0x9000
    return card


def test_piv_signatures_write_no_state_and_parse_no_key(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    card = persistent_piv(tmp_path)
    assert card.authenticate_mgm() == 0x9000
    rsa_public = public_key(card.generate(0x9A, 0x07).data)
    p256_public = public_key(card.generate(0x9D, 0x11).data)
    p384_public = public_key(card.generate(0x82, 0x14).data)
    assert isinstance(rsa_public, rsa.RSAPublicKey)
    assert isinstance(p256_public, ec.EllipticCurvePublicKey)
    assert isinstance(p384_public, ec.EllipticCurvePublicKey)
    assert card.verify() == 0x9000
    before, commits = files_of(tmp_path), card.commits
    assert before  # the state is on disk
    request.getfixturevalue("no_key_parsing")

    block = b"\x00\x01" + b"\xff" * (256 - 3 - 51) + b"\x00" + SHA256_INFO + DIGEST
    for _ in range(3):
        rsa_public.verify(
            piv_signature(card, 0x9A, 0x07, block), DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256())
        )
        p256_public.verify(
            piv_signature(card, 0x9D, 0x11, DIGEST), DIGEST, ec.ECDSA(Prehashed(hashes.SHA256()))
        )
        p384_public.verify(
            piv_signature(card, 0x82, 0x14, DIGEST_384), DIGEST_384, ec.ECDSA(Prehashed(hashes.SHA384()))
        )
    assert card.commits == commits
    assert files_of(tmp_path) == before


def test_piv_a_replaced_key_signs_at_once(tmp_path: Path) -> None:
    card = persistent_piv(tmp_path)
    assert card.authenticate_mgm() == 0x9000
    first = public_key(card.generate(0x9D, 0x11).data)
    assert card.verify() == 0x9000
    piv_signature(card, 0x9D, 0x11, DIGEST)
    second = public_key(card.generate(0x9D, 0x14).data)  # another key, another curve, same slot
    assert isinstance(first, ec.EllipticCurvePublicKey) and isinstance(second, ec.EllipticCurvePublicKey)
    assert card.sign(0x9D, 0x11, DIGEST).sw == 0x6A80  # the slot no longer holds a P-256 key
    second.verify(
        piv_signature(card, 0x9D, 0x14, DIGEST_384), DIGEST_384, ec.ECDSA(Prehashed(hashes.SHA384()))
    )


MSE_SIGN = "002241B606800157840181"
MSE_DECIPHER = "002241B806800147840181"


def gids_signature(host: Host) -> bytes:
    assert host.hex(MSE_SIGN)[1] == 0x9000
    signature, sw = host.send(0x2A, 0x9E, 0x9A, SHA256_INFO + DIGEST, 256)
    assert sw == 0x9000, f"{sw:04X}"
    return signature


def test_gids_signatures_write_no_state_and_parse_no_key(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    host = Host("gids", state_dir=tmp_path)
    try:
        assert host.select()[1] == 0x9000
        assert host.verify() == 0x9000
        assert host.create_key_file() == 0x9000
        assert host.generate()[1] == 0x9000
        public = public_key(host.public_key()[0])
        assert isinstance(public, rsa.RSAPublicKey)
        before = files_of(tmp_path)
        assert before
        request.getfixturevalue("no_key_parsing")
        for _ in range(3):
            public.verify(gids_signature(host), DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        assert files_of(tmp_path) == before
    finally:
        host.close()


def test_gids_a_key_file_created_again_is_used_as_created(tmp_path: Path) -> None:
    """A key EF deleted and created again with other CRTs and another key: MSE and PSO see the new ones."""
    host = Host("gids", state_dir=tmp_path)
    try:
        host.select()
        host.verify()
        assert host.create_key_file() == 0x9000  # signs and deciphers
        assert host.generate()[1] == 0x9000
        first = public_key(host.public_key()[0])
        gids_signature(host)
        assert host.hex(MSE_DECIPHER)[1] == 0x9000

        assert host.hex("00A4000C02B081")[1] == 0x9000
        assert host.hex("00E40000")[1] == 0x9000
        assert host.create_key_file(sign_only=True) == 0x9000
        assert host.hex(MSE_DECIPHER)[1] == 0x6984  # the new FCP has no decipher CRT
        assert host.generate()[1] == 0x9000
        second = public_key(host.public_key()[0])
        assert isinstance(second, rsa.RSAPublicKey)
        assert second.public_numbers() != first.public_numbers()
        second.verify(gids_signature(host), DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    finally:
        host.close()


def test_gids_card_padding_equals_the_host_padded_block() -> None:
    """PSO with the card padding (5x) signs exactly what a host-padded raw block (1x) signs."""
    host = Host("gids")
    try:
        host.select()
        host.verify()
        host.create_key_file()
        host.generate()
        for digest_info in (SHA256_INFO + DIGEST, hashlib.md5(b"m").digest() + hashlib.sha1(b"m").digest()):
            padded = gids_pso(host, "50", digest_info)
            block = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info
            assert gids_pso(host, "10", block) == padded
        too_long = bytes(256 - 10)  # leaves 7 bytes of padding: PKCS#1 needs 8
        assert host.hex(f"002241B6068001{0x57:02X}840181")[1] == 0x9000
        assert host.send(0x2A, 0x9E, 0x9A, too_long, 256)[1] == 0x6700
    finally:
        host.close()


def gids_pso(host: Host, padding_nibble: str, data: bytes) -> bytes:
    assert host.hex(f"002241B6068001{padding_nibble[0]}7840181")[1] == 0x9000
    signature, sw = host.send(0x2A, 0x9E, 0x9A, data, 256)
    assert sw == 0x9000, f"{sw:04X}"
    return signature
