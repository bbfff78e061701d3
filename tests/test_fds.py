"""Peer credentials and descriptor passing over real Unix sockets (SPEC 9).

The pairs are real Unix stream sockets: a ``socket.socketpair()`` adopted
with :meth:`RSocket.from_socket`, or the two ends of a connection to a
listening socket bound by hand in the test's own directory.  What is passed
is then used on the other side: a pipe written through, a file read.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_rsocket import DeadlineError, PeerCredentials, RSocket, RSocketError, deadline_after
from trio_rsocket._unix_io import MAX_FDS
from trio_rsocket.testing import CertFiles

from .conftest import assert_busy_while, open_fds
from .test_doc_examples import load_example
from .test_races import MAX_STEPS, interrupted

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")

Pair = tuple[RSocket, RSocket]


def socket_pair() -> Pair:
    """Both ends of a ``socket.socketpair()``, adopted."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return RSocket.from_socket(left), RSocket.from_socket(right)


@pytest.fixture
def unix_pair() -> Iterator[Pair]:
    """A connected Unix ``(sender, receiver)`` pair, closed afterwards."""
    sender, receiver = socket_pair()
    yield sender, receiver
    sender.close()
    receiver.close()


@contextmanager
def bound_pair(directory: Path) -> Iterator[Pair]:
    """``(client, server)``: a connection to a listening Unix socket bound by
    hand at *directory*/sock, both ends adopted; the listener is closed once
    it accepted (the connection outlives it), the pair on exit."""
    path = str(directory / "sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        client_end = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client_end.connect(path)  # the kernel queues it: no accept needed first
        server_end, _ = listener.accept()
    client, server = RSocket.from_socket(client_end), RSocket.from_socket(server_end, server_side=True)
    try:
        yield client, server
    finally:
        client.close()
        server.close()


@contextmanager
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe's ``(read end, write end)``, both closed on exit."""
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


@contextmanager
def owning(fds: list[int]) -> Iterator[list[int]]:
    """*fds* (received descriptors, the caller's), closed on exit."""
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def same_file(first: int, second: int) -> bool:
    """Whether two descriptors are of the same open file (device and inode)."""
    a, b = os.fstat(first), os.fstat(second)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ----------------------------------------------------------------------------
# Passing descriptors, and using them


async def test_a_pipe_passed_is_written_through_on_the_other_side(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (read_end, write_end):
        assert await sender.write_fds(b"pipe", [write_end]) == 4
        data, fds = await receiver.read_fds(100, 1)
        with owning(fds):
            assert data == b"pipe"
            assert len(fds) == 1
            assert fds[0] != write_end
            os.write(fds[0], b"through the passed descriptor")
        assert os.read(read_end, 100) == b"through the passed descriptor"
    assert sender.statistics().bytes_written == 4
    assert receiver.statistics().bytes_read == 4


async def test_a_file_passed_is_read_on_the_other_side(unix_pair: Pair, tmp_path: Path) -> None:
    sender, receiver = unix_pair
    path = tmp_path / "passed.txt"
    path.write_bytes(b"the contents of a file the receiver never opened")
    with path.open("rb") as file:
        await sender.write_fds(b"f", [file.fileno()])
    # The sender's descriptor is closed: the passed one keeps the file open.
    path.unlink()
    data, fds = await receiver.read_fds(100, 4)
    with owning(fds):
        assert data == b"f"
        assert os.pread(fds[0], 100, 0) == b"the contents of a file the receiver never opened"


async def test_several_descriptors_arrive_in_one_message_in_order(unix_pair: Pair, tmp_path: Path) -> None:
    sender, receiver = unix_pair
    with pipe() as (read_end, write_end), (tmp_path / "f").open("wb") as file:
        sent = [write_end, file.fileno(), read_end, sender.get_handle()]
        await sender.write_fds(b"four", sent)
        data, fds = await receiver.read_fds(100, 10)
        with owning(fds):
            assert data == b"four"
            assert len(fds) == len(sent)
            assert all(same_file(got, original) for got, original in zip(fds, sent, strict=True))
            assert not set(fds) & set(sent)


async def test_descriptors_ride_on_their_bytes_and_the_rest_follows_as_a_write(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    data = bytes(range(256)) * 4096  # 1 MiB: more than one sendmsg takes
    with pipe() as (_, write_end):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.write_fds, data, [write_end])
            received = bytearray()
            all_fds: list[int] = []
            for _ in range(len(data)):  # bounded: each read returns at least a byte
                chunk, fds = await receiver.read_fds(65536, 4)
                if fds:
                    assert not received  # with the first bytes, and only there
                all_fds += fds
                received += chunk
                if len(received) == len(data):
                    break
        with owning(all_fds):
            assert received == data
            assert len(all_fds) == 1
            assert same_file(all_fds[0], write_end)


async def test_a_bound_and_accepted_connection_passes_descriptors_both_ways(tmp_path: Path) -> None:
    with bound_pair(tmp_path) as (client, server), pipe() as (read_end, write_end):
        await client.write_fds(b">", [write_end])
        data, fds = await server.read_fds(10, 1)
        with owning(fds):
            await server.write_fds(b"<", fds)
        data, back = await client.read_fds(10, 1)
        with owning(back):
            assert data == b"<"
            os.write(back[0], b"round")
        assert os.read(read_end, 10) == b"round"


async def test_the_example_of_the_unix_page_writes_through_the_pipe_it_passed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = open_fds()
    example = load_example("unix.rst", "example-pass-fds")
    await example["main"]()
    assert capsys.readouterr().out.splitlines() == [repr(b"here is a pipe") + " " + repr(b"written by the receiver")]
    assert open_fds() <= before


async def test_connect_unix_and_listen_unix_pass_descriptors_and_tell_credentials(tmp_path: Path) -> None:
    """A handler of ``listen_unix`` checks who connected and hands the client
    a pipe; the client of ``connect_unix`` writes through it."""
    path = str(tmp_path / "service.sock")
    seen: list[PeerCredentials] = []
    before = open_fds()

    async def hand_out_a_pipe(write_end: int, sock: RSocket) -> None:
        seen.append(sock.get_peer_credentials())
        await sock.write_fds(b"pipe", [write_end])
        await sock.read()  # until the client is done

    with pipe() as (read_end, write_end):
        async with trio.open_nursery() as nursery:
            listener = RSocket()
            await listener.listen_unix(path, hand_out_a_pipe, write_end, nursery=nursery)
            async with RSocket() as client:
                await client.connect_unix(path)
                assert client.get_peer_credentials() == (os.getpid(), os.getuid(), os.getgid())
                data, fds = await client.read_fds(100, 1)
                with owning(fds):
                    assert data == b"pipe"
                    os.write(fds[0], b"from the client")
            await listener.shutdown()
        assert os.read(read_end, 100) == b"from the client"
    assert seen == [(os.getpid(), os.getuid(), os.getgid())]
    assert open_fds() <= before


async def test_no_descriptors_is_a_plain_write(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    assert await sender.write_fds(b"plain", []) == 5
    assert await receiver.read_fds(100, 1) == (b"plain", [])


# ----------------------------------------------------------------------------
# Never leaked, never inherited


@pytest.mark.parametrize("max_fds", [1, 2, 3])
async def test_descriptors_beyond_max_fds_are_closed(unix_pair: Pair, max_fds: int) -> None:
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        before = open_fds()
        await sender.write_fds(b"x", [write_end] * 5)
        data, fds = await receiver.read_fds(100, max_fds)
        with owning(fds):
            assert data == b"x"
            # The control buffer rounds up to a word: the extra one that fits is closed too.
            assert len(fds) == max_fds
            # (open_fds counts its own directory descriptor each time)
            assert len(open_fds()) == len(before) + max_fds


async def test_descriptors_read_by_a_plain_read_are_closed_by_the_kernel(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        before = open_fds()
        await sender.write_fds(b"x", [write_end, write_end])
        assert await receiver.read() == b"x"
        assert open_fds() == before


async def test_received_descriptors_are_not_inheritable(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (read_end, write_end):
        os.set_inheritable(write_end, True)  # the sender's inheritable one
        await sender.write_fds(b"x", [write_end, read_end])
        _, fds = await receiver.read_fds(10, 2)
        with owning(fds):
            for fd in fds:
                assert not os.get_inheritable(fd)
                assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


async def test_end_of_file_is_empty_bytes_and_no_descriptors(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    await sender.send_eof()
    assert await receiver.read_fds(10, 1) == (b"", [])
    assert receiver.is_eof()


async def test_bytes_buffered_by_read_until_come_first_without_descriptors(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        await sender.write(b"line\nrest")
        assert await receiver.read_until(b"\n") == b"line\n"
        await sender.write_fds(b"X", [write_end])
        assert await receiver.read_fds(100, 1) == (b"rest", [])
        data, fds = await receiver.read_fds(100, 1)
        with owning(fds):
            assert data == b"X"
            assert len(fds) == 1


# ----------------------------------------------------------------------------
# Deadlines, cancellation, busy, close


async def test_a_read_fds_deadline_loses_nothing(autojump_clock: trio.testing.MockClock, unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pytest.raises(DeadlineError):
        await receiver.read_fds(100, 1, deadline=deadline_after(5))
    with pipe() as (_, write_end):
        await sender.write_fds(b"late", [write_end])
        data, fds = await receiver.read_fds(100, 1, deadline=deadline_after(5))
        with owning(fds):
            assert data == b"late"
            assert len(fds) == 1
            assert same_file(fds[0], write_end)


async def test_a_write_fds_deadline_reports_the_bytes_written(autojump_clock: trio.testing.MockClock) -> None:
    sender, receiver = socket_pair()
    async with sender, receiver:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        data = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # more than the kernel holds
        with pipe() as (_, write_end):
            with pytest.raises(DeadlineError) as caught:
                await sender.write_fds(data, [write_end], deadline=deadline_after(3))
            written = caught.value.bytes_written
            assert 0 < written < len(data)
            assert sender.statistics().bytes_written == written
            await sender.send_eof()
            received = bytearray()
            all_fds: list[int] = []
            for _ in range(len(data)):  # bounded: each read returns at least one byte
                chunk, fds = await receiver.read_fds(65536, 2)
                all_fds += fds
                if not chunk:
                    break
                received += chunk
            with owning(all_fds):
                assert received == data[:written]
                assert len(all_fds) == 1
                assert same_file(all_fds[0], write_end)


async def test_a_cancelled_read_fds_takes_nothing(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        await sender.write_fds(b"kept", [write_end])
        with trio.CancelScope() as scope:
            scope.cancel()
            await receiver.read_fds(100, 1)
        assert scope.cancelled_caught
        data, fds = await receiver.read_fds(100, 1)
        with owning(fds):
            assert (data, len(fds)) == (b"kept", 1)


async def test_a_cancelled_write_fds_sends_nothing(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        with trio.CancelScope() as scope:
            scope.cancel()
            await sender.write_fds(b"never", [write_end])
        assert scope.cancelled_caught
        assert sender.statistics().bytes_written == 0
        await sender.send_eof()
        assert await receiver.read_fds(100, 1) == (b"", [])


async def test_two_readers_or_writers_at_once_are_busy(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    await assert_busy_while(partial(receiver.read_fds, 10, 1), partial(receiver.read_fds, 10, 1), "reading")
    await assert_busy_while(partial(receiver.read, 10), partial(receiver.read_fds, 10, 1), "reading")
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 12)
    with pipe() as (_, write_end):
        big = b"x" * (1 << 22)
        await assert_busy_while(partial(sender.write, big), partial(sender.write_fds, b"y", [write_end]), "writing")


@pytest.mark.parametrize("call", ["read_fds", "write_fds"])
async def test_close_from_another_fiber_wakes_a_blocked_call(call: str) -> None:
    sender, receiver = socket_pair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 12)
    sock = receiver if call == "read_fds" else sender
    with pipe() as (_, write_end):
        before = open_fds()
        blocked = (
            partial(receiver.read_fds, 10, 1)
            if call == "read_fds"
            else partial(sender.write_fds, b"x" * (1 << 22), [write_end])
        )
        async with trio.open_nursery() as nursery:
            caught: list[BaseException] = []

            async def waiting() -> None:
                try:
                    await blocked()
                except trio.ClosedResourceError as exc:
                    caught.append(exc)

            nursery.start_soon(waiting)
            await trio.testing.wait_all_tasks_blocked()
            sock.close()
        assert len(caught) == 1
        assert open_fds() <= before
        os.fstat(write_end)  # the caller's descriptor stays the caller's
    sender.close()
    receiver.close()


async def _read_all(receiver: RSocket, received: bytearray) -> None:
    """Read *receiver* with read_fds until end of file (or its close),
    closing every descriptor that arrives."""
    for _ in range(1 << 20):  # bounded: each read returns at least a byte, or ends
        try:
            chunk, fds = await receiver.read_fds(65536, 4)
        except trio.ClosedResourceError:
            return
        for fd in fds:
            os.close(fd)
        if not chunk:
            return
        received += chunk


async def _read_fds_into(receiver: RSocket, got: list[tuple[bytes, list[int]]]) -> None:
    got.append(await receiver.read_fds(100, 2))


async def _send_when_blocked(sender: RSocket, fds: list[int]) -> None:
    """Pass *fds* once every other fiber waits; a pair closed by then is no error."""
    await trio.testing.wait_all_tasks_blocked()
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await sender.write_fds(b"ready", fds)


@pytest.mark.parametrize("interrupt", ["close", "reset"])
@pytest.mark.parametrize("call", ["read_fds", "read_fds waiting", "write_fds"])
async def test_close_at_every_step_of_a_call_leaks_nothing(call: str, interrupt: str) -> None:
    with pipe() as (_, write_end):
        before = open_fds()
        for step in range(1, MAX_STEPS):
            sender, receiver = socket_pair()
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 13)
            data = bytes(range(256)) * 256  # 64 KiB: several waits for the reader
            got: list[tuple[bytes, list[int]]] = []
            received = bytearray()
            async with trio.open_nursery() as nursery:
                if call.startswith("read_fds"):
                    sock = receiver
                    if call == "read_fds":  # there already
                        await sender.write_fds(b"ready", [write_end, write_end])
                    else:  # comes while it waits
                        nursery.start_soon(_send_when_blocked, sender, [write_end, write_end])
                    run: Callable[[], Awaitable[object]] = partial(_read_fds_into, receiver, got)

                else:
                    sock = sender
                    nursery.start_soon(_read_all, receiver, received)
                    run = partial(sender.write_fds, data, [write_end])

                fired, outcome = await interrupted(run, getattr(sock, interrupt), step)
                sender.close()  # the reader, if any, sees end of file
            for answer, fds in got:
                with owning(fds):
                    assert (answer, len(fds)) == (b"ready", 2)
            receiver.close()
            if fired:  # finished before the close landed, or stopped by it
                assert outcome is None or isinstance(outcome, trio.ClosedResourceError), repr(outcome)
                assert sock.get_handle() == -1
            else:
                assert outcome is None
                assert got or received == data
            assert open_fds() <= before
            if not fired:
                break
        else:
            raise AssertionError(f"{call} took more than {MAX_STEPS} steps")


# ----------------------------------------------------------------------------
# Peer credentials


async def test_credentials_of_an_in_process_pair_are_this_process(unix_pair: Pair) -> None:
    mine = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    assert unix_pair[0].get_peer_credentials() == mine
    assert unix_pair[1].get_peer_credentials() == mine
    pid, uid, gid = unix_pair[0].get_peer_credentials()
    assert (pid, uid, gid) == mine


async def test_credentials_over_a_bound_and_accepted_connection(tmp_path: Path) -> None:
    with bound_pair(tmp_path) as (client, server):
        assert server.get_peer_credentials() == (os.getpid(), os.getuid(), os.getgid())
        assert client.get_peer_credentials().pid == os.getpid()


_PEER_PROGRAM = """
import socket, sys
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(sys.argv[1])
    sock.recv(1)  # until the test closes its end
"""


async def test_credentials_of_a_peer_in_another_process_carry_its_pid(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw_listener:
        raw_listener.bind(path)
        raw_listener.listen(1)
        listener = trio.socket.from_stdlib_socket(raw_listener)
        process = await trio.lowlevel.open_process([sys.executable, "-c", _PEER_PROGRAM, path])
        try:
            with trio.fail_after(30):
                accepted, _ = await listener.accept()
            sock = RSocket.from_socket(accepted)
            async with sock:
                credentials = sock.get_peer_credentials()
                assert credentials.pid == process.pid != os.getpid()
                assert (credentials.uid, credentials.gid) == (os.getuid(), os.getgid())
            with trio.fail_after(30):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


# ----------------------------------------------------------------------------
# Not a Unix socket


CALLS: dict[str, Callable[[RSocket], Awaitable[Any] | Any]] = {
    "get_peer_credentials": lambda sock: sock.get_peer_credentials(),
    "write_fds": lambda sock: sock.write_fds(b"x", [0]),
    "read_fds": lambda sock: sock.read_fds(10, 1),
}


async def call_on(sock: RSocket, name: str) -> object:
    result = CALLS[name](sock)
    return await result if isinstance(result, Awaitable) else result


@pytest.mark.parametrize("name", CALLS)
async def test_every_call_on_tcp_or_tls_is_an_rsocket_error(
    name: str, either_pair: Pair, rsocket_cert_files: CertFiles
) -> None:
    client, server = either_pair
    kind = "TLS over TCP" if client.is_secure() else "TCP"
    for sock in (client, server):
        with pytest.raises(RSocketError, match=f"{name} needs a connected Unix socket, and this one is {kind}"):
            await call_on(sock, name)
    assert client.is_connected()  # nothing broke


async def _no_handler(_data: object, _sock: RSocket) -> None:
    """A handler never run: nothing connects."""


@pytest.mark.parametrize("name", CALLS)
async def test_a_listening_or_fresh_socket_is_an_rsocket_error_and_a_closed_one_closed(name: str) -> None:
    with pytest.raises(RSocketError, match="is not connected"):
        await call_on(RSocket(), name)
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, _no_handler, nursery=nursery)
        with pytest.raises(RSocketError, match="is listening"):
            await call_on(listener, name)
        listener.close()
    sender, receiver = socket_pair()
    receiver.close()
    sender.close()
    with pytest.raises(trio.ClosedResourceError):
        await call_on(sender, name)


async def test_tls_over_a_unix_socket_passes_no_descriptors_but_tells_credentials(
    rsocket_cert_files: CertFiles,
) -> None:
    files = rsocket_cert_files
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client, server = RSocket.from_socket(left), RSocket.from_socket(right, server_side=True)
    server.set_certs(key=str(files.server_key), cert=str(files.server_cert))
    client.set_certs(authority=str(files.authority))
    async with client, server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.upgrade_tls)
            await client.upgrade_tls("localhost")
        assert client.get_tls_version() is not None
        assert client.get_peer_credentials() == (os.getpid(), os.getuid(), os.getgid())
        for name in ("read_fds", "write_fds"):
            with pytest.raises(RSocketError, match="is TLS: descriptors cannot ride a TLS stream"):
                await call_on(client, name)


# ----------------------------------------------------------------------------
# Bad input, before any I/O


BAD: list[tuple[str, Callable[[RSocket, int], Awaitable[object]], type[Exception], str]] = [
    ("data str", lambda s, fd: s.write_fds("text", [fd]), TypeError, "data"),
    ("data int", lambda s, fd: s.write_fds(5, [fd]), TypeError, "data"),
    ("data empty", lambda s, fd: s.write_fds(b"", [fd]), ValueError, "data must not be empty"),
    ("fds int", lambda s, fd: s.write_fds(b"x", fd), TypeError, "fds must be a sequence"),
    ("fds bytes", lambda s, fd: s.write_fds(b"x", b"\x01"), TypeError, "fds must be a sequence"),
    ("fds set", lambda s, fd: s.write_fds(b"x", {fd}), TypeError, "fds must be a sequence"),
    ("fds str item", lambda s, fd: s.write_fds(b"x", [fd, "3"]), TypeError, r"fds\[1\] must be an int"),
    ("fds bool", lambda s, fd: s.write_fds(b"x", [True]), TypeError, r"fds\[0\] must be an int"),
    ("fds float", lambda s, fd: s.write_fds(b"x", [float(fd)]), TypeError, r"fds\[0\] must be an int"),
    ("fds negative", lambda s, fd: s.write_fds(b"x", [fd, -1]), ValueError, r"fds\[1\] must be a descriptor"),
    ("fds huge", lambda s, fd: s.write_fds(b"x", [2**40]), ValueError, r"fds\[0\] \(1099511627776\) is not an open"),
    ("fds too many", lambda s, fd: s.write_fds(b"x", [fd] * (MAX_FDS + 1)), ValueError, "at most 253"),
    ("max_bytes 0", lambda s, fd: s.read_fds(0, 1), ValueError, "max_bytes must be at least 1"),
    ("max_bytes str", lambda s, fd: s.read_fds("10", 1), TypeError, "max_bytes must be an int"),
    ("max_fds 0", lambda s, fd: s.read_fds(10, 0), ValueError, "max_fds must be at least 1"),
    ("max_fds negative", lambda s, fd: s.read_fds(10, -1), ValueError, "max_fds must be at least 1"),
    ("max_fds bool", lambda s, fd: s.read_fds(10, True), TypeError, "max_fds must be an int"),
    ("max_fds float", lambda s, fd: s.read_fds(10, 1.0), TypeError, "max_fds must be an int"),
    ("deadline str", lambda s, fd: s.read_fds(10, 1, "soon"), TypeError, "deadline"),
    ("write deadline str", lambda s, fd: s.write_fds(b"x", [fd], "soon"), TypeError, "deadline"),
]


@pytest.mark.parametrize("call", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
async def test_bad_input_fails_before_any_io_naming_the_argument(
    unix_pair: Pair, call: tuple[Callable[[RSocket, int], Awaitable[object]], type[Exception], str]
) -> None:
    make, error, match = call
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        for sock in (RSocket(), sender):  # fresh: had it got to I/O, the error would be another
            with pytest.raises(error, match=match):
                await make(sock, write_end)
    assert sender.statistics().bytes_written == 0
    await sender.send_eof()
    assert await receiver.read_fds(10, 1) == (b"", [])


async def test_a_closed_descriptor_is_named(unix_pair: Pair) -> None:
    sender, _ = unix_pair
    with pipe() as (read_end, _):
        closed = os.dup(read_end)
        os.close(closed)
        with pytest.raises(ValueError, match=rf"fds\[1\] \({closed}\) is not an open descriptor: Bad file descriptor"):
            await sender.write_fds(b"x", [read_end, closed])
    assert sender.statistics().bytes_written == 0


async def test_max_fds_past_the_kernel_limit_reads_as_the_limit(unix_pair: Pair) -> None:
    sender, receiver = unix_pair
    with pipe() as (_, write_end):
        await sender.write_fds(b"x", [write_end] * MAX_FDS)
        data, fds = await receiver.read_fds(10, 10_000)
        with owning(fds):
            assert (data, len(fds)) == (b"x", MAX_FDS)
