"""Host-side layer with the semantics of the Windows Smart Card Minidriver API (v7).

    from minidriver import CardData, CardAcquireContext, CardAuthenticateEx, CardSignData, ...

    card_data = CardData.connect(reader="Virtual PCD 00 00")   # or CardData.inprocess(card)
    CardAcquireContext(card_data, 0)
    CardAuthenticateEx(card_data, ROLE_USER, 0, b"123456")

Entry points keep the spec's names and parameter order; out-parameters are
returned; failures raise `ScardError` with the Windows DWORD in `.code`.
docs/minidriver.md describes the mapping choices and what is modelled. The entry points
live in one module per chapter of the specification: context (CARD_DATA, context),
auth (PINs and roles), files (file system), containers (containers and crypto),
properties (card and container properties), unsupported (secure key injection).
"""

from . import auth as _auth
from . import constants as _constants
from . import containers as _containers
from . import context as _context
from . import errors as _errors
from . import files as _files
from . import properties as _properties
from . import structures as _structures
from . import unsupported as _unsupported
from .auth import CardAuthenticateChallenge as CardAuthenticateChallenge
from .auth import CardAuthenticateEx as CardAuthenticateEx
from .auth import CardAuthenticatePin as CardAuthenticatePin
from .auth import CardChangeAuthenticator as CardChangeAuthenticator
from .auth import CardChangeAuthenticatorEx as CardChangeAuthenticatorEx
from .auth import CardDeauthenticate as CardDeauthenticate
from .auth import CardDeauthenticateEx as CardDeauthenticateEx
from .auth import CardGetChallenge as CardGetChallenge
from .auth import CardGetChallengeEx as CardGetChallengeEx
from .auth import CardUnblockPin as CardUnblockPin
from .constants import *  # noqa: F403  (the spec's constant names)
from .containers import CardConstructDHAgreement as CardConstructDHAgreement
from .containers import CardCreateContainer as CardCreateContainer
from .containers import CardCreateContainerEx as CardCreateContainerEx
from .containers import CardDeleteContainer as CardDeleteContainer
from .containers import CardDeriveKey as CardDeriveKey
from .containers import CardDestroyDHAgreement as CardDestroyDHAgreement
from .containers import CardGetContainerInfo as CardGetContainerInfo
from .containers import CardQueryKeySizes as CardQueryKeySizes
from .containers import CardRSADecrypt as CardRSADecrypt
from .containers import CardSignData as CardSignData
from .containers import public_key_of as public_key_of
from .context import CardAcquireContext as CardAcquireContext
from .context import CardData as CardData
from .context import CardDeleteContext as CardDeleteContext
from .errors import Scard as Scard
from .errors import ScardError as ScardError
from .files import CardCreateDirectory as CardCreateDirectory
from .files import CardCreateFile as CardCreateFile
from .files import CardDeleteDirectory as CardDeleteDirectory
from .files import CardDeleteFile as CardDeleteFile
from .files import CardEnumFiles as CardEnumFiles
from .files import CardGetFileInfo as CardGetFileInfo
from .files import CardQueryFreeSpace as CardQueryFreeSpace
from .files import CardReadFile as CardReadFile
from .files import CardWriteFile as CardWriteFile
from .properties import CardGetContainerProperty as CardGetContainerProperty
from .properties import CardGetProperty as CardGetProperty
from .properties import CardQueryCapabilities as CardQueryCapabilities
from .properties import CardSetContainerProperty as CardSetContainerProperty
from .properties import CardSetProperty as CardSetProperty
from .properties import dword as dword
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
from .unsupported import CardDestroyKey as CardDestroyKey
from .unsupported import CardGetAlgorithmProperty as CardGetAlgorithmProperty
from .unsupported import CardGetKeyProperty as CardGetKeyProperty
from .unsupported import CardGetSharedKeyHandle as CardGetSharedKeyHandle
from .unsupported import CardImportSessionKey as CardImportSessionKey
from .unsupported import CardProcessEncryptedData as CardProcessEncryptedData
from .unsupported import CardSetKeyProperty as CardSetKeyProperty
from .unsupported import MDEncryptData as MDEncryptData
from .unsupported import MDImportSessionKey as MDImportSessionKey

# The spec's entry points, chapter by chapter (each module holds one chapter of the specification).
_CHAPTERS = (_context, _auth, _files, _containers, _properties, _unsupported)
ENTRY_POINTS = sorted(
    name
    for module in _CHAPTERS
    for name in vars(module)
    if name.startswith(("Card", "MD"))
    and name != "CardData"
    and callable(vars(module)[name])
    and getattr(vars(module)[name], "__module__", None) == module.__name__
)
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
