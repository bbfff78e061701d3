"""send_file: a file's bytes onto the connection, zero-copy on plain TCP and
through TLS in chunks read off the event loop (SPEC section 8, Ioto's ``rSendFile``).

Files are made in ``tmp_path`` from random bytes, so that a byte sent from
the wrong place never matches by chance.  Tests that matter for both kinds of
connection run over a plain and a TLS pair (the ``either_pair`` fixture).
"""

from __future__ import annotations

import errno
import functools
import io
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_rsocket
from trio_rsocket import DeadlineError, FileReadError, RSocket
from trio_rsocket.testing import CertFiles

from .conftest import assert_busy_while, fix_buffers, jump_when_blocked, read_at_least

MiB = 1 << 20

#: Real time every task must stay blocked before the clock jumps: enough for
#: a worker thread reading the file to finish, so that the jump catches the
#: sender waiting for the socket.
FILE_READ_CUSHION = 0.05


# ----------------------------------------------------------------------------
# Helpers


def make_file(directory: Path, size: int, name: str = "data.bin") -> tuple[Path, bytes]:
    """A file of *size* random bytes; returns its path and its contents."""
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return path, data


@pytest.fixture
def descriptor(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """A read-only descriptor of a 1 MiB + 123 byte file, and its contents."""
    path, data = make_file(tmp_path, MiB + 123)
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd, data
    finally:
        os.close(fd)


async def receive(sock: RSocket, count: int) -> bytes:
    """Read *count* bytes, or what arrives before the end of the connection."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:  # bounded: every read returns at least a byte, or 0 at the end
        n = await sock.read_into(view[got:])
        if n == 0:
            break
        got += n
    view.release()
    return bytes(buffer[:got])


async def send_file_and_receive(
    sender: RSocket, receiver: RSocket, expected: int, file: Any, **arguments: Any
) -> tuple[int, bytes]:
    """``sender.send_file(file, **arguments)`` while *receiver* reads
    *expected* bytes; returns what send_file returned and what arrived."""
    received = b""

    async def read_all() -> None:
        nonlocal received
        received = await receive(receiver, expected)

    with trio.fail_after(30):  # a safety net against a test's own mistake, never reached
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            sent = await sender.send_file(file, **arguments)
    return sent, received


async def assert_sends(sender: RSocket, receiver: RSocket, file: Any, expected: bytes, **arguments: Any) -> None:
    """``sender.send_file(file, **arguments)`` says it sent as many bytes as
    *expected* has, and *receiver* gets exactly *expected*."""
    sent, received = await send_file_and_receive(sender, receiver, len(expected), file, **arguments)
    assert (sent, received) == (len(expected), expected)


async def assert_nothing_more_came(sender: RSocket, receiver: RSocket) -> None:
    """The next bytes *receiver* reads are the ones *sender* writes now: the
    stream held nothing else (no byte sent twice, past the end, or before)."""
    await sender.write(b"<next>")
    assert await receiver.read_exactly(6) == b"<next>"


# ----------------------------------------------------------------------------
# Whole files


async def test_a_big_file_arrives_whole_by_descriptor(either_pair: tuple[RSocket, RSocket], tmp_path: Path) -> None:
    client, server = either_pair
    path, data = make_file(tmp_path, 16 * MiB)
    fd = os.open(path, os.O_RDONLY)
    try:
        await assert_sends(client, server, fd, data)
    finally:
        os.close(fd)
    await assert_nothing_more_came(client, server)


async def test_a_32_mib_file_arrives_whole_over_plain_tcp(
    rsocket_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = rsocket_pair
    path, data = make_file(tmp_path, 32 * MiB)
    with path.open("rb") as file:
        await assert_sends(client, server, file, data)


async def test_a_binary_file_object_is_sent_from_its_descriptor(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = either_pair
    path, data = make_file(tmp_path, 3 * MiB + 5)
    with path.open("rb") as file:
        await assert_sends(client, server, file, data)


async def test_an_unbuffered_file_object_is_sent_too(either_pair: tuple[RSocket, RSocket], tmp_path: Path) -> None:
    client, server = either_pair
    path, data = make_file(tmp_path, 100_000)
    with path.open("rb", buffering=0) as file:
        await assert_sends(client, server, file, data)


async def test_an_empty_file_sends_nothing_and_returns_zero(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = either_pair
    path, _ = make_file(tmp_path, 0)
    with path.open("rb") as file:
        assert await client.send_file(file) == 0
    await assert_nothing_more_came(client, server)


# ----------------------------------------------------------------------------
# Offset and count

SIZE = MiB + 123  # the size of the `descriptor` file: not a multiple of any page or record

SLICES = [
    pytest.param(0, None, 0, SIZE, id="whole"),
    pytest.param(1, None, 1, SIZE, id="from-1"),
    pytest.param(4096, 1, 4096, 4097, id="one-byte-at-a-page"),
    pytest.param(12_345, 100_000, 12_345, 112_345, id="middle"),
    pytest.param(SIZE - 1, None, SIZE - 1, SIZE, id="last-byte"),
    pytest.param(0, 0, 0, 0, id="count-0"),
    pytest.param(100, 2 * SIZE, 100, SIZE, id="count-past-the-end"),
    pytest.param(SIZE - 1, 10, SIZE - 1, SIZE, id="count-past-the-end-from-the-last-byte"),
    pytest.param(SIZE, None, SIZE, SIZE, id="offset-at-the-end"),
    pytest.param(SIZE + 1000, None, SIZE, SIZE, id="offset-past-the-end"),
    pytest.param(SIZE + 1000, 5, SIZE, SIZE, id="offset-and-count-past-the-end"),
]


@pytest.mark.parametrize(("offset", "count", "start", "stop"), SLICES)
async def test_send_file_sends_that_slice_of_the_file_and_says_how_much(
    either_pair: tuple[RSocket, RSocket],
    descriptor: tuple[int, bytes],
    offset: int,
    count: int | None,
    start: int,
    stop: int,
) -> None:
    client, server = either_pair
    fd, data = descriptor
    await assert_sends(client, server, fd, data[start:stop], offset=offset, count=count)
    await assert_nothing_more_came(client, server)


async def test_offset_past_the_end_returns_zero(rsocket_pair: tuple[RSocket, RSocket], tmp_path: Path) -> None:
    client, server = rsocket_pair
    path, _ = make_file(tmp_path, 10)
    with path.open("rb") as file:
        assert await client.send_file(file, offset=11) == 0
    await assert_nothing_more_came(client, server)


async def test_count_beyond_the_end_returns_what_there_was(
    rsocket_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = rsocket_pair
    path, data = make_file(tmp_path, 1000)
    with path.open("rb") as file:
        sent, received = await send_file_and_receive(client, server, 600, file, offset=400, count=10_000)
    assert sent == 600
    assert received == data[400:]


async def test_a_file_cut_short_while_it_is_sent_ends_the_send_where_the_file_ends(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = either_pair
    fix_buffers(client, server)
    path, data = make_file(tmp_path, 16 * MiB)
    sent: list[int] = []

    async def send(file: Any) -> None:
        sent.append(await client.send_file(file))

    with path.open("rb") as file:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, file)
            # The buffers hold far less than 4 MiB: the send is stuck well before the cut.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            os.truncate(path, 4 * MiB)
            received = await receive(server, 4 * MiB)
    assert sent == [4 * MiB]
    assert received == data[: 4 * MiB]
    await assert_nothing_more_came(client, server)


async def test_a_deadline_that_does_not_pass_sends_the_whole_file(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, server = either_pair
    fd, data = descriptor
    await assert_sends(client, server, fd, data[3:], offset=3, deadline=trio.current_time() + 60)
    await assert_nothing_more_came(client, server)


# ----------------------------------------------------------------------------
# The file position


async def test_the_position_of_a_file_object_is_neither_used_nor_moved(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = either_pair
    path, data = make_file(tmp_path, 2 * MiB)
    with path.open("rb") as file:
        assert file.read(10) == data[:10]  # buffered: the OS position is further on still
        await assert_sends(client, server, file, data)
        assert file.tell() == 10
        assert file.read(10) == data[10:20]


async def test_the_position_of_a_descriptor_is_neither_used_nor_moved(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, server = either_pair
    fd, data = descriptor
    os.lseek(fd, 777, os.SEEK_SET)
    await assert_sends(client, server, fd, data[5:1005], offset=5, count=1000)
    assert os.lseek(fd, 0, os.SEEK_CUR) == 777


# ----------------------------------------------------------------------------
# Bad arguments: refused before any I/O


@pytest.mark.parametrize(("offset", "count"), [(-1, None), (0, -1), (-5, 10)], ids=["offset", "count", "both"])
async def test_a_negative_offset_or_count_is_a_value_error_before_any_io(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes], offset: int, count: int | None
) -> None:
    client, server = either_pair
    fd, _ = descriptor
    with pytest.raises(ValueError, match="offset" if offset < 0 else "count"):
        await client.send_file(fd, offset=offset, count=count)
    await assert_nothing_more_came(client, server)


def _text_file(directory: Path) -> Any:
    (directory / "text.txt").write_text("some text\n")
    return (directory / "text.txt").open("r")


def _a_socket(_directory: Path) -> Any:
    return socket.socket()


def _bytes_io(_directory: Path) -> Any:
    return io.BytesIO(b"bytes in memory")


NOT_FILES: list[Any] = [
    pytest.param(lambda directory: str(directory / "data.bin"), id="path-str"),
    pytest.param(lambda directory: directory / "data.bin", id="path-object"),
    pytest.param(lambda _directory: b"file contents", id="bytes"),
    pytest.param(lambda _directory: 3.0, id="float"),
    pytest.param(lambda _directory: None, id="None"),
    pytest.param(_text_file, id="text-file"),
    pytest.param(_a_socket, id="socket"),
    pytest.param(_bytes_io, id="BytesIO"),
]


@pytest.mark.parametrize("make", NOT_FILES)
async def test_something_that_is_not_a_file_is_a_type_error_before_any_io(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path, make: Callable[[Path], Any]
) -> None:
    client, server = either_pair
    make_file(tmp_path, 1000)
    thing = make(tmp_path)
    try:
        with pytest.raises(TypeError, match="file"):
            await client.send_file(thing)
    finally:
        if hasattr(thing, "close"):
            thing.close()
    await assert_nothing_more_came(client, server)


def _write_only_descriptor(path: Path) -> Any:
    return os.open(path, os.O_WRONLY)


def _write_only_file(path: Path) -> Any:
    return path.open("ab")


@pytest.mark.parametrize("open_for_writing", [_write_only_descriptor, _write_only_file], ids=["descriptor", "file"])
async def test_a_file_not_open_for_reading_is_a_value_error_before_any_io(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path, open_for_writing: Callable[[Path], Any]
) -> None:
    """The file is at fault, not the connection: no ClosedResourceError or
    BrokenResourceError, and the connection goes on."""
    client, server = either_pair
    path, _ = make_file(tmp_path, 1000)
    file = open_for_writing(path)
    try:
        with pytest.raises(ValueError, match="read"):
            await client.send_file(file)
    finally:
        if isinstance(file, int):
            os.close(file)
        else:
            file.close()
    assert client.is_connected()
    await assert_nothing_more_came(client, server)


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="O_PATH descriptors are Linux's")
async def test_an_o_path_descriptor_is_a_value_error_naming_the_file_before_any_io(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    """An O_PATH descriptor names a file and cannot read it: the file's
    fault, said before any I/O, and the connection goes on (it used to be
    "this socket was already closed" on plain TCP, a bare OSError on TLS)."""
    client, server = either_pair
    path, _ = make_file(tmp_path, 1000)
    fd = os.open(path, os.O_PATH)
    try:
        with pytest.raises(ValueError, match="file must be open for reading, not an O_PATH descriptor"):
            await client.send_file(fd)
    finally:
        os.close(fd)
    assert client.is_connected()
    await assert_nothing_more_came(client, server)


async def send_file_until_it_cannot_read(
    sender: RSocket, receiver: RSocket, file: Any, fd: int, path: Path
) -> tuple[FileReadError, bytes]:
    """Send *file* (whose descriptor is *fd*) while the connection is full,
    replace the descriptor under the send by one that cannot read the file
    (Linux's O_PATH), then let the receiver read.  The send must fail as the
    file's fault; the sender then writes ``<next>``, which must come right
    after what the send sent.  Returns the error and what arrived before ``<next>``."""
    errors: list[FileReadError] = []
    received = bytearray()

    async def send() -> None:
        with pytest.raises(FileReadError) as caught:
            await sender.send_file(file)
        errors.append(caught.value)
        await sender.write(b"<next>")  # the connection is fine

    with trio.fail_after(30):  # a safety net against a test's own mistake, never reached
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            # The buffers hold far less than the file: the send waits for the receiver.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            unreadable = os.open(path, os.O_PATH)
            os.dup2(unreadable, fd)  # the same number, no longer readable
            os.close(unreadable)
            # Bounded: every read returns at least a byte, and the sender
            # writes its 6 bytes once the error is known.
            while not (errors and len(received) == errors[0].bytes_written + 6):
                chunk = await receiver.read()
                assert chunk, "end of file before <next>"
                received += chunk
    assert received.endswith(b"<next>")
    return errors[0], bytes(received[:-6])


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="O_PATH descriptors are Linux's")
async def test_a_file_that_cannot_be_read_during_the_send_is_a_file_read_error_naming_it(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = either_pair
    fix_buffers(client, server)
    path, data = make_file(tmp_path, 16 * MiB)
    with path.open("rb") as file:
        error, received = await send_file_until_it_cannot_read(client, server, file, file.fileno(), path)
    assert isinstance(error, trio_rsocket.RSocketError)
    assert str(error) == f"Cannot read {str(path)!r} to send it: Bad file descriptor"
    assert error.errno == errno.EBADF
    assert 0 < error.bytes_written < len(data)
    assert received == data[: error.bytes_written]
    assert client.get_error() == str(error)
    assert client.is_connected()
    assert client.statistics().bytes_written == error.bytes_written + 6


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="O_PATH descriptors are Linux's")
async def test_a_descriptor_that_cannot_be_read_during_the_send_is_named_by_its_number(
    either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = either_pair
    fix_buffers(client, server)
    path, data = make_file(tmp_path, 16 * MiB)
    fd = os.open(path, os.O_RDONLY)
    try:
        error, received = await send_file_until_it_cannot_read(client, server, fd, fd, path)
    finally:
        os.close(fd)
    assert str(error) == f"Cannot read file descriptor {fd} to send it: Bad file descriptor"
    assert received == data[: error.bytes_written]


def test_the_docs_say_a_file_must_not_shrink_while_a_plain_send_file_sends_it() -> None:
    """The kernel's sendfile may send bytes from past a concurrent cut: the
    send_file docstring and docs/servers.rst say so (issue 16)."""
    docstring = " ".join((RSocket.send_file.__doc__ or "").split())
    servers = " ".join((Path(__file__).parent.parent / "docs" / "servers.rst").read_text().split())
    for text in (docstring, servers):
        assert "The file must not shrink while it is sent." in text
        assert "may still send bytes from past the point where a concurrent truncation cut the" in text


async def test_a_file_argument_error_comes_before_the_not_connected_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="file"):
        await RSocket().send_file(str(tmp_path / "data.bin"))  # type: ignore[arg-type]


async def test_send_file_on_an_unconnected_socket_is_closed_resource_error(descriptor: tuple[int, bytes]) -> None:
    fd, _ = descriptor
    with pytest.raises(trio.ClosedResourceError, match="not connected"):
        await RSocket().send_file(fd)


async def test_send_file_after_close_is_closed_resource_error(
    rsocket_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, _ = rsocket_pair
    fd, _ = descriptor
    client.close()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_file(fd)


async def test_send_file_after_send_eof_is_closed_resource_error(
    rsocket_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, server = rsocket_pair
    fd, _ = descriptor
    await client.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_file(fd)
    assert await server.read() == b""


# ----------------------------------------------------------------------------
# Trio's rules: a checkpoint, one writer at a time, statistics


async def test_send_file_is_a_checkpoint_even_when_it_sends_nothing(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, _ = either_pair
    fd, _ = descriptor
    with trio.testing.assert_checkpoints():
        assert await client.send_file(fd, count=0) == 0


async def test_send_file_of_a_small_file_is_a_checkpoint(either_pair: tuple[RSocket, RSocket], tmp_path: Path) -> None:
    client, server = either_pair
    path, data = make_file(tmp_path, 100)
    with path.open("rb") as file, trio.testing.assert_checkpoints():
        assert await client.send_file(file) == 100
    assert await server.read_exactly(100) == data


async def test_statistics_count_what_send_file_sent(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, server = either_pair
    fd, _ = descriptor
    await client.write(b"before")
    sent, _ = await send_file_and_receive(client, server, 6 + 50_000, fd, offset=10, count=50_000)
    assert sent == 50_000
    assert client.statistics().bytes_written == 6 + 50_000


async def test_a_write_while_send_file_runs_is_busy(either_pair: tuple[RSocket, RSocket], tmp_path: Path) -> None:
    client, server = either_pair
    fix_buffers(client, server)
    path, _ = make_file(tmp_path, 8 * MiB)
    with path.open("rb") as file:
        await assert_busy_while(
            functools.partial(client.send_file, file), functools.partial(client.write, b"x"), cushion=FILE_READ_CUSHION
        )


async def test_send_file_while_a_write_runs_is_busy(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    client, server = either_pair
    fix_buffers(client, server)
    fd, _ = descriptor
    await assert_busy_while(functools.partial(client.write, b"x" * (8 * MiB)), functools.partial(client.send_file, fd))


async def test_reading_while_send_file_runs_is_fine(
    either_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    """One reader and one writer at once, as for write."""
    client, server = either_pair
    fd, data = descriptor
    got = b""

    async def client_reads() -> None:
        nonlocal got
        got = await client.read_exactly(5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_reads)
        sent, received = await send_file_and_receive(client, server, len(data), fd)
        await server.write(b"reply")
    assert (sent, received, got) == (len(data), data, b"reply")


# ----------------------------------------------------------------------------
# Deadlines


@pytest.mark.usefixtures("no_fd_leak")
async def test_a_send_file_stopped_by_its_deadline_counts_exactly_what_the_peer_can_read(
    mock_clock: trio.testing.MockClock, either_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    """Plain TCP: what the kernel took, all of which arrives.  TLS: what went
    out in whole records, all of which the peer can decrypt."""
    client, server = either_pair
    fix_buffers(client, server)
    path, data = make_file(tmp_path, 8 * MiB)
    offset = 1001
    with path.open("rb") as file:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(jump_when_blocked, mock_clock, 5, FILE_READ_CUSHION)
            deadline = trio.current_time() + 5
            with pytest.raises(DeadlineError) as caught:
                await client.send_file(file, offset=offset, deadline=deadline)
    assert trio.current_time() == deadline
    written = caught.value.bytes_written
    assert 0 < written < len(data) - offset
    assert client.statistics().bytes_written == written
    if not client.is_secure():
        await client.send_eof()
        assert await receive(server, len(data)) == data[offset : offset + written]
        return
    client.close()  # TLS has no half-close
    assert await read_at_least(server, written) == data[offset : offset + written]
    # Past that: at most half a record, then the end of the connection.
    with pytest.raises(trio.BrokenResourceError):
        await server.read()


async def test_a_plain_send_file_stopped_by_its_deadline_resumes_where_it_stopped(
    mock_clock: trio.testing.MockClock, rsocket_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = rsocket_pair
    fix_buffers(client, server)
    path, data = make_file(tmp_path, 8 * MiB)
    with path.open("rb") as file:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(jump_when_blocked, mock_clock, 5, FILE_READ_CUSHION)
            with pytest.raises(DeadlineError) as caught:
                await client.send_file(file, deadline=trio.current_time() + 5)
        written = caught.value.bytes_written
        assert written > 0
        rest, received = await send_file_and_receive(client, server, len(data), file, offset=written)
    assert rest == len(data) - written
    assert received == data
    await assert_nothing_more_came(client, server)


async def test_a_send_file_cancelled_from_outside_raises_cancelled_not_deadline_error(
    mock_clock: trio.testing.MockClock, rsocket_pair: tuple[RSocket, RSocket], tmp_path: Path
) -> None:
    client, server = rsocket_pair
    fix_buffers(client, server)
    path, _ = make_file(tmp_path, 8 * MiB)
    with path.open("rb") as file:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(jump_when_blocked, mock_clock, 5, FILE_READ_CUSHION)
            with trio.move_on_after(5) as outer:
                await client.send_file(file, deadline=trio.current_time() + 10)
    assert outer.cancelled_caught


# ----------------------------------------------------------------------------
# Interoperability: a peer that only knows TLS, not trio_rsocket


def _receive_and_acknowledge(listening: socket.socket, context: ssl.SSLContext, expected: int) -> bytes:
    """Accept one TLS connection, read *expected* bytes, say ``done`` and read
    to the close_notify (in a thread).

    The acknowledgement is what a real protocol needs too: a client that
    closed as soon as it had written would leave this server's TLS 1.3
    session tickets unread in its kernel buffer, and closing a socket with
    unread data resets the connection, which throws away what this side had
    not read yet.
    """
    connection, _ = listening.accept()
    connection.settimeout(10)
    received = bytearray()
    with context.wrap_socket(connection, server_side=True) as tls:
        for _ in range(100_000):  # bounded: every read returns at least a byte, or the end
            chunk = tls.recv(min(1 << 20, expected - len(received)))
            if not chunk:
                break
            received += chunk
            if len(received) == expected:
                break
        tls.sendall(b"done")
        assert tls.recv(1024) == b""  # the close_notify: nothing more came
    return bytes(received)


async def test_tls_send_file_to_a_python_ssl_server(rsocket_cert_files: CertFiles, tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(rsocket_cert_files.server_cert, rsocket_cert_files.server_key)
    path, data = make_file(tmp_path, 8 * MiB + 17)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listening.settimeout(10)  # a safety net for the thread, never reached
        received: list[bytes] = []

        async def server() -> None:
            received.append(await trio.to_thread.run_sync(_receive_and_acknowledge, listening, context, len(data) - 17))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            async with RSocket() as client:
                client.set_certs(authority=str(rsocket_cert_files.authority))
                await client.connect("localhost", listening.getsockname()[1])
                with path.open("rb") as file:
                    sent = await client.send_file(file, offset=17)
                assert await client.read_exactly(4) == b"done"
                await client.aclose()
    assert sent == len(data) - 17
    assert received == [data[17:]]


# ----------------------------------------------------------------------------
# Zero-copy


async def test_plain_send_file_hands_the_file_to_the_kernel(
    monkeypatch: pytest.MonkeyPatch, rsocket_pair: tuple[RSocket, RSocket], descriptor: tuple[int, bytes]
) -> None:
    """Zero-copy: every byte goes by ``os.sendfile`` (watched, not replaced)."""
    client, server = rsocket_pair
    fd, data = descriptor
    by_sendfile = 0
    real_sendfile = os.sendfile

    def watched_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        nonlocal by_sendfile
        sent = real_sendfile(out_fd, in_fd, offset, count)
        if in_fd == fd:
            by_sendfile += sent
        return sent

    monkeypatch.setattr(os, "sendfile", watched_sendfile)
    sent, received = await send_file_and_receive(client, server, len(data), fd)
    assert (sent, received) == (len(data), data)
    assert by_sendfile == len(data)
