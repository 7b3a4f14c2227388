"""Our PKINIT client on the Windows path (RFC 4556): the AuthPack signed by the card through the minidriver.

Modules: asn1 (Kerberos and PKINIT schemas, asn1crypto), crypto (RFC 3961/3962 AES
profile and octetstring2key on `cryptography` primitives), dh (MODP group 14), cms
(SignedData build/verify), messages (AS-REQ, AS-REP, KRB-ERROR), transport (TCP),
ccache (MIT FILE: cache v4), card_signer (CardSignData), client (the three steps).
"""
