"""Listening: the listening socket, the accept loop, handler fibers, the socket limit.

Theory of operation
-------------------
:meth:`RSocket.listen` validates its arguments (:func:`check_listen_arguments`),
opens the listening socket here (:func:`open_listening_socket`: a new one,
or one this process inherited for that address, :mod:`._activation`), hands it to a
:class:`Listener` with the handler, the listener's shared settings and a
function that makes a server-side ``RSocket`` from a finished connection
part, and starts :meth:`Listener.serve` in the caller's nursery (or the
current runtime's).  ``serve`` opens one nursery of its own for the
connection fibers, so that :meth:`Listener.shutdown` can cancel every handler
still running with a single cancel scope instead of one per connection, and
runs the accept loop in it.

The accept path runs one way, as anyio's ``TLSListener`` does: the accept
loop calls ``accept()`` on the non-blocking stdlib socket straight away and
waits for readability only when nothing is queued; it takes up to
:data:`ACCEPT_BATCH` connections in a row before it yields, so a burst of
connections is taken in at the speed of the kernel while the handlers it
started still get to run.  Each connection becomes a plain part
(``_plain.PlainConnection``, the listener's options applied) and gets a
fiber that reads the PROXY protocol header (listeners made with
``proxy_protocol=True`` only, ``_proxy``), runs the server TLS handshake on
the part (TLS listeners only), both bounded by one handshake timeout, makes
the ``RSocket`` from the finished part, runs ``await handler(data, sock)``,
and closes the socket.  The
listener owns its listening socket and closes it itself, whether ``close``,
``shutdown`` or the enclosing nursery's cancellation stops it; the listening
``RSocket`` sees that in :attr:`Listener.closed` when next asked (nothing
here calls back up).

A listener tells :mod:`._activation` when its accept loop starts and ends
(once per listener, never per connection): a worker is ready when every
socket it inherited has an accept loop, and on SIGTERM it shuts down every
listener that runs.

Nothing a connection does stops the listener: an error setting its part up
(an option) is logged and the connection closed, a refused PROXY header (or
one from a peer not in *proxy_from*) and a failed handshake are logged as
warnings and dropped, a handler's exception (or a handler that
returned no awaitable) is logged, and accept errors that mean "out of
descriptors or memory" are logged and retried after
:data:`ACCEPT_RETRY_PAUSE` seconds (trio's ``serve_listeners`` does the same).
:class:`trio.Cancelled` always passes through.

Each connection is in one of two counts from accept on: in its TLS handshake
or PROXY header, or in its handler (plain TCP without headers goes straight
there), so that ``shutdown`` can tell the handlers it cancels from the
handshakes it cuts short.  A listener with neither TLS nor headers does no
work for them per connection: whether it has any is decided once.
"""

from __future__ import annotations

import errno as errno_codes
import inspect
import logging
import os
import reprlib
import socket as stdlib_socket
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar

import trio
from trio.lowlevel import checkpoint, wait_readable

from . import _proxy, _secure
from ._activation import adopt, serving_started, serving_stopped
from ._address import display_address, host_port, peer_text, unbracket
from ._arguments import check_seconds
from ._errors import ListenError
from ._options import Settings
from ._plain import PlainConnection, close_socket
from ._runtime import current_nursery
from ._setup import Part

__all__ = [
    "ACCEPT_BATCH",
    "ACCEPT_RETRY_PAUSE",
    "DEFAULT_SOCKET_LIMIT",
    "MAX_BACKLOG",
    "Listener",
    "ServerSocket",
    "bind_listening_socket",
    "check_listen_arguments",
    "get_socket_limit",
    "open_listening_socket",
    "set_socket_limit",
]

logger: Final = logging.getLogger("trio_rsocket")

#: Ioto's default bound on server-side sockets alive at once.
DEFAULT_SOCKET_LIMIT: Final = 1000
#: Connections accepted in a row before the accept loop yields to the handlers
#: it started: large enough to drain a burst cheaply, small enough that the
#: first handlers of the burst are not kept waiting.
ACCEPT_BATCH: Final = 32
#: Seconds to wait before accepting again after the process or the system ran
#: out of descriptors or memory (trio's ``serve_listeners`` uses the same).
ACCEPT_RETRY_PAUSE: Final = 0.1
#: The backlog when none is given: as long as the OS allows (it clamps this to
#: ``net.core.somaxconn``), trio's choice, so bursts of connects are not refused.
DEFAULT_BACKLOG: Final = 0xFFFF
#: The longest backlog ``listen()`` can be given (a C int); a longer one is
#: read as this, which the OS cuts down to its own bound as it does any other.
MAX_BACKLOG: Final = 2**31 - 1

# accept() errors that mean "out of resources": log, pause, retry.
_CAPACITY_ERRNOS: Final = frozenset({errno_codes.EMFILE, errno_codes.ENFILE, errno_codes.ENOBUFS, errno_codes.ENOMEM})
# accept() errors about one connection that died in the queue: skip it (trio's list).
_SKIPPABLE_ERRNOS: Final = frozenset(
    getattr(errno_codes, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno_codes, name)
)

# Errors setting options on an accepted socket that mean the peer already left.
_PEER_GONE_ERRNOS: Final = frozenset({errno_codes.ECONNRESET, errno_codes.ENOTCONN, errno_codes.EINVAL})

# The socket limit is process-wide (Ioto's is too): it bounds the server-side
# sockets alive across every listener, counted from accept until the
# connection's fiber has closed the socket.
_socket_limit = DEFAULT_SOCKET_LIMIT
_sockets_alive = 0


def set_socket_limit(limit: int) -> None:
    """Bound the server-side sockets alive at once, across all listeners (Ioto's
    ``rSetSocketLimit``).  The default is 1000.

    A connection accepted while *limit* sockets are alive is closed at once
    and a warning is logged; the listener keeps serving.  Lowering the limit
    closes nothing that is already open.
    """
    global _socket_limit
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    _socket_limit = limit


def get_socket_limit() -> int:
    """The bound set by :func:`set_socket_limit` (Ioto's ``rGetSocketLimit``)."""
    return _socket_limit


class ServerSocket(Protocol):
    """What the listener needs of the server-side socket it makes (an ``RSocket``)."""

    def is_secure(self) -> bool: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


DataT = TypeVar("DataT")
SocketT = TypeVar("SocketT", bound=ServerSocket)

#: ``await handler(data, sock)`` for each connection: any callable that
#: returns an awaitable, as trio takes it.  ``RSocket.listen`` fills in the
#: types (``sock`` is an ``RSocket``).
Handler: TypeAlias = Callable[[DataT, SocketT], Awaitable[object]]
#: Makes the server-side socket of a connection from its finished part, the
#: listener's settings and what its PROXY header said (``RSocket._accepted``).
MakeSocket: TypeAlias = Callable[[Part, Settings, _proxy.ProxyInfo | None], SocketT]


def check_listen_arguments(
    host: object,
    port: object,
    handler: object,
    nursery: object,
    backlog: object,
    reuse_port: object,
    handshake_timeout: object,
) -> tuple[str | None, trio.Nursery, int, float]:
    """Validate ``listen``'s arguments (before any I/O) and return the host
    to bind (an IPv6 address without the brackets it may come in), the
    nursery the listener will run in (*nursery*, or the current runtime's),
    the backlog to pass to the OS, and the handshake timeout as a float."""
    if host is not None and not isinstance(host, str):
        raise TypeError(f"host must be a str or None, not {type(host).__name__}")
    if host:
        host = unbracket(host)
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535 (0: any free port), not {port}")
    if not callable(handler):
        raise TypeError(f"handler must be an async function handler(data, sock), not {type(handler).__name__}")
    # Whether a callable is async cannot be told before calling it (a lambda
    # or functools.partial returning a coroutine, an object with an async
    # __call__): trio's rule is to call it and look at the result, and so
    # does each connection's fiber (_connection).
    if backlog is not None:
        if isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int or None, not {type(backlog).__name__}")
        if backlog < 1:
            raise ValueError(f"backlog must be at least 1, not {backlog}")
        # listen() takes a C int and the OS cuts it down to its own bound
        # anyway: a longer backlog is the longest there is, not an error.
        backlog = min(backlog, MAX_BACKLOG)
    if not isinstance(reuse_port, bool):
        raise TypeError(f"reuse_port must be a bool, not {type(reuse_port).__name__}")
    if reuse_port and not hasattr(stdlib_socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port=True needs SO_REUSEPORT, which this platform does not have")
    timeout = check_seconds(handshake_timeout, "handshake_timeout", allow_zero=False)
    if nursery is None:
        nursery = current_nursery("listen() without nursery=", ", or pass nursery=")
    elif not isinstance(nursery, trio.Nursery):
        raise TypeError(f"nursery must be a trio.Nursery or None, not {type(nursery).__name__}")
    return host, nursery, DEFAULT_BACKLOG if backlog is None else backlog, timeout


async def open_listening_socket(
    host: str | None, port: int, backlog: int | None, reuse_port: bool
) -> stdlib_socket.socket:
    """Bind and listen; return the non-blocking listening socket.

    ``None``/``""``: one dual-stack IPv6 socket on ``::`` (IPv4 arrives as
    IPv4-mapped addresses, so port 0 is one port for both), or IPv4
    ``0.0.0.0`` where the machine has no IPv6.  ``"localhost"``: 127.0.0.1.
    Any other name or address is resolved with trio and the first address
    bound; an IPv6 address listens on IPv6 only.

    A socket this process inherited for that address (socket activation, a
    worker's: :mod:`trio_rsocket._activation`) is adopted instead, as it is:
    *backlog* and *reuse_port* are what its binder chose.

    Raises :class:`ListenError` (errno kept) if the name does not resolve or
    the address cannot be bound.
    """
    inherited = adopt(host, port)
    if inherited is not None:
        await checkpoint()
        return inherited
    dual_stack = False
    address: Any
    if host:
        if host == "localhost":
            await checkpoint()
            family, address = stdlib_socket.AF_INET, ("127.0.0.1", port)
        else:
            try:
                found = await trio.socket.getaddrinfo(
                    host, port, type=stdlib_socket.SOCK_STREAM, flags=stdlib_socket.AI_PASSIVE
                )
            except (stdlib_socket.gaierror, UnicodeError) as exc:
                # UnicodeError: a name no DNS label can hold (over 63 characters, ...).
                raise ListenError(
                    f"Cannot find address of {host_port(host, port)}", getattr(exc, "errno", None)
                ) from exc
            family, _, _, _, address = found[0]
    else:
        await checkpoint()
        family, address, dual_stack = stdlib_socket.AF_INET6, ("::", port), True
    return _bind_or_fail(host, port, family, address, dual_stack, backlog, reuse_port)


def bind_listening_socket(host: str | None, port: int) -> stdlib_socket.socket:
    """:func:`open_listening_socket` outside trio, for a supervisor binding
    for its workers: the same addresses (names resolved by the blocking
    resolver), the default backlog, never an inherited socket."""
    dual_stack = False
    address: Any
    if not host:
        family, address, dual_stack = stdlib_socket.AF_INET6, ("::", port), True
    elif host == "localhost":
        family, address = stdlib_socket.AF_INET, ("127.0.0.1", port)
    else:
        try:
            found = stdlib_socket.getaddrinfo(
                host, port, type=stdlib_socket.SOCK_STREAM, flags=stdlib_socket.AI_PASSIVE
            )
        except (stdlib_socket.gaierror, UnicodeError) as exc:
            raise ListenError(f"Cannot find address of {host_port(host, port)}", getattr(exc, "errno", None)) from exc
        family, _, _, _, address = found[0]
    return _bind_or_fail(host, port, family, address, dual_stack, None, False)


def _bind_or_fail(
    host: str | None, port: int, family: int, address: Any, dual_stack: bool, backlog: int | None, reuse_port: bool
) -> stdlib_socket.socket:
    where = host_port(host or "*", port)
    if backlog is None:
        backlog = DEFAULT_BACKLOG
    try:
        return _bind(family, address, backlog, reuse_port, dual_stack)
    except OSError as exc:
        if dual_stack and exc.errno in (errno_codes.EAFNOSUPPORT, errno_codes.EADDRNOTAVAIL, errno_codes.ENOPROTOOPT):
            # No IPv6 here (or no dual-stack): all interfaces means all IPv4 ones.
            try:
                return _bind(stdlib_socket.AF_INET, ("0.0.0.0", port), backlog, reuse_port, False)
            except OSError as exc4:
                exc = exc4
        raise ListenError(f"Cannot bind/listen on {where}: {exc.strerror or exc}", exc.errno) from exc


def _bind(family: int, address: Any, backlog: int, reuse_port: bool, dual_stack: bool) -> stdlib_socket.socket:
    raw = stdlib_socket.socket(family, stdlib_socket.SOCK_STREAM)
    try:
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        if reuse_port:
            raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEPORT, 1)
        if family == stdlib_socket.AF_INET6:
            raw.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, not dual_stack)
        raw.bind(address)
        raw.listen(backlog)
        raw.setblocking(False)
    except BaseException:
        raw.close()
        raise
    return raw


class Listener(Generic[SocketT]):
    """The listening socket, accept loop and handler fibers of one listening ``RSocket``.

    Internal: users see it through the listening ``RSocket``'s ``close``,
    ``shutdown`` and ``statistics``.
    """

    def __init__(
        self,
        raw: stdlib_socket.socket,
        handler: Handler[Any, SocketT],
        data: object,
        settings: Settings,
        make_socket: MakeSocket[SocketT],
        handshake_timeout: float,
        proxy_from: _proxy.Trusted | None = None,
    ) -> None:
        self._raw = raw
        self._handler = handler
        self._data = data
        # Shared by every socket this listener makes; its server context
        # (None: plain TCP) is the one every handshake uses.
        self._settings = settings
        self._context = settings.server_context
        self._make_socket = make_socket
        self._handshake_timeout = handshake_timeout
        # Who may send PROXY headers; None: the listener takes none.
        self._proxy_from = proxy_from
        # Something to do between accept and the handler (a TLS handshake, a
        # PROXY header): decided once, not per connection.
        self._prepares = self._context is not None or proxy_from is not None
        self._task_name = getattr(handler, "__qualname__", None) or repr(handler)
        self._accept_scope = trio.CancelScope()
        self._handlers_scope: trio.CancelScope | None = None
        self._done = trio.Event()
        #: Accepting stopped, and the listening socket is closed.
        self.closed = False
        #: Connections accepted, including those rejected by the socket limit.
        self.accepted = 0
        #: Connection fibers (handshake + handler) running now.
        self.active = 0
        #: Connections closed at once because the socket limit was reached.
        self.rejected = 0
        #: Handlers that ended with an exception, or returned no awaitable.
        self.handler_errors = 0
        #: TLS handshakes (and PROXY headers) cancelled by :meth:`shutdown`
        #: (their handlers never ran).
        self.handshakes_cancelled = 0
        #: Connections closed for their PROXY header: from a peer not in
        #: *proxy_from*, malformed, too long, late, or cut short.
        self.proxy_refused = 0
        # Connection fibers in their TLS handshake (or PROXY header), and in their handler, now
        # (counted from accept, so a fiber not started yet is in one of them;
        # neither counts one closing its socket after the handler).
        self._handshaking = 0
        self._in_handler = 0

    @property
    def socket(self) -> stdlib_socket.socket:
        """The listening socket."""
        return self._raw

    def close(self) -> None:
        """Stop accepting and close the listening socket (the port is free
        again); running handlers go on.  Idempotent."""
        self.closed = True
        self._accept_scope.cancel()
        close_socket(self._raw)

    def start(self, nursery: trio.Nursery) -> None:
        """Run :meth:`serve` in *nursery*; closed if the nursery takes no new fiber."""
        try:
            where = host_port(*display_address(self._raw.getsockname()))
            nursery.start_soon(self.serve, name=f"trio_rsocket listener {where}")
        except BaseException:
            self.close()
            raise

    async def serve(self) -> None:
        """Accept until closed or cancelled, then wait for the handlers."""
        try:
            async with trio.open_nursery() as handlers:
                self._handlers_scope = handlers.cancel_scope
                try:
                    with self._accept_scope:
                        # Once per listener: a worker is ready when every
                        # socket it inherited has an accept loop.
                        serving_started(self)
                        await self._accept_loop(handlers)
                finally:
                    self.close()
        finally:
            serving_stopped(self)
            self._done.set()

    async def shutdown(self, grace: float | None) -> int:
        """Stop accepting, wait up to *grace* seconds for the connections,
        cancel the rest; return how many *handlers* were cancelled.

        Connections still in their TLS handshake are cancelled too, but their
        handlers never ran: they are counted in :attr:`handshakes_cancelled`,
        not in the result.
        """
        self.close()
        if grace is None:
            await self._done.wait()
            return 0
        with trio.move_on_after(grace):
            await self._done.wait()
            return 0
        cancelled = self._in_handler
        self.handshakes_cancelled += self._handshaking
        if self._handlers_scope is not None:
            self._handlers_scope.cancel()
        await self._done.wait()
        return cancelled

    async def _accept_loop(self, handlers: trio.Nursery) -> None:
        global _sockets_alive
        raw = self._raw
        start = handlers.start_soon
        prepares = self._prepares
        in_a_row = 0
        while True:
            try:
                client, address = raw.accept()
            except BlockingIOError:
                in_a_row = 0
                try:
                    await wait_readable(raw)
                except trio.ClosedResourceError:
                    return
                continue
            except OSError as exc:
                if self.closed or exc.errno in (errno_codes.EBADF, errno_codes.EINVAL, errno_codes.ENOTSOCK):
                    return
                await self._accept_failed(exc)
                continue
            self.accepted += 1
            if _sockets_alive >= _socket_limit:
                client.close()
                self.rejected += 1
                logger.warning(
                    "Too many sockets (the socket limit is %d): closed the connection from %s",
                    _socket_limit,
                    peer_text(address),
                )
            else:
                part = self._set_up(client, address)
                if part is not None:
                    if prepares:
                        self._handshaking += 1
                    else:
                        self._in_handler += 1
                    self.active += 1
                    _sockets_alive += 1
                    start(self._serve_connection, part, address, name=self._task_name)
            in_a_row += 1
            if in_a_row >= ACCEPT_BATCH:
                in_a_row = 0
                await checkpoint()

    def _set_up(self, client: stdlib_socket.socket, address: Any) -> PlainConnection | None:
        """The part for *client*, with the listener's options, or ``None``
        (logged, *client* closed) if setting it up failed: whatever one
        connection does, the accept loop goes on."""
        try:
            return PlainConnection(client, self._settings.no_delay, self._settings.linger)
        except OSError as exc:
            client.close()
            if exc.errno in _PEER_GONE_ERRNOS:
                # Reset by the peer before we could set it up: nothing to serve.
                logger.debug("Dropped the connection from %s: %s", peer_text(address), exc)
            else:
                logger.error("Cannot set up the connection from %s: %s", peer_text(address), exc, exc_info=exc)
        except Exception as exc:
            # An option that cannot be applied, or a bug: the same for every
            # connection, so loud, with the traceback.
            client.close()
            logger.error("Cannot set up the connection from %s: %s", peer_text(address), exc, exc_info=exc)
        return None

    async def _accept_failed(self, exc: OSError) -> None:
        if exc.errno in _CAPACITY_ERRNOS:
            logger.error(
                "accept() failed with %s (%s); retrying in %s seconds",
                errno_codes.errorcode.get(exc.errno, exc.errno),
                os.strerror(exc.errno),
                ACCEPT_RETRY_PAUSE,
            )
            await trio.sleep(ACCEPT_RETRY_PAUSE)
        elif exc.errno in _SKIPPABLE_ERRNOS:
            await checkpoint()
        else:
            raise ListenError(f"Cannot accept connections: {exc.strerror or exc}", exc.errno) from exc

    async def _serve_connection(self, part: Part | None, address: Any) -> None:
        """One connection's fiber: header and handshake, the socket, handler, close."""
        global _sockets_alive
        sock = None
        try:
            if self._prepares:
                # None (logged) if the PROXY header or the handshake failed.
                sock = await self._prepare(part, address)
                if sock is None:
                    return
                # No checkpoint from the handshake to the handler, so shutdown
                # always finds this connection in one count or the other.
                self._in_handler += 1
            else:
                assert part is not None
                sock = self._make_socket(part, self._settings, None)
            try:
                # Called and checked here, not in a helper: every frame a
                # waiting fiber holds costs memory on every idle connection.
                pending = self._handler(self._data, sock)
                if type(pending) is CoroutineType or inspect.isawaitable(pending):
                    await pending
                else:
                    await self._not_awaitable(pending, address)
            finally:
                self._in_handler -= 1
        except* trio.BrokenResourceError as group:
            # The peer reset the connection, or closed TLS without
            # close_notify (as Ioto's rCloseSocket, Python's http.client and
            # many HTTPS clients do after a complete exchange: DEBUG): the
            # peer's doing, not a fault in the handler, so one line and no traceback.
            logger.log(
                logging.DEBUG if isinstance(group.exceptions[0], _secure.RaggedCloseError) else logging.WARNING,
                "The connection from %s broke: %s",
                peer_text(address),
                group.exceptions[0],
            )
        except* Exception as group:
            self.handler_errors += 1
            logger.error(
                "Handler %s for the connection from %s failed",
                self._task_name,
                peer_text(address),
                # No local for it: every name this frame has costs memory on every idle connection.
                exc_info=group.exceptions[0] if len(group.exceptions) == 1 else group,
            )
        finally:
            try:
                if sock is None:
                    pass  # the handshake failed, or was cancelled: its part is closed
                # Asked at the end: a handler may have made it TLS
                # (upgrade_tls), and a TLS connection ends with close_notify.
                elif sock.is_secure():
                    await self._close_secure(sock)
                else:
                    sock.close()
            finally:
                self.active -= 1
                _sockets_alive -= 1

    async def _not_awaitable(self, result: object, address: Any) -> None:
        """The handler returned *result*, not an awaitable (a plain function,
        say): a handler error, logged without a traceback (there is none to
        show), and the connection is closed."""
        self.handler_errors += 1
        logger.error(
            "Handler %s for the connection from %s returned %s, not an awaitable: is it an async function?",
            self._task_name,
            peer_text(address),
            reprlib.repr(result),
        )
        await checkpoint()

    async def _prepare(self, part: Part | None, address: Any) -> SocketT | None:
        """The PROXY header (if the listener takes them), then the server TLS
        handshake (if it is a TLS listener) on *part*, both within one
        handshake timeout and counted among the handshakes while they run;
        the socket for the handler, or ``None`` (logged, *part* closed) if
        either failed or was cancelled."""
        assert isinstance(part, PlainConnection)
        finished: Part | None = None
        # What the header said; or the bytes of it taken so far.
        proxy: _proxy.ProxyInfo | bytes | None = None
        try:
            if self._proxy_from is not None:
                # Behind a balancer the header has usually come by now: taken
                # before the cancel scope, which would cost more than the rest
                # of this path, and which a plain listener then never opens.
                proxy = self._take_proxy_header(part, address)
                if proxy is None:
                    return None
                if self._context is None and type(proxy) is _proxy.ProxyInfo:
                    finished = part
                    return self._make_socket(part, self._settings, proxy)
            with trio.move_on_after(self._handshake_timeout):
                if type(proxy) is bytes:
                    proxy = await self._read_proxy_header(part, address, proxy)
                    if proxy is None:
                        return None
                assert not isinstance(proxy, bytes)
                if self._context is None:
                    finished = part
                else:
                    try:
                        finished = await _secure.server_handshake(
                            part, self._context, ragged_eof=self._settings.ragged_eof
                        )
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
                        logger.warning("TLS handshake with %s failed: %s", peer_text(address), exc)
                        return None
                return self._make_socket(finished, self._settings, proxy)
            if type(proxy) is bytes:
                self._refuse_proxy(address, f"no PROXY header within {self._handshake_timeout:g} seconds")
            else:
                logger.warning(
                    "TLS handshake with %s did not finish within %s seconds",
                    peer_text(address),
                    self._handshake_timeout,
                )
            return None
        finally:
            self._handshaking -= 1
            if finished is None:
                part.close()

    def _take_proxy_header(self, part: PlainConnection, address: Any) -> _proxy.ProxyInfo | bytes | None:
        """The PROXY header at the start of *part*, or what has come of it,
        if its peer may send one; ``None`` (logged and counted) if not, or if
        the header was refused."""
        assert self._proxy_from is not None
        if address not in self._proxy_from:
            self._refuse_proxy(address, "not in proxy_from")
            return None
        try:
            return _proxy.take_header(part.raw)
        except _proxy.ProxyHeaderError as exc:
            self._refuse_proxy(address, str(exc))
            return None

    async def _read_proxy_header(self, part: PlainConnection, address: Any, header: bytes) -> _proxy.ProxyInfo | None:
        """The rest of the PROXY header at the start of *part*, of which
        *header* has come; ``None`` (logged and counted) if it was refused."""
        try:
            return await _proxy.read_header(part.raw, header)
        except _proxy.ProxyHeaderError as exc:
            self._refuse_proxy(address, str(exc))
            return None

    def _refuse_proxy(self, address: Any, why: str) -> None:
        self.proxy_refused += 1
        logger.warning("Refused the connection from %s: PROXY protocol: %s", peer_text(address), why)

    async def _close_secure(self, sock: SocketT) -> None:
        # close_notify first, but never wait on a peer that does not read for
        # longer than a handshake may take; aclose closes the socket regardless.
        with trio.move_on_after(self._handshake_timeout):
            await sock.aclose()
        sock.close()
