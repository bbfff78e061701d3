"""close() and reset() from another fiber, at every point a call lets others run.

Each test runs one call (connect, listen, upgrade_tls, a TLS aclose) in a
fiber of its own and closes or resets the socket right after that fiber's
k-th scheduling step, for k = 1, 2, 3, ... until the call finishes before
the k-th step (bounded by :data:`MAX_STEPS`).  An instrument makes the close
land exactly there, while the call's fiber is parked, as another fiber's
close would (trio's own scheduling order would only land it there by
chance).  Whatever k is: no ``AssertionError`` from the state machine, the
call either finished before the close or says the socket was closed
(``trio.ClosedResourceError``), the socket ends the way the interrupting
call left it (closed, or fresh and reusable), nothing keeps serving and no
descriptor leaks.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial

import pytest
import trio
import trio.testing

from trio_rsocket import RSocket, TLSError
from trio_rsocket.testing import CertFiles, open_rsocket_pair

from .conftest import open_fds

#: The most scheduling steps a call here is interrupted at (none takes a dozen).
MAX_STEPS = 200

Interrupt = Callable[[RSocket], None]
INTERRUPTS: dict[str, Interrupt] = {"close": RSocket.close, "reset": RSocket.reset}


class _InterruptAtStep(trio.abc.Instrument):
    """Call ``interrupt()`` right after *task*'s *step*-th step, the moment it
    had let others run for the *step*-th time, before it runs again.

    The interrupt runs from the scheduler just before its next look for I/O
    (no task is running then, as when another fiber runs); waking a parked
    *waker* fiber keeps that look from sleeping while the call waits for
    something only the interrupt will bring.
    """

    def __init__(self, step: int, interrupt: Callable[[], None]) -> None:
        self.step = step
        self.interrupt = interrupt
        self.task: trio.lowlevel.Task | None = None
        self.waker: trio.lowlevel.Task | None = None
        self.steps = 0
        self.call_done = False
        self.pending = False
        self.fired = False
        self.error: BaseException | None = None

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1
            if self.steps == self.step and not self.call_done:
                self.pending = self.fired = True
                assert self.waker is not None
                trio.lowlevel.reschedule(self.waker)

    def before_io_wait(self, timeout: float) -> None:
        if self.pending:
            self.pending = False
            try:
                self.interrupt()
            except BaseException as exc:  # trio would only log it: keep it for the test
                self.error = exc


async def interrupted(
    call: Callable[[], Awaitable[object]], interrupt: Callable[[], None], step: int
) -> tuple[bool, Exception | None]:
    """Run ``await call()`` in a fiber, with ``interrupt()`` after its *step*-th
    step.  Returns whether the interrupt came while the call ran (False: the
    call had finished by then), and the exception the call raised, or None."""
    instrument = _InterruptAtStep(step, interrupt)
    outcome: Exception | None = None

    async def waker(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        instrument.waker = trio.lowlevel.current_task()
        task_status.started()
        await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)

    async def caller() -> None:
        nonlocal outcome
        instrument.task = trio.lowlevel.current_task()
        try:
            await call()
        except Exception as exc:
            outcome = exc
        instrument.call_done = True
        if not instrument.fired:
            nursery.cancel_scope.cancel()  # the waker's

    trio.lowlevel.add_instrument(instrument)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(waker)
            nursery.start_soon(caller)
    finally:
        trio.lowlevel.remove_instrument(instrument)
    if instrument.error is not None:
        raise instrument.error
    return instrument.fired, outcome


def assert_closed_in_the_middle(outcome: Exception | None) -> None:
    """The call interrupted says the socket was closed; never the state
    machine's AssertionError, never success."""
    assert isinstance(outcome, trio.ClosedResourceError), repr(outcome)


def assert_left_by(sock: RSocket, interrupt: str) -> None:
    """The socket is as the interrupting call left it: closed, or fresh."""
    assert sock.get_handle() == -1
    assert not sock.is_connected()
    assert sock.is_closed() is (interrupt == "close")
    if interrupt == "reset":
        assert repr(sock) == "<RSocket fresh>"


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:*port* (a connect is refused)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def handler_that_waits(_data: object, sock: RSocket) -> None:
    await sock.read()


@asynccontextmanager
async def tls_server(files: CertFiles) -> AsyncIterator[int]:
    """A TLS RSocket listener on 127.0.0.1 whose handlers wait for the peer; yields its port."""
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        listener.set_certs(key=str(files.server_key), cert=str(files.server_cert))
        await listener.listen("127.0.0.1", 0, handler_that_waits, nursery=nursery)
        try:
            yield listener.get_addr()[1]
        finally:
            await listener.shutdown(0)


@asynccontextmanager
async def plain_server() -> AsyncIterator[int]:
    """A loopback port whose kernel completes connects (nobody accepts)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1000)
        yield listener.getsockname()[1]


# ----------------------------------------------------------------------------
# connect


CONNECTS = {
    # name: (host, keyword arguments, TLS)
    "plain": ("127.0.0.1", {}, False),
    "plain-resolved": ("localhost", {}, False),
    "happy-eyeballs": ("localhost", {"happy_eyeballs_delay": 0.25}, False),
    "tls": ("127.0.0.1", {}, True),
    "tls-happy-eyeballs": ("127.0.0.1", {"happy_eyeballs_delay": 0.25}, True),
}


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize("kind", CONNECTS)
async def test_connect_interrupted_at_every_step(kind: str, interrupt: str, rsocket_cert_files: CertFiles) -> None:
    host, options, secure = CONNECTS[kind]
    before = open_fds()
    server = tls_server(rsocket_cert_files) if secure else plain_server()
    async with server as port:
        for step in range(1, MAX_STEPS):
            sock = RSocket()
            if secure:
                sock.set_certs(authority=str(rsocket_cert_files.authority))
            fired, outcome = await interrupted(
                partial(sock.connect, host, port, **options), partial(INTERRUPTS[interrupt], sock), step
            )
            if not fired:  # the connect finished in fewer steps: every step was tried
                assert outcome is None
                sock.close()
                break
            assert_closed_in_the_middle(outcome)
            assert_left_by(sock, interrupt)
            if interrupt == "reset":  # fresh means reusable
                await sock.connect(host, port, **options)
                assert sock.is_connected()
            sock.close()
        else:
            raise AssertionError(f"connect took more than {MAX_STEPS} steps")
    assert open_fds() <= before


# ----------------------------------------------------------------------------
# listen


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_listen_interrupted_at_every_step_stops_serving(host: str, interrupt: str) -> None:
    before = open_fds()
    handled = 0

    async def count(_data: object, sock: RSocket) -> None:
        nonlocal handled
        handled += 1

    for step in range(1, MAX_STEPS):
        port = free_port()
        sock = RSocket()
        async with trio.open_nursery() as nursery:
            fired, outcome = await interrupted(
                partial(sock.listen, host, port, count, nursery=nursery), partial(INTERRUPTS[interrupt], sock), step
            )
            if not fired:  # listening, its accept loop not started yet: stopped all the same
                assert outcome is None
                INTERRUPTS[interrupt](sock)
            else:
                assert_closed_in_the_middle(outcome)
            assert_left_by(sock, interrupt)
            # Nothing keeps serving: the port is free, the accept loop ended.
            assert port_is_free(port)
            await trio.testing.wait_all_tasks_blocked()
            assert not nursery.child_tasks
            if interrupt == "reset":  # fresh means reusable
                await sock.listen(host, 0, count, nursery=nursery)
                sock.close()
        if not fired:
            break
    else:
        raise AssertionError(f"listen took more than {MAX_STEPS} steps")
    assert handled == 0
    assert open_fds() <= before


# ----------------------------------------------------------------------------
# upgrade_tls


def upgradable_pair() -> tuple[RSocket, RSocket]:
    """A plain ``(client, server)`` pair of adopted loopback sockets, each
    knowing which side of a TLS upgrade it plays."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())  # the kernel completes it: no wait
        server, _ = listener.accept()
    return RSocket.from_socket(client), RSocket.from_socket(server, server_side=True)


async def tls_peer(sock: RSocket) -> None:
    """The other end of an upgrade; its failure (the upgrade was cut off) is expected."""
    with suppress(TLSError, trio.BrokenResourceError, trio.ClosedResourceError):
        await sock.upgrade_tls("127.0.0.1")


@pytest.mark.parametrize("interrupt", INTERRUPTS)
@pytest.mark.parametrize("side", ["client", "server"])
async def test_upgrade_tls_interrupted_at_every_step(side: str, interrupt: str, rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    before = open_fds()
    for step in range(1, MAX_STEPS):
        client, server = upgradable_pair()
        server.set_certs(key=str(files.server_key), cert=str(files.server_cert))
        client.set_certs(authority=str(files.authority))
        sock, peer = (client, server) if side == "client" else (server, client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tls_peer, peer)
            fired, outcome = await interrupted(
                partial(sock.upgrade_tls, "127.0.0.1"), partial(INTERRUPTS[interrupt], sock), step
            )
            if fired:  # the peer's handshake ends when this end's socket goes
                assert_closed_in_the_middle(outcome)
                assert_left_by(sock, interrupt)
            else:
                assert outcome is None
                assert sock.is_connected()
                assert sock.get_tls_version() is not None
                sock.close()
        peer.close()
        if not fired:
            break
    else:
        raise AssertionError(f"upgrade_tls took more than {MAX_STEPS} steps")
    assert open_fds() <= before


# ----------------------------------------------------------------------------
# aclose over TLS


@pytest.mark.parametrize("interrupt", INTERRUPTS)
async def test_tls_aclose_interrupted_at_every_step(interrupt: str, rsocket_cert_files: CertFiles) -> None:
    before = open_fds()
    for step in range(1, MAX_STEPS):
        async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as (client, _server):
            fired, outcome = await interrupted(client.aclose, partial(INTERRUPTS[interrupt], client), step)
            assert outcome is None  # aclose closes whatever happens
            # The close (or reset) that came last decides; aclose never
            # closes a socket reset under it.
            assert_left_by(client, interrupt if fired else "close")
        if not fired:
            break
    else:
        raise AssertionError(f"aclose took more than {MAX_STEPS} steps")
    assert open_fds() <= before


async def test_a_socket_in_its_tls_aclose_says_it_is_closing(rsocket_cert_files: CertFiles) -> None:
    seen: list[tuple[bool, str, int, object]] = []
    async with open_rsocket_pair(tls=True, cert_files=rsocket_cert_files) as (client, _server):

        def look() -> None:
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except Exception as exc:
                setsockopt: object = type(exc)
            else:
                setsockopt = None
            client.set_no_delay(True)  # kept for the next connection, never an EBADF
            seen.append((client.is_connected(), repr(client), client.get_handle(), setsockopt))

        class Watch(trio.abc.Instrument):
            task: trio.lowlevel.Task | None = None

            def after_task_step(self, task: trio.lowlevel.Task) -> None:
                if task is self.task:
                    look()

        watch = Watch()

        async def closing() -> None:
            watch.task = trio.lowlevel.current_task()
            await client.aclose()

        trio.lowlevel.add_instrument(watch)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(closing)
        finally:
            trio.lowlevel.remove_instrument(watch)
    assert len(seen) >= 2  # the close_notify, and the close of the descriptor
    for connected, text, handle, setsockopt in seen[:-1]:
        assert (connected, text, handle, setsockopt) == (False, "<RSocket closing tls>", -1, trio.ClosedResourceError)
    assert seen[-1] == (False, "<RSocket closed>", -1, trio.ClosedResourceError)
