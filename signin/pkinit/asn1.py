"""Kerberos (RFC 4120 §5) and PKINIT (RFC 4556 appendix A) message schemas, declared with asn1crypto.

Only declarations live here: asn1crypto does the DER encoding and decoding. Both ASN.1
modules use EXPLICIT TAGS, so every context tag is explicit unless the RFC says IMPLICIT.
The [APPLICATION n] wrappers (AS-REQ, AS-REP, KRB-ERROR, Ticket, EncASRepPart) are
explicit outer tags on a SEQUENCE.
"""

from __future__ import annotations

from asn1crypto import algos as asn1_algos
from asn1crypto import core
from asn1crypto import keys as asn1_keys

APPLICATION = 1

# message types (RFC 4120 §7.5.7), padata types (RFC 4120 §7.5.2, RFC 4556 §3.2), name types
KRB_AS_REQ, KRB_AS_REP, KRB_ERROR = 10, 11, 30
PA_PK_AS_REQ, PA_PK_AS_REP = 16, 17
NT_PRINCIPAL, NT_SRV_INST = 1, 2

# RFC 4556 object identifiers
ID_PKINIT_AUTHDATA = "1.3.6.1.5.2.3.1"
ID_PKINIT_DHKEYDATA = "1.3.6.1.5.2.3.2"
ID_PKINIT_RKEYDATA = "1.3.6.1.5.2.3.3"
DH_PUBLIC_NUMBER = "1.2.840.10046.2.1"  # ANSI X9.42 dhpublicnumber


class KerberosString(core.GeneralString):
    pass


class KerberosTime(core.GeneralizedTime):
    """GeneralizedTime without fractions ("YYYYMMDDHHMMSSZ", RFC 4120 §5.2.3)."""


class KerberosFlags(core.BitString):
    """At least 32 bits on the wire (RFC 4120 §5.2.8): set with a 32-tuple of 0/1."""


class SequenceOfString(core.SequenceOf):
    _child_spec = KerberosString


class PrincipalName(core.Sequence):
    _fields = [
        ("name-type", core.Integer, {"explicit": 0}),
        ("name-string", SequenceOfString, {"explicit": 1}),
    ]


class HostAddress(core.Sequence):
    _fields = [
        ("addr-type", core.Integer, {"explicit": 0}),
        ("address", core.OctetString, {"explicit": 1}),
    ]


class HostAddresses(core.SequenceOf):
    _child_spec = HostAddress


class PAData(core.Sequence):
    _fields = [
        ("padata-type", core.Integer, {"explicit": 1}),
        ("padata-value", core.OctetString, {"explicit": 2}),
    ]


class MethodData(core.SequenceOf):
    _child_spec = PAData


class EncryptedData(core.Sequence):
    _fields = [
        ("etype", core.Integer, {"explicit": 0}),
        ("kvno", core.Integer, {"explicit": 1, "optional": True}),
        ("cipher", core.OctetString, {"explicit": 2}),
    ]


class EncryptionKey(core.Sequence):
    _fields = [
        ("keytype", core.Integer, {"explicit": 0}),
        ("keyvalue", core.OctetString, {"explicit": 1}),
    ]


class Checksum(core.Sequence):
    _fields = [
        ("cksumtype", core.Integer, {"explicit": 0}),
        ("checksum", core.OctetString, {"explicit": 1}),
    ]


class Ticket(core.Sequence):
    explicit = ((APPLICATION, 1),)
    _fields = [
        ("tkt-vno", core.Integer, {"explicit": 0}),
        ("realm", KerberosString, {"explicit": 1}),
        ("sname", PrincipalName, {"explicit": 2}),
        ("enc-part", EncryptedData, {"explicit": 3}),
    ]


class Tickets(core.SequenceOf):
    _child_spec = Ticket


class EtypeList(core.SequenceOf):
    _child_spec = core.Integer


class KdcReqBody(core.Sequence):
    _fields = [
        ("kdc-options", KerberosFlags, {"explicit": 0}),
        ("cname", PrincipalName, {"explicit": 1, "optional": True}),
        ("realm", KerberosString, {"explicit": 2}),
        ("sname", PrincipalName, {"explicit": 3, "optional": True}),
        ("from", KerberosTime, {"explicit": 4, "optional": True}),
        ("till", KerberosTime, {"explicit": 5}),
        ("rtime", KerberosTime, {"explicit": 6, "optional": True}),
        ("nonce", core.Integer, {"explicit": 7}),
        ("etype", EtypeList, {"explicit": 8}),
        ("addresses", HostAddresses, {"explicit": 9, "optional": True}),
        ("enc-authorization-data", EncryptedData, {"explicit": 10, "optional": True}),
        ("additional-tickets", Tickets, {"explicit": 11, "optional": True}),
    ]


class AsReq(core.Sequence):
    explicit = ((APPLICATION, 10),)
    _fields = [
        ("pvno", core.Integer, {"explicit": 1}),
        ("msg-type", core.Integer, {"explicit": 2}),
        ("padata", MethodData, {"explicit": 3, "optional": True}),
        ("req-body", KdcReqBody, {"explicit": 4}),
    ]


class AsRep(core.Sequence):
    explicit = ((APPLICATION, 11),)
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("padata", MethodData, {"explicit": 2, "optional": True}),
        ("crealm", KerberosString, {"explicit": 3}),
        ("cname", PrincipalName, {"explicit": 4}),
        ("ticket", Ticket, {"explicit": 5}),
        ("enc-part", EncryptedData, {"explicit": 6}),
    ]


class LastReqEntry(core.Sequence):
    _fields = [
        ("lr-type", core.Integer, {"explicit": 0}),
        ("lr-value", KerberosTime, {"explicit": 1}),
    ]


class LastReq(core.SequenceOf):
    _child_spec = LastReqEntry


class EncKdcRepPart(core.Sequence):
    _fields = [
        ("key", EncryptionKey, {"explicit": 0}),
        ("last-req", LastReq, {"explicit": 1}),
        ("nonce", core.Integer, {"explicit": 2}),
        ("key-expiration", KerberosTime, {"explicit": 3, "optional": True}),
        ("flags", KerberosFlags, {"explicit": 4}),
        ("authtime", KerberosTime, {"explicit": 5}),
        ("starttime", KerberosTime, {"explicit": 6, "optional": True}),
        ("endtime", KerberosTime, {"explicit": 7}),
        ("renew-till", KerberosTime, {"explicit": 8, "optional": True}),
        ("srealm", KerberosString, {"explicit": 9}),
        ("sname", PrincipalName, {"explicit": 10}),
        ("caddr", HostAddresses, {"explicit": 11, "optional": True}),
        ("encrypted-pa-data", MethodData, {"explicit": 12, "optional": True}),
    ]


class EncAsRepPart(EncKdcRepPart):
    explicit = ((APPLICATION, 25),)


class EncTgsRepPart(EncKdcRepPart):
    """RFC 4120 §5.4.2: some KDCs send this tag in an AS reply too; clients accept both."""

    explicit = ((APPLICATION, 26),)


class KrbError(core.Sequence):
    explicit = ((APPLICATION, 30),)
    _fields = [
        ("pvno", core.Integer, {"explicit": 0}),
        ("msg-type", core.Integer, {"explicit": 1}),
        ("ctime", KerberosTime, {"explicit": 2, "optional": True}),
        ("cusec", core.Integer, {"explicit": 3, "optional": True}),
        ("stime", KerberosTime, {"explicit": 4}),
        ("susec", core.Integer, {"explicit": 5}),
        ("error-code", core.Integer, {"explicit": 6}),
        ("crealm", KerberosString, {"explicit": 7, "optional": True}),
        ("cname", PrincipalName, {"explicit": 8, "optional": True}),
        ("realm", KerberosString, {"explicit": 9}),
        ("sname", PrincipalName, {"explicit": 10}),
        ("e-text", KerberosString, {"explicit": 11, "optional": True}),
        ("e-data", core.OctetString, {"explicit": 12, "optional": True}),
    ]


# --- PKINIT (RFC 4556 appendix A) --------------------------------------------------------------


class PkAuthenticator(core.Sequence):
    _fields = [
        ("cusec", core.Integer, {"explicit": 0}),
        ("ctime", KerberosTime, {"explicit": 1}),
        ("nonce", core.Integer, {"explicit": 2}),
        ("paChecksum", core.OctetString, {"explicit": 3, "optional": True}),
    ]


class AlgorithmIdentifiers(core.SequenceOf):
    _child_spec = asn1_algos.DigestAlgorithm


class AuthPack(core.Sequence):
    _fields = [
        ("pkAuthenticator", PkAuthenticator, {"explicit": 0}),
        ("clientPublicValue", asn1_keys.PublicKeyInfo, {"explicit": 1, "optional": True}),
        ("supportedCMSTypes", AlgorithmIdentifiers, {"explicit": 2, "optional": True}),
        ("clientDHNonce", core.OctetString, {"explicit": 3, "optional": True}),
    ]


class PaPkAsReq(core.Sequence):
    _fields = [
        ("signedAuthPack", core.OctetString, {"implicit": 0}),
        ("trustedCertifiers", core.Any, {"explicit": 1, "optional": True}),
        ("kdcPkId", core.OctetString, {"implicit": 2, "optional": True}),
    ]


class DhRepInfo(core.Sequence):
    _fields = [
        ("dhSignedData", core.OctetString, {"implicit": 0}),
        ("serverDHNonce", core.OctetString, {"explicit": 1, "optional": True}),
    ]


class PaPkAsRep(core.Choice):
    _alternatives = [
        ("dhInfo", DhRepInfo, {"explicit": 0}),
        ("encKeyPack", core.OctetString, {"implicit": 1}),
    ]


class KdcDhKeyInfo(core.Sequence):
    _fields = [
        ("subjectPublicKey", core.BitString, {"explicit": 0}),
        ("nonce", core.Integer, {"explicit": 1}),
        ("dhKeyExpiration", KerberosTime, {"explicit": 2, "optional": True}),
    ]


class ReplyKeyPack(core.Sequence):
    _fields = [
        ("replyKey", EncryptionKey, {"explicit": 0}),
        ("asChecksum", Checksum, {"explicit": 1}),
    ]
