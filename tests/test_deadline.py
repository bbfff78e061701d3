"""Deadlines: absolute trio-clock times, DeadlineError, outer cancellation untouched.

Every test here runs on trio's MockClock with autojump, so deadlines pass as
soon as every task is blocked: no test waits for real time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trio_rsocket import DeadlineError, RSocket, RSocketError, deadline_after
from trio_rsocket._deadline import check_deadline

from .conftest import plain_pair


@pytest.mark.parametrize("call", ["read", "wait_readable"])
async def test_a_read_or_wait_deadline_raises_deadline_error_at_that_time(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket], call: str
) -> None:
    _, server = pair
    deadline = deadline_after(5)
    with pytest.raises(DeadlineError) as caught:
        await getattr(server, call)(deadline=deadline)
    assert trio.current_time() == deadline
    assert caught.value.bytes_written == 0
    assert server.get_error() == str(caught.value)


async def test_deadline_error_is_timeout_and_too_slow() -> None:
    error = DeadlineError("late")
    assert isinstance(error, TimeoutError)
    assert isinstance(error, trio.TooSlowError)
    assert isinstance(error, RSocketError)


@pytest.mark.parametrize("call", ["read", "wait_readable"])
async def test_after_a_read_or_wait_deadline_the_data_is_still_read(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket], call: str
) -> None:
    client, server = pair
    with pytest.raises(DeadlineError):
        await getattr(server, call)(deadline=deadline_after(1))
    await client.write(b"late data")
    await server.wait_readable(deadline=deadline_after(5))
    assert await server.read_exactly(9) == b"late data"


async def test_read_into_deadline(autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    with pytest.raises(DeadlineError):
        await server.read_into(bytearray(8), deadline=deadline_after(1))
    await client.write(b"x")
    target = bytearray(8)
    assert await server.read_into(target) == 1


@pytest.mark.parametrize(
    ("read", "first", "rest"),
    [
        pytest.param(lambda sock, **when: sock.read_exactly(10, **when), b"abc", b"defghij", id="read_exactly"),
        pytest.param(lambda sock, **when: sock.read_until(b"\n", **when), b"partial ", b"line\n", id="read_until"),
    ],
)
async def test_a_read_deadline_keeps_partial_data_buffered(
    autojump_clock: trio.testing.MockClock,
    pair: tuple[RSocket, RSocket],
    read: Callable[..., Awaitable[bytes]],
    first: bytes,
    rest: bytes,
) -> None:
    client, server = pair
    await client.write(first)
    with pytest.raises(DeadlineError):
        await read(server, deadline=deadline_after(2))
    await client.write(rest)
    assert await read(server) == first + rest


async def test_write_deadline_reports_exactly_the_bytes_the_peer_can_drain(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await plain_pair()
    async with client, server:
        data = bytes(range(256)) * (64 * 1024 * 1024 // 256)  # more than the kernel buffers hold
        with pytest.raises(DeadlineError) as caught:
            await client.write(data, deadline=deadline_after(3))
        written = caught.value.bytes_written
        assert 0 < written < len(data)
        assert client.statistics().bytes_written == written
        assert str(written) in str(caught.value)
        await client.send_eof()
        received = bytearray()
        for _ in range(len(data)):  # bounded: each read returns at least one byte
            chunk = await server.read()
            if not chunk:
                break
            received += chunk
        assert len(received) == written
        assert received == data[:written]


async def test_write_of_memoryview_slices_reports_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await plain_pair()
    async with client, server:
        payload = memoryview(bytearray(32 * 1024 * 1024))
        with pytest.raises(DeadlineError) as caught:
            await client.write(payload[1:], deadline=deadline_after(1))
        assert 0 < caught.value.bytes_written < len(payload) - 1


async def test_connect_deadline(autojump_clock: trio.testing.MockClock, full_backlog: int) -> None:
    sock = RSocket()
    deadline = deadline_after(7)
    with pytest.raises(DeadlineError, match=r"Cannot connect socket to 127\.0\.0\.1"):
        await sock.connect("127.0.0.1", full_backlog, deadline=deadline)
    assert trio.current_time() == deadline
    assert not sock.is_connected()
    assert sock.get_handle() == -1


@pytest.mark.parametrize("call", ["read", "wait_readable"])
async def test_outer_cancellation_passes_through_untouched(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket], call: str
) -> None:
    _, server = pair
    with trio.move_on_after(1) as outer:
        await getattr(server, call)(deadline=deadline_after(10))
    assert outer.cancelled_caught
    assert server.get_error() == ""


async def test_outer_scope_wins_when_both_expire_together(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    _, server = pair
    deadline = deadline_after(5)
    with trio.CancelScope(deadline=deadline) as outer:
        await server.read(deadline=deadline)
    assert outer.cancelled_caught


async def test_explicit_cancel_is_never_converted(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await client.read(deadline=deadline_after(100))
        with pytest.raises(trio.Cancelled):
            await client.write(b"x", deadline=deadline_after(100))
    assert client.get_error() == ""


async def test_earlier_own_deadline_wins_over_a_later_outer_one(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    _, server = pair
    with trio.move_on_after(100) as outer, pytest.raises(DeadlineError):
        await server.read(deadline=deadline_after(2))
    assert not outer.cancelled_caught


@pytest.mark.parametrize("no_deadline", [None, 0, 0.0, math.inf])
async def test_none_and_zero_mean_no_deadline(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket], no_deadline: float | None
) -> None:
    _, server = pair
    start = trio.current_time()
    with trio.move_on_after(1000) as outer:
        await server.read(deadline=no_deadline)
    assert outer.cancelled_caught
    assert trio.current_time() == start + 1000


async def test_past_deadline_fails_at_once_and_consumes_nothing(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"keep")
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(DeadlineError):
        await server.read(deadline=trio.current_time() - 1)
    assert await server.read_exactly(4) == b"keep"


async def test_deadline_after_is_relative_to_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    assert deadline_after(30) == trio.current_time() + 30
    await trio.sleep(5)
    assert deadline_after(0.5) == trio.current_time() + 0.5


async def test_deadline_after_zero_at_time_zero_is_still_a_deadline(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket]
) -> None:
    # MockClock starts at 0, and a deadline of exactly 0 would mean "none".
    _, server = pair
    assert trio.current_time() == 0  # nothing has slept yet
    deadline = deadline_after(0)
    assert deadline != 0
    assert deadline <= trio.current_time()  # already due
    with pytest.raises(DeadlineError):
        await server.read(deadline=deadline)


# ----------------------------------------------------------------------------
# Deadlines past float range: an int can be larger than any float

#: Larger than any float (about 1.8e308), so float() of it overflows.
PAST_FLOAT_RANGE = 10**400


def test_a_deadline_past_float_range_is_infinity_not_an_overflow() -> None:
    assert check_deadline(PAST_FLOAT_RANGE) == math.inf
    assert check_deadline(-PAST_FLOAT_RANGE) == -math.inf


async def test_deadline_after_past_float_range_is_infinity(autojump_clock: trio.testing.MockClock) -> None:
    assert deadline_after(PAST_FLOAT_RANGE) == math.inf
    assert deadline_after(-PAST_FLOAT_RANGE) == -math.inf
    assert deadline_after(math.inf) == math.inf
    assert deadline_after(-math.inf) == -math.inf


@pytest.mark.parametrize("far_future", [pytest.param(PAST_FLOAT_RANGE, id="10**400"), math.inf])
async def test_a_deadline_past_float_range_never_passes(
    autojump_clock: trio.testing.MockClock, pair: tuple[RSocket, RSocket], far_future: int | float
) -> None:
    client, server = pair
    await client.write(b"now")
    assert await server.read(deadline=far_future) == b"now"
    with trio.move_on_after(1000) as outer:
        await server.read(deadline=far_future)
    assert outer.cancelled_caught
    assert server.get_error() == ""
    with trio.move_on_after(1000) as outer:
        await server.read(deadline=deadline_after(PAST_FLOAT_RANGE))
    assert outer.cancelled_caught


async def test_connect_with_a_deadline_past_float_range_waits_without_one(
    autojump_clock: trio.testing.MockClock, full_backlog: int
) -> None:
    sock = RSocket()
    with trio.move_on_after(1000) as outer:
        await sock.connect("127.0.0.1", full_backlog, deadline=PAST_FLOAT_RANGE)
    assert outer.cancelled_caught
    assert sock.get_error() == ""


@pytest.mark.parametrize("past", [-1, -math.inf, pytest.param(-PAST_FLOAT_RANGE, id="-10**400")])
async def test_a_negative_deadline_is_already_due(pair: tuple[RSocket, RSocket], past: int | float) -> None:
    client, server = pair
    await client.write(b"keep")
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(DeadlineError):
        await server.read(deadline=past)
    assert await server.read_exactly(4) == b"keep"
