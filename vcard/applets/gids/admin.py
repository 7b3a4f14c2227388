"""Admin-key authentication: GENERAL AUTHENTICATE, mutual and external variants.

The admin key is a symmetric key (3DES three-key, as in the GIDS electrical
profile, or AES) whose bytes live in the security core as the value of the
admin role (a `challenge` role); this module only runs the protocol:

Mutual (OpenSC, Windows 7+), CBC with a zero IV, no padding:
    host  7C {81 R1(16)}                  card  7C {81 R2(16)}
    host  7C {82 E(R2 || R1 || Z1)}       card  7C {82 E(R1 || R2 || Z2)}
  Z = (block size - 1) random bytes + 80, so 40 bytes for 3DES, 48 for AES. The
  host's cryptogram must decrypt to R2, R1 and a Z ending in 80; the card's
  answer flips the order (what OpenSC and msclmd expect).
External (Windows 8+ when the FCI advertises it):
    host  7C {81 (empty)}                 card  7C {81 C(one block)}
    host  7C {82 E(C)}                    card  9000 or 6982

Malformed templates answer 6984, a second step without a first 6985, a wrong
cryptogram 6982; every failure forgets the pending challenge.

Only the second step compares anything, so only it goes through the security core's
`authenticate_with` (a try consumed durably before the comparison when the profile gives
the admin key a counter; the counter restored and the role granted on a match). The first
step hands out a challenge and touches no counter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ... import crypto, tlv
from ...apdu import SW, ISOError
from .constants import TAG_CHALLENGE, TAG_DYNAMIC_AUTH, TAG_RESPONSE

RANDOM_LENGTH = 16
PAD_BYTE = 0x80

Check = Callable[[bytes, str], bool]
"""The comparison of the host's cryptogram, given the key bytes and algorithm the core holds."""

Authenticate = Callable[[Check], None]
"""Runs a Check with the core's consume-before-compare discipline; returns with the admin role granted."""


@dataclass
class _Pending:
    mutual: bool
    card_random: bytes
    host_random: bytes = b""


class AdminAuthenticator:
    """Volatile protocol state of one card session."""

    def __init__(self) -> None:
        self._pending: _Pending | None = None

    def reset(self) -> None:
        self._pending = None

    @staticmethod
    def _parse(data: bytes) -> dict[int, bytes]:
        try:
            return tlv.to_dict(tlv.decode_one(data, TAG_DYNAMIC_AUTH).value)
        except ISOError:
            raise ISOError(
                SW.REFERENCE_DATA_NOT_USABLE, "malformed dynamic authentication template"
            ) from None

    def step(self, data: bytes, algorithm: str, authenticate: Authenticate) -> bytes:
        """Process one GENERAL AUTHENTICATE; returns the response data.

        A challenge step returns the card's challenge; a response step returns
        only once `authenticate` granted the admin role (it raises otherwise).
        """
        fields = self._parse(data)
        pending, self._pending = self._pending, None
        if TAG_CHALLENGE in fields and TAG_RESPONSE not in fields:
            return self._challenge(fields[TAG_CHALLENGE], algorithm)
        if TAG_RESPONSE in fields and TAG_CHALLENGE not in fields:
            if pending is None:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "no challenge pending")
            return self._response(pending, fields[TAG_RESPONSE], authenticate)
        raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, "expected a challenge (81) or a response (82)")

    def _challenge(self, host_random: bytes, algorithm: str) -> bytes:
        if not host_random:  # external authentication: the card challenges the host
            challenge = crypto.random_bytes(crypto.block_size(algorithm))
            self._pending = _Pending(False, challenge)
        elif len(host_random) == RANDOM_LENGTH:
            challenge = crypto.random_bytes(RANDOM_LENGTH)
            self._pending = _Pending(True, challenge, host_random)
        else:
            raise ISOError(SW.REFERENCE_DATA_NOT_USABLE, f"host random of {len(host_random)} bytes")
        return tlv.encode(TAG_DYNAMIC_AUTH, [tlv.encode(TAG_CHALLENGE, challenge)])

    @staticmethod
    def _response(pending: _Pending, cryptogram: bytes, authenticate: Authenticate) -> bytes:
        proven: list[tuple[bytes, str]] = []  # the key and algorithm the check matched with

        def check(key: bytes, algorithm: str) -> bool:
            size = crypto.block_size(algorithm)
            iv = bytes(size)
            if not pending.mutual:
                expected = crypto.cbc_encrypt(algorithm, key, iv, pending.card_random)
                return crypto.constant_time_equal(cryptogram, expected)
            if len(cryptogram) != 2 * RANDOM_LENGTH + size:
                return False
            plain = crypto.cbc_decrypt(algorithm, key, iv, cryptogram)
            ok = crypto.constant_time_equal(plain[:RANDOM_LENGTH], pending.card_random)
            ok &= crypto.constant_time_equal(plain[RANDOM_LENGTH : 2 * RANDOM_LENGTH], pending.host_random)
            ok &= plain[-1] == PAD_BYTE
            if ok:
                proven.append((key, algorithm))
            return ok

        authenticate(check)
        if not pending.mutual:
            return b""
        key, algorithm = proven[0]
        size = crypto.block_size(algorithm)
        z2 = crypto.random_bytes(size - 1) + bytes([PAD_BYTE])
        plain = pending.host_random + pending.card_random + z2
        answer = crypto.cbc_encrypt(algorithm, key, bytes(size), plain)
        return tlv.encode(TAG_DYNAMIC_AUTH, [tlv.encode(TAG_RESPONSE, answer)])


def host_mutual_cryptogram(algorithm: str, key: bytes, card_random: bytes, host_random: bytes) -> bytes:
    """What a host sends in step 2 of mutual authentication (for tests and tools)."""
    size = crypto.block_size(algorithm)
    z1 = crypto.random_bytes(size - 1) + bytes([PAD_BYTE])
    return crypto.cbc_encrypt(algorithm, key, bytes(size), card_random + host_random + z1)
