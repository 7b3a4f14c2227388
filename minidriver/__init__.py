"""Host-side layer with the semantics of the Windows Smart Card Minidriver API (v7). Issue 6.

    from minidriver import CardData, CardAcquireContext, CardAuthenticateEx, CardSignData, ...

    card_data = CardData.connect(reader="Virtual PCD 00 00")   # or CardData.inprocess(card)
    CardAcquireContext(card_data, 0)
    CardAuthenticateEx(card_data, ROLE_USER, 0, b"123456")

Entry points keep the spec's names and parameter order; out-parameters are
returned; failures raise `ScardError` with the Windows DWORD in `.code`.
docs/minidriver.md describes the mapping choices and what is modelled.
"""

from . import api as _api
from . import constants as _constants
from . import errors as _errors
from . import structures as _structures
from .api import (
    CardAcquireContext as CardAcquireContext,
)
from .api import (
    CardAuthenticateChallenge as CardAuthenticateChallenge,
)
from .api import (
    CardAuthenticateEx as CardAuthenticateEx,
)
from .api import (
    CardAuthenticatePin as CardAuthenticatePin,
)
from .api import (
    CardChangeAuthenticator as CardChangeAuthenticator,
)
from .api import (
    CardChangeAuthenticatorEx as CardChangeAuthenticatorEx,
)
from .api import (
    CardConstructDHAgreement as CardConstructDHAgreement,
)
from .api import (
    CardCreateContainer as CardCreateContainer,
)
from .api import (
    CardCreateContainerEx as CardCreateContainerEx,
)
from .api import (
    CardCreateDirectory as CardCreateDirectory,
)
from .api import (
    CardCreateFile as CardCreateFile,
)
from .api import (
    CardData as CardData,
)
from .api import (
    CardDeauthenticate as CardDeauthenticate,
)
from .api import (
    CardDeauthenticateEx as CardDeauthenticateEx,
)
from .api import (
    CardDeleteContainer as CardDeleteContainer,
)
from .api import (
    CardDeleteContext as CardDeleteContext,
)
from .api import (
    CardDeleteDirectory as CardDeleteDirectory,
)
from .api import (
    CardDeleteFile as CardDeleteFile,
)
from .api import (
    CardDeriveKey as CardDeriveKey,
)
from .api import (
    CardDestroyDHAgreement as CardDestroyDHAgreement,
)
from .api import (
    CardDestroyKey as CardDestroyKey,
)
from .api import (
    CardEnumFiles as CardEnumFiles,
)
from .api import (
    CardGetAlgorithmProperty as CardGetAlgorithmProperty,
)
from .api import (
    CardGetChallenge as CardGetChallenge,
)
from .api import (
    CardGetChallengeEx as CardGetChallengeEx,
)
from .api import (
    CardGetContainerInfo as CardGetContainerInfo,
)
from .api import (
    CardGetContainerProperty as CardGetContainerProperty,
)
from .api import (
    CardGetFileInfo as CardGetFileInfo,
)
from .api import (
    CardGetKeyProperty as CardGetKeyProperty,
)
from .api import (
    CardGetProperty as CardGetProperty,
)
from .api import (
    CardGetSharedKeyHandle as CardGetSharedKeyHandle,
)
from .api import (
    CardImportSessionKey as CardImportSessionKey,
)
from .api import (
    CardProcessEncryptedData as CardProcessEncryptedData,
)
from .api import (
    CardQueryCapabilities as CardQueryCapabilities,
)
from .api import (
    CardQueryFreeSpace as CardQueryFreeSpace,
)
from .api import (
    CardQueryKeySizes as CardQueryKeySizes,
)
from .api import (
    CardReadFile as CardReadFile,
)
from .api import (
    CardRSADecrypt as CardRSADecrypt,
)
from .api import (
    CardSetContainerProperty as CardSetContainerProperty,
)
from .api import (
    CardSetKeyProperty as CardSetKeyProperty,
)
from .api import (
    CardSetProperty as CardSetProperty,
)
from .api import (
    CardSignData as CardSignData,
)
from .api import (
    CardUnblockPin as CardUnblockPin,
)
from .api import (
    CardWriteFile as CardWriteFile,
)
from .api import (
    MDEncryptData as MDEncryptData,
)
from .api import (
    MDImportSessionKey as MDImportSessionKey,
)
from .api import (
    dword as dword,
)
from .api import (
    public_key_of as public_key_of,
)
from .constants import *  # noqa: F403  (the spec's constant names)
from .errors import Scard as Scard
from .errors import ScardError as ScardError
from .structures import (
    BCRYPT_ECCKEY_BLOB as BCRYPT_ECCKEY_BLOB,
)
from .structures import (
    BCRYPT_OAEP_PADDING_INFO as BCRYPT_OAEP_PADDING_INFO,
)
from .structures import (
    BCRYPT_PKCS1_PADDING_INFO as BCRYPT_PKCS1_PADDING_INFO,
)
from .structures import (
    BCRYPT_PSS_PADDING_INFO as BCRYPT_PSS_PADDING_INFO,
)
from .structures import (
    CARD_CACHE_FILE_FORMAT as CARD_CACHE_FILE_FORMAT,
)
from .structures import (
    CARD_CAPABILITIES as CARD_CAPABILITIES,
)
from .structures import (
    CARD_DERIVE_KEY as CARD_DERIVE_KEY,
)
from .structures import (
    CARD_DH_AGREEMENT_INFO as CARD_DH_AGREEMENT_INFO,
)
from .structures import (
    CARD_FILE_INFO as CARD_FILE_INFO,
)
from .structures import (
    CARD_FREE_SPACE_INFO as CARD_FREE_SPACE_INFO,
)
from .structures import (
    CARD_KEY_SIZES as CARD_KEY_SIZES,
)
from .structures import (
    CARD_RSA_DECRYPT_INFO as CARD_RSA_DECRYPT_INFO,
)
from .structures import (
    CARD_SIGNING_INFO as CARD_SIGNING_INFO,
)
from .structures import (
    CONTAINER_INFO as CONTAINER_INFO,
)
from .structures import (
    CONTAINER_MAP_RECORD as CONTAINER_MAP_RECORD,
)
from .structures import (
    PIN_CACHE_POLICY as PIN_CACHE_POLICY,
)
from .structures import (
    PIN_INFO as PIN_INFO,
)
from .structures import (
    PRIVATEKEYBLOB as PRIVATEKEYBLOB,
)
from .structures import (
    PUBLICKEYBLOB as PUBLICKEYBLOB,
)

ENTRY_POINTS = [
    name
    for name in dir(_api)
    if name.startswith(("Card", "MD")) and name not in ("CardData", "CardHandle", "CardEndpoint")
]
__all__ = sorted(
    {
        *ENTRY_POINTS,
        "CardData",
        "Scard",
        "ScardError",
        "dword",
        "public_key_of",
        *(name for name in dir(_constants) if name[:1].isalpha() and not name.startswith("annotations")),
        *(name for name in dir(_errors) if name.startswith(("SCARD_", "ERROR_", "NTE_"))),
        *(name for name in dir(_structures) if name.isupper() and not name.startswith("_")),
    }
)
from .errors import *  # noqa: E402, F403  (SCARD_* / ERROR_* aliases)
