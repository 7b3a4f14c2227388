"""Challenge-response roles with a retry counter, through the applets (PIV 9B, GIDS admin key).

Shipped profiles give these keys no counter; a profile may set one, and then a wrong
cryptogram must cost a try committed before the comparison, like a wrong PIN. Steps that
only hand out a witness or a challenge must leave the counter alone: a success restores
it, so a non-comparing "success" would let anyone refill the tries.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from piv_support import MGM_3DES, PivCard, build
from test_gids_support import DEFAULT_ADMIN_KEY, Host

from vcard import tlv
from vcard.applets.piv.keys import Algorithm, block_encrypt
from vcard.crypto import cbc_encrypt
from vcard.security import SecurityCore

WRONG_KEY = bytes(range(24))


class CommitWatch:
    """Wraps the core's commit to record the durable tries of one role at every commit."""

    def __init__(self, security: SecurityCore, role: int) -> None:
        self.tries: list[int] = []
        inner = security._commit

        def commit() -> None:
            inner()
            self.tries.append(security.tries_left(role))

        security._commit = commit


# ---- PIV 9B ---------------------------------------------------------------------------------


@pytest.fixture
def piv() -> PivCard:
    card = build("piv")
    card.security.set_retry_limit(card.applet.config.management_role, 3)
    return card


def piv_external(card: PivCard, key: bytes) -> int:
    """`piv-tool -A A`: 81 00 -> 81 C, then 82 E(C)."""
    first = card.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex("7C028100"))
    assert first.sw == 0x9000
    challenge = tlv.find(first.data, 0x7C, 0x81)
    assert challenge is not None
    answer = tlv.encode(0x7C, [tlv.encode(0x82, block_encrypt(Algorithm.TDES, key, challenge))])
    return card.send(0x00, 0x87, 0x03, 0x9B, answer).sw


def test_piv_wrong_cryptograms_consume_durably_and_block(piv: PivCard) -> None:
    role = piv.applet.config.management_role
    watch = CommitWatch(piv.security, role)
    assert piv.authenticate_mgm(WRONG_KEY) == 0x6982
    assert watch.tries == [2]  # committed (before the answer), nothing gave it back
    assert piv_external(piv, WRONG_KEY) == 0x6982
    assert piv.authenticate_mgm(WRONG_KEY) == 0x6982
    assert watch.tries == [2, 1, 0]
    assert piv.security.is_blocked(role)
    assert piv.authenticate_mgm() == 0x6983  # even the right key
    assert piv_external(piv, MGM_3DES) == 0x6983
    assert not piv.security.is_authenticated(role)


def test_piv_right_cryptogram_restores_the_counter(piv: PivCard) -> None:
    role = piv.applet.config.management_role
    assert piv.authenticate_mgm(WRONG_KEY) == 0x6982
    assert piv.security.tries_left(role) == 2
    assert piv.authenticate_mgm() == 0x9000
    assert piv.security.tries_left(role) == 3 and piv.security.is_authenticated(role)
    assert piv_external(piv, WRONG_KEY) == 0x6982
    assert piv_external(piv, MGM_3DES) == 0x9000
    assert piv.security.tries_left(role) == 3


def test_piv_witness_and_challenge_steps_change_no_counter(piv: PivCard) -> None:
    role = piv.applet.config.management_role
    assert piv.authenticate_mgm(WRONG_KEY) == 0x6982
    watch = CommitWatch(piv.security, role)
    for template in ("7C028000", "7C028100") * 3:
        assert piv.send(0x00, 0x87, 0x03, 0x9B, bytes.fromhex(template)).sw == 0x9000
    assert watch.tries == [] and piv.security.tries_left(role) == 2
    # An answer with no witness outstanding (the last step left a challenge) compares nothing, costs nothing.
    body = tlv.encode(0x7C, [tlv.encode(0x80, bytes(8)), tlv.encode(0x81, bytes(8)), tlv.encode(0x82, b"")])
    assert piv.send(0x00, 0x87, 0x03, 0x9B, body).sw == 0x6982
    assert watch.tries == [] and piv.security.tries_left(role) == 2


# ---- GIDS admin key ---------------------------------------------------------------------------


@pytest.fixture
def gids() -> Iterator[Host]:
    host = Host("gids")
    host.select()
    host.applet.security.set_retry_limit(host.applet.config.admin_role, 3)
    yield host
    host.close()


def gids_external(host: Host, key: bytes) -> int:
    answer, sw = host.hex("00870000047C02810000")
    assert sw == 0x9000
    challenge = tlv.find(answer, 0x7C, 0x81)
    assert challenge is not None
    response = cbc_encrypt("3des", key, bytes(8), challenge)
    return host.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x82, response)]))[1]


def test_gids_wrong_cryptograms_consume_durably_and_block(gids: Host) -> None:
    security = gids.applet.security
    role = gids.applet.config.admin_role
    watch = CommitWatch(security, role)
    assert gids.mutual_auth(WRONG_KEY) == 0x6982
    assert watch.tries == [2]
    assert gids_external(gids, WRONG_KEY) == 0x6982
    assert gids.mutual_auth(WRONG_KEY) == 0x6982
    assert watch.tries == [2, 1, 0] and security.is_blocked(role)
    assert gids.mutual_auth() == 0x6983
    assert not security.is_authenticated(role)


def test_gids_right_cryptogram_restores_the_counter(gids: Host) -> None:
    security = gids.applet.security
    role = gids.applet.config.admin_role
    assert gids.mutual_auth(WRONG_KEY) == 0x6982
    assert gids_external(gids, WRONG_KEY) == 0x6982
    assert security.tries_left(role) == 1
    assert gids.mutual_auth() == 0x9000
    assert security.tries_left(role) == 3 and security.is_authenticated(role)
    assert gids_external(gids, WRONG_KEY) == 0x6982
    assert gids_external(gids, DEFAULT_ADMIN_KEY) == 0x9000
    assert security.tries_left(role) == 3


def test_gids_challenge_steps_change_no_counter(gids: Host) -> None:
    security = gids.applet.security
    role = gids.applet.config.admin_role
    assert gids.mutual_auth(WRONG_KEY) == 0x6982
    watch = CommitWatch(security, role)
    for _ in range(3):
        host_random = secrets.token_bytes(16)
        assert gids.send(0x87, 0, 0, tlv.encode(0x7C, [tlv.encode(0x81, host_random)]), 256)[1] == 0x9000
        assert gids.hex("00870000047C02810000")[1] == 0x9000
    assert watch.tries == [] and security.tries_left(role) == 2
