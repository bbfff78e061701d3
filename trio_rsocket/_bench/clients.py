"""The client side of the workloads, written once for every implementation,
and one timed measurement of one contender (:func:`measure`).
"""

from __future__ import annotations

import functools
import io
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .backends import BACKENDS, Backend, Conn
from .workloads import CHUNK, ECHO_SIZE, BenchError, Settings, TLSFiles, Workload, variant_title


async def _bulk(backend: Backend, port: int, size: int, tls: TLSFiles | None, variant: str) -> tuple[float, float]:
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


async def _echo_until(conn: Conn, stop_at: float, limit: int) -> int:
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
    backend: Backend,
    port: int,
    seconds: float,
    connections: int,
    tls: TLSFiles | None = None,
    path: str | None = None,
) -> tuple[float, float]:
    """Round trips over *connections* concurrent connections (TLS with *tls*;
    to the Unix socket at *path* if given) for about *seconds*; ``(round
    trips, seconds)``."""
    if path is not None:
        conns = [await backend.connect_unix(path) for _ in range(connections)]
    else:
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


async def _accepts(backend: Backend, port: int, seconds: float, tls: TLSFiles | None) -> tuple[float, float]:
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
    backend: Backend, port: int, file: io.BufferedReader, size: int, variant: str
) -> tuple[float, float]:
    """Send *size* bytes of *file* to the drain server and wait until it has
    counted them all; ``(MB, seconds)``."""
    start = time.perf_counter()
    await backend.send_file(port, file, size, variant)
    return size / 1e6, time.perf_counter() - start


async def _reconnects(backend: Backend, port: int, seconds: float, tls: TLSFiles, variant: str) -> tuple[float, float]:
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
                f"{backend.name} {variant_title(variant)}: connection {done + 1} "
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


def measure(
    impl: str,
    variant: str,
    workload: Workload,
    port: int,
    settings: Settings,
    tls: TLSFiles | None,
    transfer_file: str | None = None,
    path: str | None = None,
) -> _Measurement:
    """Run one measurement (*transfer_file*: the file of the file transfer
    workload; *path*: the server's Unix socket, for a Unix workload)."""
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
    elif workload.name in ("echo", "echo100", "tls-echo", "tls-echo100", "unix-echo"):
        connections = settings.concurrent if workload.name.endswith("100") else 1
        work = functools.partial(_echo, backend, port, settings.seconds, connections, tls, path)
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


def warm_up(
    impl: str,
    variant: str,
    workload: Workload,
    port: int,
    tls: TLSFiles | None,
    transfer_file: str | None,
    path: str | None = None,
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
    measure(impl, variant, workload, port, small, tls, transfer_file, path)
