"""upgrade_tls: STARTTLS, a plain connection turned into TLS half-way
(SPEC section 8, Ioto's ``rUpgradeTls``).

The little protocol every test speaks: the client writes ``STARTTLS\\r\\n``,
the server answers ``220 go ahead\\r\\n``, and both sides start TLS.  The other
end is Python's blocking :mod:`ssl` in a thread, a raw trio stream, or an
RSocket listener whose handler upgrades the socket it was given.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from trio_rsocket import DeadlineError, RSocket, RSocketError, TLSError, TLSStream, set_default_certs
from trio_rsocket.testing import CertFiles

from .conftest import Handler, round_trip, serving_port

STARTTLS = b"STARTTLS\r\n"
GO_AHEAD = b"220 go ahead\r\n"


# ----------------------------------------------------------------------------
# Helpers


def key_and_chain(cert: trustme.LeafCert) -> dict[str, bytes]:
    """``set_certs`` arguments for *cert*: its key and its chain as PEM bytes."""
    return {"key": cert.private_key_pem.bytes(), "cert": b"".join(blob.bytes() for blob in cert.cert_chain_pems)}


def starttls_echo(outcomes: list[object], **certs: Any) -> Handler:
    """A handler that answers STARTTLS, upgrades with *certs* and echoes.
    It appends the upgraded socket's ``is_secure()`` to *outcomes*, or the
    exception the upgrade raised."""

    async def handler(_data: object, sock: RSocket) -> None:
        try:
            if await sock.read_until(b"\r\n") != STARTTLS:
                outcomes.append("no STARTTLS")
                return
            await sock.write(GO_AHEAD)
            sock.set_certs(**certs)
            await sock.upgrade_tls()
        except Exception as exc:
            outcomes.append(exc)
            return
        outcomes.append(sock.is_secure())
        with contextlib.suppress(trio.BrokenResourceError):
            while data := await sock.read():
                await sock.write(data)

    return handler


def serving_starttls(outcomes: list[object], files: CertFiles) -> AbstractAsyncContextManager[int]:
    """A listener running :func:`starttls_echo` with the server certificate
    of *files*; yields its port."""
    return serving_port(handler=starttls_echo(outcomes, key=str(files.server_key), cert=str(files.server_cert)))


async def start_tls(sock: RSocket, trust: CertFiles | trustme.CA | None, host: str | None = None) -> None:
    """The client's half of the exchange, then ``upgrade_tls(host)``
    trusting *trust* (the CA of cert files, or a CA), if given."""
    await sock.write(STARTTLS)
    assert await sock.read_until(b"\r\n") == GO_AHEAD
    if isinstance(trust, CertFiles):
        sock.set_certs(authority=str(trust.authority))
    elif trust is not None:
        sock.set_certs(authority=trust.cert_pem.bytes())
    await sock.upgrade_tls(host)


def read_line(sock: socket.socket) -> bytes:
    """One line, a byte at a time: not a byte of what follows it (the TLS
    handshake) is taken from the socket."""
    line = b""
    while not line.endswith(b"\n") and len(line) < 1000:  # bounded
        byte = sock.recv(1)
        if not byte:
            break
        line += byte
    return line


def python_server_context(files: CertFiles, names: list[str | None] | None = None) -> ssl.SSLContext:
    """A server context for Python's ssl; the SNI names clients send go to *names*."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    if names is not None:

        def record(_tls: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
            names.append(name)

        context.sni_callback = record
    return context


def python_starttls_server(listening: socket.socket, context: ssl.SSLContext) -> bytes:
    """Serve one STARTTLS client with Python's blocking ssl (in a thread):
    upgrade, answer one message in upper case, return the message."""
    connection, _ = listening.accept()
    connection.settimeout(10)
    with connection:
        if read_line(connection) != STARTTLS:
            return b"no STARTTLS"
        connection.sendall(GO_AHEAD)
        try:
            tls = context.wrap_socket(connection, server_side=True)
        except ssl.SSLError:
            return b"handshake failed"
        with tls:
            message = tls.recv(1024)
            tls.sendall(message.upper())
            with contextlib.suppress(OSError):
                tls.recv(1024)  # the client's close_notify
    return message


@asynccontextmanager
async def python_server(context: ssl.SSLContext) -> AsyncIterator[tuple[int, list[bytes]]]:
    """:func:`python_starttls_server` in a thread; yields its port and a list
    that holds what it received once the block ends."""
    received: list[bytes] = []
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.settimeout(10)  # a safety net for the thread, never reached

        async def serve() -> None:
            received.append(await trio.to_thread.run_sync(python_starttls_server, listening, context))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield listening.getsockname()[1], received


# ----------------------------------------------------------------------------
# The client side


async def test_a_client_upgrades_to_tls_with_a_python_ssl_server(rsocket_cert_files: CertFiles) -> None:
    async with python_server(python_server_context(rsocket_cert_files)) as (port, received), RSocket() as client:
        await client.connect("localhost", port)
        await start_tls(client, rsocket_cert_files)
        assert await round_trip(client, b"hello") == b"HELLO"
        await client.aclose()
    assert received == [b"hello"]


async def test_after_an_upgrade_the_socket_is_a_tls_socket(rsocket_cert_files: CertFiles) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port, RSocket() as client:
        await client.connect("localhost", port)
        assert isinstance(client.stream, trio.SocketStream)
        await start_tls(client, rsocket_cert_files)
        assert client.is_secure()
        assert client.is_connected()
        assert isinstance(client.stream, TLSStream)
        assert client.get_tls_version() in {"TLSv1.2", "TLSv1.3"}
        assert client.get_cipher()
        assert client.get_peer_certificate()


async def test_the_upgrade_sends_the_connect_host_as_sni(rsocket_cert_files: CertFiles) -> None:
    names: list[str | None] = []
    async with python_server(python_server_context(rsocket_cert_files, names)) as (port, _), RSocket() as client:
        await client.connect("localhost", port)
        await start_tls(client, rsocket_cert_files)
        await round_trip(client)
        await client.aclose()
    assert names == ["localhost"]


async def test_the_host_argument_is_the_name_sent_and_checked(
    rsocket_ca: trustme.CA, rsocket_cert_files: CertFiles
) -> None:
    """Connected to an address, upgraded for a name: the certificate is only
    valid for the name, and the name is what the server hears as SNI."""
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rsocket_ca.issue_cert("mail.example.org").configure_cert(context)
    context.sni_callback = lambda _tls, name, _context: names.append(name)
    async with python_server(context) as (port, received), RSocket() as client:
        await client.connect("127.0.0.1", port)
        await start_tls(client, rsocket_cert_files, host="mail.example.org")
        assert await round_trip(client) == b"PING"
        await client.aclose()
    assert names == ["mail.example.org"]
    assert received == [b"ping"]


async def test_the_upgrade_checks_the_hostname_given_to_connect(rsocket_ca: trustme.CA) -> None:
    outcomes: list[object] = []
    other = rsocket_ca.issue_cert("other.example")
    async with serving_port(handler=starttls_echo(outcomes, **key_and_chain(other))) as port, RSocket() as client:
        await client.connect("127.0.0.1", port)
        with pytest.raises(TLSError, match="Certificate hostname mismatch"):
            await start_tls(client, rsocket_ca)


async def test_the_host_argument_is_checked_instead_of_the_connect_host(
    rsocket_ca: trustme.CA, rsocket_cert_files: CertFiles
) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port, RSocket() as client:
        await client.connect("localhost", port)
        with pytest.raises(TLSError, match="Certificate hostname mismatch"):
            await start_tls(client, rsocket_ca, host="other.example")


async def test_with_no_tls_settings_the_upgrade_uses_the_module_defaults(rsocket_cert_files: CertFiles) -> None:
    set_default_certs(authority=str(rsocket_cert_files.authority))
    async with python_server(python_server_context(rsocket_cert_files)) as (port, received), RSocket() as client:
        await client.connect("localhost", port)
        assert not client.is_secure()
        await start_tls(client, None)
        assert await round_trip(client) == b"PING"
        await client.aclose()
    assert received == [b"ping"]


async def test_with_no_tls_settings_at_all_an_unknown_issuer_is_not_trusted(rsocket_cert_files: CertFiles) -> None:
    """The module defaults verify against the system store, which does not
    know the throwaway CA."""
    async with python_server(python_server_context(rsocket_cert_files)) as (port, _), RSocket() as client:
        await client.connect("localhost", port)
        with pytest.raises(TLSError, match="Certificate not trusted"):
            await start_tls(client, None)


async def test_the_sockets_own_verify_setting_applies_to_the_upgrade(rsocket_cert_files: CertFiles) -> None:
    async with python_server(python_server_context(rsocket_cert_files)) as (port, received), RSocket() as client:
        await client.connect("localhost", port)
        client.set_verify(False, False)
        await start_tls(client, None)
        assert await round_trip(client) == b"PING"
        await client.aclose()
    assert received == [b"ping"]


async def test_statistics_count_the_bytes_written_before_and_after_the_upgrade(rsocket_cert_files: CertFiles) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port, RSocket() as client:
        await client.connect("localhost", port)
        await start_tls(client, rsocket_cert_files)
        await round_trip(client, b"12345")
        assert client.statistics().bytes_written == len(STARTTLS) + 5
        assert client.statistics().bytes_read == len(GO_AHEAD) + 5


# ----------------------------------------------------------------------------
# The server side


async def test_rsocket_on_both_ends_upgrade_and_talk(rsocket_cert_files: CertFiles) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port, RSocket() as client:
        await client.connect("localhost", port)
        await start_tls(client, rsocket_cert_files)
        assert await round_trip(client, b"over tls") == b"over tls"
    assert outcomes == [True]


def python_starttls_client(port: int, authority: str) -> bytes:
    """A STARTTLS client with Python's blocking ssl (in a thread)."""
    context = ssl.create_default_context(cafile=authority)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(STARTTLS)
        if read_line(raw) != GO_AHEAD:
            return b"no 220"
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            answer = tls.recv(1024)
            with contextlib.suppress(OSError):
                tls.unwrap()
    return answer


async def test_an_accepted_socket_upgrades_as_the_server_for_a_python_ssl_client(
    rsocket_cert_files: CertFiles,
) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port:
        answer = await trio.to_thread.run_sync(python_starttls_client, port, str(rsocket_cert_files.authority))
    assert answer == b"hello"
    assert outcomes == [True]


async def test_an_accepted_socket_without_a_certificate_cannot_upgrade(rsocket_cert_files: CertFiles) -> None:
    outcomes: list[object] = []
    async with serving_port(handler=starttls_echo(outcomes)) as port, RSocket() as client:
        await client.connect("localhost", port)
        with pytest.raises((TLSError, trio.BrokenResourceError)):
            await start_tls(client, rsocket_cert_files)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TLSError)


async def test_an_adopted_socket_upgrades_as_the_server_when_told(rsocket_cert_files: CertFiles) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener, RSocket() as client:
        await client.connect("localhost", listener.socket.getsockname()[1])
        server = RSocket.from_socket(await listener.accept(), server_side=True)
        async with server:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(start_tls, client, rsocket_cert_files)
                assert await server.read_until(b"\r\n") == STARTTLS
                await server.write(GO_AHEAD)
                server.set_certs(key=str(rsocket_cert_files.server_key), cert=str(rsocket_cert_files.server_cert))
                await server.upgrade_tls()
            assert server.is_secure()
            await client.write(b"up")
            assert await server.read_exactly(2) == b"up"


async def test_an_adopted_socket_upgrades_as_a_client_for_the_host_given(rsocket_cert_files: CertFiles) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port:
        client = RSocket.from_socket(await trio.open_tcp_stream("127.0.0.1", port))
        async with client:
            await start_tls(client, rsocket_cert_files, host="localhost")
            assert await round_trip(client) == b"ping"
    assert outcomes == [True]


# ----------------------------------------------------------------------------
# STARTTLS injection (CVE-2011-0411)


async def test_plaintext_sent_with_starttls_makes_the_server_upgrade_fail_and_close(
    rsocket_cert_files: CertFiles,
) -> None:
    """The client writes its command and more plaintext in one write; the
    server's read_until takes the first line and leaves the rest buffered."""
    outcomes: list[object] = []
    closed: list[bool] = []

    async def handler(_data: object, sock: RSocket) -> None:
        assert await sock.read_until(b"\r\n") == STARTTLS
        sock.set_certs(key=str(rsocket_cert_files.server_key), cert=str(rsocket_cert_files.server_cert))
        try:
            await sock.upgrade_tls()
        except TLSError as exc:
            outcomes.append(exc)
        closed.append(sock.is_closed())

    async with serving_port(handler=handler) as port, RSocket() as client:
        await client.connect("localhost", port)
        await client.write(STARTTLS + b"INJECTED\r\n")
        client.set_certs(authority=str(rsocket_cert_files.authority))
        with pytest.raises((TLSError, trio.BrokenResourceError)):
            await client.upgrade_tls()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TLSError)
    assert closed == [True]


async def test_plaintext_sent_with_the_go_ahead_makes_the_client_upgrade_fail_and_close(
    rsocket_cert_files: CertFiles,
) -> None:
    """A man in the middle appends plaintext to the server's answer: the
    client's read_until leaves it buffered, and the upgrade refuses to start."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener, RSocket() as client:
        await client.connect("localhost", listener.socket.getsockname()[1])
        peer = await listener.accept()
        async with peer:
            await client.write(STARTTLS)
            assert await peer.receive_some() == STARTTLS
            await peer.send_all(GO_AHEAD + b"INJECTED\r\n")
            assert await client.read_until(b"\r\n") == GO_AHEAD
            client.set_certs(authority=str(rsocket_cert_files.authority))
            with pytest.raises(TLSError):
                await client.upgrade_tls()
            assert client.is_closed()
            assert client.get_handle() == -1
            # Refused before the handshake began: no ClientHello went out.
            assert await peer.receive_some() == b""


async def test_after_an_injection_is_refused_reads_raise_closed_resource_error(
    rsocket_cert_files: CertFiles,
) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener, RSocket() as client:
        await client.connect("localhost", listener.socket.getsockname()[1])
        peer = await listener.accept()
        async with peer:
            await peer.send_all(GO_AHEAD + b"INJECTED\r\n")
            assert await client.read_until(b"\r\n") == GO_AHEAD
            client.set_certs(authority=str(rsocket_cert_files.authority))
            with pytest.raises(TLSError):
                await client.upgrade_tls()
            with pytest.raises(trio.ClosedResourceError):
                await client.read()


# ----------------------------------------------------------------------------
# Misuse


async def test_upgrading_an_unconnected_socket_is_an_rsocket_error() -> None:
    with pytest.raises(RSocketError, match="not connected"):
        await RSocket().upgrade_tls()


async def test_upgrading_a_closed_socket_is_an_rsocket_error(rsocket_pair: tuple[RSocket, RSocket]) -> None:
    client, _ = rsocket_pair
    client.close()
    with pytest.raises(RSocketError, match="not connected"):
        await client.upgrade_tls()


async def test_upgrading_a_tls_socket_is_an_rsocket_error_and_leaves_it_usable(
    rsocket_tls_pair: tuple[RSocket, RSocket],
) -> None:
    client, server = rsocket_tls_pair
    with pytest.raises(RSocketError, match="TLS"):
        await client.upgrade_tls()
    await client.write(b"still fine")
    assert await server.read_exactly(10) == b"still fine"


async def test_upgrading_twice_is_an_rsocket_error_and_leaves_the_socket_usable(rsocket_cert_files: CertFiles) -> None:
    outcomes: list[object] = []
    async with serving_starttls(outcomes, rsocket_cert_files) as port, RSocket() as client:
        await client.connect("localhost", port)
        await start_tls(client, rsocket_cert_files)
        with pytest.raises(RSocketError, match="TLS"):
            await client.upgrade_tls()
        assert await round_trip(client) == b"ping"


async def test_an_empty_host_is_a_value_error_before_any_io(rsocket_pair: tuple[RSocket, RSocket]) -> None:
    client, server = rsocket_pair
    client.set_tls()
    with pytest.raises(ValueError, match="host"):
        await client.upgrade_tls(host="")
    assert client.is_connected()
    await client.write(b"plain still")
    assert await server.read_exactly(11) == b"plain still"


async def test_upgrading_while_another_fiber_reads_is_busy(rsocket_pair: tuple[RSocket, RSocket]) -> None:
    client, server = rsocket_pair
    client.set_tls()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.read)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await client.upgrade_tls()
        await server.write(b"x")  # ends the read


# ----------------------------------------------------------------------------
# Deadlines


@pytest.mark.usefixtures("no_fd_leak")
async def test_a_client_upgrade_the_peer_never_answers_raises_deadline_error(
    mock_clock: trio.testing.MockClock,
) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    hello: list[bytes] = []
    async with listener, RSocket() as client:
        await client.connect("localhost", listener.socket.getsockname()[1])
        peer = await listener.accept()

        async def never_answer() -> None:
            hello.append(await peer.receive_some())
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(10)

        async with peer:
            client.set_tls()
            deadline = trio.current_time() + 10
            async with trio.open_nursery() as nursery:
                nursery.start_soon(never_answer)
                with pytest.raises(DeadlineError):
                    await client.upgrade_tls(deadline=deadline)
            assert trio.current_time() == deadline
    assert hello[0][:1] == b"\x16"  # the ClientHello went out: the deadline caught the handshake


async def test_a_server_upgrade_the_client_never_starts_raises_deadline_error(
    mock_clock: trio.testing.MockClock, rsocket_cert_files: CertFiles
) -> None:
    outcomes: list[object] = []

    async def handler(_data: object, sock: RSocket) -> None:
        sock.set_certs(key=str(rsocket_cert_files.server_key), cert=str(rsocket_cert_files.server_cert))
        try:
            await sock.upgrade_tls(deadline=trio.current_time() + 10)
        except DeadlineError as exc:
            outcomes.append(exc)

    async with serving_port(handler=handler) as port:
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        async with silent:
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(10)
            assert await silent.receive_some() == b""  # the server gave up and closed
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], DeadlineError)


async def test_a_plain_listener_ends_an_upgraded_connection_with_close_notify(rsocket_cert_files: CertFiles) -> None:
    async def upgrade_and_leave(_data: object, sock: RSocket) -> None:
        assert await sock.read_until(b"\r\n") == STARTTLS
        await sock.write(GO_AHEAD)
        sock.set_certs(key=str(rsocket_cert_files.server_key), cert=str(rsocket_cert_files.server_cert))
        await sock.upgrade_tls()
        await sock.write(b"bye")  # and return: the listener closes the socket

    async with serving_port(handler=upgrade_and_leave) as port, RSocket() as client:
        await client.connect("127.0.0.1", port)
        await start_tls(client, rsocket_cert_files)
        assert await client.read_exactly(3) == b"bye"
        assert await client.read() == b""  # close_notify: a clean end, not a broken stream


async def test_an_adopted_client_with_only_its_issuer_forgiven_still_needs_a_name() -> None:
    left, right = socket.socketpair()
    with right:
        sock = RSocket.from_socket(left)
        sock.set_verify(True, False)  # names are still checked: which name?
        with pytest.raises(RSocketError, match="needs the name to check"):
            await sock.upgrade_tls()
        sock.close()


async def test_an_adopted_client_with_no_name_to_check_keeps_its_connection() -> None:
    # A mistake in the call, found before anything is sent: the connection
    # goes on as it was, still plain, and the next upgrade_tls can name the host.
    left, right = socket.socketpair()
    with right:
        sock = RSocket.from_socket(left)
        with pytest.raises(RSocketError, match="needs the name to check"):
            await sock.upgrade_tls()
        assert sock.is_connected()
        assert not sock.is_secure()
        await sock.write(b"still here")
        assert right.recv(64) == b"still here"
        sock.close()


@pytest.mark.parametrize("settings", ["none", "set_tls", "client_context"])
async def test_a_server_side_upgrade_without_a_certificate_says_so_and_keeps_its_connection(settings: str) -> None:
    left, right = socket.socketpair()
    with right:
        sock = RSocket.from_socket(left, server_side=True)
        if settings == "set_tls":
            sock.set_tls()
        elif settings == "client_context":
            sock.set_ssl_context(ssl.create_default_context())
        with pytest.raises(TLSError) as raised:
            await sock.upgrade_tls()
        assert "server-side socket upgrading to TLS" in str(raised.value)
        assert "listen" not in str(raised.value)  # it is not a listener
        assert sock.is_connected()
        await sock.write(b"still here")
        assert right.recv(64) == b"still here"
        sock.close()
