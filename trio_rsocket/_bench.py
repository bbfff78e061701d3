"""The benchmark: RSocket beside trio's own streams and asyncio's, as ratios.

Theory of operation
-------------------
A wrapper earns its place only if it costs nothing, so every figure RSocket
gets is shown beside the same workload driven by ``trio.SocketStream`` (or
``trio.SSLStream``) and by asyncio streams, measured in the same run on the
same machine, and reported as a ratio.

* **Separate processes.**  The server side of each workload runs in its own
  process (``python -c ... _server_main``), so client and server each get a
  core and neither steals the other's event loop.  The client runs in the
  bench process.  Both sides use the same implementation, so ratios compare
  like with like.  Only loopback (127.0.0.1) is used.  With two CPUs or more
  the clients are pinned to one and the servers to another, so every
  contender gets the same placement.
* **Interleaved.**  For each workload one server per implementation is started,
  then the repetitions run A B C, B C A, C A B, ... so slow drift of the
  machine (other processes, thermal state) lands on every contender alike.
  The figure reported is the median over repetitions, and the ratio is the
  median of the per-repetition ratios (each pair measured back to back).
* **Server CPU.**  Each server answers ``CPU`` on its standard input with
  the CPU time it has used, read before and after every measurement: the
  cost of the server side alone, per operation, whatever the client does.
* **No deadlines.**  Measurements are bounded by a watchdog task, not a
  cancel scope deadline: an enclosing deadline changes how RSocket writes TLS
  (a record at a time), and the common case is a program without one.
* **Bounded.**  Every loop has a count or a size, every measurement a time
  limit, and every server exits when its standard input closes (so a killed
  bench leaves no server behind) or after a hard lifetime.
* **Client CPU.**  Where the client is the subject (the file transfer's
  sender, the TLS reconnects), the bench process's own CPU time around each
  measurement is reported per operation too.  The file transfer's receiver
  is one neutral server, plain blocking sockets reading into a 1 MiB buffer,
  the same for every sender, so that the sender sets the pace.
* **Variants compared.**  Where a workload measures an implementation in
  two ways (``send_file`` and a read + write loop; a TLS reconnect with and
  without resuming the session), the quotient of the two is shown per
  implementation, paired repetition by repetition like every ratio.
* **Idle connections** are the exception: the figure is the server's resident
  memory per connection (``VmRSS`` from ``/proc/self/status`` before and after
  the connections arrive), so each repetition gets a fresh server process.
  The client side of that workload is plain blocking sockets, the same for
  every server.  Idle TLS pairs put both ends in that process, each made
  with the implementation under test (the server process connects to
  itself), so the figure is a whole pair's: client, server and the handler
  waiting in a read.

``--raw`` adds trio's socket layer called directly, the floor that a layer
over trio can reach.  The benchmark needs nothing beyond trio (and trustme
for the TLS workloads) on a POSIX system; ``--chart`` lazily imports
matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import io
import json
import math
import os
import platform
import select
import signal
import socket as stdlib_socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, TypeVar

import trio

# The public API only, as any program would use it.
from . import RSocket, get_socket_limit, set_socket_limit
from .testing import TRUSTME_HINT, make_cert_files, new_ca

__all__ = ["main"]

T = TypeVar("T")
_Bytes = bytes | bytearray | memoryview

HOST: Final = "127.0.0.1"
#: The size of every bulk write and of every read buffer (trio's default receive size).
CHUNK: Final = 65536
#: The message of the echo workloads.
ECHO_SIZE: Final = 64
#: One listen backlog for every server, so none is favoured (Linux caps it at somaxconn).
BACKLOG: Final = 4096
#: A server process ends by itself after this long, whatever happens to the bench.
SERVER_LIFETIME: Final = 1800.0
#: The implementations compared; the first is the subject, the others the baselines.
IMPLEMENTATIONS: Final = ("rsocket", "trio", "asyncio")
#: The optional reference (``--raw``): trio's socket layer called directly,
#: the floor that a layer over trio can reach (plain TCP only).
RAW: Final = "trio.socket"

#: The neutral server of the file transfer (blocking sockets), and its read size and time limit.
DRAIN: Final = "blocking"
DRAIN_BUFFER: Final = 2**20
DRAIN_TIMEOUT: Final = 120.0

_SERVER_ENTRY: Final = "import sys; from trio_rsocket._bench import _server_main; sys.exit(_server_main(sys.argv[1:]))"


class BenchError(RuntimeError):
    """A workload could not run (a server died, a peer closed early, a limit)."""


class MissingPackageError(BenchError):
    """A package the benchmark needs for what was asked is not installed."""


# The exit statuses, the same numbers as the other trio-rsocket commands use.
_EXIT_FAILED: Final = 1
_EXIT_USAGE: Final = 2
_EXIT_MISSING_PACKAGE: Final = 5

_EXIT_STATUS_HELP: Final = """\
exit status:
  0    success
  1    the benchmark failed (a server did not start or answer, a run took too long)
  2    bad arguments
  5    a package it needs is not installed (trustme for the TLS workloads,
       matplotlib for --chart; the message says how to install it)
  130  interrupted (Ctrl-C)
"""


# ----------------------------------------------------------------------
# What is measured
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run (``--quick`` picks the small set)."""

    bulk_bytes: int
    tls_bulk_bytes: int
    #: The file of the file transfer workload.
    file_bytes: int
    #: How long each timed measurement (echo, accepts, handshakes) runs.
    seconds: float
    repeat: int
    concurrent: int
    idle_connections: int
    #: Bound on any single measurement.
    timeout: float
    #: Idle TLS connection pairs, both ends in one process.
    tls_idle_pairs: int = 1000


FULL: Final = Settings(
    bulk_bytes=256 * 2**20,
    tls_bulk_bytes=64 * 2**20,
    file_bytes=256 * 2**20,
    seconds=1.5,
    repeat=5,
    concurrent=100,
    idle_connections=10_000,
    timeout=120.0,
)
QUICK: Final = Settings(
    bulk_bytes=8 * 2**20,
    tls_bulk_bytes=4 * 2**20,
    file_bytes=4 * 2**20,
    seconds=0.15,
    repeat=2,
    concurrent=100,
    idle_connections=500,
    timeout=60.0,
    tls_idle_pairs=100,
)


@dataclass(frozen=True)
class Workload:
    """One line (or two) of the table."""

    name: str
    title: str
    unit: str
    #: What the server does with each connection: bulk, echo, accept,
    #: handshake, idle, idle-pairs (idle, with the clients in the server's
    #: process), or drain (served by one neutral blocking-socket server
    #: for every contender, whose CPU time is not the subject).
    server: str
    tls: bool = False
    #: RSocket is measured once per variant (bulk: ``read`` and ``read_into``).
    variants: tuple[str, ...] = ("read",)
    higher_is_better: bool = True
    #: One operation, for the CPU time per operation ("" if not measured).
    operation: str = ""
    #: The contenders as ``(implementation, variant)`` where they are not
    #: RSocket's variants beside one trio and one asyncio client.  A baseline
    #: measured in several variants is shown in the row of the same variant.
    contenders: tuple[tuple[str, str], ...] = ()
    #: Pairs ``(variant, reference)`` shown as ratios of each other, for each
    #: implementation measured in both.
    compare: tuple[tuple[str, str], ...] = ()
    #: Also measure the client's CPU time per operation (the bench process).
    client_cpu: bool = False


#: The TLS reconnect variants: TLS version (the server's highest) and whether
#: the client offers the session of its previous connection.
_RECONNECT_VARIANTS: Final = ("tls1.3-full", "tls1.3-resumed", "tls1.2-full", "tls1.2-resumed")

WORKLOADS: Final = (
    Workload("bulk", "bulk transfer, 64 KiB writes", "MB/s", "bulk", variants=("read", "read_into"), operation="MB"),
    Workload("echo", "64-byte echo, 1 connection", "round trips/s", "echo", operation="round trip"),
    Workload("echo100", "64-byte echo, 100 connections", "round trips/s", "echo", operation="round trip"),
    Workload("accept", "sequential accepts", "accepts/s", "accept", operation="accept"),
    Workload(
        "file",
        "file transfer",
        "MB/s",
        "drain",
        variants=("send_file", "read+write"),
        operation="MB",
        # trio has no sendfile (trio#45): its read + send_all loop stands in both rows.
        contenders=(
            ("rsocket", "send_file"),
            ("rsocket", "read+write"),
            ("trio", "read+write"),
            ("asyncio", "send_file"),
            ("asyncio", "read+write"),
        ),
        compare=(("send_file", "read+write"),),
        client_cpu=True,
    ),
    Workload("tls-bulk", "TLS bulk transfer", "MB/s", "bulk", tls=True, operation="MB"),
    Workload("tls-echo", "TLS 64-byte echo, 1 connection", "round trips/s", "echo", tls=True, operation="round trip"),
    Workload(
        "tls-echo100", "TLS 64-byte echo, 100 connections", "round trips/s", "echo", tls=True, operation="round trip"
    ),
    Workload("tls-handshake", "TLS handshakes", "handshakes/s", "handshake", tls=True, operation="handshake"),
    Workload(
        "tls-resume",
        "TLS reconnects",
        "connects/s",
        "echo",
        tls=True,
        variants=_RECONNECT_VARIANTS,
        operation="connect",
        # asyncio's streams cannot offer a session (no session= anywhere on the way to the SSLObject).
        contenders=tuple((impl, variant) for impl in ("rsocket", "trio") for variant in _RECONNECT_VARIANTS),
        compare=(("tls1.3-resumed", "tls1.3-full"), ("tls1.2-resumed", "tls1.2-full")),
        client_cpu=True,
    ),
    Workload("idle", "idle connections, memory", "KiB/connection", "idle", higher_is_better=False),
    Workload("tls-idle", "idle TLS pairs, memory", "KiB/pair", "idle-pairs", tls=True, higher_is_better=False),
)
WORKLOAD_NAMES: Final = tuple(workload.name for workload in WORKLOADS)

#: How a variant is named in the table.
VARIANT_TITLES: Final = {
    "read+write": "read + write",
    "tls1.3-full": "TLS 1.3 full",
    "tls1.3-resumed": "TLS 1.3 resumed",
    "tls1.2-full": "TLS 1.2 full",
    "tls1.2-resumed": "TLS 1.2 resumed",
}


def _variant_title(variant: str) -> str:
    return VARIANT_TITLES.get(variant, variant)


# ----------------------------------------------------------------------
# TLS material
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throwaway CA and a server certificate for 127.0.0.1,
    and the highest TLS version a server offers ("": the default, TLS 1.3)."""

    ca: str
    cert: str
    key: str
    max_version: str = ""


def make_tls_files(directory: str) -> TLSFiles:
    """Write a trustme CA and a server certificate for 127.0.0.1 into *directory*
    (with :func:`trio_rsocket.testing.make_cert_files`, as the fixtures do)."""
    try:
        ca = new_ca()
    except ImportError:
        raise MissingPackageError(
            f"the TLS workloads need trustme: {TRUSTME_HINT} (or skip them with --only)"
        ) from None
    files = make_cert_files(ca, directory)
    return TLSFiles(ca=str(files.authority), cert=str(files.server_cert), key=str(files.server_key))


def _server_context(files: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    if files.max_version == "1.2":
        # The server caps the version, so every client connects as it always does.
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


_client_contexts: dict[str, ssl.SSLContext] = {}


def _client_context(files: TLSFiles) -> ssl.SSLContext:
    # One context per CA for the whole run, as a real client would keep it.
    context = _client_contexts.get(files.ca)
    if context is None:
        context = _client_contexts[files.ca] = ssl.create_default_context(cafile=files.ca)
    return context


def make_transfer_file(directory: str, size: int) -> str:
    """Write the file of the file transfer workload into *directory*: *size*
    bytes, a random MiB repeated.  Just written, it sits in the page cache,
    so the transfers measure the network path, not the disk."""
    path = os.path.join(directory, "transfer.bin")
    block = os.urandom(2**20)
    with open(path, "wb") as file:
        for offset in range(0, size, len(block)):
            file.write(block[: size - offset])
    return path


# ----------------------------------------------------------------------
# Client side: one connection, as the workloads drive it
# ----------------------------------------------------------------------


@dataclass
class _Conn:
    """The four operations a workload needs, bound to one implementation's calls."""

    recv: Callable[[int], Awaitable[bytes | bytearray]]
    send: Callable[[_Bytes], Awaitable[object]]
    close: Callable[[], Awaitable[None]]
    recv_into: Callable[[bytearray], Awaitable[int]] | None = None


class _Backend:
    """How one implementation connects, runs tasks and runs its event loop."""

    name = ""

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        raise NotImplementedError

    async def connect(self, port: int, tls: TLSFiles | None) -> _Conn:
        raise NotImplementedError

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


class _TrioBackend(_Backend):
    name = "trio"

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        return trio.run(_with_watchdog, fn, timeout)

    async def connect(self, port: int, tls: TLSFiles | None) -> _Conn:
        if tls is None:
            plain = await trio.open_tcp_stream(HOST, port)
            return _Conn(plain.receive_some, plain.send_all, plain.aclose)
        secure = await trio.open_ssl_over_tcp_stream(HOST, port, ssl_context=_client_context(tls))
        await secure.do_handshake()
        return _Conn(secure.receive_some, secure.send_all, secure.aclose)

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
        context = _client_context(tls)
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


async def _with_watchdog(fn: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``await fn()``, stopped after *timeout* seconds by a sibling task.

    Not ``trio.fail_after``: an enclosing deadline changes how RSocket writes
    TLS (a record at a time, so that a deadline can stop it between records),
    and the benchmark measures the common case, a program with no deadline.
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

    async def connect(self, port: int, tls: TLSFiles | None) -> _Conn:
        sock = RSocket()
        if tls is not None:
            sock.set_certs(authority=tls.ca)
        await sock.connect(HOST, port)
        return _Conn(sock.read, sock.write, sock.aclose, sock.read_into)

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


class _AsyncioBackend(_Backend):
    name = "asyncio"

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(fn(), timeout)

        return asyncio.run(bounded())

    async def connect(self, port: int, tls: TLSFiles | None) -> _Conn:
        context = None if tls is None else _client_context(tls)
        reader, writer = await asyncio.open_connection(HOST, port, ssl=context)

        async def send(data: _Bytes) -> None:
            writer.write(data)
            await writer.drain()

        async def close() -> None:
            writer.close()
            await writer.wait_closed()

        return _Conn(reader.read, send, close)

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


class _RawTrioBackend(_TrioBackend):
    name = RAW

    async def connect(self, port: int, tls: TLSFiles | None) -> _Conn:
        if tls is not None:
            raise BenchError("the raw trio.socket reference is plain TCP only")
        sock = trio.socket.socket()
        try:
            await sock.connect((HOST, port))
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, True)
        except BaseException:
            sock.close()
            raise
        return _Conn(
            sock.recv, functools.partial(_raw_send_all, sock), functools.partial(_raw_close, sock), sock.recv_into
        )


async def _raw_send_all(sock: trio.socket.SocketType, data: _Bytes) -> None:
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


BACKENDS: Final[dict[str, _Backend]] = {
    RAW: _RawTrioBackend(),
    "rsocket": _RSocketBackend(),
    "trio": _TrioBackend(),
    "asyncio": _AsyncioBackend(),
}


# ----------------------------------------------------------------------
# Client side: the workloads (written once, for every implementation)
# ----------------------------------------------------------------------


async def _bulk(backend: _Backend, port: int, size: int, tls: TLSFiles | None, variant: str) -> tuple[float, float]:
    """Ask the server for *size* bytes and read them; ``(MB, seconds)`` (MB: 10**6 bytes)."""
    conn = await backend.connect(port, tls)
    try:
        start = time.perf_counter()
        await conn.send(struct.pack("!Q", size))
        received = 0
        if variant == "read_into":
            assert conn.recv_into is not None
            recv_into, buffer = conn.recv_into, bytearray(CHUNK)
            while received < size:  # bounded: each pass takes at least one byte or raises
                count = await recv_into(buffer)
                if not count:
                    raise BenchError(f"server closed after {received} of {size} bytes")
                received += count
        else:
            recv = conn.recv
            while received < size:
                data = await recv(CHUNK)
                if not data:
                    raise BenchError(f"server closed after {received} of {size} bytes")
                received += len(data)
        elapsed = time.perf_counter() - start
    finally:
        await conn.close()
    return size / 1e6, elapsed


async def _echo_until(conn: _Conn, stop_at: float, limit: int) -> int:
    """64-byte round trips until *stop_at* (or *limit* of them); how many."""
    message, send, recv = b"x" * ECHO_SIZE, conn.send, conn.recv
    done = 0
    while done < limit:
        await send(message)
        got = 0
        while got < ECHO_SIZE:  # bounded: each pass takes at least one byte or raises
            data = await recv(CHUNK)
            if not data:
                raise BenchError("echo server closed the connection")
            got += len(data)
        done += 1
        if time.perf_counter() >= stop_at:
            break
    return done


async def _echo(
    backend: _Backend, port: int, seconds: float, connections: int, tls: TLSFiles | None = None
) -> tuple[float, float]:
    """Round trips over *connections* concurrent connections (TLS with *tls*)
    for about *seconds*; ``(round trips, seconds)``."""
    conns = [await backend.connect(port, tls) for _ in range(connections)]
    try:
        # Generous cap: no loopback round trip takes under a microsecond.
        limit = int(seconds * 1e6) + 1
        start = time.perf_counter()
        stop_at = start + seconds
        if connections == 1:
            done = await _echo_until(conns[0], stop_at, limit)
        else:
            done = sum(await backend.gather([functools.partial(_echo_until, conn, stop_at, limit) for conn in conns]))
        elapsed = time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()
    return done, elapsed


async def _accepts(backend: _Backend, port: int, seconds: float, tls: TLSFiles | None) -> tuple[float, float]:
    """Sequential connections for about *seconds*: connect (and handshake),
    read the server's answer up to its close, close; ``(connections, seconds)``."""
    limit = int(seconds * 1e6) + 1
    start = time.perf_counter()
    stop_at = start + seconds
    done = 0
    while done < limit:
        conn = await backend.connect(port, tls)
        try:
            for _ in range(2):  # the server sends at most one byte, then closes
                if not await conn.recv(CHUNK):
                    break
        finally:
            await conn.close()
        done += 1
        if time.perf_counter() >= stop_at:
            break
    return done, time.perf_counter() - start


async def _file_transfer(
    backend: _Backend, port: int, file: io.BufferedReader, size: int, variant: str
) -> tuple[float, float]:
    """Send *size* bytes of *file* to the drain server and wait until it has
    counted them all; ``(MB, seconds)``."""
    start = time.perf_counter()
    await backend.send_file(port, file, size, variant)
    return size / 1e6, time.perf_counter() - start


async def _reconnects(backend: _Backend, port: int, seconds: float, tls: TLSFiles, variant: str) -> tuple[float, float]:
    """Sequential TLS connections for about *seconds*, each with a 1-byte
    round trip, offering the previous session if *variant* resumes;
    ``(connections, seconds)``.  Every handshake must have resumed, or none."""
    resume = variant.endswith("-resumed")
    reconnect = backend.reconnector(port, tls, resume)
    if resume:
        await reconnect()  # unmeasured: the full handshake that brings the first session
    limit = int(seconds * 1e6) + 1
    start = time.perf_counter()
    stop_at = start + seconds
    done = 0
    while done < limit:
        reused = await reconnect()
        if reused != resume:
            raise BenchError(
                f"{backend.name} {_variant_title(variant)}: connection {done + 1} "
                + ("did not resume the session it offered" if resume else "resumed a session nobody offered")
            )
        done += 1
        if time.perf_counter() >= stop_at:
            break
    return done, time.perf_counter() - start


@dataclass(frozen=True)
class _Measurement:
    figure: float
    #: Operations done (MB for the transfers), for the CPU time per operation.
    operations: float
    #: CPU time of the client (this process) during the measurement.
    client_cpu_seconds: float


def _measure(
    impl: str,
    variant: str,
    workload: Workload,
    port: int,
    settings: Settings,
    tls: TLSFiles | None,
    transfer_file: str | None = None,
) -> _Measurement:
    """Run one measurement (*transfer_file*: the file of the file transfer workload)."""
    if workload.name == "file":
        assert transfer_file is not None
        with open(transfer_file, "rb") as file:
            transfer = functools.partial(_file_transfer, BACKENDS[impl], port, file, settings.file_bytes, variant)
            return _run_timed(impl, transfer, settings.timeout)
    backend = BACKENDS[impl]
    work: Callable[[], Awaitable[tuple[float, float]]]
    if workload.name == "tls-resume":
        assert tls is not None
        work = functools.partial(_reconnects, backend, port, settings.seconds, tls, variant)
    elif workload.name in ("bulk", "tls-bulk"):
        size = settings.tls_bulk_bytes if workload.tls else settings.bulk_bytes
        work = functools.partial(_bulk, backend, port, size, tls, variant)
    elif workload.name in ("echo", "echo100", "tls-echo", "tls-echo100"):
        connections = settings.concurrent if workload.name.endswith("100") else 1
        work = functools.partial(_echo, backend, port, settings.seconds, connections, tls)
    elif workload.name in ("accept", "tls-handshake"):
        work = functools.partial(_accepts, backend, port, settings.seconds, tls)
    else:
        raise AssertionError(f"no client for {workload.name}")
    return _run_timed(impl, work, settings.timeout)


def _run_timed(impl: str, work: Callable[[], Awaitable[tuple[float, float]]], timeout: float) -> _Measurement:
    """Run *work* (which returns ``(operations, seconds)``) in *impl*'s event loop."""

    async def timed() -> tuple[float, float, float]:
        # Around the work only: the event loop's start and end stay out.
        cpu_before = time.process_time()
        count, seconds = await work()
        return count, seconds, time.process_time() - cpu_before

    count, seconds, cpu_seconds = BACKENDS[impl].run(timed, timeout)
    return _Measurement(count / seconds, count, cpu_seconds)


def _warm_up(
    impl: str, variant: str, workload: Workload, port: int, tls: TLSFiles | None, transfer_file: str | None
) -> None:
    """One small unmeasured pass, so first-use costs (imports, caches) stay out of the figures."""
    small = Settings(
        bulk_bytes=2 * 2**20,
        tls_bulk_bytes=2 * 2**20,
        file_bytes=2 * 2**20,
        seconds=0.05,
        repeat=1,
        concurrent=10,
        idle_connections=0,
        timeout=30.0,
    )
    _measure(impl, variant, workload, port, small, tls, transfer_file)


# ----------------------------------------------------------------------
# Server side (runs in its own process)
# ----------------------------------------------------------------------


def _rss_kib() -> int:
    """Resident memory of this process in KiB (Linux), -1 where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def raise_fd_limit() -> tuple[int, int, int]:
    """Raise this process's descriptor soft limit to the hard limit where allowed.

    Returns ``(soft before, soft now, hard)``.
    """
    try:
        import resource
    except ImportError:  # not on this OS
        return (-1, -1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            return (soft, soft, hard)
    return (soft, wanted, hard)


def _say(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # A server whose bench process is gone (Ctrl-C): nobody is left to
        # serve or to tell, and a traceback would only land on the terminal.
        os._exit(0)


@dataclass
class _ServerState:
    kind: str
    target: int
    live: int = 0
    reported: bool = False
    chunk: bytes = field(default=b"\0" * CHUNK)
    #: Idle pairs: the server also opens *target* connections to itself, with
    #: its own implementation, and holds them here.
    pairs: bool = False
    clients: list[_Conn] = field(default_factory=list)

    def arrived(self) -> None:
        """Count an idle connection; report memory once all have arrived."""
        self.live += 1
        if not self.reported and self.live >= self.target:
            self.reported = True
            gc.collect()
            _say(f"CONNS {self.live} {_rss_kib()}")


async def _serve_connection(
    state: _ServerState,
    recv: Callable[[int], Awaitable[bytes | bytearray]],
    send: Callable[[_Bytes], Awaitable[object]],
) -> None:
    """The server side of every workload, written once for every implementation."""
    kind = state.kind
    if kind == "echo":
        while True:  # bounded by the client, which closes after its last round trip
            data = await recv(CHUNK)
            if not data:
                return
            await send(data)
    elif kind == "bulk":
        header = b""
        while len(header) < 8:
            data = await recv(8 - len(header))
            if not data:
                return
            header += data
        (size,) = struct.unpack("!Q", header)
        chunk = state.chunk
        for offset in range(0, size, CHUNK):
            await send(chunk if size - offset >= CHUNK else chunk[: size - offset])
        await recv(CHUNK)  # the client's close
    elif kind == "handshake":
        await send(b"!")
    elif kind == "idle":
        state.arrived()
        try:
            await recv(CHUNK)
        finally:
            state.live -= 1
    # "accept": nothing; the connection is closed at once.


async def _open_clients(impl: str, state: _ServerState, port: int, tls: TLSFiles | None) -> None:
    """The client ends of the idle pairs: *state.target* connections to this
    process's own server, one after the other, with the same implementation,
    held in *state* until the server stops."""
    backend = BACKENDS[impl]
    for _ in range(state.target):
        state.clients.append(await backend.connect(port, tls))


async def _trio_server(state: _ServerState, tls: TLSFiles | None) -> None:
    async def handler(stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> None:
        # serve_tcp closes the stream when this returns, but without
        # close_notify on TLS: that needs a graceful aclose.
        with contextlib.suppress(trio.BrokenResourceError):
            if isinstance(stream, trio.SSLStream) and state.kind == "idle":
                # serve_ssl_over_tcp hands the stream over before its
                # handshake; an idle connection is one that finished it.
                await stream.do_handshake()
            await _serve_connection(state, stream.receive_some, stream.send_all)
        if tls is not None:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        if tls is None:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host=HOST, backlog=BACKLOG))
        else:
            context = _server_context(tls)
            listeners = await nursery.start(
                functools.partial(trio.serve_ssl_over_tcp, handler, 0, context, host=HOST, backlog=BACKLOG)
            )
        port = listeners[0].transport_listener.socket.getsockname()[1] if tls else listeners[0].socket.getsockname()[1]
        if state.pairs:
            nursery.start_soon(_open_clients, "trio", state, port, tls)
        await _trio_ready_and_wait(port, nursery.cancel_scope)


async def _rsocket_server(state: _ServerState, tls: TLSFiles | None) -> None:
    async def handler(data: object, sock: RSocket) -> None:
        # The listener closes the socket when this returns (TLS: close_notify first).
        with contextlib.suppress(trio.BrokenResourceError):
            await _serve_connection(state, sock.read, sock.write)

    # Ioto's default socket limit (1000) would turn the idle workload away.
    set_socket_limit(max(get_socket_limit(), state.target + 100))
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        if tls is not None and tls.max_version:
            listener.set_ssl_context(_server_context(tls))
        elif tls is not None:
            listener.set_certs(key=tls.key, cert=tls.cert)
        await listener.listen(HOST, 0, handler, nursery=nursery, backlog=BACKLOG)
        if state.pairs:
            nursery.start_soon(_open_clients, "rsocket", state, listener.get_addr()[1], tls)
        await _trio_ready_and_wait(listener.get_addr()[1], nursery.cancel_scope)


class _Commands:
    """The server's side of its standard input: ``CPU`` asks for the CPU time
    used so far (answered ``CPU seconds``); end of file means stop."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bool:
        """Handle what arrived; False at end of file."""
        if not data:
            return False
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            if line.strip() == b"CPU":
                _say(f"CPU {time.process_time():.6f}")
        return True


#: Bound on the commands one server answers (the bench sends two per measurement).
_MAX_COMMANDS: Final = 1_000_000


async def _raw_trio_server(state: _ServerState, tls: TLSFiles | None) -> None:
    async def handler(sock: trio.socket.SocketType) -> None:
        with sock, contextlib.suppress(ConnectionError):
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, True)
            await _serve_connection(state, sock.recv, functools.partial(_raw_send_all, sock))

    async def accept_loop(listener: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        while True:  # until the server stops (its nursery is cancelled)
            sock, _ = await listener.accept()
            nursery.start_soon(handler, sock)

    if tls is not None:
        raise BenchError("the raw trio.socket reference is plain TCP only")
    with trio.socket.socket() as listener:
        listener.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        await listener.bind((HOST, 0))
        listener.listen(BACKLOG)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_loop, listener, nursery)
            await _trio_ready_and_wait(listener.getsockname()[1], nursery.cancel_scope)


async def _trio_ready_and_wait(port: int, scope: trio.CancelScope) -> None:
    gc.collect()
    _say(f"READY {port} {_rss_kib()}")
    commands, fd = _Commands(), sys.stdin.fileno()
    for _ in range(_MAX_COMMANDS):
        await trio.lowlevel.wait_readable(fd)
        if not commands.feed(os.read(fd, 4096)):
            break
    scope.cancel()


async def _asyncio_server(state: _ServerState, tls: TLSFiles | None) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(data: _Bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await _serve_connection(state, reader.read, send)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    context = None if tls is None else _server_context(tls)
    server = await asyncio.start_server(handler, HOST, 0, backlog=BACKLOG, ssl=context)
    async with server:
        gc.collect()
        port = server.sockets[0].getsockname()[1]
        _say(f"READY {port} {_rss_kib()}")
        # Started after READY, whose memory figure is the baseline.
        clients = asyncio.create_task(_open_clients("asyncio", state, port, tls)) if state.pairs else None
        closed, commands, fd = asyncio.Event(), _Commands(), sys.stdin.fileno()

        def command() -> None:
            if not commands.feed(os.read(fd, 4096)):
                closed.set()

        asyncio.get_running_loop().add_reader(fd, command)
        await closed.wait()
        if clients is not None:
            # Close the client ends first, so that the handlers end at their
            # end of file rather than being cancelled with the loop.
            clients.cancel()
            closing = asyncio.gather(*(conn.close() for conn in state.clients), return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing, 30)


def _drain_server() -> None:
    """The receiver of the file transfer, the same for every sender: plain
    blocking sockets, one connection at a time, each read into one reused
    1 MiB buffer, so that the sender, the subject, sets the pace."""
    buffer = bytearray(DRAIN_BUFFER)
    commands, stdin = _Commands(), sys.stdin.fileno()
    give_up = time.monotonic() + SERVER_LIFETIME
    with stdlib_socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(BACKLOG)
        gc.collect()
        _say(f"READY {listener.getsockname()[1]} {_rss_kib()}")
        for _ in range(_MAX_COMMANDS):  # a command or a connection per pass
            left = give_up - time.monotonic()
            if left <= 0:
                break
            readable = select.select([listener, stdin], [], [], left)[0]
            if stdin in readable and not commands.feed(os.read(stdin, 4096)):
                break
            if listener in readable:
                conn = listener.accept()[0]
                with conn, contextlib.suppress(OSError):
                    conn.settimeout(DRAIN_TIMEOUT)
                    _drain(conn, buffer)


def _drain(conn: stdlib_socket.socket, buffer: bytearray) -> None:
    """Read the 8-byte size and that many bytes; answer the count."""
    header = b""
    while len(header) < 8:  # bounded: each pass takes at least one byte or returns
        data = conn.recv(8 - len(header))
        if not data:
            return
        header += data
    (size,) = struct.unpack("!Q", header)
    received = 0
    while received < size:  # bounded: each pass takes at least one byte or returns
        count = conn.recv_into(buffer, min(len(buffer), size - received))
        if not count:
            return
        received += count
    conn.sendall(struct.pack("!Q", received))


def _server_main(argv: list[str]) -> int:
    """Entry point of a server process: ``IMPL KIND TARGET CPU [CA CERT KEY]``
    (CPU -1: run anywhere)."""
    # Ctrl-C in a terminal reaches the whole process group; a server stops
    # when its standard input closes, which the bench process sees to.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    impl, kind, target, cpu = argv[0], argv[1], int(argv[2]), int(argv[3])
    tls = TLSFiles(*argv[4:8]) if len(argv) >= 7 else None
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    raise_fd_limit()
    state = _ServerState("idle", target, pairs=True) if kind == "idle-pairs" else _ServerState(kind, target)
    if impl == DRAIN:
        _drain_server()
    elif impl == "asyncio":

        async def bounded() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_asyncio_server(state, tls), SERVER_LIFETIME)

        asyncio.run(bounded())
    else:
        serve = {"rsocket": _rsocket_server, RAW: _raw_trio_server}.get(impl, _trio_server)

        with contextlib.suppress(BenchError):
            trio.run(_with_watchdog, functools.partial(serve, state, tls), SERVER_LIFETIME)
    return 0


class ServerProcess:
    """A server in its own process; it stops when its standard input closes."""

    def __init__(self, impl: str, kind: str, tls: TLSFiles | None, cpu: int | None, target: int = 0) -> None:
        args = [sys.executable, "-c", _SERVER_ENTRY, impl, kind, str(target), str(-1 if cpu is None else cpu)]
        if tls is not None:
            args += [tls.ca, tls.cert, tls.key, tls.max_version]
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._pending = b""
        try:
            words = self.expect("READY", 60.0)
        except BaseException:
            self.stop()
            raise
        self.port, self.rss_kib = int(words[0]), int(words[1])

    def expect(self, keyword: str, timeout: float) -> list[str]:
        """Wait up to *timeout* seconds for the server's next line, which must
        start with *keyword*; return its other words."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        give_up = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = give_up - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError(f"no {keyword} from the server within {timeout:g} s")
            data = os.read(fd, 4096)
            if not data:
                raise BenchError(f"the server exited (status {self._process.wait()}) before {keyword}")
            self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        words = line.decode().split()
        if not words or words[0] != keyword:
            raise BenchError(f"expected {keyword} from the server, got {line!r}")
        return words[1:]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server has used so far, as it reports it."""
        assert self._process.stdin is not None
        self._process.stdin.write(b"CPU\n")
        self._process.stdin.flush()
        return float(self.expect("CPU", 30.0)[0])

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


#: Which server a contender talks to: (implementation, highest TLS version or "").
_ServerKey = tuple[str, str]


def _server_key(workload: Workload, impl: str, variant: str) -> _ServerKey:
    if workload.server == "drain":
        return (DRAIN, "")
    return (impl, "1.2" if variant.startswith("tls1.2") else "")


@contextmanager
def _servers(
    keys: Sequence[_ServerKey], kind: str, tls: TLSFiles | None, cpu: int | None
) -> Iterator[dict[_ServerKey, ServerProcess]]:
    started: dict[_ServerKey, ServerProcess] = {}
    try:
        for key in keys:
            impl, max_version = key
            files = None if tls is None else replace(tls, max_version=max_version)
            started[key] = ServerProcess(impl, kind, files, cpu)
        yield started
    finally:
        for server in started.values():
            server.stop()


# ----------------------------------------------------------------------
# Idle connections
# ----------------------------------------------------------------------


def _idle_kib_per_connection(impl: str, connections: int, timeout: float, cpu: int | None) -> float:
    """Open *connections* plain connections to a fresh server; its RSS growth per connection."""
    server = ServerProcess(impl, "idle", None, cpu, target=connections)
    socks: list[stdlib_socket.socket] = []
    try:
        for _ in range(connections):
            sock = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(timeout)
            sock.connect((HOST, server.port))
        count, rss = (int(word) for word in server.expect("CONNS", timeout))
        return (rss - server.rss_kib) / count
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def _idle_kib_per_pair(impl: str, pairs: int, tls: TLSFiles | None, timeout: float, cpu: int | None) -> float:
    """A fresh server process that opens *pairs* TLS connections to itself,
    both ends with *impl*, each server handler waiting in a read; its RSS
    growth per pair (client, server and handler)."""
    server = ServerProcess(impl, "idle-pairs", tls, cpu, target=pairs)
    try:
        count, rss = (int(word) for word in server.expect("CONNS", timeout))
        return (rss - server.rss_kib) / count
    finally:
        server.stop()


# ----------------------------------------------------------------------
# Running it all
# ----------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: RSocket (one variant) beside the baselines."""

    workload: str
    title: str
    unit: str
    higher_is_better: bool
    samples: dict[str, list[float]]
    #: What one operation is, for ``server_cpu`` ("" where not measured).
    operation: str = ""
    #: The server process's CPU time per operation, in microseconds.
    server_cpu: dict[str, list[float]] = field(default_factory=dict)
    #: The client's (this process's) CPU time per operation, in microseconds,
    #: where the workload measures it.
    client_cpu: dict[str, list[float]] = field(default_factory=dict)
    #: Which variant of each implementation the samples are (where it has several).
    variants: dict[str, str] = field(default_factory=dict)

    def median(self, impl: str) -> float:
        return _median(self.samples.get(impl, []))

    def ratio(self, baseline: str) -> float:
        """Median over repetitions of how many times better RSocket did than
        *baseline* (>1: RSocket ahead; for memory, it used less)."""
        return _paired_ratio(self.samples, baseline, self.higher_is_better)

    def cpu_median(self, impl: str) -> float:
        return _median(self.server_cpu.get(impl, []))

    def cpu_ratio(self, baseline: str) -> float:
        """How many times less CPU RSocket's server used per operation than *baseline*'s."""
        return _paired_ratio(self.server_cpu, baseline, higher_is_better=False)

    def client_cpu_median(self, impl: str) -> float:
        return _median(self.client_cpu.get(impl, []))

    def client_cpu_ratio(self, baseline: str) -> float:
        """How many times less CPU RSocket's client used per operation than *baseline*'s."""
        return _paired_ratio(self.client_cpu, baseline, higher_is_better=False)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _paired_ratio(samples: dict[str, list[float]], baseline: str, higher_is_better: bool) -> float:
    ours, theirs = samples.get("rsocket", []), samples.get(baseline, [])
    return _paired_quotient(ours, theirs) if higher_is_better else _paired_quotient(theirs, ours)


def _paired_quotient(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    # Repetition i of each contender ran back to back, so their ratio is
    # taken pair by pair: slow drift of the machine cancels out.
    pairs = [a / b for a, b in zip(numerators, denominators, strict=False) if a > 0 and b > 0]
    return statistics.median(pairs) if pairs else math.nan


def _contestants(workload: Workload, raw: bool) -> list[tuple[str, str]]:
    if workload.contenders:
        return list(workload.contenders)
    baselines = [("trio", ""), ("asyncio", "")] + ([(RAW, "")] if raw and not workload.tls else [])
    return [("rsocket", variant) for variant in workload.variants] + baselines


def _shown_variant(contestants: Sequence[tuple[str, str]], impl: str, variant: str) -> str | None:
    """The variant of *impl* shown in the row of RSocket's *variant*: the same
    one if *impl* was measured in it, else its only one (None: neither)."""
    own = [theirs for name, theirs in contestants if name == impl]
    if variant in own:
        return variant
    return own[0] if len(own) == 1 else None


def run_workload(
    workload: Workload,
    settings: Settings,
    tls: TLSFiles | None,
    server_cpu: int | None,
    log: Callable[[str], None],
    raw: bool = False,
    transfer_file: str | None = None,
) -> list[Row]:
    """Measure one workload, interleaved, and return its rows; servers run on
    *server_cpu* if given; *raw* adds the raw trio.socket reference;
    *transfer_file* is the file the file transfer sends."""
    contestants = _contestants(workload, raw)
    impls = list(dict.fromkeys(impl for impl, _ in contestants))
    if not workload.tls:
        tls = None
    samples: dict[tuple[str, str], list[float]] = {contestant: [] for contestant in contestants}
    server_cpu_us: dict[tuple[str, str], list[float]] = {contestant: [] for contestant in contestants}
    client_cpu_us: dict[tuple[str, str], list[float]] = {contestant: [] for contestant in contestants}
    if workload.server in ("idle", "idle-pairs"):
        for rep in range(settings.repeat):
            shift = rep % len(contestants)
            for impl, variant in contestants[shift:] + contestants[:shift]:
                samples[impl, variant].append(
                    _idle_kib_per_connection(impl, settings.idle_connections, settings.timeout, server_cpu)
                    if workload.server == "idle"
                    else _idle_kib_per_pair(impl, settings.tls_idle_pairs, tls, settings.timeout, server_cpu)
                )
    else:
        keys = {contestant: _server_key(workload, *contestant) for contestant in contestants}
        with _servers(list(dict.fromkeys(keys.values())), workload.server, tls, server_cpu) as servers:
            for impl, variant in contestants:
                _warm_up(impl, variant, workload, servers[keys[impl, variant]].port, tls, transfer_file)
            for rep in range(settings.repeat):
                shift = rep % len(contestants)
                for impl, variant in contestants[shift:] + contestants[:shift]:
                    server = servers[keys[impl, variant]]
                    cpu_before = server.cpu_seconds()
                    measured = _measure(impl, variant, workload, server.port, settings, tls, transfer_file)
                    cpu_used = server.cpu_seconds() - cpu_before
                    samples[impl, variant].append(measured.figure)
                    if measured.operations > 0:
                        # The drain server is the same for every sender: its CPU time is not the subject.
                        if workload.server != "drain":
                            server_cpu_us[impl, variant].append(cpu_used / measured.operations * 1e6)
                        if workload.client_cpu:
                            client_cpu_us[impl, variant].append(measured.client_cpu_seconds / measured.operations * 1e6)
                    log(
                        f"  {workload.name} {impl}{' ' + variant if variant else ''}: "
                        f"{measured.figure:,.1f} {workload.unit}"
                    )
    rows = []
    for variant in workload.variants:
        shown = {impl: _shown_variant(contestants, impl, variant) for impl in impls}
        picked = {impl: (impl, theirs) for impl, theirs in shown.items() if theirs is not None}
        several = len(workload.variants) > 1
        rows.append(
            Row(
                workload=workload.name + (f":{variant}" if several else ""),
                title=workload.title + (f" ({_variant_title(variant)})" if several else ""),
                unit=workload.unit,
                higher_is_better=workload.higher_is_better,
                samples={impl: samples[key] for impl, key in picked.items()},
                operation=workload.operation,
                server_cpu={impl: server_cpu_us[key] for impl, key in picked.items()},
                client_cpu={impl: client_cpu_us[key] for impl, key in picked.items() if client_cpu_us[key]},
                variants={impl: theirs for impl, (_, theirs) in picked.items() if theirs},
            )
        )
    return rows


# ----------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------


def _figure(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _header(rows: Sequence[Row]) -> tuple[str, ...]:
    header = ("workload", "unit", "RSocket", "trio", "vs trio", "asyncio", "vs asyncio")
    return header + ((RAW, f"vs {RAW}") if _has_raw(rows) else ())


def _has_raw(rows: Sequence[Row]) -> bool:
    return any(row.samples.get(RAW) for row in rows)


def _figure_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    baselines = ["trio", "asyncio"] + ([RAW] if _has_raw(rows) else [])
    return [
        (
            row.title,
            row.unit,
            _figure(row.median("rsocket")),
            *(cell for impl in baselines for cell in (_figure(row.median(impl)), _ratio(row.ratio(impl)))),
        )
        for row in rows
    ]


def _cpu_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    baselines = ["trio", "asyncio"] + ([RAW] if _has_raw(rows) else [])
    return [
        (
            row.title,
            f"us/{row.operation}",
            _figure(row.cpu_median("rsocket")),
            *(cell for impl in baselines for cell in (_figure(row.cpu_median(impl)), _ratio(row.cpu_ratio(impl)))),
        )
        for row in rows
        if row.operation and any(row.server_cpu.values())
    ]


def _client_cpu_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    baselines = ["trio", "asyncio"] + ([RAW] if _has_raw(rows) else [])
    return [
        (
            row.title,
            f"us/{row.operation}",
            _figure(row.client_cpu_median("rsocket")),
            *(
                cell
                for impl in baselines
                for cell in (_figure(row.client_cpu_median(impl)), _ratio(row.client_cpu_ratio(impl)))
            ),
        )
        for row in rows
        if row.operation and any(row.client_cpu.values())
    ]


#: The implementations of the variant comparisons, in their column order.
_COMPARED: Final = ("rsocket", "trio", "asyncio")
_COMPARISON_HEADER: Final = ("comparison", "unit", "RSocket", "trio", "asyncio")


def _comparison_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """For each pair of variants a workload compares: the quotient of their
    figures, and of their client CPU time per operation, per implementation
    measured in both (the median of the per-repetition quotients)."""
    by_name = {row.workload: row for row in rows}
    lines: list[tuple[str, ...]] = []
    for workload in WORKLOADS:
        for variant, reference in workload.compare:
            ours, theirs = by_name.get(f"{workload.name}:{variant}"), by_name.get(f"{workload.name}:{reference}")
            if ours is None or theirs is None:
                continue
            both = [
                impl
                for impl in _COMPARED
                if ours.variants.get(impl) == variant and theirs.variants.get(impl) == reference
            ]
            title = f"{workload.title}: {_variant_title(variant)} / {_variant_title(reference)}"
            for label, unit, our_series, their_series in (
                ("", workload.unit, ours.samples, theirs.samples),
                (", client CPU", f"us/{workload.operation}", ours.client_cpu, theirs.client_cpu),
            ):
                quotients = {
                    impl: _paired_quotient(our_series.get(impl, []), their_series.get(impl, [])) for impl in both
                }
                if any(not math.isnan(value) for value in quotients.values()):
                    lines.append((title + label, unit, *(_ratio(quotients.get(impl, math.nan)) for impl in _COMPARED)))
    return lines


def _text_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in lines)])


def _rst_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *lines]:
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {cell}" for cell in cells[1:])
    return "\n".join(out)


_SERVER_CPU_TITLE: Final = "Server CPU time per operation (lower is better; ratio > 1: RSocket's server used less):"
_CLIENT_CPU_TITLE: Final = (
    "Client CPU time per operation, the sender's in the file transfer "
    "(lower is better; ratio > 1: RSocket's client used less):"
)
_COMPARISON_TITLE: Final = (
    "Variants compared: the first's figure (or CPU time) divided by the second's, each implementation against itself:"
)


def _sections(rows: Sequence[Row]) -> list[tuple[str, Sequence[str], list[tuple[str, ...]]]]:
    """The tables to show: (title, header, lines), the figures first."""
    header = _header(rows)
    sections = [
        ("", header, _figure_cells(rows)),
        (_SERVER_CPU_TITLE, header, _cpu_cells(rows)),
        (_CLIENT_CPU_TITLE, header, _client_cpu_cells(rows)),
        (_COMPARISON_TITLE, _COMPARISON_HEADER, _comparison_cells(rows)),
    ]
    return [section for section in sections if section[2]]


def format_table(rows: Sequence[Row]) -> str:
    """The results as plain-text tables: the figures, then the servers' and
    the clients' CPU time per operation where they were measured, then the
    variants that a workload compares with each other."""
    return "\n\n".join(
        (f"{title}\n\n" if title else "") + _text_table(header, lines) for title, header, lines in _sections(rows)
    )


def format_rst_table(rows: Sequence[Row]) -> str:
    """The results as reST ``list-table`` directives (for docs/performance.rst)."""
    return "\n\n".join(
        (f"{title}\n\n" if title else "") + _rst_table(header, lines) for title, header, lines in _sections(rows)
    )


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only, or :class:`MissingPackageError`
    saying how to install it."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise MissingPackageError(
            "--chart needs matplotlib: pip install '.[bench]' in a clone of trio-rsocket, or pip install matplotlib"
        ) from None


def write_chart(rows: Sequence[Row], path: str) -> None:
    """A bar chart of the ratios (needs matplotlib: the ``bench`` extra)."""
    plt = _pyplot()
    titles = [row.title for row in rows]
    positions = range(len(rows))
    height = 0.38
    figure, axes = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.6), dpi=100)
    for offset, baseline, color in ((-height / 2, "trio", "#4878a8"), (height / 2, "asyncio", "#e0a030")):
        values = [row.ratio(baseline) for row in rows]
        axes.barh([p + offset for p in positions], values, height, label=f"RSocket / {baseline}", color=color)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_yticks(list(positions), titles)
    axes.invert_yaxis()
    axes.set_xlabel("times better than the baseline (memory: times less); 1 = level")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _environment(settings: Settings, fd_limits: tuple[int, int, int]) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "trio": trio.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "settings": asdict(settings),
        "fd_limit": {"before": fd_limits[0], "now": fd_limits[1], "hard": fd_limits[2]},
    }


# ----------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-rsocket bench",
        description="Benchmark RSocket beside trio.SocketStream / trio.SSLStream and asyncio streams "
        "(loopback only, server in a separate process, interleaved repetitions, medians, ratios).",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and two repetitions (a smoke test)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="WORKLOAD",
        choices=WORKLOAD_NAMES,
        help=f"run only these: {', '.join(WORKLOAD_NAMES)}",
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions per contender (default 5, quick 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--chart", metavar="FILE", help="also draw a chart of the ratios (needs matplotlib)")
    parser.add_argument("--rst", action="store_true", help="also print the table as reST (for the docs)")
    parser.add_argument("--load", metavar="FILE", help="do not measure: show the results saved by --json FILE")
    parser.add_argument(
        "--raw", action="store_true", help=f"also measure the raw {RAW} reference (plain TCP workloads)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin clients and servers to CPUs of their own")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    return parser


class _UsageError(Exception):
    """A bad argument found before measuring: one line, exit status 2."""


def _rows_from_json(path: str) -> tuple[list[Row], dict[str, Any]]:
    """The rows and environment saved by ``--json`` in *path*.

    Raises :class:`_UsageError` for a file that cannot be read, is not JSON,
    or is not such results; the shape is checked by formatting the report
    (:func:`_report`), which touches every field the report shows.
    """
    try:
        with open(path, encoding="utf-8") as saved:
            document = json.load(saved)
    except OSError as exc:
        raise _UsageError(f"--load {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _UsageError(f"--load {path}: not JSON ({exc})") from None
    try:
        rows = [Row(**row) for row in document["rows"]]
        environment = document["environment"]
        _report(rows, environment, rst=True)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise _UsageError(f"--load {path}: not the results saved by --json ({what})") from None
    return rows, environment


def _report(rows: Sequence[Row], environment: dict[str, Any], rst: bool) -> str:
    """What the benchmark prints: the table, the footer, the reST table if asked."""
    parts = [format_table(rows), _footer(environment)]
    if rst:
        parts.append(format_rst_table(rows))
    return "\n\n".join(parts)


@contextmanager
def _output_file(option: str, path: str | None) -> Iterator[io.TextIOWrapper | None]:
    """*path* (given as *option*) opened for writing before anything is
    measured, so that a path that cannot be written fails at once, not after
    the whole run.  Opened for appending, so nothing is lost yet: the writer
    empties it when the results are there.  A file made here and left empty
    (the run failed or was interrupted) is removed again."""
    if path is None:
        yield None
        return
    existed = os.path.lexists(path)
    try:
        out = open(path, "a", encoding="utf-8")  # noqa: SIM115  (held across the run by the with below)
    except OSError as exc:
        raise _UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    try:
        with out:
            yield out
    finally:
        if not existed:
            with contextlib.suppress(OSError):
                if os.path.getsize(path) == 0:
                    os.remove(path)


def main(argv: list[str] | None = None) -> int:
    """``trio-rsocket bench``: run the benchmark and print the table."""
    options = _parser().parse_args(argv)
    if os.name != "posix":
        print("trio-rsocket bench: the benchmark runs on POSIX systems (Linux, macOS) only", file=sys.stderr)
        return _EXIT_FAILED

    def log(message: str) -> None:
        if not options.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        # Everything that can be found wrong is, before anything is measured.
        loaded = _rows_from_json(options.load) if options.load else None
        if options.chart:
            _pyplot()
        with (
            _output_file("--json", None if loaded else options.json) as results,
            _output_file("--chart", options.chart),
        ):
            rows, environment = loaded or _run(options, log)
            print(_report(rows, environment, options.rst))
            if results is not None:
                results.truncate(0)
                json.dump({"environment": environment, "rows": [asdict(row) for row in rows]}, results, indent=1)
            if options.chart:
                write_chart(rows, options.chart)
    except _UsageError as exc:
        print(f"trio-rsocket bench: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except BenchError as exc:
        print(f"trio-rsocket bench: {exc}", file=sys.stderr)
        return _EXIT_MISSING_PACKAGE if isinstance(exc, MissingPackageError) else _EXIT_FAILED
    return 0


def _run(options: argparse.Namespace, log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    settings = QUICK if options.quick else FULL
    if options.repeat is not None:
        if options.repeat < 1:
            raise BenchError("--repeat must be at least 1")
        settings = Settings(**{**asdict(settings), "repeat": options.repeat})
    selected = [workload for workload in WORKLOADS if not options.only or workload.name in options.only]
    fd_limits = raise_fd_limit()
    if any(workload.server == "idle" for workload in selected):
        # Each end needs a descriptor per connection, plus a few of its own.
        room = fd_limits[1] - 64
        if 0 < room < settings.idle_connections:
            log(f"descriptor limit {fd_limits[1]}: idle connections scaled down to {room}")
            settings = Settings(**{**asdict(settings), "idle_connections": room})
    if any(workload.server == "idle-pairs" for workload in selected):
        # Both ends of every pair are in the server process.
        room = (fd_limits[1] - 64) // 2
        if 0 < room < settings.tls_idle_pairs:
            log(f"descriptor limit {fd_limits[1]}: idle TLS pairs scaled down to {room}")
            settings = Settings(**{**asdict(settings), "tls_idle_pairs": room})
    started = time.monotonic()
    rows: list[Row] = []
    with (
        _pinned(not options.no_pin) as (client_cpu, server_cpu),
        tempfile.TemporaryDirectory(prefix="trio-rsocket-bench-") as directory,
    ):
        tls = make_tls_files(directory) if any(workload.tls for workload in selected) else None
        transfer_file = None
        if any(workload.server == "drain" for workload in selected):
            transfer_file = make_transfer_file(directory, settings.file_bytes)
        for workload in selected:
            log(f"{workload.name}: {workload.title} ...")
            rows += run_workload(workload, settings, tls, server_cpu, log, options.raw, transfer_file)
    environment = _environment(settings, fd_limits)
    environment["pinned"] = None if client_cpu is None else {"client": client_cpu, "server": server_cpu}
    environment["seconds"] = round(time.monotonic() - started, 1)
    return rows, environment


@contextmanager
def _pinned(wanted: bool) -> Iterator[tuple[int | None, int | None]]:
    """Pin this process (the clients) to one CPU and tell where servers go.

    With client and server each on a CPU of its own, every contender gets the
    same placement; left to the OS, where two processes land varies from one
    start to the next and shifts the figures by more than the differences
    being measured.  Yields ``(None, None)`` where that is not possible.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    setaffinity = getattr(os, "sched_setaffinity", None)
    if not wanted or getaffinity is None or setaffinity is None:
        yield None, None
        return
    original = getaffinity(0)
    if len(original) < 2:
        yield None, None
        return
    client_cpu, server_cpu = sorted(original)[:2]
    setaffinity(0, {client_cpu})
    try:
        yield client_cpu, server_cpu
    finally:
        setaffinity(0, original)


def _footer(environment: dict[str, Any]) -> str:
    settings, limits = environment["settings"], environment["fd_limit"]
    limit_note = (
        f"descriptor limit {limits['now']} (raised from {limits['before']})"
        if limits["now"] != limits["before"]
        else f"descriptor limit {limits['now']} (hard limit {limits['hard']})"
    )
    pinned = environment.get("pinned")
    placement = (
        f"clients on CPU {pinned['client']}, servers on CPU {pinned['server']}" if pinned else "processes not pinned"
    )
    return (
        f"Medians of {settings['repeat']} interleaved repetitions; ratio > 1: RSocket ahead "
        f"(memory: RSocket uses less); {placement}.\n"
        f"bulk {settings['bulk_bytes'] // 2**20} MiB, TLS bulk {settings['tls_bulk_bytes'] // 2**20} MiB, "
        f"file {settings.get('file_bytes', 0) // 2**20} MiB, "
        f"{settings['seconds']:g} s per timed run, {settings['concurrent']} concurrent connections, "
        f"{settings['idle_connections']:,} idle connections, "
        f"{settings.get('tls_idle_pairs', 0):,} idle TLS pairs; {limit_note}.\n"
        f"Python {environment['python']}, trio {environment['trio']}, {environment['cpus']} CPUs, "
        f"{environment['platform']}; took {environment.get('seconds', '?')} s."
    )


if __name__ == "__main__":
    sys.exit(main())
