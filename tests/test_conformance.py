"""RSocket pairs pass trio's own stream conformance checks.

Plain pairs are half-closeable streams; TLS pairs are two-way streams (TLS
has no half-close), made the way a user makes them: a listener with a
certificate and a client that connects to it and verifies it (the clogged
ones over a Unix socket pair: see :func:`clogged_tls_pair`).  Each TLS check
runs with the pair in both orders (the client as the first stream and as the
second), and on ``sock.stream`` too.  TLS pairs handshaken by hand, with no
listener (:func:`~tests.conftest.tls_pair_by_hand`), pass the checks too.
"""

from __future__ import annotations

import functools
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trustme
from trio.testing import check_half_closeable_stream, check_two_way_stream

from trio_rsocket import RSocket, TLSStream
from trio_rsocket.testing import LOOPBACK, CertFiles

from .conftest import clogged_plain_pair, plain_pair, tls_pair_by_hand

PairMaker = Callable[[], Awaitable[tuple[RSocket, RSocket]]]


async def test_plain_pair_is_a_half_closeable_stream() -> None:
    await check_half_closeable_stream(plain_pair, clogged_plain_pair)


@asynccontextmanager
async def tls_pairs(files: CertFiles) -> AsyncIterator[PairMaker]:
    """Yield a maker of connected TLS ``(client, server)`` pairs: a listener
    with the server certificate runs for the duration of the block, each
    pair's server side handed out by its handler (which keeps it open until
    the block ends; the checks close both sides themselves)."""
    send_accepted, receive_accepted = trio.open_memory_channel[RSocket](0)
    released = trio.Event()

    async def hand_out(_data: object, sock: RSocket) -> None:
        await send_accepted.send(sock)
        await released.wait()

    async with trio.open_nursery() as nursery:
        listener = RSocket()
        listener.set_certs(key=str(files.server_key), cert=str(files.server_cert))
        await listener.listen(LOOPBACK, 0, hand_out, nursery=nursery)
        port = listener.get_addr()[1]

        async def make() -> tuple[RSocket, RSocket]:
            client = RSocket()
            client.set_certs(authority=str(files.authority))
            await client.connect(LOOPBACK, port)
            return client, await receive_accepted.receive()

        try:
            yield make
        finally:
            released.set()
            listener.close()
            nursery.cancel_scope.cancel()


async def clogged_tls_pair(files: CertFiles) -> tuple[RSocket, RSocket]:
    """A connected TLS ``(client, server)`` pair where neither side can write
    until the other reads.

    Over a Unix socket pair, upgraded with :meth:`RSocket.upgrade_tls`: a
    stalled TCP connection still takes any small write into the last, unsent
    segment (up to 64 KiB on loopback), so no TLS record could be known to
    block there without risking one cut in half, which would break TLS.  A
    Unix socket takes a write whole or not at all, from a buffer whose use
    the kernel reports exactly.
    """
    one, other = socket.socketpair()
    client, server = RSocket.from_socket(one), RSocket.from_socket(other, server_side=True)
    client.set_certs(authority=str(files.authority))
    server.set_certs(key=str(files.server_key), cert=str(files.server_cert))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.upgrade_tls, "localhost")
        nursery.start_soon(server.upgrade_tls)
    # A byte each way first, so that no handshake message (TLS 1.3's
    # session tickets) sits behind the clog.
    await client.write(b"!")
    await server.write(b"!")
    assert await client.read(1) == b"!"
    assert await server.read(1) == b"!"
    await clog(client)
    await clog(server)
    return client, server


async def clog(sock: RSocket) -> None:
    """Write TLS records while the kernel says there is room, then shrink
    the send buffer below what the peer has not read: from then on every
    write, however small, waits until the peer reads.  ``POLLOUT`` on a
    Unix socket means a quarter of the buffer is free, far more than one
    record, so no record is ever left half-sent."""
    poller = select.poll()
    poller.register(sock.get_handle(), select.POLLOUT)
    for _ in range(100_000):  # bounded: the buffer fills long before
        if not poller.poll(0):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
            return
        await sock.write(b"x" * 4096)
    raise AssertionError("the send buffer never filled")


def ordered(make: PairMaker, client_first: bool) -> PairMaker:
    """*make*'s pairs as ``(client, server)``, or as ``(server, client)``."""

    async def make_ordered() -> tuple[RSocket, RSocket]:
        client, server = await make()
        return (client, server) if client_first else (server, client)

    return make_ordered


def streams(make: PairMaker) -> Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]]:
    """The pair's ``stream`` objects instead of the sockets."""

    async def make_streams() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        first, second = await make()
        assert first.stream is not None
        assert second.stream is not None
        return first.stream, second.stream

    return make_streams


@pytest.mark.usefixtures("no_fd_leak")
@pytest.mark.parametrize("client_first", [True, False], ids=["client-first", "server-first"])
async def test_tls_pair_is_a_two_way_stream(rsocket_cert_files: CertFiles, client_first: bool) -> None:
    async with tls_pairs(rsocket_cert_files) as make:
        clogged = functools.partial(clogged_tls_pair, rsocket_cert_files)
        await check_two_way_stream(ordered(make, client_first), ordered(clogged, client_first))


@pytest.mark.usefixtures("no_fd_leak")
@pytest.mark.parametrize("client_first", [True, False], ids=["client-first", "server-first"])
async def test_tls_stream_attribute_is_a_two_way_stream(rsocket_cert_files: CertFiles, client_first: bool) -> None:
    async with tls_pairs(rsocket_cert_files) as make:
        clogged = functools.partial(clogged_tls_pair, rsocket_cert_files)
        await check_two_way_stream(streams(ordered(make, client_first)), streams(ordered(clogged, client_first)))


async def test_a_tls_pair_handshaken_by_hand_is_a_two_way_stream(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    await check_two_way_stream(functools.partial(tls_pair_by_hand, ca, server_cert), None)


async def test_tls_streams_pass_trios_two_way_stream_checks(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    async def streams() -> tuple[TLSStream, TLSStream]:
        client, server = await tls_pair_by_hand(ca, server_cert)
        client_stream, server_stream = client.stream, server.stream
        assert isinstance(client_stream, TLSStream)
        assert isinstance(server_stream, TLSStream)
        return client_stream, server_stream

    await check_two_way_stream(streams, None)
