"""The server's own certificate, decided about without OpenSSL's
verification: the ``verify_issuer=False`` mode, and the name after a resumed
handshake.

Theory of operation
-------------------
``verify_issuer=False`` (Ioto's ``rSetSocketVerify(sock, 1, 0)``) forgives
the issuer and nothing else: Ioto's verify callback ignores only the
unknown-issuer and self-signed errors.  Python's :mod:`ssl` has no verify
callback, and OpenSSL stops at the first error (an unknown issuer hides an
expiry), so that mode handshakes without OpenSSL's verification, and
:func:`check_peer` then asks of the peer's own certificate what OpenSSL's
``X509_verify_cert`` asks of a chain's leaf, in the same order and with the
same words (``_tls_words``): critical extensions OpenSSL does not
understand, the purpose (key usage, extended key usage, Netscape type), the
host name, then the validity dates.  The leaf's own signature belongs to the
issuer and is not checked.  The tests compare both modes on the same
certificates.

``cryptography`` reads the certificate.  ``service_identity``'s public API
(:func:`service_identity.cryptography.verify_certificate_hostname` and
``verify_certificate_ip_address``) matches the name: RFC 6125 for names,
the address itself for addresses.  Where OpenSSL compares more than that API
does, the same patterns are compared one by one (:func:`_one_by_one`):

- a certificate without DNS names is matched on its subject's common names
  (OpenSSL's fallback, on by Python's default ``hostname_checks_common_name``;
  the API has dropped it);
- a subjectAltName entry the API cannot read (``*.org``, ``w*.example.org``,
  a URI it does not parse) makes the API refuse the whole certificate, where
  OpenSSL skips the entry and tries the others.  Such an entry matches
  nothing in OpenSSL either.

A resumed session skips OpenSSL's verification too: OpenSSL verifies no
certificate when it resumes one, so it checks no name either, and a session
made for one name would pass for another.  After a handshake that resumed a
session under a context that checks host names, :func:`check_name` asks the
session's certificate for the name, in full verification's words
(``verify_issuer=False`` runs :func:`check_peer` after every handshake
anyway); full handshakes pay nothing for it, and the answer is cached by
certificate and name, since a session resumed again and again brings the
same certificate.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
import ssl
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address

from ._errors import TLSError
from ._tls_words import EXPIRED, INVALID_PURPOSE, NOT_YET_VALID, UNHANDLED_CRITICAL_EXTENSION, VERIFY_WORDS

__all__ = ["check_name", "check_peer"]

# How many (certificate, name) answers check_name keeps: a program resumes
# sessions with a handful of servers.
_CACHE_SIZE: Final = 32

# The extensions OpenSSL understands (X509_supported_extension in
# crypto/x509/v3_purp.c).  Any other extension marked critical fails full
# verification with X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION, whether or not
# cryptography can read it; the tests check this table against the linked
# OpenSSL.
_OPENSSL_EXTENSIONS: Final = frozenset(
    {
        x509.ObjectIdentifier("2.16.840.1.113730.1.1"),  # Netscape certificate type
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.EXTENDED_KEY_USAGE,
        x509.ObjectIdentifier("1.3.6.1.5.5.7.1.7"),  # RFC 3779 IP address blocks
        x509.ObjectIdentifier("1.3.6.1.5.5.7.1.8"),  # RFC 3779 AS identifiers
        ExtensionOID.OCSP_NO_CHECK,
        ExtensionOID.POLICY_CONSTRAINTS,
        x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14"),  # proxy certificate information
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.INHIBIT_ANY_POLICY,
    }
)
_NETSCAPE_CERT_TYPE: Final = x509.ObjectIdentifier("2.16.840.1.113730.1.1")
_NETSCAPE_SSL_SERVER: Final = 0x40  # the second bit of the BIT STRING's first byte
# What an extended key usage must name for a TLS server (check_purpose_ssl_server:
# serverAuth, or one of the old Server Gated Cryptography purposes).
_SERVER_PURPOSES: Final = frozenset(
    {
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.ObjectIdentifier("2.16.840.1.113730.4.1"),  # Netscape SGC
        x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),  # Microsoft SGC
    }
)

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_peer(der: bytes | None, host: str) -> None:
    """Decide about a server's certificate as full verification would, its
    issuer aside (``verify_issuer=False``).

    The questions are those OpenSSL's ``X509_verify_cert`` asks of a leaf,
    in its order, so that the first failure is the one full verification
    reports, in the same words: an unhandled critical extension, a purpose
    that is not a TLS server's, the host name, then the validity dates (the
    wall clock, not trio's).

    Raises:
      TLSError: with Ioto's words.
    """
    certificate, extensions = _load(der)
    for extension in extensions:
        if extension.critical and extension.oid not in _OPENSSL_EXTENSIONS:
            raise TLSError(VERIFY_WORDS[UNHANDLED_CRITICAL_EXTENSION])
    if not _serves_tls(extensions):
        raise TLSError(VERIFY_WORDS[INVALID_PURPOSE])
    if not _names_host(certificate, extensions, host, common_name_fallback=True):
        dns_names, addresses, common_names = _names(certificate, extensions)
        names = ", ".join(dns_names + [str(address) for address in addresses]) or ", ".join(common_names)
        raise TLSError(f"Certificate hostname mismatch. Expecting {host} got {names}")
    now = datetime.datetime.now(datetime.UTC)
    # X509_cmp_time: valid from notBefore, expired at notAfter.
    if certificate.not_valid_before_utc > now:
        raise TLSError(VERIFY_WORDS[NOT_YET_VALID])
    if certificate.not_valid_after_utc <= now:
        raise TLSError(VERIFY_WORDS[EXPIRED])


def check_name(der: bytes | None, host: str, context: ssl.SSLContext) -> None:
    """Check the name a client asked for against the server's certificate,
    after a handshake that resumed a session under a *context* that checks
    host names.

    OpenSSL checks the name only when it verifies a certificate, and a
    resumed handshake verifies none: the certificate comes from the session,
    verified when the session was made, for whatever name was asked then.
    The name is compared as in :func:`check_peer` (what OpenSSL compares,
    the common name only if *context* allows it) and a mismatch is told in
    full verification's own words.

    Raises:
      TLSError: ``Certificate hostname mismatch. Expecting <host>``.
    """
    if der is None:
        raise TLSError("No certificate provided")
    if not _certificate_names(der, host, context.hostname_checks_common_name):
        raise TLSError(f"Certificate hostname mismatch. Expecting {host}")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _certificate_names(der: bytes, host: str, common_name_fallback: bool) -> bool:
    """Whether the certificate *der* names *host*.  Cached: a session
    resumed again and again brings the same certificate every time, and
    reading it costs more than a tenth of a resumed handshake."""
    certificate, extensions = _load(der)
    return _names_host(certificate, extensions, host, common_name_fallback)


def _load(der: bytes | None) -> tuple[x509.Certificate, x509.Extensions]:
    """The peer's certificate and its extensions, read with ``cryptography``."""
    if der is None:
        raise TLSError("No certificate provided")
    try:
        certificate = x509.load_der_x509_certificate(der)
        extensions = certificate.extensions  # read here: a bad extension fails here
    except ValueError:
        raise TLSError("Unable to parse the peer's certificate") from None
    return certificate, extensions


def _serves_tls(extensions: x509.Extensions) -> bool:
    """OpenSSL's check_purpose_ssl_server for a leaf: what the key usage,
    extended key usage and Netscape type allow, when present."""
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.ExtendedKeyUsage):
            if _SERVER_PURPOSES.isdisjoint(value):
                return False
        elif isinstance(value, x509.KeyUsage):
            if not (value.digital_signature or value.key_encipherment or value.key_agreement):
                return False
        elif (
            extension.oid == _NETSCAPE_CERT_TYPE
            and isinstance(value, x509.UnrecognizedExtension)
            and not _netscape_allows_server(value.value)
        ):
            return False
    return True


def _netscape_allows_server(der: bytes) -> bool:
    # cryptography does not read this obsolete extension; its DER reader does.
    from cryptography.hazmat import asn1

    try:
        bits = asn1.decode_der(asn1.BitString, der).as_bytes()
    except ValueError:
        raise TLSError("Unable to parse the peer's certificate") from None
    return bool(bits) and bool(bits[0] & _NETSCAPE_SSL_SERVER)


def _names(certificate: x509.Certificate, extensions: x509.Extensions) -> tuple[list[str], list[_Address], list[str]]:
    """The subjectAltName DNS names and IP addresses, and the subject's common names."""
    try:
        alt_names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        dns_names, addresses = [], []
    else:
        dns_names = alt_names.get_values_for_type(x509.DNSName)
        addresses = [
            address
            for address in alt_names.get_values_for_type(x509.IPAddress)
            if not isinstance(address, ipaddress.IPv4Network | ipaddress.IPv6Network)
        ]
    common_names = [
        value if isinstance(value, str) else value.decode("utf-8", "replace")
        for value in (attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    ]
    return dns_names, addresses, common_names


def _names_host(
    certificate: x509.Certificate, extensions: x509.Extensions, host: str, common_name_fallback: bool
) -> bool:
    """Whether *certificate* names *host*, as OpenSSL decides (X509_check_ip,
    X509_check_host): service_identity's public API, and OpenSSL's fallbacks
    where that API declines (see the module's header).

    An address matches only the iPAddress entries.  A name matches the DNS
    entries or, in a certificate without any, the subject's common names
    (with *common_name_fallback*).  The names are read here only when the
    API declines: a certificate it matches costs nothing more.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        try:
            verify_certificate_ip_address(certificate, host)
        except VerificationError:
            return False
        except (CertificateError, ValueError):  # an entry it cannot read, or none
            return address in _names(certificate, extensions)[1]
        return True
    try:
        # The name as Python's ssl hands it to OpenSSL (IDNA 2003).
        name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    try:
        verify_certificate_hostname(certificate, name)
    except VerificationError:
        compared = True  # every DNS name the certificate has, if any
    except (CertificateError, ValueError):  # an entry it cannot read, no entries, or a name it refuses
        compared = False
    else:
        return True
    dns_names, _, common_names = _names(certificate, extensions)
    if dns_names and compared:
        return False
    return _one_by_one(name, dns_names or (common_names if common_name_fallback else []))


def _one_by_one(name: str, patterns: list[str]) -> bool:
    """Whether one of *patterns* matches *name*, each compared on its own as
    service_identity's public API compares them (RFC 6125), a pattern it
    refuses matching nothing, as in OpenSSL."""
    from service_identity.hazmat import DNS_ID, DNSPattern

    try:
        wanted = DNS_ID(name)
    except ValueError:
        return False
    for text in patterns:
        try:
            pattern = DNSPattern.from_bytes(text.encode("utf-8"))
        except CertificateError:
            continue
        if wanted.verify(pattern):
            return True
    return False
