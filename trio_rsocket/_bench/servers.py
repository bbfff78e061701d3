"""The server side of every workload, which runs in a process of its own,
and the benchmark's handle on such a process (:class:`ServerProcess`).

The process runs ``python -c`` with ``_SERVER_ENTRY``, which calls
:func:`_server_main` here; it answers on its standard output (``READY``,
``CPU``, ``CONNS``) and stops when its standard input closes.  Given a
path, it listens on a Unix socket there instead of a loopback port (and
says ``READY 0``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import select
import signal
import socket as stdlib_socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

# The public API only, as any program would use it.
from .. import RSocket, get_socket_limit, set_socket_limit
from .backends import BACKENDS, Bytes, Conn, import_anyio, raw_send_all, with_watchdog
from .workloads import (
    ANYIO,
    BACKLOG,
    CHUNK,
    DRAIN,
    DRAIN_BUFFER,
    DRAIN_TIMEOUT,
    HOST,
    RAW,
    SERVER_LIFETIME,
    BenchError,
    TLSFiles,
    server_context,
)

_SERVER_ENTRY: Final = (
    "import sys; from trio_rsocket._bench.servers import _server_main; sys.exit(_server_main(sys.argv[1:]))"
)


def _rss_kib() -> int:
    """Resident memory of this process in KiB (Linux), -1 where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def raise_fd_limit() -> tuple[int, int, int]:
    """Raise this process's descriptor soft limit to the hard limit where allowed.

    Returns ``(soft before, soft now, hard)``.
    """
    try:
        import resource
    except ImportError:  # not on this OS
        return (-1, -1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            return (soft, soft, hard)
    return (soft, wanted, hard)


def _say(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # A server whose bench process is gone (Ctrl-C): nobody is left to
        # serve or to tell, and a traceback would only land on the terminal.
        os._exit(0)


@dataclass
class _ServerState:
    kind: str
    target: int
    live: int = 0
    reported: bool = False
    chunk: bytes = field(default=b"\0" * CHUNK)
    #: Idle pairs: the server also opens *target* connections to itself, with
    #: its own implementation, and holds them here.
    pairs: bool = False
    clients: list[Conn] = field(default_factory=list)

    def arrived(self) -> None:
        """Count an idle connection; report memory once all have arrived."""
        self.live += 1
        if not self.reported and self.live >= self.target:
            self.reported = True
            gc.collect()
            _say(f"CONNS {self.live} {_rss_kib()}")


async def _serve_connection(
    state: _ServerState,
    recv: Callable[[int], Awaitable[bytes | bytearray]],
    send: Callable[[Bytes], Awaitable[object]],
) -> None:
    """The server side of every workload, written once for every implementation."""
    kind = state.kind
    if kind == "echo":
        while True:  # bounded by the client, which closes after its last round trip
            data = await recv(CHUNK)
            if not data:
                return
            await send(data)
    elif kind == "bulk":
        header = b""
        while len(header) < 8:
            data = await recv(8 - len(header))
            if not data:
                return
            header += data
        (size,) = struct.unpack("!Q", header)
        chunk = state.chunk
        for offset in range(0, size, CHUNK):
            await send(chunk if size - offset >= CHUNK else chunk[: size - offset])
        await recv(CHUNK)  # the client's close
    elif kind == "handshake":
        await send(b"!")
    elif kind == "idle":
        state.arrived()
        try:
            await recv(CHUNK)
        finally:
            state.live -= 1
    # "accept": nothing; the connection is closed at once.


async def _open_clients(impl: str, state: _ServerState, port: int, tls: TLSFiles | None) -> None:
    """The client ends of the idle pairs: *state.target* connections to this
    process's own server, one after the other, with the same implementation,
    held in *state* until the server stops."""
    backend = BACKENDS[impl]
    for _ in range(state.target):
        state.clients.append(await backend.connect(port, tls))


async def _trio_server(state: _ServerState, tls: TLSFiles | None, path: str | None) -> None:
    async def handler(stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> None:
        # serve_tcp closes the stream when this returns, but without
        # close_notify on TLS: that needs a graceful aclose.
        with contextlib.suppress(trio.BrokenResourceError):
            if isinstance(stream, trio.SSLStream) and state.kind == "idle":
                # serve_ssl_over_tcp hands the stream over before its
                # handshake; an idle connection is one that finished it.
                await stream.do_handshake()
            await _serve_connection(state, stream.receive_some, stream.send_all)
        if tls is not None:
            await stream.aclose()

    if path is not None:
        await _trio_unix_server(handler, path)
        return
    async with trio.open_nursery() as nursery:
        if tls is None:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host=HOST, backlog=BACKLOG))
        else:
            context = server_context(tls)
            listeners = await nursery.start(
                functools.partial(trio.serve_ssl_over_tcp, handler, 0, context, host=HOST, backlog=BACKLOG)
            )
        port = listeners[0].transport_listener.socket.getsockname()[1] if tls else listeners[0].socket.getsockname()[1]
        if state.pairs:
            nursery.start_soon(_open_clients, "trio", state, port, tls)
        await _trio_ready_and_wait(port, nursery.cancel_scope)


async def _trio_unix_server(handler: Callable[[trio.SocketStream], Awaitable[None]], path: str) -> None:
    """trio's side of a Unix-socket workload: trio has no ``serve_unix``, so
    a bound ``AF_UNIX`` socket in a :class:`trio.SocketListener`, served by
    :func:`trio.serve_listeners`, as a trio program does it."""
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, [trio.SocketListener(sock)])
        await _trio_ready_and_wait(0, nursery.cancel_scope)


async def _rsocket_server(state: _ServerState, tls: TLSFiles | None, path: str | None) -> None:
    async def handler(data: object, sock: RSocket) -> None:
        # The listener closes the socket when this returns (TLS: close_notify first).
        with contextlib.suppress(trio.BrokenResourceError):
            await _serve_connection(state, sock.read, sock.write)

    # Ioto's default socket limit (1000) would turn the idle workload away.
    set_socket_limit(max(get_socket_limit(), state.target + 100))
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        if tls is not None and tls.max_version:
            listener.set_ssl_context(server_context(tls))
        elif tls is not None:
            listener.set_certs(key=tls.key, cert=tls.cert)
        if path is not None:
            await listener.listen_unix(path, handler, nursery=nursery, backlog=BACKLOG)
            await _trio_ready_and_wait(0, nursery.cancel_scope)
            return
        await listener.listen(HOST, 0, handler, nursery=nursery, backlog=BACKLOG)
        if state.pairs:
            nursery.start_soon(_open_clients, "rsocket", state, listener.get_addr()[1], tls)
        await _trio_ready_and_wait(listener.get_addr()[1], nursery.cancel_scope)


class _Commands:
    """The server's side of its standard input: ``CPU`` asks for the CPU time
    used so far (answered ``CPU seconds``); end of file means stop."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bool:
        """Handle what arrived; False at end of file."""
        if not data:
            return False
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            if line.strip() == b"CPU":
                _say(f"CPU {time.process_time():.6f}")
        return True


#: Bound on the commands one server answers (the bench sends two per measurement).
_MAX_COMMANDS: Final = 1_000_000


async def _raw_trio_server(state: _ServerState, tls: TLSFiles | None, path: str | None) -> None:
    async def handler(sock: trio.socket.SocketType) -> None:
        with sock, contextlib.suppress(ConnectionError):
            sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, True)
            await _serve_connection(state, sock.recv, functools.partial(raw_send_all, sock))

    async def accept_loop(listener: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        while True:  # until the server stops (its nursery is cancelled)
            sock, _ = await listener.accept()
            nursery.start_soon(handler, sock)

    if tls is not None or path is not None:
        raise BenchError("the raw trio.socket reference is plain TCP only")
    with trio.socket.socket() as listener:
        listener.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        await listener.bind((HOST, 0))
        listener.listen(BACKLOG)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_loop, listener, nursery)
            await _trio_ready_and_wait(listener.getsockname()[1], nursery.cancel_scope)


async def _trio_ready_and_wait(port: int, scope: trio.CancelScope) -> None:
    gc.collect()
    _say(f"READY {port} {_rss_kib()}")
    commands, fd = _Commands(), sys.stdin.fileno()
    for _ in range(_MAX_COMMANDS):
        await trio.lowlevel.wait_readable(fd)
        if not commands.feed(os.read(fd, 4096)):
            break
    scope.cancel()


async def _asyncio_server(state: _ServerState, tls: TLSFiles | None, path: str | None) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(data: Bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await _serve_connection(state, reader.read, send)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    context = None if tls is None else server_context(tls)
    if path is not None:
        async with await asyncio.start_unix_server(handler, path, backlog=BACKLOG):
            gc.collect()
            _say(f"READY 0 {_rss_kib()}")
            await _asyncio_commands()
        return
    server = await asyncio.start_server(handler, HOST, 0, backlog=BACKLOG, ssl=context)
    async with server:
        gc.collect()
        port = server.sockets[0].getsockname()[1]
        _say(f"READY {port} {_rss_kib()}")
        # Started after READY, whose memory figure is the baseline.
        clients = asyncio.create_task(_open_clients("asyncio", state, port, tls)) if state.pairs else None
        await _asyncio_commands()
        if clients is not None:
            # Close the client ends first, so that the handlers end at their
            # end of file rather than being cancelled with the loop.
            clients.cancel()
            closing = asyncio.gather(*(conn.close() for conn in state.clients), return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing, 30)


async def _asyncio_commands() -> None:
    """Answer the bench's commands (in an asyncio loop) until its end of file."""
    closed, commands, fd = asyncio.Event(), _Commands(), sys.stdin.fileno()

    def command() -> None:
        if not commands.feed(os.read(fd, 4096)):
            closed.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(fd, command)
    try:
        await closed.wait()
    finally:
        loop.remove_reader(fd)


async def _anyio_server(state: _ServerState, tls: TLSFiles | None, path: str | None) -> None:
    """anyio's side of a Unix-socket workload, on its default backend (asyncio)."""
    anyio = import_anyio()
    if tls is not None or path is None:
        raise BenchError("anyio is measured over Unix sockets only")

    async def handler(stream: Any) -> None:
        async with stream:
            # receive() raises EndOfStream at the client's close, where the
            # others return b"".
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                await _serve_connection(state, stream.receive, stream.send)

    async with await anyio.create_unix_listener(path, backlog=BACKLOG) as listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, handler)
        gc.collect()
        _say(f"READY 0 {_rss_kib()}")
        await _asyncio_commands()
        tasks.cancel_scope.cancel()


def _drain_server() -> None:
    """The receiver of the file transfer, the same for every sender: plain
    blocking sockets, one connection at a time, each read into one reused
    1 MiB buffer, so that the sender, the subject, sets the pace."""
    buffer = bytearray(DRAIN_BUFFER)
    commands, stdin = _Commands(), sys.stdin.fileno()
    give_up = time.monotonic() + SERVER_LIFETIME
    with stdlib_socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(BACKLOG)
        gc.collect()
        _say(f"READY {listener.getsockname()[1]} {_rss_kib()}")
        for _ in range(_MAX_COMMANDS):  # a command or a connection per pass
            left = give_up - time.monotonic()
            if left <= 0:
                break
            readable = select.select([listener, stdin], [], [], left)[0]
            if stdin in readable and not commands.feed(os.read(stdin, 4096)):
                break
            if listener in readable:
                conn = listener.accept()[0]
                with conn, contextlib.suppress(OSError):
                    conn.settimeout(DRAIN_TIMEOUT)
                    _drain(conn, buffer)


def _drain(conn: stdlib_socket.socket, buffer: bytearray) -> None:
    """Read the 8-byte size and that many bytes; answer the count."""
    header = b""
    while len(header) < 8:  # bounded: each pass takes at least one byte or returns
        data = conn.recv(8 - len(header))
        if not data:
            return
        header += data
    (size,) = struct.unpack("!Q", header)
    received = 0
    while received < size:  # bounded: each pass takes at least one byte or returns
        count = conn.recv_into(buffer, min(len(buffer), size - received))
        if not count:
            return
        received += count
    conn.sendall(struct.pack("!Q", received))


def _server_main(argv: list[str]) -> int:
    """Entry point of a server process: ``IMPL KIND TARGET CPU PATH [CA CERT
    KEY MAX_VERSION]`` (CPU -1: run anywhere; PATH ``-``: loopback TCP, else
    the Unix socket to listen on)."""
    # Ctrl-C in a terminal reaches the whole process group; a server stops
    # when its standard input closes, which the bench process sees to.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    impl, kind, target, cpu = argv[0], argv[1], int(argv[2]), int(argv[3])
    path = None if argv[4] == "-" else argv[4]
    tls = TLSFiles(*argv[5:9]) if len(argv) >= 8 else None
    if cpu >= 0:
        os.sched_setaffinity(0, {cpu})
    raise_fd_limit()
    state = _ServerState("idle", target, pairs=True) if kind == "idle-pairs" else _ServerState(kind, target)
    if impl == DRAIN:
        _drain_server()
    elif impl in ("asyncio", ANYIO):
        serve_asyncio = _anyio_server if impl == ANYIO else _asyncio_server

        async def bounded() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(serve_asyncio(state, tls, path), SERVER_LIFETIME)

        asyncio.run(bounded())
    else:
        serve = {"rsocket": _rsocket_server, RAW: _raw_trio_server}.get(impl, _trio_server)

        with contextlib.suppress(BenchError):
            trio.run(with_watchdog, functools.partial(serve, state, tls, path), SERVER_LIFETIME)
    return 0


#: The folder this trio_rsocket was imported from (what the server imports).
_PACKAGE_HOME: Final = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ServerProcess:
    """A server in its own process; it stops when its standard input closes."""

    def __init__(
        self, impl: str, kind: str, tls: TLSFiles | None, cpu: int | None, target: int = 0, path: str | None = None
    ) -> None:
        #: The Unix socket it listens on (None: loopback TCP, at ``port``).
        self.path = path
        # -P and PYTHONPATH: the server imports this very trio_rsocket, not
        # whatever package of that name sits in the working directory.
        args = [sys.executable, "-P", "-c", _SERVER_ENTRY, impl, kind, str(target), str(-1 if cpu is None else cpu)]
        args.append("-" if path is None else path)
        if tls is not None:
            args += [tls.ca, tls.cert, tls.key, tls.max_version]
        environment = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, (_PACKAGE_HOME, os.environ.get("PYTHONPATH"))))
        )
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
        self._pending = b""
        try:
            words = self.expect("READY", 60.0)
        except BaseException:
            self.stop()
            raise
        self.port, self.rss_kib = int(words[0]), int(words[1])

    def expect(self, keyword: str, timeout: float) -> list[str]:
        """Wait up to *timeout* seconds for the server's next line, which must
        start with *keyword*; return its other words."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        give_up = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = give_up - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError(f"no {keyword} from the server within {timeout:g} s")
            data = os.read(fd, 4096)
            if not data:
                raise BenchError(f"the server exited (status {self._process.wait()}) before {keyword}")
            self._pending += data
        line, self._pending = self._pending.split(b"\n", 1)
        words = line.decode().split()
        if not words or words[0] != keyword:
            raise BenchError(f"expected {keyword} from the server, got {line!r}")
        return words[1:]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server has used so far, as it reports it."""
        assert self._process.stdin is not None
        self._process.stdin.write(b"CPU\n")
        self._process.stdin.flush()
        return float(self.expect("CPU", 30.0)[0])

    def stop(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
