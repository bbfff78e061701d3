"""TLS failures in Ioto's words: the one place :mod:`ssl`'s errors become
the library's.

Theory of operation
-------------------
What went wrong is read from what :mod:`ssl` says in its attributes, never
from its message: a failed verification's OpenSSL code
(:attr:`ssl.SSLCertVerificationError.verify_code`, with
:attr:`~ssl.SSLCertVerificationError.verify_message` for codes without words
here), and any other failure's OpenSSL reason by the name Python gives it
(:attr:`ssl.SSLError.reason`, from :attr:`~ssl.SSLError.library`).
Verification codes become Ioto's words (its ``verifyPeerCertificate``:
"Certificate has expired", ...), reasons plain sentences; a reason without
words here is said as OpenSSL names it.

Python names reasons from a table made for each Python release, so a
reason newer than the table has ``reason`` None (Python 3.11 has no name for
the ``no_application_protocol`` and ``unknown_psk_identity`` alerts of
OpenSSL 3).  Only then, and only for the SSL library, is OpenSSL's own text
for that reason looked for in the error (:data:`_UNNAMED_REASONS`).

:func:`handshake_error` is for a failed handshake (a :class:`TLSError`,
raised by ``connect``, the accept loop and ``upgrade_tls``),
:func:`broken_error` for a connection that broke after it (trio's
:class:`trio.BrokenResourceError`, with the words).  The issuer-free check
(``_tls_leaf``) says its refusals in the same words, from
:data:`VERIFY_WORDS`.
"""

from __future__ import annotations

import ssl
from typing import Final

import trio

from ._errors import TLSError

__all__ = [
    "EXPIRED",
    "INVALID_PURPOSE",
    "NOT_YET_VALID",
    "UNHANDLED_CRITICAL_EXTENSION",
    "VERIFY_WORDS",
    "broken_error",
    "handshake_error",
]

# OpenSSL X509_V_ERR_* codes, in Ioto's words (its verifyPeerCertificate),
# and in words of our own where Ioto has none.
NOT_YET_VALID: Final = 9
EXPIRED: Final = 10
INVALID_PURPOSE: Final = 26
UNHANDLED_CRITICAL_EXTENSION: Final = 34
VERIFY_WORDS: Final = {
    2: "Certificate not trusted",  # UNABLE_TO_GET_ISSUER_CERT
    3: "Certificate revocation list not found for the issuer",  # UNABLE_TO_GET_CRL
    NOT_YET_VALID: "Certificate is not yet valid",  # CERT_NOT_YET_VALID
    EXPIRED: "Certificate has expired",  # CERT_HAS_EXPIRED
    12: "Certificate revocation list has expired",  # CRL_HAS_EXPIRED
    18: "Self-signed certificate",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "Self-signed certificate",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "Certificate not trusted",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "Certificate not trusted",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    23: "Certificate revoked",  # CERT_REVOKED
    INVALID_PURPOSE: "Certificate is not for this purpose (key usage)",  # INVALID_PURPOSE
    27: "Certificate not trusted",  # CERT_UNTRUSTED
    UNHANDLED_CRITICAL_EXTENSION: "Certificate has an unknown critical extension",  # UNHANDLED_CRITICAL_EXTENSION
}
_HOSTNAME_CODES: Final = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH

# OpenSSL reason codes of handshake and alert failures, in words.
_REASON_WORDS: Final = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "No certificate provided",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "The peer requires a certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "The peer does not trust the certificate's issuer",
    "SSLV3_ALERT_BAD_CERTIFICATE": "The peer rejected the certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "The peer rejected the certificate as expired",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "The peer rejected the certificate as revoked",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "The peer rejected the certificate",
    "NO_SHARED_CIPHER": "No shared cipher",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "The peer ended the handshake (no shared cipher or protocol?)",
    "WRONG_VERSION_NUMBER": "The peer is not speaking TLS",
    "UNSUPPORTED_PROTOCOL": "No shared TLS version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "No shared TLS version",
    "NO_APPLICATION_PROTOCOL": "No shared ALPN protocol",
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "No shared ALPN protocol",
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": "A TLS record failed its integrity check",
    "UNEXPECTED_EOF_WHILE_READING": "The peer closed the connection without close_notify",
}

# OpenSSL 3's reasons that some Python releases have no name for (``reason``
# is None): OpenSSL's text for each (ERR_reason_error_string), and its name.
_UNNAMED_REASONS: Final = {
    "tlsv1 alert no application protocol": "TLSV1_ALERT_NO_APPLICATION_PROTOCOL",  # 1120
    "tlsv1 alert unknown psk identity": "TLSV1_ALERT_UNKNOWN_PSK_IDENTITY",  # 1115
}


def _reason(error: ssl.SSLError) -> str | None:
    """OpenSSL's reason for *error*, by name."""
    reason: str | None = getattr(error, "reason", None)
    if reason is None and getattr(error, "library", None) == "SSL":
        message = str(error)
        reason = next((name for text, name in _UNNAMED_REASONS.items() if text in message), None)
    return reason


def _ssl_words(error: ssl.SSLError) -> str:
    reason = _reason(error)
    if reason is not None and reason in _REASON_WORDS:
        return _REASON_WORDS[reason]
    if isinstance(error, ssl.SSLEOFError | ssl.SSLSyscallError | ssl.SSLZeroReturnError):
        return "The peer closed the connection"
    return reason.replace("_", " ").lower() if reason else str(error)


def handshake_error(exc: BaseException, host: str | None = None) -> TLSError:
    """The :class:`TLSError` for a failed handshake, in Ioto's words.

    *exc* is what the handshake raised: the :class:`ssl.SSLError` or
    :class:`OSError` itself (or a :class:`trio.BrokenResourceError` whose
    ``__cause__`` it is); *host* is the name the client asked for.
    """
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        code = cause.verify_code
        if code in _HOSTNAME_CODES:
            return TLSError(f"Certificate hostname mismatch. Expecting {host}")
        words = VERIFY_WORDS.get(code)
        if words is None:
            return TLSError(f"Certificate verification error {code}: {cause.verify_message}")
        return TLSError(words)
    if isinstance(cause, ssl.SSLError):
        return TLSError(f"TLS handshake failed: {_ssl_words(cause)}")
    if isinstance(cause, OSError):
        return TLSError(f"TLS handshake failed: the connection broke ({cause.strerror or cause})", cause.errno)
    return TLSError("TLS handshake failed: the peer closed the connection")


def broken_error(exc: ssl.SSLError) -> trio.BrokenResourceError:
    """A TLS connection broke after the handshake: say why, in words, keeping trio's type."""
    return trio.BrokenResourceError(f"TLS connection broken: {_ssl_words(exc)}")
