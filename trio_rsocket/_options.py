"""The settings surface of an RSocket: socket options and TLS settings.

They are settings, not I/O: each setter checks its argument (a
:class:`TypeError` or :class:`ValueError` naming it, at once), keeps the value
on the socket so it outlives a connection, and applies it to the connection
there is now, if any.  :class:`Options` is a base class of
:class:`~trio_rsocket.RSocket`; the TLS settings themselves are immutable
:class:`~trio_rsocket._tls.TLSSettings`, turned into contexts by ``_tls``.
"""

from __future__ import annotations

import socket as stdlib_socket
import ssl
from typing import Protocol

from . import _secure, _tls
from ._arguments import MAX_LINGER, c_int_error
from ._plain import PlainConnection, apply_options
from ._state import State

__all__ = ["KeptSession", "Options"]


class _Resumable(Protocol):
    """What a client's TLS layer says of its session (as :class:`ssl.SSLSocket` does)."""

    @property
    def session(self) -> ssl.SSLSession | None: ...

    @property
    def session_reused(self) -> bool: ...


class KeptSession:
    """A client's last TLS session, kept by its socket to offer again.

    Offered by itself only to a handshake under the same ``peer``: the name
    the session's certificate was checked for (a resumed handshake has no
    certificate of its own to check, see ``_tls.check_name``), the port, and
    the context (the TLS settings: a session is good only with the context
    that made it).  ``peer`` is ``None`` when no name was checked
    (``verify_peer=False``, a context that checks no host name) or there is
    no port (a ``from_socket`` client): then it is kept for
    ``get_tls_session`` and offered by itself to nothing.

    Reading a connection's session copies it through its DER encoding (about
    0.1 ms), and on Python 3.11 leaks the copy (CPython gh-116810, about
    6.5 KB a read), so it is read at most once, when first wanted.  After a
    handshake that resumed, the session offered is kept instead: it resumes
    as well next time, and nothing is read; a session the server no longer
    takes means a full handshake, whose session is then read once.
    """

    __slots__ = ("_source", "peer")

    def __init__(self, source: ssl.SSLSession | _Resumable, peer: tuple[str, int, ssl.SSLContext] | None) -> None:
        #: The session, or the TLS layer of the connection to read it from.
        self._source = source
        self.peer = peer

    def session(self) -> ssl.SSLSession | None:
        """The session, read from its connection the first time."""
        source = self._source
        if isinstance(source, ssl.SSLSession):
            return source
        session = source.session
        if session is not None:
            self._source = session
        return session


class Options:
    """Socket options and TLS settings (a base class of RSocket)."""

    # What outlives a connection: options and TLS settings; a listener's
    # server context, built once by listen() and shared with every socket it
    # accepts.  (RSocket.__init__ sets them.)
    __slots__ = (
        "_linger",
        "_no_delay",
        "_server_side",
        "_server_tls_context",
        "_session",
        "_tls_settings",
    )
    _no_delay: bool | None
    _linger: int | None
    _tls_settings: _tls.TLSSettings | None
    _server_tls_context: ssl.SSLContext | None
    # The client's TLS session: one given to set_tls_session (offered to the
    # next handshake, whatever its peer), or the last connection's (offered
    # by itself only to the peer it was verified for).
    _session: ssl.SSLSession | KeptSession | None

    # Which side of its connection the socket is (accepted, or
    # from_socket(server_side=True)): the side a TLS upgrade plays.
    _server_side: bool

    # RSocket's, declared here for the type checker.
    _conn: PlainConnection | _secure.TLSConnection | None
    _state: State

    def _socket(self) -> stdlib_socket.socket:
        raise NotImplementedError

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        """Set a socket option on the OS socket, as :meth:`trio.SocketStream.setsockopt`.

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        try:
            self._socket().setsockopt(level, option, value)
        except (OverflowError, TypeError):
            error = c_int_error(level=level, option=option, value=value)
            if error is None:
                raise
            raise error from None

    def getsockopt(self, level: int, option: int, buffer_length: int = 0) -> int | bytes:
        """Read a socket option of the OS socket, as :meth:`trio.SocketStream.getsockopt`."""
        try:
            if buffer_length == 0:
                return self._socket().getsockopt(level, option)
            return self._socket().getsockopt(level, option, buffer_length)
        except OverflowError:
            error = c_int_error(level=level, option=option, buffer_length=buffer_length)
            if error is None:
                raise
            raise error from None

    def set_no_delay(self, enable: bool) -> None:
        """Turn Nagle's algorithm off (``True``, the default here) or on (``rSetSocketNoDelay``)."""
        if not isinstance(enable, bool | int):
            raise TypeError(f"enable must be a bool, not {type(enable).__name__}")
        self._no_delay = bool(enable)
        if self._conn is not None and self._state is State.OPEN:
            apply_options(self._conn.raw, self._no_delay, None)

    def set_linger(self, seconds: int) -> None:
        """Set SO_LINGER (``rSetSocketLinger``): close waits up to *seconds* to
        deliver unsent data; ``0`` makes close send a reset (RST) at once."""
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise TypeError(f"seconds must be an int, not {type(seconds).__name__}")
        if not 0 <= seconds <= MAX_LINGER:
            raise ValueError(f"seconds must be in 0..{MAX_LINGER}, not {seconds}")
        self._linger = seconds
        if self._conn is not None and self._state is State.OPEN:
            apply_options(self._conn.raw, self._no_delay, seconds)

    # ------------------------------------------------------------------
    # TLS
    # ------------------------------------------------------------------

    def _change_tls(self, **changes: object) -> None:
        settings = self._tls_settings if self._tls_settings is not None else _tls.TLSSettings()
        self._tls_settings = settings.replace(**changes)
        if self._state is not State.LISTENING:
            # A running listener keeps the context it started with.
            self._server_tls_context = None

    def set_certs(
        self,
        key: _tls.CertSource | None = None,
        cert: _tls.CertSource | None = None,
        authority: _tls.CertSource | None = None,
        revoke: _tls.CertSource | None = None,
        *,
        password: _tls.Password | None = None,
    ) -> None:
        """Set the TLS key, certificate, authority and revocation list
        (Ioto's ``rSetSocketCerts``, in the seed's argument order; keywords
        recommended).  Makes the socket TLS.

        Each is a PEM file path (``str`` or :class:`os.PathLike`) or the PEM
        text as ``bytes``; ``None`` leaves that setting as it was (falling
        back to :func:`trio_rsocket.set_default_certs`).  *key* defaults to
        *cert* (a file holding both).  *authority* holds the CA certificates
        that peers must chain to (a file, a directory of hashed certificates,
        or bytes); clients without one use the system store.  *revoke* holds
        certificate revocation lists (CRLs) and only ever adds CRLs.
        *password* unlocks an encrypted *key* (str, bytes, or a function
        returning one, as :meth:`ssl.SSLContext.load_cert_chain` takes it).

        Files are read when the socket connects or listens: a missing or bad
        file raises :class:`TLSError` there, naming it, before any connection
        is tried.  Settings changed while a socket is connected or listening
        take effect at the next ``connect`` or ``listen``.
        """
        sources = (("key", key), ("cert", cert), ("authority", authority), ("revoke", revoke))
        changes: dict[str, object] = {
            name: _tls.check_source(value, name) for name, value in sources if value is not None
        }
        if password is not None:
            changes["password"] = _tls.check_password(password)
        self._change_tls(**changes)

    def set_tls(self, *, ragged_eof: bool | None = None, ktls: bool | None = None) -> None:
        """Make the socket TLS (Ioto's ``rSetTls``: without arguments, the
        module defaults only), and set what Ioto's API has no words for;
        ``None`` leaves a setting as it was.

        *ragged_eof* true: a peer that closes the connection without TLS's
        close_notify reads as end of file, as Python's ``http.client`` and
        many HTTPS clients do after a complete exchange (trio's
        ``https_compatible``).  False, the default: such a read raises
        :class:`trio.BrokenResourceError`, since an attacker can cut a
        connection short and a truncation must not look like an end.

        *ktls* true: ask OpenSSL to hand the keys to the kernel (kTLS,
        ``ssl.OP_ENABLE_KTLS``), so :meth:`send_file` can send straight from
        the file.  Where Python (3.12 or later), OpenSSL (3.0 or later) or the
        kernel (its ``tls`` module) cannot, it changes nothing.
        """
        changes: dict[str, object] = {}
        for name, value in (("ragged_eof", ragged_eof), ("ktls", ktls)):
            if value is not None:
                if not isinstance(value, bool | int):
                    raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
                changes[name] = bool(value)
        self._change_tls(**changes)

    def _ragged_eof(self) -> bool:
        """Whether a peer's close without close_notify reads as end of file."""
        return bool(self._tls_settings is not None and self._tls_settings.ragged_eof)

    def set_ciphers(self, ciphers: str | None) -> None:
        """Choose the ciphers (``rSetSocketCiphers``): an OpenSSL cipher
        string, ``,`` or ``:`` separated; ``None`` or ``""`` for the default.
        Makes the socket TLS.  TLS 1.3 suite names are checked and accepted,
        but Python's :mod:`ssl` cannot restrict TLS 1.3 suites.  A string that
        selects no cipher raises :class:`TLSError` at connect or listen time.
        """
        self._change_tls(ciphers=_tls.check_ciphers(ciphers))

    def set_verify(self, verify_peer: bool, verify_issuer: bool) -> None:
        """Choose how the peer's certificate is verified (``rSetSocketVerify``).
        Makes the socket TLS.

        For a client (defaults: both true): *verify_peer* false checks
        nothing; *verify_issuer* false accepts a self-signed or unknown issuer
        and forgives nothing else (see the TLS guide).  For a listener:
        *verify_peer* true requires a client certificate that chains to this
        socket's *authority* (mutual TLS); false (the default) asks for none.
        """
        verify_peer, verify_issuer = _tls.check_verify(verify_peer, verify_issuer)
        self._change_tls(verify_peer=verify_peer, verify_issuer=verify_issuer)

    def set_alpn(self, protocols: str | list[str] | tuple[str, ...] | None) -> None:
        """Offer (client) or accept (listener) these ALPN protocols, most
        preferred first: one name (``"h2"``) or a list; ``None`` for none.
        Makes the socket TLS.  :meth:`get_alpn` says which was agreed."""
        self._change_tls(alpn=_tls.check_alpn(protocols))

    def set_ssl_context(self, context: ssl.SSLContext | None) -> None:
        """Use *context* as it is, for anything the TLS settings do not cover
        (the escape hatch); ``None`` goes back to the settings.  Makes the
        socket TLS.  A client needs a client context, a listener a server one;
        the client still sends *host* as SNI and, if the context checks
        hostnames, checks it.
        """
        if context is not None and not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext or None, not {type(context).__name__}")
        self._change_tls(context=context)

    def _ssl(self) -> _secure.TLSConnection | None:
        return self._conn if isinstance(self._conn, _secure.TLSConnection) else None

    def get_alpn(self) -> str | None:
        """The ALPN protocol agreed in the handshake, or ``None``."""
        ssl_stream = self._ssl()
        return ssl_stream.selected_alpn_protocol() if ssl_stream is not None else None

    def get_cipher(self) -> str | None:
        """The cipher in use (e.g. ``"TLS_AES_256_GCM_SHA384"``), or ``None``."""
        ssl_stream = self._ssl()
        cipher = ssl_stream.cipher() if ssl_stream is not None else None
        return cipher[0] if cipher else None

    def get_tls_version(self) -> str | None:
        """The TLS version in use (e.g. ``"TLSv1.3"``), or ``None``."""
        ssl_stream = self._ssl()
        return ssl_stream.version() if ssl_stream is not None else None

    def get_peer_certificate(self) -> bytes | None:
        """The peer's certificate in DER form, or ``None`` (plain TCP, no
        handshake yet, or a client that sent none).  Turn it into PEM with
        :func:`ssl.DER_cert_to_PEM_cert`, or read it with ``cryptography``."""
        ssl_stream = self._ssl()
        return ssl_stream.getpeercert(binary_form=True) if ssl_stream is not None else None

    def get_tls_session(self) -> ssl.SSLSession | None:
        """The client's TLS session, to resume with later (Ioto's
        ``rGetTlsSession``): the live one while connected (for a connection
        that resumed a session, the session it resumed), else the last one;
        ``None`` for none.  With TLS 1.3 the session ticket comes with the
        first data read, so read something before taking it."""
        ssl_stream = self._ssl()
        if ssl_stream is not None and not self._server_side and not ssl_stream.session_reused:
            return ssl_stream.session
        # A resumed connection's session is the one it was offered (kept by
        # _keep_session): reading the live one leaks a copy on Python 3.11.
        return self._saved_session()

    def _offered_session(self, tls: _tls.TLSContext, host: str | None, port: int | None) -> ssl.SSLSession | None:
        """The session to offer a client handshake with *host*:*port* under
        *tls*: one set with :meth:`set_tls_session`, or this socket's last
        one if it was verified for that very name, port and context."""
        kept = self._session
        if isinstance(kept, KeptSession):
            return kept.session() if kept.peer == (host, port, tls.context) else None
        return kept

    def _keep_session(
        self,
        layer: _Resumable,
        tls: _tls.TLSContext,
        host: str | None,
        port: int | None,
        offered: ssl.SSLSession | None,
    ) -> None:
        """Keep the session of a client handshake that just ended, with
        *host* checked under *tls*, after offering *offered* (see :class:`KeptSession`)."""
        checked = tls.context.check_hostname or tls.forgives_issuer
        peer = (host, port, tls.context) if checked and host is not None and port is not None else None
        self._session = KeptSession(offered if offered is not None and layer.session_reused else layer, peer)

    def _saved_session(self) -> ssl.SSLSession | None:
        kept = self._session
        return kept.session() if isinstance(kept, KeptSession) else kept

    def set_tls_session(self, session: ssl.SSLSession | None) -> None:
        """Offer *session* at the next :meth:`connect` (or client
        :meth:`upgrade_tls`), whatever its peer (Ioto's ``rSetTlsSession``);
        ``None`` offers none and forgets the session kept.  The name asked for
        is still checked against the session's certificate.  A socket that
        reconnects to the same host and port offers its last session by
        itself.  A session the server does not know just means a full
        handshake."""
        if session is not None and not isinstance(session, ssl.SSLSession):
            raise TypeError(f"session must be an ssl.SSLSession or None, not {type(session).__name__}")
        self._session = session

    def is_session_reused(self) -> bool:
        """Whether the TLS handshake resumed a session (``False`` for plain TCP)."""
        ssl_stream = self._ssl()
        return ssl_stream.session_reused if ssl_stream is not None else False
