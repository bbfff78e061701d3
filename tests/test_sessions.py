"""TLS session resumption: get_tls_session, set_tls_session, is_session_reused
(SPEC section 8, Ioto's ``rGetTlsSession`` / ``rSetTlsSession``).

Resumption is checked against three servers: an RSocket listener, Python's
blocking :mod:`ssl` in a thread, and ``openssl s_server``; with TLS 1.3 and
with TLS 1.2.  With TLS 1.3 the session ticket comes after the handshake, so
every client reads something before its session is taken or reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
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

from trio_rsocket import RSocket, TLSError
from trio_rsocket.testing import CertFiles

from .conftest import OPENSSL, needs_openssl, read_line_containing

VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_3, id="TLSv1.3"),
    pytest.param(ssl.TLSVersion.TLSv1_2, id="TLSv1.2"),
]
VERSION_NAMES = {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}
#: The ``openssl s_server`` option that holds it to a TLS version.
OPENSSL_VERSION = {ssl.TLSVersion.TLSv1_3: "-tls1_3", ssl.TLSVersion.TLSv1_2: "-tls1_2"}

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


def serve_in_turn(listening: list[socket.socket], contexts: list[ssl.SSLContext]) -> list[bool | None]:
    """Serve one echo connection on each socket of *listening*, in order,
    each with its context in *contexts* (in a thread); return whether each
    handshake resumed (``None``: it failed)."""
    reused: list[bool | None] = []
    for sock, context in zip(listening, contexts, strict=True):
        connection, _ = sock.accept()
        connection.settimeout(10)
        with connection:
            try:
                tls = context.wrap_socket(connection, server_side=True)
            except OSError:  # the client refused the handshake: an alert, or a reset after it
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
    context: ssl.SSLContext | list[ssl.SSLContext], ports: int = 1, connections: int = 2
) -> AsyncIterator[tuple[list[int], list[bool | None]]]:
    """Python's blocking ssl in a thread, listening on *ports* ports and
    serving *connections* connections on them in turn (the first, the
    second, ..., round again), all with one *context* (or, given a list, one
    connection with each).  Yields the ports, and a list that holds, once the
    block ends, whether each handshake resumed."""
    contexts = context if isinstance(context, list) else [context] * connections
    connections = len(contexts)
    reused: list[bool | None] = []
    with contextlib.ExitStack() as stack:
        listening = [stack.enter_context(socket.socket()) for _ in range(ports)]
        for sock in listening:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            sock.settimeout(10)  # a safety net for the thread, never reached
        order = [listening[i % ports] for i in range(connections)]

        async def serve() -> None:
            reused.extend(await trio.to_thread.run_sync(serve_in_turn, order, contexts))

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
    async with (
        openssl_server(rsocket_cert_files, OPENSSL_VERSION[version]) as port,
        trusting(rsocket_cert_files) as client,
    ):
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
        session = await session_for(rsocket_cert_files, port, "localhost", trusting)
        assert await resumed_with(rsocket_cert_files, port, session)
    assert reused == [False, True]


async def test_a_session_set_by_hand_is_offered_to_any_peer(rsocket_cert_files: CertFiles) -> None:
    """Unlike the session a socket keeps by itself, one given to
    set_tls_session goes to the next connect, whatever its port."""
    context = python_server_context(rsocket_cert_files)
    async with python_server(context, ports=2) as ([first_port, second_port], reused):
        session = await session_for(rsocket_cert_files, first_port, "localhost", trusting)
        assert await resumed_with(rsocket_cert_files, second_port, session)
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


# ----------------------------------------------------------------------------
# Security: a resumed handshake checks the name too (issue 16, item 1)
#
# The server certificates here name one thing each, 127.0.0.1 or localhost,
# so that a session made for one name is a session the other must refuse.


@pytest.fixture(scope="module")
def naming(
    rsocket_ca: trustme.CA, rsocket_cert_files: CertFiles, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], CertFiles]:
    """Cert files whose server certificate names *name* and nothing else."""
    made: dict[str, CertFiles] = {}

    def files(name: str) -> CertFiles:
        if name not in made:
            folder = tmp_path_factory.mktemp("one-name")
            leaf = rsocket_ca.issue_cert(name)
            leaf.private_key_pem.write_to_path(str(folder / "server.key"))
            (folder / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            made[name] = dataclasses.replace(
                rsocket_cert_files, server_cert=folder / "server.pem", server_key=folder / "server.key"
            )
        return made[name]

    return files


NAME_PAIRS = [
    pytest.param("127.0.0.1", "localhost", id="ip-cert-asked-localhost"),
    pytest.param("localhost", "127.0.0.1", id="dns-cert-asked-ip"),
]


def mismatch(name: str) -> str:
    """What full verification says of a certificate that does not name *name*."""
    return f"Certificate hostname mismatch. Expecting {name}"


async def session_for(files: CertFiles, port: int, name: str, client: Callable[[CertFiles], RSocket]) -> ssl.SSLSession:
    """Connect to *name*:*port* once with a fresh *client* socket, talk,
    and return its session."""
    async with client(files) as sock:
        assert not await connect_and_talk(sock, port, name)
        session = sock.get_tls_session()
        await sock.aclose()
    assert session is not None
    return session


async def resumed_with(files: CertFiles, port: int, session: ssl.SSLSession) -> bool:
    """Whether a fresh socket trusting *files*, given *session*, resumes it
    when it connects to localhost:*port* (and talks)."""
    async with trusting(files) as sock:
        sock.set_tls_session(session)
        resumed = await connect_and_talk(sock, port)
        await sock.aclose()
    return resumed


@pytest.mark.parametrize(("name", "other"), NAME_PAIRS)
@pytest.mark.parametrize("version", VERSIONS)
async def test_a_session_resumed_for_another_name_fails_as_a_full_handshake_does(
    naming: Callable[[str], CertFiles], name: str, other: str, version: ssl.TLSVersion
) -> None:
    """OpenSSL checks no name when it resumes: a server whose certificate
    names only *name* must not pass for *other* by resuming a session."""
    files = naming(name)
    async with python_server(python_server_context(files, version), connections=4) as ([port], reused):
        session = await session_for(files, port, name, trusting)
        async with trusting(files) as full:
            with pytest.raises(TLSError) as full_handshake:
                await full.connect(other, port)
        async with trusting(files) as resuming:
            resuming.set_tls_session(session)
            with pytest.raises(TLSError) as resumed:
                await resuming.connect(other, port)
            assert resuming.get_error() == mismatch(other)
            # The same session, for the name it was made for, resumes.
            assert await connect_and_talk(resuming, port, name)
            await resuming.aclose()
    assert str(full_handshake.value) == str(resumed.value) == mismatch(other)
    assert reused == [False, None, True, True]  # the refused one had resumed


@pytest.mark.parametrize(("name", "other"), NAME_PAIRS)
async def test_a_session_resumed_with_a_listener_for_another_name_fails(
    naming: Callable[[str], CertFiles], name: str, other: str
) -> None:
    files = naming(name)
    async with rsocket_server(files) as (port, _):
        session = await session_for(files, port, name, trusting)
        async with trusting(files) as resuming:
            resuming.set_tls_session(session)
            with pytest.raises(TLSError, match=f"^{mismatch(other)}$"):
                await resuming.connect(other, port)
            assert await connect_and_talk(resuming, port, name)


@needs_openssl
@pytest.mark.parametrize("version", VERSIONS)
async def test_a_session_resumed_with_openssl_s_server_for_another_name_fails(
    naming: Callable[[str], CertFiles], version: ssl.TLSVersion
) -> None:
    files = naming("127.0.0.1")
    async with openssl_server(files, OPENSSL_VERSION[version]) as port:
        session = await session_for(files, port, "127.0.0.1", trusting)
        async with trusting(files) as resuming:
            resuming.set_tls_session(session)
            with pytest.raises(TLSError, match=f"^{mismatch('localhost')}$"):
                await resuming.connect("localhost", port)
            assert await connect_and_talk(resuming, port, "127.0.0.1")
            assert resuming.get_tls_version() == VERSION_NAMES[version]


def default_context_client(files: CertFiles) -> RSocket:
    """A client through the escape hatch: Python's default context (it checks host names)."""
    sock = RSocket()
    sock.set_ssl_context(ssl.create_default_context(cafile=str(files.authority)))
    return sock


def one_context(files: CertFiles) -> Callable[[CertFiles], RSocket]:
    """A maker of clients through the escape hatch, all with one default
    context of the program's own (a session resumes only within its context)."""
    context = ssl.create_default_context(cafile=str(files.authority))

    def client(_files: CertFiles) -> RSocket:
        sock = RSocket()
        sock.set_ssl_context(context)
        return sock

    return client


def forgiving(_files: CertFiles) -> RSocket:
    """A client that verifies the peer but forgives its issuer."""
    sock = RSocket()
    sock.set_verify(True, False)
    return sock


@pytest.mark.parametrize(
    ("clients", "words"),
    [
        pytest.param(one_context, "", id="under-a-context-of-the-programs-own"),
        pytest.param(lambda _files: forgiving, " got 127.0.0.1", id="when-the-issuer-is-forgiven"),
    ],
)
async def test_a_resumed_session_is_checked(
    naming: Callable[[str], CertFiles], clients: Callable[[CertFiles], Callable[[CertFiles], RSocket]], words: str
) -> None:
    """Under a context of the program's own, and with ``verify_issuer=False``,
    which checks the certificate itself after every handshake, resumed or
    not, and says which names it holds."""
    files = naming("127.0.0.1")
    client = clients(files)
    async with python_server(python_server_context(files), connections=2) as ([port], reused):
        session = await session_for(files, port, "127.0.0.1", client)
        async with client(files) as resuming:
            resuming.set_tls_session(session)
            with pytest.raises(TLSError, match=f"^{mismatch('localhost')}{words}$"):
                await resuming.connect("localhost", port)
    assert reused == [False, True]


async def test_an_upgrade_offered_a_session_by_hand_checks_its_own_name(
    naming: Callable[[str], CertFiles],
) -> None:
    files = naming("127.0.0.1")
    async with rsocket_server(files) as (port, _):
        session = await session_for(files, port, "127.0.0.1", trusting)
        async with RSocket() as upgrading:
            await upgrading.connect("127.0.0.1", port)  # plain; the listener starts TLS at once
            upgrading.set_certs(authority=str(files.authority))
            upgrading.set_tls_session(session)
            with pytest.raises(TLSError, match=f"^{mismatch('localhost')}$"):
                await upgrading.upgrade_tls("localhost")
            assert upgrading.is_closed()


# ----------------------------------------------------------------------------
# Security: a session kept by itself goes only to the name it was verified
# for, with the port and the TLS settings (issue 16, item 2)


async def test_an_upgrade_files_its_session_under_the_name_it_checked(naming: Callable[[str], CertFiles]) -> None:
    """connect("localhost") then upgrade_tls("127.0.0.1") checked
    127.0.0.1: its session must not be offered to localhost, and is to 127.0.0.1."""
    files = naming("127.0.0.1")
    async with rsocket_server(files) as (port, _), RSocket() as client:
        await client.connect("localhost", port)  # plain; the listener starts TLS at once
        client.set_certs(authority=str(files.authority))
        await client.upgrade_tls("127.0.0.1")
        await round_trip(client)
        await client.aclose()
        # The socket has TLS settings now: connect runs the handshake.
        with pytest.raises(TLSError, match=f"^{mismatch('localhost')}$"):
            await client.connect("localhost", port)  # a full handshake: nothing offered
        assert await connect_and_talk(client, port, "127.0.0.1")


async def test_a_from_socket_client_keeps_its_session_for_no_one(naming: Callable[[str], CertFiles]) -> None:
    """A socket connect did not make has no port to file its session under:
    it offers the session to nothing by itself (get_tls_session still has it)."""
    files = naming("127.0.0.1")
    async with rsocket_server(files) as (port, _):
        raw = trio.socket.socket()
        await raw.connect(("127.0.0.1", port))
        async with RSocket.from_socket(raw) as client:
            client.set_certs(authority=str(files.authority))
            await client.upgrade_tls("127.0.0.1")
            await round_trip(client)
            await client.aclose()
            assert client.get_tls_session() is not None
            assert not await connect_and_talk(client, port, "127.0.0.1")
            await client.aclose()
            # From here on the socket is connect's, and keeps its session.
            assert await connect_and_talk(client, port, "127.0.0.1")


async def test_a_socket_that_checks_no_name_keeps_its_session_for_no_one(
    naming: Callable[[str], CertFiles],
) -> None:
    """verify_peer=False checks nothing, so its session is offered to
    nothing by itself; by hand it still is."""
    files = naming("127.0.0.1")
    async with rsocket_server(files) as (port, _), RSocket() as client:
        client.set_verify(False, False)
        await connect_and_talk(client, port, "127.0.0.1")
        await client.aclose()
        assert not await connect_and_talk(client, port, "127.0.0.1")
        session = client.get_tls_session()
        await client.aclose()
        client.set_tls_session(session)
        assert await connect_and_talk(client, port, "127.0.0.1")


async def test_a_session_kept_under_other_tls_settings_is_not_offered(naming: Callable[[str], CertFiles]) -> None:
    """Other settings make another context, which the kept session was not
    made with (Python would refuse it too)."""
    files = naming("127.0.0.1")
    async with rsocket_server(files) as (port, _), trusting(files) as client:
        await connect_and_talk(client, port, "127.0.0.1")
        await client.aclose()
        client.set_ciphers("ECDHE+AESGCM")
        assert not await connect_and_talk(client, port, "127.0.0.1")
        await client.aclose()
        assert await connect_and_talk(client, port, "127.0.0.1")


# ----------------------------------------------------------------------------
# Memory: resumption reads no session it does not need (issue 16, item 3)
#
# Reading SSLSocket.session / SSLObject.session leaks a copy of the session
# on Python 3.11 (CPython gh-116810).  A socket that resumed keeps offering
# the session it offered, and reads a new one only after a full handshake.


@pytest.mark.parametrize("version", VERSIONS)
async def test_one_session_resumes_again_and_again_with_python_ssl(
    naming: Callable[[str], CertFiles], version: ssl.TLSVersion
) -> None:
    files = naming("127.0.0.1")
    context = python_server_context(files, version)
    async with python_server(context, connections=5) as ([port], reused), trusting(files) as client:
        says = []
        for _ in range(5):
            says.append(await connect_and_talk(client, port, "127.0.0.1"))
            await client.aclose()
    assert says == [False, True, True, True, True]
    assert reused == says


@needs_openssl
@pytest.mark.parametrize("version", VERSIONS)
async def test_one_session_resumes_again_and_again_with_openssl_s_server(
    naming: Callable[[str], CertFiles], version: ssl.TLSVersion
) -> None:
    files = naming("127.0.0.1")
    async with openssl_server(files, OPENSSL_VERSION[version]) as port, trusting(files) as client:
        says = []
        for _ in range(5):
            says.append(await connect_and_talk(client, port, "127.0.0.1"))
            await client.aclose()
    assert says == [False, True, True, True, True]


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_session_the_server_refuses_is_replaced_by_the_next_full_handshakes(
    naming: Callable[[str], CertFiles], version: ssl.TLSVersion
) -> None:
    """The server restarts (a new context: new ticket keys, an empty cache)
    after two connections: the third is a full handshake, and the fourth
    resumes the session the third made."""
    files = naming("127.0.0.1")
    before, after = python_server_context(files, version), python_server_context(files, version)
    async with python_server([before, before, after, after]) as ([port], reused), trusting(files) as client:
        says = []
        for _ in range(4):
            says.append(await connect_and_talk(client, port, "127.0.0.1"))
            await client.aclose()
    assert says == reused == [False, True, False, True]


async def test_a_resumed_connection_reads_no_session(naming: Callable[[str], CertFiles]) -> None:
    """Reading a connection's session makes a new copy every time (one that
    Python 3.11 leaks): a connection that resumed reads none, and its session
    is the very one it offered, whether offered by itself or by hand."""
    files = naming("127.0.0.1")
    async with rsocket_server(files) as (port, _), trusting(files) as client:
        assert not await connect_and_talk(client, port, "127.0.0.1")
        await client.aclose()
        first = client.get_tls_session()  # read once, from the full handshake's connection
        assert client.get_tls_session() is first
        for _ in range(3):
            assert await connect_and_talk(client, port, "127.0.0.1")
            assert client.get_tls_session() is first
            await client.aclose()
            assert client.get_tls_session() is first
        async with trusting(files) as by_hand:
            by_hand.set_tls_session(first)
            assert await connect_and_talk(by_hand, port, "127.0.0.1")
            assert by_hand.get_tls_session() is first


def resident_bytes() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


RESUMED_RECONNECTS = 10_000
WARM_UP = 200
RSS_GROWTH_LIMIT = 8 << 20  # reading the session each time grew about 64 MiB here


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")
async def test_resumed_reconnects_keep_memory_flat(naming: Callable[[str], CertFiles]) -> None:
    """Thousands of resumed reconnects against an RSocket listener grow
    this process by no more than noise.  TLS 1.2 (the listener's own
    context says so): its session is there when the handshake ends, so
    each reconnect is just a resumed handshake, twice as fast as TLS 1.3's
    with the round trip that brings its ticket; reading the session leaked
    the same with either."""
    files = naming("127.0.0.1")
    server_context = python_server_context(files, ssl.TLSVersion.TLSv1_2)

    async def wait_for_close(_data: object, sock: RSocket) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await sock.read()

    listener = RSocket()
    listener.set_ssl_context(server_context)
    async with trio.open_nursery() as nursery, trusting(files) as client:
        await listener.listen("127.0.0.1", 0, wait_for_close, nursery=nursery)
        port = listener.get_addr()[1]
        resumed = 0
        for cycle in range(WARM_UP + RESUMED_RECONNECTS):
            if cycle == WARM_UP:
                before, resumed = resident_bytes(), 0
            await client.connect("127.0.0.1", port)
            resumed += client.is_session_reused()
            client.close()
        growth = resident_bytes() - before
        await listener.shutdown(0)
    assert resumed == RESUMED_RECONNECTS
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.1f} MiB over {RESUMED_RECONNECTS} resumed reconnects"
