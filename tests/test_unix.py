"""Unix domain sockets: connect_unix, listen_unix and its binding rules, over real sockets in tmp_path."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_rsocket import (
    ConnectError,
    DeadlineError,
    ListenError,
    RSocket,
    RSocketError,
    deadline_after,
    get_socket_limit,
    set_socket_limit,
)
from trio_rsocket.testing import echo_handler

from .test_races import INTERRUPTS, MAX_STEPS, assert_closed_in_the_middle, assert_left_by, interrupted

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the abstract namespace is Linux's")


def abstract_name(tag: str) -> str:
    """An abstract name no other test run uses."""
    return f"\0trio-rsocket-test-{os.getpid()}-{tag}"


def names(directory: Path) -> list[str]:
    """What is in *directory*, sorted."""
    return sorted(os.listdir(directory))


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Each entry of *directory* with its inode and mode."""
    return {name: (os.lstat(directory / name).st_ino, os.lstat(directory / name).st_mode) for name in names(directory)}


def identity(path: Path) -> tuple[int, int]:
    found = path.lstat()
    return found.st_dev, found.st_ino


def stale_socket(path: Path) -> None:
    """Leave a socket file at *path* that nobody listens on (as a crashed server does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(os.fspath(path))
        dead.listen(1)


@asynccontextmanager
async def unix_server(path: Any, handler: Any = echo_handler, **options: Any) -> AsyncIterator[RSocket]:
    """An RSocket listening on *path*; closed (and its nursery's fibers ended) on exit."""
    async with trio.open_nursery() as nursery:
        server = RSocket()
        await server.listen_unix(path, handler, nursery=nursery, **options)
        try:
            yield server
        finally:
            await server.shutdown(0)


async def ping(path: Any) -> bytes:
    """One line through an echo server at *path*."""
    async with RSocket() as client:
        await client.connect_unix(path)
        await client.write(b"ping\n")
        return await client.read_until(b"\n", deadline=deadline_after(10))


@contextmanager
def raw_listener(path: Path, backlog: int = 100) -> Iterator[socket.socket]:
    """A plain socket listening at *path* (the kernel completes connects; nobody accepts)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(os.fspath(path))
        listening.listen(backlog)
        yield listening


async def try_listen(path: Any, sock: RSocket | None = None, **options: Any) -> None:
    """``listen_unix`` on *path* in a nursery of its own (a listen expected to fail)."""
    sock = RSocket() if sock is None else sock
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        try:
            await sock.listen_unix(path, echo_handler, nursery=nursery, **options)
        except Exception as exc:
            failure = exc
        else:
            sock.close()
    if failure is None:
        raise AssertionError("listen_unix did not fail")
    raise failure


@contextmanager
def directory_locked(directory: Path) -> Iterator[int]:
    """Hold the directory's flock, as another listen_unix in the middle of its rename would."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------
# Connecting and listening


async def test_round_trip(tmp_path: Path, no_fd_leak: None) -> None:
    path = tmp_path / "echo.sock"
    seen: list[tuple[str, int]] = []

    async def handler(_data: object, sock: RSocket) -> None:
        seen.append(sock.get_peer_addr())
        await echo_handler(None, sock)

    async with unix_server(path, handler) as server:
        assert server.get_addr() == (str(path), 0)
        assert stat.S_ISSOCK(path.lstat().st_mode)
        async with RSocket() as client:
            await client.connect_unix(path)
            assert client.is_connected()
            assert not client.is_secure()
            assert client.get_addr() == ("", 0)  # a client's socket has no name
            await client.write(b"hello\nworld\n")
            assert await client.read_until(b"\n") == b"hello\n"
            assert await client.read_exactly(6) == b"world\n"
            await client.wait_writable()
            assert client.statistics().bytes_written == 12
        assert seen == [("", 0)]
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().accepted == 1
    assert not path.exists()  # the listener removed its own file


async def test_both_ends_name_the_path_not_the_temporary_name_the_kernel_knows(tmp_path: Path) -> None:
    path = tmp_path / "named.sock"
    accepted: list[tuple[str, int]] = []
    done = trio.Event()

    async def handler(_data: object, sock: RSocket) -> None:
        accepted.append(sock.get_addr())
        await sock.read()
        sock.reset()  # the path was this connection's: a reset socket has none
        assert sock.get_handle() == -1
        assert sock._settings.local_name is None
        done.set()

    async with unix_server(path, handler), RSocket() as client:
        await client.connect_unix(path)
        assert client.get_peer_addr() == (str(path), 0)
        # What the kernel says is the listener's name before its rename.
        assert client._part is not None
        assert client._part.raw.getpeername() != str(path)
        await client.write(b"x")
        await done.wait()
        assert accepted == [(str(path), 0)]
        client.reset()
        with pytest.raises(trio.ClosedResourceError):
            client.get_peer_addr()


@pytest.mark.parametrize("kind", ["str", "bytes", "pathlike"])
async def test_every_kind_of_path(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "kind.sock"
    given: Any = {"str": str(path), "bytes": os.fsencode(path), "pathlike": path}[kind]
    async with unix_server(given) as server:
        assert server.get_addr() == (str(path), 0)
        assert await ping(given) == b"ping\n"


async def test_send_file_and_wait_readable(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 64)
    async with unix_server(tmp_path / "file.sock") as server, RSocket() as client:
        await client.connect_unix(tmp_path / "file.sock")
        with data.open("rb") as file:
            assert await client.send_file(file) == 256 * 64
        await client.wait_readable(deadline=deadline_after(10))
        assert await client.read_exactly(256 * 64, deadline=deadline_after(10)) == data.read_bytes()
        assert server.is_closed() is False


async def test_relative_path_is_removed_from_where_it_was_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with unix_server("here.sock"):
        assert await ping("here.sock") == b"ping\n"
        monkeypatch.chdir("/")  # the listener keeps its directory open: close still finds it
    assert names(tmp_path) == []


async def test_the_longest_path_binds(tmp_path: Path) -> None:
    # The temporary name must not make a path that fits fail: 107 bytes, the
    # last component one byte long, beside a name of its own.
    folder = tmp_path / ("d" * max(1, 105 - len(os.fsencode(tmp_path)) - 1))
    folder.mkdir()
    path = folder / "s"
    assert len(os.fsencode(path)) == 107
    async with unix_server(path):
        assert await ping(path) == b"ping\n"
        assert names(folder) == ["s"]
    assert names(folder) == []


async def test_connect_resets_a_connected_socket(tmp_path: Path) -> None:
    path = tmp_path / "raw.sock"
    with raw_listener(path) as listening:
        client = RSocket()
        await client.connect_unix(path)
        first, _ = listening.accept()
        await client.connect_unix(path)
        with first:
            assert first.recv(10) == b""  # the first connection was closed
        assert client.is_connected()
        client.close()


async def test_the_end_of_the_nursery_removes_the_file(tmp_path: Path) -> None:
    server = RSocket()
    async with trio.open_nursery() as nursery:
        await server.listen_unix(tmp_path / "s.sock", echo_handler, nursery=nursery)
        assert names(tmp_path) == ["s.sock"]
        nursery.cancel_scope.cancel()
    assert names(tmp_path) == []
    assert server.is_closed()


async def test_listen_unix_shutdown_cancels_handlers(tmp_path: Path) -> None:
    async def waits(_data: object, sock: RSocket) -> None:
        await sock.read()

    async with trio.open_nursery() as nursery:
        server = RSocket()
        await server.listen_unix(tmp_path / "s.sock", waits, nursery=nursery)
        async with RSocket() as client:
            await client.connect_unix(tmp_path / "s.sock")
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics().active == 1
            assert await server.shutdown(0) == 1
    assert names(tmp_path) == []


# ----------------------------------------------------------------------------
# The abstract namespace


@linux_only
@pytest.mark.parametrize("kind", ["str", "bytes"])
async def test_abstract_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    name = abstract_name(kind)
    given: Any = name if kind == "str" else os.fsencode(name)
    async with unix_server(given, mode=0o666) as server:  # mode does not apply: no file
        assert server.get_addr() == (name, 0)
        assert await ping(given) == b"ping\n"
        with pytest.raises(ListenError) as caught:
            await try_listen(given)
        assert caught.value.errno == errno.EADDRINUSE
    assert names(tmp_path) == []
    with pytest.raises(ConnectError) as refused:
        await RSocket().connect_unix(given)
    assert refused.value.errno == errno.ECONNREFUSED


# ----------------------------------------------------------------------------
# Connect errors and deadlines


async def test_connect_to_nothing_says_why(tmp_path: Path) -> None:
    sock = RSocket()
    with pytest.raises(ConnectError) as caught:
        await sock.connect_unix(tmp_path / "missing.sock")
    assert caught.value.errno == errno.ENOENT
    assert str(caught.value) == f"Cannot connect socket to {tmp_path / 'missing.sock'}: No such file or directory"
    assert not sock.is_connected()
    assert not sock.is_closed()
    assert sock.get_error() == str(caught.value)


async def test_connect_to_a_stale_socket_is_refused(tmp_path: Path) -> None:
    stale_socket(tmp_path / "stale.sock")
    sock = RSocket()
    with pytest.raises(ConnectError, match="Connection refused") as caught:
        await sock.connect_unix(tmp_path / "stale.sock")
    assert caught.value.errno == errno.ECONNREFUSED
    with raw_listener(tmp_path / "live.sock"):
        await sock.connect_unix(tmp_path / "live.sock")  # reusable after a failure
        assert sock.is_connected()
    sock.close()


async def test_connect_deadline_on_a_full_queue(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, no_fd_leak: None
) -> None:
    path = tmp_path / "full.sock"
    with raw_listener(path, backlog=0) as listening:
        waiting: list[socket.socket] = []
        try:
            for _ in range(100):  # fill the queue until the kernel says "would block"
                filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                filler.setblocking(False)
                waiting.append(filler)
                if filler.connect_ex(os.fspath(path)) == errno.EAGAIN:
                    break
            else:
                raise AssertionError("the queue never filled")
            sock = RSocket()
            with pytest.raises(DeadlineError, match="before the deadline"):
                await sock.connect_unix(path, deadline=deadline_after(2))
            assert not sock.is_connected()
            # Room in the queue: the same socket connects, retrying until then.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sock.connect_unix, path)
                await trio.sleep(1)
                assert not sock.is_connected()
                accepted, _ = listening.accept()
                accepted.close()
            assert sock.is_connected()
            sock.close()
        finally:
            for filler in waiting:
                filler.close()


async def test_connect_deadline_already_passed(tmp_path: Path) -> None:
    with raw_listener(tmp_path / "s.sock"):
        sock = RSocket()
        with pytest.raises(DeadlineError):
            await sock.connect_unix(tmp_path / "s.sock", deadline=trio.current_time() - 1)
        assert not sock.is_connected()


async def test_connect_unix_is_cancellable(tmp_path: Path) -> None:
    with raw_listener(tmp_path / "s.sock"):
        sock = RSocket()
        with trio.CancelScope() as scope:
            scope.cancel()
            await sock.connect_unix(tmp_path / "s.sock")
        assert scope.cancelled_caught
        assert not sock.is_connected()
        assert not sock.is_closed()


# ----------------------------------------------------------------------------
# TLS is refused


async def test_tls_is_refused_before_any_io(tmp_path: Path, no_fd_leak: None) -> None:
    sock = RSocket()
    sock.set_tls()
    with raw_listener(tmp_path / "s.sock") as listening:
        listening.setblocking(False)
        with pytest.raises(RSocketError, match="TLS over a Unix socket"):
            await sock.connect_unix(tmp_path / "s.sock")
        with pytest.raises(BlockingIOError):
            listening.accept()  # nobody connected
    with pytest.raises(RSocketError, match="TLS over a Unix socket"):
        await try_listen(tmp_path / "l.sock", sock)
    assert names(tmp_path) == ["s.sock"]  # the raw listener's, nothing else
    assert not sock.is_closed()


async def test_upgrade_tls_still_works_on_a_unix_connection(tmp_path: Path, rsocket_cert_files: Any) -> None:
    files = rsocket_cert_files

    async def upgrades(_data: object, sock: RSocket) -> None:
        sock.set_certs(key=str(files.server_key), cert=str(files.server_cert))
        await sock.upgrade_tls(deadline=deadline_after(10))
        await echo_handler(None, sock)

    async with unix_server(tmp_path / "s.sock", upgrades), RSocket() as client:
        await client.connect_unix(tmp_path / "s.sock")
        client.set_certs(authority=str(files.authority))
        await client.upgrade_tls("localhost", deadline=deadline_after(10))
        await client.write(b"secret\n")
        assert await client.read_until(b"\n", deadline=deadline_after(10)) == b"secret\n"


# ----------------------------------------------------------------------------
# Binding rules


async def test_a_live_server_keeps_its_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    async with unix_server(path):
        before = identity(path)
        second = RSocket()
        with pytest.raises(ListenError, match="a server is listening there") as caught:
            await try_listen(path, second)
        assert caught.value.errno == errno.EADDRINUSE
        assert identity(path) == before
        assert await ping(path) == b"ping\n"  # the first still serves
        assert names(tmp_path) == ["live.sock"]  # no temporary name left
        assert not second.is_closed()


async def test_a_live_foreign_server_keeps_its_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.sock"
    with raw_listener(path) as listening:
        before = identity(path)
        with pytest.raises(ListenError):
            await try_listen(path)
        assert identity(path) == before
        listening.setblocking(False)
        probe = listening.accept()[0]  # the probe that found it live: one connection, closed at once
        with probe:
            assert probe.recv(1) == b""


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale_socket(path)
    before = identity(path)
    async with unix_server(path):
        assert identity(path) != before
        assert await ping(path) == b"ping\n"
        assert names(tmp_path) == ["stale.sock"]


def make_regular(path: Path) -> None:
    path.write_bytes(b"precious")


def make_directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_bytes(b"precious")


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_symlink_to_a_file(path: Path) -> None:
    (path.parent / "target").write_bytes(b"precious")
    path.symlink_to(path.parent / "target")


def make_dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere")


def make_symlink_to_a_stale_socket(path: Path) -> None:
    stale_socket(path.parent / "target")
    path.symlink_to(path.parent / "target")


NOT_SOCKETS = {
    "regular file": make_regular,
    "directory": make_directory,
    "fifo": make_fifo,
    "symlink to a file": make_symlink_to_a_file,
    "dangling symlink": make_dangling_symlink,
    "symlink to a stale socket": make_symlink_to_a_stale_socket,
}


@pytest.mark.parametrize("kind", NOT_SOCKETS)
async def test_any_other_file_is_never_touched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "taken"
    NOT_SOCKETS[kind](path)
    before = snapshot(tmp_path)
    with pytest.raises(ListenError, match="is not a socket") as caught:
        await try_listen(path)
    assert caught.value.errno == errno.EEXIST
    after = snapshot(tmp_path)
    assert after == before  # nothing removed, nothing left behind
    if kind in ("regular file", "symlink to a file"):
        assert path.read_bytes() == b"precious"


async def test_close_removes_only_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.sock"
    async with trio.open_nursery() as nursery:
        server = RSocket()
        await server.listen_unix(path, echo_handler, nursery=nursery)
        path.rename(tmp_path / "moved.sock")  # someone takes the name over behind its back
        path.write_bytes(b"someone else's")
        server.close()
    assert path.read_bytes() == b"someone else's"
    assert (tmp_path / "moved.sock").exists()  # only the path was ever ours to clean


async def test_close_leaves_a_new_server_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.sock"
    async with trio.open_nursery() as nursery:
        old = RSocket()
        await old.listen_unix(path, echo_handler, nursery=nursery)
        path.unlink()  # as anyio's listener would, for a new server
        async with unix_server(path):
            new = identity(path)
            old.close()
            assert identity(path) == new
            assert await ping(path) == b"ping\n"


async def test_the_file_is_removed_before_the_socket_closes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "order.sock"
    seen: list[str] = []
    unlink = os.unlink

    def watching(name: Any, *args: Any, **kwargs: Any) -> None:
        # Still listening when its file goes: nobody can find it stale first.
        try:
            os.fstat(handle)
        except OSError:
            seen.append("closed")
        else:
            seen.append("live")
        unlink(name, *args, **kwargs)

    async with trio.open_nursery() as nursery:
        server = RSocket()
        await server.listen_unix(path, echo_handler, nursery=nursery)
        handle = server.get_handle()
        monkeypatch.setattr(os, "unlink", watching)
        server.close()
    assert seen == ["live"]
    assert not path.exists()


async def test_the_mode_is_there_from_the_first_moment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mode.sock"
    renamed: list[tuple[int, bool]] = []
    rename = os.rename

    def watching(source: Any, target: Any, **kwargs: Any) -> None:
        found = os.stat(source, dir_fd=kwargs["src_dir_fd"], follow_symlinks=False)
        renamed.append((stat.S_IMODE(found.st_mode), stat.S_ISSOCK(found.st_mode)))
        rename(source, target, **kwargs)

    monkeypatch.setattr(os, "rename", watching)
    umask = os.umask(0)  # without the chmod the socket would be 0o777
    try:
        async with unix_server(path, mode=0o640):
            assert stat.S_IMODE(path.lstat().st_mode) == 0o640
    finally:
        os.umask(umask)
    assert renamed == [(0o640, True)]  # chmod before the name is published


async def test_a_missing_directory_is_a_listen_error(tmp_path: Path) -> None:
    with pytest.raises(ListenError, match="No such file or directory") as caught:
        await try_listen(tmp_path / "nowhere" / "s.sock")
    assert caught.value.errno == errno.ENOENT


async def test_a_read_only_directory_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(ListenError) as caught:
            await try_listen(tmp_path / "s.sock")
        assert caught.value.errno == errno.EACCES
    finally:
        os.chmod(tmp_path, 0o700)
    assert names(tmp_path) == []


# ----------------------------------------------------------------------------
# The directory lock: waiting, giving up, cancelled


async def test_a_locked_directory_is_waited_for(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with trio.open_nursery() as nursery:
        server = RSocket()
        with directory_locked(tmp_path):
            nursery.start_soon(partial(server.listen_unix, path, echo_handler, nursery=nursery))
            await trio.sleep(0.05)
            # Bound and listening under its temporary name, with its mode, not published.
            (temp,) = names(tmp_path)
            assert temp.startswith(".")
            assert stat.S_IMODE(os.lstat(tmp_path / temp).st_mode) == 0o600
        await trio.sleep(0.05)
        assert names(tmp_path) == ["s.sock"]
        server.close()


async def test_a_directory_locked_for_long_is_a_listen_error(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, no_fd_leak: None
) -> None:
    sock = RSocket()
    with directory_locked(tmp_path), pytest.raises(ListenError, match="stayed locked"):
        await try_listen(tmp_path / "s.sock", sock)
    assert names(tmp_path) == []
    assert not sock.is_closed()


async def test_a_cancelled_listen_leaves_nothing(tmp_path: Path, no_fd_leak: None) -> None:
    sock = RSocket()
    with directory_locked(tmp_path):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(sock.listen_unix, tmp_path / "s.sock", echo_handler, nursery=nursery))
            await trio.testing.wait_all_tasks_blocked()
            assert len(names(tmp_path)) == 1  # its temporary name
            nursery.cancel_scope.cancel()
    assert names(tmp_path) == []
    assert not sock.is_closed()  # fresh: it can listen again
    async with trio.open_nursery() as nursery:
        await sock.listen_unix(tmp_path / "s.sock", echo_handler, nursery=nursery)
        sock.close()
    assert names(tmp_path) == []


async def test_listen_cancelled_at_every_step_leaves_nothing(tmp_path: Path, no_fd_leak: None) -> None:
    for step in range(1, MAX_STEPS):
        sock = RSocket()
        scope = trio.CancelScope()

        async def listen(sock: RSocket = sock, scope: trio.CancelScope = scope) -> None:
            with scope:
                await sock.listen_unix(tmp_path / "s.sock", echo_handler, nursery=nursery)

        async with trio.open_nursery() as nursery:
            fired, outcome = await interrupted(listen, scope.cancel, step)
            assert outcome is None
            if fired:
                assert names(tmp_path) == []
                assert repr(sock) == "<RSocket fresh>"
            sock.close()
        assert names(tmp_path) == []
        if not fired:
            break
    else:
        raise AssertionError(f"listen_unix took more than {MAX_STEPS} steps")


# ----------------------------------------------------------------------------
# close() and reset() from another fiber, at every step


@pytest.mark.parametrize("interrupt", INTERRUPTS)
async def test_listen_unix_interrupted_at_every_step(tmp_path: Path, interrupt: str, no_fd_leak: None) -> None:
    path = tmp_path / "s.sock"
    for step in range(1, MAX_STEPS):
        sock = RSocket()
        async with trio.open_nursery() as nursery:
            fired, outcome = await interrupted(
                partial(sock.listen_unix, path, echo_handler, nursery=nursery),
                partial(INTERRUPTS[interrupt], sock),
                step,
            )
            if not fired:
                assert outcome is None
                INTERRUPTS[interrupt](sock)
            else:
                assert_closed_in_the_middle(outcome)
            assert_left_by(sock, interrupt)
            assert names(tmp_path) == []  # no socket file, no temporary name
            await trio.testing.wait_all_tasks_blocked()
            assert not nursery.child_tasks
            if interrupt == "reset":  # fresh means reusable
                await sock.listen_unix(path, echo_handler, nursery=nursery)
                sock.close()
        if not fired:
            break
    else:
        raise AssertionError(f"listen_unix took more than {MAX_STEPS} steps")


@pytest.mark.parametrize("interrupt", INTERRUPTS)
async def test_connect_unix_interrupted_at_every_step(tmp_path: Path, interrupt: str, no_fd_leak: None) -> None:
    path = tmp_path / "s.sock"
    with raw_listener(path, backlog=1000):
        for step in range(1, MAX_STEPS):
            sock = RSocket()
            fired, outcome = await interrupted(
                partial(sock.connect_unix, path), partial(INTERRUPTS[interrupt], sock), step
            )
            if not fired:
                assert outcome is None
                sock.close()
                break
            assert_closed_in_the_middle(outcome)
            assert_left_by(sock, interrupt)
            if interrupt == "reset":
                await sock.connect_unix(path)
                assert sock.is_connected()
            sock.close()
        else:
            raise AssertionError(f"connect_unix took more than {MAX_STEPS} steps")


# ----------------------------------------------------------------------------
# Two processes racing for one path

RACER = textwrap.dedent(
    """
    import os, sys, trio
    from trio_rsocket import ListenError, RSocket

    async def tell(_data, sock):
        await sock.write(str(os.getpid()).encode())

    async def main(path):
        async with trio.open_nursery() as nursery:
            print("ready", flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            sock = RSocket()
            try:
                await sock.listen_unix(path, tell, nursery=nursery)
            except ListenError as exc:
                print("lost", exc.errno, flush=True)
                return
            print("won", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
            sock.close()

    trio.run(main, sys.argv[1])
    """
)


@pytest.mark.parametrize("stale", [False, True], ids=["empty", "stale"])
def test_two_processes_racing_for_one_path(tmp_path: Path, stale: bool) -> None:
    path = tmp_path / "race.sock"
    if stale:
        stale_socket(path)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline() == "ready\n"
        for racer in racers:  # go, as close together as two writes can be
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        said = {}
        for racer in racers:
            assert racer.stdout is not None
            said[racer.pid] = racer.stdout.readline()
        assert sorted(said.values()) == [f"lost {errno.EADDRINUSE}\n", "won\n"], said
        (winner,) = (racer for racer in racers if said[racer.pid] == "won\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            client.connect(os.fspath(path))
            assert client.recv(100) == str(winner.pid).encode()  # the file is the winner's
        assert names(tmp_path) == ["race.sock"]
    finally:
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.close()
            assert racer.wait(timeout=60) == 0
            assert racer.stdout is not None
            racer.stdout.close()
    assert names(tmp_path) == []  # the winner removed its file as it closed


# ----------------------------------------------------------------------------
# Bad input, before any I/O


BAD_PATHS: dict[str, tuple[object, type[Exception], str]] = {
    "empty": ("", ValueError, "path must not be empty"),
    "empty bytes": (b"", ValueError, "path must not be empty"),
    "NUL inside": ("/tmp/a\0b", ValueError, "path must not contain a NUL"),
    "directory": ("/tmp/", ValueError, "path must name a socket file, not a directory"),
    "too long": ("/" + "x" * 107, ValueError, "at most 107 bytes, not 108"),
    "abstract too long": ("\0" + "x" * 108, ValueError, "at most 107 bytes after its NUL, not 108"),
    "int": (3, TypeError, "path must be a str, bytes or os.PathLike, not int"),
    "None": (None, TypeError, "path must be a str, bytes or os.PathLike, not NoneType"),
    "bytearray": (bytearray(b"/tmp/x"), TypeError, "not bytearray"),
}


@pytest.mark.parametrize("case", BAD_PATHS)
async def test_bad_paths(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path, error, words = BAD_PATHS[case]
    with pytest.raises(error, match=words):
        await RSocket().connect_unix(path)  # type: ignore[arg-type]
    with pytest.raises(error, match=words):
        await try_listen(path)  # type: ignore[arg-type]
    assert names(tmp_path) == []


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        (0o1000, ValueError, "mode must be permission bits in 0..0o777, not 0o1000"),
        (-1, ValueError, "mode must be permission bits"),
        ("600", TypeError, "mode must be an int"),
        (True, TypeError, "mode must be an int"),
        (6.0, TypeError, "mode must be an int"),
    ],
)
async def test_bad_modes(mode: object, error: type[Exception], words: str, tmp_path: Path) -> None:
    with pytest.raises(error, match=words):
        await RSocket().listen_unix(tmp_path / "s.sock", echo_handler, mode=mode, nursery=None)  # type: ignore[arg-type]
    assert names(tmp_path) == []


async def test_bad_handler_and_backlog(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="handler must be an async function"):
        await RSocket().listen_unix(tmp_path / "s.sock", None, nursery=None)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="backlog must be at least 1"):
        await RSocket().listen_unix(tmp_path / "s.sock", echo_handler, nursery=None, backlog=0)
    assert names(tmp_path) == []


PAUSED_AT_RENAME = textwrap.dedent(
    """
    import os, sys, trio
    from trio_rsocket import RSocket

    rename = os.rename

    def paused(*args, **kwargs):
        print("renaming", flush=True)
        sys.stdin.readline()
        rename(*args, **kwargs)

    os.rename = paused

    async def main(path):
        async with trio.open_nursery() as nursery:
            sock = RSocket()
            await sock.listen_unix(path, lambda _data, _sock: trio.sleep(0), nursery=nursery)
            print("won", flush=True)
            sock.close()

    trio.run(main, sys.argv[1])
    """
)


def test_the_look_and_the_rename_are_one_step_for_other_processes(tmp_path: Path) -> None:
    # Between the look at the path and the rename, the directory is locked:
    # another listener (another process) waits, then finds the winner live.
    racer = subprocess.Popen(
        [sys.executable, "-c", PAUSED_AT_RENAME, str(tmp_path / "s.sock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert racer.stdin is not None
    assert racer.stdout is not None
    try:
        assert racer.stdout.readline() == "renaming\n"
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        racer.stdin.write("go\n")
        racer.stdin.flush()
        assert racer.stdout.readline() == "won\n"
    finally:
        racer.stdin.close()
        assert racer.wait(timeout=60) == 0
        racer.stdout.close()
    assert names(tmp_path) == []


async def test_the_socket_limit_holds_for_unix_listeners(tmp_path: Path) -> None:
    async def waits(_data: object, sock: RSocket) -> None:
        await sock.read()

    limit = get_socket_limit()
    set_socket_limit(1)
    try:
        async with unix_server(tmp_path / "s.sock", waits) as server:
            first, second = RSocket(), RSocket()
            await first.connect_unix(tmp_path / "s.sock")
            await trio.testing.wait_all_tasks_blocked()
            await second.connect_unix(tmp_path / "s.sock")
            assert await second.read(deadline=deadline_after(10)) == b""  # closed at once
            stats = server.statistics()
            assert (stats.accepted, stats.active, stats.rejected) == (2, 1, 1)
            first.close()
            second.close()
    finally:
        set_socket_limit(limit)


async def test_a_directory_that_cannot_be_read_is_used_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory we may search and write but not read (mode 0o300) opens only
    # as a path, which flock refuses: listen_unix goes on without the lock.
    # (Root reads every directory, so the refusal is made here.)
    if not hasattr(os, "O_PATH"):
        pytest.skip("O_PATH is Linux's")
    real_open = os.open
    opened: list[int] = []

    def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsencode(path) == os.fsencode(tmp_path) and not flags & os.O_PATH:
            raise PermissionError(errno.EACCES, "Permission denied")
        opened.append(flags)
        return real_open(path, flags, *args, **kwargs)

    with directory_locked(tmp_path):  # not waited for: this listener cannot take the lock
        monkeypatch.setattr(os, "open", refusing)
        async with unix_server(tmp_path / "s.sock"):
            assert await ping(tmp_path / "s.sock") == b"ping\n"
    assert names(tmp_path) == []
    assert any(flags & os.O_PATH and flags & os.O_DIRECTORY for flags in opened)
