"""The pytest plugin: fixtures for code that uses trio_rsocket.

Registered through the ``pytest11`` entry point, so its fixtures are there in
every test suite of a project that installs trio-rsocket (``pytest -p
no:trio_rsocket`` switches it off).  They are made from the pytest-free
helpers in :mod:`trio_rsocket.testing`.  The fixtures that need certificates
import :mod:`trustme` when first used, and the async ones need pytest-trio;
the ``testing`` extra brings both.

Fixtures (see the "Testing with the fixtures" page of the docs):

``rsocket_ca``
    A :class:`trustme.CA` for the whole session.
``rsocket_cert_files``
    :class:`~trio_rsocket.testing.CertFiles`: the CA, a server and a client
    certificate as PEM files.
``rsocket_pair``
    A connected ``(client, server)`` pair of :class:`~trio_rsocket.RSocket`
    over loopback TCP.
``rsocket_tls_pair``
    The same over TLS, the client verifying the server against the CA.
``rsocket_unix_pair``
    The same over a Unix socket (in a temporary directory of its own).
``rsocket_echo_server``
    An echo server running in the test's trio run; yields its ``(host, port)``
    and reports connections the test left open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from . import RSocket
from .testing import (
    LOOPBACK,
    CertFiles,
    echo_handler,
    make_cert_files,
    new_ca,
    open_rsocket_pair,
    open_rsocket_unix_pair,
)

if TYPE_CHECKING:
    import trustme

__all__ = [
    "rsocket_ca",
    "rsocket_cert_files",
    "rsocket_echo_server",
    "rsocket_pair",
    "rsocket_tls_pair",
    "rsocket_unix_pair",
]


@pytest.fixture(scope="session")
def rsocket_ca() -> trustme.CA:
    """A throwaway :class:`trustme.CA`, one per test session."""
    try:
        return new_ca()
    except ImportError as exc:
        # One line that says what to do, not a traceback through this plugin.
        pytest.fail(f"rsocket_ca: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def rsocket_cert_files(rsocket_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """:class:`~trio_rsocket.testing.CertFiles` signed by ``rsocket_ca``: the CA,
    a server and a client certificate."""
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


@pytest.fixture
async def rsocket_unix_pair() -> AsyncIterator[tuple[RSocket, RSocket]]:
    """A connected ``(client, server)`` pair over a Unix socket, closed after the test.

    The socket file lives in a directory of its own under the system's
    temporary folder (pytest's ``tmp_path`` can be too long for a Unix
    socket's path), removed after the test.
    """
    async with open_rsocket_unix_pair() as pair:
        yield pair


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
            await echo_handler(data, sock)
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
