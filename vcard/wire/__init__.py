"""Wire definitions shared by the card and the host: AIDs, INS values, vendor formats, GIDS tables.

Nothing here implements a card or a host. Both `vcard.applets`/`vcard.vendor`
(the card) and `minidriver` (the host) import these modules, so a byte that
travels between them is written down once. Modules here import only the standard
library and the other neutral modules (`vcard.apdu`, `vcard.tlv`).
"""
