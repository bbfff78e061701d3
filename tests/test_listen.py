"""Listening: addresses, handler fibers, crash isolation, socket limit, close
and shutdown, load, and Ioto's own socket test — all over real loopback."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
import trio.testing

import trio_rsocket
from trio_rsocket import (
    ConnectError,
    ListenError,
    RSocket,
    _listen,
    _plain,
    get_socket_limit,
    open_runtime,
    set_socket_limit,
)
from trio_rsocket.testing import CertFiles, echo_handler

from .conftest import Handler, has_ipv6, open_fds, serving, with_cert_files

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")


@pytest.fixture(autouse=True)
def every_server_socket_is_released() -> Iterator[None]:
    """Each test ends with no server-side socket counted as alive, and the
    process-wide socket limit as it found it."""
    limit = get_socket_limit()
    yield
    set_socket_limit(limit)
    assert _listen._sockets_alive == 0


def serving_tls(
    files: CertFiles, handler: Handler, handshake_timeout: float = 30
) -> AbstractAsyncContextManager[RSocket]:
    """:func:`~tests.conftest.serving` presenting the server certificate of *files*."""
    return serving(handler, configure=with_cert_files(files), handshake_timeout=handshake_timeout)


async def connect(port: int, host: str = "127.0.0.1") -> RSocket:
    client = RSocket()
    await client.connect(host, port)
    return client


async def hold_until_eof(data: object, sock: RSocket) -> None:
    """Greet, then keep the connection until the client leaves."""
    await sock.write(b"hi")
    while await sock.read():
        pass


# ----------------------------------------------------------------------------
# Addresses


async def test_port_zero_listens_on_a_free_port_that_get_addr_tells() -> None:
    async with serving(echo_handler) as listener:
        host, port = listener.get_addr()
        assert (host, port != 0) == ("127.0.0.1", True)
        client = await connect(port)
        await client.write(b"ping")
        assert await client.read() == b"ping"
        client.close()


@needs_ipv6
@pytest.mark.parametrize("host", [None, ""])
async def test_all_interfaces_is_one_dual_stack_port_for_ipv4_and_ipv6(host: str | None) -> None:
    peers: list[tuple[str, int]] = []

    async def record_peer(data: object, sock: RSocket) -> None:
        peers.append(sock.get_peer_addr())
        await sock.write(b"ok")

    async with serving(record_peer, host) as listener:
        port = listener.get_addr()[1]
        for address in ("127.0.0.1", "::1"):
            client = await connect(port, address)
            assert await client.read() == b"ok"
            client.close()
    # IPv4 arrives IPv4-mapped on the dual-stack socket and is shown dotted.
    assert [peer[0] for peer in peers] == ["127.0.0.1", "::1"]


async def test_localhost_listens_on_ipv4_loopback_only() -> None:
    async with serving(echo_handler, "localhost") as listener:
        host, port = listener.get_addr()
        assert host == "127.0.0.1"
        if has_ipv6():
            with pytest.raises(ConnectError):
                await connect(port, "::1")


@needs_ipv6
async def test_an_ipv6_address_listens_on_ipv6() -> None:
    async with serving(echo_handler, "::1") as listener:
        host, port = listener.get_addr()
        assert host == "::1"
        client = await connect(port, "::1")
        await client.write(b"six")
        assert await client.read() == b"six"
        client.close()


async def test_reuse_port_lets_two_listeners_share_one_port() -> None:
    async with serving(hold_until_eof, reuse_port=True) as first:
        port = first.get_addr()[1]
        second = RSocket()
        async with trio.open_nursery() as nursery:
            await second.listen("127.0.0.1", port, hold_until_eof, nursery=nursery, reuse_port=True)
            assert second.get_addr() == ("127.0.0.1", port)
            clients = [await connect(port) for _ in range(4)]
            for client in clients:
                assert await client.read() == b"hi"
                client.close()
            await second.shutdown()
        served = first.statistics().accepted + second.statistics().accepted
        assert served == 4


async def test_a_port_in_use_raises_listen_error_with_errno() -> None:
    async with serving(echo_handler) as first:
        port = first.get_addr()[1]
        second = RSocket()
        async with trio.open_nursery() as nursery:
            with pytest.raises(ListenError, match=f"Cannot bind/listen on 127.0.0.1:{port}") as caught:
                await second.listen("127.0.0.1", port, echo_handler, nursery=nursery)
        assert caught.value.errno == errno.EADDRINUSE
        assert second.get_handle() == -1
        assert second.get_error() == str(caught.value)


# ----------------------------------------------------------------------------
# Argument checks: before any I/O


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"handler": 42}, TypeError, "handler must be"),
        ({"port": -1}, ValueError, r"port must be in 0\.\.65535"),
        ({"port": 65536}, ValueError, r"port must be in 0\.\.65535"),
        ({"port": "80"}, TypeError, "port must be an int"),
        ({"host": 127}, TypeError, "host must be a str or None"),
        ({"backlog": 0}, ValueError, "backlog must be at least 1"),
        ({"backlog": 1.5}, TypeError, "backlog must be an int"),
        ({"reuse_port": "yes"}, TypeError, "reuse_port must be a bool"),
        ({"handshake_timeout": 0}, ValueError, "handshake_timeout must be more than 0"),
        ({"handshake_timeout": math.nan}, ValueError, "handshake_timeout must be a number of seconds, not NaN"),
        ({"handshake_timeout": "30"}, TypeError, "handshake_timeout must be a number"),
        ({"nursery": "mine"}, TypeError, "nursery must be a trio.Nursery"),
    ],
)
async def test_bad_listen_arguments_fail_before_any_io(
    arguments: dict[str, Any], error: type[Exception], message: str, no_fd_leak: None
) -> None:
    listen: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "handler": echo_handler}
    listen.update(arguments)
    listener = RSocket()
    async with open_runtime():
        with pytest.raises(error, match=message):
            await listener.listen(**listen)
    assert listener.get_handle() == -1


async def test_listen_without_nursery_outside_a_runtime_says_how_to_fix_it() -> None:
    with pytest.raises(RuntimeError, match=r"open_runtime\(\).*trio_rsocket\.run.*nursery="):
        await RSocket().listen("127.0.0.1", 0, echo_handler)


async def test_listen_inside_open_runtime_needs_no_nursery() -> None:
    listener = RSocket()
    async with open_runtime():
        await listener.listen("127.0.0.1", 0, echo_handler)
        client = await connect(listener.get_addr()[1])
        await client.write(b"runtime")
        assert await client.read() == b"runtime"
        client.close()
        await listener.shutdown()


async def test_listen_into_a_closed_nursery_leaves_no_socket_open(no_fd_leak: None) -> None:
    async with trio.open_nursery() as finished:
        pass
    listener = RSocket()
    with pytest.raises(RuntimeError, match="closed"):
        await listener.listen("127.0.0.1", 0, echo_handler, nursery=finished)
    assert listener.get_handle() == -1


def test_stop_inside_a_handler_ends_run() -> None:
    async def stop_handler(data: object, sock: RSocket) -> None:
        trio_rsocket.stop()
        await trio.sleep_forever()

    async def main() -> str:
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, stop_handler)
        client = await connect(listener.get_addr()[1])
        try:
            # The handler's stop() cancels this read, and run returns.
            await client.read()
        finally:
            client.close()
        return "unreachable"

    assert trio_rsocket.run(main) is None


# ----------------------------------------------------------------------------
# Handlers


async def test_each_connection_gets_a_connected_server_socket_with_no_delay() -> None:
    seen: list[tuple[bool, int, tuple[str, int]]] = []

    async def inspect(data: object, sock: RSocket) -> None:
        raw = socket.socket(fileno=os.dup(sock.get_handle()))
        with raw:
            no_delay = raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        seen.append((sock.is_connected(), no_delay, sock.get_peer_addr()))
        await sock.write(b"x")

    async with serving(inspect) as listener:
        client = await connect(listener.get_addr()[1])
        assert await client.read() == b"x"
        assert seen == [(True, 1, client.get_addr())]
        client.close()


async def test_handler_gets_the_data_given_to_listen() -> None:
    received: list[object] = []

    async def remember(data: object, sock: RSocket) -> None:
        received.append(data)
        await sock.write(b"x")

    token = object()
    async with serving(remember, data=token) as listener:
        client = await connect(listener.get_addr()[1])
        assert await client.read() == b"x"
        client.close()
    assert received == [token]


async def test_the_socket_is_closed_when_the_handler_returns() -> None:
    sockets: list[RSocket] = []

    async def leave(data: object, sock: RSocket) -> None:
        sockets.append(sock)
        await sock.write(b"bye")

    async with serving(leave) as listener:
        client = await connect(listener.get_addr()[1])
        assert await client.read() == b"bye"
        assert await client.read() == b""
        client.close()
    assert sockets[0].is_closed()


async def test_a_crashing_handler_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def crash(data: object, sock: RSocket) -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("handler bug")

    async with serving(crash) as listener:
        client = await connect(listener.get_addr()[1])
        assert await client.read() == b""
        client_address = client.get_addr()
        client.close()
        await listener.shutdown()
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    record = errors[0]
    assert record.name == "trio_rsocket"
    assert f"{client_address[0]}:{client_address[1]}" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert "handler bug" in caplog.text
    assert "Traceback" in caplog.text
    assert listener.statistics().handler_errors == 1


async def test_a_crashing_handler_leaves_the_listener_and_other_connections_running() -> None:
    async def crash_on_request(data: object, sock: RSocket) -> None:
        while True:
            received = await sock.read()
            if received == b"crash":
                raise RuntimeError("asked to crash")
            if not received:
                return
            await sock.write(received)

    async with serving(crash_on_request) as listener:
        port = listener.get_addr()[1]
        survivor = await connect(port)
        victim = await connect(port)
        await victim.write(b"crash")
        assert await victim.read() == b""
        victim.close()
        await survivor.write(b"still here")
        assert await survivor.read() == b"still here"
        newcomer = await connect(port)
        await newcomer.write(b"new")
        assert await newcomer.read() == b"new"
        survivor.close()
        newcomer.close()


async def test_an_exception_group_from_a_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fail_twice(data: object, sock: RSocket) -> None:
        async def fail(message: str) -> None:
            # No checkpoint first: both fail before either can be cancelled.
            raise KeyError(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail, "first")
            nursery.start_soon(fail, "second")

    async with serving(fail_twice) as listener:
        client = await connect(listener.get_addr()[1])
        assert await client.read() == b""
        client.close()
        await listener.shutdown()
    assert listener.statistics().handler_errors == 1
    assert "KeyError: 'first'" in caplog.text
    assert "KeyError: 'second'" in caplog.text


# ----------------------------------------------------------------------------
# TLS listeners: the handshake runs in the connection's fiber


async def test_a_tls_listener_hands_handlers_secure_sockets(rsocket_cert_files: CertFiles) -> None:
    secure: list[bool] = []

    async def tls_echo(data: object, sock: RSocket) -> None:
        secure.append(sock.is_secure())
        await echo_handler(data, sock)

    async with serving_tls(rsocket_cert_files, tls_echo) as listener:
        client = RSocket()
        client.set_certs(authority=str(rsocket_cert_files.authority))
        await client.connect("127.0.0.1", listener.get_addr()[1])
        await client.write(b"secret")
        assert await client.read() == b"secret"
        await client.aclose()
    assert secure == [True]


async def test_a_failed_tls_handshake_is_logged_and_dropped(
    rsocket_cert_files: CertFiles, caplog: pytest.LogCaptureFixture
) -> None:
    called: list[RSocket] = []

    async def never(data: object, sock: RSocket) -> None:
        called.append(sock)
        await trio.lowlevel.checkpoint()

    async with serving_tls(rsocket_cert_files, never) as listener:
        client = await connect(listener.get_addr()[1])
        await client.write(b"GET / HTTP/1.0\r\n\r\n")
        # The server may answer with a TLS alert before it closes; either way
        # the connection ends.
        with contextlib.suppress(trio.BrokenResourceError):
            for _ in range(10):
                if not await client.read():
                    break
        assert client.is_eof() or "broken" in client.get_error()
        client.close()
        await listener.shutdown()
    assert called == []
    assert listener.statistics().handler_errors == 0
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].name == "trio_rsocket"
    assert "TLS handshake with 127.0.0.1:" in warnings[0].getMessage()


async def test_a_tls_handshake_that_does_not_finish_in_time_is_dropped(
    rsocket_cert_files: CertFiles, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def never(data: object, sock: RSocket) -> None:
        raise AssertionError("no handshake, no handler")

    async with serving_tls(rsocket_cert_files, never, handshake_timeout=5) as listener:
        silent = await connect(listener.get_addr()[1])
        begin = trio.current_time()
        # Says nothing: the server gives up after the timeout and closes.
        assert await silent.read() == b""
        assert trio.current_time() - begin == pytest.approx(5)
        silent.close()
    assert "did not finish within 5" in caplog.text
    assert listener.statistics().handler_errors == 0


# ----------------------------------------------------------------------------
# Close and shutdown


async def test_close_stops_accepting_and_frees_the_port(no_fd_leak: None) -> None:
    listener = RSocket()
    async with trio.open_nursery() as nursery:
        await listener.listen("127.0.0.1", 0, echo_handler, nursery=nursery)
        port = listener.get_addr()[1]
        listener.close()
        assert listener.is_closed()
        assert listener.get_handle() == -1
        with pytest.raises(ConnectError):
            await connect(port)
    # The port is free: a plain socket without SO_REUSEADDR can bind it.
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


async def test_close_lets_running_handlers_go_on() -> None:
    async with serving(echo_handler) as listener:
        client = await connect(listener.get_addr()[1])
        await client.write(b"before")
        assert await client.read() == b"before"
        listener.close()
        await client.write(b"after")
        assert await client.read() == b"after"
        client.close()


async def test_a_listener_is_not_connected() -> None:
    async with serving(echo_handler) as listener:
        assert not listener.is_connected()
        assert listener.get_handle() >= 0
    assert listener.is_closed()


async def test_cancelling_the_nursery_closes_the_listener() -> None:
    listener = RSocket()
    async with trio.open_nursery() as nursery:
        await listener.listen("127.0.0.1", 0, echo_handler, nursery=nursery)
        nursery.cancel_scope.cancel()
    assert listener.is_closed()


async def test_shutdown_without_grace_waits_for_the_handlers(autojump_clock: trio.testing.MockClock) -> None:
    started = trio.Event()

    async def slow(data: object, sock: RSocket) -> None:
        started.set()
        await trio.sleep(100)
        await sock.write(b"done")

    async with serving(slow) as listener:
        client = await connect(listener.get_addr()[1])
        await started.wait()
        begin = trio.current_time()
        assert await listener.shutdown() == 0
        assert trio.current_time() - begin == pytest.approx(100)
        assert await client.read() == b"done"
        client.close()


async def test_shutdown_cancels_the_handlers_left_when_the_grace_ends(autojump_clock: trio.testing.MockClock) -> None:
    started = trio.Semaphore(0)
    finished: list[str] = []

    async def quick_or_stuck(data: object, sock: RSocket) -> None:
        kind = await sock.read_exactly(5)
        started.release()
        await trio.sleep(1 if kind == b"quick" else math.inf)
        finished.append(kind.decode())

    async with serving(quick_or_stuck) as listener:
        port = listener.get_addr()[1]
        clients = [await connect(port) for _ in range(3)]
        for client, kind in zip(clients, (b"quick", b"stuck", b"stuck"), strict=True):
            await client.write(kind)
        for _ in clients:
            await started.acquire()
        begin = trio.current_time()
        assert await listener.shutdown(grace=5) == 2
        assert trio.current_time() - begin == pytest.approx(5)
        for client in clients:
            client.close()
    assert finished == ["quick"]
    stats = listener.statistics()
    assert (stats.active, stats.handler_errors) == (0, 0)


async def test_shutdown_stops_accepting_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(data: object, sock: RSocket) -> None:
        await trio.sleep(10)

    async with serving(slow) as listener:
        port = listener.get_addr()[1]
        client = await connect(port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.shutdown)
            await trio.testing.wait_all_tasks_blocked()
            assert listener.is_closed()
            with pytest.raises(ConnectError):
                await connect(port)
        client.close()


async def test_shutdown_of_a_socket_that_never_listened_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="listening socket"):
        await RSocket().shutdown()


@pytest.mark.parametrize(("grace", "error"), [(-1, ValueError), (math.nan, ValueError), ("5", TypeError)])
async def test_shutdown_rejects_a_bad_grace(grace: object, error: type[Exception]) -> None:
    async with serving(echo_handler) as listener:
        with pytest.raises(error, match="grace"):
            await listener.shutdown(grace)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------
# Statistics


async def test_listener_statistics_count_connections() -> None:
    async with serving(hold_until_eof) as listener:
        port = listener.get_addr()[1]
        clients = [await connect(port) for _ in range(3)]
        for client in clients:
            assert await client.read() == b"hi"
        stats = listener.statistics()
        assert (stats.accepted, stats.active, stats.rejected, stats.handler_errors) == (3, 3, 0, 0)
        for client in clients:
            client.close()
        await listener.shutdown()
    assert listener.statistics().active == 0


# ----------------------------------------------------------------------------
# Socket limit


def test_the_socket_limit_defaults_to_ioto_s_1000() -> None:
    assert _listen.DEFAULT_SOCKET_LIMIT == 1000
    assert get_socket_limit() == 1000


def test_set_socket_limit_is_what_get_socket_limit_returns() -> None:
    set_socket_limit(7)
    assert get_socket_limit() == 7


@pytest.mark.parametrize(("limit", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_set_socket_limit_rejects_bad_limits(limit: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="limit"):
        set_socket_limit(limit)  # type: ignore[arg-type]


async def greetings(clients: list[RSocket]) -> list[bytes]:
    return [await client.read() for client in clients]


async def test_connections_past_the_socket_limit_are_closed_at_once(caplog: pytest.LogCaptureFixture) -> None:
    set_socket_limit(5)
    async with serving(hold_until_eof) as listener:
        port = listener.get_addr()[1]
        clients = [await connect(port) for _ in range(8)]
        assert sorted(await greetings(clients)) == [b""] * 3 + [b"hi"] * 5
        stats = listener.statistics()
        assert (stats.accepted, stats.active, stats.rejected) == (8, 5, 3)
        warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 3
        assert all("socket limit is 5" in record.getMessage() for record in warnings)
        for client in clients:
            client.close()


async def test_connections_succeed_again_when_others_leave() -> None:
    set_socket_limit(5)
    left = trio.Semaphore(0)

    async def hold_then_signal(data: object, sock: RSocket) -> None:
        try:
            await hold_until_eof(data, sock)
        finally:
            left.release()

    async with serving(hold_then_signal) as listener:
        port = listener.get_addr()[1]
        clients = [await connect(port) for _ in range(8)]
        greeted = [client for client, hello in zip(clients, await greetings(clients), strict=True) if hello]
        assert len(greeted) == 5
        for client in greeted[:2]:
            client.close()
        for _ in range(2):
            await left.acquire()
        # The handler has returned; its socket is closed in the same fiber
        # right after, so let that happen before the next connect.
        await trio.testing.wait_all_tasks_blocked()
        later = [await connect(port) for _ in range(2)]
        assert await greetings(later) == [b"hi", b"hi"]
        assert listener.statistics().rejected == 3
        for client in clients + later:
            client.close()


async def test_the_socket_limit_counts_across_listeners() -> None:
    set_socket_limit(2)
    async with serving(hold_until_eof) as first, serving(hold_until_eof) as second:
        a = await connect(first.get_addr()[1])
        b = await connect(second.get_addr()[1])
        assert await greetings([a, b]) == [b"hi", b"hi"]
        c = await connect(second.get_addr()[1])
        assert await c.read() == b""
        assert (first.statistics().rejected, second.statistics().rejected) == (0, 1)
        for client in (a, b, c):
            client.close()


async def test_running_out_of_descriptors_at_accept_is_logged_and_retried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    complained = trio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "EMFILE" in record.getMessage():
                complained.set()

    watch = Watch()
    logging.getLogger("trio_rsocket").addHandler(watch)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        async with serving(hold_until_eof) as listener:
            client = trio.socket.socket()
            # The lowest free descriptor number becomes the limit, so the next
            # descriptor the process asks for (the accept) fails with EMFILE.
            lowest_free = os.dup(0)
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            try:
                await client.connect(listener.get_addr())
                await complained.wait()
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            # The accept loop retries after its pause and serves the connection.
            assert await client.recv(10) == b"hi"
            client.close()
            assert listener.statistics().accepted == 1
    finally:
        logging.getLogger("trio_rsocket").removeHandler(watch)
    assert any(record.levelno == logging.ERROR and "EMFILE" in record.getMessage() for record in caplog.records)


# ----------------------------------------------------------------------------
# Load


async def test_load_500_concurrent_clients_x_20_echo_round_trips(no_fd_leak: None) -> None:
    clients, round_trips, size = 500, 20, 64
    connected = 0
    all_connected = trio.Event()
    errors: list[str] = []

    async def client_fiber(number: int, port: int) -> None:
        nonlocal connected
        sock = await connect(port)
        try:
            for trip in range(round_trips):
                if trip == 1:
                    # One round trip done: the server has accepted this
                    # client; wait until that holds for every client.
                    connected += 1
                    if connected == clients:
                        all_connected.set()
                    await all_connected.wait()
                message = bytes([(number + trip) % 256]) * size
                await sock.write(message)
                if await sock.read_exactly(size) != message:
                    errors.append(f"client {number} trip {trip}")
        finally:
            sock.close()

    before = len(open_fds())
    begin = time.perf_counter()
    async with serving(echo_handler) as listener:
        port = listener.get_addr()[1]
        async with trio.open_nursery() as nursery:
            for number in range(clients):
                nursery.start_soon(client_fiber, number, port)
            await all_connected.wait()
            peak = len(open_fds())
        stats = listener.statistics()
    duration = time.perf_counter() - begin
    print(
        f"\nload: {clients} clients x {round_trips} round trips of {size} bytes in {duration:.2f} s; "
        f"open descriptors: {before} before, peak {peak} (+{peak - before})"
    )
    assert errors == []
    assert stats.accepted == clients
    assert stats.handler_errors == 0
    # Every client and every server-side socket was open at once.
    assert peak - before >= 2 * clients


async def test_2000_sequential_connect_close_cycles(no_fd_leak: None) -> None:
    cycles = 2000

    async def greet(data: object, sock: RSocket) -> None:
        await sock.write(b"!")

    begin = time.perf_counter()
    async with serving(greet) as listener:
        port = listener.get_addr()[1]
        for _ in range(cycles):
            client = await connect(port)
            assert await client.read() == b"!"
            client.close()
        await listener.shutdown()
    print(f"\n{cycles} sequential connect/close cycles in {time.perf_counter() - begin:.2f} s")
    stats = listener.statistics()
    assert (stats.accepted, stats.active, stats.handler_errors) == (cycles, 0, 0)


# ----------------------------------------------------------------------------
# Ioto's own socket test, ported

IOTO_LINE = b"01234567890123456789012345678901234567890123456789\r\n"
IOTO_LINES = 10_000


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
async def test_ioto_socket_test_server_receives_every_byte(host: str) -> None:
    received = bytearray()
    done = trio.Event()

    async def read_to_eof(data: object, sock: RSocket) -> None:
        while chunk := await sock.read():
            received.extend(chunk)
        done.set()

    async with serving(read_to_eof, host) as listener:
        client = await connect(listener.get_addr()[1], host)
        for _ in range(IOTO_LINES):
            await client.write(IOTO_LINE)
        client.close()
        await done.wait()
    assert len(received) == len(IOTO_LINE) * IOTO_LINES
    assert received == IOTO_LINE * IOTO_LINES


async def test_a_name_no_dns_label_can_hold_is_a_listen_error() -> None:
    async with trio_rsocket.open_runtime():
        with pytest.raises(trio_rsocket.ListenError, match="Cannot find address of"):
            await RSocket().listen("a" * 70 + ".invalid", 0, echo_handler)


async def test_a_peer_breaking_the_connection_is_one_warning_not_a_handler_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished = trio.Event()

    async def read_forever(data: object, sock: RSocket) -> None:
        try:
            while await sock.read():
                pass
        finally:
            finished.set()

    async with open_runtime():
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, read_forever)
        client = RSocket()
        await client.connect(*listener.get_addr())
        client.set_linger(0)
        await client.write(b"x")
        client.close()  # linger 0: a reset
        await finished.wait()
        await listener.shutdown()
    assert listener.statistics().handler_errors == 0
    broke = [record for record in caplog.records if "broke" in record.getMessage()]
    assert len(broke) == 1
    assert broke[0].levelno == logging.WARNING
    assert broke[0].exc_info is None


async def test_an_object_with_an_async_call_is_a_handler() -> None:
    class Echo:
        async def __call__(self, data: object, sock: RSocket) -> None:
            await echo_handler(data, sock)

    async with open_runtime():
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, Echo())
        async with RSocket() as client:
            await client.connect(*listener.get_addr())
            await client.write(b"called")
            assert await client.read_exactly(6) == b"called"
        listener.close()


# ----------------------------------------------------------------------------
# Any async callable is a handler, as trio takes it; a sync one fails per connection


async def test_a_lambda_or_partial_returning_a_coroutine_is_a_handler() -> None:
    async def tagged_echo(tag: bytes, data: object, sock: RSocket) -> None:
        received = await sock.read()
        await sock.write(tag + received)

    handlers: list[Handler] = [
        lambda data, sock: tagged_echo(b"lambda:", data, sock),
        functools.partial(tagged_echo, b"partial:"),
    ]
    for handler in handlers:
        async with serving(handler) as listener:
            client = await connect(listener.get_addr()[1])
            await client.write(b"x")
            assert (await client.read()).endswith(b":x")
            client.close()
            await listener.shutdown()
        assert listener.statistics().handler_errors == 0


async def test_a_handler_that_returns_no_awaitable_is_a_logged_handler_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def not_async(data: object, sock: RSocket) -> None:
        pass

    async with serving(not_async) as listener:  # type: ignore[arg-type]
        port = listener.get_addr()[1]
        for _ in range(2):  # the listener goes on serving
            client = await connect(port)
            assert await client.read() == b""  # the socket is closed
            client.close()
        await listener.shutdown()
    assert listener.statistics().handler_errors == 2
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    message = errors[0].getMessage()
    assert errors[0].name == "trio_rsocket"
    assert "not_async" in message
    assert "returned None, not an awaitable: is it an async function?" in message
    assert "127.0.0.1:" in message


# ----------------------------------------------------------------------------
# A connection that cannot be set up is dropped; the accept loop goes on


async def say_hi(data: object, sock: RSocket) -> None:
    await sock.write(b"hi")


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (RuntimeError("no TLS context"), logging.ERROR),
        (ValueError("bad option value"), logging.ERROR),
        (OSError(errno.ENOPROTOOPT, "Protocol not available"), logging.ERROR),
        (OSError(errno.ECONNRESET, "Connection reset by peer"), logging.DEBUG),
    ],
)
async def test_an_error_setting_up_a_connection_drops_it_and_the_loop_goes_on(
    error: Exception, level: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_rsocket")
    calls = 0

    class FailingOnce(_plain.PlainConnection):
        """The listener's part, whose first setting up fails with *error*."""

        def __init__(self, raw: socket.socket, no_delay: bool | None = None, linger: int | None = None) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise error
            super().__init__(raw, no_delay, linger)

    monkeypatch.setattr(_listen, "PlainConnection", FailingOnce)
    async with serving(say_hi) as listener:
        port = listener.get_addr()[1]
        dropped = await trio.open_tcp_stream("127.0.0.1", port)
        assert await dropped.receive_some() == b""  # closed, not left hanging
        dropped_port = dropped.socket.getsockname()[1]
        await dropped.aclose()
        served = await trio.open_tcp_stream("127.0.0.1", port)
        assert await served.receive_some() == b"hi"
        await served.aclose()
        await trio.testing.wait_all_tasks_blocked()
        stats = listener.statistics()
    assert (stats.accepted, stats.active, stats.handler_errors) == (2, 0, 0)
    [record] = [record for record in caplog.records if str(error) in record.getMessage()]
    assert record.name == "trio_rsocket"
    assert record.levelno == level
    assert f"127.0.0.1:{dropped_port}" in record.getMessage()


# ----------------------------------------------------------------------------
# shutdown counts handlers, not handshakes


async def test_shutdown_counts_handlers_cancelled_apart_from_handshakes(
    rsocket_cert_files: CertFiles,
) -> None:
    started = trio.Event()

    async def wait_for_ever(data: object, sock: RSocket) -> None:
        started.set()
        await trio.sleep_forever()

    async with serving_tls(rsocket_cert_files, wait_for_ever) as listener:
        port = listener.get_addr()[1]
        # Connects and never sends a ClientHello: its handshake waits.
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        client = RSocket()
        client.set_certs(authority=str(rsocket_cert_files.authority))
        await client.connect("127.0.0.1", port)
        await started.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert listener.statistics().active == 2
        assert await listener.shutdown(grace=0) == 1
        assert listener.statistics().handshakes_cancelled == 1
        assert listener.statistics().active == 0
        await silent.aclose()
        client.close()
    assert listener.statistics().handler_errors == 0
