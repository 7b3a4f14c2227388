"""Card-side management key (9B) challenge-response: SP 800-73 Part 2 Appendix A.

Three client dialogues are served (all within GENERAL AUTHENTICATE, template 7C):

- mutual (yubico-piv-tool, ykman, `piv-tool -A M`): `80 00` -> card returns `80 E(W)`;
  host sends `80 W, 81 C [, 82 00]` -> card checks W, returns `82 E(C)`;
- external (`piv-tool -A A`): `81 00` -> card returns `81 C`; host sends `82 E(C)`;
- bare challenge (`81 00` alone, OpenSC's C_GenerateRandom): answered like the first
  step of external authentication, any number of times.

A witness or challenge is good for exactly one answer: whatever the outcome, it is
forgotten, so a replayed response fails. The card encrypts a host's challenge only in
the second step of mutual authentication, after the host has proven the key: an
unauthenticated encryption oracle would let anyone answer the external challenge.

Only the two steps that compare a host's answer (mutual step 2, external step 2) go
through the security core's `authenticate_with`, which consumes a try durably before the
comparison when the profile gives 9B a retry counter. Steps that only hand out a witness
or a challenge touch no counter: restoring one there would let anyone refill the tries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ... import tlv
from ...apdu import SW, ISOError
from .keys import Algorithm, block_encrypt, block_size, constant_time_equal, random_bytes

Check = Callable[[bytes, str], bool]
"""The applet's comparison: given the key bytes and the core's algorithm name, does the answer match?"""

Authenticate = Callable[[Check], None]
"""Runs a Check under the core's consume-before-compare discipline and grants 9B on a match."""


@dataclass
class ManagementKeyAuth:
    """Outstanding witness/challenge of one 9B dialogue (volatile, cleared on deselect)."""

    witness: bytes | None = None
    challenge: bytes | None = None

    def clear(self) -> None:
        self.witness = None
        self.challenge = None

    def step(
        self, algorithm: Algorithm, key: bytes, items: dict[int, bytes], authenticate: Authenticate
    ) -> bytes:
        """Process one 7C template; returns the response data.

        `key` encrypts the witness and the host's challenge; the comparing steps
        call `authenticate`, which raises (6982 on a mismatch, 6983 when blocked)
        or returns with 9B granted.
        """
        size = block_size(algorithm)
        witness = items.get(0x80)
        challenge = items.get(0x81)
        response = items.get(0x82)
        if witness == b"" and challenge is None and not response:
            self.clear()
            self.witness = random_bytes(size)
            encrypted = block_encrypt(algorithm, key, self.witness)
            return tlv.encode(0x7C, [tlv.encode(0x80, encrypted)])
        if witness:
            expected, self.witness = self.witness, None
            self.challenge = None
            if challenge is None or len(challenge) != size:
                raise ISOError(SW.INCORRECT_DATA, "mutual authentication needs a challenge of one block")
            if expected is None:
                raise ISOError(SW.SECURITY_STATUS_NOT_SATISFIED, "no witness outstanding")
            pending_witness = expected
            authenticate(lambda _key, _algorithm: constant_time_equal(witness, pending_witness))
            return tlv.encode(0x7C, [tlv.encode(0x82, block_encrypt(algorithm, key, challenge))])
        if challenge == b"" and not response:
            self.clear()
            self.challenge = random_bytes(size)
            return tlv.encode(0x7C, [tlv.encode(0x81, self.challenge)])
        if response and challenge is None:
            expected, self.challenge = self.challenge, None
            self.witness = None
            if expected is None:
                raise ISOError(SW.CONDITIONS_NOT_SATISFIED, "no challenge outstanding")
            pending_challenge = expected
            authenticate(
                lambda card_key, _algorithm: constant_time_equal(
                    response, block_encrypt(algorithm, card_key, pending_challenge)
                )
            )
            return b""
        # Anything else, notably `81 C, 82 00` ("encrypt my challenge") outside mutual
        # authentication, is refused: answering it would encrypt the card's own outstanding
        # external-authentication challenge for anyone and so authenticate them without the key.
        self.clear()
        raise ISOError(SW.INCORRECT_DATA, "unsupported 9B dynamic authentication template")
