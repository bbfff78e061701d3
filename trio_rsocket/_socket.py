"""RSocket: Ioto's socket object on trio.

Theory of operation
-------------------
An :class:`RSocket` owns at most one connected OS socket.  For plain TCP it
drives that socket itself, with the same non-blocking sandwich trio's own
socket layer uses (``checkpoint_if_cancelled`` → try the call →
``wait_readable``/``wait_writable`` only when it would block →
``cancel_shielded_checkpoint`` when it did not), but without the layers of
:class:`trio.SocketStream` in between.  That is what lets ``write`` count
exactly how many bytes reached the kernel when its deadline passes (trio's
``send_all`` cannot say), lets ``read_into`` receive straight into the
caller's buffer, and keeps the hot paths short.  For TLS, the bytes go through
a :class:`trio.SSLStream` over a :class:`trio.SocketStream` of the same OS
socket.  :attr:`RSocket.stream` hands out the trio stream for code that wants
one.

State rules (Ioto's flags, written down):

* *fresh*: no OS socket; ``get_handle() == -1``; not closed, not EOF.
* *connected*: ``connect`` (or an accept) attached an OS socket.
* *EOF*: a read returned end of file, or ``disconnect``/``close`` ran.
* *closed*: ``close``/``aclose`` ran; every I/O call raises
  :class:`trio.ClosedResourceError`.  ``reset`` (or a new ``connect``) makes
  the socket fresh again, keeping its options and TLS settings.

Reads are served from ``_buffer`` first: bytes that ``read_until`` or
``read_exactly`` pulled in but did not return, and bytes a read stopped by its
deadline had already taken.  Nothing the peer sent is ever dropped.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import math
import os
import socket as stdlib_socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    wait_readable,
    wait_writable,
)

from . import _listen, _tls
from ._deadline import Deadline, check_deadline
from ._errors import (
    ConnectError,
    DeadlineError,
    IncompleteReadError,
    ListenError,
    RSocketError,
    TLSError,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["DEFAULT_READ_SIZE", "RSocket", "SocketStatistics"]

#: How many bytes ``read`` asks for when not told (trio's default too).
DEFAULT_READ_SIZE: Final = 65536

# errnos that mean "this descriptor is gone": trio's convention turns them into
# ClosedResourceError; every other OSError on an open stream means the peer or
# the network broke it.
_CLOSED_ERRNOS: Final = frozenset({errno_codes.EBADF, errno_codes.ENOTSOCK})
# connect_ex() on a non-blocking socket: the handshake is under way.
_CONNECT_PENDING: Final = frozenset({errno_codes.EINPROGRESS, errno_codes.EAGAIN, errno_codes.EWOULDBLOCK})
_NUMERIC_ONLY: Final = stdlib_socket.AI_NUMERICHOST | stdlib_socket.AI_NUMERICSERV


@dataclass(frozen=True, slots=True)
class SocketStatistics:
    """Counters returned by :meth:`RSocket.statistics`.

    The first two count this socket's own traffic; the rest are non-zero only
    on a listening socket and count the connections it accepted.
    """

    #: Bytes returned to the program by reads.
    bytes_read: int = 0
    #: Bytes handed to the kernel (or TLS layer) by writes.
    bytes_written: int = 0
    #: Connections accepted (including those rejected by the socket limit).
    accepted: int = 0
    #: Handler fibers running now.
    active: int = 0
    #: Connections closed at once because the socket limit was reached.
    rejected: int = 0
    #: Handlers that ended with an exception (logged, never fatal).
    handler_errors: int = 0


def _check_max_bytes(max_bytes: object, argument: str = "max_bytes") -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"{argument} must be an int, not {type(max_bytes).__name__}")
    if max_bytes < 1:
        raise ValueError(f"{argument} must be at least 1, not {max_bytes}")
    return max_bytes


def _check_host(host: object) -> str:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if not host:
        raise ValueError("host must not be empty")
    return host


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, not {port}")
    return port


def _writable_view(buffer: object) -> memoryview:
    if type(buffer) is bytearray and buffer:
        # The common case passes every check below by construction.
        return memoryview(buffer)
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"buffer must be a writable bytes-like object (bytearray, memoryview, array), not {type(buffer).__name__}"
        ) from None
    if view.readonly:
        raise TypeError(f"buffer must be writable, but this {type(buffer).__name__} is read-only")
    if not view.c_contiguous:
        raise TypeError("buffer must be C-contiguous")
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    if not view.nbytes:
        raise ValueError("buffer must not be empty (a 0-byte read could not be told from EOF)")
    return view


def _data_view(data: object, argument: str = "data") -> memoryview:
    if isinstance(data, str):
        raise TypeError(f"{argument} must be bytes-like, not str: encode it first")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{argument} must be bytes-like, not {type(data).__name__}") from None
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    return view


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The one place that turns an OSError on an open stream into trio's error."""
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


def _where(host: str, port: int) -> str:
    """``host:port`` for messages, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _connect_to(raw: stdlib_socket.socket, address: Any) -> None:
    """Connect the non-blocking *raw* to *address*: a checkpoint, cancellable
    while the handshake is in flight (the caller closes *raw* then)."""
    raw.setblocking(False)
    await checkpoint_if_cancelled()
    code = raw.connect_ex(address)
    if code == 0:
        await cancel_shielded_checkpoint()
        return
    if code not in _CONNECT_PENDING:
        raise OSError(code, os.strerror(code))
    await wait_writable(raw)
    code = raw.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ERROR)
    if code != 0:
        raise OSError(code, os.strerror(code))


class RSocket(trio.abc.HalfCloseableStream):
    """A socket with Ioto's API: straight-line calls, absolute deadlines.

    ``RSocket()`` makes an unconnected socket (Ioto's ``rAllocSocket``).
    Connect it with :meth:`connect`, or make it a server with :meth:`listen`.
    It is a :class:`trio.abc.HalfCloseableStream`, so anything in the trio
    world that takes a stream takes an ``RSocket``; ``async with RSocket() as
    s:`` closes it on exit.

    Every async method is a trio checkpoint, even when it can complete at once.
    """

    def __init__(self) -> None:
        # The OS socket, its trio wrapper, and the trio stream handed out by
        # .stream (made lazily for plain TCP, at handshake time for TLS).
        self._raw: stdlib_socket.socket | None = None
        # The OS socket a connect() is trying, until it is attached; and
        # whether a connect() is under way at all (a second one is refused).
        self._connecting: stdlib_socket.socket | None = None
        self._connect_busy = False
        self._trio_socket: trio.socket.SocketType | None = None
        self._stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        self._ssl: trio.SSLStream[trio.SocketStream] | None = None
        self._buffer = bytearray()
        self._eof = False
        self._closed = False
        self._sent_eof = False
        self._error = ""
        self._reading = False
        self._writing = False
        # Bytes of the current write that reached the kernel; read back when
        # the write's deadline passes.
        self._write_progress = 0
        self._bytes_read = 0
        self._bytes_written = 0
        # Options set before there is an OS socket are applied when one comes.
        self._no_delay: bool | None = None
        self._linger: int | None = None
        # Set by listen(): the accept loop and its counters (kept after close
        # for statistics()), and whether this socket is listening right now.
        self._listener: _listen.Listener | None = None
        self._listening = False
        # TLS settings (None: plain TCP), kept across reset and reconnect; a
        # listener's server context, built once by listen() and shared with
        # every socket it accepts.
        self._tls_settings: _tls.TLSSettings | None = None
        self._server_tls_context: ssl.SSLContext | None = None

    # ------------------------------------------------------------------
    # Construction from an existing connection (used by accept and tests)
    # ------------------------------------------------------------------

    @classmethod
    def _from_stdlib_socket(cls, raw: stdlib_socket.socket) -> RSocket:
        """Wrap a connected stdlib socket (an accepted one, say)."""
        sock = cls()
        sock._attach(raw)
        return sock

    @classmethod
    def _from_socket_stream(cls, stream: trio.SocketStream) -> RSocket:
        """Take over the OS socket of a connected :class:`trio.SocketStream`.

        The stream must not be used afterwards.  Internal: tests accept with
        trio's own listener and wrap what it returns.
        """
        family, kind, proto = stream.socket.family, stream.socket.type, stream.socket.proto
        raw = stdlib_socket.socket(family, kind, proto, fileno=stream.socket.detach())
        return cls._from_stdlib_socket(raw)

    def _accepted(self, raw: stdlib_socket.socket) -> RSocket:
        """A server-side socket for a connection this listening socket accepted.

        It inherits this socket's options (no-delay, linger) and TLS settings;
        its TLS handshake is run by :meth:`_server_handshake`.
        """
        sock = RSocket()
        sock._no_delay, sock._linger = self._no_delay, self._linger
        if self._server_tls_context is not None:
            # The context listen() built, shared by every accepted socket;
            # settings are immutable, so sharing them is safe too.
            sock._tls_settings = self._tls_settings
            sock._server_tls_context = self._server_tls_context
        sock._attach(raw)
        return sock

    def _server_context(self) -> ssl.SSLContext:
        """This socket's server-side SSLContext, built on first use and kept.

        ``listen`` calls it before binding, so configuration errors come first.

        Raises:
          TLSError: the settings are unusable (missing or bad file, ...).
        """
        assert self._tls_settings is not None
        if self._server_tls_context is None:
            try:
                self._server_tls_context = _tls.server_context(self._tls_settings)
            except TLSError as exc:
                raise self._failed(exc) from exc.__cause__
        return self._server_tls_context

    async def _server_handshake(self) -> None:
        """Run the server side of the TLS handshake, if this socket has TLS
        settings; a no-op for plain TCP.  The caller bounds it in time.

        On failure the socket is closed.

        Raises:
          TLSError: the handshake failed (client certificate rejected, ...).
          trio.ClosedResourceError: the socket was closed meanwhile.
        """
        if self._tls_settings is None:
            await checkpoint()
            return
        context = self._server_context()
        if self._raw is None:
            await checkpoint()
            raise trio.ClosedResourceError("this socket was closed")
        ssl_stream = trio.SSLStream(self._tls_transport(), context, server_side=True)
        try:
            await ssl_stream.do_handshake()
        except trio.BrokenResourceError as exc:
            self._send_alert(ssl_stream)
            self.close()
            raise self._failed(_tls.handshake_error(exc)) from exc
        except BaseException:
            self.close()
            raise
        self._ssl = ssl_stream

    def _client_context(self) -> _tls.TLSContext | None:
        if self._tls_settings is None:
            return None
        try:
            return _tls.client_context(self._tls_settings)
        except TLSError as exc:
            raise self._failed(exc) from exc.__cause__

    async def _client_handshake(self, tls: _tls.TLSContext, host: str) -> None:
        """The client side of the TLS handshake, SNI and hostname = *host*.

        On failure (and on cancellation) the socket is left unconnected and
        can be connected again.
        """
        ssl_stream = trio.SSLStream(self._tls_transport(), tls.context, server_hostname=host)
        try:
            await ssl_stream.do_handshake()
            if tls.check_peer:
                _tls.check_peer(ssl_stream.getpeercert(binary_form=True), host)
        except trio.BrokenResourceError as exc:
            if self._closed:  # close() from another fiber: it stays closed
                raise trio.ClosedResourceError("this socket was closed while connecting") from exc
            self._send_alert(ssl_stream)
            self.reset()
            raise self._failed(_tls.handshake_error(exc, host)) from exc
        except TLSError as exc:
            self.reset()
            raise self._failed(exc) from None
        except BaseException:
            if not self._closed:
                self.reset()
            raise
        self._ssl = ssl_stream

    def _send_alert(self, ssl_stream: trio.SSLStream[trio.SocketStream]) -> None:
        """Tell the peer why the handshake failed, if the kernel takes it now."""
        alert = _tls.pending_alert(ssl_stream)
        if alert and self._raw is not None:
            # Best effort on a connection about to be closed: never wait.
            with contextlib.suppress(OSError):
                self._raw.send(alert)

    def _trio_view(self) -> trio.socket.SocketType:
        """A trio socket over this socket's descriptor, made on first need
        (TLS, :attr:`stream`): the plain-TCP paths drive the descriptor
        themselves, so most connections never pay for one."""
        if self._trio_socket is None:
            self._trio_socket = trio.socket.from_stdlib_socket(self._open_raw())
        return self._trio_socket

    def _tls_transport(self) -> trio.SocketStream:
        stream = trio.SocketStream(self._trio_view())
        if self._no_delay is False:
            # SocketStream turns TCP_NODELAY on; the user asked for Nagle.
            stream.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, False)
        return stream

    def _attach(self, raw: stdlib_socket.socket) -> None:
        raw.setblocking(False)
        self._raw = raw
        self._trio_socket = None
        self._stream = None
        self._ssl = None
        self._buffer.clear()
        self._eof = self._closed = self._sent_eof = False
        if raw.family in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6):
            raw.setsockopt(
                stdlib_socket.IPPROTO_TCP,
                stdlib_socket.TCP_NODELAY,
                True if self._no_delay is None else self._no_delay,
            )
            if self._linger is not None:
                self._apply_linger(raw, self._linger)

    # ------------------------------------------------------------------
    # Connect
    # ------------------------------------------------------------------

    async def connect(self, host: str, port: int, deadline: Deadline = None) -> None:
        """Connect to *host*:*port* before *deadline* (Ioto's ``rConnectSocket``).

        The name is resolved with trio; IPv4 addresses are tried first, then
        IPv6 (Ioto's order), one after the other, all within the deadline.  A
        socket that is already connected is closed first.  If TLS is
        configured, the handshake (SNI and hostname check against *host*)
        completes within the same deadline.

        On failure the socket is left unconnected and can be connected again.

        Raises:
          ConnectError: the name does not resolve (``"Cannot find address of
            host:port"``) or no address accepted (``"Cannot connect socket to
            host:port"``); ``errno`` is the OS error.
          DeadlineError: the deadline passed first.
          TLSError: the TLS handshake failed.
          trio.BusyResourceError: another fiber is connecting this socket.
          trio.ClosedResourceError: another fiber closed it meanwhile.
        """
        host = _check_host(host)
        port = _check_port(port)
        limit = check_deadline(deadline)
        if self._connect_busy:
            raise trio.BusyResourceError("another fiber is already connecting this socket")
        self.reset()
        self._connect_busy = True
        try:
            if limit == math.inf:
                await self._connect(host, port)
                return
            with trio.CancelScope(deadline=limit):
                await self._connect(host, port)
                return
        finally:
            self._connect_busy = False
        raise self._failed(DeadlineError(f"Cannot connect socket to {_where(host, port)} before the deadline"))

    async def _connect(self, host: str, port: int) -> None:
        # TLS configuration errors (a missing key file, ...) come before any I/O.
        tls = self._client_context()
        try:
            # A numeric address needs no resolver: answered at once, without
            # the scheduler pass of trio's getaddrinfo (trio skips its resolver
            # hooks for numeric addresses too).
            addresses = stdlib_socket.getaddrinfo(host, port, type=stdlib_socket.SOCK_STREAM, flags=_NUMERIC_ONLY)
        except (stdlib_socket.gaierror, UnicodeError):
            try:
                addresses = await trio.socket.getaddrinfo(host, port, type=stdlib_socket.SOCK_STREAM)
            except (stdlib_socket.gaierror, UnicodeError) as exc:
                # UnicodeError: a name no DNS label can hold (over 63 characters, ...).
                message = f"Cannot find address of {_where(host, port)}"
                raise self._failed(ConnectError(message, getattr(exc, "errno", None))) from exc
        # Ioto's order: every IPv4 address, then every IPv6 one.
        addresses.sort(key=lambda info: info[0] != stdlib_socket.AF_INET)
        last_error: OSError | None = None
        for family, kind, proto, _, address in addresses:
            if self._closed:
                raise trio.ClosedResourceError("this socket was closed while connecting")
            try:
                raw = stdlib_socket.socket(family, kind, proto)
            except OSError as exc:  # out of descriptors, say
                last_error = exc
                continue
            # close() from another fiber closes it too, waking _connect_to.
            self._connecting = raw
            try:
                await _connect_to(raw, address)
            except OSError as exc:
                raw.close()
                last_error = exc
                continue
            except BaseException:
                raw.close()
                raise
            finally:
                self._connecting = None
            if self._closed:  # close() came while the connect finished
                raw.close()
                raise trio.ClosedResourceError("this socket was closed while connecting")
            self._attach(raw)
            if tls is not None:
                await self._client_handshake(tls, host)
            return
        code = last_error.errno if last_error is not None else None
        raise self._failed(ConnectError(f"Cannot connect socket to {_where(host, port)}", code)) from last_error

    # ------------------------------------------------------------------
    # Listen
    # ------------------------------------------------------------------

    async def listen(
        self,
        host: str | None,
        port: int,
        handler: Callable[[Any, RSocket], Awaitable[object]],
        data: Any = None,
        *,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
        reuse_port: bool = False,
        handshake_timeout: float = 30,
    ) -> None:
        """Listen on *host*:*port*; run ``await handler(data, sock)`` for each
        connection in a fiber of its own (Ioto's ``rListenSocket``).

        Returns once the socket is bound and listening.  *host* ``None`` or
        ``""`` listens on all interfaces, IPv4 and IPv6 on one dual-stack
        socket (IPv4 only where the machine has no IPv6); ``"127.0.0.1"`` or
        ``"localhost"`` on IPv4 loopback only; any other name or address on
        the first address it resolves to.  Port ``0`` picks a free port
        (:meth:`get_addr` tells which; one port for IPv4 and IPv6).
        SO_REUSEADDR is on; *reuse_port* sets SO_REUSEPORT so that several
        processes can share the port.  *backlog* ``None`` is as long as the OS
        allows.

        The accept loop runs in *nursery*, or the current runtime's
        (:func:`trio_rsocket.open_runtime`).  Each connection gets a
        server-side ``RSocket`` (TCP_NODELAY on, this socket's options and TLS
        settings inherited); a TLS handshake must finish within
        *handshake_timeout* seconds, else it is logged and the connection
        dropped.  The socket is closed when the handler returns.  An exception
        from a handler is logged with its traceback on the ``"trio_rsocket"``
        logger and stops nothing else.  Past the socket limit
        (:func:`trio_rsocket.set_socket_limit`) a connection is closed at once
        and a warning logged.

        :meth:`close` stops accepting and frees the port (running handlers go
        on); :meth:`shutdown` also waits for, then cancels, the handlers.

        Raises:
          ListenError: the name does not resolve, or the address cannot be
            bound (in use, ...); ``errno`` is the OS error.
          RuntimeError: no *nursery* and no current runtime.
          TypeError, ValueError: a bad argument, before any I/O.
        """
        target = _listen.check_listen_arguments(host, port, handler, nursery, backlog, reuse_port, handshake_timeout)
        self.reset()
        if self._tls_settings is not None:
            # Built once for every connection; configuration errors before binding.
            self._server_tls_context = None
            self._server_context()
        try:
            raw = await _listen.open_listening_socket(host, port, backlog, reuse_port)
        except ListenError as exc:
            self._failed(exc)
            raise
        if self._closed:  # close() from another fiber while the name resolved
            raw.close()
            raise trio.ClosedResourceError("this socket was closed while it set up listening")

        def stop_listening() -> None:
            # The accept loop ends: close this socket unless it was closed
            # (and maybe reused) already.
            if self._listener is listener and self._listening:
                self.close()

        listener = _listen.Listener(raw, handler, data, self._accepted, stop_listening, float(handshake_timeout))
        self._raw = raw
        self._listener = listener
        self._listening = True
        try:
            where = _listen.display_address(raw.getsockname())
            target.start_soon(listener.serve, name=f"trio_rsocket listener {where}")
        except BaseException:
            # A nursery closed to new arrivals: no accept loop, so no port.
            self.close()
            raise

    async def shutdown(self, grace: float | None = None) -> int:
        """Shut a listener down gracefully: stop accepting at once (the port is
        freed), let running handlers finish, and cancel those still running
        *grace* seconds from now (``None``: wait for them however long they
        take).  Returns how many handlers were cancelled.

        Works after :meth:`close` too, for the handlers still running.

        Raises :class:`RuntimeError` if this socket never listened.
        """
        if grace is not None:
            grace = _listen.check_seconds(grace, "grace")
        listener = self._listener
        if listener is None:
            raise RuntimeError("shutdown() is for a listening socket; close a connection with close() or aclose()")
        return await listener.shutdown(grace)

    # ------------------------------------------------------------------
    # Read
    # ------------------------------------------------------------------

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE, deadline: Deadline = None) -> bytes:
        """Read 1 to *max_bytes* bytes, as soon as any are available (``rReadSocket``).

        Returns ``b""`` at end of file, after which :meth:`is_eof` is true.
        A read stopped by its deadline raises :class:`DeadlineError` and loses
        nothing: data that arrives later is returned by the next read.

        Raises:
          DeadlineError: nothing arrived before *deadline*.
          trio.ClosedResourceError: the socket was closed (also by another fiber
            while this one waited).
          trio.BrokenResourceError: the peer reset the connection.
          trio.BusyResourceError: another fiber is already reading.
        """
        # The common call (an int, no deadline) skips the validators; they
        # raise for anything else.
        if type(max_bytes) is not int or max_bytes < 1:
            max_bytes = _check_max_bytes(max_bytes)
        if deadline is None or (limit := check_deadline(deadline)) == math.inf:
            return await self._read(max_bytes)
        with trio.CancelScope(deadline=limit):
            return await self._read(max_bytes)
        raise self._failed(DeadlineError("Read deadline passed before any data arrived"))

    async def _read(self, max_bytes: int) -> bytes:
        if self._reading:
            raise trio.BusyResourceError("another fiber is already reading from this socket")
        self._reading = True
        try:
            raw = self._raw
            if raw is not None and self._ssl is None and not self._buffer:
                # The hot path, and where an idle connection's fiber waits:
                # _receive and _when_readable written out here, because every
                # frame a waiting fiber holds costs memory on every idle
                # connection (two frames: about 0.5 KiB, measured by the
                # benchmark).  Same steps as _when_readable.
                await checkpoint_if_cancelled()
                waited = False
                while True:
                    try:
                        data = raw.recv(max_bytes)
                    except BlockingIOError:
                        pass
                    except OSError as exc:
                        raise self._failed(_broken(exc)) from exc
                    else:
                        break
                    await wait_readable(raw)
                    waited = True
                if not waited:
                    await cancel_shielded_checkpoint()
                if not data:
                    self._eof = True
            elif self._buffer:
                await checkpoint()
                data = bytes(self._buffer[:max_bytes])
                del self._buffer[:max_bytes]
            else:
                data = await self._receive(max_bytes)
        finally:
            self._reading = False
        self._bytes_read += len(data)
        return data

    async def _receive(self, max_bytes: int) -> bytes:
        """One receive from the connection, bypassing ``_buffer``."""
        if self._ssl is None:
            raw = self._raw
            if raw is None:
                raw = self._open_raw()  # raises the right error
            data: bytes = await self._when_readable(raw, raw.recv, max_bytes)
        else:
            data = await self._ssl_call(self._ssl.receive_some, max_bytes)
        if not data:
            self._eof = True
        return data

    async def _when_readable(self, raw: stdlib_socket.socket, receive: Callable[[Any], Any], argument: Any) -> Any:
        """``receive(argument)`` (``raw.recv`` or ``raw.recv_into``) as a trio
        checkpoint: try it at once, wait for readability only if it would
        block (trio's own non-blocking sandwich)."""
        await checkpoint_if_cancelled()
        waited = False
        while True:  # ends at the first call that does not say "would block"
            try:
                result = receive(argument)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._failed(_broken(exc)) from exc
            else:
                break
            # Waits outside the except clause: a fiber suspended in one keeps
            # the exception and its traceback alive (half a KiB per idle
            # connection) and chains it to anything raised later.
            await wait_readable(raw)
            waited = True
        if not waited:
            await cancel_shielded_checkpoint()
        return result

    async def read_into(self, buffer: Buffer, deadline: Deadline = None) -> int:
        """Read into *buffer* (any writable bytes-like object); return the count.

        Returns ``0`` at end of file.  On plain TCP the kernel writes straight
        into *buffer*: no extra copy.  Otherwise as :meth:`read`.
        """
        view = _writable_view(buffer)
        if deadline is None or (limit := check_deadline(deadline)) == math.inf:
            return await self._read_into(view)
        with trio.CancelScope(deadline=limit):
            return await self._read_into(view)
        raise self._failed(DeadlineError("Read deadline passed before any data arrived"))

    async def _read_into(self, view: memoryview) -> int:
        if self._reading:
            raise trio.BusyResourceError("another fiber is already reading from this socket")
        self._reading = True
        try:
            if self._buffer or self._ssl is not None:
                count = await self._read_into_copy(view)
            else:
                raw = self._open_raw()
                count = await self._when_readable(raw, raw.recv_into, view)
                if not count:
                    self._eof = True
        finally:
            self._reading = False
        self._bytes_read += count
        return count

    async def _read_into_copy(self, view: memoryview) -> int:
        if not self._buffer:
            data = await self._receive(len(view))
            view[: len(data)] = data
            return len(data)
        await checkpoint()
        count = min(len(view), len(self._buffer))
        view[:count] = self._buffer[:count]
        del self._buffer[:count]
        return count

    async def read_exactly(self, count: int, deadline: Deadline = None) -> bytes:
        """Read exactly *count* bytes.

        Raises:
          IncompleteReadError: end of file came first; ``partial`` holds what
            arrived (consumed).
          DeadlineError: the deadline passed first; what arrived so far stays
            buffered for the next read.
        """
        count = _check_max_bytes(count, "count")
        limit = check_deadline(deadline)
        with trio.CancelScope(deadline=limit):
            return await self._read_buffered(count, count, lambda: count if len(self._buffer) >= count else -1)
        raise self._failed(DeadlineError(f"Read deadline passed before {count} bytes arrived"))

    async def read_until(
        self, delimiter: bytes, max_bytes: int = DEFAULT_READ_SIZE, deadline: Deadline = None
    ) -> bytes:
        """Read up to and including *delimiter*, at most *max_bytes* in all.

        Raises:
          ValueError: no delimiter within *max_bytes*; nothing is consumed.
          IncompleteReadError: end of file before the delimiter; ``partial``
            holds what arrived (consumed).
          DeadlineError: the deadline passed first; what arrived so far stays
            buffered for the next read.
        """
        if isinstance(delimiter, str):
            raise TypeError("delimiter must be bytes, not str: encode it first")
        delimiter = bytes(_data_view(delimiter, "delimiter"))
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        max_bytes = _check_max_bytes(max_bytes)
        if len(delimiter) > max_bytes:
            raise ValueError(f"delimiter ({len(delimiter)} bytes) is longer than max_bytes ({max_bytes})")
        limit = check_deadline(deadline)
        # Where to resume searching, so each arrival is scanned once.
        searched = 0

        def complete() -> int:
            nonlocal searched
            found = self._buffer.find(delimiter, searched, max_bytes)
            if found >= 0:
                return found + len(delimiter)
            if len(self._buffer) >= max_bytes:
                raise ValueError(f"no delimiter {delimiter!r} within max_bytes={max_bytes}")
            searched = max(0, len(self._buffer) - len(delimiter) + 1)
            return -1

        with trio.CancelScope(deadline=limit):
            return await self._read_buffered(max_bytes, None, complete)
        raise self._failed(DeadlineError(f"Read deadline passed before delimiter {delimiter!r} arrived"))

    async def _read_buffered(self, want: int, expected: int | None, complete: Callable[[], int]) -> bytes:
        """Fill ``_buffer`` until ``complete()`` gives a length, then take it.

        ``complete`` returns the length of the answer at the head of the
        buffer, or -1 for "need more"; it may raise to refuse (consuming
        nothing).  *want* bounds each receive; *expected* goes into the
        :class:`IncompleteReadError` raised at end of file.
        """
        if self._reading:
            raise trio.BusyResourceError("another fiber is already reading from this socket")
        self._reading = True
        try:
            await checkpoint_if_cancelled()
            end = complete()
            while end < 0:
                # At most what a read takes: recv(n) allocates n bytes first,
                # so asking for all of a large read_exactly at once costs a
                # huge allocation per arrival.
                data = await self._receive(max(1, min(want - len(self._buffer), DEFAULT_READ_SIZE)))
                if not data:
                    partial = bytes(self._buffer)
                    self._buffer.clear()
                    self._bytes_read += len(partial)
                    raise self._failed(IncompleteReadError(partial, expected))
                self._buffer += data
                end = complete()
            answer = bytes(self._buffer[:end])
            del self._buffer[:end]
        finally:
            self._reading = False
        await cancel_shielded_checkpoint()
        self._bytes_read += len(answer)
        return answer

    # ------------------------------------------------------------------
    # Write
    # ------------------------------------------------------------------

    async def write(self, data: Buffer, deadline: Deadline = None) -> int:
        """Write all of *data* (any bytes-like object) and return its length.

        (Ioto's ``rWriteSocket``, without the short writes: the fiber waits
        until everything is handed over.)

        Raises:
          DeadlineError: the deadline passed first; its ``bytes_written`` says
            exactly how many bytes reached the kernel (plain TCP) before that.
          trio.BrokenResourceError: the peer reset the connection.
          trio.ClosedResourceError: the socket was closed, or ``send_eof`` ran.
          trio.BusyResourceError: another fiber is already writing.
        """
        # bytes, the common case, needs no view: send() takes it as it is.
        view = data if type(data) is bytes else _data_view(data)
        if deadline is None or (limit := check_deadline(deadline)) == math.inf:
            await self._write(view)
            return len(view)
        with trio.CancelScope(deadline=limit):
            await self._write(view, by_record=True)
            return len(view)
        raise self._failed(
            DeadlineError(
                f"Write deadline passed after {self._write_progress} of {len(view)} bytes",
                bytes_written=self._write_progress,
            )
        )

    async def _write(self, view: bytes | memoryview, by_record: bool = False) -> None:
        """Write all of *view*.  *by_record*: this write has a deadline of its
        own, so over TLS hand the data over one record at a time, to be able
        to say how much went out (see :meth:`_ssl_write`)."""
        if self._writing:
            raise trio.BusyResourceError("another fiber is already writing to this socket")
        self._writing = True
        self._write_progress = 0
        try:
            if self._ssl is not None:
                await self._ssl_write(memoryview(view), by_record)
                return
            raw = self._raw
            if raw is None:
                raw = self._open_raw()  # raises the right error
            if self._sent_eof:
                raise trio.ClosedResourceError("can't write after send_eof")
            await checkpoint_if_cancelled()
            total = len(view)
            try:
                sent = raw.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise self._failed(_broken(exc)) from exc
            self._write_progress = sent
            self._bytes_written += sent
            if sent == total:
                await cancel_shielded_checkpoint()
                return
            await self._write_blocked(raw, view, sent)
        finally:
            self._writing = False

    async def _write_blocked(self, raw: stdlib_socket.socket, data: bytes | memoryview, sent: int) -> None:
        view = memoryview(data)  # slices of a view copy nothing
        total = len(view)
        while sent < total:
            await wait_writable(raw)
            try:
                count = raw.send(view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                raise self._failed(_broken(exc)) from exc
            sent += count
            self._write_progress = sent
            self._bytes_written += count

    async def _ssl_write(self, view: memoryview, by_record: bool) -> None:
        """Write through the TLS layer.

        Without a deadline of the write's own the data goes to
        :meth:`trio.SSLStream.send_all` in one piece (fastest; an enclosing
        scope's cancellation reports no count anyway).  With one
        (*by_record*) it goes one TLS record
        (:data:`_tls.RECORD_SIZE` bytes) at a time, so ``bytes_written`` can
        be honest: it counts the records wholly handed to the kernel, which
        are exactly the bytes the peer can decrypt.  If the deadline passes in
        the middle of a record, trio's SSLStream cannot take back the half it
        sent and the stream is broken (later calls raise
        :class:`trio.BrokenResourceError`); if it passes between records the
        socket stays usable and the rest can be written.
        """
        ssl_stream = self._ssl
        assert ssl_stream is not None
        total = len(view)
        if total <= _tls.RECORD_SIZE or not by_record:
            await self._ssl_call(ssl_stream.send_all, view)
            self._write_progress = total
            self._bytes_written += total
            return
        for start in range(0, total, _tls.RECORD_SIZE):
            record = view[start : start + _tls.RECORD_SIZE]
            await self._ssl_call(ssl_stream.send_all, record)
            self._write_progress += len(record)
            self._bytes_written += len(record)

    async def _ssl_call(self, method: Callable[[Any], Awaitable[Any]], argument: Any) -> Any:
        try:
            return await method(argument)
        except trio.BrokenResourceError as exc:
            if self._closed:
                raise trio.ClosedResourceError("this socket was closed") from exc
            raise self._failed(_tls.broken_error(exc)) from exc.__cause__

    # ------------------------------------------------------------------
    # trio.abc.HalfCloseableStream
    # ------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Stream interface: write all of *data* (no deadline)."""
        await self._write(_data_view(data))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Stream interface: read up to *max_bytes* (default 65536); ``b""`` at EOF."""
        return await self._read(DEFAULT_READ_SIZE if max_bytes is None else _check_max_bytes(max_bytes))

    async def wait_send_all_might_not_block(self) -> None:
        """Stream interface: wait until a write might not block."""
        if self._writing:
            raise trio.BusyResourceError("another fiber is already writing to this socket")
        self._writing = True
        try:
            if self._ssl is not None:
                await self._ssl.wait_send_all_might_not_block()
                return
            raw = self._open_raw()
            try:
                await wait_writable(raw)
            except OSError as exc:
                raise self._failed(_broken(exc)) from exc
        finally:
            self._writing = False

    async def send_eof(self) -> None:
        """Half-close: tell the peer no more data is coming; reads go on.

        Idempotent.  Writes afterwards raise :class:`trio.ClosedResourceError`.
        TLS has no half-close, so on a TLS socket this raises
        :class:`RSocketError`.
        """
        if self._writing:
            raise trio.BusyResourceError("another fiber is already writing to this socket")
        raw = self._open_raw()
        await checkpoint()
        if self._ssl is not None:
            raise self._failed(RSocketError("send_eof is not possible on a TLS socket: TLS has no half-close"))
        if self._sent_eof:
            return
        try:
            raw.shutdown(stdlib_socket.SHUT_WR)
        except OSError as exc:
            raise self._failed(_broken(exc)) from exc
        self._sent_eof = True

    # ------------------------------------------------------------------
    # Close
    # ------------------------------------------------------------------

    def close(self) -> None:
        """Close now (Ioto's ``rCloseSocket``): synchronous, immediate, idempotent.

        Fibers blocked on the socket wake with :class:`trio.ClosedResourceError`.
        Afterwards :meth:`is_closed` and :meth:`is_eof` are true and
        :meth:`get_handle` is -1.  A TLS socket is closed without close_notify;
        use :meth:`aclose` for that.

        On a listener it stops the accept loop and frees the port; handlers
        already running go on (see :meth:`shutdown`).
        """
        if self._listening:
            self._listening = False
            assert self._listener is not None
            self._listener.close()
        self._closed = True
        self._eof = True
        # What was received and not yet read goes with the connection: after
        # close every read raises ClosedResourceError (trio's contract), and
        # the TLS layer's decrypted bytes must not answer it either.
        self._buffer.clear()
        self._ssl = None
        self._stream = None
        raw, self._trio_socket, self._raw = self._raw, None, None
        if raw is None:
            raw, self._connecting = self._connecting, None
        if raw is not None:
            # Wake the fibers blocked on the descriptor before it goes (what
            # trio's own socket close does).  Outside trio nobody can be
            # waiting, and close must still work there (cleanup after
            # trio.run, a finalizer, ...).
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.notify_closing(raw)
            raw.close()

    async def aclose(self) -> None:
        """Close gracefully: TLS sends close_notify first.  Always closes, even
        when cancelled, and is a checkpoint."""
        ssl_stream = self._ssl
        if ssl_stream is not None and not self._closed:
            try:
                await ssl_stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self.close()
            return
        self.close()
        await checkpoint()

    def disconnect(self) -> None:
        """Shut both directions down but keep the handle (``rDisconnectSocket``).

        Reads then return end of file, writes fail; :meth:`close` still has to
        release the handle.
        """
        self._eof = True
        if self._raw is None:
            return
        # Already shut down, or never connected: the wanted state either way.
        with contextlib.suppress(OSError):
            self._raw.shutdown(stdlib_socket.SHUT_RDWR)

    def reset(self) -> None:
        """Close and clear state, so the socket can connect again (``rResetSocket``).

        Options and TLS settings are kept; the error message, EOF and closed
        flags and any buffered data are cleared.
        """
        self.close()
        self._closed = self._eof = self._sent_eof = False
        self._stream = None
        self._error = ""

    # ------------------------------------------------------------------
    # State and options
    # ------------------------------------------------------------------

    def is_closed(self) -> bool:
        """True after :meth:`close` (``rIsSocketClosed``)."""
        return self._closed

    def is_eof(self) -> bool:
        """True once the peer's end of file was read, or after close (``rIsSocketEof``)."""
        return self._eof

    def is_secure(self) -> bool:
        """True if the socket uses TLS (``rIsSocketSecure``): from the first
        TLS setting on (as in Ioto), before and after it connects."""
        return self._tls_settings is not None

    def is_connected(self) -> bool:
        """True while a connection is attached and not closed (``rIsSocketConnected``).

        Never true for a listening socket.
        """
        return self._raw is not None and not self._listening

    def get_handle(self) -> int:
        """The OS file descriptor, or -1 if there is none (``rGetSocketHandle``)."""
        return self._raw.fileno() if self._raw is not None else -1

    def get_addr(self) -> tuple[str, int]:
        """The local ``(ip, port)`` (``rGetSocketAddr``).

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        return _listen.display_address(self._open_raw().getsockname())

    def get_peer_addr(self) -> tuple[str, int]:
        """The peer's ``(ip, port)``.

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        try:
            return _listen.display_address(self._open_raw().getpeername())
        except OSError as exc:
            raise self._failed(_broken(exc)) from exc

    def get_error(self) -> str:
        """The message of the last error on this socket, ``""`` if none (``rGetSocketError``)."""
        return self._error

    def set_no_delay(self, enable: bool) -> None:
        """Turn Nagle's algorithm off (``True``, the default here) or on (``rSetSocketNoDelay``)."""
        if not isinstance(enable, bool | int):
            raise TypeError(f"enable must be a bool, not {type(enable).__name__}")
        self._no_delay = bool(enable)
        if self._raw is not None:
            self._raw.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, self._no_delay)

    def set_linger(self, seconds: int) -> None:
        """Set SO_LINGER (``rSetSocketLinger``): close waits up to *seconds* to
        deliver unsent data; ``0`` makes close send a reset (RST) at once."""
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise TypeError(f"seconds must be an int, not {type(seconds).__name__}")
        if seconds < 0:
            raise ValueError(f"seconds must be 0 or more, not {seconds}")
        self._linger = seconds
        if self._raw is not None:
            self._apply_linger(self._raw, seconds)

    @staticmethod
    def _apply_linger(raw: stdlib_socket.socket, seconds: int) -> None:
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, seconds))

    @property
    def stream(self) -> trio.SocketStream | trio.SSLStream[trio.SocketStream] | None:
        """The wrapped :class:`trio.SocketStream` (plain) or :class:`trio.SSLStream`
        (TLS), or ``None`` when not connected.

        It shares the connection: bytes already buffered by ``read_until`` /
        ``read_exactly`` are not in it, and it must not be used concurrently
        with this socket's own reads or writes.
        """
        if self._ssl is not None:
            return self._ssl
        if self._stream is None and self._raw is not None:
            self._stream = trio.SocketStream(self._trio_view())
            if self._no_delay is False:
                # SocketStream turns TCP_NODELAY on; the user asked for Nagle.
                self._stream.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, False)
        return self._stream

    def statistics(self) -> SocketStatistics:
        """Counters of this socket's traffic (and, for a listener, its connections)."""
        listener = self._listener
        if listener is None:
            return SocketStatistics(bytes_read=self._bytes_read, bytes_written=self._bytes_written)
        return SocketStatistics(
            bytes_read=self._bytes_read,
            bytes_written=self._bytes_written,
            accepted=listener.accepted,
            active=listener.active,
            rejected=listener.rejected,
            handler_errors=listener.handler_errors,
        )

    # ------------------------------------------------------------------
    # TLS
    # ------------------------------------------------------------------

    def _change_tls(self, **changes: object) -> None:
        settings = self._tls_settings if self._tls_settings is not None else _tls.TLSSettings()
        self._tls_settings = settings.replace(**changes)
        if not self._listening:
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
        or bytes); clients without one use the system store.  *revoke* is a
        certificate revocation list (CRL); it is checked against the peer's
        certificate when the issuer is verified.

        Files are read when the socket connects or listens: a missing or bad
        file raises :class:`TLSError` there, naming it, before any connection
        is tried.  Settings changed while a socket is connected or listening
        take effect at the next ``connect`` or ``listen``.
        """
        changes: dict[str, object] = {
            name: _tls.check_source(value, name)
            for name, value in (("key", key), ("cert", cert), ("authority", authority), ("revoke", revoke))
            if value is not None
        }
        if password is not None:
            changes["password"] = _tls.check_password(password)
        self._change_tls(**changes)

    def set_tls(self) -> None:
        """Make the socket TLS with the module defaults only (Ioto's ``rSetTls``)."""
        self._change_tls()

    def set_ciphers(self, ciphers: str | None) -> None:
        """Choose the ciphers (``rSetSocketCiphers``): an OpenSSL cipher
        string, ``,`` or ``:`` separated; ``None`` or ``""`` for the default.
        Makes the socket TLS.

        TLS 1.3 suite names (``TLS_AES_256_GCM_SHA384``, ...) are checked and
        accepted, but Python's :mod:`ssl` cannot restrict TLS 1.3 suites: all
        of them stay enabled.  A string that selects no cipher raises
        :class:`TLSError` at connect or listen time.
        """
        self._change_tls(ciphers=_tls.check_ciphers(ciphers))

    def set_verify(self, verify_peer: bool, verify_issuer: bool) -> None:
        """Choose how the peer's certificate is verified (``rSetSocketVerify``).
        Makes the socket TLS.

        For a client (defaults: both true): *verify_peer* false checks
        nothing; *verify_issuer* false accepts a self-signed or unknown issuer
        but still rejects an expired certificate or one for another host.

        For a listener: *verify_peer* true requires a client certificate that
        chains to this socket's *authority* (mutual TLS); false (the default)
        asks for none.  A listener cannot accept unknown issuers
        (*verify_issuer* false raises :class:`TLSError` at listen time).
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
        socket TLS.

        A client needs a client context (``ssl.create_default_context()``), a
        listener a server one (``ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)``
        or ``ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)``).  The other TLS
        settings are then ignored; the client still sends *host* as SNI and,
        if the context checks hostnames, checks it.
        """
        if context is not None and not isinstance(context, ssl.SSLContext):
            raise TypeError(f"context must be an ssl.SSLContext or None, not {type(context).__name__}")
        self._change_tls(context=context)

    def get_alpn(self) -> str | None:
        """The ALPN protocol agreed in the handshake, or ``None``."""
        return self._ssl.selected_alpn_protocol() if self._ssl is not None else None

    def get_cipher(self) -> str | None:
        """The cipher in use (e.g. ``"TLS_AES_256_GCM_SHA384"``), or ``None``
        before a handshake and on plain TCP."""
        if self._ssl is None:
            return None
        cipher = self._ssl.cipher()
        return cipher[0] if cipher else None

    def get_tls_version(self) -> str | None:
        """The TLS version in use (e.g. ``"TLSv1.3"``), or ``None``."""
        return self._ssl.version() if self._ssl is not None else None

    def get_peer_certificate(self) -> bytes | None:
        """The peer's certificate in DER form, or ``None`` (plain TCP, no
        handshake yet, or a client that sent none).

        DER is what the peer sent, whatever was verified; turn it into PEM
        with :func:`ssl.DER_cert_to_PEM_cert` or read it with
        ``cryptography.x509.load_der_x509_certificate``.
        """
        return self._ssl.getpeercert(binary_form=True) if self._ssl is not None else None

    # ------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------

    def _open_raw(self) -> stdlib_socket.socket:
        raw = self._raw
        if raw is None:
            if self._closed:
                raise trio.ClosedResourceError("this socket was closed")
            raise trio.ClosedResourceError("this socket is not connected")
        return raw

    def _failed(self, exc: BaseException) -> BaseException:
        """Record *exc* as the socket's last error and return it for raising."""
        self._error = str(exc)
        return exc

    def __repr__(self) -> str:
        state = ("closed" if self._closed else "unconnected") if self._raw is None else f"fd={self._raw.fileno()}"
        return f"<RSocket {state}{' tls' if self._ssl is not None else ''}>"
