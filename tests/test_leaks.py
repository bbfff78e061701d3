"""No file descriptor leaks over hundreds of connect/close cycles, failures included."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from trio_rsocket import ConnectError, DeadlineError, RSocket, deadline_after

from .conftest import open_fds

CYCLES = 300


async def test_connect_close_cycles_leak_no_descriptors(no_fd_leak: None) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener, trio.open_nursery() as nursery:
        port = listener.socket.getsockname()[1]

        async def accept_and_close() -> None:
            for _ in range(CYCLES):
                stream = await listener.accept()
                await stream.aclose()

        nursery.start_soon(accept_and_close)
        # The listener is open now; each cycle may add the client's socket
        # and the accepted one, and gives both back before the next.
        baseline = len(open_fds())
        peak = baseline
        for cycle in range(CYCLES):
            sock = RSocket()
            await sock.connect("127.0.0.1", port)
            if cycle % 3 == 0:
                await sock.write(b"x")
                await sock.aclose()
            elif cycle % 3 == 1:
                sock.close()
            else:
                sock.reset()
            peak = max(peak, len(open_fds()))
        # Not only none left at the end (no_fd_leak): none piling up on the
        # way, which a leak of one per cycle would do within a few cycles.
        assert peak <= baseline + 2, f"{peak - baseline} descriptors open at once over {CYCLES} cycles"


async def test_failed_connects_leak_no_descriptors(no_fd_leak: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sock = RSocket()
    for _ in range(CYCLES):
        with pytest.raises(ConnectError):
            await sock.connect("127.0.0.1", port)
    for _ in range(10):
        with pytest.raises(ConnectError):
            await sock.connect("nothing-here.invalid", port)
    assert sock.get_handle() == -1


async def test_connects_stopped_by_deadline_leak_no_descriptors(
    autojump_clock: trio.testing.MockClock, no_fd_leak: None
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        for _ in range(20):
            sock = RSocket()
            with pytest.raises(DeadlineError):
                await sock.connect("127.0.0.1", port, deadline=deadline_after(5))
            assert sock.get_handle() == -1
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
