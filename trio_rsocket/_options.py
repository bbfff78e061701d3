"""What an RSocket keeps across connections: its settings and its TLS sessions.

Theory of operation
-------------------
:class:`Settings` is one immutable value: the socket options, the TLS
settings (:class:`~trio_rsocket._tls.TLSSettings`, turned into contexts by
``_tls``), a listener's server context, and which side of its connection the
socket plays.  A setter on the RSocket checks its argument and puts a new
value in place of the old one; nothing here does I/O.  Values are shared,
never copied: every fresh socket starts from :data:`DEFAULT_SETTINGS`, and
every socket a listener accepts holds the one value that listener made at
``listen`` (with its server context), so an idle connection pays one
reference for all of it.

:class:`SessionCache` is a TLS client's memory of its last session (or of
the one given to ``set_tls_session``): which session to offer to the next
handshake, and to which peer.  Only a socket that made a TLS client
handshake, or was given a session, has one.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Final, Protocol

from . import _tls

__all__ = ["DEFAULT_SETTINGS", "SessionCache", "Settings"]


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The settings of a socket (see the module docstring); change one with :meth:`replace`."""

    #: TCP_NODELAY as the user set it (``None``: on, this package's default).
    no_delay: bool | None = None
    #: SO_LINGER in seconds, if set.
    linger: int | None = None
    #: The TLS settings; ``None`` for a plain socket.
    tls: _tls.TLSSettings | None = None
    #: A listener's server context, built once by ``listen`` and shared by
    #: every socket it accepts.
    server_context: ssl.SSLContext | None = None
    #: The socket is the server side of its connection (accepted, or
    #: ``from_socket(server_side=True)``): the side a TLS upgrade plays.
    server_side: bool = False
    #: What ``get_addr`` gives on a socket a Unix listener accepted: the
    #: listener's path.  The kernel knows such a socket by the temporary name
    #: the listener was bound to before its rename (``_unix``).
    local_name: tuple[str, int] | None = None

    def replace(self, **changes: object) -> Settings:
        """A copy with *changes*."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_tls(self, **changes: object) -> Settings:
        """A copy whose TLS settings have *changes* (a socket with none gets
        the module defaults first); a server context built from the old ones
        is dropped."""
        tls = self.tls if self.tls is not None else _tls.TLSSettings()
        return dataclasses.replace(self, tls=tls.replace(**changes), server_context=None)

    @property
    def ragged_eof(self) -> bool:
        """Whether a peer's close without close_notify reads as end of file."""
        return bool(self.tls is not None and self.tls.ragged_eof)


#: The settings of a socket nobody set anything on (shared by all of them).
DEFAULT_SETTINGS: Final = Settings()


class _Resumable(Protocol):
    """What a client's TLS layer says of its session (as :class:`ssl.SSLSocket` does)."""

    @property
    def session(self) -> ssl.SSLSession | None: ...

    @property
    def session_reused(self) -> bool: ...


# The peer of a session given by hand: offered to the next handshake, whatever its peer.
_ANY_PEER: Final = ("", -1, None)


class SessionCache:
    """A TLS client's session to offer again, and the peer it is for.

    A session the program gave (``set_tls_session``) is offered to the next
    handshake, whatever its peer.  One a handshake left is offered by itself
    only under the same ``peer``: the name the session's certificate was
    checked for (a resumed handshake has no certificate of its own to check,
    see ``_tls.check_name``), the port, and the context (the TLS settings: a
    session is good only with the context that made it).  The peer is
    ``None`` when no name was checked (``verify_peer=False``, a context that
    checks no host name) or there is no port (a ``from_socket`` client):
    then the session is kept for ``get_tls_session`` and offered by itself to
    nothing.

    Reading a connection's session copies it through its DER encoding (about
    0.1 ms), and on Python 3.11 leaks the copy (CPython gh-116810, about
    6.5 KB a read), so it is read at most once, when first wanted.  After a
    handshake that resumed, the session offered is kept instead: it resumes
    as well next time, and nothing is read; a session the server no longer
    takes means a full handshake, whose session is then read once.
    """

    __slots__ = ("_peer", "_source")

    def __init__(self) -> None:
        # The session, or the TLS layer of the connection to read it from.
        self._source: ssl.SSLSession | _Resumable | None = None
        self._peer: tuple[str, int, ssl.SSLContext | None] | None = None

    def set(self, session: ssl.SSLSession | None) -> None:
        """Offer *session* to the next handshake, whatever its peer (``None``: none)."""
        self._source, self._peer = session, _ANY_PEER

    def session(self) -> ssl.SSLSession | None:
        """The session kept, read from its connection the first time."""
        source = self._source
        if source is None or isinstance(source, ssl.SSLSession):
            return source
        session = source.session
        if session is not None:
            self._source = session
        return session

    def offered(self, tls: _tls.TLSContext, host: str | None, port: int | None) -> ssl.SSLSession | None:
        """The session to offer a client handshake with *host*:*port* under *tls*."""
        peer = self._peer
        if peer is _ANY_PEER or (peer is not None and peer == (host, port, tls.context)):
            return self.session()
        return None

    def keep(
        self,
        layer: _Resumable,
        tls: _tls.TLSContext,
        host: str | None,
        port: int | None,
        offered: ssl.SSLSession | None,
    ) -> None:
        """Keep the session of a client handshake that just ended, with *host*
        checked under *tls*, after offering *offered*."""
        checked = tls.context.check_hostname or tls.forgives_issuer
        self._peer = (host, port, tls.context) if checked and host is not None and port is not None else None
        self._source = offered if offered is not None and layer.session_reused else layer
