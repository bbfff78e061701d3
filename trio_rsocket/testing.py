"""Test helpers for code that uses trio_rsocket; no pytest needed.

Everything here works in a script, under another test runner or in a
Hypothesis test, and importing this module imports neither pytest nor
trustme.  The pytest fixtures built on these helpers live beside them in
:mod:`trio_rsocket.pytest_plugin`, which pytest loads by itself through the
``pytest11`` entry point.  The ``trio-rsocket`` command (``demo``, ``echo``)
and the benchmark use the same helpers, so there is one way to make
throwaway certificates and one echo handler in the project.

:func:`new_ca`
    A throwaway :class:`trustme.CA` (trustme is imported on first use).
:func:`make_cert_files`
    Writes a CA, a server and a client certificate as PEM files
    (:class:`CertFiles`).
:func:`open_rsocket_pair`
    A connected ``(client, server)`` pair over loopback, plain or TLS.
:func:`open_rsocket_unix_pair`
    The same over a Unix socket in a temporary directory of its own.
:func:`echo_handler`
    A :meth:`~trio_rsocket.RSocket.listen` handler that sends back what it
    reads.

Theory of operation: a pair is made the way a user makes one, with
:meth:`RSocket.listen <trio_rsocket.RSocket.listen>` on ``127.0.0.1`` port 0
and :meth:`RSocket.connect <trio_rsocket.RSocket.connect>` to it (a Unix
pair: :meth:`~trio_rsocket.RSocket.listen_unix` and
:meth:`~trio_rsocket.RSocket.connect_unix` on a path in a fresh directory
under the system's temporary folder, short enough for ``sun_path``, which
pytest's ``tmp_path`` often is not).  Listening
sockets close a connection when its handler returns, so the handler hands its
socket out and then waits until the pair is released.  Nothing here sets a
timeout: under ``MockClock(autojump_threshold=0)`` the clock jumps whenever
every task waits, and a real socket waiting for the kernel would look like a
timeout that passed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from . import RSocket
from ._runtime import check_trio

if TYPE_CHECKING:
    import trustme

__all__ = ["CertFiles", "echo_handler", "make_cert_files", "new_ca", "open_rsocket_pair", "open_rsocket_unix_pair"]

# The fixtures used to live in this module; a suite that names it as a
# plugin (`pytest -p trio_rsocket.testing` with plugin autoloading off) still
# gets them through this.  A name, not an import: this module never imports
# pytest.
pytest_plugins = ["trio_rsocket.pytest_plugin"]

#: The interface the helpers and fixtures listen on: loopback, so nothing is
#: reachable from outside the machine.
LOOPBACK = "127.0.0.1"

#: The names a server certificate from :func:`make_cert_files` is valid for.
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")

#: How to install trustme, in words that are true both in a clone of the
#: repository (the ``testing`` extra) and anywhere else (trustme itself:
#: trio-rsocket is not on a package index).  The plugin, the ``trio-rsocket``
#: command and the benchmark give this hint too.
TRUSTME_HINT = "pip install '.[testing]' in a clone of trio-rsocket, or pip install trustme"


def new_ca() -> trustme.CA:
    """A fresh throwaway certificate authority (a :class:`trustme.CA`).

    trustme is imported here, not at the top, because the pytest plugin
    imports this module into every pytest run of a project that has
    trio-rsocket installed, whether it uses TLS or not.  Without trustme this
    raises :exc:`ImportError` saying how to install it.
    """
    try:
        import trustme
    except ImportError as exc:
        raise ImportError(f"throwaway certificates need trustme: {TRUSTME_HINT}", name="trustme") from exc
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

    #: The CA certificate, which a peer trusts (``authority=``).
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
    """Write the CA, a server and a client certificate from *ca* into *directory*.

    The one place in trio-rsocket that writes certificate files: the
    ``rsocket_cert_files`` fixture, :func:`open_rsocket_pair`, the
    ``trio-rsocket demo`` command and the benchmark all call it.  *ca* is
    usually :func:`new_ca`.  The directory must exist; the files are named
    ``ca.pem``, ``server.pem``, ``server.key``, ``client.pem`` and
    ``client.key``.
    """
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
    check_trio("open_rsocket_pair()")
    if not isinstance(tls, bool):
        raise TypeError(f"tls must be a bool, not {type(tls).__name__}")
    if cert_files is not None and not isinstance(cert_files, CertFiles):
        raise TypeError(f"cert_files must be a CertFiles, not {type(cert_files).__name__}")
    if tls and cert_files is None:
        with tempfile.TemporaryDirectory(prefix="trio-rsocket-") as directory:
            files = make_cert_files(new_ca(), directory)
            async with _open_pair(files) as pair:
                yield pair
        return
    async with _open_pair(files=cert_files if tls else None) as pair:
        yield pair


@asynccontextmanager
async def open_rsocket_unix_pair() -> AsyncIterator[tuple[RSocket, RSocket]]:
    """A connected ``(client, server)`` pair over a Unix socket, closed on exit.

    ::

        async with open_rsocket_unix_pair() as (client, server):
            await client.write(b"ping")
            assert await server.read() == b"ping"

    The socket file is made in a new directory of its own (``rsocket-...``
    in the system's temporary folder); the directory and everything in it
    are removed when the block exits, with both sockets closed.  No TLS: TLS
    over a Unix socket is refused.  Must be used inside trio.
    """
    check_trio("open_rsocket_unix_pair()")
    # Not a path under pytest's tmp_path: that can be longer than the 107
    # bytes sun_path holds.
    directory = tempfile.mkdtemp(prefix="rsocket-")
    try:
        async with _open_pair(None, unix_path=os.path.join(directory, "pair.sock")) as pair:
            yield pair
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def _open_pair(files: CertFiles | None, unix_path: str | None = None) -> AsyncIterator[tuple[RSocket, RSocket]]:
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
                if unix_path is None:
                    await listener.listen(LOOPBACK, 0, hand_out, nursery=nursery)
                    _, port = listener.get_addr()
                    await client.connect(LOOPBACK, port)
                else:
                    await listener.listen_unix(unix_path, hand_out, nursery=nursery)
                    await client.connect_unix(unix_path)
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


# ----------------------------------------------------------------------
# Echo
# ----------------------------------------------------------------------


async def echo_handler(data: object, sock: RSocket) -> None:
    """A :meth:`~trio_rsocket.RSocket.listen` handler that writes back whatever
    it reads, until end of file.

    ::

        await listener.listen("127.0.0.1", 0, echo_handler, nursery=nursery)

    *data* is the listener's handler data, unused.  A peer that resets the
    connection ends it with :exc:`trio.BrokenResourceError`, which the
    listener logs as a broken connection (a WARNING line, or DEBUG for a TLS
    peer that left without ``close_notify``), not as a handler error: it is
    not counted in ``handler_errors``.  Wrap this handler to count or report
    connections (the ``rsocket_echo_server`` fixture and ``trio-rsocket
    echo`` do).
    """
    while received := await sock.read():
        await sock.write(received)
