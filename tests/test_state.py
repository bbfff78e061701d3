"""One state, one guard per direction: what concurrent calls can no longer
pull apart (each test here failed when the state was seven booleans)."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from trio_rsocket import RSocket
from trio_rsocket.testing import CertFiles

from .conftest import connected_pair


async def idle(_data: object, sock: RSocket) -> None:
    await sock.read()


async def test_two_listens_at_once_the_second_is_busy_and_close_frees_the_port() -> None:
    listener = RSocket()
    async with trio.open_nursery() as nursery:
        outcomes: list[BaseException | None] = []

        async def listen() -> None:
            try:
                await listener.listen("localhost", 0, idle, nursery=nursery)
            except trio.BusyResourceError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

        # "localhost" resolves through a checkpoint, so both are in listen() at once.
        nursery.start_soon(listen)
        nursery.start_soon(listen)
        await trio.testing.wait_all_tasks_blocked()
        assert len(outcomes) == 2
        assert sum(isinstance(outcome, trio.BusyResourceError) for outcome in outcomes) == 1
        _, port = listener.get_addr()
        listener.close()
        # Nothing listens any more: no orphaned socket keeps accepting.
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        nursery.cancel_scope.cancel()


class _CloseAfterFirstStep(trio.abc.Instrument):
    """Close a socket right after a task's first step, i.e. exactly at the
    first point where that task let others run."""

    def __init__(self, sock: RSocket) -> None:
        self.sock = sock
        self.task: trio.lowlevel.Task | None = None
        self.fired = False

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task and not self.fired:
            self.fired = True
            self.sock.close()


@pytest.mark.parametrize("call", ["read", "read_into"])
async def test_a_buffered_read_is_never_a_fake_end_of_file_when_closed_at_its_checkpoint(call: str) -> None:
    async with connected_pair() as (client, server):
        # On loopback both lines are in the kernel when write returns, so
        # read_until takes them in with one receive: b"x" stays buffered.
        await client.write(b"line\nx")
        assert await server.read_until(b"\n") == b"line\n"
        instrument = _CloseAfterFirstStep(server)
        results: list[object] = []

        async def reader() -> None:
            instrument.task = trio.lowlevel.current_task()
            try:
                if call == "read":
                    results.append(await server.read())
                else:
                    buffer = bytearray(8)
                    count = await server.read_into(buffer)
                    results.append(bytes(buffer[:count]))
            except trio.ClosedResourceError as exc:
                results.append(exc)

        trio.lowlevel.add_instrument(instrument)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
        finally:
            trio.lowlevel.remove_instrument(instrument)
        assert instrument.fired
        (result,) = results
        assert result != b"", "a close at the read's checkpoint looked like the peer's end of file"
        assert result == b"x" or isinstance(result, trio.ClosedResourceError)


async def test_a_peer_reset_sets_eof_as_ioto_does() -> None:
    async with connected_pair() as (client, server):
        server.set_linger(0)
        server.close()  # linger 0: the client gets a reset
        with pytest.raises(trio.BrokenResourceError):
            await client.read()
        assert client.is_eof()
        assert client.get_error() != ""


def test_every_state_can_close_and_only_closed_states_reset() -> None:
    from trio_rsocket._state import MOVES, Event, State, next_state

    for state in State:
        assert next_state(state, Event.CLOSE) is State.CLOSED
    assert next_state(State.CLOSED, Event.RESET) is State.FRESH
    # Only a closed socket is reset: an open or closing one becomes FRESH
    # through CLOSED, never directly.  (CONNECTING and LISTENING go back to
    # FRESH when the connect or listen fails, not by a reset.)
    for state in set(State) - {State.CLOSED}:
        with pytest.raises(AssertionError, match=f"cannot take RESET when {state.name}"):
            next_state(state, Event.RESET)
    assert {state for (state, _), to in MOVES.items() if to is State.FRESH} == {
        State.CONNECTING,
        State.LISTENING,
        State.CLOSED,
    }
    with pytest.raises(AssertionError, match="cannot take LISTEN when OPEN"):
        next_state(State.OPEN, Event.LISTEN)


async def test_a_second_connect_or_listen_while_connecting_is_busy(full_backlog: int) -> None:
    sock = RSocket()

    async def connect_until_closed() -> None:
        with pytest.raises(trio.ClosedResourceError, match="closed while connecting"):
            await sock.connect("127.0.0.1", full_backlog)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect_until_closed)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await sock.connect("127.0.0.1", full_backlog)
        with pytest.raises(trio.BusyResourceError):
            await sock.listen("127.0.0.1", 0, idle, nursery=nursery)
        sock.close()
    assert sock.is_closed()


async def test_close_during_the_tls_handshake_of_a_connect_wins(rsocket_cert_files: CertFiles) -> None:
    # A server that accepts and never answers the ClientHello.
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = RSocket()
    sock.set_certs(authority=str(rsocket_cert_files.authority))

    async def connect_until_closed() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await sock.connect("127.0.0.1", listener.getsockname()[1])

    with listener:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect_until_closed)
            await trio.testing.wait_all_tasks_blocked()  # in the handshake: waiting for the ServerHello
            sock.close()
    assert sock.is_closed()
    assert sock.get_handle() == -1
