"""Setup: the functions that make a connection part.

Theory of operation
-------------------
Each function here takes what the front decided (the settings, the names,
the contexts, already checked) and returns a finished part, or raises having
closed what it opened: :func:`connect` (resolve, connect, and the client
handshake when the socket is TLS), :func:`connect_unix`, :func:`client_upgrade` (a client's
STARTTLS over a plain part), and ``_secure.server_handshake`` for the server
side, which the listener and a server's ``upgrade_tls`` call as it is.

They keep no state and move none: the front (``_socket``) holds the setup
guard around them, moves the state, and decides, when one returns, whether a
``close`` or ``reset`` from another fiber came meanwhile (then it closes the
part it got back).  A client's TLS session is offered from, and kept in, the
socket's :class:`~trio_rsocket._options.SessionCache`.
"""

from __future__ import annotations

from . import _secure, _tls
from ._errors import RSocketError
from ._options import SessionCache, Settings
from ._plain import Connector, PlainConnection

__all__ = ["Part", "client_tls", "client_upgrade", "connect", "connect_unix"]

#: A connection part: what an open RSocket reads and writes through.
Part = PlainConnection | _secure.TLSConnection


async def connect(
    connector: Connector,
    host: str,
    port: int,
    happy_eyeballs_delay: float | None,
    settings: Settings,
    tls: _tls.TLSContext | None,
    sessions: SessionCache | None,
) -> Part:
    """Connect to *host*:*port* and, with *tls*, run the client handshake
    (offering a session from *sessions*, and keeping the new one there)."""
    raw = await connector.connect(host, port, happy_eyeballs_delay)
    try:
        plain = PlainConnection(raw, settings.no_delay, settings.linger)
    except BaseException:
        raw.close()
        raise
    if tls is None:
        return plain
    assert sessions is not None
    connector.hold(plain)  # a close() now wakes the handshake too
    try:
        return await client_upgrade(plain, tls, host, port, settings, sessions)
    except BaseException:
        plain.close()
        raise


async def connect_unix(connector: Connector, address: bytes, shown: str, settings: Settings) -> PlainConnection:
    """Connect to the Unix socket *address* (*shown* names it in messages)."""
    raw = await connector.connect_unix(address, shown)
    try:
        return PlainConnection(raw, settings.no_delay, settings.linger)
    except BaseException:
        raw.close()
        raise


def client_tls(settings: _tls.TLSSettings, host: str | None) -> _tls.TLSContext:
    """The context of a client's upgrade that checks *host*; the mistakes
    (no name to check, a setting that cannot be used) come out here, before
    anything is sent."""
    tls = _tls.client_context(settings)
    if host is None and (tls.context.check_hostname or tls.forgives_issuer):
        raise RSocketError("upgrade_tls(host=...) needs the name to check: this socket was not made by connect")
    return tls


async def client_upgrade(
    plain: PlainConnection,
    tls: _tls.TLSContext,
    host: str | None,
    port: int | None,
    settings: Settings,
    sessions: SessionCache,
) -> _secure.TLSConnection:
    """The client handshake over *plain* (after a connect, or STARTTLS):
    SNI and name check *host*, a session offered from *sessions* and the new
    one kept there.  The caller closes *plain* on failure."""
    offered = sessions.offered(tls, host, port)
    secure = await _secure.client_handshake(plain, tls, host, offered, ragged_eof=settings.ragged_eof)
    sessions.keep(secure, tls, host, port, offered)
    return secure
