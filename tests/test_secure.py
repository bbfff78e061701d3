"""The TLS engine (``_secure``): a non-blocking SSLSocket driven directly.

Each of the engine's pitfalls over real loopback sockets and real
handshakes: bytes OpenSSL already holds, a reader and a writer at full
duplex on one descriptor, a KeyUpdate in the middle of it, close() waking
every waiter, ragged ends, and the stream handed out as ``RSocket.stream``.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme

from trio_rsocket import RSocket, TLSStream, _secure, _tls

from .conftest import (
    OPENSSL,
    fix_buffers,
    jump_when_blocked,
    needs_openssl,
    plain_pair,
    read_line_containing,
    tls_pair_by_hand,
    trusting,
    with_cert,
)


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
async def pair(tls_pair: tuple[RSocket, RSocket]) -> tuple[RSocket, RSocket]:
    """Every pair here is a TLS pair (``tls_pair``, with this module's certificate)."""
    return tls_pair


def kernel_holds_nothing(sock: RSocket) -> bool:
    """Whether the kernel has no received bytes for *sock* (it asks the
    descriptor itself, under OpenSSL)."""
    try:
        socket.socket.recv(sock._socket(), 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False


# ----------------------------------------------------------------------------
# Reads: what OpenSSL holds comes first


async def test_a_short_read_leaves_the_rest_of_the_record_readable_without_a_wait(
    mock_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    # MockClock with autojump: a read or wait that blocked would meet its
    # deadline at once, and the test would fail with DeadlineError.
    client, server = pair
    await server.write(b"a" * 10_000)  # one record
    assert await client.read(10, deadline=trio.current_time() + 5) == b"a" * 10
    assert kernel_holds_nothing(client)  # the rest was decrypted: OpenSSL holds it
    await client.wait_readable(deadline=trio.current_time() + 5)
    assert await client.read(deadline=trio.current_time() + 5) == b"a" * 9_990


async def test_read_into_decrypts_into_the_callers_buffer_record_by_record(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    data = os.urandom(3 * _secure.RECORD_SIZE + 100)
    await server.write(data)
    buffer = bytearray(len(data) + 10)
    view = memoryview(buffer)
    got = 0
    while got < len(data):  # bounded: every read returns at least a byte
        got += await client.read_into(view[got:])
    assert bytes(buffer[:got]) == data
    assert buffer[got:] == bytes(10)


# ----------------------------------------------------------------------------
# Full duplex: a reader and a writer on one descriptor


async def test_a_reader_and_a_writer_run_at_full_duplex_on_both_sides(pair: tuple[RSocket, RSocket]) -> None:
    # Small kernel buffers: every side waits for readability and
    # writability over and over, the reader and the writer of one socket at
    # the same time (trio allows one waiter per direction of a descriptor).
    client, server = pair
    fix_buffers(client, server)
    outgoing = {client: os.urandom(2 << 20), server: os.urandom(2 << 20)}
    received: dict[RSocket, bytearray] = {client: bytearray(), server: bytearray()}

    async def write(sock: RSocket) -> None:
        view = memoryview(outgoing[sock])
        for start in range(0, len(view), 100_000):  # not a multiple of a record
            await sock.write(view[start : start + 100_000])

    async def read(sock: RSocket, expected: int) -> None:
        while len(received[sock]) < expected:  # bounded: every read returns at least a byte
            received[sock] += await sock.read()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, client)
        nursery.start_soon(write, server)
        nursery.start_soon(read, client, len(outgoing[server]))
        nursery.start_soon(read, server, len(outgoing[client]))
    assert received[client] == outgoing[server]
    assert received[server] == outgoing[client]


async def _quiet_part(client: RSocket, server: RSocket) -> _secure.TLSConnection:
    """The client's TLS part, once the kernel holds nothing more for it to read."""
    await server.write(b"warm")  # the session tickets and this: the kernel then holds nothing
    assert await client.read() == b"warm"
    conn = client._part
    assert isinstance(conn, _secure.TLSConnection)
    return conn


async def test_a_fiber_that_needs_the_direction_the_other_waits_on_parks_and_both_wake(
    pair: tuple[RSocket, RSocket],
) -> None:
    # A write that must read while the reader waits for data (renegotiation,
    # a post-handshake message) would be a second waiter on one direction:
    # trio refuses it, so the engine parks it until the first wait ends.
    client, server = pair
    conn = await _quiet_part(client, server)
    woken: list[str] = []

    async def wait(name: str) -> None:
        await conn._wait(trio.lowlevel.wait_readable)
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "second")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        await server.write(b"data")
    assert sorted(woken) == ["first", "second"]
    assert await client.read() == b"data"


async def test_a_parked_fiber_wakes_when_the_waiting_one_is_cancelled(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    conn = await _quiet_part(client, server)
    woken: list[str] = []

    async def wait(name: str, scope: trio.CancelScope) -> None:
        with scope:
            await conn._wait(trio.lowlevel.wait_readable)
            woken.append(name)

    first, second = trio.CancelScope(), trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "first", first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "second", second)
        await trio.testing.wait_all_tasks_blocked()
        first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        # No lost wakeup: the parked one came back to try again.
        assert woken == ["second"]


@needs_openssl
async def test_a_key_update_in_the_middle_of_full_duplex_traffic_is_answered_and_data_flows_on(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    # openssl s_server's "K" command sends a TLS 1.3 KeyUpdate asking for
    # one back, while this client's writer is busy writing and its reader
    # waits: the reader takes the update, the writer sends the answer.
    assert OPENSSL is not None
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    command = [OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-cert", str(tmp_path / "server.pem")]
    command += ["-naccept", "1", "-tls1_3"]
    process = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None
    assert process.stdout is not None
    stdin, stdout = process.stdin, process.stdout
    try:
        port = int((await read_line_containing(stdout, b"ACCEPT")).split(b":")[-1])
        seen = bytearray()
        async with RSocket() as client:
            trusting(ca)(client)
            await client.connect("localhost", port)
            with trio.fail_after(60):  # a safety net only: the loops below end by themselves
                async with trio.open_nursery() as nursery:
                    updated = trio.Event()

                    async def drain() -> None:  # what the server prints: what it received
                        for _ in range(100_000):
                            chunk = await stdout.receive_some()
                            if not chunk:
                                return
                            seen.extend(chunk)
                            if b"SSL_do_handshake -> 1" in seen:
                                updated.set()
                            if b"client after the update" in seen:
                                return

                    nursery.start_soon(drain)
                    async with trio.open_nursery() as traffic:

                        async def write() -> None:
                            for _ in range(64):
                                await client.write(b"x" * 16_000 + b"\n")

                        traffic.start_soon(write)
                        await stdin.send_all(b"K\n")  # a line of its own, or it is not a command
                        await updated.wait()
                        await stdin.send_all(b"server after the update\n")
                        line = await client.read_until(b"server after the update\n", max_bytes=1 << 20)
                        assert line.endswith(b"server after the update\n")
                    await client.write(b"client after the update\n")
            assert b"client after the update" in seen
            assert client.get_tls_version() == "TLSv1.3"
    finally:
        process.kill()
        await process.wait()


# ----------------------------------------------------------------------------
# close() from another fiber


async def test_close_from_another_fiber_wakes_the_reader_and_the_writer(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    fix_buffers(client, server)
    outcomes: list[type[BaseException]] = []

    async def attempt(call: Callable[[], object]) -> None:
        try:
            await call()  # type: ignore[misc]
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            outcomes.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, client.read)
        nursery.start_soon(attempt, lambda: client.write(b"x" * (8 << 20)))
        await trio.testing.wait_all_tasks_blocked()
        client.close()
    assert outcomes == [trio.ClosedResourceError, trio.ClosedResourceError]


@pytest.mark.parametrize("delay", range(6))
async def test_wait_writable_racing_close_never_hands_trio_a_closed_descriptor(
    ca: trustme.CA, server_cert: trustme.LeafCert, delay: int
) -> None:
    # Issue 16 item 6: with trio's SSLStream, a close at the right scheduling
    # point passed fd -1 to trio (ValueError, and a registration left behind).
    client, server = await tls_pair_by_hand(ca, server_cert)
    outcomes: list[object] = []

    async def wait() -> None:
        try:
            await client.wait_writable()
            outcomes.append("writable")
        except trio.ClosedResourceError:
            outcomes.append("closed")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            for _ in range(delay):
                await trio.lowlevel.checkpoint()
            client.close()
        assert outcomes in (["writable"], ["closed"])
    finally:
        client.close()
        server.close()


# ----------------------------------------------------------------------------
# Ragged ends (a peer that closes without close_notify)


async def test_a_ragged_close_is_an_error_by_default_and_says_so(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    server.close()  # no close_notify
    with pytest.raises(trio.BrokenResourceError, match="without close_notify") as caught:
        await client.read()
    assert isinstance(caught.value, _secure.RaggedCloseError)
    assert client.is_eof()
    with pytest.raises(trio.BrokenResourceError, match="without close_notify"):
        await client.read()  # and says so again


async def test_wait_readable_returns_on_a_ragged_close_and_the_next_read_reports_it(
    mock_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    # As on plain TCP, where end of file and a reset count as readable
    # (issue 16 item 11).
    client, server = pair
    server.close()
    await client.wait_readable(deadline=trio.current_time() + 5)
    assert client.is_eof()
    with pytest.raises(trio.BrokenResourceError, match="without close_notify"):
        await client.read()


async def test_ragged_eof_true_reads_a_ragged_close_as_end_of_file(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    client, server = await tls_pair_by_hand(ca, server_cert, client_setup=lambda sock: sock.set_tls(ragged_eof=True))
    try:
        await server.write(b"last words")
        server.close()
        assert await client.read_exactly(10) == b"last words"
        assert await client.read() == b""
        assert client.is_eof()
    finally:
        client.close()


async def test_a_close_notify_is_a_clean_end_of_file_whatever_ragged_eof_says(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await server.aclose()
    assert await client.read() == b""
    assert client.is_eof()


def test_set_tls_takes_its_settings_by_keyword_and_checks_them() -> None:
    sock = RSocket()
    sock.set_tls()
    assert sock.is_secure()
    sock.set_tls(ragged_eof=True)
    assert sock._settings.ragged_eof
    sock.set_tls()  # Ioto's rSetTls: changes nothing
    assert sock._settings.ragged_eof
    sock.set_tls(ragged_eof=False)
    assert not sock._settings.ragged_eof
    with pytest.raises(TypeError, match="ragged_eof"):
        sock.set_tls(ragged_eof="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ktls"):
        sock.set_tls(ktls="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sock.set_tls(True)  # type: ignore[misc]


async def test_a_handler_that_ends_on_a_ragged_close_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_rsocket")

    async def handler(data: None, sock: RSocket) -> None:
        while await sock.read():  # bounded: the client closes
            pass

    async with trio.open_nursery() as nursery, RSocket() as listener:
        with_cert(server_cert)(listener)
        await listener.listen("127.0.0.1", 0, handler, nursery=nursery)
        client = RSocket()
        trusting(ca)(client)
        await client.connect("localhost", listener.get_addr()[1])
        await client.write(b"request")
        client.close()  # no close_notify, as http.client does it
        await listener.shutdown()
    broke = [record for record in caplog.records if "broke" in record.getMessage()]
    assert len(broke) == 1
    assert broke[0].levelno == logging.DEBUG
    assert "without close_notify" in broke[0].getMessage()
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


# ----------------------------------------------------------------------------
# End of file after a failed write (issue 16 item 13)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_a_reset_during_a_write_sets_eof_on_plain_tcp_and_tls_alike(
    ca: trustme.CA, server_cert: trustme.LeafCert, tls: bool
) -> None:
    # Ioto sets R_SOCKET_EOF on a socket error, a write's included.
    client, server = await (tls_pair_by_hand(ca, server_cert) if tls else plain_pair())
    try:
        server.set_linger(0)
        server.close()  # a reset (RST)
        broke = None
        for _ in range(1000):  # bounded: the reset arrives within a few writes
            try:
                await client.write(b"x" * 65536)
            except trio.BrokenResourceError as exc:
                broke = exc
                break
        assert broke is not None
        assert client.is_eof()
    finally:
        client.close()


# ----------------------------------------------------------------------------
# RSocket.stream over TLS


async def test_the_stream_of_a_tls_socket_is_a_tls_stream_with_the_tls_details(
    pair: tuple[RSocket, RSocket],
) -> None:
    client, server = pair
    stream = client.stream
    assert isinstance(stream, TLSStream)
    assert isinstance(stream, trio.abc.Stream)
    assert client.stream is stream
    assert stream.version() == client.get_tls_version()
    assert stream.cipher() is not None
    assert stream.selected_alpn_protocol() is None
    assert stream.getpeercert(binary_form=True) == client.get_peer_certificate()
    assert stream.getpeercert()["subjectAltName"] == (("DNS", "localhost"), ("IP Address", "127.0.0.1"))
    await stream.send_all(b"through the stream")
    assert await server.read_exactly(18) == b"through the stream"


# ----------------------------------------------------------------------------
# What the contexts say, and kTLS


def test_a_listener_refuses_renegotiation_and_a_client_answers_it(server_cert: trustme.LeafCert) -> None:
    # A client answers a server's TLS 1.2 renegotiation (tests/test_tls_interop.py
    # has one over the wire); a listener refuses a client's.
    client = _tls.client_context(_tls.TLSSettings())
    assert not client.context.options & ssl.OP_NO_RENEGOTIATION
    cert = server_cert.cert_chain_pems[0].bytes()
    server = _tls.server_context(_tls.TLSSettings(key=server_cert.private_key_pem.bytes(), cert=cert))
    assert server.options & ssl.OP_NO_RENEGOTIATION


def _ktls_unavailable() -> str | None:
    if sys.version_info < (3, 12) or not hasattr(ssl, "OP_ENABLE_KTLS"):
        return f"Python {sys.version_info.major}.{sys.version_info.minor} has no ssl.OP_ENABLE_KTLS (3.12 and later)"
    if ssl.OPENSSL_VERSION_INFO < (3,):
        return f"{ssl.OPENSSL_VERSION} has no kTLS (OpenSSL 3.0 and later)"
    if not os.path.isdir("/sys/module/tls"):
        return "the kernel's tls module is not loaded (modprobe tls)"
    return None


def test_ktls_false_or_unavailable_leaves_the_context_as_it_was() -> None:
    plain = _tls.client_context(_tls.TLSSettings()).context
    asked = _tls.client_context(_tls.TLSSettings(ktls=True)).context
    assert not plain.options & _tls.KTLS_OPTION or _tls.KTLS_OPTION == 0
    if _tls.KTLS_OPTION:
        assert asked.options & _tls.KTLS_OPTION
    else:
        assert asked.options == plain.options  # a documented no-op


async def _send_file_across(server: RSocket, client: RSocket, path: Path, size: int) -> bytes:
    """``server.send_file`` the whole file at *path* (*size* bytes) while *client* reads it; what came."""
    received = bytearray()
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            while len(received) < size:  # bounded: every read returns at least a byte
                received.extend(await client.read())

        nursery.start_soon(read)
        with path.open("rb") as file:
            assert await server.send_file(file) == size
    return bytes(received)


@pytest.mark.skipif(_ktls_unavailable() is not None, reason=_ktls_unavailable() or "")
async def test_send_file_over_ktls_goes_by_the_kernel_and_counts_exactly(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    path = tmp_path / "file"
    data = os.urandom(1 << 20)
    path.write_bytes(data)
    client, server = await tls_pair_by_hand(ca, server_cert, server_setup=lambda sock: sock.set_tls(ktls=True))
    try:
        conn = server._part
        assert isinstance(conn, _secure.TLSConnection)
        if not conn.uses_ktls:
            pytest.skip("OpenSSL did not hand the keys to the kernel (cipher or kernel support)")
        assert await _send_file_across(server, client, path, len(data)) == data
        assert server.statistics().bytes_written == len(data)
    finally:
        client.close()
        server.close()


async def test_send_file_without_ktls_goes_by_chunks_through_tls(
    tmp_path: Path, ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    # Which path ran: here the keys stay in OpenSSL (no kTLS), so chunks.
    path = tmp_path / "file"
    data = os.urandom(300_000)
    path.write_bytes(data)
    client, server = await tls_pair_by_hand(ca, server_cert, server_setup=lambda sock: sock.set_tls(ktls=True))
    try:
        conn = server._part
        assert isinstance(conn, _secure.TLSConnection)
        if _ktls_unavailable() is None and conn.uses_ktls:
            pytest.skip("the kernel holds the keys here: see the kTLS test")
        assert not conn.uses_ktls
        assert await _send_file_across(server, client, path, len(data)) == data
    finally:
        client.close()
        server.close()


async def test_a_write_stopped_mid_record_leaves_reads_working(
    mock_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    # TLS cannot take back half a record, so writes are refused from then
    # on; the other direction has nothing to do with it.
    client, server = pair
    fix_buffers(client, server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(jump_when_blocked, mock_clock, 5)
        with trio.move_on_after(5):
            await client.write(b"x" * (4 << 20))
    with pytest.raises(trio.BrokenResourceError, match="middle of a TLS record"):
        await client.write(b"more")
    await server.write(b"still readable")
    assert await client.read_exactly(14) == b"still readable"
