"""The client side of one connection, as the workloads drive it.

A backend per implementation (RSocket, trio's streams, asyncio's streams,
trio's raw sockets for ``--raw``, and anyio's streams for the Unix-socket
workload) connects, runs tasks and runs its event loop; every connection it
makes offers the same four operations (:class:`Conn`), so that each workload
is written once.  The servers use them too, for the client ends of the idle
TLS pairs.

anyio is not a dependency: it is imported when first used, and
:func:`missing_package` tells the runner beforehand, so that its column
says it is not installed instead of the run failing.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import io
import socket as stdlib_socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

# The public API only, as any program would use it.
from .. import RSocket
from .workloads import ANYIO, CHUNK, HOST, RAW, BenchError, MissingPackageError, TLSFiles, client_context

T = TypeVar("T")
Bytes = bytes | bytearray | memoryview


@dataclass
class Conn:
    """The four operations a workload needs, bound to one implementation's calls."""

    recv: Callable[[int], Awaitable[bytes | bytearray]]
    send: Callable[[Bytes], Awaitable[object]]
    close: Callable[[], Awaitable[None]]
    recv_into: Callable[[bytearray], Awaitable[int]] | None = None


class Backend:
    """How one implementation connects, runs tasks and runs its event loop."""

    name = ""

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        raise NotImplementedError

    async def connect(self, port: int, tls: TLSFiles | None) -> Conn:
        raise NotImplementedError

    async def connect_unix(self, path: str) -> Conn:
        """A connection to the Unix socket at *path*."""
        raise BenchError(f"{self.name} has no Unix socket client here")

    async def gather(self, fns: Sequence[Callable[[], Awaitable[int]]]) -> list[int]:
        raise NotImplementedError

    async def send_file(self, port: int, file: io.BufferedReader, size: int, variant: str) -> None:
        """Send an 8-byte size header, then *size* bytes of *file* (*variant*:
        ``send_file`` or ``read+write``), and wait for the server's count."""
        raise BenchError(f"{self.name} has no file transfer {variant!r}")

    def reconnector(self, port: int, tls: TLSFiles, resume: bool) -> Callable[[], Awaitable[bool]]:
        """One TLS connection per call: connect, handshake, a 1-byte round
        trip (which brings TLS 1.3's session tickets), close.  With *resume*
        each offers the session of the one before.  The call returns whether
        the handshake resumed a session."""
        raise BenchError(f"{self.name} cannot offer a TLS session")


class _TrioBackend(Backend):
    name = "trio"

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        return trio.run(with_watchdog, fn, timeout)

    async def connect(self, port: int, tls: TLSFiles | None) -> Conn:
        if tls is None:
            plain = await trio.open_tcp_stream(HOST, port)
            return Conn(plain.receive_some, plain.send_all, plain.aclose)
        secure = await trio.open_ssl_over_tcp_stream(HOST, port, ssl_context=client_context(tls))
        await secure.do_handshake()
        return Conn(secure.receive_some, secure.send_all, secure.aclose)

    async def connect_unix(self, path: str) -> Conn:
        stream = await trio.open_unix_socket(path)
        return Conn(stream.receive_some, stream.send_all, stream.aclose)

    async def gather(self, fns: Sequence[Callable[[], Awaitable[int]]]) -> list[int]:
        results = [0] * len(fns)

        async def one(index: int) -> None:
            results[index] = await fns[index]()

        async with trio.open_nursery() as nursery:
            for index in range(len(fns)):
                nursery.start_soon(one, index)
        return results

    async def send_file(self, port: int, file: io.BufferedReader, size: int, variant: str) -> None:
        if variant != "read+write":
            raise BenchError("trio has no sendfile (trio#45)")
        stream = await trio.open_tcp_stream(HOST, port)
        try:
            await stream.send_all(struct.pack("!Q", size))
            await _read_and_write(file, size, stream.send_all)
            await _expect_count(stream.receive_some, size)
        finally:
            await stream.aclose()

    def reconnector(self, port: int, tls: TLSFiles, resume: bool) -> Callable[[], Awaitable[bool]]:
        context = client_context(tls)
        session: ssl.SSLSession | None = None

        async def reconnect() -> bool:
            nonlocal session
            stream = await trio.open_ssl_over_tcp_stream(HOST, port, ssl_context=context)
            try:
                if session is not None:
                    stream.session = session  # SSLStream forwards it to its SSLObject
                await stream.do_handshake()
                await stream.send_all(b"x")
                await _expect_echo(stream.receive_some)
                reused: bool = stream.session_reused
                if resume:
                    session = stream.session
            finally:
                await stream.aclose()
            return reused

        return reconnect


async def with_watchdog(fn: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``await fn()``, stopped after *timeout* seconds by a sibling task.

    Not ``trio.fail_after``: the benchmark measures the common case, a
    program with no deadline anywhere, so no cancel scope around the work
    has one.
    """
    results: list[T] = []
    failure: Exception | None = None
    timed_out = False

    async def watchdog(scope: trio.CancelScope) -> None:
        nonlocal timed_out
        await trio.sleep(timeout)
        timed_out = True
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog, nursery.cancel_scope)
        try:
            results.append(await fn())
        except Exception as exc:
            # Raised below as it is, not wrapped in the nursery's ExceptionGroup.
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if timed_out or not results:
        raise BenchError(f"a measurement took longer than {timeout:g} s")
    return results[0]


class _RSocketBackend(_TrioBackend):
    name = "rsocket"

    async def connect(self, port: int, tls: TLSFiles | None) -> Conn:
        sock = RSocket()
        if tls is not None:
            sock.set_certs(authority=tls.ca)
        await sock.connect(HOST, port)
        return Conn(sock.read, sock.write, sock.aclose, sock.read_into)

    async def connect_unix(self, path: str) -> Conn:
        sock = RSocket()
        await sock.connect_unix(path)
        return Conn(sock.read, sock.write, sock.aclose, sock.read_into)

    async def send_file(self, port: int, file: io.BufferedReader, size: int, variant: str) -> None:
        sock = RSocket()
        try:
            await sock.connect(HOST, port)
            await sock.write(struct.pack("!Q", size))
            if variant == "send_file":
                sent = await sock.send_file(file, 0, size)
                if sent != size:
                    raise BenchError(f"send_file sent {sent} of {size} bytes")
            else:
                await _read_and_write(file, size, sock.write)
            await _expect_count(sock.read, size)
        finally:
            await sock.aclose()

    def reconnector(self, port: int, tls: TLSFiles, resume: bool) -> Callable[[], Awaitable[bool]]:
        # Resuming, one socket connects again and again: a socket that
        # reconnects to the same host and port offers its previous session
        # by itself.  Not resuming, each connection is a fresh socket.
        def fresh() -> RSocket:
            sock = RSocket()
            sock.set_certs(authority=tls.ca)
            return sock

        kept = fresh()

        async def reconnect() -> bool:
            sock = kept if resume else fresh()
            try:
                await sock.connect(HOST, port)
                await sock.write(b"x")
                await _expect_echo(sock.read)
                reused = sock.is_session_reused()
            finally:
                await sock.aclose()
            return reused

        return reconnect


class _AsyncioBackend(Backend):
    name = "asyncio"

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(fn(), timeout)

        return asyncio.run(bounded())

    async def connect(self, port: int, tls: TLSFiles | None) -> Conn:
        context = None if tls is None else client_context(tls)
        return _asyncio_conn(*await asyncio.open_connection(HOST, port, ssl=context))

    async def connect_unix(self, path: str) -> Conn:
        return _asyncio_conn(*await asyncio.open_unix_connection(path))

    async def gather(self, fns: Sequence[Callable[[], Awaitable[int]]]) -> list[int]:
        return list(await asyncio.gather(*(fn() for fn in fns)))

    async def send_file(self, port: int, file: io.BufferedReader, size: int, variant: str) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(struct.pack("!Q", size))
            if variant == "send_file":
                # os.sendfile on a plain socket transport.
                sent = await asyncio.get_running_loop().sendfile(writer.transport, file, 0, size)
                if sent != size:
                    raise BenchError(f"loop.sendfile sent {sent} of {size} bytes")
            else:
                done = 0
                while done < size:  # bounded: each pass sends at least one byte or raises
                    # A new bytes object each time: the transport may keep what it could not send yet.
                    data = file.read(min(CHUNK, size - done))
                    if not data:
                        raise BenchError(f"the file ended after {done} of {size} bytes")
                    writer.write(data)
                    await writer.drain()
                    done += len(data)
            await _expect_count(reader.read, size)
        finally:
            writer.close()
            await writer.wait_closed()


def _asyncio_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Conn:
    async def send(data: Bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def close() -> None:
        writer.close()
        await writer.wait_closed()

    return Conn(reader.read, send, close)


def import_anyio() -> Any:
    """The anyio module, or :class:`MissingPackageError` saying how to install it."""
    try:
        return importlib.import_module("anyio")
    except ImportError:
        raise MissingPackageError(
            "the anyio baseline needs anyio: pip install '.[bench]' in a clone of trio-rsocket, or pip install anyio"
        ) from None


class _AnyioBackend(_AsyncioBackend):
    """anyio's streams on its default backend, asyncio (anyio's calls work in
    any asyncio program, so the event loop and tasks are asyncio's own)."""

    name = ANYIO

    async def connect(self, port: int, tls: TLSFiles | None) -> Conn:
        raise BenchError("anyio is measured over Unix sockets only")

    async def connect_unix(self, path: str) -> Conn:
        stream = await import_anyio().connect_unix(path)
        # receive() raises EndOfStream where the others return b"": the
        # workloads meet an end of stream only when a server failed.
        return Conn(stream.receive, stream.send, stream.aclose)


def missing_package(impl: str) -> str | None:
    """Why *impl* cannot be measured here (``"not installed"``), or None."""
    if impl == ANYIO and importlib.util.find_spec("anyio") is None:
        return "not installed"
    return None


class _RawTrioBackend(_TrioBackend):
    name = RAW

    async def connect(self, port: int, tls: TLSFiles | None) -> Conn:
        if tls is not None:
            raise BenchError("the raw trio.socket reference is plain TCP only")
        sock = trio.socket.socket()
        try:
            await sock.connect((HOST, port))
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, True)
        except BaseException:
            sock.close()
            raise
        return Conn(
            sock.recv, functools.partial(raw_send_all, sock), functools.partial(_raw_close, sock), sock.recv_into
        )


async def raw_send_all(sock: trio.socket.SocketType, data: Bytes) -> None:
    """What ``send_all`` is on a raw trio socket: send until all is sent."""
    sent = await sock.send(data)
    while sent < len(data):  # bounded: each pass sends at least one byte or raises
        sent += await sock.send(memoryview(data)[sent:])


async def _raw_close(sock: trio.socket.SocketType) -> None:
    sock.close()
    await trio.lowlevel.checkpoint()


async def _read_and_write(file: io.BufferedReader, size: int, send: Callable[[memoryview], Awaitable[object]]) -> None:
    """Send *size* bytes of *file* the way a program without sendfile does:
    read a chunk into one reused buffer, write it, again.  The file is in the
    page cache, so the reads do not block the event loop."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    done = 0
    while done < size:  # bounded: each pass sends at least one byte or raises
        count = file.readinto(view[: min(CHUNK, size - done)])
        if not count:
            raise BenchError(f"the file ended after {done} of {size} bytes")
        await send(view[:count])
        done += count


async def _receive_exactly(recv: Callable[[int], Awaitable[bytes | bytearray]], count: int) -> bytes:
    data = b""
    while len(data) < count:  # bounded: each pass takes at least one byte or raises
        more = await recv(count - len(data))
        if not more:
            raise BenchError(f"the server closed after {len(data)} of {count} bytes")
        data += more
    return data


async def _expect_count(recv: Callable[[int], Awaitable[bytes | bytearray]], size: int) -> None:
    """Wait for the drain server's count of the bytes it received."""
    (count,) = struct.unpack("!Q", await _receive_exactly(recv, 8))
    if count != size:
        raise BenchError(f"the server received {count} of {size} bytes")


async def _expect_echo(recv: Callable[[int], Awaitable[bytes | bytearray]]) -> None:
    if await _receive_exactly(recv, 1) != b"x":
        raise BenchError("the echo server answered something else")


BACKENDS: Final[dict[str, Backend]] = {
    RAW: _RawTrioBackend(),
    "rsocket": _RSocketBackend(),
    "trio": _TrioBackend(),
    "asyncio": _AsyncioBackend(),
    ANYIO: _AnyioBackend(),
}
