"""The plain connection part: one connected TCP (or Unix) socket, driven directly.

Theory of operation
-------------------
:class:`PlainConnection` drives a non-blocking OS socket with the same
sandwich trio's own socket layer uses (``checkpoint_if_cancelled`` → try the
call → ``wait_readable``/``wait_writable`` only when it would block →
``cancel_shielded_checkpoint`` when it did not), but without the layers of
:class:`trio.SocketStream` in between.  That is what lets a write count
exactly how many bytes reached the kernel when it is stopped (every
``send``'s return value is added to :attr:`PlainConnection.bytes_sent` before
the next wait), lets ``receive_into`` receive straight into the caller's
buffer, and keeps the paths an idle connection waits in short: every frame a
waiting fiber holds costs memory on every idle connection.

The TLS part (``_secure``) drives its descriptor the same way, through a
non-blocking :class:`ssl.SSLSocket`; an upgrade to TLS in the middle of a
connection's life moves this part's descriptor into one (and points
:attr:`PlainConnection.raw` at it, so whoever holds this part closes the
owner).

:class:`Connector` makes the connection: it resolves the name and tries the
addresses in Ioto's order (every IPv4 address, then every IPv6 one), one at a
time, or, given a ``happy_eyeballs_delay``, has trio race them (RFC 8305);
:meth:`Connector.close` from another fiber stops the attempt in flight.
:meth:`Connector.connect_unix` connects a Unix socket the same way (there
is no name to resolve; a listener whose queue is full is tried again after
a short pause, since a Unix connect never waits in the kernel).

Neither class guards against concurrent use: the RSocket in front does that,
once for every part.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import os
import socket as stdlib_socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

from ._address import host_port
from ._errors import ConnectError, file_error, stream_error

__all__ = [
    "FILE_CHUNK",
    "UNIX_RETRY_PAUSE",
    "UNIX_RETRY_PAUSE_MAX",
    "Connector",
    "PlainConnection",
    "apply_options",
    "close_socket",
    "send_file_by_chunks",
]

# connect_ex() on a non-blocking socket: the handshake is under way.
_CONNECT_PENDING: Final = frozenset({errno_codes.EINPROGRESS, errno_codes.EAGAIN, errno_codes.EWOULDBLOCK})
#: How much one disk read of a chunked file transfer takes: large enough to
#: keep the thread hand-offs rare, small enough not to hold the disk long.
FILE_CHUNK: Final = 1 << 18
# One sendfile() call at most (Linux caps a call at 0x7ffff000 bytes anyway).
_SENDFILE_MAX: Final = 1 << 30
# sendfile() errors that mean "not for this file or socket": copy by chunks.
_NO_SENDFILE: Final = frozenset({errno_codes.EINVAL, errno_codes.ENOSYS, errno_codes.EOPNOTSUPP})
# sendfile() errors that only reading the file can cause (sendfile(2), read(2)):
# the file's fault, not the connection's.  EBADF is the file's too while the
# socket is still open (a file closed, or opened O_PATH, under the send).
_FILE_ERRNOS: Final = frozenset(
    {errno_codes.EIO, errno_codes.EOVERFLOW, errno_codes.ESPIPE, errno_codes.ENXIO, errno_codes.EISDIR}
)

#: Seconds before a Unix connect refused for a full queue is tried again
#: (the first pause; each next one doubles, up to the second).
UNIX_RETRY_PAUSE: Final = 0.001
UNIX_RETRY_PAUSE_MAX: Final = 0.05

_NUMERIC_ONLY: Final = stdlib_socket.AI_NUMERICHOST | stdlib_socket.AI_NUMERICSERV


def close_socket(raw: stdlib_socket.socket) -> None:
    """Close *raw* now, waking the fibers blocked on it first (what trio's own
    socket close does).  Works outside trio too (cleanup after ``trio.run``,
    a finalizer, ...), where nobody can be waiting."""
    if raw.fileno() < 0:
        return  # closed already
    with contextlib.suppress(RuntimeError):
        notify_closing(raw)
    raw.close()


def apply_options(raw: stdlib_socket.socket, no_delay: bool | None, linger: int | None) -> None:
    """Apply the socket's options to a new TCP connection: TCP_NODELAY on
    unless the user turned it off, and SO_LINGER if set."""
    if raw.family not in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6):
        return
    raw.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, True if no_delay is None else no_delay)
    if linger is not None:
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, linger))


class PlainConnection(trio.abc.HalfCloseableStream):
    """A connected TCP socket, read and written without trio's stream layers."""

    __slots__ = ("bytes_sent", "eof", "raw", "write_closed")

    def __init__(self, raw: stdlib_socket.socket, no_delay: bool | None = None, linger: int | None = None) -> None:
        if raw.getblocking():  # one system call fewer for sockets made non-blocking already
            raw.setblocking(False)
        apply_options(raw, no_delay, linger)
        #: The OS socket.
        self.raw = raw
        #: The peer's end of file was read, or a read or write failed (Ioto
        #: sets ``R_SOCKET_EOF`` on a socket error, a reset included).
        self.eof = False
        #: ``send_eof`` ran: writes are refused.
        self.write_closed = False
        #: Bytes the kernel accepted, since the connection was made.
        self.bytes_sent = 0

    # Reads -------------------------------------------------------------

    async def receive(self, max_bytes: int, into: memoryview | None = None) -> bytes:
        """Up to *max_bytes* bytes as soon as any are there; ``b""`` at end of
        file.  (With *into*, :meth:`receive_into`'s count instead: one loop
        for both, and the front's read calls this directly, so an idle
        connection's read holds one frame of this part and no method object.)

        A trio checkpoint: tried at once, waiting for readability only if it
        would block.
        """
        raw = self.raw
        await checkpoint_if_cancelled()
        waited = False
        while True:  # ends at the first call that does not say "would block"
            try:
                result = raw.recv(max_bytes) if into is None else raw.recv_into(into)
            except BlockingIOError:
                pass
            except OSError as exc:
                self.eof = True
                raise stream_error(exc) from exc
            else:
                break
            # Waits outside the except clause: a fiber suspended in one keeps
            # the exception and its traceback alive (half a KiB per idle
            # connection) and chains it to anything raised later.
            await wait_readable(raw)
            waited = True
        if not waited:
            await cancel_shielded_checkpoint()
        if not result:
            self.eof = True
        return result  # type: ignore[return-value]  # an int with *into*: receive_into says so

    def receive_into(self, view: memoryview) -> Coroutine[Any, Any, int]:
        """Receive straight into *view*; 0 at end of file."""
        return self.receive(0, view)  # type: ignore[return-value]

    async def wait_readable(self) -> bytes:
        """Return once a receive would not block (data or end of file);
        nothing is taken (``b""``)."""
        await wait_readable(self.raw)
        return b""

    # Writes ------------------------------------------------------------

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of *data*.  Every byte the kernel takes is counted in
        :attr:`bytes_sent` before the next wait, so a write stopped part way
        knows exactly how far it got."""
        if self.write_closed:
            raise trio.ClosedResourceError("can't write after send_eof")
        raw = self.raw
        await checkpoint_if_cancelled()
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.eof = True
            raise stream_error(exc) from exc
        self.bytes_sent += sent
        if sent == len(data):
            await cancel_shielded_checkpoint()
            return
        view = memoryview(data)  # slices of a view copy nothing
        total = len(view)
        while sent < total:
            await wait_writable(raw)
            try:
                count = raw.send(view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                self.eof = True
                raise stream_error(exc) from exc
            sent += count
            self.bytes_sent += count

    async def send_file(self, fd: int, offset: int, count: int) -> int:
        """Send *count* bytes of file *fd* from *offset* with ``os.sendfile``
        (zero-copy), waiting for writability between calls; every call's
        result is counted in :attr:`bytes_sent` before the next wait.  Returns
        how many went (fewer only if the file ended).  Where the kernel cannot
        sendfile this file, the rest goes by :func:`send_file_by_chunks`.  An
        error reading the file is :class:`FileReadError`, not the
        connection's: the connection is left usable."""
        if self.write_closed:
            raise trio.ClosedResourceError("can't write after send_eof")
        raw = self.raw
        await checkpoint_if_cancelled()
        sent = 0
        waited = False
        while sent < count:
            try:
                done = os.sendfile(raw.fileno(), fd, offset + sent, min(count - sent, _SENDFILE_MAX))
            except BlockingIOError:
                done = -1
            except OSError as exc:
                if exc.errno in _NO_SENDFILE and sent == 0:
                    return await send_file_by_chunks(self.send, fd, offset, count)
                if exc.errno in _FILE_ERRNOS or (exc.errno == errno_codes.EBADF and raw.fileno() >= 0):
                    raise file_error(f"file descriptor {fd}", exc, sent) from exc
                self.eof = True
                raise stream_error(exc) from exc
            if done == 0:
                break  # the file ended
            if done > 0:
                sent += done
                self.bytes_sent += done
                if sent == count:
                    break
            await wait_writable(raw)
            waited = True
        if not waited:
            await cancel_shielded_checkpoint()
        return sent

    async def wait_writable(self) -> None:
        """Return once a write would not block."""
        try:
            await wait_writable(self.raw)
        except OSError as exc:
            raise stream_error(exc) from exc

    # trio.abc.HalfCloseableStream, for the TLS layer over this part -----

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Stream interface: :meth:`send`."""
        await self.send(data if isinstance(data, bytes) else memoryview(data))

    def receive_some(self, max_bytes: int | None = None) -> Coroutine[Any, Any, bytes]:
        """Stream interface: :meth:`receive` (65536 bytes when not told)."""
        return self.receive(65536 if max_bytes is None else max_bytes)

    async def wait_send_all_might_not_block(self) -> None:
        """Stream interface: :meth:`wait_writable`."""
        await self.wait_writable()

    async def send_eof(self) -> None:
        """Half-close: the peer reads end of file; reads go on.  Idempotent."""
        await checkpoint()
        if self.write_closed:
            return
        try:
            self.raw.shutdown(stdlib_socket.SHUT_WR)
        except OSError as exc:
            raise stream_error(exc) from exc
        self.write_closed = True

    async def aclose(self) -> None:
        """Stream interface: close now (a checkpoint)."""
        self.close()
        await checkpoint()

    # Life --------------------------------------------------------------

    def disconnect(self) -> None:
        """Shut both directions down, keeping the descriptor (``rDisconnectSocket``)."""
        self.eof = True
        # Already shut down, or never connected: the wanted state either way.
        with contextlib.suppress(OSError):
            self.raw.shutdown(stdlib_socket.SHUT_RDWR)

    def close(self) -> None:
        """Close now; fibers blocked on the socket wake with ClosedResourceError."""
        self.eof = True
        close_socket(self.raw)


async def send_file_by_chunks(send: Callable[[bytes], Awaitable[None]], fd: int, offset: int, count: int) -> int:
    """Send *count* bytes of file *fd* from *offset* through *send*, a chunk
    at a time; each chunk is read in a worker thread (``os.pread``: the file
    position is neither used nor moved), so a slow disk never blocks the event
    loop for long.  Returns how many bytes went; a chunk counts once *send*
    took all of it.  A chunk that cannot be read is the file's fault:
    :class:`FileReadError`, and the connection is left as it was."""
    sent = 0
    while sent < count:
        try:
            chunk = await trio.to_thread.run_sync(os.pread, fd, min(count - sent, FILE_CHUNK), offset + sent)
        except OSError as exc:
            raise file_error(f"file descriptor {fd}", exc, sent) from exc
        if not chunk:
            break  # the file ended
        await send(chunk)
        sent += len(chunk)
    if not sent:
        await checkpoint()
    return sent


class Connector:
    """One ``connect``: resolve *host*, try its addresses, return the socket.

    :meth:`close` (another fiber's ``close()`` on the RSocket) closes the
    attempt in flight, which wakes :meth:`connect` with
    :class:`trio.ClosedResourceError`.
    """

    __slots__ = ("_attempt", "_closed", "_held", "_race")

    def __init__(self) -> None:
        self._attempt: stdlib_socket.socket | None = None
        self._held: PlainConnection | None = None
        self._race: trio.CancelScope | None = None
        self._closed = False

    def close(self) -> None:
        """Stop: close the socket being tried, if any."""
        self._closed = True
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            close_socket(attempt)
        held, self._held = self._held, None
        if held is not None:
            held.close()
        if self._race is not None:
            self._race.cancel()

    def hold(self, conn: PlainConnection) -> None:
        """Keep *conn*, connected, for :meth:`close` to close: the TLS
        handshake that follows is part of the connect (and moves the
        descriptor into a TLS socket, which *conn* then points at)."""
        self._held = conn

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this socket was closed while connecting")

    async def connect(self, host: str, port: int, happy_eyeballs_delay: float | None = None) -> stdlib_socket.socket:
        """The connected, non-blocking socket.

        *happy_eyeballs_delay* ``None`` tries the addresses one after the
        other, IPv4 first (Ioto's order); a number races them as
        :func:`trio.open_tcp_stream` does (RFC 8305), starting the next
        attempt that many seconds after the last one if it has not succeeded.

        Raises:
          ConnectError: the name does not resolve, or no address accepted.
          trio.ClosedResourceError: :meth:`close` was called meanwhile.
        """
        if happy_eyeballs_delay is not None:
            return await self._race_addresses(host, port, happy_eyeballs_delay)
        try:
            # A numeric address needs no resolver: answered at once, without
            # the scheduler pass of trio's getaddrinfo (trio skips its resolver
            # hooks for numeric addresses too), and without a coroutine of its own.
            addresses = stdlib_socket.getaddrinfo(host, port, type=stdlib_socket.SOCK_STREAM, flags=_NUMERIC_ONLY)
        except (stdlib_socket.gaierror, UnicodeError):
            addresses = await self._resolve(host, port)
        # Ioto's order: every IPv4 address, then every IPv6 one.
        addresses.sort(key=lambda info: info[0] != stdlib_socket.AF_INET)
        last_error: OSError | None = None
        for family, kind, proto, _, address in addresses:
            self._check_open()
            try:
                raw = stdlib_socket.socket(family, kind, proto)
            except OSError as exc:  # out of descriptors, say
                last_error = exc
                continue
            try:
                await self._attempt_on(raw, _connect_to(raw, address))
            except OSError as exc:
                last_error = exc
                continue
            return raw
        message = f"Cannot connect socket to {host_port(host, port)}"
        if last_error is not None:
            message += f": {last_error.strerror or last_error}"
        raise ConnectError(message, last_error.errno if last_error is not None else None) from last_error

    async def connect_unix(self, address: bytes, shown: str) -> stdlib_socket.socket:
        """The socket, connected to the Unix socket *address* (a path or, with
        a leading NUL, an abstract name; *shown* names it in messages).

        Raises:
          ConnectError: nothing listens there, or the OS refused; the message
            carries its reason, ``errno`` the OS error.
          trio.ClosedResourceError: :meth:`close` was called meanwhile.
        """
        self._check_open()
        try:
            raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        except OSError as exc:  # out of descriptors, say
            raise ConnectError(f"Cannot connect socket to {shown}: {exc.strerror or exc}", exc.errno) from exc
        try:
            await self._attempt_on(raw, _connect_unix_to(raw, address))
        except OSError as exc:
            raise ConnectError(f"Cannot connect socket to {shown}: {exc.strerror or exc}", exc.errno) from exc
        return raw

    async def _attempt_on(self, raw: stdlib_socket.socket, connecting: Coroutine[Any, Any, None]) -> None:
        """Await *connecting* (*raw*'s connect) as this connector's attempt,
        which :meth:`close` closes.  *raw* is closed if it fails (its
        :class:`OSError` passed on) or if :meth:`close` came meanwhile
        (:class:`trio.ClosedResourceError`)."""
        self._attempt = raw
        try:
            await connecting
        except OSError:
            raw.close()
            raise
        except BaseException:
            raw.close()
            self._check_open()  # woken by close(): say so in our words
            raise
        finally:
            self._attempt = None
        if self._closed:  # close() came while the connect finished
            raw.close()
            self._check_open()

    async def _race_addresses(self, host: str, port: int, delay: float) -> stdlib_socket.socket:
        """Happy eyeballs, by trio itself: the winner's socket is taken over."""
        stream: trio.SocketStream | None = None
        with trio.CancelScope() as self._race:
            try:
                stream = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=delay)
            except (stdlib_socket.gaierror, UnicodeError) as exc:
                message = f"Cannot find address of {host_port(host, port)}"
                raise ConnectError(message, getattr(exc, "errno", None)) from exc
            except OSError as exc:
                # trio's "all attempts failed" carries each attempt's error.
                group = exc.__cause__
                last = group.exceptions[-1] if isinstance(group, BaseExceptionGroup) else exc
                code = last.errno if isinstance(last, OSError) else None
                reason = os.strerror(code) if code else str(last)
                raise ConnectError(f"Cannot connect socket to {host_port(host, port)}: {reason}", code) from exc
        self._race = None
        if stream is None:  # close() cancelled the race
            self._check_open()
            raise AssertionError("the race was cancelled but not by close()")
        family, kind, proto = stream.socket.family, stream.socket.type, stream.socket.proto
        raw = stdlib_socket.socket(family, kind, proto, fileno=stream.socket.detach())
        if self._closed:
            raw.close()
            self._check_open()
        return raw

    async def _resolve(self, host: str, port: int) -> list[Any]:
        """A name's addresses, from trio's resolver."""
        try:
            return list(await trio.socket.getaddrinfo(host, port, type=stdlib_socket.SOCK_STREAM))
        except (stdlib_socket.gaierror, UnicodeError) as exc:
            # UnicodeError: a name no DNS label can hold (over 63 characters, ...).
            message = f"Cannot find address of {host_port(host, port)}"
            raise ConnectError(message, getattr(exc, "errno", None)) from exc


async def _connect_unix_to(raw: stdlib_socket.socket, address: bytes) -> None:
    """Connect the Unix socket *raw* to *address*: a checkpoint, cancellable.

    A Unix connect never waits in the kernel: it succeeds, fails, or (the
    listener's queue is full) says ``EAGAIN`` and leaves the socket
    unconnected, with nothing to wait for but time.  So a full queue is
    tried again after a pause that doubles from
    :data:`UNIX_RETRY_PAUSE` up to :data:`UNIX_RETRY_PAUSE_MAX`, until it
    is taken or the deadline passes (a blocking connect sleeps the same).
    """
    raw.setblocking(False)
    await checkpoint_if_cancelled()
    pause = UNIX_RETRY_PAUSE
    while True:
        code = raw.connect_ex(address)
        if code == 0:
            break
        if code not in _CONNECT_PENDING:
            raise OSError(code, os.strerror(code))
        if code == errno_codes.EINPROGRESS:  # not on Linux; a BSD may say it
            await wait_writable(raw)
            code = raw.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ERROR)
            if code != 0:
                raise OSError(code, os.strerror(code))
            return
        await trio.sleep(pause)
        pause = min(pause * 2, UNIX_RETRY_PAUSE_MAX)
    await cancel_shielded_checkpoint()


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
