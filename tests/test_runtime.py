"""Fibers: run, open_runtime, spawn_fiber, stop, current_fiber, suspend/resume."""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_rsocket
from trio_rsocket import (
    Fiber,
    current_fiber,
    open_runtime,
    resume_fiber,
    spawn_fiber,
    stop,
    suspend_fiber,
)
from trio_rsocket.testing import open_rsocket_pair

# ----------------------------------------------------------------------------
# run()


def test_run_returns_the_result_of_fn() -> None:
    async def main(a: int, b: int) -> int:
        await trio.lowlevel.checkpoint()
        return a + b

    assert trio_rsocket.run(main, 2, 3) == 5


def test_run_returns_once_every_fiber_has_finished() -> None:
    finished: list[str] = []

    async def worker() -> None:
        await trio.sleep(10)
        finished.append("worker")

    async def main() -> str:
        spawn_fiber(worker)
        return "main"

    assert trio_rsocket.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == "main"
    assert finished == ["worker"]


def test_run_uses_the_clock_it_is_given() -> None:
    async def main() -> float:
        await trio.sleep(1000)
        return trio.current_time()

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert trio_rsocket.run(main, clock=clock) == pytest.approx(1000)


def test_run_after_stop_returns_none_if_fn_was_cancelled() -> None:
    async def main() -> str:
        spawn_fiber(stopper)
        await trio.sleep_forever()
        return "never"

    async def stopper() -> None:
        await trio.sleep(1)
        stop()

    assert trio_rsocket.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) is None


def test_run_after_stop_returns_the_result_fn_had_returned() -> None:
    async def forever() -> None:
        await trio.sleep_forever()

    async def stopper() -> None:
        await trio.sleep(1)
        stop()

    async def main() -> str:
        spawn_fiber(forever)
        spawn_fiber(stopper)
        return "done"

    assert trio_rsocket.run(main, clock=trio.testing.MockClock(autojump_threshold=0)) == "done"


def test_an_exception_in_a_fiber_propagates_out_of_run_as_a_group() -> None:
    async def broken() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("fiber failed")

    async def main() -> None:
        spawn_fiber(broken)
        await trio.sleep_forever()

    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="fiber failed")):
        trio_rsocket.run(main)


def test_run_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError, match="fn must be"):
        trio_rsocket.run(42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------
# Outside a runtime


def test_spawn_fiber_outside_a_runtime_says_how_to_fix_it() -> None:
    async def main() -> None:
        async def nothing() -> None:
            await trio.lowlevel.checkpoint()

        spawn_fiber(nothing)

    with pytest.raises(RuntimeError, match=r"open_runtime\(\).*trio_rsocket\.run"):
        trio.run(main)


async def test_stop_outside_a_runtime_raises_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"stop.*open_runtime"):
        stop()


# ----------------------------------------------------------------------------
# open_runtime()


async def test_open_runtime_waits_for_its_fibers(autojump_clock: trio.testing.MockClock) -> None:
    finished = trio.Event()

    async def worker() -> None:
        await trio.sleep(5)
        finished.set()

    async with open_runtime():
        spawn_fiber(worker)
    assert finished.is_set()


async def test_open_runtime_binds_its_nursery() -> None:
    async with open_runtime() as nursery:
        assert isinstance(nursery, trio.Nursery)


async def test_stop_cancels_the_body_and_the_fibers(autojump_clock: trio.testing.MockClock) -> None:
    reached: list[str] = []

    async def worker() -> None:
        await trio.sleep_forever()

    async with open_runtime():
        spawn_fiber(worker)
        stop()
        await trio.lowlevel.checkpoint()
        reached.append("after stop")
    assert reached == []


async def test_fibers_spawned_by_fibers_join_the_same_runtime(autojump_clock: trio.testing.MockClock) -> None:
    order: list[str] = []

    async def grandchild() -> None:
        await trio.sleep(2)
        order.append("grandchild")

    async def child() -> None:
        spawn_fiber(grandchild)
        await trio.sleep(1)
        order.append("child")

    async with open_runtime():
        spawn_fiber(child)
    assert order == ["child", "grandchild"]


async def test_runtimes_nest_and_stop_stops_only_the_innermost(autojump_clock: trio.testing.MockClock) -> None:
    outer_done = trio.Event()

    async def outer_worker() -> None:
        await trio.sleep(10)
        outer_done.set()

    async def inner_worker() -> None:
        await trio.sleep_forever()

    async with open_runtime():
        spawn_fiber(outer_worker)
        async with open_runtime():
            spawn_fiber(inner_worker)
            await trio.sleep(1)
            stop()
        assert not outer_done.is_set()
    assert outer_done.is_set()


async def test_spawn_fiber_uses_the_innermost_runtime(autojump_clock: trio.testing.MockClock) -> None:
    finished = trio.Event()

    async def worker() -> None:
        await trio.sleep(3)
        finished.set()

    async with open_runtime():
        async with open_runtime():
            spawn_fiber(worker)
        # The inner block waited for the fiber: it ran in the inner runtime.
        assert finished.is_set()


async def test_the_runtime_ends_with_its_block() -> None:
    async with open_runtime():
        pass
    with pytest.raises(RuntimeError):
        stop()


# ----------------------------------------------------------------------------
# spawn_fiber() and Fiber


async def test_spawn_fiber_returns_a_fiber_named_after_fn() -> None:
    async def worker() -> None:
        await trio.lowlevel.checkpoint()

    async with open_runtime():
        fiber = spawn_fiber(worker)
        assert isinstance(fiber, Fiber)
        assert fiber.task is None
        assert fiber.name.endswith("worker")
        await trio.testing.wait_all_tasks_blocked()
        assert fiber.task is not None
        assert fiber.task.name == fiber.name
    assert fiber.is_done()


async def test_spawn_fiber_takes_a_name_and_arguments() -> None:
    seen: list[object] = []

    async def worker(a: int, b: str) -> None:
        seen.append((current_fiber().name, a, b))
        await trio.lowlevel.checkpoint()

    async with open_runtime():
        spawn_fiber(worker, 1, "two", name="my-fiber")
    assert seen == [("my-fiber", 1, "two")]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((42,), {}, "fn must be"),
        ((trio.sleep_forever,), {"name": 7}, "name must be"),
    ],
)
async def test_spawn_fiber_rejects_bad_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    async with open_runtime():
        with pytest.raises(TypeError, match=message):
            spawn_fiber(*args, **kwargs)  # type: ignore[arg-type]


async def test_spawn_fiber_refuses_a_plain_function_at_once() -> None:
    called: list[str] = []

    def plain() -> None:
        called.append("plain")

    async with open_runtime():
        with pytest.raises(TypeError, match=r"fn must be an async function.*plain.*returned None"):
            spawn_fiber(plain)  # type: ignore[arg-type]
        # The runtime goes on: nothing was started.
        await trio.testing.wait_all_tasks_blocked()
    # Called once, as trio's start_soon calls it, to look at what it returns.
    assert called == ["plain"]


async def test_spawn_fiber_refuses_a_coroutine_object_with_a_hint() -> None:
    async def work() -> None:
        await trio.lowlevel.checkpoint()

    coroutine = work()
    async with open_runtime():
        with pytest.raises(TypeError, match=r"fn must be an async function, not a coroutine object.*spawn_fiber\(fn"):
            spawn_fiber(coroutine)  # type: ignore[arg-type]
    coroutine.close()


async def test_spawn_fiber_takes_any_async_callable_as_trio_does() -> None:
    seen: list[str] = []

    async def work(label: str) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(label)

    class Worker:
        async def __call__(self, label: str) -> None:
            await work(label)

    async with open_runtime():
        spawn_fiber(functools.partial(work, "partial"))
        spawn_fiber(Worker(), "async __call__")
        spawn_fiber(lambda: work("lambda"))
    assert sorted(seen) == ["async __call__", "lambda", "partial"]


async def test_spawn_fiber_into_a_finished_runtime_closes_the_coroutine() -> None:
    async def work() -> None:
        await trio.lowlevel.checkpoint()

    coroutine = work()
    runtime_done = trio.Event()
    refused: list[BaseException] = []

    async def late_spawner() -> None:
        # Started inside the runtime, so its context still names it.
        await runtime_done.wait()
        try:
            spawn_fiber(lambda: coroutine)
        except RuntimeError as exc:
            refused.append(exc)

    async with trio.open_nursery() as outer:
        async with open_runtime():
            outer.start_soon(late_spawner)
        runtime_done.set()
    assert len(refused) == 1
    assert "closed" in str(refused[0])
    # Closed, not left for the garbage collector to warn "never awaited".
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


async def test_current_fiber_in_a_spawned_fiber_is_the_one_spawn_fiber_returned() -> None:
    seen: list[Fiber] = []

    async def worker() -> None:
        seen.append(current_fiber())
        await trio.lowlevel.checkpoint()

    async with open_runtime():
        fiber = spawn_fiber(worker)
    assert seen == [fiber]


async def test_current_fiber_works_in_any_task_and_is_stable() -> None:
    fiber = current_fiber()
    assert fiber.task is trio.lowlevel.current_task()
    assert current_fiber() is fiber


async def test_a_plain_child_task_gets_its_own_fiber() -> None:
    parent = current_fiber()
    seen: list[Fiber] = []

    async def child() -> None:
        seen.append(current_fiber())
        await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
    assert seen[0] is not parent
    assert seen[0].task is not parent.task


# ----------------------------------------------------------------------------
# suspend_fiber() / resume_fiber()


async def test_resume_wakes_a_suspended_fiber_with_a_value() -> None:
    results: list[object] = []

    async def worker() -> None:
        results.append(await suspend_fiber("from the fiber"))

    async with open_runtime():
        fiber = spawn_fiber(worker)
        await trio.testing.wait_all_tasks_blocked()
        assert fiber.is_suspended()
        assert fiber.yielded == "from the fiber"
        resume_fiber(fiber, "from main")
        assert not fiber.is_suspended()
    assert results == ["from main"]


async def test_a_resume_before_the_suspend_is_not_lost() -> None:
    fiber = current_fiber()
    resume_fiber(fiber, 1)
    resume_fiber(fiber, 2)
    with trio.testing.assert_checkpoints():
        assert await suspend_fiber() == 1
    assert await suspend_fiber() == 2


async def test_resume_before_a_spawned_fiber_starts_is_kept() -> None:
    results: list[object] = []

    async def worker() -> None:
        results.append(await suspend_fiber())

    async with open_runtime():
        fiber = spawn_fiber(worker)
        resume_fiber(fiber, "early")
    assert results == ["early"]


async def test_suspend_is_cancellable_and_a_later_resume_is_kept(autojump_clock: trio.testing.MockClock) -> None:
    fiber = current_fiber()
    with trio.move_on_after(1) as scope:
        await suspend_fiber()
    assert scope.cancelled_caught
    assert not fiber.is_suspended()
    resume_fiber(fiber, "later")
    assert await suspend_fiber() == "later"


async def test_a_cancelled_suspend_leaves_a_queued_value_queued() -> None:
    fiber = current_fiber()
    resume_fiber(fiber, "kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        await suspend_fiber()
    assert scope.cancelled_caught
    assert await suspend_fiber() == "kept"


async def test_resuming_a_finished_fiber_raises_runtime_error() -> None:
    async def worker() -> None:
        await trio.lowlevel.checkpoint()

    async with open_runtime():
        fiber = spawn_fiber(worker)
    with pytest.raises(RuntimeError, match="finished"):
        resume_fiber(fiber)


async def test_resume_fiber_rejects_what_is_not_a_fiber() -> None:
    with pytest.raises(TypeError, match="fiber must be a Fiber"):
        resume_fiber("fiber")  # type: ignore[arg-type]


def test_run_hands_on_ctrl_c_bare() -> None:
    async def interrupted() -> None:
        trio_rsocket.spawn_fiber(trio.sleep_forever)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trio_rsocket.run(interrupted)


# The tutorial's first server (on a free port), telling the test once it listens.
_FIRST_SERVER = """
import trio_rsocket
from trio_rsocket import RSocket


async def echo(data, sock):
    while chunk := await sock.read():
        await sock.write(chunk)


async def main():
    listener = RSocket()
    await listener.listen("127.0.0.1", 0, echo)
    print("ready", flush=True)


trio_rsocket.run(main)
"""


def test_ctrl_c_on_a_server_ends_it_with_a_bare_keyboard_interrupt_as_trio_run_does() -> None:
    """Ctrl-C prints one short traceback that ends in KeyboardInterrupt: no
    exception group, nothing chained to it (issue 16)."""
    server = subprocess.Popen(
        [sys.executable, "-c", _FIRST_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)  # bounds a hang; times nothing
        assert ready, "the server never said it was listening"
        assert server.stdout.readline() == "ready\n"
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == -signal.SIGINT  # how Python ends on an uncaught KeyboardInterrupt
    lines = errors.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "KeyboardInterrupt"
    assert errors.count("Traceback") == 1
    for chained in ("ExceptionGroup", "+-", "direct cause", "During handling"):
        assert chained not in errors


def test_run_hands_on_the_keyboard_interrupt_itself_chained_to_nothing() -> None:
    async def interrupted() -> None:
        trio_rsocket.spawn_fiber(trio.sleep_forever)
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt("from the fiber's sibling")

    async def main() -> None:
        trio_rsocket.spawn_fiber(interrupted)
        await trio.sleep_forever()

    with pytest.raises(KeyboardInterrupt) as caught:
        trio_rsocket.run(main)
    assert caught.value.args == ("from the fiber's sibling",)
    assert caught.value.__cause__ is None


def test_run_raises_fn_s_own_exception_bare_as_trio_run_does() -> None:
    async def failing() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as caught:
        trio_rsocket.run(failing)
    assert not isinstance(caught.value, BaseExceptionGroup)


def test_except_listen_error_around_run_catches_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            await trio_rsocket.RSocket().listen("127.0.0.1", port, echo_nothing)

        with pytest.raises(trio_rsocket.ListenError, match="Cannot bind/listen") as caught:
            trio_rsocket.run(main)
    assert caught.value.errno == errno.EADDRINUSE


async def echo_nothing(data: object, sock: trio_rsocket.RSocket) -> None:
    await trio.lowlevel.checkpoint()


def test_run_raises_an_exception_group_fn_raised_as_it_was() -> None:
    async def failing() -> None:
        await trio.lowlevel.checkpoint()
        raise ExceptionGroup("mine", [ValueError("one"), KeyError("two")])

    with pytest.raises(ExceptionGroup, match="mine") as caught:
        trio_rsocket.run(failing)
    assert [type(error) for error in caught.value.exceptions] == [ValueError, KeyError]


def test_run_groups_fn_s_exception_with_the_fibers_that_failed_too() -> None:
    async def broken() -> None:
        # Shielded, so that it fails although fn's error cancels the runtime.
        with trio.CancelScope(shield=True):
            await trio.lowlevel.checkpoint()
            raise KeyError("fiber failed")

    async def main() -> None:
        spawn_fiber(broken)
        await trio.lowlevel.checkpoint()
        raise ValueError("main failed")

    with pytest.RaisesGroup(ValueError, KeyError):
        trio_rsocket.run(main)


def test_run_refuses_a_coroutine_object_with_a_hint() -> None:
    async def main() -> None:
        await trio.lowlevel.checkpoint()

    coroutine = main()
    with pytest.raises(TypeError, match=r"not a coroutine object.*run\(fn, \*args\), not run\(fn\(\*args\)\)"):
        trio_rsocket.run(coroutine)  # type: ignore[arg-type]
    coroutine.close()


def test_run_refuses_a_plain_function_with_a_type_error() -> None:
    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match=r"fn must be an async function.*plain.*returned 1"):
        trio_rsocket.run(plain)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------
# trio only (issue 16): under asyncio (or anyio's asyncio backend, which is
# asyncio underneath) the first call says so in a sentence, instead of trio's
# "must be called from async context" or asyncio's "Task got bad yield".

TRIO_ONLY = r"trio_rsocket runs under trio only, and {what} was called outside trio"


async def _in_runtime() -> None:
    async with open_runtime():
        pass


async def _in_a_pair() -> None:
    async with open_rsocket_pair():
        pass


async def _deadline_after() -> None:
    trio_rsocket.deadline_after(1)


ASYNCIO_FIRST_CALLS: list[Any] = [
    pytest.param(lambda: trio_rsocket.RSocket().connect("127.0.0.1", 9), "connect()", id="connect"),
    pytest.param(lambda: trio_rsocket.RSocket().listen("127.0.0.1", 0, echo_nothing), "listen()", id="listen"),
    pytest.param(_in_runtime, "open_runtime()", id="open_runtime"),
    pytest.param(_deadline_after, "deadline_after()", id="deadline_after"),
    pytest.param(_in_a_pair, "open_rsocket_pair()", id="open_rsocket_pair"),
]


@pytest.mark.parametrize(("call", "what"), ASYNCIO_FIRST_CALLS)
def test_the_first_call_under_asyncio_says_trio_only(call: Callable[[], Awaitable[object]], what: str) -> None:
    with pytest.raises(RuntimeError, match=TRIO_ONLY.format(what=re.escape(what))):
        asyncio.run(call())  # type: ignore[arg-type]


def test_a_socket_used_as_a_context_manager_under_asyncio_says_trio_only_on_exit_too() -> None:
    """The exit's aclose() says it too, not "Task got bad yield"."""

    async def main() -> None:
        async with trio_rsocket.RSocket() as sock:
            await sock.connect("127.0.0.1", 9)

    with pytest.raises(RuntimeError, match=TRIO_ONLY.format(what=r"aclose\(\)")):
        asyncio.run(main())


def test_adopting_a_socket_in_asyncio_says_trio_only() -> None:
    mine, theirs = socket.socketpair()

    async def main() -> None:
        trio_rsocket.RSocket.from_socket(mine)

    with mine, theirs, pytest.raises(RuntimeError, match=TRIO_ONLY.format(what=r"from_socket\(\)")):
        asyncio.run(main())


def test_a_socket_adopted_before_trio_starts_serves_under_trio() -> None:
    """from_socket is synchronous: called outside any event loop it is fine."""
    mine, theirs = socket.socketpair()
    adopted = trio_rsocket.RSocket.from_socket(mine)

    async def main() -> bytes:
        async with adopted:
            await adopted.write(b"ping")
            return theirs.recv(4)

    with theirs:
        assert trio.run(main) == b"ping"


def test_the_readme_and_the_docs_say_trio_only_near_the_top() -> None:
    root = Path(__file__).parent.parent
    for page in (root / "README.rst", root / "docs" / "index.rst"):
        top = page.read_text().split("\n\n")[:3]  # the title and the opening paragraph
        assert any("**trio only.**" in paragraph for paragraph in top), page
