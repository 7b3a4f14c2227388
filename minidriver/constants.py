"""Names and values from the minidriver spec (cardmod.h), spelled as the spec spells them.

Property names are the exact strings cardmod.h defines (the C side passes them as
UTF-16 LPCWSTR; Python keeps them as str). Flags and enums keep their Windows
values so a trace of this layer can be compared with a Windows one.
"""

from __future__ import annotations

from enum import IntEnum

# --- versions -------------------------------------------------------------------------------
CARD_DATA_VERSION_FOUR = 4
CARD_DATA_VERSION_FIVE = 5
CARD_DATA_VERSION_SIX = 6
CARD_DATA_VERSION_SEVEN = 7
CARD_DATA_CURRENT_VERSION = CARD_DATA_VERSION_SEVEN
MINIMUM_SUPPORTED_VERSION = CARD_DATA_VERSION_FOUR
CARD_CAPABILITIES_CURRENT_VERSION = 1
CONTAINER_INFO_CURRENT_VERSION = 1
CARD_FILE_INFO_CURRENT_VERSION = 1
CARD_FREE_SPACE_INFO_CURRENT_VERSION = 1
CARD_KEY_SIZES_CURRENT_VERSION = 1
PIN_INFO_CURRENT_VERSION = 6
PIN_CACHE_POLICY_CURRENT_VERSION = 6
CARD_SIGNING_INFO_BASIC_VERSION = 1
CARD_SIGNING_INFO_CURRENT_VERSION = 2
CARD_RSA_KEY_DECRYPT_INFO_VERSION_ONE = 1
CARD_RSA_KEY_DECRYPT_INFO_VERSION_TWO = 2
CARD_RSA_KEY_DECRYPT_INFO_CURRENT_VERSION = 2
CARD_DH_AGREEMENT_INFO_VERSION = 2
CARD_DERIVE_KEY_VERSION = 1
CARD_DERIVE_KEY_VERSION_TWO = 2
CARD_DERIVE_KEY_CURRENT_VERSION = 2
CARD_CACHE_FILE_CURRENT_VERSION = 1
CARD_DATA_VALUE_UNKNOWN = 0xFFFFFFFF

# --- CardAcquireContext flags -----------------------------------------------------------------
CARD_SECURE_KEY_INJECTION_NO_CARD_MODE = 0x1

# --- key specs and algorithms -----------------------------------------------------------------
AT_KEYEXCHANGE = 1
AT_SIGNATURE = 2
AT_ECDSA_P256 = 3
AT_ECDSA_P384 = 4
AT_ECDSA_P521 = 5
AT_ECDHE_P256 = 6
AT_ECDHE_P384 = 7
AT_ECDHE_P521 = 8
RSA_KEYSPECS = frozenset({AT_KEYEXCHANGE, AT_SIGNATURE})
ECDSA_KEYSPECS = frozenset({AT_ECDSA_P256, AT_ECDSA_P384, AT_ECDSA_P521})
ECDHE_KEYSPECS = frozenset({AT_ECDHE_P256, AT_ECDHE_P384, AT_ECDHE_P521})
EC_KEYSPEC_BITS = {
    AT_ECDSA_P256: 256,
    AT_ECDSA_P384: 384,
    AT_ECDSA_P521: 521,
    AT_ECDHE_P256: 256,
    AT_ECDHE_P384: 384,
    AT_ECDHE_P521: 521,
}

CALG_MD5 = 0x8003
CALG_SHA1 = 0x8004
CALG_SSL3_SHAMD5 = 0x8008
CALG_SHA_256 = 0x800C
CALG_SHA_384 = 0x800D
CALG_SHA_512 = 0x800E
CALG_RSA_SIGN = 0x2400
CALG_RSA_KEYX = 0xA400

# BLOBHEADER
PUBLICKEYBLOB_TYPE = 0x06  # wincrypt.h PUBLICKEYBLOB (the bType value)
PRIVATEKEYBLOB_TYPE = 0x07  # wincrypt.h PRIVATEKEYBLOB
CUR_BLOB_VERSION = 0x02
RSA1_MAGIC = 0x31415352  # "RSA1" public
RSA2_MAGIC = 0x32415352  # "RSA2" private

# BCRYPT_ECCKEY_BLOB magics
BCRYPT_ECDH_PUBLIC_P256_MAGIC = 0x314B4345
BCRYPT_ECDH_PRIVATE_P256_MAGIC = 0x324B4345
BCRYPT_ECDH_PUBLIC_P384_MAGIC = 0x334B4345
BCRYPT_ECDH_PRIVATE_P384_MAGIC = 0x344B4345
BCRYPT_ECDH_PUBLIC_P521_MAGIC = 0x354B4345
BCRYPT_ECDH_PRIVATE_P521_MAGIC = 0x364B4345
BCRYPT_ECDSA_PUBLIC_P256_MAGIC = 0x31534345
BCRYPT_ECDSA_PRIVATE_P256_MAGIC = 0x32534345
BCRYPT_ECDSA_PUBLIC_P384_MAGIC = 0x33534345
BCRYPT_ECDSA_PRIVATE_P384_MAGIC = 0x34534345
BCRYPT_ECDSA_PUBLIC_P521_MAGIC = 0x35534345
BCRYPT_ECDSA_PRIVATE_P521_MAGIC = 0x36534345

# BCrypt algorithm identifiers used in padding infos
BCRYPT_MD5_ALGORITHM = "MD5"
BCRYPT_SHA1_ALGORITHM = "SHA1"
BCRYPT_SHA256_ALGORITHM = "SHA256"
BCRYPT_SHA384_ALGORITHM = "SHA384"
BCRYPT_SHA512_ALGORITHM = "SHA512"

# --- container creation ----------------------------------------------------------------------
CARD_CREATE_CONTAINER_KEY_GEN = 1
CARD_CREATE_CONTAINER_KEY_IMPORT = 2

# --- padding / signing ------------------------------------------------------------------------
CARD_PADDING_INFO_PRESENT = 0x40000000
CARD_BUFFER_SIZE_ONLY = 0x20000000
CARD_PADDING_NONE = 0x1
CARD_PADDING_PKCS1 = 0x2
CARD_PADDING_PSS = 0x4
CARD_PADDING_OAEP = 0x8
CARD_RETURN_KEY_HANDLE = 0x1000000

# --- PINs -------------------------------------------------------------------------------------
MAX_PINS = 8
ROLE_EVERYONE = 0
ROLE_USER = 1
ROLE_ADMIN = 2
PIN_SET_NONE = 0x00
PIN_SET_ALL_ROLES = 0xFF
PIN_CHANGE_FLAG_UNBLOCK = 0x01
PIN_CHANGE_FLAG_CHANGEPIN = 0x02
PIN_INFO_REQUIRE_SECURE_ENTRY = 1

CARD_AUTHENTICATE_PIN_CHALLENGE_RESPONSE = 0x1
CARD_AUTHENTICATE_PIN_PIN = 0x2
CARD_PIN_SILENT_CONTEXT = 0x00000040
CARD_AUTHENTICATE_GENERATE_SESSION_PIN = 0x10000000
CARD_AUTHENTICATE_SESSION_PIN = 0x20000000
CARD_PIN_STRENGTH_PLAINTEXT = 0x1
CARD_PIN_STRENGTH_SESSION_PIN = 0x2

wszCARD_USER_EVERYONE = "anonymous"
wszCARD_USER_USER = "user"
wszCARD_USER_ADMIN = "admin"

PIN_ID = int
PIN_SET = int


def CREATE_PIN_SET(pin_id: int) -> int:
    """The PIN_SET holding only `pin_id` (cardmod.h macro)."""
    return 1 << pin_id


def SET_PIN(pin_set: int, pin_id: int) -> int:
    """`pin_set` with `pin_id` added (the C macro mutates; Python returns the new value)."""
    return (pin_set | (1 << pin_id)) & 0xFFFFFFFF


def IS_PIN_SET(pin_set: int, pin_id: int) -> bool:
    return (pin_set & (1 << pin_id)) != 0


def CLEAR_PIN(pin_set: int, pin_id: int) -> int:
    """`pin_set` without `pin_id`."""
    return pin_set & ~(1 << pin_id) & 0xFFFFFFFF


class PinType(IntEnum):
    """SECRET_TYPE."""

    AlphaNumericPinType = 0
    ExternalPinType = 1
    ChallengeResponsePinType = 2
    EmptyPinType = 3


class PinPurpose(IntEnum):
    """SECRET_PURPOSE."""

    AuthenticationPin = 0
    DigitalSignaturePin = 1
    EncryptionPin = 2
    NonRepudiationPin = 3
    AdministratorPin = 4
    PrimaryCardPin = 5
    UnblockOnlyPin = 6


class PinCachePolicyType(IntEnum):
    """PIN_CACHE_POLICY_TYPE."""

    PinCacheNormal = 0
    PinCacheTimed = 1
    PinCacheNone = 2
    PinCacheAlwaysPrompt = 3


# --- card properties --------------------------------------------------------------------------
CP_CARD_FREE_SPACE = "Free Space"
CP_CARD_CAPABILITIES = "Capabilities"
CP_CARD_KEYSIZES = "Key Sizes"
CP_CARD_READ_ONLY = "Read Only Mode"
CP_CARD_CACHE_MODE = "Cache Mode"
CP_SUPPORTS_WIN_X509_ENROLLMENT = "Supports Windows x.509 Enrollment"
CP_CARD_GUID = "Card Identifier"
CP_CARD_SERIAL_NO = "Card Serial Number"
CP_CARD_PIN_INFO = "PIN Information"
CP_CARD_LIST_PINS = "PIN List"
CP_CARD_AUTHENTICATED_STATE = "Authenticated State"
CP_CARD_PIN_STRENGTH_VERIFY = "PIN Strength Verify"
CP_CARD_PIN_STRENGTH_CHANGE = "PIN Strength Change"
CP_CARD_PIN_STRENGTH_UNBLOCK = "PIN Strength Unblock"
CP_PARENT_WINDOW = "Parent Window"
CP_PIN_CONTEXT_STRING = "PIN Context String"
CP_KEY_IMPORT_SUPPORT = "Key Import Support"
CP_ENUM_ALGORITHMS = "Algorithms"
CP_PADDING_SCHEMES = "Padding Schemes"
CP_CHAINING_MODES = "Chaining Modes"

CP_CACHE_MODE_GLOBAL_CACHE = 1
CP_CACHE_MODE_SESSION_ONLY = 2
CP_CACHE_MODE_NO_CACHE = 3

CARD_KEY_IMPORT_PLAIN_TEXT = 0x1
CARD_KEY_IMPORT_RSA_KEYEST = 0x2
CARD_KEY_IMPORT_ECC_KEYEST = 0x4
CARD_KEY_IMPORT_SHARED_SYMMETRIC = 0x8
CARD_CIPHER_OPERATION = 0x1
CARD_ASYMMETRIC_OPERATION = 0x2

# --- container properties ---------------------------------------------------------------------
CCP_CONTAINER_INFO = "Container Info"
CCP_PIN_IDENTIFIER = "PIN Identifier"
CCP_ASSOCIATED_ECDH_KEY = "Associated ECDH Key"

# --- secure key injection (v7) ----------------------------------------------------------------
CARD_3DES_112_ALGORITHM = "3DES_112"
CARD_3DES_ALGORITHM = "3DES"
CARD_AES_ALGORITHM = "AES"
CARD_BLOCK_PADDING = 1
CARD_CHAIN_MODE_CBC = "ChainingModeCBC"
CKP_CHAINING_MODE = "ChainingMode"
CKP_INITIALIZATION_VECTOR = "IV"
CKP_BLOCK_LENGTH = "BlockLength"
CSF_IMPORT_KEYPAIR = "Import Key Pair"
CSF_CHANGE_AUTHENTICATOR = "Change Authenticator"
CSF_AUTHENTICATE = "Authenticate"

# --- files ------------------------------------------------------------------------------------
szBASE_CSP_DIR = "mscp"
szINTERMEDIATE_CERTS_DIR = "mscerts"
szCACHE_FILE = "cardcf"
szCARD_IDENTIFIER_FILE = "cardid"
szCARD_APPS = "cardapps"
szCONTAINER_MAP_FILE = "cmapfile"
szROOT_STORE_FILE = "msroots"
szUSER_SIGNATURE_CERT_PREFIX = "ksc"
szUSER_KEYEXCHANGE_CERT_PREFIX = "kxc"
MAX_FILE_NAME_LEN = 8
MAX_CONTAINER_NAME_LEN = 39
CONTAINER_MAP_VALID_CONTAINER = 1
CONTAINER_MAP_DEFAULT_CONTAINER = 2


class CARD_DIRECTORY_ACCESS_CONDITION(IntEnum):
    InvalidDirAc = 0
    UserCreateDeleteDirAc = 1
    AdminCreateDeleteDirAc = 2


class CARD_FILE_ACCESS_CONDITION(IntEnum):
    InvalidAc = 0
    EveryoneReadUserWriteAc = 1
    UserWriteExecuteAc = 2
    EveryoneReadAdminWriteAc = 3
    UnknownAc = 4
    UserReadWriteAc = 5
    AdminReadWriteAc = 6


# KDF names for CardDeriveKey
BCRYPT_KDF_HASH = "HASH"
BCRYPT_KDF_HMAC = "HMAC"
BCRYPT_KDF_TLS_PRF = "TLS_PRF"
BCRYPT_KDF_SP80056A_CONCAT = "SP800_56A_CONCAT"
KDF_USE_SECRET_AS_HMAC_KEY_FLAG = 0x1
