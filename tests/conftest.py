"""Shared test helpers: connected RSocket pairs over real loopback sockets."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio

from trio_rsocket import RSocket, _tls


def open_fds() -> set[int]:
    """The descriptors this process has open right now."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves file descriptors open."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert not leaked, f"descriptors leaked: {sorted(leaked)}"


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def rsocket_pair(host: str = "127.0.0.1") -> tuple[RSocket, RSocket]:
    """A connected ``(client, server)`` pair: the client connects with
    :meth:`RSocket.connect`, the server side is accepted by trio's own
    listener and wrapped."""
    listeners = await trio.open_tcp_listeners(0, host=host)
    listener = listeners[0]
    try:
        port = listener.socket.getsockname()[1]
        client = RSocket()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.connect, host, port)
            accepted = await listener.accept()
    finally:
        await listener.aclose()
    return client, RSocket.from_socket(accepted)


async def clogged_rsocket_pair() -> tuple[RSocket, RSocket]:
    """A pair where neither side can write until the other reads (trio's
    checks flip the pair, so both directions are clogged)."""
    client, server = await rsocket_pair()
    for sock in (client, server):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    # Fill each send path until the kernel takes no more (bounded: the buffers
    # are a few KiB, so this ends long before the cap), through a duplicate
    # of the descriptor, non-blocking like the original.
    for sock in (client, server):
        with socket.socket(fileno=os.dup(sock.get_handle())) as raw:
            for _ in range(100_000):
                try:
                    raw.send(b"x" * 65536)
                except BlockingIOError:
                    break
            else:
                raise AssertionError("the send buffer never filled")
    return client, server


@asynccontextmanager
async def connected_pair(host: str = "127.0.0.1") -> AsyncIterator[tuple[RSocket, RSocket]]:
    client, server = await rsocket_pair(host)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RSocket, RSocket]]:
    async with connected_pair() as both:
        yield both


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose queue is full,
    so a new connect waits for ever (the SYN goes unanswered)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # a backlog of 0 admits one or two, depending on the kernel
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.fixture(autouse=True)
def _restore_tls_defaults() -> Iterator[None]:
    """Every test starts from the module's TLS defaults (set_default_certs & co)."""
    yield
    _tls.reset_defaults()


async def read_line_containing(stream: trio.abc.ReceiveStream, wanted: bytes) -> bytes:
    """Read *stream* (an ``openssl`` process's output, say) until a whole line
    containing *wanted* arrives (bounded)."""
    seen = b""
    for _ in range(10_000):
        for line in seen.splitlines(keepends=True):
            if wanted in line and line.endswith(b"\n"):
                return line
        chunk = await stream.receive_some()
        if not chunk:
            break
        seen += chunk
    raise AssertionError(f"{wanted!r} never arrived; got {seen!r}")
