"""RSocket.from_socket: adopting a connected stream socket the program already has.

Every test connects real sockets over loopback.  The far end is a plain
:class:`trio.SocketStream`, so that what is checked is the adopted socket
alone.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_rsocket import DeadlineError, RSocket, deadline_after

from .conftest import has_ipv6

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")


@asynccontextmanager
async def stdlib_connection(host: str = "127.0.0.1") -> AsyncIterator[tuple[socket.socket, trio.SocketStream]]:
    """A connected ``(stdlib socket, trio stream)`` pair: the stdlib socket is
    the one to adopt, the trio stream its peer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listening:
        listening.bind((host, 0))
        listening.listen()
        mine = socket.create_connection(listening.getsockname()[:2], timeout=10)
        accepted, _ = listening.accept()
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(accepted))
    try:
        yield mine, peer
    finally:
        mine.close()  # a no-op once an RSocket owns and closed it
        await peer.aclose()


async def talk_both_ways(adopted: RSocket, peer: trio.SocketStream) -> tuple[bytes, bytes]:
    """Send a message each way; return ``(what the peer got, what the adopted socket got)``."""
    await adopted.write(b"from the adopted socket")
    at_peer = await peer.receive_some()
    await peer.send_all(b"from the peer")
    return at_peer, await adopted.read_exactly(len(b"from the peer"))


def unix_connection(name: str) -> tuple[socket.socket, socket.socket]:
    """A connected ``(client, accepted)`` pair of Unix sockets, through a
    listener bound to *name* (a path, or an abstract name) and closed again."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(name)
        listening.listen()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(name)
        accepted, _ = listening.accept()
    return client, accepted


def assert_descriptor_closed(fd: int) -> None:
    with pytest.raises(OSError, match="Bad file descriptor") as caught:
        os.fstat(fd)
    assert caught.value.errno == errno.EBADF


# ----------------------------------------------------------------------------
# What can be adopted


async def test_adopts_a_connected_stdlib_socket() -> None:
    async with stdlib_connection() as (mine, peer):
        adopted = RSocket.from_socket(mine)
        async with adopted:
            assert await talk_both_ways(adopted, peer) == (b"from the adopted socket", b"from the peer")


async def test_adopts_a_connected_trio_socket() -> None:
    async with stdlib_connection() as (mine, peer):
        adopted = RSocket.from_socket(trio.socket.from_stdlib_socket(mine))
        async with adopted:
            assert await talk_both_ways(adopted, peer) == (b"from the adopted socket", b"from the peer")


async def test_adopts_a_trio_socket_stream() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener:
        stream = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        peer = await listener.accept()
    async with peer:
        adopted = RSocket.from_socket(stream)
        async with adopted:
            assert await talk_both_ways(adopted, peer) == (b"from the adopted socket", b"from the peer")


async def test_an_adopted_socket_is_connected_and_plain() -> None:
    async with stdlib_connection() as (mine, _peer):
        fd = mine.fileno()
        adopted = RSocket.from_socket(mine)
        async with adopted:
            assert adopted.is_connected()
            assert adopted.get_handle() == fd
            assert not adopted.is_secure()
            assert not adopted.is_eof()
            assert not adopted.is_closed()
            assert adopted.statistics().bytes_written == 0


async def test_an_adopted_socket_knows_both_addresses() -> None:
    async with stdlib_connection() as (mine, peer):
        mine_address, peer_address = mine.getsockname(), mine.getpeername()
        adopted = RSocket.from_socket(mine)
        async with adopted:
            assert adopted.get_peer_addr() == peer_address
            assert adopted.get_addr() == mine_address
            assert adopted.get_peer_addr() == peer.socket.getsockname()


@needs_ipv6
async def test_an_adopted_ipv6_socket_knows_its_peer() -> None:
    async with stdlib_connection("::1") as (mine, peer):
        adopted = RSocket.from_socket(mine)
        async with adopted:
            assert adopted.get_peer_addr() == ("::1", peer.socket.getsockname()[1])
            assert await talk_both_ways(adopted, peer) == (b"from the adopted socket", b"from the peer")


async def test_an_adopted_unix_socket_pair_has_unnamed_addresses() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        async with RSocket.from_socket(mine) as adopted:
            assert adopted.get_addr() == ("", 0)
            assert adopted.get_peer_addr() == ("", 0)
            await adopted.write(b"ping")
            assert theirs.recv(4) == b"ping"


async def test_an_adopted_unix_socket_gives_its_path_and_port_0(tmp_path: Path) -> None:
    path = str(tmp_path / "server.sock")
    client, accepted = unix_connection(path)
    async with RSocket.from_socket(client) as near, RSocket.from_socket(accepted) as far:
        assert near.get_addr() == ("", 0)  # a client's socket has no name of its own
        assert near.get_peer_addr() == (path, 0)
        assert far.get_addr() == (path, 0)
        assert far.get_peer_addr() == ("", 0)
        await near.write(b"ping")
        assert await far.read_exactly(4) == b"ping"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract Unix socket names are Linux's")
async def test_an_adopted_abstract_unix_socket_keeps_the_leading_nul_in_a_str() -> None:
    name = f"\0trio-rsocket-test-{os.getpid()}-{id(object())}"
    client, accepted = unix_connection(name)
    async with RSocket.from_socket(client) as near, RSocket.from_socket(accepted) as far:
        assert near.get_peer_addr() == (name, 0)
        assert far.get_addr() == (name, 0)
        assert isinstance(far.get_addr()[0], str)


async def test_data_the_kernel_received_before_adoption_is_read() -> None:
    async with stdlib_connection() as (mine, peer):
        await peer.send_all(b"sent before adoption")
        adopted = RSocket.from_socket(mine)
        async with adopted:
            assert await adopted.read_exactly(20) == b"sent before adoption"


async def test_an_adopted_blocking_socket_never_blocks_the_event_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A stdlib socket in blocking mode (here with a 10 s timeout, so a
    mistake cannot hang the suite) waits for the trio clock once adopted: the
    read's deadline passes on the mock clock instead of the OS blocking."""
    async with stdlib_connection() as (mine, _peer):
        assert mine.gettimeout() == 10
        adopted = RSocket.from_socket(mine)
        async with adopted:
            deadline = deadline_after(5)
            with pytest.raises(DeadlineError):
                await adopted.read(deadline=deadline)
            assert trio.current_time() == deadline


# ----------------------------------------------------------------------------
# Ownership


@pytest.mark.usefixtures("no_fd_leak")
async def test_closing_the_rsocket_closes_the_adopted_descriptor() -> None:
    async with stdlib_connection() as (mine, peer):
        fd = mine.fileno()
        adopted = RSocket.from_socket(mine)
        adopted.close()
        assert adopted.get_handle() == -1
        assert_descriptor_closed(fd)
        assert await peer.receive_some() == b""


@pytest.mark.usefixtures("no_fd_leak")
async def test_closing_an_adopted_trio_stream_closes_its_descriptor() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener:
        stream = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        peer = await listener.accept()
    async with peer:
        fd = stream.socket.fileno()
        adopted = RSocket.from_socket(stream)
        await adopted.aclose()
        assert_descriptor_closed(fd)
        assert await peer.receive_some() == b""


# ----------------------------------------------------------------------------
# What cannot be adopted


async def test_a_udp_socket_is_a_value_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("127.0.0.1", 9))  # connected, but not a stream
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            RSocket.from_socket(udp)
        assert udp.fileno() != -1  # refused, so still the caller's


async def test_a_trio_udp_socket_is_a_value_error() -> None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        await udp.connect(("127.0.0.1", 9))
        with pytest.raises(ValueError, match="SOCK_STREAM"):
            RSocket.from_socket(udp)


async def test_an_unconnected_tcp_socket_is_a_value_error() -> None:
    with socket.socket() as unconnected:
        with pytest.raises(ValueError, match="connected"):
            RSocket.from_socket(unconnected)
        assert unconnected.fileno() != -1


async def test_a_listening_tcp_socket_is_a_value_error() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        with pytest.raises(ValueError, match="connected"):
            RSocket.from_socket(listening)


async def test_a_closed_socket_is_a_value_error() -> None:
    async with stdlib_connection() as (mine, _peer):
        mine.close()
        with pytest.raises(ValueError, match="connected"):
            RSocket.from_socket(mine)


def _an_open_file() -> object:
    return open(os.devnull, "rb")  # closed by the test


NOT_SOCKETS: list[Callable[[], object]] = [lambda: 3, lambda: "127.0.0.1:80", lambda: None, _an_open_file]


@pytest.mark.parametrize("make", NOT_SOCKETS, ids=["int", "str", "None", "file"])
async def test_something_that_is_not_a_socket_is_a_type_error(make: Callable[[], object]) -> None:
    thing = make()
    try:
        with pytest.raises(TypeError, match="sock"):
            RSocket.from_socket(thing)  # type: ignore[arg-type]
    finally:
        close = getattr(thing, "close", None)
        if close is not None:
            close()
