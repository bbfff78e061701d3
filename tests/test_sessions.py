"""TLS session resumption: get_tls_session, set_tls_session, is_session_reused
(SPEC section 8, Ioto's ``rGetTlsSession`` / ``rSetTlsSession``).

Resumption is checked against three servers: an RSocket listener, Python's
blocking :mod:`ssl` in a thread, and ``openssl s_server``; with TLS 1.3 and
with TLS 1.2.  With TLS 1.3 the session ticket comes after the handshake, so
every client reads something before its session is taken or reused.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from trio_rsocket import RSocket
from trio_rsocket.testing import CertFiles

from .conftest import read_line_containing

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")

VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_3, id="TLSv1.3"),
    pytest.param(ssl.TLSVersion.TLSv1_2, id="TLSv1.2"),
]
VERSION_NAMES = {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}

Close = Callable[[RSocket], Awaitable[None]]


async def close_at_once(sock: RSocket) -> None:
    sock.close()


async def close_gracefully(sock: RSocket) -> None:
    await sock.aclose()


CLOSES = [pytest.param(close_at_once, id="close"), pytest.param(close_gracefully, id="aclose")]


# ----------------------------------------------------------------------------
# Clients


def trusting(files: CertFiles) -> RSocket:
    """A TLS client socket that trusts the test CA."""
    sock = RSocket()
    sock.set_certs(authority=str(files.authority))
    return sock


def tls12_client(files: CertFiles) -> RSocket:
    """A client held to TLS 1.2 through the escape hatch, ``set_ssl_context``."""
    context = ssl.create_default_context(cafile=str(files.authority))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    sock = RSocket()
    sock.set_ssl_context(context)
    return sock


async def round_trip(sock: RSocket) -> None:
    """One message each way: the TLS 1.3 session ticket is read by then."""
    await sock.write(b"ping\n")
    assert await sock.read_until(b"\n") in {b"ping\n", b"gnip\n"}  # echo, or openssl -rev


async def connect_and_talk(sock: RSocket, port: int, host: str = "localhost") -> bool:
    """Connect *sock*, talk, and say whether the handshake resumed a session."""
    await sock.connect(host, port)
    await round_trip(sock)
    return sock.is_session_reused()


# ----------------------------------------------------------------------------
# Servers


@asynccontextmanager
async def rsocket_server(
    files: CertFiles, cert: trustme.LeafCert | None = None
) -> AsyncIterator[tuple[int, list[bool]]]:
    """An RSocket TLS echo listener (presenting *cert*, else the test server
    certificate); yields its port and, per connection, whether the accepted
    socket says its handshake resumed."""
    reused: list[bool] = []

    async def echo(_data: object, sock: RSocket) -> None:
        reused.append(sock.is_session_reused())
        with contextlib.suppress(trio.BrokenResourceError):
            while data := await sock.read():
                await sock.write(data)

    listener = RSocket()
    if cert is None:
        listener.set_certs(key=str(files.server_key), cert=str(files.server_cert))
    else:
        listener.set_certs(
            key=cert.private_key_pem.bytes(), cert=b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        )
    async with trio.open_nursery() as nursery:
        await listener.listen("127.0.0.1", 0, echo, nursery=nursery)
        try:
            yield listener.get_addr()[1], reused
        finally:
            await listener.shutdown(0)


def python_server_context(files: CertFiles, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    context.maximum_version = version
    return context


def serve_in_turn(listening: list[socket.socket], context: ssl.SSLContext) -> list[bool | None]:
    """Serve one echo connection on each socket of *listening*, in order, all
    with *context* (in a thread); return whether each handshake resumed
    (``None``: it failed)."""
    reused: list[bool | None] = []
    for sock in listening:
        connection, _ = sock.accept()
        connection.settimeout(10)
        with connection:
            try:
                tls = context.wrap_socket(connection, server_side=True)
            except ssl.SSLError:
                reused.append(None)
                continue
            with tls:
                reused.append(tls.session_reused)
                with contextlib.suppress(OSError):
                    tls.sendall(tls.recv(1024))
                    tls.recv(1024)  # the client's close_notify, or the end of the connection
    return reused


@asynccontextmanager
async def python_server(
    context: ssl.SSLContext, ports: int = 1, connections: int = 2
) -> AsyncIterator[tuple[list[int], list[bool | None]]]:
    """Python's blocking ssl in a thread, listening on *ports* ports and
    serving *connections* connections on them in turn (the first, the
    second, ..., round again), all with one *context*.  Yields the ports, and
    a list that holds, once the block ends, whether each handshake resumed."""
    reused: list[bool | None] = []
    with contextlib.ExitStack() as stack:
        listening = [stack.enter_context(socket.socket()) for _ in range(ports)]
        for sock in listening:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            sock.settimeout(10)  # a safety net for the thread, never reached
        order = [listening[i % ports] for i in range(connections)]

        async def serve() -> None:
            reused.extend(await trio.to_thread.run_sync(serve_in_turn, order, context))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield [sock.getsockname()[1] for sock in listening], reused


@asynccontextmanager
async def openssl_server(files: CertFiles, *options: str) -> AsyncIterator[int]:
    """``openssl s_server -rev`` (it answers each line reversed) on a free
    loopback port, killed at the end; yields the port."""
    assert OPENSSL is not None
    command = [OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-rev"]
    command += ["-cert", str(files.server_cert), "-key", str(files.server_key), *options]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        with trio.fail_after(10):  # a safety net, never reached
            accept = await read_line_containing(process.stdout, b"ACCEPT")
        yield int(accept.split(b":")[-1])
    finally:
        process.kill()
        await process.wait()


# ----------------------------------------------------------------------------
# A socket that reconnects offers its last session by itself


@pytest.mark.parametrize("close", CLOSES)
async def test_a_socket_that_reconnects_to_a_listener_resumes(rsocket_cert_files: CertFiles, close: Close) -> None:
    async with rsocket_server(rsocket_cert_files) as (port, _), trusting(rsocket_cert_files) as client:
        assert not await connect_and_talk(client, port)
        await close(client)
        assert await connect_and_talk(client, port)


async def test_the_accepted_socket_says_its_handshake_resumed(rsocket_cert_files: CertFiles) -> None:
    async with rsocket_server(rsocket_cert_files) as (port, reused), trusting(rsocket_cert_files) as client:
        await connect_and_talk(client, port)
        await client.aclose()
        await connect_and_talk(client, port)
    assert reused == [False, True]


@pytest.mark.parametrize("close", CLOSES)
@pytest.mark.parametrize("version", VERSIONS)
async def test_a_socket_that_reconnects_to_a_python_ssl_server_resumes(
    rsocket_cert_files: CertFiles, version: ssl.TLSVersion, close: Close
) -> None:
    context = python_server_context(rsocket_cert_files, version)
    async with python_server(context) as ([port], reused), trusting(rsocket_cert_files) as client:
        assert not await connect_and_talk(client, port)
        assert client.get_tls_version() == VERSION_NAMES[version]
        await close(client)
        assert await connect_and_talk(client, port)
        await client.aclose()
    assert reused == [False, True]


@needs_openssl
@pytest.mark.parametrize("close", CLOSES)
@pytest.mark.parametrize("version", VERSIONS)
async def test_a_socket_that_reconnects_to_openssl_s_server_resumes(
    rsocket_cert_files: CertFiles, version: ssl.TLSVersion, close: Close
) -> None:
    options = ["-tls1_2"] if version is ssl.TLSVersion.TLSv1_2 else ["-tls1_3"]
    async with openssl_server(rsocket_cert_files, *options) as port, trusting(rsocket_cert_files) as client:
        assert not await connect_and_talk(client, port)
        assert client.get_tls_version() == VERSION_NAMES[version]
        await close(client)
        assert await connect_and_talk(client, port)


async def test_a_tls12_client_through_set_ssl_context_resumes_with_a_listener(rsocket_cert_files: CertFiles) -> None:
    async with rsocket_server(rsocket_cert_files) as (port, reused), tls12_client(rsocket_cert_files) as client:
        assert not await connect_and_talk(client, port)
        assert client.get_tls_version() == "TLSv1.2"
        await client.aclose()
        assert await connect_and_talk(client, port)
    assert reused == [False, True]


async def test_reconnecting_to_another_port_offers_no_session(rsocket_cert_files: CertFiles) -> None:
    """Both ports are served with one context, which would resume the
    session if it were offered."""
    context = python_server_context(rsocket_cert_files)
    async with python_server(context, ports=2) as ([first, second], reused), trusting(rsocket_cert_files) as client:
        await connect_and_talk(client, first)
        await client.aclose()
        assert not await connect_and_talk(client, second)
        await client.aclose()
    assert reused == [False, False]


async def test_reconnecting_to_another_host_name_offers_no_session(rsocket_cert_files: CertFiles) -> None:
    """A session resumed skips the certificate: offering one made with
    ``localhost`` to ``127.0.0.1`` would skip the check of that name."""
    context = python_server_context(rsocket_cert_files)
    async with python_server(context) as ([port], reused), trusting(rsocket_cert_files) as client:
        await connect_and_talk(client, port, "localhost")
        await client.aclose()
        assert not await connect_and_talk(client, port, "127.0.0.1")
        await client.aclose()
    assert reused == [False, False]


# ----------------------------------------------------------------------------
# get_tls_session / set_tls_session


async def test_get_tls_session_returns_the_session_with_its_ticket(rsocket_cert_files: CertFiles) -> None:
    async with rsocket_server(rsocket_cert_files) as (port, _), trusting(rsocket_cert_files) as client:
        await connect_and_talk(client, port)
        session = client.get_tls_session()
        assert isinstance(session, ssl.SSLSession)
        assert session.has_ticket


async def test_get_tls_session_is_none_without_tls(rsocket_pair: tuple[RSocket, RSocket]) -> None:
    client, _ = rsocket_pair
    assert RSocket().get_tls_session() is None
    assert client.get_tls_session() is None


async def test_is_session_reused_is_false_without_tls(rsocket_pair: tuple[RSocket, RSocket]) -> None:
    client, server = rsocket_pair
    assert not RSocket().is_session_reused()
    assert not client.is_session_reused()
    assert not server.is_session_reused()


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_session_set_on_another_socket_is_resumed(
    rsocket_cert_files: CertFiles, version: ssl.TLSVersion
) -> None:
    context = python_server_context(rsocket_cert_files, version)
    async with python_server(context) as ([port], reused):
        async with trusting(rsocket_cert_files) as first:
            await connect_and_talk(first, port)
            session = first.get_tls_session()
            await first.aclose()
        async with trusting(rsocket_cert_files) as second:
            second.set_tls_session(session)
            assert await connect_and_talk(second, port)
            await second.aclose()
    assert reused == [False, True]


async def test_a_session_set_by_hand_is_offered_to_any_peer(rsocket_cert_files: CertFiles) -> None:
    """Unlike the session a socket keeps by itself, one given to
    set_tls_session goes to the next connect, whatever its port."""
    context = python_server_context(rsocket_cert_files)
    async with python_server(context, ports=2) as ([first_port, second_port], reused):
        async with trusting(rsocket_cert_files) as first:
            await connect_and_talk(first, first_port)
            session = first.get_tls_session()
            await first.aclose()
        async with trusting(rsocket_cert_files) as second:
            second.set_tls_session(session)
            assert await connect_and_talk(second, second_port)
            await second.aclose()
    assert reused == [False, True]


async def test_a_session_shared_through_one_ssl_context_resumes_tls12(rsocket_cert_files: CertFiles) -> None:
    context = ssl.create_default_context(cafile=str(rsocket_cert_files.authority))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with rsocket_server(rsocket_cert_files) as (port, reused):
        async with RSocket() as first:
            first.set_ssl_context(context)
            await connect_and_talk(first, port)
            session = first.get_tls_session()
            await first.aclose()
        async with RSocket() as second:
            second.set_ssl_context(context)
            second.set_tls_session(session)
            assert await connect_and_talk(second, port)
            assert second.get_tls_version() == "TLSv1.2"
    assert reused == [False, True]


async def test_a_session_from_another_server_is_not_resumed_and_does_no_harm(
    rsocket_ca: trustme.CA, rsocket_cert_files: CertFiles
) -> None:
    other_cert = rsocket_ca.issue_cert("localhost")
    async with rsocket_server(rsocket_cert_files) as (port, _), trusting(rsocket_cert_files) as first:
        await connect_and_talk(first, port)
        session = first.get_tls_session()
    async with (
        rsocket_server(rsocket_cert_files, other_cert) as (other, _),
        trusting(rsocket_cert_files) as second,
    ):
        second.set_tls_session(session)
        assert not await connect_and_talk(second, other)


async def test_a_session_from_another_tls_context_is_not_resumed_and_does_no_harm(
    rsocket_cert_files: CertFiles,
) -> None:
    """Python refuses to offer a session made by another SSLContext (other
    TLS settings make another context): connect goes on with a full handshake."""
    async with rsocket_server(rsocket_cert_files) as (port, reused):
        async with trusting(rsocket_cert_files) as first:
            await connect_and_talk(first, port)
            session = first.get_tls_session()
        async with tls12_client(rsocket_cert_files) as second:
            second.set_tls_session(session)
            assert not await connect_and_talk(second, port)
    assert reused == [False, False]


@pytest.mark.parametrize("not_a_session", [b"session", "session", 42, object()], ids=["bytes", "str", "int", "object"])
def test_set_tls_session_refuses_what_is_not_a_session(not_a_session: Any) -> None:
    with pytest.raises(TypeError, match="session"):
        RSocket().set_tls_session(not_a_session)


async def test_set_tls_session_none_offers_no_session(rsocket_cert_files: CertFiles) -> None:
    async with rsocket_server(rsocket_cert_files) as (port, reused), trusting(rsocket_cert_files) as client:
        await connect_and_talk(client, port)
        await client.aclose()
        client.set_tls_session(None)
        assert not await connect_and_talk(client, port)
    assert reused == [False, False]


# ----------------------------------------------------------------------------
# Listeners resume sessions out of the box


def connect_twice(port: int, authority: str, version: ssl.TLSVersion) -> list[bool | None]:
    """A Python ssl client connecting twice, offering its first session the
    second time (in a thread); returns whether each handshake resumed."""
    context = ssl.create_default_context(cafile=authority)
    context.maximum_version = version
    session: ssl.SSLSession | None = None
    reused: list[bool | None] = []
    for _ in range(2):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
        ):
            tls.sendall(b"ping\n")
            assert tls.recv(1024) == b"ping\n"
            reused.append(tls.session_reused)
            session = tls.session
            with contextlib.suppress(OSError):
                tls.unwrap()
    return reused


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_listener_resumes_a_python_ssl_clients_session(
    rsocket_cert_files: CertFiles, version: ssl.TLSVersion
) -> None:
    async with rsocket_server(rsocket_cert_files) as (port, server_says):
        client_says = await trio.to_thread.run_sync(connect_twice, port, str(rsocket_cert_files.authority), version)
    assert client_says == [False, True]
    assert server_says == [False, True]
