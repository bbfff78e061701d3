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
* the **listener** (``_listen.Listener``) runs the accept loop.

What stays here is what belongs to the socket, whatever part it has: the
state, one conflict guard per direction (read, write, connect/listen) that
also records the last error, the call's deadline (``_deadline.deadline_scope``),
the read buffer behind ``read_until``/``read_exactly`` (``_buffer``) and the
statistics.  The listening role is the ``_listen.Listening`` base class, the
options and TLS settings that outlive a connection the ``_options.Options``
one (docs/design.rst draws the whole).

Reads are served from the buffer first: bytes that ``read_until`` or
``read_exactly`` pulled in but did not return.  Nothing the peer sent is ever
dropped, except by ``close``, after which every read raises
:class:`trio.ClosedResourceError`.
"""

from __future__ import annotations

import socket as stdlib_socket
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import trio
from trio.lowlevel import checkpoint

from . import _listen, _secure, _tls
from ._address import display_address, host_port
from ._arguments import (
    READ_CAP,
    FileLike,
    check_count,
    check_file,
    check_host,
    check_port,
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
from ._listen import Listening
from ._options import KeptSession
from ._plain import Connector, PlainConnection, apply_options, close_socket
from ._runtime import check_not_asyncio, check_trio
from ._state import MOVES, Guard, ReadGuard, SetupGuard, State, WriteGuard, check_move, last_failure

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ["DEFAULT_READ_SIZE", "RSocket", "SocketStatistics"]

#: How many bytes ``read`` asks for when not told (trio's default too).
DEFAULT_READ_SIZE: Final = 65536

_T = TypeVar("_T")
_G = TypeVar("_G", bound=Guard)
# Where an RSocket keeps the guard of each direction.
_GUARD_SLOTS: Final[dict[type[Guard], str]] = {
    ReadGuard: "_read_guard",
    WriteGuard: "_write_guard",
    SetupGuard: "_setup_guard",
}
_Connection = PlainConnection | _secure.TLSConnection


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
    """

    bytes_read: int = 0
    bytes_written: int = 0
    accepted: int = 0
    active: int = 0
    rejected: int = 0
    handler_errors: int = 0


class RSocket(Listening, trio.abc.HalfCloseableStream):
    """A socket with Ioto's API: straight-line calls, absolute deadlines.

    ``RSocket()`` makes an unconnected socket (Ioto's ``rAllocSocket``).
    Connect it with :meth:`connect`, or make it a server with :meth:`listen`.
    It is a :class:`trio.abc.HalfCloseableStream`, so anything in the trio
    world that takes a stream takes an ``RSocket``; ``async with RSocket() as
    s:`` closes it on exit.  Every async method is a trio checkpoint.
    """

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_bytes_read",
        "_conn",
        "_connector",
        "_peer",
        "_read_guard",
        "_sent_before",
        "_setup_guard",
        "_state",
        "_stream",
        "_write_guard",
    )

    def __init__(self) -> None:
        self._state = State.FRESH
        # The part for the state: a connection (OPEN), the connect in flight
        # (CONNECTING), the listening socket and its accept loop (LISTENING;
        # the listener is kept after close for statistics()).
        self._conn: _Connection | None = None
        self._connector: Connector | None = None
        self._listener: _listen.Listener | None = None
        # The guards, and the buffer behind read_until/read_exactly, are made
        # on first use: an idle connection keeps only what it uses.
        self._read_guard: ReadGuard | None = None
        self._write_guard: WriteGuard | None = None
        self._setup_guard: SetupGuard | None = None
        self._buffer: ReadBuffer | None = None
        self._bytes_read = 0
        self._sent_before = 0  # bytes written by connections this socket had before
        self._stream: trio.SocketStream | _secure.TLSStream | None = None  # .stream, made on demand
        # What outlives a connection: options, TLS settings; a listener's
        # server context, built once by listen() and shared with every
        # socket it accepts; which side of the connection this is.
        self._no_delay: bool | None = None
        self._linger: int | None = None
        self._tls_settings: _tls.TLSSettings | None = None
        self._server_tls_context: ssl.SSLContext | None = None
        self._server_side = False
        # The host and port connect() was given (the name a TLS upgrade
        # checks); the TLS session to offer at the next connect.
        self._peer: tuple[str, int] | None = None
        self._session: ssl.SSLSession | KeptSession | None = None

    # State and parts --------------------------------------------------

    def _move(self, state: State) -> None:
        if state not in MOVES[self._state]:  # check_move's rule, written out: on every accept and close
            check_move(self._state, state)
        self._state = state

    def _attach(self, conn: _Connection) -> None:
        """Make *conn* this socket's connection (OPEN)."""
        self._move(State.OPEN)
        self._conn = conn

    def _new_guard(self, kind: type[_G]) -> _G:
        """The guard of one direction, made on its first use."""
        guard = kind()
        setattr(self, _GUARD_SLOTS[kind], guard)
        return guard

    def _filling(self) -> ReadBuffer:
        """The read buffer, made on first use."""
        if self._buffer is None:
            self._buffer = ReadBuffer()
        return self._buffer

    def _connection(self) -> _Connection:
        """The connection part, or the error that says why there is none."""
        if self._conn is None:
            raise self._not_open()
        return self._conn

    def _not_open(self) -> trio.ClosedResourceError:
        """The error for I/O without a connection, saying why there is none."""
        why = {State.CLOSED: "was closed", State.CLOSING: "is closing", State.LISTENING: "is listening, not connected"}
        return trio.ClosedResourceError(f"this socket {why.get(self._state, 'is not connected')}")

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
        adopted._server_side = bool(server_side)
        adopted._attach(PlainConnection(raw))
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
            happy_eyeballs_delay = _listen.check_seconds(happy_eyeballs_delay, "happy_eyeballs_delay")
        scope = deadline_scope(
            deadline, lambda: DeadlineError(f"Cannot connect socket to {host_port(host, port)} before the deadline")
        )
        with self._setup_guard or self._new_guard(SetupGuard):
            self.reset()
            # TLS configuration errors (a missing key file, ...) come before any I/O.
            tls = _tls.client_context(self._tls_settings) if self._tls_settings is not None else None
            self._move(State.CONNECTING)
            self._peer = (host, port)
            connector = self._connector = Connector()
            conn: _Connection | None = None
            try:
                with scope:
                    conn = PlainConnection(
                        await connector.connect(host, port, happy_eyeballs_delay), self._no_delay, self._linger
                    )
                    connector.hold(conn)  # a close() now wakes the handshake too
                    if tls is not None:
                        offered = self._offered_session(tls, host, port)
                        conn = await _secure.client_handshake(conn, tls, host, offered, ragged_eof=self._ragged_eof())
                        self._keep_session(conn, tls, host, port, offered)
            except Exception as exc:
                if conn is not None:
                    conn.close()
                if self._state is not State.CONNECTING:  # close() or reset() from another fiber: say that
                    if isinstance(exc, trio.ClosedResourceError):
                        raise
                    raise trio.ClosedResourceError("this socket was closed while connecting") from exc
                self._move(State.FRESH)
                raise
            except BaseException:
                if conn is not None:
                    conn.close()
                if self._state is State.CONNECTING:
                    self._move(State.FRESH)
                raise
            finally:
                self._connector = None
            assert conn is not None
            if self._state is not State.CONNECTING:  # close() or reset() came as the handshake ended
                conn.close()
                raise trio.ClosedResourceError("this socket was closed while connecting")
            self._attach(conn)

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
            conn = self._conn
            if not isinstance(conn, PlainConnection):
                why = "is already TLS" if conn is not None else "is not connected"
                raise RSocketError(f"upgrade_tls needs a connected plain socket, and this one {why}")
            # Mistakes in the call come out before anything that cannot be undone.
            settings = self._tls_settings if self._tls_settings is not None else _tls.TLSSettings()
            if self._server_side:
                server = _tls.server_context(settings, upgrade=True)
            else:
                client, host = self._client_tls(settings, host)
            if self._buffer:
                unread = len(self._buffer)
                self.close()
                raise TLSError(
                    f"{unread} bytes of plaintext arrived before the TLS upgrade and were not read: refused "
                    "(STARTTLS injection) and the socket closed"
                )
            self._tls_settings = settings
            sent_in_plain = conn.bytes_sent  # the handshake's own bytes are not the program's
            try:
                with scope:
                    if self._server_side:
                        upgraded = await _secure.server_handshake(conn, server, ragged_eof=self._ragged_eof())
                    else:
                        upgraded = await self._client_upgrade(conn, client, host)
            except Exception as exc:
                if self._conn is not conn:  # close() or reset() from another fiber: say that
                    if isinstance(exc, trio.ClosedResourceError):
                        raise
                    raise trio.ClosedResourceError("this socket was closed during its TLS upgrade") from exc
                self.close()
                raise
            except BaseException:
                if self._conn is conn:
                    self.close()
                raise
            if self._conn is not conn:  # close() or reset() came as the handshake ended
                upgraded.close()
                raise trio.ClosedResourceError("this socket was closed during its TLS upgrade")
            self._sent_before += sent_in_plain
            self._move(State.OPEN)
            self._conn = upgraded
            self._stream = None  # a plain one's: the descriptor moved into the TLS socket

    def _client_tls(self, settings: _tls.TLSSettings, host: str | None) -> tuple[_tls.TLSContext, str | None]:
        """The context of a client's upgrade, and the name it checks."""
        tls = _tls.client_context(settings)
        if host is None and self._peer is not None:
            host = self._peer[0]
        if host is None and (tls.context.check_hostname or tls.forgives_issuer):
            raise RSocketError("upgrade_tls(host=...) needs the name to check: this socket was not made by connect")
        return tls, host

    async def _client_upgrade(
        self, conn: PlainConnection, tls: _tls.TLSContext, host: str | None
    ) -> _secure.TLSConnection:
        port = self._peer[1] if self._peer is not None else None
        offered = self._offered_session(tls, host, port)
        upgraded = await _secure.client_handshake(conn, tls, host, offered, ragged_eof=self._ragged_eof())
        self._keep_session(upgraded, tls, host, port, offered)
        return upgraded

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
                if self._conn is None:
                    raise self._not_open()
                data = await self._conn.receive(max_bytes)
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
            conn = self._connection()
            with scope:
                buffer = self._buffer
                return await (buffer.take(max_bytes) if buffer else conn.receive(max_bytes))

    async def read_into(self, buffer: Buffer, deadline: Deadline = None) -> int:
        """Read into *buffer* (any writable bytes-like object); return the count.

        Returns ``0`` at end of file.  On plain TCP the kernel writes straight
        into *buffer*: no extra copy.  Otherwise as :meth:`read`.
        """
        view = writable_view(buffer)
        scope = deadline_scope(deadline, _read_expired)
        with self._read_guard or self._new_guard(ReadGuard):
            conn = self._connection()
            with scope:
                kept = self._buffer
                if kept:
                    data = await kept.take(len(view))
                    count = len(data)
                    view[:count] = data
                else:
                    count = await conn.receive_into(view)
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
        buffer = self._filling()
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
        buffer = self._filling()
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
        return self._connection().receive(max_bytes)

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
            if self._conn is None:
                raise self._not_open()
            await self._conn.send(view)
        except BaseException as exc:
            guard.failed(exc)
            raise
        finally:
            guard.busy = False
        return len(view)

    def _counted(self, deadline: Deadline, total: int) -> tuple[_Connection | None, AbstractContextManager[None]]:
        """The connection and the deadline scope of a write of *total* bytes,
        whose DeadlineError says exactly how many went."""
        conn = self._conn
        start = conn.bytes_sent if conn is not None else 0
        return conn, deadline_scope(deadline, lambda: _write_expired(conn.bytes_sent - start if conn else 0, total))

    async def _write_before(self, view: bytes | memoryview, deadline: Deadline) -> int:
        """``write`` with a deadline (``0``: none)."""
        conn, scope = self._counted(deadline, len(view))
        with self._write_guard or self._new_guard(WriteGuard):
            if conn is None:
                raise self._not_open()
            with scope:
                await conn.send(view)
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
        conn, scope = self._counted(deadline, count)
        with self._write_guard or self._new_guard(WriteGuard):
            if conn is None:
                raise self._not_open()
            with scope:
                try:
                    return await conn.send_file(fd, offset, count)
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
            conn = self._connection()
            with scope:
                if self._buffer or conn.eof:
                    # A checkpoint inside the deadline: one already passed
                    # wins over data that is there, as it does for read.
                    await checkpoint()
                    return
                data = await conn.wait_readable()
                if data:  # what TLS had to decrypt to tell, kept for the next read
                    self._filling().extend(data)

    async def wait_writable(self, deadline: Deadline = None) -> None:
        """Return as soon as a write might not block (Ioto's
        ``rSetSocketWaitMask(sock, R_WRITABLE, deadline)``).

        Raises:
          DeadlineError: the socket could take nothing before *deadline*.
          trio.ClosedResourceError, trio.BusyResourceError: as for :meth:`write`.
        """
        scope = deadline_scope(deadline, lambda: DeadlineError("Wait deadline passed before the socket was writable"))
        with self._write_guard or self._new_guard(WriteGuard):
            conn = self._connection()
            with scope:
                await conn.wait_writable()

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
            await self._connection().send_eof()

    # Close ------------------------------------------------------------

    def close(self) -> None:
        """Close now (Ioto's ``rCloseSocket``): synchronous, immediate, idempotent.

        Fibers blocked on the socket wake with :class:`trio.ClosedResourceError`.
        Afterwards :meth:`is_closed` and :meth:`is_eof` are true and
        :meth:`get_handle` is -1.  A TLS socket is closed without close_notify;
        use :meth:`aclose` for that.  On a listener it stops the accept loop
        and frees the port; handlers already running go on (see :meth:`shutdown`).
        """
        conn, connector, listening = self._conn, self._connector, self._state is State.LISTENING
        self._conn = self._connector = self._stream = None
        self._move(State.CLOSED)
        # What was received and not yet read goes with the connection.
        self._buffer = None
        if conn is not None:
            self._sent_before += conn.bytes_sent
            conn.close()
        if connector is not None:
            connector.close()
        if listening and self._listener is not None:  # None: closed while it bound
            self._listener.close()
            close_socket(self._listener.socket)

    async def aclose(self) -> None:
        """Close gracefully: TLS sends close_notify first (meanwhile the socket
        is ``closing``: not connected, no handle).  Always closes, even when
        cancelled, and is a checkpoint.  A ``close`` or ``reset`` from another
        fiber meanwhile has the last word."""
        conn = self._conn
        try:
            if isinstance(conn, _secure.TLSConnection) and self._state is State.OPEN:
                self._move(State.CLOSING)  # no longer connected while close_notify goes
                await conn.aclose()
            else:
                check_trio("aclose()")  # the checkpoint below would say "Task got bad yield"
                await checkpoint()
        finally:
            if self._conn is conn:  # not closed, or reset, by another fiber meanwhile
                self.close()

    def disconnect(self) -> None:
        """Shut both directions down but keep the handle (``rDisconnectSocket``).

        Reads then return end of file, writes fail; :meth:`close` still has to
        release the handle.
        """
        if self._conn is not None:
            self._conn.disconnect()

    def reset(self) -> None:
        """Close and clear state, so the socket can connect again (``rResetSocket``).

        Options and TLS settings are kept; the error message, EOF and closed
        state and any buffered data are cleared.  A ``connect``, ``listen`` or
        ``upgrade_tls`` running in another fiber stops as it would for
        :meth:`close` (:class:`trio.ClosedResourceError`), and leaves the
        socket fresh.
        """
        self.close()
        self._move(State.FRESH)
        for guard in (self._read_guard, self._write_guard, self._setup_guard):
            if guard is not None:
                guard.failure = None

    # State and options ------------------------------------------------

    def is_closed(self) -> bool:
        """True after :meth:`close` (``rIsSocketClosed``)."""
        return self._state is State.CLOSED

    def is_eof(self) -> bool:
        """True once the peer's end of file was read, a read or write failed
        (a reset, say), :meth:`disconnect` ran, or after close
        (``rIsSocketEof``), on plain TCP and TLS alike."""
        return self._state is State.CLOSED or (self._conn is not None and self._conn.eof)

    def is_secure(self) -> bool:
        """True if the socket uses TLS (``rIsSocketSecure``): from the first
        TLS setting on (as in Ioto), before and after it connects."""
        return self._tls_settings is not None or isinstance(self._conn, _secure.TLSConnection)

    def is_connected(self) -> bool:
        """True while a connection is attached and not closed (``rIsSocketConnected``).

        Never true for a listening socket, nor while :meth:`aclose` runs.
        """
        return self._state is State.OPEN

    def _socket(self) -> stdlib_socket.socket:
        """The OS socket: the connection's or the listening one."""
        if self._conn is not None and self._state is State.OPEN:
            return self._conn.raw
        if self._state is State.LISTENING and self._listener is not None:
            return self._listener.socket
        raise self._not_open()

    def get_handle(self) -> int:
        """The OS file descriptor, or -1 if there is none (``rGetSocketHandle``)."""
        return self._socket().fileno() if self._state in (State.OPEN, State.LISTENING) else -1

    def get_addr(self) -> tuple[str, int]:
        """The local ``(ip, port)`` (``rGetSocketAddr``); for a Unix socket
        (one adopted by :meth:`from_socket`) ``(path, 0)``, the path ``""``
        when the socket has no name and, for a Linux abstract name, a str
        that starts with its NUL.

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        return display_address(self._socket().getsockname())

    def get_peer_addr(self) -> tuple[str, int]:
        """The peer's ``(ip, port)``; for a Unix socket ``(path, 0)``, as
        :meth:`get_addr` gives it (``""``: the peer's socket has no name, as
        a client's usually has not).

        Raises :class:`trio.ClosedResourceError` if there is no OS socket.
        """
        try:
            return display_address(self._socket().getpeername())
        except OSError as exc:
            raise stream_error(exc) from exc

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
        conn = self._conn
        if isinstance(conn, _secure.TLSConnection):
            if self._stream is None:
                self._stream = _secure.TLSStream(conn)
            return self._stream
        if conn is not None and self._stream is None:
            self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn.raw))
            # SocketStream turns TCP_NODELAY on; keep what the user chose.
            apply_options(conn.raw, self._no_delay, None)
        return self._stream

    def statistics(self) -> SocketStatistics:
        """Counters of this socket's traffic (and, for a listener, its connections)."""
        written = self._sent_before + (self._conn.bytes_sent if self._conn is not None else 0)
        listener = self._listener
        if listener is None:
            return SocketStatistics(bytes_read=self._bytes_read, bytes_written=written)
        return SocketStatistics(
            self._bytes_read, written, listener.accepted, listener.active, listener.rejected, listener.handler_errors
        )

    def __repr__(self) -> str:
        handle = f" fd={self.get_handle()}" if self._state in (State.OPEN, State.LISTENING) else ""
        tls = " tls" if isinstance(self._conn, _secure.TLSConnection) else ""
        return f"<RSocket {self._state.value}{handle}{tls}>"


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


def _write_expired(sent: int, total: int) -> DeadlineError:
    return DeadlineError(f"Write deadline passed after {sent} of {total} bytes", bytes_written=sent)
