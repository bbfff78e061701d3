"""pytest plugin and test helpers for code that uses trio_rsocket.

Registered through the ``pytest11`` entry point, so its fixtures are there in
every test suite of a project that installs trio-rsocket.  The fixtures that
need certificates import :mod:`trustme` when first used, and the async ones
need pytest-trio; ``pip install 'trio-rsocket[testing]'`` brings both.

Fixtures (see the "Testing with the fixtures" page of the docs):

``rsocket_ca``
    A :class:`trustme.CA` for the whole session.
``rsocket_cert_files``
    :class:`CertFiles`: the CA, a server and a client certificate as PEM files.
``rsocket_pair``
    A connected ``(client, server)`` pair of :class:`~trio_rsocket.RSocket`
    over loopback TCP.
``rsocket_tls_pair``
    The same over TLS, the client verifying the server against the CA.
``rsocket_echo_server``
    An echo server running in the test's trio run; yields its ``(host, port)``
    and reports connections the test left open.

Without pytest fixtures (a script, another test runner, a hypothesis test),
:func:`open_rsocket_pair` gives the same pairs.

Theory of operation: a pair is made the way a user makes one, with
:meth:`RSocket.listen <trio_rsocket.RSocket.listen>` on ``127.0.0.1`` port 0
and :meth:`RSocket.connect <trio_rsocket.RSocket.connect>` to it.  Listening
sockets close a connection when its handler returns, so the handler hands its
socket out and then waits until the pair is released.  Nothing here sets a
timeout: under ``MockClock(autojump_threshold=0)`` the clock jumps whenever
every task waits, and a real socket waiting for the kernel would look like a
timeout that passed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from . import RSocket

if TYPE_CHECKING:
    import trustme

__all__ = ["CertFiles", "make_cert_files", "open_rsocket_pair"]

#: The interface every fixture listens on: loopback, so nothing is reachable
#: from outside the machine.
LOOPBACK = "127.0.0.1"

#: The names a server certificate from :func:`make_cert_files` is valid for.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")

_INSTALL_HINT = "pip install 'trio-rsocket[testing]'"


def _new_ca() -> trustme.CA:
    """A fresh throwaway certificate authority.

    trustme is imported here, not at the top, because this module is loaded
    into every pytest run of a project that has trio-rsocket installed,
    whether it uses TLS or not.
    """
    try:
        import trustme
    except ImportError as exc:
        raise ImportError(f"trio_rsocket's TLS fixtures need trustme: {_INSTALL_HINT}", name="trustme") from exc
    return trustme.CA(organization_name="trio-rsocket test CA")


@dataclass(frozen=True)
class CertFiles:
    """PEM files made by :func:`make_cert_files` (the ``rsocket_cert_files`` fixture).

    The server certificate is valid for ``localhost``, ``127.0.0.1`` and
    ``::1``.  The files go to :meth:`RSocket.set_certs
    <trio_rsocket.RSocket.set_certs>`::

        listener.set_certs(key=files.server_key, cert=files.server_cert)
        client.set_certs(authority=files.authority)
    """

    #: The CA certificate: what a peer trusts (``authority=``).
    authority: Path
    #: The server's certificate chain (``cert=`` on the listener).
    server_cert: Path
    #: The server's private key (``key=`` on the listener).
    server_key: Path
    #: A client certificate signed by the same CA, for mutual TLS.
    client_cert: Path
    #: The client certificate's private key.
    client_key: Path


def make_cert_files(ca: trustme.CA, directory: str | os.PathLike[str]) -> CertFiles:
    """Write the CA, a server and a client certificate from *ca* into *directory*."""
    folder = Path(directory)
    server = ca.issue_cert(*SERVER_NAMES)
    client = ca.issue_cert("client@trio-rsocket.test")
    files = CertFiles(
        authority=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.authority))
    # The chain, leaf first: what a server sends so that peers can verify it.
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.server_key))
    files.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files


# ----------------------------------------------------------------------
# Pairs
# ----------------------------------------------------------------------


@asynccontextmanager
async def open_rsocket_pair(
    tls: bool = False, *, cert_files: CertFiles | None = None
) -> AsyncIterator[tuple[RSocket, RSocket]]:
    """A connected ``(client, server)`` pair over loopback, closed on exit.

    ::

        async with open_rsocket_pair() as (client, server):
            await client.write(b"ping")
            assert await server.read() == b"ping"

    With ``tls=True`` the server presents a certificate from a throwaway CA
    (or from *cert_files*) and the client verifies it; this needs trustme
    unless *cert_files* is given.  Both sockets are closed, and the listener
    that made them is gone, when the block exits.  Must be used inside trio.
    """
    if not isinstance(tls, bool):
        raise TypeError(f"tls must be a bool, not {type(tls).__name__}")
    if cert_files is not None and not isinstance(cert_files, CertFiles):
        raise TypeError(f"cert_files must be a CertFiles, not {type(cert_files).__name__}")
    if tls and cert_files is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="trio-rsocket-") as directory:
            files = make_cert_files(_new_ca(), directory)
            async with _open_pair(files) as pair:
                yield pair
        return
    async with _open_pair(files=cert_files if tls else None) as pair:
        yield pair


@asynccontextmanager
async def _open_pair(files: CertFiles | None) -> AsyncIterator[tuple[RSocket, RSocket]]:
    send_accepted, receive_accepted = trio.open_memory_channel[RSocket](1)
    released = trio.Event()

    async def hand_out(_data: object, sock: RSocket) -> None:
        # The listener closes the socket when this returns: keep it until the
        # pair is released.
        await send_accepted.send(sock)
        await released.wait()

    listener = RSocket()
    client = RSocket()
    server: RSocket | None = None
    if files is not None:
        listener.set_certs(key=str(files.server_key), cert=str(files.server_cert))
        client.set_certs(authority=str(files.authority))
    # An exception from the body leaves through the nursery, which wraps it
    # in an ExceptionGroup; the body's own exception is unwrapped again so
    # that `async with open_rsocket_pair()` raises what the body raised.
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await listener.listen(LOOPBACK, 0, hand_out, nursery=nursery)
                _, port = listener.get_addr()
                await client.connect(LOOPBACK, port)
                server = await receive_accepted.receive()
                # One connection is all a pair needs; close the port now.
                listener.close()
                try:
                    yield client, server
                except BaseException as exc:
                    body_error = exc
                    raise
            finally:
                client.close()
                if server is not None:
                    server.close()
                listener.close()
                released.set()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if body_error is None or list(group.exceptions) != [body_error]:
            raise
    # Raised here, outside the except block, so that its __context__ stays
    # the body's own and does not become the group.
    if body_error is not None:
        raise body_error


@pytest.fixture(scope="session")
def rsocket_ca() -> trustme.CA:
    """A throwaway :class:`trustme.CA`, one per test session."""
    try:
        return _new_ca()
    except ImportError:
        # One line that says what to do, not a traceback through this plugin.
        pytest.fail(f"rsocket_ca needs trustme: {_INSTALL_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def rsocket_cert_files(rsocket_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """:class:`CertFiles` signed by ``rsocket_ca``: the CA, a server and a client certificate."""
    return make_cert_files(rsocket_ca, tmp_path_factory.mktemp("trio-rsocket-certs"))


@pytest.fixture
async def rsocket_pair() -> AsyncIterator[tuple[RSocket, RSocket]]:
    """A connected ``(client, server)`` pair over loopback TCP, closed after the test."""
    async with open_rsocket_pair() as pair:
        yield pair


@pytest.fixture
async def rsocket_tls_pair(rsocket_cert_files: CertFiles) -> AsyncIterator[tuple[RSocket, RSocket]]:
    """A connected ``(client, server)`` TLS pair over loopback, closed after the test.

    The server presents ``rsocket_cert_files.server_cert``; the client trusts
    ``rsocket_cert_files.authority`` and checks the name ``127.0.0.1``.
    """
    async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as pair:
        yield pair


# ----------------------------------------------------------------------
# Echo server
# ----------------------------------------------------------------------


async def _echo(_data: object, sock: RSocket) -> None:
    """A connection handler that writes back whatever it reads, until end of file."""
    while data := await sock.read():
        await sock.write(data)


@pytest.fixture
async def rsocket_echo_server() -> AsyncIterator[tuple[str, int]]:
    """An echo server on loopback, running for the duration of the test.

    Yields ``(host, port)`` to connect to.  Connections still open when the
    test ends are reported as a failure: every client the test opens should
    be closed by then (``async with RSocket() as sock:``).
    """
    open_connections = 0

    async def counted_echo(data: object, sock: RSocket) -> None:
        nonlocal open_connections
        open_connections += 1
        try:
            await _echo(data, sock)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away abruptly: not the server's problem
        finally:
            open_connections -= 1

    listener = RSocket()
    async with trio.open_nursery() as nursery:
        await listener.listen(LOOPBACK, 0, counted_echo, nursery=nursery)
        try:
            yield listener.get_addr()
            # Only after a test that ran to its end (a cancelled one gets
            # trio.Cancelled here): let clients it closed at the very end
            # reach their handlers as end of file, so only open ones count.
            await trio.testing.wait_all_tasks_blocked()
            leaked = open_connections
        finally:
            listener.close()
            nursery.cancel_scope.cancel()
    if leaked:
        pytest.fail(
            f"rsocket_echo_server: {leaked} connection(s) were still open when the test ended; "
            "close every client socket the test opens (async with RSocket() as sock: ...)",
            pytrace=False,
        )
