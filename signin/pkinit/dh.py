"""The client's Diffie-Hellman key for PKINIT: MODP group 14 (RFC 3526 §3), the X9.42 form on the wire.

RFC 4556 §3.2.3.1: the client's public value travels as a SubjectPublicKeyInfo with
the dhpublicnumber algorithm and DomainParameters (p, g, q); the shared secret is
left-padded to the size of p. MIT's KDC accepts the RFC 3526 groups 14 and 16 (and
refuses smaller ones by default, pkinit_dh_min_bits = 2048). The group arithmetic is
`cryptography`'s (DH with explicit parameters); only the encodings are here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives.asymmetric import dh
from cryptography.utils import CryptographyDeprecationWarning

from .asn1 import DH_PUBLIC_NUMBER

MODP_2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
MODP_2048_G = 2
MODP_2048_Q = (MODP_2048_P - 1) // 2


@contextmanager
def _ffdh() -> Iterator[None]:
    """cryptography flags finite-field DH as deprecated; RFC 4556 PKINIT with MIT's KDC needs it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, message=".*Diffie-Hellman")
        yield


with _ffdh():
    PARAMETERS = dh.DHParameterNumbers(MODP_2048_P, MODP_2048_G, MODP_2048_Q).parameters()


class DhError(ValueError):
    """The KDC's public value is unusable (not an INTEGER, out of range)."""


def new_key() -> dh.DHPrivateKey:
    with _ffdh():
        return PARAMETERS.generate_private_key()


def public_key_info(key: dh.DHPrivateKey) -> asn1_keys.PublicKeyInfo:
    """clientPublicValue: dhpublicnumber, DomainParameters {p, g, q}, subjectPublicKey = INTEGER y."""
    y = key.public_key().public_numbers().y
    parameters = asn1_keys.DomainParameters({"p": MODP_2048_P, "g": MODP_2048_G, "q": MODP_2048_Q})
    return asn1_keys.PublicKeyInfo(
        {
            "algorithm": asn1_keys.PublicKeyAlgorithm(
                {"algorithm": DH_PUBLIC_NUMBER, "parameters": parameters}
            ),
            "public_key": y,
        }
    )


def shared_secret(key: dh.DHPrivateKey, kdc_public_integer: bytes) -> bytes:
    """Z from the KDC's subjectPublicKey (DER INTEGER y), as many bytes as p (RFC 4556 §3.2.3.1)."""
    try:
        y = asn1_core.Integer.load(kdc_public_integer).native
    except ValueError as error:
        raise DhError(f"the KDC's DH public value is not a DER INTEGER ({error})") from None
    if not 1 < y < MODP_2048_P - 1:
        raise DhError("the KDC's DH public value is out of range for MODP group 14")
    try:
        with _ffdh():
            peer = dh.DHPublicNumbers(y, PARAMETERS.parameter_numbers()).public_key()
            secret = key.exchange(peer)
    except ValueError as error:
        raise DhError(f"the KDC's DH public value is unusable ({error})") from None
    size = (MODP_2048_P.bit_length() + 7) // 8
    return secret.rjust(size, b"\x00")
