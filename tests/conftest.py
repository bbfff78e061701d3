"""The test suite's one home for its helpers: certificates, servers, pairs.

Everything two test files need is here, once; what the library's own
:mod:`trio_rsocket.testing` already does (``open_rsocket_pair``,
``echo_handler``) is used from there, and the plugin's fixtures
(``rsocket_pair``, ``rsocket_tls_pair``, ``rsocket_cert_files``) are used as
they are.  The pairs, by how they are made:

``open_rsocket_pair`` (the library's)
    ``RSocket.listen`` + ``RSocket.connect``, plain or TLS, as a user makes
    one; the plugin's ``rsocket_pair`` (here also ``pair``) and
    ``rsocket_tls_pair`` fixtures and ``either_pair`` (both kinds,
    parametrized) are made with it.
:func:`plain_pair` / :func:`connected_pair` / :func:`clogged_plain_pair`
    A pair to make several of, or on another loopback address (``::1``), or
    that neither side can write to: the server side accepted by trio's own
    listener and adopted with :meth:`RSocket.from_socket`.
:func:`tls_pair_by_hand` / ``tls_pair``
    TLS with no listener at all: the server side adopted and handshaken by
    hand, with a trustme CA and leaf of the test module's own.

Servers: :func:`serving` (yields the listener) and :func:`serving_port`
(yields its port) run the library's ``echo_handler`` unless told otherwise;
:func:`round_trip` pings through one.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from trio_rsocket import RSocket, _tls
from trio_rsocket.testing import LOOPBACK, CertFiles, echo_handler, open_rsocket_pair

#: What a test does to a socket before it listens or connects (its certificates).
Configure = Callable[[RSocket], None]
Handler = Callable[[Any, RSocket], Any]

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


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


# ----------------------------------------------------------------------------
# Certificates


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A trustme CA of the test module's own."""
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A server certificate from ``ca`` for every loopback name."""
    return ca.issue_cert("localhost", "127.0.0.1", "::1")


def with_cert(cert: trustme.LeafCert) -> Configure:
    """A socket presenting *cert* (key and chain as PEM bytes)."""

    def configure(sock: RSocket) -> None:
        sock.set_certs(key=cert.private_key_pem.bytes(), cert=b"".join(blob.bytes() for blob in cert.cert_chain_pems))

    return configure


def trusting(ca: trustme.CA) -> Configure:
    """A socket trusting *ca* (a trustme CA)."""

    def configure(sock: RSocket) -> None:
        sock.set_certs(authority=ca.cert_pem.bytes())

    return configure


def with_cert_files(files: CertFiles) -> Configure:
    """A socket presenting the server certificate of *files*."""

    def configure(sock: RSocket) -> None:
        sock.set_certs(key=str(files.server_key), cert=str(files.server_cert))

    return configure


# ----------------------------------------------------------------------------
# Servers


@asynccontextmanager
async def serving(
    handler: Handler = echo_handler,
    host: str | None = LOOPBACK,
    *,
    configure: Configure | None = None,
    **options: Any,
) -> AsyncIterator[RSocket]:
    """A listener on an ephemeral port running *handler* (the echo handler
    by default) in a nursery of its own, set up first by *configure* (its
    certificates, say); shut down (remaining handlers cancelled) on exit."""
    listener = RSocket()
    if configure is not None:
        configure(listener)
    async with trio.open_nursery() as nursery:
        await listener.listen(host, 0, handler, nursery=nursery, **options)
        try:
            yield listener
        finally:
            await listener.shutdown(grace=0)


@asynccontextmanager
async def serving_port(
    configure: Configure | None = None, handler: Handler = echo_handler, **options: Any
) -> AsyncIterator[int]:
    """:func:`serving` on loopback, yielding only the port."""
    async with serving(handler, configure=configure, **options) as listener:
        yield listener.get_addr()[1]


async def round_trip(sock: RSocket, message: bytes = b"ping") -> bytes:
    """Write *message* and read as many bytes back (from an echo server)."""
    await sock.write(message)
    return await sock.read_exactly(len(message))


# ----------------------------------------------------------------------------
# Pairs


async def connect_and_accept(
    sock: RSocket, listener: trio.SocketListener, host: str = "127.0.0.1"
) -> trio.SocketStream:
    """Connect *sock* to *listener* (trio's own, on *host*) and return the
    stream it accepted."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sock.connect, host, listener.socket.getsockname()[1])
        return await listener.accept()


async def plain_pair(host: str = "127.0.0.1") -> tuple[RSocket, RSocket]:
    """A connected ``(client, server)`` pair: the client connects with
    :meth:`RSocket.connect`, the server side is accepted by trio's own
    listener and wrapped."""
    async with (await trio.open_tcp_listeners(0, host=host))[0] as listener:
        client = RSocket()
        return client, RSocket.from_socket(await connect_and_accept(client, listener, host))


async def clogged_plain_pair() -> tuple[RSocket, RSocket]:
    """A pair where neither side can write until the other reads (trio's
    checks flip the pair, so both directions are clogged)."""
    client, server = await plain_pair()
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
async def closing(made: Awaitable[tuple[RSocket, RSocket]]) -> AsyncIterator[tuple[RSocket, RSocket]]:
    """The pair *made* is, both sides closed when the block exits:
    ``async with closing(clogged_plain_pair()) as (client, server):``."""
    client, server = await made
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def connected_pair(host: str = "127.0.0.1") -> AbstractAsyncContextManager[tuple[RSocket, RSocket]]:
    """:func:`plain_pair` on *host*, closed when the block exits."""
    return closing(plain_pair(host))


@pytest.fixture
def pair(rsocket_pair: tuple[RSocket, RSocket]) -> tuple[RSocket, RSocket]:
    """The plugin's ``rsocket_pair``, by its short name."""
    return rsocket_pair


@pytest.fixture(params=["plain", "tls"])
async def either_pair(
    request: pytest.FixtureRequest, rsocket_cert_files: CertFiles
) -> AsyncIterator[tuple[RSocket, RSocket]]:
    """A connected ``(client, server)`` pair, plain TCP or TLS: a test that
    matters for both kinds of connection runs over each."""
    async with open_rsocket_pair(tls=request.param == "tls", cert_files=rsocket_cert_files) as both:
        yield both


async def tls_pair_by_hand(
    ca: trustme.CA,
    cert: trustme.LeafCert,
    client_setup: Configure | None = None,
    server_setup: Configure | None = None,
) -> tuple[RSocket, RSocket]:
    """A connected TLS ``(client, server)`` pair, without a listener's fibers:
    the server side is accepted by trio, set up (*cert*, then
    *server_setup*) and handshaken by hand; the client trusts *ca* and is
    set up by *client_setup* before it connects to ``localhost``."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    try:
        client = RSocket()
        trusting(ca)(client)
        if client_setup is not None:
            client_setup(client)
        async with trio.open_nursery() as nursery:
            # The client waits for the handshake the server does by hand.
            nursery.start_soon(client.connect, "localhost", listener.socket.getsockname()[1])
            server = RSocket.from_socket(await listener.accept(), server_side=True)
            with_cert(cert)(server)
            if server_setup is not None:
                server_setup(server)
            await server.upgrade_tls()
    finally:
        await listener.aclose()
    return client, server


@pytest.fixture
async def tls_pair(ca: trustme.CA, server_cert: trustme.LeafCert) -> AsyncIterator[tuple[RSocket, RSocket]]:
    """:func:`tls_pair_by_hand` with the module's ``ca`` and ``server_cert``."""
    async with closing(tls_pair_by_hand(ca, server_cert)) as both:
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


# ----------------------------------------------------------------------------
# Kernel buffers and the clock


def fix_buffers(*socks: RSocket) -> None:
    """Fixed 64 KiB kernel buffers (no autotuning), so a few MiB always block."""
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)


async def jump_when_blocked(clock: trio.testing.MockClock, seconds: float, cushion: float = 0.0) -> None:
    """Jump the clock by *seconds* once every task is blocked (for *cushion*
    seconds of real time: enough for a worker thread reading a file to
    finish, so the jump catches the sender waiting for the socket)."""
    await trio.testing.wait_all_tasks_blocked(cushion=cushion)
    clock.jump(seconds)


async def assert_busy_while(
    first: Callable[[], Awaitable[object]],
    second: Callable[[], Awaitable[object]],
    match: str | None = None,
    cushion: float = 0.0,
) -> None:
    """*second* raises :exc:`trio.BusyResourceError` (matching *match*) while
    *first*, started in a fiber of its own, waits; *first* is cancelled then.
    *cushion* as in :func:`jump_when_blocked`."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked(cushion=cushion)
        with pytest.raises(trio.BusyResourceError, match=match):
            await second()
        nursery.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def _restore_tls_defaults() -> Iterator[None]:
    """Every test starts from the module's TLS defaults (set_default_certs & co)."""
    yield
    _tls.reset_defaults()


async def read_at_least(sock: RSocket, count: int) -> bytes:
    """What *sock* reads until *count* bytes or more have arrived, or end of
    file (bounded: every other read returns at least a byte, or raises)."""
    received = bytearray()
    while len(received) < count and (chunk := await sock.read()):
        received += chunk
    return bytes(received)


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
