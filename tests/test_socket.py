"""RSocket as a client: connect, read, write, close, state and options."""

from __future__ import annotations

import array
import errno
import functools
import os
import resource
import socket
import struct
from typing import Any

import pytest
import trio
import trio.testing

from trio_rsocket import (
    ConnectError,
    DeadlineError,
    IncompleteReadError,
    RSocket,
    RSocketError,
    deadline_after,
)

from .conftest import assert_busy_while, closing, connect_and_accept, connected_pair, has_ipv6, plain_pair


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ----------------------------------------------------------------------------
# A fresh socket


def test_fresh_socket_state() -> None:
    sock = RSocket()
    assert sock.get_handle() == -1
    assert not sock.is_secure()
    assert not sock.is_eof()
    assert not sock.is_closed()
    assert not sock.is_connected()
    assert sock.get_error() == ""
    assert sock.stream is None
    assert sock.statistics().bytes_read == 0


async def test_io_on_unconnected_socket_is_closed_resource_error() -> None:
    sock = RSocket()
    with pytest.raises(trio.ClosedResourceError, match="not connected"):
        await sock.read()
    with pytest.raises(trio.ClosedResourceError, match="not connected"):
        await sock.write(b"x")


# ----------------------------------------------------------------------------
# Connect


async def test_connect_and_exchange(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    assert client.is_connected()
    assert client.get_handle() >= 0
    assert await client.write(b"hello") == 5
    assert await server.read() == b"hello"
    assert await server.write(bytearray(b"world")) == 5
    assert await client.read() == b"world"


async def test_addresses(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    assert client.get_peer_addr() == server.get_addr()
    assert server.get_peer_addr() == client.get_addr()
    assert client.get_addr()[0] == "127.0.0.1"


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_connect_over_ipv6() -> None:
    async with connected_pair("::1") as (client, server):
        assert client.get_peer_addr()[0] == "::1"
        await client.write(b"six")
        assert await server.read() == b"six"


async def test_connect_refused_raises_connect_error_with_errno() -> None:
    port = free_port()
    sock = RSocket()
    with pytest.raises(ConnectError) as caught:
        await sock.connect("127.0.0.1", port)
    assert str(caught.value) == f"Cannot connect socket to 127.0.0.1:{port}: Connection refused"
    assert caught.value.errno == errno.ECONNREFUSED
    assert sock.get_error() == str(caught.value)
    assert not sock.is_connected()
    assert sock.get_handle() == -1


async def test_unresolvable_name_raises_connect_error() -> None:
    sock = RSocket()
    with pytest.raises(ConnectError, match=r"^Cannot find address of no-such-host\.invalid:80$"):
        await sock.connect("no-such-host.invalid", 80)
    assert sock.get_error() == "Cannot find address of no-such-host.invalid:80"


async def test_failed_connect_leaves_socket_reusable() -> None:
    sock = RSocket()
    with pytest.raises(ConnectError):
        await sock.connect("127.0.0.1", free_port())
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener, await connect_and_accept(sock, listener) as accepted:
        assert sock.is_connected()
        assert sock.get_error() == ""
        await sock.write(b"ok")
        assert await accepted.receive_some() == b"ok"
    sock.close()


async def test_reconnect_closes_the_old_connection() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        sock = RSocket()
        first = await connect_and_accept(sock, listener)
        second = await connect_and_accept(sock, listener)
        async with first, second:
            assert await first.receive_some() == b""
            await sock.write(b"2")
            assert await second.receive_some() == b"2"
        sock.close()


async def test_connect_is_a_checkpoint() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        port = listener.socket.getsockname()[1]
        sock = RSocket()
        with trio.testing.assert_checkpoints():
            await sock.connect("127.0.0.1", port)
        sock.close()


# ----------------------------------------------------------------------------
# Read


async def test_read_returns_what_is_available_up_to_max_bytes(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"abcdef")
    await trio.testing.wait_all_tasks_blocked()
    assert await server.read(4) == b"abcd"
    assert await server.read(4) == b"ef"


async def test_read_into_accepts_any_writable_buffer(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"0123456789")
    target = bytearray(4)
    assert await server.read_into(target) == 4
    assert target == b"0123"
    view = memoryview(bytearray(3))
    assert await server.read_into(view) == 3
    assert view.tobytes() == b"456"
    words = array.array("B", bytes(8))
    assert await server.read_into(words) == 3
    assert words.tobytes()[:3] == b"789"


async def test_read_into_multibyte_array_counts_bytes(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(struct.pack("=2i", 7, -1))
    numbers = array.array("i", [0, 0])
    count = 0
    for _ in range(8):
        if count == 8:
            break
        count += await server.read_into(memoryview(numbers).cast("B")[count:])
    assert list(numbers) == [7, -1]


async def test_eof_read_returns_empty_and_sets_is_eof(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"last")
    await client.send_eof()
    assert await server.read() == b"last"
    assert not server.is_eof()
    assert await server.read() == b""
    assert server.is_eof()
    assert await server.read_into(bytearray(4)) == 0
    # The half-closed side still sends.
    await server.write(b"reply")
    assert await client.read() == b"reply"


async def test_write_after_send_eof_is_closed_resource_error(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    await client.send_eof()
    await client.send_eof()  # idempotent
    with pytest.raises(trio.ClosedResourceError):
        await client.write(b"x")


async def test_read_exactly_collects_across_arrivals(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair

    async def drip() -> None:
        for piece in (b"ab", b"cd", b"efgh"):
            await client.write(piece)
            await trio.testing.wait_all_tasks_blocked()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drip)
        assert await server.read_exactly(5) == b"abcde"
    # The rest was buffered and comes first.
    assert await server.read() == b"fgh"


async def test_read_exactly_at_eof_raises_incomplete_read_with_partial(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"abc")
    await client.send_eof()
    with pytest.raises(IncompleteReadError) as caught:
        await server.read_exactly(10)
    assert caught.value.partial == b"abc"
    assert caught.value.expected == 10
    assert isinstance(caught.value, EOFError)
    assert await server.read() == b""


async def test_read_until_includes_delimiter_and_keeps_the_rest(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"GET / HTTP/1.1\r")
    await trio.testing.wait_all_tasks_blocked()
    async with trio.open_nursery() as nursery:

        async def finish() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await client.write(b"\nHost: x\r\n")

        nursery.start_soon(finish)
        assert await server.read_until(b"\r\n") == b"GET / HTTP/1.1\r\n"
    assert await server.read_until(b"\r\n") == b"Host: x\r\n"


async def test_read_until_without_delimiter_within_max_bytes_consumes_nothing(
    pair: tuple[RSocket, RSocket],
) -> None:
    client, server = pair
    await client.write(b"0123456789")
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(ValueError, match="no delimiter"):
        await server.read_until(b"\n", max_bytes=8)
    assert await server.read_exactly(10) == b"0123456789"


async def test_read_until_at_eof_raises_incomplete_read(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"no newline")
    await client.send_eof()
    with pytest.raises(IncompleteReadError) as caught:
        await server.read_until(b"\n")
    assert caught.value.partial == b"no newline"
    assert caught.value.expected is None


async def test_buffered_bytes_are_served_to_read_into(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"line\nrest")
    await trio.testing.wait_all_tasks_blocked()
    assert await server.read_until(b"\n") == b"line\n"
    target = bytearray(16)
    assert await server.read_into(target) == 4
    assert target[:4] == b"rest"


@pytest.mark.parametrize(
    "operation",
    ["read", "read_into", "read_exactly", "read_until", "write", "send_eof", "aclose"],
)
async def test_every_call_is_a_checkpoint_even_when_it_need_not_wait(
    pair: tuple[RSocket, RSocket], operation: str
) -> None:
    client, server = pair
    await client.write(b"data\n" * 4)
    await trio.testing.wait_all_tasks_blocked()
    with trio.testing.assert_checkpoints():
        if operation == "read":
            await server.read()
        elif operation == "read_into":
            await server.read_into(bytearray(4))
        elif operation == "read_exactly":
            await server.read_exactly(2)
        elif operation == "read_until":
            await server.read_until(b"\n")
        elif operation == "write":
            await server.write(b"x")
        elif operation == "send_eof":
            await server.send_eof()
        else:
            await server.aclose()


async def test_buffered_read_is_a_checkpoint(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"a\nbcd")
    await trio.testing.wait_all_tasks_blocked()
    await server.read_until(b"\n")
    with trio.testing.assert_checkpoints():
        assert await server.read(1) == b"b"
    with trio.testing.assert_checkpoints():
        assert await server.read_into(bytearray(1)) == 1


async def test_cancelled_read_of_buffered_data_consumes_nothing(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"a\nbcd")
    await trio.testing.wait_all_tasks_blocked()
    await server.read_until(b"\n")
    with trio.CancelScope() as scope:
        scope.cancel()
        await server.read()
    assert scope.cancelled_caught
    assert await server.read() == b"bcd"


# ----------------------------------------------------------------------------
# Concurrency and close


async def test_two_readers_at_once_is_busy_resource_error(pair: tuple[RSocket, RSocket]) -> None:
    _, server = pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.read)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError, match="already reading"):
            await server.read()
        with pytest.raises(trio.BusyResourceError):
            await server.read_into(bytearray(1))
        with pytest.raises(trio.BusyResourceError):
            await server.read_until(b"\n")
        nursery.cancel_scope.cancel()


async def test_two_writers_at_once_is_busy_resource_error() -> None:
    async with closing(plain_pair()) as (client, _):
        # The first writer blocks: nobody reads 64 MiB.
        await assert_busy_while(
            functools.partial(client.write, bytes(64 * 1024 * 1024)),
            functools.partial(client.write, b"x"),
            match="already writing",
        )


async def test_one_reader_and_one_writer_at_once_is_fine(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.read_exactly, 3)
        await trio.testing.wait_all_tasks_blocked()
        await server.write(b"ping")
        assert await client.read_exactly(4) == b"ping"
        await client.write(b"abc")


async def test_close_from_another_fiber_wakes_the_reader(pair: tuple[RSocket, RSocket]) -> None:
    _, server = pair
    handle = server.get_handle()
    assert handle >= 0
    async with trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            server.close()

        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await server.read()
    assert server.is_closed()
    assert server.is_eof()
    assert server.get_handle() == -1
    server.close()  # idempotent


async def test_close_wakes_a_blocked_writer() -> None:
    async with closing(plain_pair()) as (client, _), trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            client.close()

        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await client.write(bytes(64 * 1024 * 1024))


async def test_io_after_close_is_closed_resource_error(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    client.close()
    with pytest.raises(trio.ClosedResourceError):
        await client.read()
    with pytest.raises(trio.ClosedResourceError):
        await client.write(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await client.send_eof()


async def test_peer_reset_mid_read_is_broken_resource_error(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    server.set_linger(0)
    async with trio.open_nursery() as nursery:

        async def reset_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            server.close()

        nursery.start_soon(reset_soon)
        with pytest.raises(trio.BrokenResourceError):
            await client.read()
    assert "connection broken" in client.get_error()


async def test_aclose_closes_and_is_idempotent(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.aclose()
    await client.aclose()
    assert client.is_closed()
    assert await server.read() == b""


async def test_async_with_closes() -> None:
    client, server = await plain_pair()
    async with client, server:
        await client.write(b"x")
    assert client.is_closed()
    assert server.is_closed()


async def test_disconnect_keeps_the_handle_and_peer_sees_eof(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    handle = client.get_handle()
    client.disconnect()
    assert client.get_handle() == handle
    assert client.is_eof()
    assert not client.is_closed()
    assert await server.read() == b""
    assert await client.read() == b""


async def test_reset_makes_the_socket_fresh_and_reusable(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    port = server.get_addr()[1]
    client.reset()
    assert client.get_handle() == -1
    assert not client.is_closed()
    assert not client.is_eof()
    assert client.get_error() == ""
    assert await server.read() == b""
    with pytest.raises(ConnectError):
        await client.connect("127.0.0.1", port)  # nobody listens there any more


# ----------------------------------------------------------------------------
# Options and statistics


async def test_no_delay_is_on_by_default_and_can_be_turned_off(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    raw = socket.socket(fileno=socket.dup(client.get_handle()))
    try:
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        client.set_no_delay(False)
        assert not raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        raw.close()


async def test_linger_set_before_connect_is_applied() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        sock = RSocket()
        sock.set_linger(3)
        await sock.connect("127.0.0.1", listener.socket.getsockname()[1])
        raw = socket.socket(fileno=socket.dup(sock.get_handle()))
        try:
            on, seconds = struct.unpack("ii", raw.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8))
        finally:
            raw.close()
            sock.close()
    assert (on, seconds) == (1, 3)


async def test_stream_property_is_a_working_socket_stream(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    stream = client.stream
    assert isinstance(stream, trio.SocketStream)
    assert client.stream is stream
    await stream.send_all(b"via trio")
    assert await server.read() == b"via trio"


async def test_statistics_count_bytes(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"12345")
    await server.read_exactly(5)
    assert client.statistics().bytes_written == 5
    assert server.statistics().bytes_read == 5


async def test_connection_errors_are_rsocket_errors_and_oserrors() -> None:
    with pytest.raises(RSocketError) as caught:
        await RSocket().connect("127.0.0.1", free_port())
    assert isinstance(caught.value, OSError)


# ----------------------------------------------------------------------------
# Address order: IPv4 first, then IPv6 (Ioto's order)


class FixedResolver(trio.abc.HostnameResolver):
    """trio's own resolver hook, answering one name with given loopback
    addresses in the order given (IPv6 first, to show the order is ours)."""

    def __init__(self, addresses: list[tuple[str, int]]) -> None:
        self.addresses = addresses

    async def getaddrinfo(self, host: bytes | None, port: bytes | str | int | None, *args: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, number, 0, 0) if ":" in ip else (ip, number),
            )
            for ip, number in self.addresses
        ]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_ipv4_addresses_are_tried_before_ipv6() -> None:
    v4 = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    v6 = (await trio.open_tcp_listeners(0, host="::1"))[0]
    async with v4, v6:
        trio.socket.set_custom_hostname_resolver(
            FixedResolver([("::1", v6.socket.getsockname()[1]), ("127.0.0.1", v4.socket.getsockname()[1])])
        )
        async with RSocket() as sock:
            await sock.connect("dual.test", 80)
            assert sock.get_peer_addr()[0] == "127.0.0.1"


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_ipv6_is_tried_when_ipv4_refuses() -> None:
    v6 = (await trio.open_tcp_listeners(0, host="::1"))[0]
    async with v6:
        trio.socket.set_custom_hostname_resolver(
            FixedResolver([("::1", v6.socket.getsockname()[1]), ("127.0.0.1", free_port())])
        )
        async with RSocket() as sock:
            await sock.connect("dual.test", 80)
            assert sock.get_peer_addr()[0] == "::1"


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_happy_eyeballs_races_past_an_address_that_hangs(
    autojump_clock: trio.abc.Clock, full_backlog: int
) -> None:
    v6 = (await trio.open_tcp_listeners(0, host="::1"))[0]
    async with v6:
        # IPv4 first, as Ioto tries it: its SYN is never answered.
        trio.socket.set_custom_hostname_resolver(
            FixedResolver([("127.0.0.1", full_backlog), ("::1", v6.socket.getsockname()[1])])
        )
        async with RSocket() as sock:
            with pytest.raises(DeadlineError):  # Ioto's order waits on the first address
                await sock.connect("dual.test", 80, deadline=deadline_after(5))
            started = trio.current_time()
            await sock.connect("dual.test", 80, deadline=deadline_after(5), happy_eyeballs_delay=0.25)
            assert sock.get_peer_addr()[0] == "::1"
            assert trio.current_time() - started == pytest.approx(0.25)


async def test_happy_eyeballs_failure_says_the_os_reason() -> None:
    port = free_port()
    async with RSocket() as sock:
        with pytest.raises(
            ConnectError, match=r"Cannot connect socket to 127\.0\.0\.1:\d+: Connection refused"
        ) as caught:
            await sock.connect("127.0.0.1", port, happy_eyeballs_delay=0.25)
        assert caught.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize("delay", [-1, float("nan"), "0.25"])
async def test_a_bad_happy_eyeballs_delay_is_refused_before_any_io(delay: object) -> None:
    async with RSocket() as sock:
        with pytest.raises((TypeError, ValueError), match="happy_eyeballs_delay"):
            await sock.connect("127.0.0.1", 9, happy_eyeballs_delay=delay)  # type: ignore[arg-type]


def test_close_works_outside_trio() -> None:
    async def connected() -> tuple[RSocket, RSocket]:
        return await plain_pair()

    client, server = trio.run(connected)
    assert client.get_handle() >= 0
    client.close()
    server.close()
    assert client.is_closed()
    assert client.get_handle() == -1
    assert server.get_handle() == -1


@pytest.mark.parametrize("close", ["close", "aclose"])
async def test_reads_after_close_raise_even_with_bytes_waiting(
    either_pair: tuple[RSocket, RSocket], close: str
) -> None:
    """Plain TCP: bytes left in the socket's read buffer.  TLS: the rest of a
    record, decrypted and waiting inside the TLS layer."""
    client, server = either_pair
    await server.write(b"line1\nline2 and more\n")
    if client.is_secure():
        assert await client.read(3) == b"lin"  # the rest of the record waits inside the TLS layer
    else:
        await trio.testing.wait_all_tasks_blocked()
        assert await client.read_until(b"\n") == b"line1\n"  # the rest stays buffered
    if close == "close":
        client.close()
    else:
        await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.read()
    with pytest.raises(trio.ClosedResourceError):
        await client.read_into(bytearray(4))
    with pytest.raises(trio.ClosedResourceError):
        await client.read_exactly(2)
    with pytest.raises(trio.ClosedResourceError):
        await client.read_until(b"\n")


async def test_a_name_no_dns_label_can_hold_is_a_connect_error() -> None:
    sock = RSocket()
    name = "a" * 70 + ".invalid"
    with pytest.raises(ConnectError, match=r"^Cannot find address of a+\.invalid:80$"):
        await sock.connect(name, 80)
    assert sock.get_error().startswith("Cannot find address of")


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_ipv6_addresses_are_bracketed_in_messages() -> None:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError) as caught:
        await RSocket().connect("::1", port)
    assert str(caught.value) == f"Cannot connect socket to [::1]:{port}: Connection refused"
    assert caught.value.strerror == str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.strerror == "Connection refused"


async def test_close_during_a_connect_in_flight_wins(full_backlog: int) -> None:
    sock = RSocket()
    async with trio.open_nursery() as nursery:

        async def connect() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await sock.connect("127.0.0.1", full_backlog)

        nursery.start_soon(connect)
        await trio.testing.wait_all_tasks_blocked()
        sock.close()
    assert sock.is_closed()
    assert not sock.is_connected()
    assert sock.get_handle() == -1


async def test_connect_out_of_descriptors_is_a_connect_error() -> None:
    sock = RSocket()
    port = free_port()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The limit bounds descriptor numbers: at the lowest free one, none is left.
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with pytest.raises(ConnectError) as caught:
            await sock.connect("127.0.0.1", port)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert caught.value.errno == errno.EMFILE
    assert sock.get_error() == str(caught.value)


async def test_stream_keeps_no_delay_off_when_asked(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    client.set_no_delay(False)
    stream = client.stream
    assert isinstance(stream, trio.SocketStream)
    assert not stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_stream_is_none_after_close(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    assert client.stream is not None
    client.close()
    assert client.stream is None


async def test_a_second_connect_at_once_is_busy_resource_error(full_backlog: int) -> None:
    sock = RSocket()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sock.connect, "127.0.0.1", full_backlog)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError, match="already connecting"):
            await sock.connect("127.0.0.1", full_backlog)
        nursery.cancel_scope.cancel()
    assert sock.get_handle() == -1
