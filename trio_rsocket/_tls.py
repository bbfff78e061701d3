"""TLS: Ioto's settings turned into an :class:`ssl.SSLContext`.

Theory of operation
-------------------
A socket's TLS settings (:class:`TLSSettings`) are what Ioto keeps in its
``Rtls`` object: key, certificate, authority, revocation list, ciphers,
verify flags and ALPN, each left ``None`` to fall back to the module default
(:func:`set_default_certs` and friends, Ioto's ``rSetSocketDefault*``).
Settings are immutable; every setter makes a new one, so a listener and the
sockets it accepts can share them safely.

:func:`client_context` and :func:`server_context` resolve the defaults and
build the :class:`ssl.SSLContext`, raising :class:`TLSError` naming the file or
setting at fault.  They are called by ``connect`` and ``listen`` before any
network I/O, so a missing key file is reported before a connection is tried.
Building a context can cost tens of milliseconds (the system CA store), so
contexts are cached by their resolved settings plus the size and mtime of
every file they read: a certificate replaced on disk is picked up by the next
connect or listen.

Verification follows Ioto's ``rSetSocketVerify(sock, verifyPeer,
verifyIssuer)``.  Both true is OpenSSL's full verification (chain, dates,
purpose, critical extensions, hostname, and the revocation list when one is
given).  ``verify_issuer=False`` forgives the issuer and nothing else: its
context verifies nothing (:attr:`TLSContext.forgives_issuer`), and
``_tls_leaf.check_peer`` decides about the server's certificate after the
handshake as full verification would, issuer aside.

The certificates are read by ``cryptography`` before OpenSSL loads the chain
(:func:`cryptography.x509.load_pem_x509_certificates`), so that a bad
certificate is reported as the certificate, not as the key
(``load_cert_chain`` says "PEM lib" for both).  A revocation list only ever
adds CRLs: OpenSSL's loader would also take ``CERTIFICATE``, ``X509
CERTIFICATE`` and ``TRUSTED CERTIFICATE`` blocks from the same file as trust
anchors, so the file is parsed with ``cryptography`` and OpenSSL is handed
nothing but the CRLs, written out again.

A private key's password is always handed to OpenSSL as a function, so OpenSSL
never prompts on the terminal (which would stop the event loop): without a
password an encrypted key is a :class:`TLSError` naming the file.

Two rooms beside this one: ``_tls_words`` turns :mod:`ssl`'s errors into
Ioto's words (:func:`handshake_error`, :func:`broken_error`), and
``_tls_leaf`` holds the issuer-free check and the name check after a resumed
handshake (:func:`check_peer`, :func:`check_name`).  Both are re-exported
here, where the parts have always found them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._errors import TLSError
from ._tls_leaf import check_name as check_name
from ._tls_leaf import check_peer as check_peer
from ._tls_words import broken_error as broken_error
from ._tls_words import handshake_error as handshake_error

__all__ = [
    "KTLS_OPTION",
    "CertSource",
    "TLSContext",
    "TLSSettings",
    "broken_error",
    "check_alpn",
    "check_ciphers",
    "check_name",
    "check_password",
    "check_peer",
    "check_source",
    "check_verify",
    "client_context",
    "handshake_error",
    "reset_defaults",
    "server_context",
    "set_default_certs",
    "set_default_ciphers",
    "set_default_verify",
]

#: A certificate, key, authority or revocation list: a file path, or the PEM
#: text as bytes.
CertSource = str | os.PathLike[str] | bytes

#: What unlocks an encrypted private key, as :meth:`ssl.SSLContext.load_cert_chain`
#: takes it: the password, or a function that returns it.
Password = str | bytes | bytearray | Callable[[], str | bytes | bytearray]

#: ``ssl.OP_ENABLE_KTLS`` where Python has it (3.12 and later, built with
#: OpenSSL 3), else 0: ``set_tls(ktls=True)`` is then a no-op.
KTLS_OPTION: Final = int(getattr(ssl, "OP_ENABLE_KTLS", 0))

# How many built contexts to keep.  A program uses a handful of TLS
# configurations; the bound only stops a program that generates PEM bytes per
# connection from growing the cache without end.
_CACHE_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The TLS settings of one socket; ``None`` means "the module default"."""

    key: CertSource | None = None
    cert: CertSource | None = None
    authority: CertSource | None = None
    revoke: CertSource | None = None
    ciphers: str | None = None
    verify_peer: bool | None = None
    verify_issuer: bool | None = None
    alpn: tuple[str, ...] | None = None
    #: What unlocks an encrypted *key* (see :data:`Password`).
    password: Password | None = None
    #: A context from ``set_ssl_context``: used as it is, everything else ignored.
    context: ssl.SSLContext | None = None
    #: A peer that closes without close_notify reads as end of file (trio's
    #: ``https_compatible``); otherwise it is an error.  Not part of the context.
    ragged_eof: bool | None = None
    #: Ask OpenSSL to hand the keys to the kernel (kTLS), where it can.
    ktls: bool | None = None

    def replace(self, **changes: object) -> TLSSettings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# The module defaults (Ioto's rSetSocketDefaultCerts/Ciphers/Verify).  Ioto
# verifies peer and issuer unless told otherwise.
_defaults = TLSSettings(verify_peer=True, verify_issuer=True)


# ----------------------------------------------------------------------
# Argument checks (at set time: TypeError/ValueError naming the argument)
# ----------------------------------------------------------------------


def check_source(value: object, argument: str) -> CertSource | None:
    """Validate a key/cert/authority/revoke argument: a path or PEM bytes."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if not data.strip():
            raise ValueError(f"{argument} must not be empty")
        return data
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{argument} must be a file path, not an empty string")
        if value.lstrip().startswith("-----BEGIN"):
            raise TypeError(f"{argument} looks like PEM text: pass PEM as bytes (str is a file path)")
        return value
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        return os.fsdecode(path) if isinstance(path, bytes) else path
    raise TypeError(f"{argument} must be a file path (str or os.PathLike) or PEM bytes, not {type(value).__name__}")


def check_password(password: object) -> Password | None:
    """Validate a key password: str, bytes-like, or a callable returning one."""
    if password is None or callable(password):
        return password
    if isinstance(password, str | bytes):
        return password
    if isinstance(password, bytearray | memoryview):
        return bytes(password)
    raise TypeError(f"password must be str, bytes or a function returning one, not {type(password).__name__}")


def check_ciphers(ciphers: object) -> str | None:
    """Validate a cipher list; ``,`` or ``:`` separated.  ``None`` or ``""`` clears it."""
    if ciphers is None:
        return None
    if not isinstance(ciphers, str):
        raise TypeError(f"ciphers must be a str, not {type(ciphers).__name__}")
    names = [name.strip() for name in ciphers.replace(",", ":").split(":")]
    joined = ":".join(name for name in names if name)
    return joined or None


def check_verify(verify_peer: object, verify_issuer: object) -> tuple[bool, bool]:
    for argument, value in (("verify_peer", verify_peer), ("verify_issuer", verify_issuer)):
        if not isinstance(value, bool | int):
            raise TypeError(f"{argument} must be a bool, not {type(value).__name__}")
    return bool(verify_peer), bool(verify_issuer)


def check_alpn(protocols: object) -> tuple[str, ...] | None:
    """Validate ALPN protocol names: one ``str`` or an iterable of them."""
    if protocols is None:
        return None
    names: list[object] = [protocols] if isinstance(protocols, str) else list(protocols)  # type: ignore[call-overload]
    result = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"protocols must be str names, not {type(name).__name__}")
        try:
            encoded = name.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"protocol name {name!r} must be ASCII") from None
        if not 1 <= len(encoded) <= 255:
            raise ValueError(f"protocol name {name!r} must be 1 to 255 bytes long")
        result.append(name)
    if not result:
        raise ValueError("protocols must name at least one protocol (None for no ALPN)")
    return tuple(result)


# ----------------------------------------------------------------------
# Module defaults
# ----------------------------------------------------------------------


def set_default_certs(
    key: CertSource | None = None,
    cert: CertSource | None = None,
    authority: CertSource | None = None,
    revoke: CertSource | None = None,
    *,
    password: Password | None = None,
) -> None:
    """Set the key, certificate, authority and revocation list that sockets use
    when they set none themselves (Ioto's ``rSetSocketDefaultCerts``).

    Each is a PEM file path or PEM bytes; ``None`` leaves that default as it
    is.  The default authority is for clients only: a listener that verifies
    client certificates needs its own ``authority`` (as in Ioto).  Defaults are
    read when a socket connects or listens, and do not by themselves make a
    socket TLS.

    *password* unlocks an encrypted key: ``str``, ``bytes``, or a function
    returning one (called when a context is built; its result is not kept).
    It is the default for sockets that give none.  Without one, an encrypted
    key is a :class:`TLSError` naming the file, never a prompt.
    """
    global _defaults
    changes: dict[str, object] = {
        name: check_source(value, name)
        for name, value in (("key", key), ("cert", cert), ("authority", authority), ("revoke", revoke))
        if value is not None
    }
    if password is not None:
        changes["password"] = check_password(password)
    _defaults = _defaults.replace(**changes)


def set_default_ciphers(ciphers: str | None) -> None:
    """Set the cipher list sockets use when they set none (``rSetSocketDefaultCiphers``).

    An OpenSSL cipher string, ``,`` or ``:`` separated; ``None`` or ``""``
    restores OpenSSL's defaults.
    """
    global _defaults
    _defaults = _defaults.replace(ciphers=check_ciphers(ciphers))


def set_default_verify(verify_peer: bool, verify_issuer: bool) -> None:
    """Set how clients verify servers when a socket does not say
    (``rSetSocketDefaultVerify``).  Initially both true.

    Listeners ignore this default: they ask for client certificates only when
    ``set_verify(True, ...)`` is called on them.
    """
    global _defaults
    verify_peer, verify_issuer = check_verify(verify_peer, verify_issuer)
    _defaults = _defaults.replace(verify_peer=verify_peer, verify_issuer=verify_issuer)


def reset_defaults() -> None:
    """Restore the module defaults as at import (for tests)."""
    global _defaults
    _defaults = TLSSettings(verify_peer=True, verify_issuer=True)


# ----------------------------------------------------------------------
# Building contexts
# ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSContext:
    """A built context, and whether it forgives the issuer
    (``verify_issuer=False``): OpenSSL then verifies nothing, and
    :func:`check_peer` must decide after a client's handshake."""

    context: ssl.SSLContext
    forgives_issuer: bool


@dataclass(frozen=True, slots=True)
class _Resolved:
    """Settings with the defaults filled in: what a context is built from."""

    server: bool
    key: CertSource | None
    cert: CertSource | None
    authority: CertSource | None
    revoke: CertSource | None
    ciphers: str | None
    verify_peer: bool
    verify_issuer: bool
    alpn: tuple[str, ...] | None
    ktls: bool
    #: The password, or an _Identity around a password function.
    password: str | bytes | _Identity | None


@dataclass(frozen=True, slots=True, eq=False)
class _Identity:
    """A password function in the cache key: equal only to itself, and kept
    alive by the cache so that its id is not reused (its result is never kept)."""

    function: Callable[[], str | bytes | bytearray]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.function is self.function

    def __hash__(self) -> int:
        return id(self.function)


_cache: dict[tuple[object, ...], TLSContext] = {}


def _resolve(settings: TLSSettings, server: bool) -> _Resolved:
    defaults = _defaults

    def pick(own: CertSource | None, default: CertSource | None) -> CertSource | None:
        return own if own is not None else default

    if server:
        # A listener verifies clients only when told to, on the listener
        # itself, and only against its own authority (Ioto's rule).
        verify_peer = bool(settings.verify_peer)
        verify_issuer = True if settings.verify_issuer is None else settings.verify_issuer
        authority = settings.authority
    else:
        verify_peer = bool(pick(settings.verify_peer, defaults.verify_peer))  # type: ignore[arg-type]
        verify_issuer = bool(pick(settings.verify_issuer, defaults.verify_issuer))  # type: ignore[arg-type]
        authority = pick(settings.authority, defaults.authority)
    return _Resolved(
        server=server,
        key=pick(settings.key, defaults.key),
        cert=pick(settings.cert, defaults.cert),
        authority=authority,
        revoke=pick(settings.revoke, defaults.revoke),
        ciphers=settings.ciphers if settings.ciphers is not None else defaults.ciphers,
        verify_peer=verify_peer,
        verify_issuer=verify_issuer,
        alpn=settings.alpn,
        ktls=bool(settings.ktls),
        password=_password_key(settings.password if settings.password is not None else defaults.password),
    )


def _password_key(password: Password | None) -> str | bytes | _Identity | None:
    if callable(password):
        return _Identity(password)
    if isinstance(password, bytearray):
        return bytes(password)
    return password


def _stamp(source: CertSource | None) -> object:
    """What changes when a file changes; the bytes themselves otherwise."""
    if source is None or isinstance(source, bytes):
        return source
    try:
        info = os.stat(source)
    except OSError:
        return (source, None)
    return (source, info.st_mtime_ns, info.st_size)


def client_context(settings: TLSSettings) -> TLSContext:
    """The context a client connects with.

    Raises:
      TLSError: a file cannot be read or parsed, the key does not match the
        certificate, or the cipher string selects nothing.
    """
    if settings.context is not None:
        if settings.context.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise TLSError("set_ssl_context gave a server context (PROTOCOL_TLS_SERVER) to a client socket")
        return TLSContext(settings.context, forgives_issuer=False)
    return _cached(_resolve(settings, server=False))


def server_context(settings: TLSSettings, *, upgrade: bool = False) -> ssl.SSLContext:
    """The context a listener accepts with (call it before binding), or, with
    *upgrade*, the one a server-side socket's ``upgrade_tls`` handshakes with.

    Raises:
      TLSError: no certificate, a file cannot be read or parsed, the key does
        not match the certificate, or the cipher string selects nothing.
    """
    if settings.context is not None:
        if settings.context.protocol == ssl.PROTOCOL_TLS_CLIENT:
            target = "a server-side socket upgrading to TLS" if upgrade else "a listening socket"
            raise TLSError(f"set_ssl_context gave a client context (PROTOCOL_TLS_CLIENT) to {target}")
        return settings.context
    resolved = _resolve(settings, server=True)
    if resolved.cert is None and resolved.key is None:
        who = "A server-side socket upgrading to TLS" if upgrade else "A TLS listener"
        raise TLSError(f"{who} needs a certificate and key: call set_certs(key=..., cert=...)")
    return _cached(resolved).context


def _cached(resolved: _Resolved) -> TLSContext:
    key = (resolved, *(_stamp(source) for source in (resolved.key, resolved.cert, resolved.authority, resolved.revoke)))
    found = _cache.get(key)
    if found is None:
        found = _build(resolved)
        if len(_cache) >= _CACHE_SIZE:
            del _cache[next(iter(_cache))]
        _cache[key] = found
    return found


def _build(resolved: _Resolved) -> TLSContext:
    server = resolved.server
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    # Ioto refuses SSLv3, TLS 1.0 and 1.1; so does Python's default, said here.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A listener refuses a client's TLS 1.2 renegotiation (OpenSSL 3's
    # default, said here): a handshake a client can start at will costs the
    # server, and nothing here needs it.  A client answers a server's (one
    # asking for a client certificate, say), as trio's SSLStream does.
    if server:
        context.options |= ssl.OP_NO_RENEGOTIATION
    forgives_issuer = False
    if resolved.cert is not None:
        _load_chain(context, resolved.cert, resolved.key, resolved.password)
    elif resolved.key is not None:
        raise TLSError(f"A key was given ({_name(resolved.key, 'key')}) without a certificate")
    if resolved.ciphers:
        _set_ciphers(context, resolved.ciphers)
    if resolved.ktls and KTLS_OPTION:
        context.options |= KTLS_OPTION
    if resolved.alpn:
        context.set_alpn_protocols(list(resolved.alpn))

    if server:
        if resolved.verify_peer:
            if not resolved.verify_issuer:
                raise TLSError(
                    "A listener cannot accept client certificates from unknown issuers (verify_issuer=False): "
                    "put the client's certificate, or its issuer, in authority"
                )
            context.verify_mode = ssl.CERT_REQUIRED
            _load_trust(context, resolved, ssl.Purpose.CLIENT_AUTH)
        else:
            context.verify_mode = ssl.CERT_NONE
    elif resolved.verify_peer and resolved.verify_issuer:
        context.check_hostname = True
        # OpenSSL's common-name fallback (no DNS names in the certificate),
        # as check_peer has it too; Python's default, said here.
        context.hostname_checks_common_name = True
        context.verify_mode = ssl.CERT_REQUIRED
        _load_trust(context, resolved, ssl.Purpose.SERVER_AUTH)
    else:
        # verify_issuer=False: OpenSSL verifies nothing and check_peer decides
        # afterwards, as full verification would, issuer aside.
        # verify_peer=False: nothing at all.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        forgives_issuer = resolved.verify_peer
    return TLSContext(context, forgives_issuer)


def _name(source: CertSource, what: str) -> str:
    return f"({what} given as PEM bytes)" if isinstance(source, bytes) else str(source)


def _read(source: CertSource, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        with open(source, "rb") as file:
            return file.read()
    except OSError as exc:
        raise TLSError(f"Unable to read {what} {source}: {exc.strerror}", exc.errno) from exc


@contextlib.contextmanager
def _as_files(*sources: CertSource) -> Iterator[list[str]]:
    """Paths for *sources*: PEM bytes go to files in a private temporary
    directory (the :mod:`ssl` module loads chains and CRLs only from files),
    removed as soon as they are loaded."""
    if not any(isinstance(source, bytes) for source in sources):
        yield [str(source) for source in sources]
        return
    with tempfile.TemporaryDirectory(prefix="trio-rsocket-") as directory:
        paths = []
        for index, source in enumerate(sources):
            if isinstance(source, bytes):
                path = os.path.join(directory, f"{index}.pem")
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
                    file.write(source)
                paths.append(path)
            else:
                paths.append(str(source))
        yield paths


# The PEM labels OpenSSL reads a certificate chain from (PEM_read_bio_X509);
# cryptography reads the same two.
_CERTIFICATE_BEGINS: Final = (b"-----BEGIN CERTIFICATE-----", b"-----BEGIN X509 CERTIFICATE-----")


def _check_certificates(data: bytes, cert_name: str) -> None:
    """Read the certificates on their own, before OpenSSL loads them with
    the key, so that a bad certificate is not reported as a bad key.

    cryptography skips a block it cannot frame (one cut short at the end of
    the file, say) where OpenSSL fails the whole chain, so a file must give
    it as many certificates as it has certificate blocks.
    """
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSError(f"Unable to load certificate {cert_name}") from None
    if len(certificates) != sum(data.count(begin) for begin in _CERTIFICATE_BEGINS):
        raise TLSError(f"Unable to load certificate {cert_name}")


class _NoPassword(Exception):
    """OpenSSL asked for the password of a key that came without one."""


def _load_chain(
    context: ssl.SSLContext, cert: CertSource, key: CertSource | None, password: str | bytes | _Identity | None
) -> None:
    cert_name = _name(cert, "cert")
    _check_certificates(_read(cert, "certificate"), cert_name)
    key_name = cert_name if key is None else _name(key, "key")
    if key is not None:
        _read(key, "key")
    asked = False

    def unlock() -> str | bytes | bytearray:
        # Always a function: without one OpenSSL prompts on the terminal,
        # and the whole event loop waits for the answer.
        nonlocal asked
        asked = True
        if password is None:
            raise _NoPassword
        value = password.function() if isinstance(password, _Identity) else password
        if not isinstance(value, str | bytes | bytearray):
            raise TypeError(f"the password function returned {type(value).__name__}, not str or bytes")
        return value

    with _as_files(cert, key if key is not None else cert) as (cert_path, key_path):
        try:
            context.load_cert_chain(cert_path, key_path, password=unlock)
        except _NoPassword:
            raise TLSError(f"Private key {key_name} is encrypted: pass password=...") from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TLSError(
                    f"Check of private key file failed: {key_name} does not match certificate {cert_name}"
                ) from exc
            if asked:
                raise TLSError(f"Unable to decrypt private key {key_name}: wrong password") from exc
            if key is None:
                raise TLSError(f"Unable to load key from certificate {cert_name}: give key=") from exc
            raise TLSError(f"Unable to load key {key_name}") from exc
        except OSError as exc:  # a file vanished between the checks and the load
            raise TLSError(f"Unable to read certificate or key: {exc.strerror}", exc.errno) from exc


def _load_trust(context: ssl.SSLContext, resolved: _Resolved, purpose: ssl.Purpose) -> None:
    authority = resolved.authority
    if authority is None:
        context.load_default_certs(purpose)
    elif isinstance(authority, str) and os.path.isdir(authority):
        context.load_verify_locations(capath=authority)
    else:
        data = _read(authority, "certificate authority")
        try:
            context.load_verify_locations(cadata=data.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            raise TLSError(f"Unable to load certificate authority {_name(authority, 'authority')}") from None
    if resolved.revoke is not None:
        _load_revocation(context, resolved.revoke)


_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([^-\r\n]*)-----.*?-----END \1-----", re.DOTALL)


def _load_revocation(context: ssl.SSLContext, revoke: CertSource) -> None:
    """Load CRLs, and nothing else: OpenSSL would take certificates in the
    same file as trust anchors, so it is given only the CRLs, written out anew."""
    revoke_name = _name(revoke, "revoke")
    data = _read(revoke, "certificate revoke list")
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks or len(blocks) != data.count(b"-----BEGIN") or any(b[1] != b"X509 CRL" for b in blocks):
        raise TLSError(f"Cannot load certificate revoke list: {revoke_name} must hold PEM CRLs only")
    try:
        crls = [x509.load_pem_x509_crl(block[0]) for block in blocks]
    except ValueError:
        raise TLSError(f"Cannot load certificate revoke list: {revoke_name}") from None
    pem = b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in crls)
    with _as_files(pem) as (path,):
        try:
            context.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(f"Cannot load certificate revoke list: {revoke_name}") from exc
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _tls13_suites() -> frozenset[str]:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return frozenset(cipher["name"] for cipher in probe.get_ciphers() if cipher["protocol"] == "TLSv1.3")


def _set_ciphers(context: ssl.SSLContext, ciphers: str) -> None:
    """Ioto's setCiphers: TLS 1.3 suite names and TLS 1.2 cipher strings in one list.

    Python's :mod:`ssl` can restrict only TLS 1.2 and below; TLS 1.3 suite
    names are checked and accepted, and every TLS 1.3 suite stays enabled.
    """
    names = ciphers.split(":")
    suites = _tls13_suites()
    legacy = [name for name in names if not name.startswith("TLS_")]
    unknown = [name for name in names if name.startswith("TLS_") and name not in suites]
    if unknown:
        raise TLSError(f'Unable to define ciphers "{ciphers}": unknown TLS 1.3 suite {unknown[0]}')
    if legacy:
        try:
            context.set_ciphers(":".join(legacy))
        except ssl.SSLError:
            raise TLSError(f'Unable to define ciphers "{ciphers}"') from None
