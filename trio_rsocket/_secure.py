"""The TLS connection part: :class:`trio.SSLStream` layered over the plain part.

Theory of operation
-------------------
TLS is a layer, not a mode: :class:`TLSConnection` wraps a
:class:`~trio_rsocket._plain.PlainConnection` (itself a trio stream) in a
:class:`trio.SSLStream`, as trio and anyio layer TLS over any stream.  The
RSocket in front makes one at connect time (:func:`client_handshake`), at
accept time (:func:`server_handshake`), or in the middle of a connection's
life (``upgrade_tls``): the plain part stays underneath, so nothing about the
descriptor changes.

Counting what a write delivered.  :class:`trio.SSLStream` encrypts all the
data it is given before sending any, so when a ``send_all`` is stopped part
way nobody can say how much of the plaintext went.  A write with a deadline
of its own is therefore handed over one record (:data:`_tls.RECORD_SIZE`
bytes) at a time (:meth:`TLSConnection.send_counted`), and
:attr:`TLSConnection.bytes_sent` grows by a record only once that record's
ciphertext is wholly with the kernel: exactly the bytes the peer can decrypt.
Other writes go in one piece (:meth:`TLSConnection.send`), a third faster; if
an enclosing scope cancels one, it is not counted at all.  Either way, a
write stopped in the middle of a record leaves trio's SSLStream broken (it
cannot take back the half it sent); the reason is kept, and every later call
says it (:meth:`TLSConnection._broken`).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import trio
from trio.lowlevel import checkpoint

from . import _tls
from ._errors import TLSError
from ._plain import PlainConnection, send_file_by_chunks

__all__ = ["TLSConnection", "client_handshake", "server_handshake"]

_A = TypeVar("_A")
_R = TypeVar("_R")

_CUT_MID_RECORD: Final = "a write was stopped in the middle of a TLS record, which TLS cannot take back"


class TLSConnection:
    """A TLS connection over a plain one."""

    __slots__ = ("_broken_reason", "bytes_sent", "eof", "plain", "ssl")

    def __init__(self, plain: PlainConnection, ssl_stream: trio.SSLStream[PlainConnection]) -> None:
        #: The plain connection underneath (the descriptor).
        self.plain = plain
        #: The trio TLS stream.
        self.ssl = ssl_stream
        #: The peer's close_notify (or end of file) was read, or a read failed.
        self.eof = False
        #: Plaintext bytes the peer can decrypt, since the handshake.
        self.bytes_sent = 0
        self._broken_reason: str | None = None

    @property
    def raw(self) -> socket.socket:
        """The OS socket underneath."""
        return self.plain.raw

    # Reads -------------------------------------------------------------

    async def receive(self, max_bytes: int) -> bytes:
        """Up to *max_bytes* decrypted bytes; ``b""`` at the peer's close_notify."""
        try:
            data = await self.ssl.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            self.eof = True
            raise self._broken(exc) from exc.__cause__
        if not data:
            self.eof = True
        return data  # type: ignore[return-value]  # SSLObject.read gives bytes

    async def receive_into(self, view: memoryview) -> int:
        """Receive into *view* (one copy: the TLS layer decrypts into its own buffer)."""
        data = await self.receive(len(view))
        view[: len(data)] = data
        return len(data)

    async def wait_readable(self) -> bytes:
        """Return once a read would not block, with the bytes that took: over
        TLS only decrypting tells (half a record is not readable), so this
        receives, and the caller keeps what came for the next read."""
        return await self.receive(_tls.RECORD_SIZE)

    # Writes ------------------------------------------------------------

    async def send(self, data: bytes | memoryview) -> None:
        """Write all of *data* in one piece (fastest): counted once it all went.

        If an enclosing scope cancels it part way, trio's SSLStream cannot say
        how much of the plaintext went and the stream is broken, so nothing
        of it is counted and there is nothing to resume from.
        """
        await self._call(self.ssl.send_all, data)
        self.bytes_sent += len(data)

    async def send_counted(self, data: bytes | memoryview) -> None:
        """Write all of *data* one TLS record at a time, counting whole records
        in :attr:`bytes_sent`: whatever stops it, the count is exactly what
        the peer can decrypt.  Used by writes with a deadline of their own:
        handing records over one by one costs about a third of the
        throughput, measured in-process, so plain writes do not pay it."""
        view = memoryview(data)
        for start in range(0, len(view), _tls.RECORD_SIZE):
            record = view[start : start + _tls.RECORD_SIZE]
            await self._call(self.ssl.send_all, record)
            self.bytes_sent += len(record)

    async def send_file(self, fd: int, offset: int, count: int, counted: bool) -> int:
        """Send part of a file through TLS: chunks read off the event loop,
        each written as :meth:`send_counted` (*counted*) or :meth:`send` writes it."""
        return await send_file_by_chunks(self.send_counted if counted else self.send, fd, offset, count)

    async def wait_writable(self) -> None:
        """Return once a write might not block."""
        await self._call(_wait_send, self.ssl)

    async def _call(self, method: Callable[[_A], Awaitable[_R]], argument: _A) -> _R:
        """``await method(argument)`` on the TLS stream, its errors in words."""
        try:
            return await method(argument)
        except trio.BrokenResourceError as exc:
            self.eof = True
            raise self._broken(exc) from exc.__cause__
        except trio.Cancelled:
            # trio's SSLStream is broken if this stopped mid-record; say so
            # when the next call finds it broken.
            self._broken_reason = self._broken_reason or _CUT_MID_RECORD
            raise

    def _broken(self, exc: trio.BrokenResourceError) -> trio.BrokenResourceError:
        if exc.args or exc.__cause__ is not None:
            broken = _tls.broken_error(exc)
            self._broken_reason = self._broken_reason or str(broken)
            return broken
        # trio's SSLStream says only "broken" once it is: give the reason it broke.
        return trio.BrokenResourceError(f"TLS connection broken earlier: {self._broken_reason or 'unknown reason'}")

    async def send_eof(self) -> None:
        """TLS has no half-close."""
        await checkpoint()
        raise TLSError("send_eof is not possible on a TLS socket: TLS has no half-close")

    # Life --------------------------------------------------------------

    def disconnect(self) -> None:
        """Shut the descriptor down both ways, keeping it."""
        self.eof = True
        self.plain.disconnect()

    def close(self) -> None:
        """Close now, without close_notify."""
        self.eof = True
        self.plain.close()

    async def aclose(self) -> None:
        """close_notify, then close; always closes."""
        try:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.ssl.aclose()
        finally:
            self.close()


def _wait_send(ssl_stream: trio.SSLStream[PlainConnection]) -> Coroutine[Any, Any, None]:
    return ssl_stream.wait_send_all_might_not_block()


def _layer(plain: PlainConnection, context: ssl.SSLContext, **options: Any) -> trio.SSLStream[PlainConnection]:
    """trio's SSLStream over the plain part, with the socket option trio's own
    SocketStream sets under TLS: TCP_NOTSENT_LOWAT of 16 KiB, so the kernel
    holds few unsent bytes and a write wakes in time to encrypt the next
    records (what the benchmark's TLS bulk figures were measured with)."""
    if hasattr(socket, "TCP_NOTSENT_LOWAT"):
        with contextlib.suppress(OSError):
            plain.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 1 << 14)
    return trio.SSLStream(plain, context, **options)


def _send_alert(plain: PlainConnection, ssl_stream: trio.SSLStream[PlainConnection]) -> None:
    """Tell the peer why the handshake failed, if the kernel takes it now."""
    alert = _tls.pending_alert(ssl_stream)
    if alert:
        # Best effort on a connection about to be closed: never wait.
        with contextlib.suppress(OSError):
            plain.raw.send(alert)


async def client_handshake(
    plain: PlainConnection, tls: _tls.TLSContext, host: str | None, session: ssl.SSLSession | None = None
) -> TLSConnection:
    """The client side of the handshake over *plain*, SNI and hostname *host*,
    offering *session* to resume (a session of another context is not
    offered: the handshake is then a full one).

    Raises:
      TLSError: the handshake failed, in Ioto's words (the alert is sent).
    """
    ssl_stream = _layer(plain, tls.context, server_hostname=host)
    if session is not None:
        with contextlib.suppress(ValueError):  # "Session refers to a different SSLContext"
            ssl_stream.session = session
    try:
        await ssl_stream.do_handshake()
    except trio.BrokenResourceError as exc:
        _send_alert(plain, ssl_stream)
        raise _tls.handshake_error(exc, host) from exc
    if tls.check_peer:
        assert host is not None  # a name to check: upgrade_tls makes sure
        _tls.check_peer(ssl_stream.getpeercert(binary_form=True), host)
    elif tls.context.check_hostname and ssl_stream.session_reused:
        assert host is not None  # ssl refuses check_hostname without one
        # OpenSSL checks no name when it resumes a session.
        _tls.check_name(ssl_stream.getpeercert(binary_form=True), host, tls.context)
    return TLSConnection(plain, ssl_stream)


async def server_handshake(plain: PlainConnection, context: ssl.SSLContext) -> TLSConnection:
    """The server side of the handshake over *plain*.

    Raises:
      TLSError: the handshake failed (a client certificate refused, ...).
    """
    ssl_stream = _layer(plain, context, server_side=True)
    try:
        await ssl_stream.do_handshake()
    except trio.BrokenResourceError as exc:
        _send_alert(plain, ssl_stream)
        raise _tls.handshake_error(exc) from exc
    return TLSConnection(plain, ssl_stream)
