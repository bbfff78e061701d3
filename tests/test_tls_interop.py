"""TLS with peers nobody here wrote, over TLS 1.2 and 1.3: Python's blocking
:mod:`ssl` (in a thread) and the ``openssl`` command line (``s_client``,
``s_server``, as subprocesses on 127.0.0.1).

Each exchange sends data both ways and ends with a clean shutdown, started
by one side or the other: the side that closes sends close_notify, and the
other reads a clean end of file.

Then what a peer can send in the middle of a connection, arriving while the
RSocket is only reading: a TLS 1.3 KeyUpdate, with and without a reply
requested (``K`` and ``k`` on ``openssl``'s standard input; OpenSSL sends
the reply before the next data it writes, not from within a read), and a
TLS 1.2 renegotiation (``R`` on ``s_client``'s, ``r`` on ``s_server``'s,
which the RSocket client answers from within its read).  A renegotiation may
be refused (OpenSSL 3 servers refuse one that a client starts, unless told
otherwise), but the RSocket must never hang on it: data flows on, or the
connection ends with an error that says why.

Every wait is bounded (:data:`BOUND`) so that a hang fails the test.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio

from trio_rsocket import IncompleteReadError, RSocket, TLSError
from trio_rsocket.testing import LOOPBACK, CertFiles

from .conftest import OPENSSL, Handler, needs_openssl, serving_port, with_cert_files

#: Seconds any exchange may take before the test fails as a hang (each takes
#: a fraction of a second).
BOUND = 30

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
versions = pytest.mark.parametrize("version", list(VERSIONS))

#: Client to server: several TLS records.
REQUEST = b"ping " * 10_000
#: Server to client, after the echo: several records more.
ANSWER = bytes(range(256)) * 400

#: ``SSL_OP_ALLOW_CLIENT_RENEGOTIATION`` (OpenSSL 3.0), which the ssl module
#: does not name: a server that lets clients renegotiate.
ALLOW_CLIENT_RENEGOTIATION = 1 << 8


def pinned(context: ssl.SSLContext, version: str) -> ssl.SSLContext:
    """*context*, speaking only TLS *version*."""
    context.minimum_version = context.maximum_version = VERSIONS[version]
    return context


def receive_exactly(tls: ssl.SSLSocket, count: int) -> bytes:
    """Blocking: *count* bytes from *tls* (bounded by its timeout)."""
    data = b""
    while len(data) < count:  # bounded: each pass takes at least one byte or raises
        more = tls.recv(count - len(data))
        if not more:
            raise AssertionError(f"end of file after {len(data)} of {count} bytes")
        data += more
    return data


# ----------------------------------------------------------------------------
# Python's blocking ssl


@versions
async def test_rsocket_client_and_blocking_ssl_server(rsocket_cert_files: CertFiles, version: str) -> None:
    files = rsocket_cert_files
    context = pinned(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), version)
    context.load_cert_chain(files.server_cert, files.server_key)

    def serve_one(listening: socket.socket) -> bytes:
        connection, _ = listening.accept()
        connection.settimeout(BOUND)
        with context.wrap_socket(connection, server_side=True, suppress_ragged_eofs=False) as tls:
            request = receive_exactly(tls, len(REQUEST))
            tls.sendall(request)
            tls.sendall(ANSWER)
            # The server starts the shutdown: close_notify, then the client's
            # (unwrap raises if the client just drops the connection).
            tls.unwrap()
            return request

    with socket.create_server((LOOPBACK, 0)) as listening, trio.fail_after(BOUND):
        listening.settimeout(BOUND)
        async with trio.open_nursery() as nursery:
            served: list[bytes] = []

            async def server() -> None:
                served.append(await trio.to_thread.run_sync(serve_one, listening))

            nursery.start_soon(server)
            client = RSocket()
            client.set_certs(authority=str(files.authority))
            await client.connect("localhost", listening.getsockname()[1])
            assert client.get_tls_version() == f"TLSv{version}"
            await client.write(REQUEST)
            assert await client.read_exactly(len(REQUEST)) == REQUEST
            assert await client.read_exactly(len(ANSWER)) == ANSWER
            assert await client.read() == b""  # the server's close_notify: a clean end
            assert client.is_eof()
            await client.aclose()
    assert served == [REQUEST]


@versions
async def test_blocking_ssl_client_and_rsocket_listener(rsocket_cert_files: CertFiles, version: str) -> None:
    files = rsocket_cert_files
    ends: list[bytes] = []

    async def handler(_data: object, sock: RSocket) -> None:
        await sock.write(await sock.read_exactly(len(REQUEST)))
        await sock.write(ANSWER)
        ends.append(await sock.read())  # the client's close_notify: b""
        # Returning closes the socket with close_notify, which unwrap waits for.

    def client(port: int) -> tuple[bytes, bytes, str | None]:
        context = pinned(ssl.create_default_context(cafile=str(files.authority)), version)
        with (
            socket.create_connection((LOOPBACK, port), timeout=BOUND) as raw,
            context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls,
        ):
            tls.sendall(REQUEST)
            echoed = receive_exactly(tls, len(REQUEST))
            answer = receive_exactly(tls, len(ANSWER))
            negotiated = tls.version()
            tls.unwrap()  # the client starts the shutdown
            return echoed, answer, negotiated

    with trio.fail_after(BOUND):
        async with serving(rsocket_cert_files, handler) as port:
            echoed, answer, negotiated = await trio.to_thread.run_sync(client, port)
    assert (echoed, answer) == (REQUEST, ANSWER)
    assert negotiated == f"TLSv{version}"
    assert ends == [b""]


# ----------------------------------------------------------------------------
# openssl s_client and s_server


def serving(
    files: CertFiles, handler: Handler, context: ssl.SSLContext | None = None
) -> AbstractAsyncContextManager[int]:
    """:func:`~tests.conftest.serving_port` with the server certificate of
    *files*, or with *context* (the escape hatch)."""
    if context is None:
        return serving_port(with_cert_files(files), handler)
    return serving_port(lambda sock: sock.set_ssl_context(context), handler)


class Output:
    """An ``openssl`` process's output, line by line, keeping what comes
    after the line waited for (for the next wait)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._pending = b""
        self.seen: list[bytes] = []

    async def line_with(self, *wanted: bytes) -> bytes:
        """The next whole line that contains every one of *wanted*."""
        for _ in range(100_000):  # bounded: a line or a chunk per pass
            if b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                self.seen.append(line)
                if all(word in line for word in wanted):
                    return line
                continue
            chunk = await self._stream.receive_some()
            if not chunk:
                break
            self._pending += chunk
        raise AssertionError(f"no line with {wanted!r}; the output ended with {self.seen[-20:]!r}")


@asynccontextmanager
async def openssl(*arguments: str) -> AsyncIterator[tuple[trio.Process, Output]]:
    """``openssl *arguments*`` with pipes for its standard input and output;
    killed at the end if it is still running."""
    assert OPENSSL is not None
    process = await trio.lowlevel.open_process(
        [OPENSSL, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    try:
        yield process, Output(process.stdout)
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            for pipe in (process.stdin, process.stdout):
                assert pipe is not None
                await pipe.aclose()


async def type_in(process: trio.Process, line: bytes) -> None:
    """Send *line* to *process*'s standard input (data or a command letter)."""
    assert process.stdin is not None
    await process.stdin.send_all(line + b"\n")


def s_client(files: CertFiles, port: int, *options: str) -> tuple[str, ...]:
    """``s_client`` arguments: verify the server, show nothing but the data
    (and what ``options`` add), take command letters from standard input,
    and close with close_notify when standard input ends."""
    return (
        "s_client",
        "-connect",
        f"{LOOPBACK}:{port}",
        "-servername",
        "localhost",
        "-CAfile",
        str(files.authority),
        "-verify_return_error",
        "-quiet",
        "-no_ign_eof",  # after -quiet, which turns it on
        *options,
    )


def s_server(files: CertFiles, *options: str) -> tuple[str, ...]:
    """``s_server`` arguments: one connection on an ephemeral loopback port
    (it says which in its ``ACCEPT`` line)."""
    return (
        "s_server",
        "-accept",
        f"{LOOPBACK}:0",
        "-cert",
        str(files.server_cert),
        "-key",
        str(files.server_key),
        "-naccept",
        "1",
        *options,
    )


async def connect_to_s_server(files: CertFiles, output: Output) -> RSocket:
    port = int((await output.line_with(b"ACCEPT")).rsplit(b":", 1)[1])
    client = RSocket()
    client.set_certs(authority=str(files.authority))
    await client.connect("localhost", port)
    return client


def lines_to(channel: trio.MemorySendChannel[bytes | Exception]) -> Callable[[Any, RSocket], Any]:
    """A listener handler that reads lines and sends each to *channel*,
    writing only when a line asks for it (``echo ...``): until then the
    server side does nothing but read.  The end of the connection goes to
    *channel* too: ``b""`` for a clean one, else the exception."""

    async def handler(_data: object, sock: RSocket) -> None:
        try:
            for _ in range(1000):  # bounded: a test sends a handful of lines
                line = await sock.read_until(b"\n")
                await channel.send(line)
                if line.startswith(b"echo "):
                    await sock.write(line.removeprefix(b"echo "))
        except IncompleteReadError as exc:
            await channel.send(exc.partial)
        except (trio.BrokenResourceError, TLSError) as exc:
            await channel.send(exc)

    return handler


@needs_openssl
@versions
@pytest.mark.parametrize("closer", ["openssl", "rsocket"])
async def test_openssl_s_client_and_rsocket_listener(rsocket_cert_files: CertFiles, version: str, closer: str) -> None:
    received, handler_lines = trio.open_memory_channel[bytes | Exception](10)

    async def handler(_data: object, sock: RSocket) -> None:
        await lines_to(received)(_data, sock) if closer == "openssl" else await echo_one_line(sock)

    async def echo_one_line(sock: RSocket) -> None:
        await sock.write(await sock.read_until(b"\n"))
        await sock.write(b"bye\n")
        # Returning closes the socket with close_notify.

    with trio.fail_after(BOUND):
        async with (
            serving(rsocket_cert_files, handler) as port,
            openssl(*s_client(rsocket_cert_files, port, f"-tls1_{version[-1]}")) as (process, output),
        ):
            await type_in(process, b"echo hello from openssl")
            if closer == "openssl":
                assert await handler_lines.receive() == b"echo hello from openssl\n"
                assert await output.line_with(b"hello") == b"hello from openssl"
                assert process.stdin is not None
                await process.stdin.aclose()  # s_client sends close_notify
                assert await handler_lines.receive() == b""  # a clean end of file
            else:
                assert await output.line_with(b"hello") == b"echo hello from openssl"
                assert await output.line_with(b"bye") == b"bye"
            # s_client exits 1 if the connection ended without close_notify.
            assert await process.wait() == 0


@needs_openssl
@versions
async def test_rsocket_client_and_openssl_s_server(rsocket_cert_files: CertFiles, version: str) -> None:
    files = rsocket_cert_files
    with trio.fail_after(BOUND):
        async with openssl(*s_server(files, f"-tls1_{version[-1]}")) as (process, output):
            client = await connect_to_s_server(files, output)
            assert client.get_tls_version() == f"TLSv{version}"
            await client.write(b"hello from rsocket\n")
            assert await output.line_with(b"hello") == b"hello from rsocket"
            await type_in(process, b"hello from openssl")
            assert await client.read_until(b"\n") == b"hello from openssl\n"
            await client.aclose()
            # DONE: s_server read close_notify (SSL_ERROR_ZERO_RETURN).
            await output.line_with(b"DONE")
            assert await process.wait() == 0


@needs_openssl
async def test_openssl_s_server_quitting_without_close_notify_is_not_an_end_of_file(
    rsocket_cert_files: CertFiles,
) -> None:
    files = rsocket_cert_files
    with trio.fail_after(BOUND):
        async with openssl(*s_server(files)) as (process, output):
            client = await connect_to_s_server(files, output)
            await type_in(process, b"Q")  # s_server quits without close_notify
            with pytest.raises(trio.BrokenResourceError, match="close_notify"):
                await client.read()
            client.close()


# ----------------------------------------------------------------------------
# KeyUpdate (TLS 1.3)


@needs_openssl
@pytest.mark.parametrize("command", ["K", "k"], ids=["reply-requested", "no-reply"])
async def test_key_update_from_openssl_s_client_is_answered_and_data_flows_on(
    rsocket_cert_files: CertFiles, command: str
) -> None:
    received, handler_lines = trio.open_memory_channel[bytes | Exception](10)
    with trio.fail_after(BOUND):
        async with (
            serving(rsocket_cert_files, lines_to(received)) as port,
            openssl(*s_client(rsocket_cert_files, port, "-tls1_3", "-msg")) as (process, output),
        ):
            await type_in(process, b"one")
            assert await handler_lines.receive() == b"one\n"
            # The KeyUpdate reaches the listener while it does nothing but read.
            await type_in(process, command.encode())
            await output.line_with(b">>> TLS 1.3, Handshake", b"KeyUpdate")
            # Client to server, under the client's new keys.
            await type_in(process, b"two")
            assert await handler_lines.receive() == b"two\n"
            # Server to client: OpenSSL sends the requested KeyUpdate before
            # the next data it writes, under the server's new keys.
            await type_in(process, b"echo three")
            assert await handler_lines.receive() == b"echo three\n"
            if command == "K":
                await output.line_with(b"<<< TLS 1.3, Handshake", b"KeyUpdate")
            await output.line_with(b"three")
            assert (command == "K") == any(b"<<<" in line and b"KeyUpdate" in line for line in output.seen)
            await type_in(process, b"four")
            assert await handler_lines.receive() == b"four\n"
            assert process.stdin is not None
            await process.stdin.aclose()
            assert await handler_lines.receive() == b""
            assert await process.wait() == 0


async def read_lines(client: RSocket, count: int, channel: trio.MemorySendChannel[bytes | Exception]) -> None:
    """Read *count* lines from *client* in a fiber of its own, sending each to
    *channel*: until the first arrives, the client does nothing but read."""
    for _ in range(count):
        await channel.send(await client.read_until(b"\n"))


@needs_openssl
@pytest.mark.parametrize("command", ["K", "k"], ids=["reply-requested", "no-reply"])
async def test_key_update_from_openssl_s_server_is_answered_and_data_flows_on(
    rsocket_cert_files: CertFiles, command: str
) -> None:
    files = rsocket_cert_files
    received, client_lines = trio.open_memory_channel[bytes | Exception](10)
    with trio.fail_after(BOUND):
        async with openssl(*s_server(files, "-tls1_3", "-msg")) as (process, output), trio.open_nursery() as nursery:
            client = await connect_to_s_server(files, output)
            await client.write(b"one\n")
            await output.line_with(b"one")
            # The KeyUpdate reaches the client while it does nothing but read.
            nursery.start_soon(read_lines, client, 1, received)
            await type_in(process, command.encode())
            await output.line_with(b">>> TLS 1.3, Handshake", b"KeyUpdate")
            # Server to client, under the server's new keys.
            await type_in(process, b"two")
            assert await client_lines.receive() == b"two\n"
            # Client to server: OpenSSL sends the requested KeyUpdate before
            # the next data it writes, under the client's new keys.
            await client.write(b"three\n")
            if command == "K":
                await output.line_with(b"<<< TLS 1.3, Handshake", b"KeyUpdate")
            await output.line_with(b"three")
            assert (command == "K") == any(b"<<<" in line and b"KeyUpdate" in line for line in output.seen)
            await client.aclose()
            await output.line_with(b"DONE")
            assert await process.wait() == 0


# ----------------------------------------------------------------------------
# Renegotiation (TLS 1.2)


@needs_openssl
@pytest.mark.parametrize("allowed", [False, True], ids=["server-default", "server-allows-it"])
async def test_renegotiation_from_openssl_s_client_never_hangs_the_listener(
    rsocket_cert_files: CertFiles, allowed: bool
) -> None:
    files = rsocket_cert_files
    context = None
    if allowed:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.server_cert, files.server_key)
        context.options |= ALLOW_CLIENT_RENEGOTIATION
    received, handler_lines = trio.open_memory_channel[bytes | Exception](10)
    with trio.fail_after(BOUND):
        async with (
            serving(files, lines_to(received), context) as port,
            openssl(*s_client(files, port, "-tls1_2")) as (process, output),
        ):
            await type_in(process, b"one")
            assert await handler_lines.receive() == b"one\n"
            await type_in(process, b"R")
            await output.line_with(b"RENEGOTIATING")
            # A refused renegotiation ends s_client, and its standard input with it.
            with contextlib.suppress(trio.BrokenResourceError):
                await type_in(process, b"echo two")
            outcome = await handler_lines.receive()
            if isinstance(outcome, Exception):
                # Refused: the connection ended, saying why (never a hang, never a clean end).
                assert not allowed
                assert isinstance(outcome, trio.BrokenResourceError)
                assert "TLS" in str(outcome)
                assert await process.wait() != 0
            else:
                # Renegotiated: data flows on, both ways.
                assert outcome == b"echo two\n"
                assert await output.line_with(b"two") == b"two"
                assert process.stdin is not None
                await process.stdin.aclose()
                assert await handler_lines.receive() == b""
                assert await process.wait() == 0


@needs_openssl
async def test_renegotiation_from_openssl_s_server_is_answered_while_the_client_reads(
    rsocket_cert_files: CertFiles,
) -> None:
    files = rsocket_cert_files
    received, client_lines = trio.open_memory_channel[bytes | Exception](10)
    with trio.fail_after(BOUND):
        async with (
            openssl(*s_server(files, "-tls1_2", "-msg")) as (process, output),
            trio.open_nursery() as nursery,
        ):
            client = await connect_to_s_server(files, output)
            await client.write(b"one\n")
            await output.line_with(b"one")
            nursery.start_soon(read_lines, client, 1, received)
            await type_in(process, b"r")
            await output.line_with(b">>> TLS 1.2, Handshake", b"HelloRequest")
            # The client's new handshake, started while it did nothing but read.
            await output.line_with(b"<<< TLS 1.2, Handshake", b"ClientHello")
            await output.line_with(b"<<< TLS 1.2, Handshake", b"Finished")
            await type_in(process, b"two")
            assert await client_lines.receive() == b"two\n"
            await client.write(b"three\n")
            await output.line_with(b"three")
            await client.aclose()
            await output.line_with(b"DONE")
            assert await process.wait() == 0
