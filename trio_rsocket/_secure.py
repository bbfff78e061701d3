"""The TLS connection part: a non-blocking :class:`ssl.SSLSocket` over the
connection's descriptor, driven directly.

Theory of operation
-------------------
:class:`TLSConnection` drives OpenSSL over the socket itself, in the shape of
the plain part (``_plain.PlainConnection``): ``checkpoint_if_cancelled`` →
try the :mod:`ssl` call → on :class:`ssl.SSLWantReadError` wait for
readability, on :class:`ssl.SSLWantWriteError` for writability, then try again
→ ``cancel_shielded_checkpoint`` when it never waited.  Either call can want
either direction: a read may have to write (a handshake message the peer
asked for), a write may have to read.  There are no memory BIOs and no copy
of every record through Python (trio's :class:`trio.SSLStream` has both):
OpenSSL reads and writes the descriptor, sends its own alerts, and decrypts
straight into the caller's buffer (``read_into``).  docs/design.rst gives the
figures that made the TLS part leave SSLStream.

One owner of the descriptor.  ``wrap_socket`` moves the descriptor from the
plain socket into the SSLSocket (the plain one is detached); the plain part
is pointed at the SSLSocket at once (:func:`_wrap`), so a ``close()`` from
another fiber during the handshake closes the one object that owns the
descriptor, and wakes the handshake.  Every wait follows an :mod:`ssl` call
on the same socket with no scheduling point in between, so trio is never
handed a closed descriptor (a closed socket fails the call first).

Two fibers, one descriptor.  A reader and a writer run at full duplex, and
trio lets one task wait per direction of a descriptor.  When one of ours
already waits in the direction the other now needs (a write that must read
while the reader waits for data), trio says :class:`trio.BusyResourceError`;
the second fiber then parks (:meth:`TLSConnection._wait`) until the first
one's wait ends, however it ends, and both try their calls again: OpenSSL's
state decides what each does next, so no wakeup is lost.  (A TLS 1.2
renegotiation a server asks for is answered by whichever call meets it.  It
is the one case where a write reads from the socket, and OpenSSL has one
write buffer: a renegotiation that arrives while a write waits in the middle
of a record fails the connection, and application data the server sends
in the middle of its renegotiation, while the client writes at the same
time, can wait in OpenSSL until more arrives.  TLS 1.3 has no
renegotiation, and a KeyUpdate's answer waits for the next write.)

What a write delivered.  Each TLS record (at most :data:`RECORD_SIZE`
bytes of plaintext) goes to ``SSLSocket.send`` on its own, and
:attr:`TLSConnection.bytes_sent` grows by a record once OpenSSL says the
whole record went to the kernel: whatever stops a write (its deadline, an
enclosing cancel scope, a close), the count is exactly what the peer can
decrypt.  A record that OpenSSL could not hand over at once is retried with
the very same bytes (OpenSSL committed it, sequence number and all; CPython
sets ``SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`` and not
``SSL_MODE_ENABLE_PARTIAL_WRITE``), so a write stopped inside one leaves the
connection unable to write: the reason is kept and every later write says
it.  Reads go on.

The end.  The peer's close_notify reads as end of file.  A peer that just
closes the TCP connection (a ragged end) may have been cut short by an
attacker, so that is :class:`trio.BrokenResourceError`, unless the socket's
``ragged_eof`` setting says such peers are expected (trio's
``https_compatible``).  :meth:`TLSConnection.aclose` sends close_notify
without waiting for the peer's, bounded in time, and always closes.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
from trio.lowlevel import (
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    wait_readable,
    wait_writable,
)

from . import _tls
from ._errors import TLSError, stream_error
from ._plain import PlainConnection, close_socket, send_file_by_chunks

__all__ = [
    "CLOSE_NOTIFY_TIMEOUT",
    "RECORD_SIZE",
    "RaggedCloseError",
    "TLSConnection",
    "TLSStream",
    "client_handshake",
    "server_handshake",
]

#: How long :meth:`TLSConnection.aclose` lets the kernel take close_notify
#: when the socket's buffer is full (a peer that does not read): the socket
#: is closed either way.
CLOSE_NOTIFY_TIMEOUT: Final = 5.0
#: The largest plaintext one TLS record carries (RFC 8446 section 5.1).  A TLS
#: write hands data to OpenSSL a record at a time, so whatever stops it stops
#: it between records or inside exactly one.
RECORD_SIZE: Final = 16384

# Where close() puts what came and was never read, so that the kernel ends
# the connection with a FIN rather than a reset (see TLSConnection.close):
# one buffer for every close, since those bytes are thrown away.
_DRAINED: Final = bytearray(1 << 16)
_CUT_MID_RECORD: Final = "a write was stopped in the middle of a TLS record, which TLS cannot take back"
_Wait = Callable[[Any], Awaitable[None]]


def _read(tls: ssl.SSLSocket, max_bytes: int, into: memoryview | None) -> Any:
    """One read: the bytes (the count, with *into*), or the wait OpenSSL
    wants first (:func:`trio.lowlevel.wait_readable` or ``wait_writable``).

    A function of its own so that "would block" never passes through the
    reader's coroutine: an exception that does makes Python keep a frame
    object for it, a quarter KiB on every idle connection.
    """
    try:
        # One record at most comes per call: asking for more would only
        # allocate more (and give back the rest).
        return tls.recv(min(max_bytes, RECORD_SIZE)) if into is None else tls.recv_into(into)
    except ssl.SSLWantReadError:
        return wait_readable
    except ssl.SSLWantWriteError:
        return wait_writable


class RaggedCloseError(trio.BrokenResourceError):
    """The peer closed the connection without TLS's close_notify: a
    :class:`trio.BrokenResourceError` (an attacker can cut a connection
    short), which a listener logs at DEBUG (clients close that way)."""


class TLSConnection:
    """A TLS connection: an :class:`ssl.SSLSocket` that owns the descriptor."""

    __slots__ = ("_broken", "_lot", "_ragged_eof", "_ssl", "_write_broken", "bytes_sent", "eof", "raw")

    def __init__(self, raw: ssl.SSLSocket, ragged_eof: bool = False) -> None:
        #: The TLS socket (it owns the descriptor).
        self.raw = raw
        # OpenSSL's connection object: the SSLSocket drops it when it closes,
        # and a closed client connection still has a session to give.
        self._ssl: Any = raw._sslobj  # type: ignore[attr-defined]
        #: The peer's close_notify (or end of file) was read, or the connection failed.
        self.eof = False
        #: Plaintext bytes the peer can decrypt, since the handshake.
        self.bytes_sent = 0
        # How the connection failed (every later call says it again), and
        # why writes are refused (a write stopped inside a record).
        self._broken: trio.BrokenResourceError | None = None
        self._write_broken: str | None = None
        self._ragged_eof = ragged_eof
        # Where a fiber waits while the other holds trio's wait (made when needed).
        self._lot: ParkingLot | None = None

    # Reads -------------------------------------------------------------

    async def receive(self, max_bytes: int, into: memoryview | None = None) -> bytes:
        """Up to *max_bytes* decrypted bytes as soon as any are there; ``b""``
        at the peer's close_notify.  (With *into*, decrypted straight into it
        and :meth:`receive_into`'s count returned instead.)

        Bytes OpenSSL already holds come first, without a wait: the rest of a
        record a short read left behind is never stranded.
        """
        if self._broken is not None:
            await checkpoint()
            raise self._said_before()
        tls = self.raw
        await checkpoint_if_cancelled()
        waited = False
        while True:  # ends at the first call that does not want to wait
            try:
                result = _read(tls, max_bytes, into)
            except OSError as exc:
                if not (isinstance(exc, ssl.SSLEOFError) and self._ragged_eof):
                    raise self._failed(exc) from exc
                result = b"" if into is None else 0  # a ragged end, which the user said is fine
                break
            if result is not wait_readable and result is not wait_writable:
                break
            # _wait written out: where an idle connection waits, a frame
            # less is memory saved on every one.
            try:
                await result(tls)
            except trio.BusyResourceError:
                await self._park()
            finally:
                if self._lot is not None:
                    self._lot.unpark_all()
            waited = True
        if not result:
            self.eof = True
        elif (result if isinstance(result, int) else len(result)) == RECORD_SIZE < max_bytes:
            # A full record: a bulk transfer, most likely with more records
            # in the kernel.  Take those too, up to max_bytes, without a wait:
            # one trip through the scheduler for several records.
            result = self._more(result, max_bytes, into)
        if not waited:
            await cancel_shielded_checkpoint()
        return result  # type: ignore[no-any-return]  # an int with *into*: receive_into says so

    def _more(self, first: bytes | int, max_bytes: int, into: memoryview | None) -> Any:
        """After a full record (*first*): more records, as long as they come
        without a wait and fit in *max_bytes*; what :meth:`receive` returns."""
        tls = self.raw
        got = first if isinstance(first, int) else len(first)
        chunks = [first] if isinstance(first, bytes) else None
        while max_bytes - got >= RECORD_SIZE:
            try:
                if chunks is None:
                    assert into is not None
                    count = tls.recv_into(into[got:])
                else:
                    chunk = tls.recv(RECORD_SIZE)
                    count = len(chunk)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError):
                break  # nothing more now (a ragged end says so again at the next call)
            except OSError as exc:
                self._failed(exc)  # said by the next call: these bytes first
                break
            if not count:
                break  # close_notify: the next call returns the end of file
            if chunks is not None:
                chunks.append(chunk)
            got += count
            if count < RECORD_SIZE:
                break
        return got if chunks is None else b"".join(chunks)

    def receive_into(self, view: memoryview) -> Awaitable[int]:
        """Decrypt straight into *view*; 0 at end of file."""
        return self.receive(len(view), view)  # type: ignore[return-value]

    async def wait_readable(self) -> bytes:
        """Return once a read would not block, with the bytes that took.

        Decrypted bytes waiting in OpenSSL are readable at once.  Otherwise
        only decrypting tells (half a record is not readable), so this
        receives, and the caller keeps what came for the next read.  A
        connection that broke (a reset, a ragged end) is readable too, as on
        plain TCP: the next read reports it.
        """
        if self._broken is None and self.raw.pending():
            await checkpoint()
            return b""
        try:
            return await self.receive(RECORD_SIZE)
        except trio.BrokenResourceError:
            return b""

    # Writes ------------------------------------------------------------

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of *data*, one TLS record per ``SSLSocket.send``; each
        record is counted in :attr:`bytes_sent` once the kernel took all of it."""
        if self._write_broken is not None or self._broken is not None:
            await checkpoint()
            raise self._said_before(self._write_broken)
        tls = self.raw
        await checkpoint_if_cancelled()
        total = len(data)
        view = data if total <= RECORD_SIZE else memoryview(data)  # slices of a view copy nothing
        waited = False
        start = 0
        while True:
            # The same object at every retry of one record: OpenSSL has it.
            record = view if total <= RECORD_SIZE else view[start : start + RECORD_SIZE]
            while True:
                try:
                    tls.send(record)
                except ssl.SSLWantWriteError:
                    wait: _Wait = wait_writable
                except ssl.SSLWantReadError:
                    wait = wait_readable
                except OSError as exc:
                    raise self._failed(exc) from exc
                else:
                    break
                try:
                    await self._wait(wait)
                except BaseException:
                    # OpenSSL holds the record, encrypted and maybe part sent.
                    self._write_broken = _CUT_MID_RECORD
                    raise
                waited = True
            self.bytes_sent += len(record)
            start += RECORD_SIZE
            if start >= total:
                break
        if not waited:
            await cancel_shielded_checkpoint()

    async def send_file(self, fd: int, offset: int, count: int) -> int:
        """Send part of a file.  Where the kernel holds the keys (kTLS, see
        :attr:`uses_ktls`), straight from the file by ``SSL_sendfile``, every
        byte counted as the kernel takes it; elsewhere chunks read off the
        event loop, each written as :meth:`send` writes it (so the count is
        exact, in whole records)."""
        if self.uses_ktls:
            return await self._send_file_by_kernel(fd, offset, count)
        return await send_file_by_chunks(self.send, fd, offset, count)

    @property
    def uses_ktls(self) -> bool:
        """Whether the kernel encrypts what this connection sends (kTLS):
        ``set_tls(ktls=True)``, and Python, OpenSSL and the kernel able to."""
        check = getattr(self._ssl, "uses_ktls_for_send", None)  # Python 3.14's ssl and later
        return bool(check is not None and self._write_broken is None and check())

    async def _send_file_by_kernel(self, fd: int, offset: int, count: int) -> int:
        """``SSL_sendfile``: the kernel reads, encrypts and sends the file."""
        if self._broken is not None:
            await checkpoint()
            raise self._said_before()
        await checkpoint_if_cancelled()
        sent = 0
        waited = False
        while sent < count:
            try:
                done = self._ssl.sendfile(fd, offset + sent, min(count - sent, 1 << 30))
            except ssl.SSLWantWriteError:
                done = -1
            except OSError as exc:
                raise self._failed(exc) from exc
            if done == 0:
                break  # the file ended
            if done > 0:
                sent += done
                self.bytes_sent += done  # the kernel's records: exact to the byte
                if sent == count:
                    break
            await self._wait(wait_writable)
            waited = True
        if not waited:
            await cancel_shielded_checkpoint()
        return sent

    async def wait_writable(self) -> None:
        """Return once a write might not block."""
        if self._write_broken is not None or self._broken is not None:
            await checkpoint()
            raise self._said_before(self._write_broken)
        if self.raw.fileno() < 0:  # never hand trio a closed descriptor
            await checkpoint()
            raise trio.ClosedResourceError("this socket was already closed")
        await self._wait(wait_writable)

    async def send_eof(self) -> None:
        """TLS has no half-close."""
        await checkpoint()
        raise TLSError("send_eof is not possible on a TLS socket: TLS has no half-close")

    # Waiting and failing -----------------------------------------------

    async def _wait(self, wait: _Wait) -> None:
        """Wait until the socket is readable or writable (*wait* says which).

        trio lets one task wait per direction: if the other fiber of this
        connection is in that wait, park until its wait ends, then let the
        caller try again.  Whoever waits wakes the parked one, however its
        wait ends (ready, cancelled, closed).
        """
        try:
            await wait(self.raw)
        except trio.BusyResourceError:
            await self._park()
        finally:
            if self._lot is not None:
                self._lot.unpark_all()

    async def _park(self) -> None:
        """Wait until the other fiber's wait on the descriptor ends."""
        if self._lot is None:
            self._lot = ParkingLot()
        await self._lot.park()

    def _failed(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        """An :mod:`ssl` call failed: the error to raise, in words, kept for
        every later call (a TLS connection that failed cannot go on)."""
        self.eof = True
        if self.raw.fileno() < 0:
            return trio.ClosedResourceError("this socket was already closed")
        if isinstance(exc, ssl.SSLEOFError):
            error: trio.BrokenResourceError | trio.ClosedResourceError = RaggedCloseError(str(_tls.broken_error(exc)))
        elif isinstance(exc, ssl.SSLError):
            error = _tls.broken_error(exc)
        else:
            error = stream_error(exc)
        if isinstance(error, trio.BrokenResourceError):
            self._broken = error
        return error

    def _said_before(self, reason: str | None = None) -> trio.BrokenResourceError:
        """The error for a call after the connection failed (or writes were
        cut): what the failure said, again."""
        if reason is not None:
            return trio.BrokenResourceError(f"TLS connection broken earlier: {reason}")
        assert self._broken is not None
        return type(self._broken)(*self._broken.args)

    # TLS details -------------------------------------------------------

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session (also once closed: a reconnect offers it)."""
        return self._ssl.session  # type: ignore[no-any-return]

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed a session."""
        return bool(self._ssl.session_reused)

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate, as :meth:`ssl.SSLSocket.getpeercert`."""
        return self._ssl.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol agreed, or ``None``."""
        return self._ssl.selected_alpn_protocol()  # type: ignore[no-any-return]

    def version(self) -> str | None:
        """The TLS version in use (``"TLSv1.3"``, ...)."""
        return self._ssl.version()  # type: ignore[no-any-return]

    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol, secret bits)`` of the cipher in use."""
        return self._ssl.cipher()  # type: ignore[no-any-return]

    # Life --------------------------------------------------------------

    def disconnect(self) -> None:
        """Shut the descriptor down both ways, keeping it.  Reads then end
        (this side ended it: no close_notify is expected), writes fail."""
        self.eof = True
        self._ragged_eof = True
        # socket's own shutdown: SSLSocket's would also drop the TLS state
        # and let a later call write plaintext on the descriptor.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.raw, socket.SHUT_RDWR)

    def close(self) -> None:
        """Close now, without close_notify; fibers blocked on it wake with
        :class:`trio.ClosedResourceError`."""
        self.eof = True
        tls = self.raw
        if tls.fileno() >= 0:
            # Bytes that came and were never read (the session tickets an
            # OpenSSL server sends right after a TLS 1.3 handshake, which a
            # client that only writes never reads) would make the kernel
            # answer the close with a reset, and the peer would lose what it
            # has not read yet of ours.  Taken first: one call, never a wait.
            with contextlib.suppress(OSError):
                socket.socket.recv_into(tls, _DRAINED)
        close_socket(tls)

    async def aclose(self) -> None:
        """Send close_notify (not waiting for the peer's), within
        :data:`CLOSE_NOTIFY_TIMEOUT`, then close; always closes, and is a
        checkpoint.  Not after a write cut inside a record or a failure: the
        connection has nothing more it can say."""
        try:
            if self._broken is None and self._write_broken is None and self.raw.fileno() >= 0:
                with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT):
                    await self._close_notify()
            await checkpoint()
        finally:
            self.close()

    async def _close_notify(self) -> None:
        tls = self.raw
        while True:
            try:
                tls.unwrap()
            except ssl.SSLWantWriteError:
                pass
            except (OSError, ValueError):
                # Sent, and the peer's not here yet (want read: not waited
                # for, as trio does); or the peer is gone.
                return
            else:
                return
            await self._wait(wait_writable)


class TLSStream(trio.abc.Stream):
    """The :class:`trio.abc.Stream` of a TLS :class:`~trio_rsocket.RSocket`
    (its :attr:`~trio_rsocket.RSocket.stream`), over the same connection.

    Besides the stream methods it answers :meth:`getpeercert`,
    :meth:`selected_alpn_protocol`, :meth:`version` and :meth:`cipher` as
    :class:`trio.SSLStream` does.  Two tasks sending (or receiving) at once
    get :class:`trio.BusyResourceError`; it must not be used concurrently
    with the socket's own reads or writes.
    """

    __slots__ = ("_connection", "_receiving", "_sending")

    def __init__(self, connection: TLSConnection) -> None:
        self._connection = connection
        self._sending = False
        self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of *data* (encrypted, a record at a time)."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await self._open().send(data if isinstance(data, bytes) else memoryview(data).cast("B"))
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Return once :meth:`send_all` might not block."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await self._open().wait_writable()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to *max_bytes* (default 65536) decrypted bytes; ``b""`` at end of file."""
        if max_bytes is None:
            max_bytes = 65536
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            return await self._open().receive(max_bytes)
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Send close_notify and close the connection (and so the socket)."""
        await self._connection.aclose()

    def _open(self) -> TLSConnection:
        if self._connection.raw.fileno() < 0:
            raise trio.ClosedResourceError("this stream was closed")
        return self._connection

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate, as :meth:`ssl.SSLSocket.getpeercert`."""
        return self._connection.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol agreed in the handshake, or ``None``."""
        return self._connection.selected_alpn_protocol()

    def version(self) -> str | None:
        """The TLS version in use (``"TLSv1.3"``, ...)."""
        return self._connection.version()

    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol, secret bits)`` of the cipher in use."""
        return self._connection.cipher()


# The handshake ---------------------------------------------------------


def _wrap(plain: PlainConnection, context: ssl.SSLContext, server_side: bool, host: str | None) -> ssl.SSLSocket:
    """The TLS socket over *plain*'s descriptor, which moves into it; *plain*
    is pointed at it, so whoever holds the plain part closes the owner.

    No TCP_NOTSENT_LOWAT, as on plain TCP: trio sets it (16 KiB) so that
    SSLStream, which encrypts a whole write before sending any, wakes in
    time to encrypt more; here each record is encrypted as it is sent, and
    a full kernel buffer lets a bulk sender hand over several records per
    wake-up (about a fifth less CPU per MB sent, measured by the bench).
    """
    raw = plain.raw
    tls = context.wrap_socket(
        raw,
        server_side=server_side,
        server_hostname=host,
        do_handshake_on_connect=False,
        suppress_ragged_eofs=False,
    )
    plain.raw = tls
    return tls


async def _handshake(tls: ssl.SSLSocket) -> None:
    """Run the handshake to its end: a checkpoint."""
    await checkpoint_if_cancelled()
    waited = False
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            wait: _Wait = wait_readable
        except ssl.SSLWantWriteError:
            wait = wait_writable
        else:
            break
        await wait(tls)
        waited = True
    if not waited:
        await cancel_shielded_checkpoint()


async def client_handshake(
    plain: PlainConnection,
    tls: _tls.TLSContext,
    host: str | None,
    session: ssl.SSLSession | None = None,
    *,
    ragged_eof: bool = False,
) -> TLSConnection:
    """The client side of the handshake over *plain*, SNI and hostname *host*,
    offering *session* to resume (a session of another context is not
    offered: the handshake is then a full one).

    Raises:
      TLSError: the handshake failed, in Ioto's words (OpenSSL sent the alert).
    """
    sock = _wrap(plain, tls.context, False, host)
    if session is not None:
        with contextlib.suppress(ValueError):  # "Session refers to a different SSLContext"
            sock.session = session
    try:
        await _handshake(sock)
    except OSError as exc:
        raise _tls.handshake_error(exc, host) from exc
    if tls.forgives_issuer:
        assert host is not None  # a name to check: upgrade_tls makes sure
        _tls.check_peer(sock.getpeercert(binary_form=True), host)
    elif tls.context.check_hostname and sock.session_reused:
        assert host is not None  # ssl refuses check_hostname without one
        # OpenSSL checks no name when it resumes a session.
        _tls.check_name(sock.getpeercert(binary_form=True), host, tls.context)
    return TLSConnection(sock, ragged_eof)


async def server_handshake(
    plain: PlainConnection, context: ssl.SSLContext, *, ragged_eof: bool = False
) -> TLSConnection:
    """The server side of the handshake over *plain*.

    Raises:
      TLSError: the handshake failed (a client certificate refused, ...).
    """
    sock = _wrap(plain, context, True, None)
    try:
        await _handshake(sock)
    except OSError as exc:
        raise _tls.handshake_error(exc) from exc
    return TLSConnection(sock, ragged_eof)
