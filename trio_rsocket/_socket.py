"""RSocket: Ioto's socket object on trio, a small front over explicit parts.

Theory of operation
-------------------
An :class:`RSocket` is in one :class:`~trio_rsocket._state.State` at a time
(the rules are written out in ``_state.py``) and hands the work to the part
that state calls for:

* a **plain connection** (``_plain.PlainConnection``) drives the descriptor
  itself: the fast paths, and the exact count of a stopped write;
* a **TLS connection** (``_secure.TLSConnection``) drives a non-blocking
  :class:`ssl.SSLSocket` over the same descriptor, the same way; ``upgrade_tls``
  swaps one part for the other in the middle of a connection's life;
* the **listener** (``_listen.Listener``) owns the listening socket and
  runs the accept loop: it makes each accepted connection's part, runs its
  server handshake (after the PROXY protocol header, if it takes them), and
  only then makes the server-side ``RSocket`` from the finished part
  (:meth:`RSocket._accepted`) and runs the handler; a Unix listener
  (``_unix.UnixListener``, made by ``listen_unix`` after the race-free bind
  in ``_unix``) is one that also removes its socket file.

The parts are made by functions (``_setup.connect``, ``_setup.client_upgrade``,
``_secure.server_handshake``) that return a finished part or close what they
opened.  What stays here is what belongs to the socket, whatever part it
has: the state (every move an event looked up in ``_state.MOVES``), one
conflict guard per direction (read, write, connect/listen) that also records
the last error, the call's deadline (``_deadline.deadline_scope``), the read
buffer behind ``read_until``/``read_exactly`` (``_buffer``), the statistics,
and the races with a ``close`` from another fiber.  What outlives a
connection is one immutable ``_options.Settings`` value, shared with every
socket that has the same (all fresh sockets, all the sockets one listener
accepted), and a TLS client's ``_options.SessionCache`` (docs/design.rst
draws the whole).

Words: a *part* is the object that drives one connection's descriptor
(plain or TLS); a *connection* is the TCP connection itself, with its peer;
the *socket* is the RSocket in front; the *listening socket* is the OS
socket a listener accepts on.

Reads are served from the buffer first: bytes that ``read_until`` or
``read_exactly`` pulled in but did not return.  Nothing the peer sent is ever
dropped, except by ``close``, after which every read raises
:class:`trio.ClosedResourceError`.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, overload

import trio
from trio.lowlevel import checkpoint

from . import _proxy, _secure, _setup, _tls, _unix
from ._address import display_address, host_port
from ._arguments import (
    MAX_LINGER,
    READ_CAP,
    FileLike,
    c_int_error,
    check_count,
    check_file,
    check_host,
    check_port,
    check_seconds,
    check_stream_socket,
    data_view,
    writable_view,
)
from ._buffer import ReadBuffer, Rule
from ._deadline import Deadline, deadline_scope
from ._errors import (
    DeadlineError,
    FileReadError,
    IncompleteReadError,
    RSocketError,
    TLSError,
    file_error,
    stream_error,
)
from ._listen import DataT, Listener, check_listen_arguments, open_listening_socket
from ._options import DEFAULT_SETTINGS, SessionCache, Settings
from ._plain import Connector, PlainConnection, apply_options
from ._runtime import check_not_asyncio, check_trio
from ._setup import Part
from ._state import MOVES, Event, Guard, ReadGuard, SetupGuard, State, WriteGuard, last_failure, next_state
from ._unix_io import MAX_FDS, PeerCredentials, check_fds, peer_credentials, receive_fds, send_fds

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["DEFAULT_READ_SIZE", "RSocket", "SocketStatistics"]

#: How many bytes ``read`` asks for when not told (trio's default too).
DEFAULT_READ_SIZE: Final = 65536

_G = TypeVar("_G", bound=Guard)
# Where an RSocket keeps the guard of each direction.
_GUARD_SLOTS: Final[dict[type[Guard], str]] = {
    ReadGuard: "_read_guard",
    WriteGuard: "_write_guard",
    SetupGuard: "_setup_guard",
}


# Where a fresh socket's ADOPT takes it (MOVES, looked up once: every accept makes this move).
_ADOPTED: Final = next_state(State.FRESH, Event.ADOPT)
# The settings of every from_socket(server_side=True) socket nobody set anything on.
_SERVER_SIDE: Final = DEFAULT_SETTINGS.replace(server_side=True)


@dataclass(frozen=True, slots=True)
class SocketStatistics:
    """Counters returned by :meth:`RSocket.statistics`.

    The first two count this socket's own traffic; the rest are non-zero only
    on a listening socket and count the connections it accepted.

    Attributes:
      bytes_read: bytes returned to the program by reads.
      bytes_written: bytes handed to the kernel by writes and ``send_file``
        (TLS: in whole records, the bytes the peer can decrypt, also of a
        write that something stopped).
      accepted: connections accepted (including those rejected by the socket limit).
      active: handler fibers running now.
      rejected: connections closed at once because the socket limit was reached.
      handler_errors: handlers that ended with an exception (logged, never fatal).
      handshakes_cancelled: TLS handshakes (and PROXY protocol headers) that
        :meth:`~trio_rsocket.RSocket.shutdown` cut short (their handlers never
        ran, so they are not in its result).
      proxy_refused: connections closed for their PROXY protocol header (a
        listener with ``proxy_protocol=True``): from a peer not in
        *proxy_from*, or a header that was malformed, too long, late, or cut
        short by the peer.
    """

    bytes_read: int = 0
    bytes_written: int = 0
    accepted: int = 0
    active: int = 0
    rejected: int = 0
    handler_errors: int = 0
    handshakes_cancelled: int = 0
    proxy_refused: int = 0


class RSocket(trio.abc.HalfCloseableStream):
    """A socket with Ioto's API: straight-line calls, absolute deadlines.

    ``RSocket()`` makes an unconnected socket (Ioto's ``rAllocSocket``).
    Connect it with :meth:`connect` (:meth:`connect_unix` for a Unix domain
    socket), or make it a server with :meth:`listen` (:meth:`listen_unix`).
    It is a :class:`trio.abc.HalfCloseableStream`, so anything in the trio
    world that takes a stream takes an ``RSocket``; ``async with RSocket() as
    s:`` closes it on exit.  Every async method is a trio checkpoint.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_bytes_read",
        "_connector",
        "_listener",
        "_part",
        "_peer",
        "_read_guard",
        "_sent_before",
        "_sessions",
        "_settings",
        "_setup_guard",
        "_state",
        "_stream",
        "_write_guard",
    )

    def __init__(self) -> None:
        self._state = State.FRESH
        # The part for the state: a connection's (OPEN), the connect in
        # flight (CONNECTING), the listener (LISTENING; kept after close for
        # statistics()).
        self._part: Part | None = None
        self._connector: Connector | None = None
        self._listener: Listener[Any] | None = None
        # The guards, and the buffer behind read_until/read_exactly, are made
        # on first use: an idle connection keeps only what it uses.
        self._read_guard: ReadGuard | None = None
        self._write_guard: WriteGuard | None = None
        self._setup_guard: SetupGuard | None = None
        self._buffer: ReadBuffer | None = None
        self._bytes_read = 0
        self._sent_before = 0  # bytes written by connections this socket had before
        self._stream: trio.SocketStream | _secure.TLSStream | None = None  # .stream, made on demand
        # What outlives a connection: one immutable value, shared (see _options).
        self._settings: Settings = DEFAULT_SETTINGS
        # The host and port connect() was given (the name a TLS upgrade
        # checks), or, on a server side, what its PROXY header said (a slot
        # each side uses, so an idle connection is no bigger); a TLS
        # client's sessions, made on first use.
        self._peer: tuple[str, int] | _proxy.ProxyInfo | str | None = None
        self._sessions: SessionCache | None = None

    # State and parts --------------------------------------------------

    def _move(self, event: Event) -> None:
        """Make the move *event* leads to (``_state.MOVES``)."""
        # next_state's look-up, written out: on every accept and close.
        state = MOVES.get((self._state, event))
        self._state = state if state is not None else next_state(self._state, event)

    @classmethod
    def _accepted(cls, part: Part, settings: Settings, proxy: _proxy.ProxyInfo | None) -> Self:
        """The server-side socket of a connection a listener accepted, over its
        finished *part*, with the listener's *settings* (shared, not copied)
        and what its PROXY header said (``None``: it had none)."""
        sock = cls()
        sock._settings = settings
        sock._state = _ADOPTED  # a fresh socket's ADOPT move, looked up once
        sock._part = part
        sock._peer = proxy
        return sock

    def _new_guard(self, kind: type[_G]) -> _G:
        """The guard of one direction, made on its first use."""
        guard = kind()
        setattr(self, _GUARD_SLOTS[kind], guard)
        return guard

    def _read_buffer(self) -> ReadBuffer:
        """The read buffer, made on first use."""
        if self._buffer is None:
            self._buffer = ReadBuffer()
        return self._buffer

    def _open_part(self) -> Part:
        """The connection part, or the error that says why there is none."""
        if self._part is None:
            raise self._not_open()
        return self._part

    def _not_open(self) -> trio.ClosedResourceError:
        """The error for I/O without a connection, saying why there is none."""
        why = {State.CLOSED: "was closed", State.CLOSING: "is closing", State.LISTENING: "is listening, not connected"}
        return trio.ClosedResourceError(f"this socket {why.get(self._now(), 'is not connected')}")

    def _now(self) -> State:
        """The state, once a listener whose accept loop stopped by itself (its
        nursery was cancelled) is seen for what it is: closed."""
        if self._state is State.LISTENING and self._listener is not None and self._listener.closed:
            self.close()
        return self._state

    @classmethod
    def from_socket(
        cls, sock: stdlib_socket.socket | trio.socket.SocketType | trio.SocketStream, *, server_side: bool = False
    ) -> RSocket:
        """Adopt a connected stream socket the program already has: a
        :mod:`socket` socket, a trio socket or a :class:`trio.SocketStream`.
        The RSocket owns it from then on (do not use *sock* again).
        *server_side* says which side a later :meth:`upgrade_tls` plays.

        Raises:
          TypeError: *sock* is not a socket.
          ValueError: it is not a connected ``SOCK_STREAM`` socket.
          RuntimeError: called from asyncio (trio_rsocket runs under trio only).
        """
        check_not_asyncio("from_socket()")
        raw = check_stream_socket(sock)
        adopted = cls()
        if server_side:
            adopted._settings = _SERVER_SIDE
        adopted._move(Event.ADOPT)
        adopted._part = PlainConnection(raw)
        return adopted

    # Connect and listen -----------------------------------------------

    async def connect(
        self, host: str, port: int, deadline: Deadline = None, *, happy_eyeballs_delay: float | None = None
    ) -> None:
        """Connect to *host*:*port* before *deadline* (Ioto's ``rConnectSocket``).

        The name is resolved with trio; IPv4 addresses are tried first, then
        IPv6 (Ioto's order), one after the other, all within the deadline.
        *happy_eyeballs_delay* (seconds) races the addresses instead, as
        :func:`trio.open_tcp_stream` does (RFC 8305), within the same deadline.  An
        IPv6 address may come in brackets (``"[::1]"``), as messages print it.  A
        socket that is already connected is closed first.  If TLS is
        configured, the handshake (SNI and hostname check against *host*)
        completes within the same deadline.  On failure the socket is left
        unconnected and can be connected again.

        Raises:
          ConnectError: the name does not resolve (``"Cannot find address of
            host:port"``) or no address accepted (``"Cannot connect socket to
            host:port: <OS reason>"``); ``errno`` is the OS error.
          DeadlineError: the deadline passed first.
          TLSError: the TLS configuration or handshake failed.
          trio.BusyResourceError: another fiber is connecting this socket.
          trio.ClosedResourceError: another fiber closed or reset it meanwhile.
          RuntimeError: not under trio (trio_rsocket runs under trio only).
        """
        check_trio("connect()")
        host, port = check_host(host), check_port(port)
        if happy_eyeballs_delay is not None:
            happy_eyeballs_delay = check_seconds(happy_eyeballs_delay, "happy_eyeballs_delay")
        scope = deadline_scope(
            deadline, lambda: DeadlineError(f"Cannot connect socket to {host_port(host, port)} before the deadline")
        )
        with self._setup_guard or self._new_guard(SetupGuard):
            self.reset()
            # TLS configuration errors (a missing key file, ...) come before any I/O.
            settings = self._settings
            tls = _tls.client_context(settings.tls) if settings.tls is not None else None
            sessions = self._sessions or self._new_sessions() if tls is not None else None
            await self._attach(
                (host, port),
                scope,
                lambda connector: _setup.connect(connector, host, port, happy_eyeballs_delay, settings, tls, sessions),
            )

    async def _attach(
        self,
        peer: tuple[str, int] | str,
        scope: AbstractContextManager[object],
        open_part: Callable[[Connector], Awaitable[Part]],
    ) -> None:
        """A connect's moves, CONNECT to CONNECTED (or CONNECT_FAILED), around
        ``await open_part(connector)`` within *scope* (its deadline): the
        part it returns is attached, unless a ``close()`` or ``reset()`` from
        another fiber came meanwhile (then it is closed and that is said).
        *peer* is kept for ``upgrade_tls`` and ``get_peer_addr``."""
        self._move(Event.CONNECT)
        self._peer = peer
        connector = self._connector = Connector()
        try:
            with scope:
                part = await open_part(connector)
        except Exception as exc:
            if self._state is not State.CONNECTING:  # close() or reset() from another fiber: say that
                if isinstance(exc, trio.ClosedResourceError):
                    raise
                raise trio.ClosedResourceError("this socket was closed while connecting") from exc
            self._move(Event.CONNECT_FAILED)
            raise
        except BaseException:
            if self._state is State.CONNECTING:
                self._move(Event.CONNECT_FAILED)
            raise
        finally:
            self._connector = None
        if self._state is not State.CONNECTING:  # close() or reset() came as the connect or handshake ended
            part.close()
            raise trio.ClosedResourceError("this socket was closed while connecting")
        self._move(Event.CONNECTED)
        self._part = part

    async def connect_unix(
        self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], deadline: Deadline = None
    ) -> None:
        """Connect to the Unix domain socket at *path* before *deadline*.

        *path* is a ``str``, ``bytes`` or :class:`os.PathLike`; a leading NUL
        (``"\\0name"`` or ``b"\\0name"``) names Linux's abstract namespace.
        A socket that is already connected is closed first; on failure the
        socket is left unconnected and can be connected again.  The
        connection reads and writes as a TCP one does (deadlines,
        ``read_until``, ``send_file``, ``wait_readable``, statistics); TLS is
        refused (``upgrade_tls`` still works on the connection).  A listener
        whose queue is full is tried again until the deadline.

        Raises:
          ConnectError: nothing listens at *path* or the OS refused (``"Cannot
            connect socket to PATH: <OS reason>"``); ``errno`` is the OS error.
          DeadlineError: the deadline passed first.
          RSocketError: the socket has TLS settings (before any I/O).
          TypeError, ValueError: a bad *path* (empty, too long for
            ``sun_path``, a NUL inside a filesystem path), before any I/O.
          trio.BusyResourceError: another fiber is connecting this socket.
          trio.ClosedResourceError: another fiber closed or reset it meanwhile.
          RuntimeError: not under trio (trio_rsocket runs under trio only).
        """
        check_trio("connect_unix()")
        address, shown = _unix.check_unix_path(path)
        scope = deadline_scope(deadline, lambda: DeadlineError(f"Cannot connect socket to {shown} before the deadline"))
        with self._setup_guard or self._new_guard(SetupGuard):
            if self._settings.tls is not None:
                raise RSocketError(f"Cannot connect socket to {shown}: TLS over a Unix socket is not supported")
            self.reset()
            settings = self._settings
            # The path, as get_peer_addr gives it (the kernel may know the
            # listener by another name: _unix); not a (host, port), so an
            # upgrade_tls names the host to check.
            await self._attach(
                display_address(address)[0],
                scope,
                lambda connector: _setup.connect_unix(connector, address, shown, settings),
            )

    def _new_sessions(self) -> SessionCache:
        """The TLS session cache, made on first use."""
        sessions = self._sessions = SessionCache()
        return sessions

    async def upgrade_tls(self, host: str | None = None, deadline: Deadline = None) -> None:
        """Turn this plain connection into TLS (STARTTLS; Ioto's ``rUpgradeTls``),
        with this socket's TLS settings (the module defaults where none are set).

        A socket that :meth:`connect` made is the client (SNI and hostname
        check: *host*, else the host given to ``connect``); one a listener
        accepted, or ``from_socket(..., server_side=True)``, is the server
        (give it a certificate with :meth:`set_certs` first).  Plaintext that
        arrived before the upgrade and sits unread in this socket's buffer is
        refused: it must never come out as if it had been encrypted
        (STARTTLS injection, CVE-2011-0411).  A failed upgrade closes the
        socket: the connection is in no state to go on.  A mistake in the
        call itself (no name to check, no certificate, a TLS setting that
        cannot be used) is found before anything is sent, and leaves the
        connection as it was.

        Raises:
          TLSError: the handshake failed, or plaintext was waiting (the socket
            is closed either way); or a TLS setting cannot be used (not closed).
          DeadlineError: the handshake did not finish before *deadline* (closed).
          RSocketError: the socket is not a connected plain one, or a client
            has no name to check (not closed).
          trio.BusyResourceError: another fiber is reading, writing or connecting.
          trio.ClosedResourceError: another fiber closed or reset the socket meanwhile.
        """
        if host is not None:
            host = check_host(host)
        scope = deadline_scope(
            deadline, lambda: DeadlineError("TLS upgrade deadline passed before the handshake ended")
        )
        with (
            self._read_guard or self._new_guard(ReadGuard),
            self._write_guard or self._new_guard(WriteGuard),
            self._setup_guard or self._new_guard(SetupGuard),
        ):
            part = self._part
            if not isinstance(part, PlainConnection):
                why = "is already TLS" if part is not None else "is not connected"
                raise RSocketError(f"upgrade_tls needs a connected plain socket, and this one {why}")
            # Mistakes in the call come out before anything that cannot be undone.
            settings = self._settings
            tls_settings = settings.tls if settings.tls is not None else _tls.TLSSettings()
            server_side = settings.server_side
            if server_side:
                server = _tls.server_context(tls_settings, upgrade=True)
            else:
                if host is None and isinstance(self._peer, tuple):
                    host = self._peer[0]
                client = _setup.client_tls(tls_settings, host)
            if self._buffer:
                unread = len(self._buffer)
                self.close()
                raise TLSError(
                    f"{unread} bytes of plaintext arrived before the TLS upgrade and were not read: refused "
                    "(STARTTLS injection) and the socket closed"
                )
            if settings.tls is None:
                settings = self._settings = settings.replace(tls=tls_settings)
            sent_in_plain = part.bytes_sent  # the handshake's own bytes are not the program's
            try:
                with scope:
                    if server_side:
                        upgraded = await _secure.server_handshake(part, server, ragged_eof=settings.ragged_eof)
                    else:
                        port = self._peer[1] if isinstance(self._peer, tuple) else None
                        sessions = self._sessions or self._new_sessions()
                        upgraded = await _setup.client_upgrade(part, client, host, port, settings, sessions)
            except Exception as exc:
                if self._part is not part:  # close() or reset() from another fiber: say that
                    if isinstance(exc, trio.ClosedResourceError):
                        raise
                    raise trio.ClosedResourceError("this socket was closed during its TLS upgrade") from exc
                self.close()
                raise
            except BaseException:
                if self._part is part:
                    self.close()
                raise
            if self._part is not part:  # close() or reset() came as the handshake ended
                upgraded.close()
                raise trio.ClosedResourceError("this socket was closed during its TLS upgrade")
            self._sent_before += sent_in_plain
            self._move(Event.UPGRADE)
            self._part = upgraded
            self._stream = None  # a plain one's: the descriptor moved into the TLS socket

    # Read -------------------------------------------------------------

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE, deadline: Deadline = None) -> bytes:
        """Read 1 to *max_bytes* bytes, as soon as any are available (``rReadSocket``).

        Returns ``b""`` at end of file, after which :meth:`is_eof` is true.  A
        huge *max_bytes* reads what is there.  A read stopped by its deadline
        raises :class:`DeadlineError` and loses nothing: data that arrives
        later is returned by the next read.

        Raises:
          DeadlineError: nothing arrived before *deadline*.
          trio.ClosedResourceError: the socket was closed (also by another fiber
            while this one waited).
          trio.BrokenResourceError: the peer reset the connection (then
            :meth:`is_eof` is true, as Ioto's ``R_SOCKET_EOF``).
          trio.BusyResourceError: another fiber is already reading.
        """
        if type(max_bytes) is not int or not 0 < max_bytes <= READ_CAP:
            max_bytes = min(check_count(max_bytes), READ_CAP)
        if deadline is not None or self._buffer:
            data = await self._read_before(max_bytes, deadline)
        else:
            # The hot path, where an idle connection waits: the read guard
            # taken inline, as write() does (see Guard): ``with`` would cost
            # two calls per read and a method object on every idle connection.
            guard = self._read_guard or self._new_guard(ReadGuard)
            if guard.busy:
                raise trio.BusyResourceError(guard.busy_message)
            guard.busy = True
            try:
                if self._part is None:
                    raise self._not_open()
                data = await self._part.receive(max_bytes)
            except BaseException as exc:
                guard.failed(exc)
                raise
            finally:
                guard.busy = False
        self._bytes_read += len(data)
        return data

    async def _read_before(self, max_bytes: int, deadline: Deadline) -> bytes:
        """``read`` with a deadline, or from the buffer."""
        scope = deadline_scope(deadline, _read_expired)
        with self._read_guard or self._new_guard(ReadGuard):
            part = self._open_part()
            with scope:
                buffer = self._buffer
                return await (buffer.take(max_bytes) if buffer else part.receive(max_bytes))

    async def read_into(self, buffer: Buffer, deadline: Deadline = None) -> int:
        """Read into *buffer* (any writable bytes-like object); return the count.

        Returns ``0`` at end of file.  On plain TCP the kernel writes straight
        into *buffer*: no extra copy.  Otherwise as :meth:`read`.
        """
        view = writable_view(buffer)
        scope = deadline_scope(deadline, _read_expired)
        with self._read_guard or self._new_guard(ReadGuard):
            part = self._open_part()
            with scope:
                kept = self._buffer
                if kept:
                    data = await kept.take(len(view))
                    count = len(data)
                    view[:count] = data
                else:
                    count = await part.receive_into(view)
        self._bytes_read += count
        return count

    async def read_exactly(self, count: int, deadline: Deadline = None) -> bytes:
        """Read exactly *count* bytes.

        Raises:
          IncompleteReadError: end of file came first; ``partial`` holds what
            arrived (consumed).
          DeadlineError: the deadline passed first; what arrived so far stays
            buffered for the next read.
        """
        count = check_count(count, "count")
        expired = lambda: DeadlineError(f"Read deadline passed before {count} bytes arrived")  # noqa: E731
        buffer = self._read_buffer()
        return await self._read_buffered(buffer, buffer.exactly(count), count, count, deadline, expired)

    async def read_until(
        self, delimiter: bytes, max_bytes: int = DEFAULT_READ_SIZE, deadline: Deadline = None
    ) -> bytes:
        """Read up to and including *delimiter*, at most *max_bytes* in all.

        Raises:
          DelimiterNotFoundError: no delimiter within *max_bytes* (a
            :class:`ValueError`); nothing is consumed.
          IncompleteReadError: end of file before the delimiter; ``partial``
            holds what arrived (consumed).
          DeadlineError: the deadline passed first; what arrived so far stays
            buffered for the next read.
        """
        delimiter = bytes(data_view(delimiter, "delimiter"))
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        max_bytes = check_count(max_bytes)
        if len(delimiter) > max_bytes:
            raise ValueError(f"delimiter ({len(delimiter)} bytes) is longer than max_bytes ({max_bytes})")
        buffer = self._read_buffer()
        rule = buffer.through(delimiter, max_bytes)
        expired = lambda: DeadlineError(f"Read deadline passed before delimiter {delimiter!r} arrived")  # noqa: E731
        return await self._read_buffered(buffer, rule, max_bytes, None, deadline, expired)

    async def _read_buffered(
        self,
        buffer: ReadBuffer,
        rule: Rule,
        want: int,
        expected: int | None,
        deadline: Deadline,
        expired: Callable[[], DeadlineError],
    ) -> bytes:
        scope = deadline_scope(deadline, expired)
        with self._read_guard or self._new_guard(ReadGuard), scope:
            try:
                answer = await buffer.fill(self._receive, rule, want, expected)
            except IncompleteReadError as exc:
                self._bytes_read += len(exc.partial)
                raise
        self._bytes_read += len(answer)
        return answer

    def _receive(self, max_bytes: int) -> Awaitable[bytes]:
        # Looked up at each receive: a close() from another fiber ends the fill.
        return self._open_part().receive(max_bytes)

    # Write ------------------------------------------------------------

    async def write(self, data: Buffer, deadline: Deadline = None) -> int:
        """Write all of *data* (any bytes-like object) and return its length.

        (Ioto's ``rWriteSocket``, without the short writes: the fiber waits
        until everything is handed over.)

        Raises:
          DeadlineError: the deadline passed first; its ``bytes_written`` says
            exactly how many bytes reached the kernel (TLS: in whole records,
            the bytes the peer can decrypt) before that.
          trio.BrokenResourceError: the peer reset the connection.
          trio.ClosedResourceError: the socket was closed, or ``send_eof`` ran.
          trio.BusyResourceError: another fiber is already writing.
        """
        # bytes, the common case, needs no view: send() takes it as it is.
        view = data if type(data) is bytes else data_view(data)
        if deadline is not None:
            return await self._write_before(view, deadline)
        guard = self._write_guard or self._new_guard(WriteGuard)  # inline, as in read()
        if guard.busy:
            raise trio.BusyResourceError(guard.busy_message)
        guard.busy = True
        try:
            if self._part is None:
                raise self._not_open()
            await self._part.send(view)
        except BaseException as exc:
            guard.failed(exc)
            raise
        finally:
            guard.busy = False
        return len(view)

    async def _write_before(self, view: bytes | memoryview, deadline: Deadline) -> int:
        """``write`` with a deadline (``0``: none)."""
        part = self._part
        scope = _write_scope(part, deadline, len(view))
        with self._write_guard or self._new_guard(WriteGuard):
            if part is None:
                raise self._not_open()
            with scope:
                await part.send(view)
        return len(view)

    async def send_file(
        self, file: int | FileLike, offset: int = 0, count: int | None = None, deadline: Deadline = None
    ) -> int:
        """Send *count* bytes of *file* from *offset* (Ioto's ``rSendFile``);
        return how many went, fewer only when the file ends first.

        *file* is a descriptor or a binary file object with ``fileno()``;
        *count* ``None`` sends to the end of the file.  The file position is
        neither used nor moved.  Plain TCP: zero-copy (``os.sendfile``).  TLS:
        chunks read from the file in a worker thread and written through TLS.

        The file must not shrink while it is sent.  Plain TCP hands the
        kernel the file's pages, not a copy, and the kernel's ``sendfile``
        may still send bytes from past the point where a concurrent
        truncation cut the file (pages it had already taken: what was there,
        or zeros); TLS reads the file as it goes and stops where it now
        ends.  Send a copy of a file that others may truncate.

        Raises:
          DeadlineError: the deadline passed first; ``bytes_written`` is exact,
            as for :meth:`write`.
          FileReadError: the file could not be read (the message names it and
            gives the OS reason); the connection stays usable, and
            ``bytes_written`` says how much of the file went.
          TypeError, ValueError: not a file, a negative offset or count (before any I/O).
          trio.BrokenResourceError, trio.ClosedResourceError,
          trio.BusyResourceError: as for :meth:`write`.
        """
        fd, count = check_file(file, offset, count)
        part = self._part
        scope = _write_scope(part, deadline, count)
        with self._write_guard or self._new_guard(WriteGuard):
            if part is None:
                raise self._not_open()
            with scope:
                try:
                    return await part.send_file(fd, offset, count)
                except FileReadError as exc:
                    raise _naming(exc, file) from exc.__cause__

    async def wait_readable(self, deadline: Deadline = None) -> None:
        """Return as soon as a read would not block (Ioto's
        ``rSetSocketWaitMask(sock, R_READABLE, deadline)``): bytes buffered by
        ``read_until``/``read_exactly`` or decrypted by TLS, new data, and end
        of file all count, and so does a connection that broke (a reset, a TLS
        peer gone without close_notify), on plain TCP and TLS alike: the next
        read says how.

        Raises:
          DeadlineError: nothing to read before *deadline*, or it had passed
            already (even with data there: the same rule as :meth:`read`).
          trio.ClosedResourceError, trio.BusyResourceError: as for :meth:`read`.
        """
        scope = deadline_scope(deadline, lambda: DeadlineError("Wait deadline passed before the socket was readable"))
        with self._read_guard or self._new_guard(ReadGuard):
            part = self._open_part()
            with scope:
                if self._buffer or part.eof:
                    # A checkpoint inside the deadline: one already passed
                    # wins over data that is there, as it does for read.
                    await checkpoint()
                    return
                data = await part.wait_readable()
                if data:  # what TLS had to decrypt to tell, kept for the next read
                    self._read_buffer().extend(data)

    async def wait_writable(self, deadline: Deadline = None) -> None:
        """Return as soon as a write might not block (Ioto's
        ``rSetSocketWaitMask(sock, R_WRITABLE, deadline)``).

        Raises:
          DeadlineError: the socket could take nothing before *deadline*.
          trio.ClosedResourceError, trio.BusyResourceError: as for :meth:`write`.
        """
        scope = deadline_scope(deadline, lambda: DeadlineError("Wait deadline passed before the socket was writable"))
        with self._write_guard or self._new_guard(WriteGuard):
            part = self._open_part()
            with scope:
                await part.wait_writable()

    # trio.abc.HalfCloseableStream -------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Stream interface: write all of *data* (no deadline)."""
        await self.write(data)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Stream interface: read up to *max_bytes* (default 65536); ``b""`` at EOF."""
        return await self.read(DEFAULT_READ_SIZE if max_bytes is None else max_bytes)

    async def wait_send_all_might_not_block(self) -> None:
        """Stream interface: :meth:`wait_writable` without a deadline."""
        await self.wait_writable()

    async def send_eof(self) -> None:
        """Half-close: tell the peer no more data is coming; reads go on.

        Idempotent.  Writes afterwards raise :class:`trio.ClosedResourceError`.
        TLS has no half-close, so on a TLS socket this raises :class:`TLSError`.
        """
        with self._write_guard or self._new_guard(WriteGuard):
            await self._open_part().send_eof()

    # Close ------------------------------------------------------------

    def close(self) -> None:
        """Close now (Ioto's ``rCloseSocket``): synchronous, immediate, idempotent.

        Fibers blocked on the socket wake with :class:`trio.ClosedResourceError`.
        Afterwards :meth:`is_closed` and :meth:`is_eof` are true and
        :meth:`get_handle` is -1.  A TLS socket is closed without close_notify;
        use :meth:`aclose` for that.  On a listener it stops the accept loop
        and frees the port; handlers already running go on (see :meth:`shutdown`).
        """
        part, connector, listening = self._part, self._connector, self._state is State.LISTENING
        self._part = self._connector = self._stream = None
        self._move(Event.CLOSE)
        # What was received and not yet read goes with the connection.
        self._buffer = None
        if part is not None:
            self._sent_before += part.bytes_sent
            part.close()
        if connector is not None:
            connector.close()
        if listening and self._listener is not None:  # None: closed while it bound
            self._listener.close()

    async def aclose(self) -> None:
        """Close gracefully: TLS sends close_notify first (meanwhile the socket
        is ``closing``: not connected, no handle).  Always closes, even when
        cancelled, and is a checkpoint.  A ``close`` or ``reset`` from another
        fiber meanwhile has the last word."""
        part = self._part
        try:
            if isinstance(part, _secure.TLSConnection) and self._state is State.OPEN:
                self._move(Event.CLOSE_NOTIFY)  # no longer connected while close_notify goes
                await part.aclose()
            else:
                check_trio("aclose()")  # the checkpoint below would say "Task got bad yield"
                await checkpoint()
        finally:
            if self._part is part:  # not closed, or reset, by another fiber meanwhile
                self.close()

    def disconnect(self) -> None:
        """Shut both directions down but keep the handle (``rDisconnectSocket``).

        Reads then return end of file, writes fail; :meth:`close` still has to
        release the handle.
        """
        if self._part is not None:
            self._part.disconnect()

    def reset(self) -> None:
        """Close and clear state, so the socket can connect again (``rResetSocket``).

        Options and TLS settings are kept; the error message, EOF and closed
        state and any buffered data are cleared.  A ``connect``, ``listen`` or
        ``upgrade_tls`` running in another fiber stops as it would for
        :meth:`close` (:class:`trio.ClosedResourceError`), and leaves the
        socket fresh.
        """
        self.close()
        self._move(Event.RESET)
        self._peer = None  # a PROXY header's addresses were the last connection's
        if self._settings.local_name is not None:  # the listener's path was the last connection's
            self._settings = self._settings.replace(local_name=None)
        for guard in (self._read_guard, self._write_guard, self._setup_guard):
            if guard is not None:
                guard.failure = None

    # Options -----------------------------------------------------------

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
        self._settings = self._settings.replace(no_delay=bool(enable))
        if self._part is not None and self._state is State.OPEN:
            apply_options(self._part.raw, self._settings.no_delay, None)

    def set_linger(self, seconds: int) -> None:
        """Set SO_LINGER (``rSetSocketLinger``): close waits up to *seconds* to
        deliver unsent data; ``0`` makes close send a reset (RST) at once."""
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise TypeError(f"seconds must be an int, not {type(seconds).__name__}")
        if not 0 <= seconds <= MAX_LINGER:
            raise ValueError(f"seconds must be in 0..{MAX_LINGER}, not {seconds}")
        self._settings = self._settings.replace(linger=seconds)
        if self._part is not None and self._state is State.OPEN:
            apply_options(self._part.raw, self._settings.no_delay, seconds)

    # ------------------------------------------------------------------
    # TLS
    # ------------------------------------------------------------------

    def _change_tls(self, **changes: object) -> None:
        # A running listener keeps the settings (and context) it started with.
        self._settings = self._settings.with_tls(**changes)

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
        return self._part if isinstance(self._part, _secure.TLSConnection) else None

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
        if ssl_stream is not None and not self._settings.server_side and not ssl_stream.session_reused:
            return ssl_stream.session
        # A resumed connection's session is the one it was offered (kept by
        # SessionCache.keep): reading the live one leaks a copy on Python 3.11.
        return self._sessions.session() if self._sessions is not None else None

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
        (self._sessions or self._new_sessions()).set(session)

    def is_session_reused(self) -> bool:
        """Whether the TLS handshake resumed a session (``False`` for plain TCP)."""
        ssl_stream = self._ssl()
        return ssl_stream.session_reused if ssl_stream is not None else False

    # Listen ------------------------------------------------------------

    @overload
    async def listen(
        self,
        host: str | None,
        port: int,
        handler: Callable[[None, Self], Awaitable[object]],
        data: None = None,
        *,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
        reuse_port: bool = False,
        handshake_timeout: float = 30,
        proxy_protocol: bool = False,
        proxy_from: _proxy.ProxyFrom = None,
    ) -> None: ...

    @overload
    async def listen(
        self,
        host: str | None,
        port: int,
        handler: Callable[[DataT, Self], Awaitable[object]],
        data: DataT,
        *,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
        reuse_port: bool = False,
        handshake_timeout: float = 30,
        proxy_protocol: bool = False,
        proxy_from: _proxy.ProxyFrom = None,
    ) -> None: ...

    async def listen(
        self,
        host: str | None,
        port: int,
        handler: Callable[[Any, Self], Awaitable[object]],
        data: Any = None,
        *,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
        reuse_port: bool = False,
        handshake_timeout: float = 30,
        proxy_protocol: bool = False,
        proxy_from: _proxy.ProxyFrom = None,
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
        allows, and so is any number past that (the OS cuts it down).
        *handler* is any async callable (an ``async def``, a
        :func:`functools.partial` of one, ...).  An IPv6 address may come in
        brackets (``"[::1]"``).  *handshake_timeout* may be ``math.inf``
        (an int past float range reads as that).

        The accept loop runs in *nursery*, or the current runtime's
        (:func:`trio_rsocket.open_runtime`).  Each connection gets a
        server-side socket (TCP_NODELAY on, this socket's options and TLS
        settings inherited); a TLS handshake must finish within
        *handshake_timeout* seconds, else it is logged and the connection
        dropped.  The socket is closed when the handler returns.  An exception
        from a handler is logged with its traceback on the ``"trio_rsocket"``
        logger and stops nothing else.  Past the socket limit
        (:func:`trio_rsocket.set_socket_limit`) a connection is closed at once
        and a warning logged.  :meth:`close` stops accepting and frees the
        port (running handlers go on); :meth:`shutdown` also waits for, then
        cancels, the handlers.

        A listening socket this process was given for this address is adopted
        instead of binding a new one: one passed by systemd's socket
        activation, by :func:`trio_rsocket.run`'s supervisor to a worker, or
        bound by ``run(..., listen=[...])`` (port 0 then matches its port-0
        sockets in order); see :func:`trio_rsocket.inherited_sockets`.  Its
        backlog and options are those it was made with; :meth:`close` closes
        it as it would a socket of its own.

        With *proxy_protocol* true, every connection must start with a PROXY
        protocol header (HAProxy's, version 1 or 2; :doc:`/deploying`), read
        before the TLS handshake and within the same *handshake_timeout*:
        :meth:`get_peer_addr` then returns the client's address the header
        carries (for a ``LOCAL`` or ``UNKNOWN`` header, the connection's own)
        and :meth:`get_proxy_info` the rest.  *proxy_from* names who may send
        headers: an address or network (``"10.0.0.0/8"``, ``"::1"``, or an
        :mod:`ipaddress` object), or a list of them; ``None`` is loopback
        (127.0.0.0/8 and ::1; IPv4-mapped addresses count as IPv4).  A
        connection from anywhere else, or whose header is malformed, longer
        than the protocol allows, late, or cut short, is closed, logged as a
        warning and counted in :attr:`SocketStatistics.proxy_refused`; its
        handler never runs.  A header is never guessed at: a listener either
        requires one on every connection or takes none.

        Raises:
          ListenError: the name does not resolve, or the address cannot be
            bound (in use, ...); ``errno`` is the OS error.
          trio.BusyResourceError: another fiber is connecting or listening.
          RuntimeError: no *nursery* and no current runtime; or not under
            trio (trio_rsocket runs under trio only).
          TypeError, ValueError: a bad argument, before any I/O.
        """
        check_trio("listen()")
        host, target, backlog, timeout = check_listen_arguments(
            host, port, handler, nursery, backlog, reuse_port, handshake_timeout
        )
        trusted = _proxy.check_proxy_arguments(proxy_protocol, proxy_from)
        with self._setup_guard or self._new_guard(SetupGuard):
            self.reset()
            self._listener = None  # the last one's counters go with it
            settings = self._settings.replace(server_side=True)
            if settings.tls is not None:
                # Built once for every connection; configuration errors before binding.
                settings = settings.replace(server_context=_tls.server_context(settings.tls))
            self._move(Event.LISTEN)
            try:
                raw = await open_listening_socket(host, port, backlog, reuse_port)
            except BaseException:
                if self._state is State.LISTENING:
                    self._move(Event.LISTEN_FAILED)
                raise
            if self._state is not State.LISTENING:  # close() or reset() from another fiber while it bound
                raw.close()
                raise trio.ClosedResourceError("this socket was closed while it was binding")
            # Every socket it accepts shares *settings*, this socket's as they
            # are now (a later change is for the next listen).
            listener = self._listener = Listener(
                raw, handler, data, settings, type(self)._accepted, timeout, proxy_from=trusted
            )
            try:
                listener.start(target)
            except BaseException:
                self.close()  # a nursery closed to new arrivals: no accept loop, so no port
                raise

    @overload
    async def listen_unix(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        handler: Callable[[None, Self], Awaitable[object]],
        data: None = None,
        *,
        mode: int = 0o600,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
    ) -> None: ...

    @overload
    async def listen_unix(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        handler: Callable[[DataT, Self], Awaitable[object]],
        data: DataT,
        *,
        mode: int = 0o600,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
    ) -> None: ...

    async def listen_unix(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        handler: Callable[[Any, Self], Awaitable[object]],
        data: Any = None,
        *,
        mode: int = 0o600,
        nursery: trio.Nursery | None = None,
        backlog: int | None = None,
    ) -> None:
        """Listen on the Unix domain socket *path*; run ``await handler(data,
        sock)`` for each connection in a fiber of its own, as :meth:`listen`
        does (the same socket limit, statistics, :meth:`close` and
        :meth:`shutdown`).

        *handler* is required, as for :meth:`listen`: a listener without one
        would accept connections and do nothing with them.  *path* is a
        ``str``, ``bytes`` or :class:`os.PathLike`; a leading NUL names Linux's
        abstract namespace (no file; *mode* does not apply).  Returns once
        the socket is listening at *path*.

        The binding is race-free (see the Unix sockets page): the socket is
        bound under a temporary name in the same directory, given *mode*
        (default ``0o600``: the owner only) and set listening before it is
        renamed onto *path*, so a client never finds it with other
        permissions, and no temporary name is left behind, whatever happens.
        A live server's socket at *path* is never removed (:class:`ListenError`);
        a stale socket file (nobody listens) is replaced; any other kind of
        file is never touched (:class:`ListenError`).  :meth:`close` removes
        the socket file if it is still the one this listener made.  A
        listening socket at *path* this process inherited (systemd's socket
        activation, :func:`trio_rsocket.inherited_sockets`) is adopted
        instead of binding; its file, not this listener's, is never removed.

        Raises:
          ListenError: a server listens at *path*, something else is there,
            or the directory is missing or not writable; ``errno`` is the OS error.
          RSocketError: the socket has TLS settings (before any I/O).
          trio.BusyResourceError: another fiber is connecting or listening.
          RuntimeError: no *nursery* and no current runtime; or not under
            trio (trio_rsocket runs under trio only).
          TypeError, ValueError: a bad argument (a path too long for
            ``sun_path``, a NUL inside a filesystem path, a *mode* outside
            ``0..0o777``), before any I/O.
        """
        check_trio("listen_unix()")
        address, shown = _unix.check_unix_path(path)
        mode = _unix.check_mode(mode)
        _, target, backlog, timeout = check_listen_arguments(None, 0, handler, nursery, backlog, False, 30)
        with self._setup_guard or self._new_guard(SetupGuard):
            if self._settings.tls is not None:
                raise RSocketError(f"Cannot listen on {shown}: TLS over a Unix socket is not supported")
            self.reset()
            self._listener = None  # the last one's counters go with it
            settings = self._settings.replace(server_side=True, local_name=display_address(address))
            self._move(Event.LISTEN)
            try:
                raw, name = await _unix.open_unix_listening_socket(address, shown, mode, backlog)
            except BaseException:
                if self._state is State.LISTENING:
                    self._move(Event.LISTEN_FAILED)
                raise
            if self._state is not State.LISTENING:  # close() or reset() from another fiber while it bound
                _unix.close_unix_listening_socket(raw, name)
                raise trio.ClosedResourceError("this socket was closed while it was binding")
            listener = self._listener = _unix.UnixListener(
                raw, address, name, handler, data, settings, type(self)._accepted, timeout
            )
            try:
                listener.start(target)
            except BaseException:
                self.close()  # a nursery closed to new arrivals: no accept loop, so no socket file
                raise

    async def shutdown(self, grace: float | None = None) -> int:
        """Shut a listener down gracefully: stop accepting at once (the port is
        freed), let running handlers finish, and cancel those still running
        *grace* seconds from now (``None``: wait for them however long they
        take).  Returns how many handlers were cancelled.  Works after
        :meth:`close` too, for the handlers still running.

        Raises :class:`RuntimeError` if this socket never listened.
        """
        if grace is not None:
            grace = check_seconds(grace, "grace")
        listener = self._listener
        if listener is None:
            raise RuntimeError("shutdown() is for a listening socket; close a connection with close() or aclose()")
        if self._state is State.LISTENING:
            self.close()  # stops accepting: the listener's own shutdown waits for the rest
        return await listener.shutdown(grace)

    # State ------------------------------------------------

    def is_closed(self) -> bool:
        """True after :meth:`close` (``rIsSocketClosed``)."""
        return self._now() is State.CLOSED

    def is_eof(self) -> bool:
        """True once the peer's end of file was read, a read or write failed
        (a reset, say), :meth:`disconnect` ran, or after close
        (``rIsSocketEof``), on plain TCP and TLS alike."""
        return self._now() is State.CLOSED or (self._part is not None and self._part.eof)

    def is_secure(self) -> bool:
        """True if the socket uses TLS (``rIsSocketSecure``): from the first
        TLS setting on (as in Ioto), before and after it connects."""
        return self._settings.tls is not None or isinstance(self._part, _secure.TLSConnection)

    def is_connected(self) -> bool:
        """True while a connection is attached and not closed (``rIsSocketConnected``).

        Never true for a listening socket, nor while :meth:`aclose` runs.
        """
        return self._state is State.OPEN

    def _socket(self) -> stdlib_socket.socket:
        """The OS socket: the connection's or the listening one."""
        if self._part is not None and self._state is State.OPEN:
            return self._part.raw
        if self._now() is State.LISTENING and self._listener is not None:
            return self._listener.socket
        raise self._not_open()

    def get_handle(self) -> int:
        """The OS file descriptor, or -1 if there is none (``rGetSocketHandle``)."""
        return self._socket().fileno() if self._now() in (State.OPEN, State.LISTENING) else -1

    def get_addr(self) -> tuple[str, int]:
        """The local ``(ip, port)`` (``rGetSocketAddr``); for a Unix socket
        ``(path, 0)``, the path ``""`` when the socket has no name and, for a
        Linux abstract name, a str that starts with its NUL.  A
        :meth:`listen_unix` listener and the connections it accepts give its
        *path* (the kernel knows them by the temporary name bound before the
        rename).

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        raw = self._socket()
        listener = self._listener
        if isinstance(listener, _unix.UnixListener) and self._state is State.LISTENING:
            return listener.address  # the kernel knows it by its name before the rename
        local_name = self._settings.local_name
        if local_name is not None:
            return local_name  # accepted by a Unix listener: its path, as above
        return display_address(raw.getsockname())

    def get_peer_addr(self) -> tuple[str, int]:
        """The peer's ``(ip, port)``; for a Unix socket ``(path, 0)``, as
        :meth:`get_addr` gives it (``""``: the peer's socket has no name, as
        a client's usually has not), and after :meth:`connect_unix` the path
        it connected to.  On a connection a
        ``proxy_protocol=True`` listener accepted: the client's address its
        PROXY header carries (:attr:`ProxyInfo.source`), the connection's own
        when the header has none.

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        raw = self._socket()
        peer = self._peer
        if type(peer) is str:
            return (peer, 0)  # the path connect_unix connected to
        if isinstance(peer, _proxy.ProxyInfo) and peer.source is not None:
            return peer.source
        try:
            return display_address(raw.getpeername())
        except OSError as exc:
            raise stream_error(exc) from exc

    def get_proxy_info(self) -> _proxy.ProxyInfo | None:
        """What the PROXY protocol header of this connection said (the
        client's and the balancer's addresses, ALPN, authority), or ``None``
        if it came through no ``proxy_protocol=True`` listener."""
        peer = self._peer
        return peer if isinstance(peer, _proxy.ProxyInfo) else None

    def get_error(self) -> str:
        """The message of the last error on this socket, ``""`` if none (``rGetSocketError``)."""
        return last_failure(self._read_guard, self._write_guard, self._setup_guard)

    @property
    def stream(self) -> trio.SocketStream | _secure.TLSStream | None:
        """A :class:`~trio_rsocket.TLSStream` over a TLS connection, a
        :class:`trio.SocketStream` over a plain one (made on first use), or
        ``None`` when not connected.

        It shares the connection: bytes already buffered by ``read_until`` /
        ``read_exactly`` are not in it, and it must not be used concurrently
        with this socket's own reads or writes.
        """
        part = self._part
        if isinstance(part, _secure.TLSConnection):
            if self._stream is None:
                self._stream = _secure.TLSStream(part)
            return self._stream
        if part is not None and self._stream is None:
            self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(part.raw))
            # SocketStream turns TCP_NODELAY on; keep what the user chose.
            apply_options(part.raw, self._settings.no_delay, None)
        return self._stream

    def statistics(self) -> SocketStatistics:
        """Counters of this socket's traffic (and, for a listener, its connections)."""
        written = self._sent_before + (self._part.bytes_sent if self._part is not None else 0)
        listener = self._listener
        if listener is None:
            return SocketStatistics(bytes_read=self._bytes_read, bytes_written=written)
        return SocketStatistics(
            self._bytes_read,
            written,
            listener.accepted,
            listener.active,
            listener.rejected,
            listener.handler_errors,
            listener.handshakes_cancelled,
            listener.proxy_refused,
        )

    def __repr__(self) -> str:
        handle = f" fd={self.get_handle()}" if self._now() in (State.OPEN, State.LISTENING) else ""
        tls = " tls" if isinstance(self._part, _secure.TLSConnection) else ""
        return f"<RSocket {self._state.value}{handle}{tls}>"

    # Unix sockets: peer credentials and passing descriptors ------------

    def _unix_part(self, call: str, *, tls: bool = False) -> Part:
        """The part of this socket's Unix connection, for *call* (a plain
        one unless *tls* says a TLS one will do too), or the error that says
        why there is none: :class:`RSocketError`, or, closed, what every
        other call raises then."""
        part = self._part
        if part is not None and self._state is State.OPEN:
            unix = part.raw.family == stdlib_socket.AF_UNIX
            secure = isinstance(part, _secure.TLSConnection)
            if unix and (tls or not secure):
                return part
            kind = "TLS over TCP" if secure else "TCP"
            why = "is TLS: descriptors cannot ride a TLS stream" if unix else f"is {kind}"
        elif self._now() in (State.CLOSED, State.CLOSING):
            raise self._not_open()
        else:
            why = "is listening" if self._state is State.LISTENING else "is not connected"
        raise RSocketError(f"{call} needs a connected Unix socket, and this one {why}")

    def get_peer_credentials(self) -> PeerCredentials:
        """The process at the other end of this Unix socket, as a
        :class:`~trio_rsocket.PeerCredentials` ``(pid, uid, gid)``: the
        kernel's record of it from when the connection was made (or the pair
        created), which the peer cannot forge.  Linux (and OpenBSD):
        ``SO_PEERCRED``; macOS, FreeBSD, DragonFly: ``LOCAL_PEERCRED``, what
        ``getpeereid`` reads (and macOS's ``LOCAL_PEERPID``); the pid is
        ``None`` where the OS does not give one.  Other systems: RSocketError.  Works over TLS on a
        Unix socket too (no Ioto counterpart).

        Raises:
          RSocketError: the socket is not a connected Unix socket (TCP,
            listening, not connected), or the OS could not say.
          trio.ClosedResourceError: the socket was closed.
        """
        return peer_credentials(self._unix_part("get_peer_credentials", tls=True).raw)

    async def write_fds(self, data: Buffer, fds: Sequence[int], deadline: Deadline = None) -> int:
        """Write all of *data* with the open descriptors *fds* (``SCM_RIGHTS``);
        return the length of *data* (no Ioto counterpart).

        The peer receives new descriptors of the same open files (pipes,
        sockets, files) with :meth:`read_fds`; *fds* stay open here and stay
        the caller's.  Descriptors ride on bytes, so *data* must not be
        empty: they go with the first bytes the kernel takes, the rest of
        *data* follows as :meth:`write` sends it.  *fds* may be empty (then
        this is :meth:`write`); at most 253 (Linux's ``SCM_MAX_FD``).

        Raises:
          DeadlineError: the deadline passed first; ``bytes_written`` is exact,
            as for :meth:`write` (the descriptors went with the first of those
            bytes if any went, else not at all).
          RSocketError: the socket is not a connected plain Unix socket (TCP,
            TLS, listening, not connected); or the kernel would not pass the
            descriptors (nothing was sent; the message gives the OS reason).
          TypeError, ValueError: *data* is not bytes-like or is empty, or
            *fds* is not a sequence of open descriptors (the error names the
            one at fault), before any I/O.
          trio.BrokenResourceError, trio.ClosedResourceError,
          trio.BusyResourceError: as for :meth:`write`.
        """
        view = data_view(data)
        if not view:
            raise ValueError("data must not be empty: descriptors ride on at least one byte")
        descriptors = check_fds(fds)
        part = self._part
        scope = _write_scope(part, deadline, len(view))
        with self._write_guard or self._new_guard(WriteGuard):
            connection = self._unix_part("write_fds")
            assert isinstance(connection, PlainConnection)  # _unix_part's rule
            with scope:
                await send_fds(connection, view, descriptors)
        return len(view)

    async def read_fds(self, max_bytes: int, max_fds: int, deadline: Deadline = None) -> tuple[bytes, list[int]]:
        """Read 1 to *max_bytes* bytes and the descriptors that came with them,
        at most *max_fds* (``SCM_RIGHTS``; no Ioto counterpart).

        Returns ``(data, fds)``; ``(b"", [])`` at end of file, as :meth:`read`.
        The descriptors are new, non-inheritable (close-on-exec, as Python
        opens every descriptor: PEP 446) and belong to the caller, who must
        close them (``os.close``, or ``open(fd)`` / ``socket.socket(fileno=fd)``
        to hand one to an object that will).  More than *max_fds* (up to 253
        count) are closed here: ask for as many as the peer may send.

        Descriptors travel with the bytes they were sent with: a read that
        returns those bytes without asking for descriptors (:meth:`read`, or
        :meth:`read_until` and :meth:`read_exactly`, which read ahead) makes
        the kernel close them.  Read a peer that sends descriptors with
        ``read_fds``.  Bytes that an earlier ``read_until``/``read_exactly``
        buffered are returned first, with no descriptors.  A read stopped by
        its deadline loses nothing, bytes nor descriptors.

        Raises:
          DeadlineError: nothing arrived before *deadline*.
          RSocketError: the socket is not a connected plain Unix socket (TCP,
            TLS, listening, not connected).
          TypeError, ValueError: *max_bytes* or *max_fds* is not an int of 1
            or more, before any I/O.
          trio.BrokenResourceError, trio.ClosedResourceError,
          trio.BusyResourceError: as for :meth:`read`.
        """
        max_bytes = min(check_count(max_bytes), READ_CAP)
        max_fds = min(check_count(max_fds, "max_fds"), MAX_FDS)
        scope = deadline_scope(deadline, _read_expired)
        with self._read_guard or self._new_guard(ReadGuard):
            connection = self._unix_part("read_fds")
            assert isinstance(connection, PlainConnection)  # _unix_part's rule
            with scope:
                buffer = self._buffer
                fds: list[int] = []
                if buffer:
                    data = await buffer.take(max_bytes)
                else:
                    data, fds = await receive_fds(connection, max_bytes, max_fds)
        self._bytes_read += len(data)
        return data, fds


def _read_expired() -> DeadlineError:
    return DeadlineError("Read deadline passed before any data arrived")


def _naming(error: FileReadError, file: object) -> FileReadError:
    """*error*, from a part that knows the file only by its descriptor, with
    the name of a file object that has one (``open(path, "rb")``)."""
    name = getattr(file, "name", None)
    cause = error.__cause__
    if isinstance(file, int) or not isinstance(name, str) or not isinstance(cause, OSError):
        return error
    return file_error(repr(name), cause, error.bytes_written)


def _write_scope(part: Part | None, deadline: Deadline, total: int) -> AbstractContextManager[None]:
    """The deadline scope of a write of *total* bytes through *part*, whose
    DeadlineError says exactly how many went."""
    start = part.bytes_sent if part is not None else 0
    return deadline_scope(deadline, lambda: _write_expired(part.bytes_sent - start if part else 0, total))


def _write_expired(sent: int, total: int) -> DeadlineError:
    return DeadlineError(f"Write deadline passed after {sent} of {total} bytes", bytes_written=sent)
