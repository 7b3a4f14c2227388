"""Key containers and the crypto over them: create/delete/info, key sizes, sign, RSA decrypt, ECDH.

Smart Card Minidriver Specification v7 §1.4 (container and crypto entry points) and §5 (signing,
decryption and DH agreement structures and rules).
"""

from __future__ import annotations

import hashlib
import hmac

from .backends.base import Container
from .constants import (
    AT_KEYEXCHANGE,
    AT_SIGNATURE,
    BCRYPT_KDF_HASH,
    BCRYPT_KDF_HMAC,
    BCRYPT_KDF_SP80056A_CONCAT,
    BCRYPT_KDF_TLS_PRF,
    CARD_BUFFER_SIZE_ONLY,
    CARD_CREATE_CONTAINER_KEY_GEN,
    CARD_CREATE_CONTAINER_KEY_IMPORT,
    CARD_PADDING_INFO_PRESENT,
    CARD_PADDING_NONE,
    CARD_PADDING_OAEP,
    CARD_PADDING_PKCS1,
    CARD_PADDING_PSS,
    CARD_RETURN_KEY_HANDLE,
    ECDHE_KEYSPECS,
    ECDSA_KEYSPECS,
    ROLE_ADMIN,
    ROLE_EVERYONE,
    ROLE_USER,
    RSA_KEYSPECS,
)
from .context import Agreement, CardData, Context, context_of
from .entry import check_flags, check_version, entry, pin_role
from .errors import Scard, ScardError
from .padding import (
    CALG_NAMES,
    HASH_LENGTHS,
    PaddingError,
    digest_info,
    oaep_unpad,
    pkcs1_type1,
    pkcs1_type2_unpad,
    pss_encode,
)
from .structures import (
    BCRYPT_ECCKEY_BLOB,
    BCRYPT_OAEP_PADDING_INFO,
    BCRYPT_PKCS1_PADDING_INFO,
    BCRYPT_PSS_PADDING_INFO,
    CARD_DERIVE_KEY,
    CARD_DH_AGREEMENT_INFO,
    CARD_KEY_SIZES,
    CARD_RSA_DECRYPT_INFO,
    CARD_SIGNING_INFO,
    CONTAINER_INFO,
    PUBLICKEYBLOB,
    StructureError,
)

# --- containers -------------------------------------------------------------------------------


@entry()
def CardCreateContainer(
    card_data: CardData, bContainerIndex: int, dwFlags: int, dwKeySpec: int, dwKeySize: int, pbKeyData: bytes
) -> None:
    """CardCreateContainerEx with the container bound to ROLE_USER."""
    _create_container(card_data, bContainerIndex, dwFlags, dwKeySpec, dwKeySize, pbKeyData, ROLE_USER)


@entry(min_version=7)
def CardCreateContainerEx(
    card_data: CardData,
    bContainerIndex: int,
    dwFlags: int,
    dwKeySpec: int,
    dwKeySize: int,
    pbKeyData: bytes,
    PinId: int,
) -> None:
    _create_container(card_data, bContainerIndex, dwFlags, dwKeySpec, dwKeySize, pbKeyData, PinId)


def _create_container(
    card_data: CardData, index: int, flags: int, key_spec: int, key_size: int, key_data: bytes, pin_id: int
) -> None:
    ctx = context_of(card_data)
    if flags not in (CARD_CREATE_CONTAINER_KEY_GEN, CARD_CREATE_CONTAINER_KEY_IMPORT):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwFlags {flags:#x}")
    if not 0 <= index <= 0xFF:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"container index {index}")
    if key_spec not in RSA_KEYSPECS | ECDSA_KEYSPECS | ECDHE_KEYSPECS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {key_spec}")
    if flags == CARD_CREATE_CONTAINER_KEY_IMPORT and not key_data:
        raise ScardError(Scard.E_INVALID_PARAMETER, "import without key data")
    if pin_id == ROLE_ADMIN:
        raise ScardError(Scard.W_SECURITY_VIOLATION, "a key container cannot belong to the admin role")
    if pin_id != ROLE_EVERYONE:
        pin_role(ctx, pin_id)
    ctx.require_writable()
    ctx.freshness(card_data)
    ctx.bump(containers=True, files=True)
    ctx.backend.create_container(index, flags, key_spec, key_size, key_data, pin_id)


@entry()
def CardDeleteContainer(card_data: CardData, bContainerIndex: int, dwReserved: int = 0) -> None:
    ctx = context_of(card_data)
    if dwReserved:
        raise ScardError(Scard.E_INVALID_PARAMETER, "dwReserved must be 0")
    ctx.require_writable()
    ctx.container(card_data, bContainerIndex)
    ctx.bump(containers=True, files=True)
    ctx.backend.delete_container(bContainerIndex)


@entry()
def CardGetContainerInfo(
    card_data: CardData, bContainerIndex: int, dwFlags: int = 0, dwVersion: int = 1
) -> CONTAINER_INFO:
    """Public keys of a container: PUBLICKEYBLOB (RSA) or BCRYPT_ECCKEY_BLOB (EC) in the Sig or KeyEx slot."""
    check_flags(dwFlags)
    check_version(dwVersion, 1)
    ctx = context_of(card_data)
    return container_info_of(ctx.container(card_data, bContainerIndex))


def container_info_of(container: Container) -> CONTAINER_INFO:
    if container.key_spec in (AT_SIGNATURE, *ECDSA_KEYSPECS):
        return CONTAINER_INFO(1, 0, 0, container.public_key)
    return CONTAINER_INFO(1, 0, 0, b"", 0, container.public_key)


@entry()
def CardQueryKeySizes(
    card_data: CardData, dwKeySpec: int, dwFlags: int = 0, dwVersion: int = 1
) -> CARD_KEY_SIZES:
    check_flags(dwFlags)
    check_version(dwVersion, 1)
    if dwKeySpec not in RSA_KEYSPECS | ECDSA_KEYSPECS | ECDHE_KEYSPECS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {dwKeySpec}")
    return context_of(card_data).backend.key_sizes(dwKeySpec)


# --- crypto -----------------------------------------------------------------------------------


def _modulus_bytes(container: Container) -> int:
    return (container.bits + 7) // 8


def _hash_name_for(alg: str | None) -> str | None:
    if alg is None:
        return None
    name = alg.upper()
    if name not in HASH_LENGTHS or name == "SHAMD5":
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"hash {alg}")
    return name


@entry()
def CardSignData(card_data: CardData, pInfo: CARD_SIGNING_INFO) -> bytes:
    """Sign a hash with a container's key; RSA output little-endian, ECDSA raw r||s.

    Also stores the result in pInfo.pbSignedData/cbSignedData, as the C call does.
    """
    ctx = context_of(card_data)
    if not isinstance(pInfo, CARD_SIGNING_INFO):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pInfo")
    if pInfo.dwVersion not in (0, 1, 2):
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"CARD_SIGNING_INFO version {pInfo.dwVersion}")
    if not pInfo.pbData:
        raise ScardError(Scard.E_INVALID_PARAMETER, "pbData is empty")
    container = ctx.container(card_data, pInfo.bContainerIndex)
    key_spec = pInfo.dwKeySpec
    if container.algorithm == "ec":
        if key_spec not in ECDSA_KEYSPECS:
            raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {key_spec} for an ECDSA container")
        size = 2 * ((container.bits + 7) // 8)
        if pInfo.dwSigningFlags & CARD_BUFFER_SIZE_ONLY:
            pInfo.cbSignedData = size
            return b""
        signature = ctx.backend.sign_raw(container, bytes(pInfo.pbData))
        pInfo.pbSignedData, pInfo.cbSignedData = signature, len(signature)
        return signature
    if key_spec not in RSA_KEYSPECS:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"dwKeySpec {key_spec} for an RSA container")
    k = _modulus_bytes(container)
    if pInfo.dwSigningFlags & CARD_BUFFER_SIZE_ONLY:
        pInfo.cbSignedData = k
        return b""
    data = bytes(pInfo.pbData)
    padded_on_card: bytes | None = None
    try:
        if pInfo.dwVersion == 2 and pInfo.dwSigningFlags & CARD_PADDING_INFO_PRESENT:
            padding = pInfo.dwPaddingType
            info = pInfo.pPaddingInfo
            if padding == CARD_PADDING_PKCS1:
                alg = info.pszAlgId if isinstance(info, BCRYPT_PKCS1_PADDING_INFO) else None
                payload = digest_info(_hash_name_for(alg), data)
                padded_on_card = _sign_pkcs1(ctx, container, payload, k)
            elif padding == CARD_PADDING_PSS:
                if not isinstance(info, BCRYPT_PSS_PADDING_INFO):
                    raise ScardError(Scard.E_INVALID_PARAMETER, "PSS without BCRYPT_PSS_PADDING_INFO")
                hash_name = _hash_name_for(info.pszAlgId)
                assert hash_name is not None
                if len(data) != HASH_LENGTHS[hash_name] or info.cbSalt != len(data):
                    raise ScardError(Scard.E_INVALID_PARAMETER, "PSS salt length must equal the hash length")
                padded_on_card = ctx.backend.sign_raw(
                    container, pss_encode(data, hash_name.lower(), info.cbSalt, container.bits)
                )
            elif padding == CARD_PADDING_NONE:
                if len(data) != k:
                    raise ScardError(Scard.E_INVALID_PARAMETER, "raw signing needs a modulus-sized block")
                padded_on_card = ctx.backend.sign_raw(container, data)
            else:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"dwPaddingType {padding}")
        else:
            if pInfo.aiHashAlg and pInfo.aiHashAlg not in CALG_NAMES:
                raise ScardError(Scard.E_UNSUPPORTED_FEATURE, f"aiHashAlg {pInfo.aiHashAlg:#x}")
            hash_name = CALG_NAMES.get(pInfo.aiHashAlg) if pInfo.aiHashAlg else None
            if hash_name and len(data) != HASH_LENGTHS[hash_name]:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"{hash_name} hash of {len(data)} bytes")
            padded_on_card = _sign_pkcs1(ctx, container, digest_info(hash_name, data), k)
    except PaddingError as error:
        raise ScardError(Scard.E_INSUFFICIENT_BUFFER, str(error)) from error
    signature = padded_on_card[::-1]  # the minidriver returns RSA signatures little-endian
    pInfo.pbSignedData, pInfo.cbSignedData = signature, len(signature)
    return signature


def _sign_pkcs1(ctx: Context, container: Container, payload: bytes, k: int) -> bytes:
    if ctx.backend.pkcs1_on_card:
        return ctx.backend.sign_pkcs1(container, payload)
    return ctx.backend.sign_raw(container, pkcs1_type1(payload, k))


@entry()
def CardRSADecrypt(card_data: CardData, pInfo: CARD_RSA_DECRYPT_INFO) -> bytes:
    """Decrypt a little-endian modulus-sized block; v2 info removes the padding (v7 rule)."""
    ctx = context_of(card_data)
    if not isinstance(pInfo, CARD_RSA_DECRYPT_INFO):
        raise ScardError(Scard.E_INVALID_PARAMETER, "pInfo")
    if pInfo.dwVersion > 2:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"CARD_RSA_DECRYPT_INFO version {pInfo.dwVersion}")
    if pInfo.dwVersion < 2 and card_data.dwVersion >= 7:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, "version 7 needs CARD_RSA_DECRYPT_INFO version 2")
    if pInfo.dwKeySpec != AT_KEYEXCHANGE:
        raise ScardError(Scard.E_INVALID_PARAMETER, "decryption needs an AT_KEYEXCHANGE key")
    container = ctx.container(card_data, pInfo.bContainerIndex)
    if container.algorithm != "rsa" or container.key_spec != AT_KEYEXCHANGE:
        raise ScardError(Scard.E_INVALID_PARAMETER, "not an RSA key-exchange container")
    k = _modulus_bytes(container)
    data = bytes(pInfo.pbData)
    if len(data) < k:
        raise ScardError(Scard.E_INSUFFICIENT_BUFFER, f"cbData {len(data)} < {k}")
    block = ctx.backend.decrypt_raw(container, data[:k][::-1])
    block = b"\x00" * (k - len(block)) + block
    if pInfo.dwVersion < 2 or pInfo.dwPaddingType == CARD_PADDING_NONE:
        result = block[::-1]
    else:
        try:
            if pInfo.dwPaddingType == CARD_PADDING_OAEP:
                info = pInfo.pPaddingInfo
                if not isinstance(info, BCRYPT_OAEP_PADDING_INFO):
                    raise ScardError(Scard.E_INVALID_PARAMETER, "OAEP without BCRYPT_OAEP_PADDING_INFO")
                hash_name = _hash_name_for(info.pszAlgId)
                assert hash_name is not None
                result = oaep_unpad(block, hash_name.lower(), info.pbLabel)
            elif pInfo.dwPaddingType in (CARD_PADDING_PKCS1, 0):
                result = pkcs1_type2_unpad(block)
            else:
                raise ScardError(Scard.E_INVALID_PARAMETER, f"dwPaddingType {pInfo.dwPaddingType}")
        except PaddingError as error:
            raise ScardError(Scard.E_UNEXPECTED, "decryption error") from error
    pInfo.pbData, pInfo.cbData = result, len(result)
    return result


@entry()
def CardConstructDHAgreement(card_data: CardData, pAgreementInfo: CARD_DH_AGREEMENT_INFO) -> int:
    """ECDH with a container's key; the secret stays here, the caller gets an index."""
    ctx = context_of(card_data)
    if pAgreementInfo.dwVersion != 2:
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, "CARD_DH_AGREEMENT_INFO version must be 2")
    check_flags(pAgreementInfo.dwFlags)
    container = ctx.container(card_data, pAgreementInfo.bContainerIndex)
    if container.algorithm != "ec":
        raise ScardError(Scard.E_INVALID_PARAMETER, "not an EC container")
    try:
        peer = BCRYPT_ECCKEY_BLOB.unpack(bytes(pAgreementInfo.pbPublicKey))
    except (StructureError, KeyError) as error:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"peer key: {error}") from error
    if peer.bits != container.bits or peer.d is not None:
        raise ScardError(Scard.E_INVALID_PARAMETER, "peer key is not a public key on the container's curve")
    size = peer.cbKey
    secret = ctx.backend.ecdh(
        container, b"\x04" + peer.x.to_bytes(size, "big") + peer.y.to_bytes(size, "big")
    )
    index = next((i for i in range(256) if i not in ctx.agreements), None)
    if index is None:
        raise ScardError(Scard.E_NO_MEMORY, "all 256 agreement indexes are in use")
    ctx.agreements[index] = Agreement(secret)
    pAgreementInfo.bSecretAgreementIndex = index
    return index


@entry(min_version=5)
def CardDeriveKey(card_data: CardData, pAgreementInfo: CARD_DERIVE_KEY) -> bytes:
    """KDF over an agreement: HASH (prepend/append), HMAC, SP800_56A_CONCAT. TLS_PRF unsupported."""
    ctx = context_of(card_data)
    info = pAgreementInfo
    if info.dwVersion not in (1, 2):
        raise ScardError(Scard.ERROR_REVISION_MISMATCH, f"CARD_DERIVE_KEY version {info.dwVersion}")
    if info.dwFlags & CARD_RETURN_KEY_HANDLE:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "CARD_RETURN_KEY_HANDLE")
    agreement = ctx.agreements.get(info.bSecretAgreementIndex)
    if agreement is None:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"agreement {info.bSecretAgreementIndex}")
    params = info.parameters
    hash_name = params.get("KDF_HASH_ALGORITHM", b"SHA1").decode().upper()
    if hash_name not in ("SHA1", "SHA256", "SHA384", "SHA512", "MD5"):
        raise ScardError(Scard.E_INVALID_PARAMETER, f"hash {hash_name}")
    algorithm = hash_name.lower()
    secret = agreement.secret
    if info.pwszKDF == BCRYPT_KDF_HASH:
        derived = hashlib.new(
            algorithm, params.get("KDF_SECRET_PREPEND", b"") + secret + params.get("KDF_SECRET_APPEND", b"")
        ).digest()
    elif info.pwszKDF == BCRYPT_KDF_HMAC:
        key = params.get("KDF_HMAC_KEY", secret)
        derived = hmac.new(
            key,
            params.get("KDF_SECRET_PREPEND", b"") + secret + params.get("KDF_SECRET_APPEND", b""),
            algorithm,
        ).digest()
    elif info.pwszKDF == BCRYPT_KDF_SP80056A_CONCAT:
        other = b"".join(
            params.get(name, b"")
            for name in (
                "KDF_ALGORITHMID",
                "KDF_PARTYUINFO",
                "KDF_PARTYVINFO",
                "KDF_SUPPPUBINFO",
                "KDF_SUPPPRIVINFO",
            )
        )
        length = info.dwKeyLen or hashlib.new(algorithm).digest_size
        derived = b""
        counter = 1
        while len(derived) < length:
            derived += hashlib.new(algorithm, counter.to_bytes(4, "big") + secret + other).digest()
            counter += 1
        derived = derived[:length]
    elif info.pwszKDF == BCRYPT_KDF_TLS_PRF:
        raise ScardError(Scard.E_UNSUPPORTED_FEATURE, "TLS_PRF")
    else:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"KDF {info.pwszKDF!r}")
    if info.dwFlags & CARD_BUFFER_SIZE_ONLY:
        info.cbDerivedKey = len(derived)
        return b""
    info.pbDerivedKey, info.cbDerivedKey = derived, len(derived)
    return derived


@entry(min_version=5)
def CardDestroyDHAgreement(card_data: CardData, bSecretAgreementIndex: int, dwFlags: int = 0) -> None:
    check_flags(dwFlags)
    ctx = context_of(card_data)
    if ctx.agreements.pop(bSecretAgreementIndex, None) is None:
        raise ScardError(Scard.E_INVALID_PARAMETER, f"agreement {bSecretAgreementIndex}")


def public_key_of(container_info: CONTAINER_INFO) -> PUBLICKEYBLOB | BCRYPT_ECCKEY_BLOB:
    """Decode whichever public key a CONTAINER_INFO holds."""
    blob = container_info.pbSigPublicKey or container_info.pbKeyExPublicKey
    if blob[:1] == b"\x06":
        return PUBLICKEYBLOB.unpack(blob)
    return BCRYPT_ECCKEY_BLOB.unpack(blob)
