"""trio_rsocket.ioto: Ioto's C names, return codes and millisecond deadlines.

Three parts: every code block of the seed document (seed-ioto-sockets.md)
translated line by line; Ioto's own socket unit test written with these
names; and every R_ERR_* code these calls can return.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_rsocket
from trio_rsocket import RSocket, TLSError, ioto
from trio_rsocket.ioto import (
    INVALID_SOCKET,
    ME_BUFSIZE,
    R_ERR_BAD_ARGS,
    R_ERR_BAD_STATE,
    R_ERR_BUSY,
    R_ERR_CANT_COMPLETE,
    R_ERR_CANT_CONNECT,
    R_ERR_CANT_INITIALIZE,
    R_ERR_CANT_OPEN,
    R_ERR_CANT_READ,
    R_ERR_CANT_WRITE,
    R_ERR_TIMEOUT,
    R_READABLE,
    R_WRITABLE,
    rAllocSocket,
    rCloseSocket,
    rConnectSocket,
    rDisconnectSocket,
    rFreeSocket,
    rFreeTlsSession,
    rGetFiber,
    rGetSocketAddr,
    rGetSocketError,
    rGetSocketHandle,
    rGetSocketLimit,
    rGetTicks,
    rGetTime,
    rGetTlsSession,
    rIsSocketClosed,
    rIsSocketConnected,
    rIsSocketEof,
    rIsSocketSecure,
    rListenSocket,
    rReadSocket,
    rResetSocket,
    rResumeFiber,
    rSendFile,
    rSetSocketCerts,
    rSetSocketCiphers,
    rSetSocketDefaultCerts,
    rSetSocketDefaultCiphers,
    rSetSocketDefaultVerify,
    rSetSocketLimit,
    rSetSocketLinger,
    rSetSocketNoDelay,
    rSetSocketVerify,
    rSetSocketWaitMask,
    rSetTlsSession,
    rSleep,
    rSpawnFiber,
    rStop,
    rUpgradeTls,
    rWriteSocket,
    rYieldFiber,
)
from trio_rsocket.testing import CertFiles, open_rsocket_pair

from .conftest import clogged_plain_pair, connected_pair, has_ipv6, plain_pair

Handler = Callable[[Any, RSocket], Awaitable[object]]

# Deliberately wrong arguments go through an untyped name, so mypy lets them be.
unchecked: Any = ioto


@asynccontextmanager
async def ioto_server(handler: Handler, data: object = None, host: str | None = "127.0.0.1") -> AsyncIterator[int]:
    """A runtime with a listener made by rListenSocket; yields its port.  On
    exit the listener is freed and the runtime stopped, so a handler still
    waiting cannot hang the test."""
    async with trio_rsocket.open_runtime():
        listen = rAllocSocket()
        assert await rListenSocket(listen, host, 0, handler, data) == 0
        rc, _, port = rGetSocketAddr(listen)
        assert rc == 0
        try:
            yield port
        finally:
            rFreeSocket(listen)
            rStop()


async def echo(data: object, sock: RSocket) -> None:
    """A connection handler in Ioto's style: echo until EOF or error."""
    buf = bytearray(ME_BUFSIZE)
    for _ in range(1000):
        nbytes = await rReadSocket(sock, buf, len(buf), 0)
        if nbytes < 0 or await rWriteSocket(sock, buf, nbytes, 0) < 0:
            return


async def hang_up(data: object, sock: RSocket) -> None:
    """A connection handler that closes at once (the listener closes the socket)."""


def free_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A loopback port whose listener never accepts and whose queue is full,
    so a connect waits for ever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]  # a backlog of 0 admits one or two
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for filler in fillers:
                filler.close()


# ============================================================================
# The names and the codes


def test_every_name_of_spec_section_5_is_there() -> None:
    names = [
        "rAllocSocket",
        "rFreeSocket",
        "rCloseSocket",
        "rConnectSocket",
        "rListenSocket",
        "rReadSocket",
        "rWriteSocket",
        "rIsSocketClosed",
        "rIsSocketEof",
        "rIsSocketSecure",
        "rIsSocketConnected",
        "rGetSocketHandle",
        "rGetSocketAddr",
        "rGetSocketError",
        "rSetSocketCerts",
        "rSetSocketCiphers",
        "rSetSocketVerify",
        "rSetSocketLinger",
        "rSetSocketNoDelay",
        "rSetSocketDefaultCerts",
        "rSetSocketDefaultCiphers",
        "rSetSocketDefaultVerify",
        "rGetSocketLimit",
        "rSetSocketLimit",
        "rDisconnectSocket",
        "rResetSocket",
        "rGetTicks",
        "rGetTime",
        "rSleep",
        "rSpawnFiber",
        "rGetFiber",
        "rYieldFiber",
        "rResumeFiber",
        "rStop",
    ]
    missing = [name for name in names if name not in ioto.__all__ or not callable(getattr(ioto, name, None))]
    assert missing == []


def test_error_codes_have_iotos_values() -> None:
    # include/r.h of embedthis/ioto, in its order: 0, then -1 down to -42.
    in_r_h = [
        "OK",
        "BASE",
        "ERR",
        "ABORTED",
        "ALREADY_EXISTS",
        "BAD_ACK",
        "BAD_ARGS",
        "BAD_DATA",
        "BAD_FORMAT",
        "BAD_HANDLE",
        "BAD_NULL",
        "BAD_REQUEST",
        "BAD_RESPONSE",
        "BAD_SESSION",
        "BAD_STATE",
        "BAD_SYNTAX",
        "BAD_TYPE",
        "BAD_VALUE",
        "BUSY",
        "CANT_ACCESS",
        "CANT_ALLOCATE",
        "CANT_COMPLETE",
        "CANT_CONNECT",
        "CANT_CREATE",
        "CANT_DELETE",
        "CANT_FIND",
        "CANT_INITIALIZE",
        "CANT_LOAD",
        "CANT_OPEN",
        "CANT_READ",
        "CANT_WRITE",
        "DELETED",
        "MEMORY",
        "NETWORK",
        "NOT_CONNECTED",
        "NOT_INITIALIZED",
        "NOT_READY",
        "READ_ONLY",
        "TIMEOUT",
        "TOO_MANY",
        "WONT_FIT",
        "WOULD_BLOCK",
        "MAX",
    ]
    names = ["R_ERR" if name == "ERR" else f"R_ERR_{name}" for name in in_r_h]
    assert {name: getattr(ioto, name) for name in names} == {name: -index for index, name in enumerate(names)}
    assert (ioto.R_ERR_BAD_ARGS, ioto.R_ERR_CANT_CONNECT, ioto.R_ERR_TIMEOUT) == (-6, -22, -38)
    assert set(names) <= set(ioto.__all__)


# ============================================================================
# The seed document, block by block


async def test_seed_allocate_and_free() -> None:
    # RSocket *sock = rAllocSocket();
    sock = rAllocSocket()
    assert isinstance(sock, RSocket)
    # rFreeSocket(sock);
    rFreeSocket(sock)
    assert rIsSocketClosed(sock)


async def test_seed_connecting(no_fd_leak: None) -> None:
    async with ioto_server(hang_up) as port:
        sock = rAllocSocket()
        # int status = rConnectSocket(sock, "www.example.com", 80, 0);
        status = await rConnectSocket(sock, "127.0.0.1", port, 0)
        # if (status < 0) { error connecting }
        assert status == 0
        assert rIsSocketConnected(sock)
        rFreeSocket(sock)


async def test_seed_listening_on_all_interfaces(no_fd_leak: None) -> None:
    data = {"name": "data"}
    accepted: list[tuple[object, RSocket]] = []
    done = trio.Event()

    async def connectionHandler(data: object, sock: RSocket) -> None:
        accepted.append((data, sock))
        done.set()

    async with trio_rsocket.open_runtime():
        sock = rAllocSocket()
        # rListenSocket(sock, NULL, 80, connectionHandler, data);  (port 0: any free port)
        assert await rListenSocket(sock, None, 0, connectionHandler, data) == 0
        _, _, port = rGetSocketAddr(sock)
        client = rAllocSocket()
        assert await rConnectSocket(client, "127.0.0.1", port, 0) == 0
        await done.wait()
        rFreeSocket(client)
        rFreeSocket(sock)
    [(handed_data, server_side)] = accepted
    assert handed_data is data
    assert isinstance(server_side, RSocket)
    assert rIsSocketClosed(server_side)  # closed when the handler returned


@pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")
async def test_seed_listening_on_all_interfaces_takes_ipv6_too() -> None:
    async with ioto_server(echo, host=None) as port:
        client = rAllocSocket()
        assert await rConnectSocket(client, "::1", port, 0) == 0
        assert await rWriteSocket(client, b"six", 3, 0) == 3
        buf = bytearray(16)
        assert await rReadSocket(client, buf, len(buf), 0) == 3
        assert buf[:3] == b"six"
        rFreeSocket(client)


async def test_seed_testing_the_socket() -> None:
    async with ioto_server(hang_up) as port:
        sock = rAllocSocket()
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
        # if (rIsSocketClosed(sock)) / rIsSocketEof / rIsSocketSecure
        assert not rIsSocketClosed(sock)
        assert not rIsSocketEof(sock)
        assert not rIsSocketSecure(sock)
        # The handler returned, so the peer has closed its end: reading says EOF.
        buf = bytearray(8)
        assert await rReadSocket(sock, buf, len(buf), rGetTime() + 30 * 1000) < 0
        assert rIsSocketEof(sock)
        assert not rIsSocketClosed(sock)
        rFreeSocket(sock)


async def test_seed_closing_the_socket() -> None:
    async with ioto_server(hang_up) as port:
        sock = rAllocSocket()
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
        # rCloseSocket(sock);
        rCloseSocket(sock)
        assert rIsSocketClosed(sock)
        assert rIsSocketEof(sock)
        assert rGetSocketHandle(sock) == INVALID_SOCKET
        # Still need to free the socket resources: rFreeSocket(sock);
        rFreeSocket(sock)
        rFreeSocket(sock)  # idempotent


async def test_seed_reading_and_writing_with_a_30_second_deadline() -> None:
    async with ioto_server(echo) as port:
        sock = rAllocSocket()
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
        # Time deadline = rGetTime() + (30 * 1000);
        deadline = rGetTime() + (30 * 1000)
        # ssize count = rWriteSocket(sock, buf, bufSize, deadline);
        data = b"hello, ioto"
        count = await rWriteSocket(sock, data, len(data), deadline)
        assert count == len(data)
        # ssize count = rReadSocket(sock, buf, sizeof(buf), deadline);
        buf = bytearray(64)
        received = bytearray()
        for _ in range(len(data)):
            count = await rReadSocket(sock, buf, len(buf), deadline)
            assert count > 0
            received += buf[:count]
            if len(received) == len(data):
                break
        assert received == data
        rFreeSocket(sock)


async def test_seed_using_tls(rsocket_cert_files: CertFiles, no_fd_leak: None) -> None:
    files = rsocket_cert_files
    async with trio_rsocket.open_runtime():
        listen = rAllocSocket()
        # rSetSocketCerts(socket, privateKey, certificate, authority, revoke);
        assert rSetSocketCerts(listen, str(files.server_key), str(files.server_cert), None, None) == 0
        assert await rListenSocket(listen, "127.0.0.1", 0, echo, None) == 0
        _, _, port = rGetSocketAddr(listen)

        sock = rAllocSocket()
        assert rSetSocketCerts(sock, None, None, str(files.authority), None) == 0
        # rSetSocketCiphers(sock, cipherList);
        assert rSetSocketCiphers(sock, "ECDHE-ECDSA-AES256-GCM-SHA384,ECDHE-RSA-AES256-GCM-SHA384") == 0
        # rSetSocketVerify(sock, verifyPeer, verifyIssuer);
        assert rSetSocketVerify(sock, 1, 1) == 0
        assert await rConnectSocket(sock, "127.0.0.1", port, rGetTime() + 30 * 1000) == 0
        # if (rIsSocketSecure(sock)) { Connection is using TLS }
        assert rIsSocketSecure(sock)
        assert await rWriteSocket(sock, b"secret", 6, 0) == 6
        buf = bytearray(16)
        assert await rReadSocket(sock, buf, len(buf), 0) == 6
        assert buf[:6] == b"secret"
        rFreeSocket(sock)
        rFreeSocket(listen)


async def test_tls_handshake_failure_is_cant_connect(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    async with trio_rsocket.open_runtime():
        listen = rAllocSocket()
        assert rSetSocketCerts(listen, str(files.server_key), str(files.server_cert), None, None) == 0
        assert await rListenSocket(listen, "127.0.0.1", 0, hang_up, None) == 0
        _, _, port = rGetSocketAddr(listen)
        sock = rAllocSocket()
        assert rSetSocketVerify(sock, 1, 1) == 0  # TLS, trusting only the system store
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == R_ERR_CANT_CONNECT
        assert "Certificate" in rGetSocketError(sock)
        rFreeSocket(sock)
        rFreeSocket(listen)


async def test_listen_with_a_missing_certificate_is_cant_initialize(tmp_path: Any) -> None:
    async with trio_rsocket.open_runtime():
        listen = rAllocSocket()
        missing = str(tmp_path / "missing.pem")
        assert rSetSocketCerts(listen, missing, missing, None, None) == 0  # files are read at listen
        assert await rListenSocket(listen, "127.0.0.1", 0, echo, None) == R_ERR_CANT_INITIALIZE
        assert "missing.pem" in rGetSocketError(listen)
        rFreeSocket(listen)


async def test_connect_with_a_missing_authority_is_cant_connect(tmp_path: Any) -> None:
    async with ioto_server(hang_up) as port:
        sock = rAllocSocket()
        assert rSetSocketCerts(sock, None, None, str(tmp_path / "no-ca.pem"), None) == 0
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == R_ERR_CANT_CONNECT
        assert "no-ca.pem" in rGetSocketError(sock)
        rFreeSocket(sock)


async def test_default_certs_and_verify_serve_sockets_that_set_none(
    rsocket_cert_files: CertFiles, no_fd_leak: None
) -> None:
    files = rsocket_cert_files
    try:
        assert rSetSocketDefaultCerts(None, None, str(files.authority), None) == 0
        assert rSetSocketDefaultCiphers(None) == 0
        assert rSetSocketDefaultVerify(1, 1) == 0
        async with trio_rsocket.open_runtime():
            listen = rAllocSocket()
            assert rSetSocketCerts(listen, str(files.server_key), str(files.server_cert), None, None) == 0
            assert await rListenSocket(listen, "127.0.0.1", 0, hang_up, None) == 0
            _, _, port = rGetSocketAddr(listen)
            sock = rAllocSocket()
            sock.set_tls()  # Ioto's rSetTls: TLS with the defaults only
            assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
            assert rIsSocketSecure(sock)
            rFreeSocket(sock)
            rFreeSocket(listen)
    finally:
        trio_rsocket._tls.reset_defaults()


def test_default_tls_setters_refuse_bad_arguments() -> None:
    assert unchecked.rSetSocketDefaultCerts(42, None, None, None) == R_ERR_BAD_ARGS
    assert unchecked.rSetSocketDefaultCiphers(42) == R_ERR_BAD_ARGS
    assert unchecked.rSetSocketDefaultVerify("yes", 1) == R_ERR_BAD_ARGS


def test_socket_tls_setters_refuse_bad_arguments() -> None:
    sock = rAllocSocket()
    assert unchecked.rSetSocketCerts(sock, 42, None, None, None) == R_ERR_BAD_ARGS
    assert "key" in rGetSocketError(sock)
    assert unchecked.rSetSocketCiphers(sock, 42) == R_ERR_BAD_ARGS
    assert unchecked.rSetSocketVerify(sock, "yes", 1) == R_ERR_BAD_ARGS
    assert unchecked.rSetSocketCerts(None, None, None, None, None) == R_ERR_BAD_ARGS


# ============================================================================
# Ioto's own socket unit test
#
# Ported from embedthis/ioto, test/r/socket.tst.c (commit 3eb9f0d5), statement
# by statement, with trio_rsocket.ioto's names.  What had to change, and why:
# - client() connects to www.google.com:80 when the machine has internet;
#   nothing here may leave loopback, so it connects to a local listener.
# - openServer() tries ports 9175..9249 and compares rListenSocket's result
#   with SOCKET_ERROR (-1), though it returns 0 or a negative R_ERR code (so a
#   failed listen passed there); here port 0 lets the OS pick a free port,
#   rGetSocketAddr says which, and success is == 0.
# - RBuf becomes a bytearray; testme's ttrue/teqz record a failure and carry
#   on, as in testme, and the pytest test asserts there were none.

TIMEOUT = 15 * 1000
failures: list[str] = []


def ttrue(condition: object) -> None:
    if not condition:
        failures.append(f"test_ioto.py:{sys._getframe(1).f_lineno}")


def teqz(value: object, expected: object) -> None:
    if value != expected:
        failures.append(f"test_ioto.py:{sys._getframe(1).f_lineno}: {value!r} != {expected!r}")


def tgti(value: int, bound: int) -> None:
    if not value > bound:
        failures.append(f"test_ioto.py:{sys._getframe(1).f_lineno}: {value!r} <= {bound!r}")


def tnotnull(value: object) -> None:
    if value is None:
        failures.append(f"test_ioto.py:{sys._getframe(1).f_lineno}: None")


class TestSocket:
    __test__ = False  # a record, not a pytest class

    def __init__(self) -> None:
        self.fiber: trio_rsocket.Fiber | None = None  # Primary test fiber
        self.listen: RSocket | None = None  # Server listen socket
        self.client: RSocket | None = None  # Client socket
        self.buf: bytearray | None = None  # Input buffer
        self.written = 0  # Size of data written
        self.port = 0  # Server port
        self.deadline = 0  # Timeout deadline


ts = TestSocket()
hasIPv6 = 0


async def initSocketTests() -> None:
    global ts, hasIPv6
    ts = TestSocket()
    ts.deadline = rGetTicks() + TIMEOUT
    hasIPv6 = 0
    #  Test for IPv6 support
    sp = await openServer(ts, "::1")
    if sp is not None:
        hasIPv6 = 1
        rFreeSocket(sp)


def termSocketTests() -> None:
    rCloseSocket(ts.listen)
    ts.buf = None


def createSocket() -> None:
    sp = rAllocSocket()

    tnotnull(sp)
    teqz(rGetSocketHandle(sp), INVALID_SOCKET)
    ttrue(not rIsSocketSecure(sp))
    ttrue(not rIsSocketEof(sp))

    rFreeSocket(sp)


async def client() -> None:
    server = rAllocSocket()
    ttrue(await rListenSocket(server, "127.0.0.1", 0, hang_up, None) == 0)
    _, _, port = rGetSocketAddr(server)

    sp = rAllocSocket()
    tnotnull(sp)
    rc = await rConnectSocket(sp, "127.0.0.1", port, 0)

    ttrue(rc >= 0)
    tgti(rGetSocketHandle(sp), 0)
    ttrue(not rIsSocketSecure(sp))
    ttrue(not rIsSocketEof(sp))

    rCloseSocket(sp)
    ttrue(rIsSocketEof(sp))
    teqz(rGetSocketHandle(sp), INVALID_SOCKET)

    rFreeSocket(sp)
    rFreeSocket(server)


async def openServer(tp: TestSocket, host: str) -> RSocket | None:
    """Open a server on a free port."""
    sp = rAllocSocket()
    if await rListenSocket(sp, host, 0, acceptFn, tp) == 0:
        _, _, tp.port = rGetSocketAddr(sp)
        return sp
    rFreeSocket(sp)
    return None


async def clientServer(host: str) -> None:
    ts.listen = await openServer(ts, host)
    tnotnull(ts.listen)
    if ts.listen is None:
        return
    sp = rAllocSocket()
    tnotnull(sp)

    ts.fiber = rGetFiber()
    ts.buf = bytearray()
    ts.written = 0

    rc = await rConnectSocket(sp, host, ts.port, ts.deadline)
    ttrue(rc >= 0)

    # Write a set of lines to the client. Server should receive. This writes about 500K of data.
    buf = b"01234567890123456789012345678901234567890123456789\r\n"
    count = 10000

    for _ in range(count):
        nbytes = await rWriteSocket(sp, buf, len(buf), ts.deadline)
        if nbytes < 0:
            ttrue(nbytes > 0)
            break
        ts.written += nbytes
    rFreeSocket(sp)

    #  Wait for read side to resume when read is complete
    await rYieldFiber(0)

    #  Test complete
    rFreeSocket(ts.listen)
    ts.listen = None
    ts.buf = None


async def acceptFn(tp: TestSocket, sp: RSocket) -> None:
    assert tp.buf is not None
    space = bytearray(ME_BUFSIZE)
    for _ in range(1_000_000):  # do { ... } while (nbytes > 0);
        nbytes = await rReadSocket(sp, space, len(space), tp.deadline)
        if nbytes < 0:
            break
        tp.buf += space[:nbytes]
        if not nbytes > 0:
            break

    teqz(len(tp.buf), tp.written)
    assert tp.fiber is not None
    rResumeFiber(tp.fiber, 0)


async def clientServerIPv4() -> None:
    await clientServer("127.0.0.1")


async def clientServerIPv6() -> None:
    if hasIPv6:
        await clientServer("::1")


async def fiberMain(arg: object) -> None:
    await initSocketTests()
    createSocket()
    await client()
    await clientServerIPv4()
    await clientServerIPv6()
    termSocketTests()
    rStop()


def test_iotos_socket_unit_test(no_fd_leak: None) -> None:
    transfers: list[int] = []

    async def main(arg: object) -> None:
        # Not in the C test: a hang (a resume that never comes) fails the test
        # instead of stalling the suite.
        with trio.fail_after(60):
            await fiberMain(arg)
        transfers.append(ts.written)

    failures.clear()
    # int main(void) { rInit(fiberMain, 0); rServiceEvents(); rTerm(); }
    trio_rsocket.run(main, 0)
    assert failures == []
    assert transfers == [10000 * 52]
    assert hasIPv6 == has_ipv6()


# ============================================================================
# Every code the calls can return


async def test_connect_refused_is_cant_connect() -> None:
    sock = rAllocSocket()
    port = free_port()
    assert await rConnectSocket(sock, "127.0.0.1", port, 0) == R_ERR_CANT_CONNECT
    assert rGetSocketError(sock) == f"Cannot connect socket to 127.0.0.1:{port}: Connection refused"
    assert rGetSocketHandle(sock) == INVALID_SOCKET
    assert not rIsSocketConnected(sock)


async def test_connect_past_its_deadline_is_timeout(autojump_clock: trio.testing.MockClock, full_backlog: int) -> None:
    sock = rAllocSocket()
    deadline = rGetTicks() + 7 * 1000
    assert await rConnectSocket(sock, "127.0.0.1", full_backlog, deadline) == R_ERR_TIMEOUT
    assert rGetTicks() == deadline
    assert "before the deadline" in rGetSocketError(sock)
    assert rGetSocketHandle(sock) == INVALID_SOCKET


#: Milliseconds larger than any float: a deadline past float range.
PAST_FLOAT_RANGE = 10**400


async def test_a_deadline_past_float_range_is_no_deadline(
    autojump_clock: trio.testing.MockClock, full_backlog: int
) -> None:
    sock = rAllocSocket()
    with trio.move_on_after(1000) as outer:
        await rConnectSocket(sock, "127.0.0.1", full_backlog, PAST_FLOAT_RANGE)
    assert outer.cancelled_caught
    assert rGetSocketError(sock) == ""
    async with connected_pair() as (client, server):
        buf = bytearray(16)
        assert await rWriteSocket(server, b"sent", 4, PAST_FLOAT_RANGE) == 4
        assert await rReadSocket(client, buf, len(buf), PAST_FLOAT_RANGE) == 4
        with trio.move_on_after(1000) as outer:
            await rReadSocket(client, buf, len(buf), PAST_FLOAT_RANGE)
        assert outer.cancelled_caught
        assert rGetSocketError(client) == ""


async def test_a_deadline_below_float_range_is_already_due() -> None:
    async with connected_pair() as (client, server):
        assert await rWriteSocket(server, b"kept", 4, 0) == 4
        await trio.testing.wait_all_tasks_blocked()
        buf = bytearray(16)
        assert await rReadSocket(client, buf, len(buf), -PAST_FLOAT_RANGE) == R_ERR_TIMEOUT
        assert await rReadSocket(client, buf, len(buf), 0) == 4


async def test_sleep_past_float_range_sleeps_for_ever(autojump_clock: trio.testing.MockClock) -> None:
    with trio.move_on_after(1000) as outer:
        await rSleep(PAST_FLOAT_RANGE)
    assert outer.cancelled_caught


async def test_connect_after_a_failure_clears_the_error() -> None:
    async with ioto_server(hang_up) as port:
        sock = rAllocSocket()
        assert await rConnectSocket(sock, "127.0.0.1", free_port(), 0) == R_ERR_CANT_CONNECT
        assert rGetSocketError(sock) != ""
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
        assert rGetSocketError(sock) == ""
        rFreeSocket(sock)


async def test_read_past_its_deadline_is_timeout_and_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with connected_pair() as (client, server):
        buf = bytearray(16)
        deadline = rGetTicks() + 5000
        assert await rReadSocket(client, buf, len(buf), deadline) == R_ERR_TIMEOUT
        assert rGetTicks() == deadline
        assert not rIsSocketEof(client)
        assert await rWriteSocket(server, b"late", 4, 0) == 4
        assert await rReadSocket(client, buf, len(buf), 0) == 4
        assert buf[:4] == b"late"


async def test_write_past_its_deadline_is_timeout(autojump_clock: trio.testing.MockClock) -> None:
    client, server = await clogged_plain_pair()
    try:
        deadline = rGetTicks() + 3000
        assert await rWriteSocket(client, b"x" * 65536, 65536, deadline) == R_ERR_TIMEOUT
        assert rGetTicks() == deadline
        assert "Write deadline passed" in rGetSocketError(client)
    finally:
        client.close()
        server.close()


async def test_read_at_eof_is_cant_read_and_eof_tells_it_from_an_error() -> None:
    async with connected_pair() as (client, server):
        rCloseSocket(server)
        buf = bytearray(16)
        assert await rReadSocket(client, buf, len(buf), 0) == R_ERR_CANT_READ
        assert rIsSocketEof(client)
        assert rGetSocketError(client) == ""  # EOF is not an error
        assert await rReadSocket(client, buf, len(buf), 0) == R_ERR_CANT_READ  # and stays EOF


async def test_read_after_reset_by_peer_is_cant_read_and_eof() -> None:
    async with connected_pair() as (client, server):
        assert rSetSocketLinger(server, 0) == 0
        rCloseSocket(server)  # linger 0: the peer sees RST
        buf = bytearray(16)
        assert await rReadSocket(client, buf, len(buf), 0) == R_ERR_CANT_READ
        assert rIsSocketEof(client)  # Ioto's rReadSocketSync sets R_SOCKET_EOF on any read error
        assert rGetSocketError(client) != ""


async def test_write_after_reset_by_peer_is_cant_write() -> None:
    async with connected_pair() as (client, server):
        assert rSetSocketLinger(server, 0) == 0
        rCloseSocket(server)
        buf = bytearray(16)
        await rReadSocket(client, buf, len(buf), 0)  # take the RST in
        assert await rWriteSocket(client, b"anyone?", 7, 0) == R_ERR_CANT_WRITE
        assert rGetSocketError(client) != ""


async def test_read_after_close_is_cant_read() -> None:
    async with connected_pair() as (client, _):
        rCloseSocket(client)
        buf = bytearray(16)
        assert await rReadSocket(client, buf, len(buf), 0) == R_ERR_CANT_READ
        assert rIsSocketEof(client)
        assert "closed" in rGetSocketError(client)


async def test_write_after_close_is_cant_write() -> None:
    async with connected_pair() as (client, _):
        rCloseSocket(client)
        assert await rWriteSocket(client, b"hello", 5, 0) == R_ERR_CANT_WRITE
        assert "closed" in rGetSocketError(client)


async def test_write_after_disconnect_is_cant_write() -> None:
    async with connected_pair() as (client, _):
        rDisconnectSocket(client)
        assert rGetSocketHandle(client) != INVALID_SOCKET  # the handle is kept
        assert await rWriteSocket(client, b"hello", 5, 0) == R_ERR_CANT_WRITE


async def test_io_on_a_socket_never_connected() -> None:
    sock = rAllocSocket()
    buf = bytearray(16)
    assert await rReadSocket(sock, buf, len(buf), 0) == R_ERR_CANT_READ
    assert await rWriteSocket(sock, b"x", 1, 0) == R_ERR_CANT_WRITE
    assert "not connected" in rGetSocketError(sock)
    assert rGetSocketAddr(sock) == (R_ERR_CANT_COMPLETE, "", 0)


async def test_the_buffer_is_free_to_grow_after_a_read() -> None:
    async with connected_pair() as (client, server):
        buf = bytearray(4)
        assert await rWriteSocket(server, b"abcdef", 6, 0) == 6
        assert await rReadSocket(client, buf, len(buf), 0) == 4
        buf.extend(bytes(4))  # BufferError if a view of it were still held
        rCloseSocket(client)
        assert await rReadSocket(client, buf, len(buf), 0) == R_ERR_CANT_READ
        buf.extend(bytes(4))
        assert len(buf) == 12


async def test_two_fibers_reading_at_once_is_busy() -> None:
    async with connected_pair() as (client, server):
        codes: list[int] = []
        buf = bytearray(16)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(rReadSocket, client, bytearray(16), 16, 0)
            await trio.testing.wait_all_tasks_blocked()
            codes.append(await rReadSocket(client, buf, len(buf), 0))
            await rWriteSocket(server, b"x", 1, 0)  # lets the first reader finish
        assert codes == [R_ERR_BUSY]
        assert "already reading" in rGetSocketError(client)


async def test_listen_on_a_port_in_use_is_cant_open(no_fd_leak: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with trio_rsocket.open_runtime():
            sock = rAllocSocket()
            assert await rListenSocket(sock, "127.0.0.1", port, echo, None) == R_ERR_CANT_OPEN
            assert rGetSocketError(sock) != ""
            rFreeSocket(sock)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda sock: unchecked.rConnectSocket(sock, "", 80, 0), "host"),
        (lambda sock: unchecked.rConnectSocket(sock, "127.0.0.1", 0, 0), "port"),
        (lambda sock: unchecked.rConnectSocket(sock, "127.0.0.1", 70000, 0), "port"),
        (lambda sock: unchecked.rConnectSocket(sock, "127.0.0.1", 80, float("nan")), "deadline"),
        (lambda sock: unchecked.rConnectSocket(sock, "127.0.0.1", 80, "soon"), "deadline"),
        (lambda sock: unchecked.rReadSocket(sock, bytearray(8), 0, 0), "bufsize"),
        (lambda sock: unchecked.rReadSocket(sock, bytearray(8), 9, 0), "bufsize"),
        (lambda sock: unchecked.rReadSocket(sock, bytearray(8), -1, 0), "bufsize"),
        (lambda sock: unchecked.rReadSocket(sock, b"read-only", 4, 0), "buffer"),
        (lambda sock: unchecked.rReadSocket(sock, 1234, 4, 0), "buf"),
        (lambda sock: unchecked.rWriteSocket(sock, "text", 4, 0), "str"),
        (lambda sock: unchecked.rWriteSocket(sock, b"abc", 4, 0), "bufsize"),
        (lambda sock: unchecked.rWriteSocket(sock, b"abc", 2.0, 0), "bufsize"),
        (lambda sock: unchecked.rListenSocket(sock, "127.0.0.1", 0, "not a handler", None), "handler"),
    ],
)
async def test_bad_arguments_are_bad_args_before_any_io(
    call: Callable[[RSocket], Awaitable[int]], argument: str
) -> None:
    async with trio_rsocket.open_runtime():
        sock = rAllocSocket()
        assert await call(sock) == R_ERR_BAD_ARGS
        assert argument in rGetSocketError(sock)
        assert not rIsSocketConnected(sock)


async def test_none_for_a_socket_behaves_as_null_does_in_ioto() -> None:
    buf = bytearray(8)
    assert await rConnectSocket(None, "127.0.0.1", 80, 0) == R_ERR_BAD_ARGS
    assert await rReadSocket(None, buf, len(buf), 0) == R_ERR_BAD_ARGS
    assert await rWriteSocket(None, b"x", 1, 0) == R_ERR_BAD_ARGS
    assert await rListenSocket(None, None, 0, echo, None) == R_ERR_BAD_ARGS
    assert rGetSocketAddr(None) == (R_ERR_BAD_ARGS, "", 0)
    assert rSetSocketLinger(None, 0) == R_ERR_BAD_ARGS
    assert rIsSocketClosed(None)
    assert rIsSocketEof(None)
    assert not rIsSocketSecure(None)
    assert not rIsSocketConnected(None)
    assert rGetSocketHandle(None) == INVALID_SOCKET
    assert rGetSocketError(None) == ""
    rCloseSocket(None)
    rFreeSocket(None)
    rDisconnectSocket(None)
    rResetSocket(None)


async def test_bad_option_values_are_bad_args() -> None:
    sock = rAllocSocket()
    assert rSetSocketLinger(sock, -1) == R_ERR_BAD_ARGS
    assert "seconds" in rGetSocketError(sock)
    assert unchecked.rSetSocketNoDelay(sock, "yes") == R_ERR_BAD_ARGS
    assert "enable" in rGetSocketError(sock)
    assert rSetSocketNoDelay(sock, 0) == 0
    assert rSetSocketLimit(-5) == R_ERR_BAD_ARGS


async def test_failures_are_checkpoints_too() -> None:
    sock = rAllocSocket()
    rCloseSocket(sock)
    with trio.testing.assert_checkpoints():
        assert await rReadSocket(sock, bytearray(8), 8, 0) == R_ERR_CANT_READ
    with trio.testing.assert_checkpoints():
        assert await rReadSocket(None, bytearray(8), 8, 0) == R_ERR_BAD_ARGS


async def test_cancellation_is_never_turned_into_a_code(autojump_clock: trio.testing.MockClock) -> None:
    async with connected_pair() as (client, _):
        codes: list[int] = []
        with trio.move_on_after(1) as outer:
            codes.append(await rReadSocket(client, bytearray(8), 8, rGetTicks() + 10_000))
        assert outer.cancelled_caught
        assert codes == []
        assert rGetSocketError(client) == ""


async def test_reset_makes_a_socket_connectable_again() -> None:
    async with ioto_server(hang_up) as port:
        sock = rAllocSocket()
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
        rCloseSocket(sock)
        rResetSocket(sock)
        assert not rIsSocketClosed(sock)
        assert not rIsSocketEof(sock)
        assert await rConnectSocket(sock, "127.0.0.1", port, 0) == 0
        rFreeSocket(sock)


async def test_socket_limit_round_trips() -> None:
    before = rGetSocketLimit()
    try:
        assert rSetSocketLimit(7) == 0
        assert rGetSocketLimit() == 7 == trio_rsocket.get_socket_limit()
    finally:
        trio_rsocket.set_socket_limit(before)


# ============================================================================
# Time and fibers


async def test_ticks_are_milliseconds_on_trios_clock(mock_clock: trio.testing.MockClock) -> None:
    mock_clock.jump(12.3456)
    assert rGetTicks() == int(trio.current_time() * 1000)
    assert rGetTime() == rGetTicks()
    mock_clock.jump(1.5)
    assert rGetTicks() == int(trio.current_time() * 1000)


async def test_sleep_takes_milliseconds(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    await rSleep(1500)
    assert trio.current_time() - start == pytest.approx(1.5)
    with trio.testing.assert_checkpoints():
        await rSleep(0)


async def test_a_30_second_deadline_is_30_seconds_of_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    async with connected_pair() as (client, _):
        start = trio.current_time()
        assert await rReadSocket(client, bytearray(8), 8, rGetTime() + 30 * 1000) == R_ERR_TIMEOUT
        assert trio.current_time() - start == pytest.approx(30, abs=0.001)


async def test_spawned_fiber_yields_and_is_resumed_with_values() -> None:
    seen: list[object] = []

    async def worker(arg: object) -> None:
        seen.append(arg)
        main.append(rGetFiber())
        seen.append(await rYieldFiber("parked"))

    main: list[trio_rsocket.Fiber] = []
    async with trio_rsocket.open_runtime():
        assert rSpawnFiber("worker", worker, "arg") == 0
        await trio.testing.wait_all_tasks_blocked()
        [fiber] = main
        assert fiber.name == "worker"
        assert fiber.is_suspended()
        assert fiber.yielded == "parked"
        rResumeFiber(fiber, "resumed")
    assert seen == ["arg", "resumed"]
    rResumeFiber(fiber, "too late")  # a finished fiber is left alone, as in Ioto


async def test_a_resume_before_the_yield_is_not_lost() -> None:
    async with trio_rsocket.open_runtime():
        me = rGetFiber()
        rResumeFiber(me, 42)
        assert await rYieldFiber(None) == 42


async def test_stop_cancels_every_fiber() -> None:
    finished: list[str] = []

    async def forever(arg: object) -> None:
        await trio.sleep_forever()
        finished.append("never")

    async with trio_rsocket.open_runtime():
        rSpawnFiber("forever", forever, None)
        await trio.testing.wait_all_tasks_blocked()
        rStop()
    assert finished == []


async def test_spawn_bad_function_is_bad_args() -> None:
    async with trio_rsocket.open_runtime():
        assert unchecked.rSpawnFiber("bad", "not callable", None) == R_ERR_BAD_ARGS


async def test_spawn_of_a_plain_function_is_bad_args_and_the_runtime_goes_on() -> None:
    def plain(arg: object) -> None:
        pass

    async with trio_rsocket.open_runtime():
        assert unchecked.rSpawnFiber("plain", plain, None) == R_ERR_BAD_ARGS
        await trio.testing.wait_all_tasks_blocked()


async def test_outside_a_runtime_fiber_and_listen_calls_raise() -> None:
    async def nothing(arg: object) -> None:
        pass

    with pytest.raises(RuntimeError, match="runtime"):
        rSpawnFiber("orphan", nothing, None)
    with pytest.raises(RuntimeError, match="runtime"):
        rStop()
    with pytest.raises(RuntimeError, match="runtime"):
        await rListenSocket(rAllocSocket(), "127.0.0.1", 0, echo, None)


def test_tls_setters_with_bad_arguments_return_bad_args() -> None:
    sock = rAllocSocket()
    assert unchecked.rSetSocketCerts(sock, 42, None, None, None) == R_ERR_BAD_ARGS
    assert "key" in rGetSocketError(sock)
    assert unchecked.rSetSocketCiphers(sock, 42) == R_ERR_BAD_ARGS
    assert "ciphers" in rGetSocketError(sock)
    rFreeSocket(sock)


# ============================================================================
# The rest of r.h (SPEC section 8): sendfile, STARTTLS, TLS sessions, wait masks


def test_every_name_of_spec_section_8_is_there() -> None:
    names = ["rSendFile", "rUpgradeTls", "rGetTlsSession", "rSetTlsSession", "rFreeTlsSession", "rSetSocketWaitMask"]
    missing = [name for name in names if name not in ioto.__all__ or not callable(getattr(ioto, name, None))]
    assert missing == []
    # include/r.h: "#define R_READABLE 0x2", "#define R_WRITABLE 0x4"
    assert (ioto.R_READABLE, ioto.R_WRITABLE) == (0x2, 0x4)
    assert {"R_READABLE", "R_WRITABLE"} <= set(ioto.__all__)


#: More than the socket buffers of a loopback pair hold, so sending waits for
#: the reader; every byte value, so an offset mistake shows.
PAYLOAD = bytes(range(256)) * 2048


@pytest.fixture
def payload_fd(tmp_path: Any) -> Iterator[int]:
    """A read-only descriptor of a file holding PAYLOAD, as C code has one."""
    path = tmp_path / "payload.bin"
    path.write_bytes(PAYLOAD)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


async def receive(sock: RSocket, count: int) -> bytes:
    """Read exactly *count* bytes with rReadSocket."""
    received = bytearray()
    buf = bytearray(65536)
    for _ in range(count):  # every read returns at least one byte
        if len(received) == count:
            break
        nbytes = await rReadSocket(sock, buf, min(len(buf), count - len(received)), 0)
        assert nbytes > 0, rGetSocketError(sock)
        received += buf[:nbytes]
    return bytes(received)


async def send_file_while_reading(client: RSocket, server: RSocket, fd: int) -> tuple[int, bytes]:
    """rSendFile the whole of PAYLOAD from *client* while *server* reads it."""
    sent: list[int] = []

    async def send() -> None:
        sent.append(await rSendFile(client, fd, 0, len(PAYLOAD)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        received = await receive(server, len(PAYLOAD))
    return sent[0], received


async def drain(sock: RSocket) -> None:
    """Read until nothing more comes for a second (of the autojump clock)."""
    buf = bytearray(65536)
    for _ in range(10_000):
        if await rReadSocket(sock, buf, len(buf), rGetTicks() + 1000) == R_ERR_TIMEOUT:
            return
    raise AssertionError("the data never stopped coming")


async def quiet_clogged_pair() -> tuple[RSocket, RSocket]:
    """A pair whose client can neither write (its path to the server is full)
    nor read (what the server had sent is drained).  Under the autojump clock."""
    client, server = await clogged_plain_pair()
    await drain(client)
    return client, server


async def test_send_file_sends_the_file_and_returns_the_count(payload_fd: int) -> None:
    async with connected_pair() as (client, server):
        sent, received = await send_file_while_reading(client, server, payload_fd)
        assert sent == len(PAYLOAD)
        assert received == PAYLOAD


async def test_send_file_from_an_offset_neither_uses_nor_moves_the_file_position(payload_fd: int) -> None:
    os.lseek(payload_fd, 7, os.SEEK_SET)
    async with connected_pair() as (client, server):
        assert await rSendFile(client, payload_fd, 1000, 300) == 300
        assert await receive(server, 300) == PAYLOAD[1000:1300]
    assert os.lseek(payload_fd, 0, os.SEEK_CUR) == 7


async def test_send_file_past_the_end_sends_what_there_is(payload_fd: int) -> None:
    async with connected_pair() as (client, server):
        assert await rSendFile(client, payload_fd, len(PAYLOAD) - 10, 1000, 0) == 10
        assert await receive(server, 10) == PAYLOAD[-10:]
        assert await rSendFile(client, payload_fd, len(PAYLOAD) + 5, 10, 0) == 0


async def test_send_file_takes_a_binary_file_object(tmp_path: Any) -> None:
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello, file\n")
    with path.open("rb") as file:
        async with connected_pair() as (client, server):
            assert await rSendFile(client, file, 0, 12) == 12
            assert await receive(server, 12) == b"hello, file\n"


async def test_send_file_works_over_tls_too(rsocket_cert_files: CertFiles, payload_fd: int) -> None:
    async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as (client, server):
        sent, received = await send_file_while_reading(client, server, payload_fd)
        assert sent == len(PAYLOAD)
        assert received == PAYLOAD


@pytest.mark.parametrize(
    ("offset", "length", "argument"),
    [(-1, 10, "offset"), (0, -1, "count")],
)
async def test_send_file_with_a_negative_offset_or_length_is_bad_args(
    payload_fd: int, offset: int, length: int, argument: str
) -> None:
    async with connected_pair() as (client, _):
        assert await rSendFile(client, payload_fd, offset, length) == R_ERR_BAD_ARGS
        assert argument in rGetSocketError(client)


async def test_send_file_of_what_is_not_a_file_is_bad_args(tmp_path: Any) -> None:
    async with connected_pair() as (client, server):
        assert await unchecked.rSendFile(client, "payload.bin", 0, 10) == R_ERR_BAD_ARGS
        assert "file" in rGetSocketError(client)
        assert await rSendFile(client, server.get_handle(), 0, 10) == R_ERR_BAD_ARGS  # a socket
        assert "regular file" in rGetSocketError(client)
    assert await rSendFile(None, 0, 0, 10) == R_ERR_BAD_ARGS


async def test_send_file_after_close_is_cant_write(payload_fd: int) -> None:
    async with connected_pair() as (client, _):
        rCloseSocket(client)
        with trio.testing.assert_checkpoints():
            assert await rSendFile(client, payload_fd, 0, 10) == R_ERR_CANT_WRITE
        assert "closed" in rGetSocketError(client)


async def test_send_file_past_its_deadline_is_timeout(autojump_clock: trio.testing.MockClock, payload_fd: int) -> None:
    client, server = await clogged_plain_pair()
    try:
        deadline = rGetTicks() + 2000
        assert await rSendFile(client, payload_fd, 0, len(PAYLOAD), deadline) == R_ERR_TIMEOUT
        assert rGetTicks() == deadline
    finally:
        client.close()
        server.close()


async def test_wait_mask_readable_returns_when_the_peer_writes_and_reads_nothing() -> None:
    async with connected_pair() as (client, server):
        codes: list[int] = []

        async def wait() -> None:
            codes.append(await rSetSocketWaitMask(client, R_READABLE, 0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            assert codes == []  # nothing to read yet
            assert await rWriteSocket(server, b"ping", 4, 0) == 4
        assert codes == [0]
        buf = bytearray(8)
        assert await rReadSocket(client, buf, len(buf), 0) == 4  # the wait took nothing
        assert buf[:4] == b"ping"


async def test_wait_mask_readable_counts_end_of_file() -> None:
    async with connected_pair() as (client, server):
        rCloseSocket(server)
        assert await rSetSocketWaitMask(client, R_READABLE, 0) == 0
        assert await rReadSocket(client, bytearray(8), 8, 0) == R_ERR_CANT_READ
        assert rIsSocketEof(client)


async def test_wait_mask_writable_returns_at_once_on_a_new_connection() -> None:
    async with connected_pair() as (client, _):
        with trio.testing.assert_checkpoints():
            assert await rSetSocketWaitMask(client, R_WRITABLE, 0) == 0


async def test_wait_mask_readable_past_its_deadline_is_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with connected_pair() as (client, _):
        deadline = rGetTicks() + 5000
        assert await rSetSocketWaitMask(client, R_READABLE, deadline) == R_ERR_TIMEOUT
        assert rGetTicks() == deadline
        assert "readable" in rGetSocketError(client)


async def test_wait_mask_writable_past_its_deadline_is_timeout(autojump_clock: trio.testing.MockClock) -> None:
    client, server = await clogged_plain_pair()
    try:
        deadline = rGetTicks() + 5000
        assert await rSetSocketWaitMask(client, R_WRITABLE, deadline) == R_ERR_TIMEOUT
        assert rGetTicks() == deadline
        assert "writable" in rGetSocketError(client)
    finally:
        client.close()
        server.close()


async def test_wait_mask_with_both_bits_returns_on_the_first_event(autojump_clock: trio.testing.MockClock) -> None:
    client, server = await clogged_plain_pair()
    try:
        # The client cannot write, but what the server sent is there to read.
        assert await rSetSocketWaitMask(client, R_WRITABLE, rGetTicks() + 1000) == R_ERR_TIMEOUT
        start = rGetTicks()
        assert await rSetSocketWaitMask(client, R_READABLE | R_WRITABLE, start + 1000) == 0
        assert rGetTicks() == start
    finally:
        client.close()
        server.close()


async def test_wait_mask_with_both_bits_returns_when_only_writable_is_ready() -> None:
    async with connected_pair() as (client, _):
        with trio.testing.assert_checkpoints():
            assert await rSetSocketWaitMask(client, R_READABLE | R_WRITABLE, 0) == 0  # nothing to read


async def test_wait_mask_with_both_bits_times_out_when_neither_comes(autojump_clock: trio.testing.MockClock) -> None:
    client, server = await quiet_clogged_pair()
    try:
        deadline = rGetTicks() + 3000
        assert await rSetSocketWaitMask(client, R_READABLE | R_WRITABLE, deadline) == R_ERR_TIMEOUT
        assert rGetTicks() == deadline
    finally:
        client.close()
        server.close()


async def test_wait_mask_with_both_bits_lets_cancellation_through(autojump_clock: trio.testing.MockClock) -> None:
    client, server = await quiet_clogged_pair()
    try:
        codes: list[int] = []
        before = rGetSocketError(client)  # the drain's last read timed out
        with trio.move_on_after(1) as outer:
            codes.append(await rSetSocketWaitMask(client, R_READABLE | R_WRITABLE, rGetTicks() + 10_000))
        assert outer.cancelled_caught
        assert codes == []
        assert rGetSocketError(client) == before  # nothing recorded
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("mask", [0, 0x1, 0x8, R_READABLE | 0x200, R_WRITABLE | 0x400, -1])
async def test_wait_mask_without_readable_or_writable_alone_is_bad_args(mask: int) -> None:
    async with connected_pair() as (client, _):
        assert await rSetSocketWaitMask(client, mask, 0) == R_ERR_BAD_ARGS
        assert "mask" in rGetSocketError(client)


@pytest.mark.parametrize("mask", ["2", 2.0, True, None])
async def test_wait_mask_that_is_not_an_int_is_bad_args(mask: object) -> None:
    async with connected_pair() as (client, _):
        assert await unchecked.rSetSocketWaitMask(client, mask, 0) == R_ERR_BAD_ARGS
        assert "mask" in rGetSocketError(client)


async def test_wait_mask_on_a_socket_without_a_connection_is_cant_complete() -> None:
    async with connected_pair() as (client, _):
        rCloseSocket(client)
        assert await rSetSocketWaitMask(client, R_READABLE, 0) == R_ERR_CANT_COMPLETE
        assert "closed" in rGetSocketError(client)
        assert await rSetSocketWaitMask(client, R_READABLE | R_WRITABLE, 0) == R_ERR_CANT_COMPLETE
    never = rAllocSocket()
    assert await rSetSocketWaitMask(never, R_WRITABLE, 0) == R_ERR_CANT_COMPLETE
    assert "not connected" in rGetSocketError(never)
    with trio.testing.assert_checkpoints():
        assert await rSetSocketWaitMask(None, R_READABLE, 0) == R_ERR_BAD_ARGS


async def test_two_fibers_waiting_readable_at_once_is_busy() -> None:
    async with connected_pair() as (client, server):
        codes: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rSetSocketWaitMask, client, R_READABLE, 0)
            await trio.testing.wait_all_tasks_blocked()
            codes.append(await rSetSocketWaitMask(client, R_READABLE, 0))
            await rWriteSocket(server, b"x", 1, 0)  # lets the first waiter finish
        assert codes == [R_ERR_BUSY]
        assert "already reading" in rGetSocketError(client)


async def test_tls_session_of_a_tls_pair_after_the_first_read(rsocket_cert_files: CertFiles) -> None:
    async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as (client, server):
        assert await rWriteSocket(server, b"hi", 2, 0) == 2
        assert await rReadSocket(client, bytearray(8), 8, 0) == 2  # a TLS 1.3 ticket comes with data
        session = rGetTlsSession(client)
        assert isinstance(session, ssl.SSLSession)
        assert rGetTlsSession(server) is None  # the server side has none to give
        rFreeTlsSession(session)  # nothing to do: Python frees it


async def test_a_session_set_before_connect_is_resumed(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files

    async def talk(sock: RSocket, port: int) -> None:
        assert rSetSocketCerts(sock, None, None, str(files.authority), None) == 0
        assert await rConnectSocket(sock, "127.0.0.1", port, rGetTime() + 30 * 1000) == 0, rGetSocketError(sock)
        assert await rWriteSocket(sock, b"ping", 4, 0) == 4
        assert await rReadSocket(sock, bytearray(8), 8, 0) == 4  # and the TLS 1.3 ticket with it

    async with trio_rsocket.open_runtime():
        listen = rAllocSocket()
        try:
            assert rSetSocketCerts(listen, str(files.server_key), str(files.server_cert), None, None) == 0
            assert await rListenSocket(listen, "127.0.0.1", 0, echo, None) == 0
            _, _, port = rGetSocketAddr(listen)

            first = rAllocSocket()
            await talk(first, port)
            session = rGetTlsSession(first)
            assert session is not None
            assert not first.is_session_reused()
            rFreeSocket(first)

            second = rAllocSocket()
            assert rSetTlsSession(second, session) == 0
            await talk(second, port)
            assert second.is_session_reused()
            rFreeTlsSession(session)
            rFreeSocket(second)
        finally:
            rFreeSocket(listen)
            rStop()


async def test_tls_session_calls_with_nothing_to_give_or_bad_arguments() -> None:
    async with connected_pair() as (client, _):
        assert rGetTlsSession(client) is None  # plain TCP
        assert rSetTlsSession(client, None) == 0
        assert unchecked.rSetTlsSession(client, "session") == R_ERR_BAD_ARGS
        assert "session" in rGetSocketError(client)
    assert rGetTlsSession(None) is None
    assert rSetTlsSession(None, None) == R_ERR_BAD_ARGS
    rFreeTlsSession(None)


async def upgrade_both(client: RSocket, server: RSocket, peer: str | None) -> dict[str, int]:
    """rUpgradeTls on both sides at once, as the two ends of STARTTLS do."""
    codes: dict[str, int] = {}
    deadline = rGetTime() + 30 * 1000

    async def upgrade(side: str, sock: RSocket, name: str | None) -> None:
        codes[side] = await rUpgradeTls(sock, name, deadline)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upgrade, "server", server, None)
        nursery.start_soon(upgrade, "client", client, peer)
    return codes


@pytest.mark.parametrize("peer", [None, "localhost"])
async def test_upgrade_tls_turns_a_plain_connection_into_tls(rsocket_cert_files: CertFiles, peer: str | None) -> None:
    files = rsocket_cert_files
    async with open_rsocket_pair() as (client, server):
        assert not rIsSocketSecure(client)
        # The plaintext part of the protocol: the client asks, the server agrees.
        buf = bytearray(ME_BUFSIZE)
        assert await rWriteSocket(client, b"STARTTLS\r\n", 10, 0) == 10
        assert await rReadSocket(server, buf, len(buf), 0) == 10
        assert await rWriteSocket(server, b"OK\r\n", 4, 0) == 4
        assert await rReadSocket(client, buf, len(buf), 0) == 4

        assert rSetSocketCerts(server, str(files.server_key), str(files.server_cert), None, None) == 0
        assert rSetSocketCerts(client, None, None, str(files.authority), None) == 0
        codes = await upgrade_both(client, server, peer)
        assert codes == {"server": 0, "client": 0}, (rGetSocketError(client), rGetSocketError(server))

        assert rIsSocketSecure(client)
        assert rIsSocketSecure(server)
        assert client.get_tls_version() is not None
        assert await rWriteSocket(client, b"secret", 6, 0) == 6
        assert await rReadSocket(server, buf, len(buf), 0) == 6
        assert buf[:6] == b"secret"


async def test_upgrade_tls_with_plaintext_waiting_is_cant_connect_and_closes(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    async with open_rsocket_pair() as (client, server):
        # An attacker appends to the plaintext command; the server's line
        # reader keeps the rest in its buffer.
        assert await rWriteSocket(client, b"STARTTLS\r\nINJECTED", 18, 0) == 18
        assert await server.read_until(b"\r\n") == b"STARTTLS\r\n"
        assert rSetSocketCerts(server, str(files.server_key), str(files.server_cert), None, None) == 0
        assert await rUpgradeTls(server, None, 0) == R_ERR_CANT_CONNECT
        assert "plaintext" in rGetSocketError(server)
        assert rIsSocketClosed(server)


async def test_upgrade_tls_whose_handshake_fails_is_cant_connect(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    async with open_rsocket_pair() as (client, server):
        assert rSetSocketCerts(server, str(files.server_key), str(files.server_cert), None, None) == 0
        assert rSetSocketVerify(client, 1, 1) == 0  # the system's CAs, which do not know the test CA
        codes = await upgrade_both(client, server, None)
        assert codes["client"] == R_ERR_CANT_CONNECT
        assert codes["server"] < 0
        assert rGetSocketError(client) != ""
        assert rIsSocketClosed(client)  # the connection is in no state to go on


async def test_upgrade_tls_past_its_deadline_is_timeout(
    autojump_clock: trio.testing.MockClock, rsocket_cert_files: CertFiles
) -> None:
    async with open_rsocket_pair() as (client, _):
        assert rSetSocketCerts(client, None, None, str(rsocket_cert_files.authority), None) == 0
        deadline = rGetTicks() + 5000
        assert await rUpgradeTls(client, None, deadline) == R_ERR_TIMEOUT  # the server never answers
        assert rGetTicks() == deadline


async def test_upgrade_tls_of_a_socket_that_is_not_plain_and_connected_is_bad_state(
    rsocket_cert_files: CertFiles,
) -> None:
    async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as (client, _):
        assert await rUpgradeTls(client, None, 0) == R_ERR_BAD_STATE
        assert "already TLS" in rGetSocketError(client)
    never = rAllocSocket()
    assert await rUpgradeTls(never, "localhost", 0) == R_ERR_BAD_STATE
    assert "not connected" in rGetSocketError(never)


async def test_upgrade_tls_with_bad_arguments_is_bad_args() -> None:
    async with connected_pair() as (client, _):
        assert await unchecked.rUpgradeTls(client, 42, 0) == R_ERR_BAD_ARGS
        assert "host" in rGetSocketError(client)
        assert await unchecked.rUpgradeTls(client, None, "soon") == R_ERR_BAD_ARGS
        assert "deadline" in rGetSocketError(client)
    with trio.testing.assert_checkpoints():
        assert await rUpgradeTls(None, None, 0) == R_ERR_BAD_ARGS


async def test_a_read_whose_deadline_is_already_due_times_out_even_with_data_waiting() -> None:
    # What docs/ioto.rst tells rReadSocketSync users: trio checks for
    # cancellation before it reads, so a due deadline is no "try once".
    async with connected_pair() as (client, server):
        assert await rWriteSocket(server, b"ready", 5, 0) == 5
        buf = bytearray(8)
        assert await rReadSocket(client, buf, len(buf), rGetTicks()) == R_ERR_TIMEOUT
        assert await rReadSocket(client, buf, len(buf), 0) == 5  # nothing was lost


#: Every socket and TLS name of Ioto's include/r.h (embedthis/ioto), and the
#: newer socket calls that SPEC section 8 maps.
R_H_SOCKET_NAMES = [
    "R_SOCKET_CLOSED",
    "R_SOCKET_EOF",
    "R_SOCKET_LISTENER",
    "R_SOCKET_SERVER",
    "ME_R_SSL_CACHE",
    "ME_R_SSL_RENEGOTIATE",
    "ME_R_SSL_TICKET",
    "ME_R_SSL_TIMEOUT",
    "ME_R_DEFAULT_TIMEOUT",
    "R_TLS_HAS_AUTHORITY",
    "RSocketProc",
    "RSocketCustom",
    "R_SOCKET_CONFIG_TLS",
    "rAllocSocket",
    "rCloseSocket",
    "rCheckInternet",
    "rConnectSocket",
    "rDisconnectSocket",
    "rFreeSocket",
    "rGetSocketAddr",
    "rGetSocketCustom",
    "rGetSocketError",
    "rGetSocketHandle",
    "rGetSocketWait",
    "rIsSocketClosed",
    "rIsSocketConnected",
    "rIsSocketEof",
    "rIsSocketSecure",
    "rListenSocket",
    "rReadSocket",
    "rReadSocketSync",
    "rResetSocket",
    "rSetSocketCerts",
    "rSetSocketCustom",
    "rSetSocketDefaultCerts",
    "rSetSocketBlocking",
    "rSetSocketCiphers",
    "rSetSocketDefaultCiphers",
    "rSetSocketError",
    "rSetSocketVerify",
    "rSetSocketDefaultVerify",
    "rSetSocketWaitMask",
    "rWriteSocket",
    "rWriteSocketSync",
    "rSetSocketMessage",
    "rSetSocketLinger",
    "rSetSocketNoDelay",
    "rGetSocketLimit",
    "rSetSocketLimit",
    "rSendFile",
    "rGetTlsSession",
    "rSetTlsSession",
    "rFreeTlsSession",
    "R_READABLE",
    "R_WRITABLE",
    "rInitTls",
    "rTermTls",
    "rAllocTls",
    "rSetTlsAlpn",
    "rSetTlsCerts",
    "rSetTlsCiphers",
    "rSetTlsVerify",
    "rFreeTls",
    "rCloseTls",
    "rReadTls",
    "rWriteTls",
    "rUpgradeTls",
    "rConfigTls",
    "rAcceptTls",
    "rIsTlsConnected",
    "rGetTlsRng",
    "rSetTlsEngine",
    "rSetTls",
    "rSetTlsDefaultAlpn",
    "rSetTlsDefaultCiphers",
    "rSetTlsDefaultCerts",
    "rSetTlsDefaultVerify",
]


def test_every_socket_name_of_r_h_is_in_the_ioto_page() -> None:
    page = Path(__file__).resolve().parent.parent / "docs" / "ioto.rst"
    if not page.exists():
        pytest.skip("the docs are not beside the tests")
    code = " ".join(re.findall(r"``(.+?)``", page.read_text(encoding="utf-8"), flags=re.DOTALL))
    assert [name for name in R_H_SOCKET_NAMES if not re.search(rf"\b{name}\b", code)] == []


# ============================================================================
# Every code each call documents
#
# Each call that returns a code names in its docstring the codes it returns.
# FAILURES makes each of them happen for real, one row per code (and one per
# NULL socket), and test_failures_cover_every_code_the_docstrings_name checks
# that the rows and the docstrings agree, so a code cannot drift from its
# docstring unseen.


@dataclass
class Given:
    """What a row's call works on: the socket in the row's state, a regular
    file's descriptor, and a loopback port that something listens on."""

    sock: RSocket | None
    fd: int
    port: int


@asynccontextmanager
async def given(state: str, fd: int, tmp_path: Path) -> AsyncIterator[Given]:
    """A socket in *state* (for a busy state, another fiber is in the middle
    of a call on it), and the rest of Given; everything is closed on exit."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if state in ("no socket", "unconnected", "given no TLS files"):
            sock = None if state == "no socket" else rAllocSocket()
            if state == "given no TLS files":
                assert rSetSocketCerts(sock, tmp_path / "missing.key", tmp_path / "missing.crt", None, None) == 0
            try:
                yield Given(sock, fd, port)
            finally:
                rFreeSocket(sock)
            return
        client, server = await (clogged_plain_pair() if state == "writing" else plain_pair())
        try:
            async with trio.open_nursery() as nursery:
                if state == "closed":
                    rCloseSocket(client)
                elif state == "at end of file":
                    rCloseSocket(server)
                elif state == "reading":
                    nursery.start_soon(rReadSocket, client, bytearray(8), 8, 0)
                elif state == "writing":
                    nursery.start_soon(rWriteSocket, client, b"x", 1, 0)
                elif state == "holding plaintext":
                    # Unread bytes in the buffer, as a line reader leaves them.
                    assert await rWriteSocket(server, b"STARTTLS\r\nINJECTED", 18, 0) == 18
                    assert await client.read_until(b"\r\n") == b"STARTTLS\r\n"
                else:
                    assert state == "connected", state
                await trio.testing.wait_all_tasks_blocked()
                yield Given(client, fd, port)
                nursery.cancel_scope.cancel()
        finally:
            client.close()
            server.close()


def due() -> int:
    """A deadline (ms on trio's clock) that has already passed."""
    return rGetTicks() - 1000


Call = Callable[[Given], object]
LOOPBACK = "127.0.0.1"

# For each call: (the socket's state, a failing call, its code, words of the
# message rGetSocketError then gives, "" where nothing is recorded).
FAILURES: dict[Callable[..., object], list[tuple[str, Call, int, str]]] = {
    rConnectSocket: [
        ("unconnected", lambda g: rConnectSocket(g.sock, LOOPBACK, free_port(), 0), R_ERR_CANT_CONNECT, "connect"),
        ("unconnected", lambda g: rConnectSocket(g.sock, LOOPBACK, g.port, due()), R_ERR_TIMEOUT, "deadline"),
        ("unconnected", lambda g: rConnectSocket(g.sock, LOOPBACK, 0, 0), R_ERR_BAD_ARGS, "port"),
        ("no socket", lambda g: rConnectSocket(g.sock, LOOPBACK, g.port, 0), R_ERR_BAD_ARGS, ""),
    ],
    rListenSocket: [
        ("unconnected", lambda g: rListenSocket(g.sock, LOOPBACK, g.port, echo, None), R_ERR_CANT_OPEN, "bind"),
        ("given no TLS files", lambda g: rListenSocket(g.sock, LOOPBACK, 0, echo), R_ERR_CANT_INITIALIZE, "missing"),
        ("unconnected", lambda g: unchecked.rListenSocket(g.sock, LOOPBACK, 0, 42), R_ERR_BAD_ARGS, "handler"),
        ("no socket", lambda g: rListenSocket(g.sock, LOOPBACK, 0, echo, None), R_ERR_BAD_ARGS, ""),
    ],
    rReadSocket: [
        ("closed", lambda g: rReadSocket(g.sock, bytearray(8), 8, 0), R_ERR_CANT_READ, "closed"),
        ("at end of file", lambda g: rReadSocket(g.sock, bytearray(8), 8, 0), R_ERR_CANT_READ, ""),
        ("connected", lambda g: rReadSocket(g.sock, bytearray(8), 8, due()), R_ERR_TIMEOUT, "deadline"),
        ("reading", lambda g: rReadSocket(g.sock, bytearray(8), 8, 0), R_ERR_BUSY, "already reading"),
        ("connected", lambda g: rReadSocket(g.sock, bytearray(8), 0, 0), R_ERR_BAD_ARGS, "bufsize"),
        ("no socket", lambda g: rReadSocket(g.sock, bytearray(8), 8, 0), R_ERR_BAD_ARGS, ""),
    ],
    rWriteSocket: [
        ("closed", lambda g: rWriteSocket(g.sock, b"x", 1, 0), R_ERR_CANT_WRITE, "closed"),
        ("connected", lambda g: rWriteSocket(g.sock, b"x", 1, due()), R_ERR_TIMEOUT, "deadline"),
        ("writing", lambda g: rWriteSocket(g.sock, b"x", 1, 0), R_ERR_BUSY, "already writing"),
        ("connected", lambda g: unchecked.rWriteSocket(g.sock, "x", 1, 0), R_ERR_BAD_ARGS, "str"),
        ("no socket", lambda g: rWriteSocket(g.sock, b"x", 1, 0), R_ERR_BAD_ARGS, ""),
    ],
    rSendFile: [
        ("closed", lambda g: rSendFile(g.sock, g.fd, 0, 10), R_ERR_CANT_WRITE, "closed"),
        ("connected", lambda g: rSendFile(g.sock, g.fd, 0, 10, due()), R_ERR_TIMEOUT, "deadline"),
        ("writing", lambda g: rSendFile(g.sock, g.fd, 0, 10), R_ERR_BUSY, "already writing"),
        ("connected", lambda g: rSendFile(g.sock, g.fd, -1, 10), R_ERR_BAD_ARGS, "offset"),
        ("no socket", lambda g: rSendFile(g.sock, g.fd, 0, 10), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketWaitMask: [
        ("connected", lambda g: rSetSocketWaitMask(g.sock, R_READABLE, due()), R_ERR_TIMEOUT, "deadline"),
        ("unconnected", lambda g: rSetSocketWaitMask(g.sock, R_READABLE, 0), R_ERR_CANT_COMPLETE, "not connected"),
        ("reading", lambda g: rSetSocketWaitMask(g.sock, R_READABLE, 0), R_ERR_BUSY, "already reading"),
        ("connected", lambda g: rSetSocketWaitMask(g.sock, 0, 0), R_ERR_BAD_ARGS, "mask"),
        ("no socket", lambda g: rSetSocketWaitMask(g.sock, R_READABLE, 0), R_ERR_BAD_ARGS, ""),
    ],
    rGetSocketAddr: [
        ("unconnected", lambda g: rGetSocketAddr(g.sock), R_ERR_CANT_COMPLETE, "not connected"),
        ("no socket", lambda g: rGetSocketAddr(g.sock), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketLinger: [
        ("unconnected", lambda g: rSetSocketLinger(g.sock, -1), R_ERR_BAD_ARGS, "seconds"),
        ("no socket", lambda g: rSetSocketLinger(g.sock, 0), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketNoDelay: [
        ("unconnected", lambda g: unchecked.rSetSocketNoDelay(g.sock, "yes"), R_ERR_BAD_ARGS, "enable"),
        ("no socket", lambda g: rSetSocketNoDelay(g.sock, 1), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketCerts: [
        ("unconnected", lambda g: unchecked.rSetSocketCerts(g.sock, 42, None, None, None), R_ERR_BAD_ARGS, "key"),
        ("no socket", lambda g: rSetSocketCerts(g.sock, None, None, None, None), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketCiphers: [
        ("unconnected", lambda g: unchecked.rSetSocketCiphers(g.sock, 42), R_ERR_BAD_ARGS, "ciphers"),
        ("no socket", lambda g: rSetSocketCiphers(g.sock, None), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketVerify: [
        ("unconnected", lambda g: unchecked.rSetSocketVerify(g.sock, "yes", 1), R_ERR_BAD_ARGS, "verify_peer"),
        ("no socket", lambda g: rSetSocketVerify(g.sock, 1, 1), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketDefaultCerts: [
        ("no socket", lambda g: unchecked.rSetSocketDefaultCerts(42, None, None, None), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketDefaultCiphers: [
        ("no socket", lambda g: unchecked.rSetSocketDefaultCiphers(42), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketDefaultVerify: [
        ("no socket", lambda g: unchecked.rSetSocketDefaultVerify("yes", 1), R_ERR_BAD_ARGS, ""),
    ],
    rUpgradeTls: [
        ("holding plaintext", lambda g: rUpgradeTls(g.sock, None, 0), R_ERR_CANT_CONNECT, "plaintext"),
        ("connected", lambda g: rUpgradeTls(g.sock, None, due()), R_ERR_TIMEOUT, "deadline"),
        ("unconnected", lambda g: rUpgradeTls(g.sock, None, 0), R_ERR_BAD_STATE, "not connected"),
        ("connected", lambda g: unchecked.rUpgradeTls(g.sock, 42, 0), R_ERR_BAD_ARGS, "host"),
        ("no socket", lambda g: rUpgradeTls(g.sock, None, 0), R_ERR_BAD_ARGS, ""),
    ],
    rSetTlsSession: [
        ("unconnected", lambda g: unchecked.rSetTlsSession(g.sock, "session"), R_ERR_BAD_ARGS, "session"),
        ("no socket", lambda g: rSetTlsSession(g.sock, None), R_ERR_BAD_ARGS, ""),
    ],
    rSetSocketLimit: [
        ("no socket", lambda g: rSetSocketLimit(-5), R_ERR_BAD_ARGS, ""),
    ],
    rSpawnFiber: [
        ("no socket", lambda g: unchecked.rSpawnFiber("bad", "not callable", None), R_ERR_BAD_ARGS, ""),
    ],
}

CODE_NAMES = {getattr(ioto, name): name for name in ioto.__all__ if name.startswith("R_ERR")}


def documented_codes(function: Callable[..., object]) -> set[str]:
    """The codes *function*'s docstring says it returns."""
    # rSetSocketCerts names the codes that rConnectSocket and rListenSocket
    # return for the files it was given: theirs, not its own.
    not_its_own = {"R_ERR_CANT_CONNECT", "R_ERR_CANT_INITIALIZE"} if function is rSetSocketCerts else set()
    return set(re.findall(r"\bR_ERR_[A-Z_]+", function.__doc__ or "")) - not_its_own


@pytest.mark.parametrize(
    ("function", "state", "call", "code", "words"),
    [
        pytest.param(function, *row, id=f"{function.__name__}-{CODE_NAMES[row[2]]}-{row[0]}")
        for function, rows in FAILURES.items()
        for row in rows
    ],
)
async def test_each_failure_returns_its_documented_code(
    function: Callable[..., object], state: str, call: Call, code: int, words: str, payload_fd: int, tmp_path: Path
) -> None:
    async with trio_rsocket.open_runtime(), given(state, payload_fd, tmp_path) as g:
        result = call(g)
        if inspect.isawaitable(result):
            with trio.testing.assert_checkpoints():  # failing at once too
                result = await result
        assert (result[0] if isinstance(result, tuple) else result) == code
        if g.sock is not None:
            assert words in rGetSocketError(g.sock)
            assert words or code == R_ERR_CANT_READ  # only EOF records nothing


def test_failures_cover_every_code_the_docstrings_name() -> None:
    calls = [getattr(ioto, name) for name in ioto.__all__ if hasattr(getattr(ioto, name), "__wrapped__")]
    assert set(calls) == set(FAILURES)
    for function, rows in FAILURES.items():
        assert {CODE_NAMES[code] for _, _, code, _ in rows} == documented_codes(function), function.__name__
        assert "no socket" in {state for state, *_ in rows}, function.__name__


# Setters that document only R_ERR_BAD_ARGS, and the API each hands its
# arguments to.  However the API refuses them (today a TypeError or
# ValueError, but a TLSError if it ever reads a file), the code is the one the
# docstring names.
SETTERS: list[tuple[Callable[..., int], object, str, Callable[[RSocket], int]]] = [
    (rSetSocketLinger, RSocket, "set_linger", lambda sock: rSetSocketLinger(sock, 0)),
    (rSetSocketNoDelay, RSocket, "set_no_delay", lambda sock: rSetSocketNoDelay(sock, 1)),
    (rSetSocketCerts, RSocket, "set_certs", lambda sock: rSetSocketCerts(sock, "k.pem", "c.pem", None, None)),
    (rSetSocketCiphers, RSocket, "set_ciphers", lambda sock: rSetSocketCiphers(sock, "HIGH")),
    (rSetSocketVerify, RSocket, "set_verify", lambda sock: rSetSocketVerify(sock, 1, 1)),
    (rSetTlsSession, RSocket, "set_tls_session", lambda sock: rSetTlsSession(sock, None)),
    (rSetSocketDefaultCerts, ioto, "set_default_certs", lambda _: rSetSocketDefaultCerts("k.pem", "c.pem", None, None)),
    (rSetSocketDefaultCiphers, ioto, "set_default_ciphers", lambda _: rSetSocketDefaultCiphers("HIGH")),
    (rSetSocketDefaultVerify, ioto, "set_default_verify", lambda _: rSetSocketDefaultVerify(1, 1)),
    (rSetSocketLimit, ioto, "set_socket_limit", lambda _: rSetSocketLimit(10)),
]


@pytest.mark.parametrize(("function", "owner", "api", "call"), SETTERS, ids=[row[0].__name__ for row in SETTERS])
def test_a_setter_fails_with_its_documented_code_whatever_the_api_raises(
    function: Callable[..., int],
    owner: object,
    api: str,
    call: Callable[[RSocket], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise TLSError("unusable")

    assert documented_codes(function) == {"R_ERR_BAD_ARGS"}
    monkeypatch.setattr(owner, api, refuse)
    sock = rAllocSocket()
    assert call(sock) == R_ERR_BAD_ARGS
    rFreeSocket(sock)


def test_the_calls_keep_their_signatures_for_help_and_sphinx() -> None:
    calls = [getattr(ioto, name) for name in ioto.__all__ if hasattr(getattr(ioto, name), "__wrapped__")]
    for function in calls:
        assert inspect.signature(function) == inspect.signature(function.__wrapped__)
        assert inspect.iscoroutinefunction(function) == inspect.iscoroutinefunction(function.__wrapped__)
    assert list(inspect.signature(rReadSocket).parameters) == ["sock", "buf", "bufsize", "deadline"]
    assert "R_ERR_CANT_READ" in (rReadSocket.__doc__ or "")


async def test_a_call_with_arguments_left_out_raises_as_any_call_does() -> None:
    # A bug in the caller, as C's compiler would say, not a bad value.
    sock = rAllocSocket()
    with pytest.raises(TypeError):
        unchecked.rSetSocketLinger(sock)
    with pytest.raises(TypeError):
        unchecked.rSetSocketLinger(None)
    with pytest.raises(TypeError):
        await unchecked.rReadSocket(sock, bytearray(8))
    with pytest.raises(TypeError):
        unchecked.rSetSocketLimit()
    assert rGetSocketError(sock) == ""


def test_a_call_without_a_socket_logs_its_message(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="trio_rsocket"):
        assert rSetSocketLimit(-5) == R_ERR_BAD_ARGS
        assert rSetSocketLinger(None, 0) == R_ERR_BAD_ARGS
    assert [record.getMessage() for record in caplog.records] == [
        "ioto: limit must be at least 1, not -5 (-6)",
        "ioto: socket is None (-6)",
    ]


def test_a_socket_given_by_name_is_looked_at_too() -> None:
    assert unchecked.rSetSocketLinger(sock=None, timeout=0) == R_ERR_BAD_ARGS
    sock = rAllocSocket()
    assert unchecked.rSetSocketLinger(sock=sock, timeout=-1) == R_ERR_BAD_ARGS
    assert "seconds" in rGetSocketError(sock)
