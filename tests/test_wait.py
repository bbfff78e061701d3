"""wait_readable / wait_writable: Ioto's ``rSetSocketWaitMask`` with
``R_READABLE`` / ``R_WRITABLE`` (SPEC section 8).

"Would not block" is checked with :func:`blocks`: the wait runs in a task of
its own and counts as blocking if it is still waiting once every task is
blocked (it is then cancelled), so no test waits for real time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trio_rsocket import DeadlineError, RSocket, deadline_after
from trio_rsocket.testing import CertFiles, open_rsocket_pair

from .conftest import assert_busy_while, clogged_plain_pair, closing, connected_pair, has_ipv6

Wait = Callable[[], Awaitable[object]]


async def blocks(wait: Wait) -> bool:
    """Whether ``await wait()`` blocks, rather than returning at once.  A wait
    that blocks is cancelled; an error from it is raised."""
    finished = False

    async def run() -> None:
        nonlocal finished
        await wait()
        finished = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return not finished


async def drain(sock: RSocket, until: trio.Event) -> None:
    """Read from *sock* until *until* is set (bounded by the data there is:
    a read with nothing left to read blocks, and the test's safety net ends it)."""
    while not until.is_set():
        await sock.read()
        await trio.testing.wait_all_tasks_blocked()


# ----------------------------------------------------------------------------
# wait_readable


async def settled(pair: tuple[RSocket, RSocket]) -> tuple[RSocket, RSocket]:
    """*pair*, fresh over plain TCP; over TLS once a first message from the
    server has been read, and with it the session tickets that came before
    it, so that the client has nothing more to read."""
    client, server = pair
    if client.is_secure():
        await server.write(b"first")
        assert await client.read_exactly(5) == b"first"
    return client, server


async def test_wait_readable_blocks_while_there_is_nothing_to_read(either_pair: tuple[RSocket, RSocket]) -> None:
    client, _ = await settled(either_pair)
    assert await blocks(client.wait_readable)


async def test_wait_readable_wakes_when_data_arrives_and_consumes_none_of_it(
    either_pair: tuple[RSocket, RSocket],
) -> None:
    client, server = await settled(either_pair)
    woke = trio.Event()

    async def waiter() -> None:
        await client.wait_readable()
        woke.set()

    with trio.fail_after(10):  # a safety net, never reached
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            await server.write(b"record")
    assert woke.is_set()
    assert await client.read_exactly(6) == b"record"


async def test_wait_readable_returns_at_once_when_data_is_waiting_in_the_kernel(
    pair: tuple[RSocket, RSocket],
) -> None:
    client, server = pair
    await client.write(b"hello")
    await trio.testing.wait_all_tasks_blocked()
    assert not await blocks(server.wait_readable)
    assert await server.read() == b"hello"


@pytest.mark.parametrize("take", ["read_until", "read_exactly"])
async def test_bytes_left_in_the_read_buffer_are_readable(pair: tuple[RSocket, RSocket], take: str) -> None:
    """The kernel has nothing left: what ``read_until``/``read_exactly``
    pulled in beyond its answer sits in the socket's own buffer."""
    client, server = pair
    await client.write(b"line\nrest")
    if take == "read_until":
        assert await server.read_until(b"\n") == b"line\n"
    else:
        await trio.testing.wait_all_tasks_blocked()  # all nine bytes are in
        assert await server.read_exactly(2) == b"li"
    assert not await blocks(server.wait_readable)
    assert (await server.read()).endswith(b"rest")


async def test_end_of_file_is_readable(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.send_eof()
    assert not await blocks(server.wait_readable)
    assert await server.read() == b""


async def test_end_of_file_already_read_is_still_readable(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.send_eof()
    assert await server.read() == b""
    assert server.is_eof()
    assert not await blocks(server.wait_readable)


async def test_a_reset_by_the_peer_is_readable(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    client.set_linger(0)
    client.close()  # with RST
    assert not await blocks(server.wait_readable)
    with pytest.raises(trio.BrokenResourceError):
        await server.read()


async def test_tls_bytes_decrypted_but_not_read_are_readable(rsocket_tls_pair: tuple[RSocket, RSocket]) -> None:
    """One TLS record of 1000 bytes; reading 10 decrypts the whole record,
    so the other 990 wait in the TLS layer, not in the kernel."""
    client, server = rsocket_tls_pair
    await server.write(b"r" * 1000)
    assert await client.read(10) == b"r" * 10
    assert not await blocks(client.wait_readable)
    assert await client.read_exactly(990) == b"r" * 990


async def test_tls_close_notify_is_readable(rsocket_tls_pair: tuple[RSocket, RSocket]) -> None:
    client, server = rsocket_tls_pair
    await server.aclose()
    assert not await blocks(client.wait_readable)
    assert await client.read() == b""


async def pump(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
    with scope:
        while data := await source.receive_some():
            await sink.send_all(data)


async def test_tls_half_a_record_is_not_readable(rsocket_cert_files: CertFiles) -> None:
    """A relay between the two ends hands the client one whole record and
    half of the next: a read would block until the other half comes, so
    wait_readable must wait too."""
    server_side = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    relay_side = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    to_server, to_client = trio.CancelScope(), trio.CancelScope()
    async with server_side, relay_side, RSocket() as client, trio.open_nursery() as relay:
        client.set_certs(authority=str(rsocket_cert_files.authority))
        async with trio.open_nursery() as handshakes:
            handshakes.start_soon(client.connect, "localhost", relay_side.socket.getsockname()[1])
            downstream = await relay_side.accept()
            upstream = await trio.open_tcp_stream("127.0.0.1", server_side.socket.getsockname()[1])
            server = RSocket.from_socket(await server_side.accept(), server_side=True)
            server.set_certs(key=str(rsocket_cert_files.server_key), cert=str(rsocket_cert_files.server_cert))
            relay.start_soon(pump, downstream, upstream, to_server)
            relay.start_soon(pump, upstream, downstream, to_client)
            await server.upgrade_tls()
        try:
            await server.write(b"hello")
            assert await client.read_exactly(5) == b"hello"  # the session tickets are read by now too
            await trio.testing.wait_all_tasks_blocked()
            to_client.cancel()  # idle in receive_some: stopping it there loses nothing
            await server.write(b"first")
            first = await upstream.receive_some()
            await server.write(b"second")
            second = await upstream.receive_some()
            await downstream.send_all(first + second[:10])
            assert await client.read() == b"first"
            assert await blocks(client.wait_readable)
            await downstream.send_all(second[10:])
            assert not await blocks(client.wait_readable)
            assert await client.read() == b"second"
        finally:
            to_server.cancel()
            server.close()
            await upstream.aclose()
            await downstream.aclose()


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_wait_readable_over_ipv6() -> None:
    async with connected_pair("::1") as (client, server):
        assert await blocks(server.wait_readable)
        await client.write(b"six")
        assert not await blocks(server.wait_readable)


async def test_wait_readable_with_buffered_bytes_meets_any_deadline(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    client, server = pair
    await client.write(b"a\nb")
    await server.read_until(b"\n")
    before = trio.current_time()
    await server.wait_readable(deadline=deadline_after(1))
    assert trio.current_time() == before


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("where", ["buffered", "kernel", "eof"])
@pytest.mark.parametrize("call", ["read", "wait_readable"])
async def test_a_deadline_already_passed_wins_over_data_that_is_there(
    call: str, where: str, secure: bool, rsocket_cert_files: CertFiles
) -> None:
    # trio's rule: a call checks for cancellation on entry, before it looks
    # at what is there; read and wait_readable say the same.
    async with open_rsocket_pair(tls=secure, cert_files=rsocket_cert_files) as (client, server):
        if where == "eof":
            await server.aclose()
        else:
            await server.write(b"line\nrest")
        await client.wait_readable()  # in the kernel (over TLS: decrypted, into the socket's buffer)
        if where == "buffered":
            assert await client.read_until(b"\n") == b"line\n"
        with pytest.raises(DeadlineError):
            await getattr(client, call)(deadline=deadline_after(-1))
        # Nothing was taken: the next read gets it.
        assert await client.read() == {"eof": b"", "buffered": b"rest", "kernel": b"line\nrest"}[where]


async def test_a_nan_deadline_is_a_value_error(pair: tuple[RSocket, RSocket]) -> None:
    _, server = pair
    with pytest.raises(ValueError, match="deadline"):
        await server.wait_readable(deadline=math.nan)
    with pytest.raises(ValueError, match="deadline"):
        await server.wait_writable(deadline=math.nan)


# ----------------------------------------------------------------------------
# wait_writable


async def test_wait_writable_returns_at_once_on_a_fresh_connection(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    assert not await blocks(client.wait_writable)


async def test_wait_writable_blocks_while_the_send_buffer_is_full() -> None:
    async with closing(clogged_plain_pair()) as (client, _):
        assert await blocks(client.wait_writable)


async def test_wait_writable_wakes_when_the_peer_makes_room() -> None:
    client, server = await clogged_plain_pair()
    woke = trio.Event()

    async def waiter() -> None:
        await client.wait_writable()
        woke.set()

    try:
        with trio.fail_after(10):  # a safety net, never reached
            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert not woke.is_set()
                await drain(server, until=woke)
        assert woke.is_set()
    finally:
        client.close()
        server.close()


async def test_tls_wait_writable_returns_at_once_on_a_fresh_connection(
    rsocket_tls_pair: tuple[RSocket, RSocket],
) -> None:
    client, _ = rsocket_tls_pair
    assert not await blocks(client.wait_writable)


async def test_wait_writable_deadline_raises_deadline_error_at_that_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with closing(clogged_plain_pair()) as (client, _):
        deadline = deadline_after(5)
        with pytest.raises(DeadlineError):
            await client.wait_writable(deadline=deadline)
        assert trio.current_time() == deadline


# ----------------------------------------------------------------------------
# Trio's rules


async def test_wait_readable_is_a_checkpoint_even_when_it_does_not_wait(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"a\nb")
    await server.read_until(b"\n")
    with trio.testing.assert_checkpoints():
        await server.wait_readable()


async def test_wait_writable_is_a_checkpoint_even_when_it_does_not_wait(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    with trio.testing.assert_checkpoints():
        await client.wait_writable()


async def test_two_fibers_waiting_to_read_is_busy(pair: tuple[RSocket, RSocket]) -> None:
    _, server = pair
    await assert_busy_while(server.wait_readable, server.wait_readable)


async def test_waiting_to_read_while_another_fiber_reads_is_busy(pair: tuple[RSocket, RSocket]) -> None:
    _, server = pair
    await assert_busy_while(server.read, server.wait_readable)


async def test_two_fibers_waiting_to_write_is_busy() -> None:
    async with closing(clogged_plain_pair()) as (client, _):
        await assert_busy_while(client.wait_writable, client.wait_writable)


async def test_one_fiber_waiting_to_read_and_one_waiting_to_write_is_fine(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.wait_readable)
        await trio.testing.wait_all_tasks_blocked()
        await server.wait_writable()
        await client.write(b"wake")
    assert await server.read() == b"wake"


async def test_close_wakes_a_fiber_waiting_to_read(pair: tuple[RSocket, RSocket]) -> None:
    _, server = pair
    woke = trio.Event()

    async def waiter() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await server.wait_readable()
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        server.close()
    assert woke.is_set()


async def test_close_wakes_a_fiber_waiting_to_write() -> None:
    client, server = await clogged_plain_pair()
    woke = trio.Event()

    async def waiter() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await client.wait_writable()
        woke.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            client.close()
        assert woke.is_set()
    finally:
        server.close()


@pytest.mark.parametrize("method", ["wait_readable", "wait_writable"])
async def test_waiting_on_an_unconnected_socket_is_closed_resource_error(method: str) -> None:
    with pytest.raises(trio.ClosedResourceError, match="not connected"):
        await getattr(RSocket(), method)()


@pytest.mark.parametrize("method", ["wait_readable", "wait_writable"])
async def test_waiting_on_a_closed_socket_is_closed_resource_error(pair: tuple[RSocket, RSocket], method: str) -> None:
    client, _ = pair
    client.close()
    with pytest.raises(trio.ClosedResourceError, match="closed"):
        await getattr(client, method)()
