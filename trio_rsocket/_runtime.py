"""Fibers: run, open_runtime, spawn_fiber, stop, and suspend/resume.

Theory of operation
-------------------
Ioto runs every fiber on one event loop started by ``rInit`` +
``rServiceEvents``.  Here a fiber is a trio task, and the *runtime* is a
nursery those tasks are started in.  The innermost runtime is held in a
:class:`contextvars.ContextVar`: trio gives every task a copy of its parent's
context, so fibers see the runtime they were spawned in, and an
``open_runtime()`` inside another one shadows it for its own body only
(runtimes nest).

A :class:`Fiber` is a handle on one task.  ``spawn_fiber`` makes one before its
task starts; :func:`current_fiber` makes one on first use for any other task
(the main function, a pytest-trio test, a task started with plain
``nursery.start_soon``) and keeps it in the task's own context, checked
against the running task so that a child task never mistakes its parent's
fiber for its own.

trio_rsocket runs under trio only: it waits on trio's event loop directly
(``trio.lowlevel``), which no other loop can stand in for.  Where a
program's first call needs that loop (``connect``, ``listen``,
``open_runtime``, ``deadline_after``, ``aclose``, and ``from_socket`` called
from a running asyncio loop), :func:`check_trio` says so in a sentence;
reads and writes do not pay for the check.

``suspend_fiber`` / ``resume_fiber`` are Ioto's ``rYieldFiber`` /
``rResumeFiber`` over trio's ``wait_task_rescheduled`` / ``reschedule``.  A
resume that arrives while the fiber is not suspended is queued on the fiber,
and its next suspend returns it at once, so no wake-up is ever lost.
"""

from __future__ import annotations

import contextvars
import reprlib
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar, TypeVarTuple, Unpack

import outcome
import trio
from trio.lowlevel import (
    Abort,
    RaiseCancelT,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

__all__ = [
    "Fiber",
    "check_not_asyncio",
    "check_trio",
    "current_fiber",
    "current_nursery",
    "open_runtime",
    "outside_trio",
    "resume_fiber",
    "run",
    "spawn_fiber",
    "stop",
    "suspend_fiber",
]

T = TypeVar("T")
#: The positional arguments a function is started with (typed as trio types them).
ArgsT = TypeVarTuple("ArgsT")

#: How to get a runtime, appended to every "no runtime" error.
_HOW_TO_FIX: Final = (
    "call it inside `async with trio_rsocket.open_runtime():`, or run the program with `trio_rsocket.run(main)`"
)


def outside_trio(what: str) -> RuntimeError:
    """The error for *what* (``"connect()"``), called where no trio task runs:
    under asyncio (or anyio's asyncio backend), say."""
    return RuntimeError(
        f"trio_rsocket runs under trio only, and {what} was called outside trio (under asyncio, say): "
        "run the program with trio.run() or trio_rsocket.run() (with anyio: anyio.run(main, backend='trio'))"
    )


def check_trio(what: str) -> None:
    """Raise :func:`outside_trio` unless a trio task is running this code.

    Called where a program's first call needs trio's event loop (``connect``,
    ``listen``, ``open_runtime``, ...), not on the paths every read and write
    takes: it costs one look-up, and what it spares the user is trio's own
    ``"must be called from async context"`` or asyncio's ``"Task got bad
    yield"``, which do not say what is wrong.
    """
    try:
        current_task()
    except RuntimeError:
        raise outside_trio(what) from None


def check_not_asyncio(what: str) -> None:
    """For a synchronous call that may come before trio starts, but not from
    asyncio: raise :func:`outside_trio` if an asyncio event loop, and no trio
    task, is running in this thread."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        current_task()
    except RuntimeError:
        if asyncio._get_running_loop() is not None:
            raise outside_trio(what) from None


class _Runtime:
    """One fiber runtime: the nursery its fibers run in."""

    __slots__ = ("nursery",)

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery


_current_runtime: contextvars.ContextVar[_Runtime | None] = contextvars.ContextVar("trio_rsocket.runtime", default=None)
_current_fiber: contextvars.ContextVar[Fiber | None] = contextvars.ContextVar("trio_rsocket.fiber", default=None)


def _runtime(what: str, remedy: str = "") -> _Runtime:
    runtime = _current_runtime.get()
    if runtime is None:
        raise RuntimeError(f"{what} needs a trio_rsocket runtime, and there is none here: {_HOW_TO_FIX}{remedy}")
    return runtime


def current_nursery(what: str, remedy: str = "") -> trio.Nursery:
    """The current runtime's nursery, or :class:`RuntimeError` saying how to get one.

    *what* names the caller in the message ("listen() without nursery="),
    *remedy* adds the caller's own way out (", or pass nursery=").
    """
    return _runtime(what, remedy).nursery


@asynccontextmanager
async def open_runtime() -> AsyncIterator[trio.Nursery]:
    """Provide a fiber runtime for the body of an ``async with`` block.

    ::

        async with trio_rsocket.open_runtime():
            trio_rsocket.spawn_fiber(worker)
            await listener.listen(None, 8080, handler)

    The runtime is a nursery: the block exits only when every fiber spawned in
    it has finished, :func:`stop` cancels the body and all its fibers, and an
    exception from the body or a fiber cancels the rest and propagates as
    trio's nurseries do (a :class:`BaseExceptionGroup`).  The nursery is what
    ``as`` binds, for code that wants to start trio tasks in it directly.

    Runtimes nest: inside the block, :func:`spawn_fiber`, :func:`stop` and
    ``listen`` without ``nursery=`` use the innermost one.  This is how a
    trio program (or a pytest-trio test) gets what Ioto's ``rInit`` gives.
    """
    check_trio("open_runtime()")
    async with trio.open_nursery() as nursery:
        token = _current_runtime.set(_Runtime(nursery))
        try:
            yield nursery
        finally:
            _current_runtime.reset(token)


#: True while a worker process runs the program's script again to find its
#: main function (``_workers``): a ``run()`` at the script's top level, not
#: under ``if __name__ == "__main__":``, would start a supervisor or a runtime
#: inside the worker.
loading_worker_script = False


def run(
    fn: Callable[[Unpack[ArgsT]], Awaitable[T]],
    *args: *ArgsT,
    clock: trio.abc.Clock | None = None,
    workers: int | None = None,
    listen: Sequence[tuple[str | None, int]] | None = None,
    grace: float = 10.0,
) -> T | None:
    """Run ``await fn(*args)`` in a new runtime: Ioto's ``rInit(fn, arg)`` +
    ``rServiceEvents()``.

    This is :func:`trio.run` with a root fiber runtime (:func:`open_runtime`)
    around *fn*, so *fn* and everything it starts can :func:`spawn_fiber`
    and ``listen``.  It returns *fn*'s result once every fiber has finished.
    After :func:`stop` it returns as soon as the cancelled fibers have
    unwound: *fn*'s result if *fn* had already returned, ``None`` if ``stop``
    cancelled it first.

    Exceptions come out as from :func:`trio.run`: when *fn* raises and no
    fiber failed, *fn*'s own exception propagates bare, so ``except
    ListenError:`` around ``run`` works.  When a fiber failed (with or
    without *fn*), the runtime's nursery raises what trio's nurseries raise:
    a :class:`BaseExceptionGroup` of every error, *fn*'s included (catch it
    with ``except*``).  Ctrl-C comes out as a bare
    :class:`KeyboardInterrupt` (unless other errors came with it), as from
    :func:`trio.run`, so ``except KeyboardInterrupt:`` works too.

    *fn* is called at once, as :func:`trio.run` does: one that does not
    return a coroutine (a plain function) raises :class:`TypeError`.  *clock*
    is passed to :func:`trio.run` (a :class:`trio.testing.MockClock`, say).

    **Workers.**  With ``workers=N`` (N > 1) this process becomes a
    supervisor, with no trio in it: it binds every ``(host, port)`` of
    *listen* once (port 0 gets a real port; host ``None`` or ``""`` all
    interfaces, as ``listen`` binds), then starts N worker processes (new
    interpreters, as :mod:`multiprocessing`'s spawn: *fn* and *args* must be
    picklable, *fn* a module-level function) that each run ``await
    fn(*args)`` in a runtime of their own.  In a worker, ``listen(host,
    port, ...)`` on one of those addresses adopts the supervisor's socket
    (port 0 matched in order; :func:`trio_rsocket.listen_addresses` lists
    them with their real ports) so every worker accepts from one queue;
    :func:`trio_rsocket.worker_id` tells the workers apart.  SIGINT or
    SIGTERM to the supervisor stops every worker gracefully (its listeners
    shut down with *grace* seconds for their handlers, then its runtime is
    cancelled; killed if still there *grace* + 5 seconds later) and ``run``
    returns ``None``; SIGHUP replaces the workers one at a time, each new
    one serving before the old one stops, without a connection refused; a
    worker that dies is restarted, after a delay growing from 0.1 to 10
    seconds if it keeps dying, and the ``"trio_rsocket"`` logger says why.
    With ``workers=1`` (or ``None``) there is no supervisor: *listen* is
    bound in this process before trio starts, and ``listen`` adopts it just
    as in a worker, so one *fn* serves either way.  *clock* is for one
    process only.  Bad *workers*, *listen*, *grace*, or an *fn* the workers
    could not load raise :class:`TypeError`/:class:`ValueError` before any
    socket is bound or process started.
    """
    _check_async_callable(fn, "run")
    if loading_worker_script:
        raise RuntimeError(
            "run() was called while a worker loaded the program's script to find its main function "
            "(a fresh interpreter runs the script again, as multiprocessing's spawn does): "
            'call run() under `if __name__ == "__main__":`'
        )
    if workers is not None or listen is not None:
        from . import _workers  # a room above this one, loaded only when asked for

        count = _workers.check_workers(workers)
        addresses = _workers.check_listen(listen)
        seconds = _workers.check_grace(grace)
        if count is not None and count > 1:
            if clock is not None:
                raise ValueError("clock is for one process: run() with workers=N > 1 cannot take one")
            _workers.run_workers(fn, args, count, addresses, seconds)
            return None
        return _workers.run_in_process(lambda: run(fn, *args, clock=clock), addresses)
    results: list[T] = []
    # What fn itself raised, to tell it from what its fibers raised.
    fn_errors: list[BaseException] = []

    async def root() -> None:
        async with open_runtime():
            try:
                results.append(await _call_async(fn, args))
            except BaseException as exc:
                fn_errors.append(exc)
                raise

    try:
        trio.run(root, clock=clock)
    except BaseExceptionGroup as group:
        bare = _unwrap(group, fn_errors)
        if bare is None:
            raise
    else:
        return results[0] if results else None
    raise bare


def _unwrap(group: BaseExceptionGroup[BaseException], fn_errors: list[BaseException]) -> BaseException | None:
    """What :func:`run` raises instead of the runtime's *group*, or ``None``
    to raise the group itself."""
    if fn_errors and len(group.exceptions) == 1:
        # fn's own exception, alone: raised by trio.run, it would come bare.
        # Compared by its leaves: the nursery's cancel scope hands on a group
        # fn raised as a copy (split off its Cancelled), with the same leaves.
        (only,) = group.exceptions
        fn_leaves = {id(leaf) for leaf in _leaves(fn_errors[0])}
        if all(id(leaf) in fn_leaves for leaf in _leaves(only)):
            return only
    interrupts, others = group.split(KeyboardInterrupt)
    if interrupts is not None and others is None:
        # Only Ctrl-C, wherever it landed: the KeyboardInterrupt itself, bare
        # and chained to nothing, as trio.run raises it (so `except
        # KeyboardInterrupt` works, and the traceback is a few lines).
        return next(_leaves(interrupts))
    return None


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions in *error* that are not groups (*error* itself if it is not one)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def stop() -> None:
    """Cancel the current runtime: its body and every fiber in it (Ioto's ``rStop``).

    Synchronous; the fibers unwind at their next checkpoint and :func:`run`
    (or the ``open_runtime`` block) returns.  Only the innermost runtime is
    stopped.

    Raises :class:`RuntimeError` outside a runtime.
    """
    _runtime("stop()").nursery.cancel_scope.cancel()


class Fiber:
    """A fiber: one trio task (Ioto's ``RFiber``).

    Made by :func:`spawn_fiber` or, for any other task, by
    :func:`current_fiber`.  Pass it to :func:`resume_fiber` to wake it from
    :func:`suspend_fiber`.

    Attributes:
      name (str): the fiber's name (the trio task's name).
      task (trio.lowlevel.Task | None): the trio task, or ``None`` for a
        spawned fiber that has not started yet.
      yielded (object): the value passed to the last :func:`suspend_fiber`
        (``None`` at first), for whoever resumes it: Ioto's ``rYieldFiber``
        hands it to its resumer.
    """

    __slots__ = ("_resumes", "_suspended", "name", "task", "yielded")

    def __init__(self, name: str, task: Task | None = None) -> None:
        # The public attributes are described in the class docstring: the
        # public name of this class is trio_rsocket.Fiber, so Sphinx would not
        # find ``#:`` comments here.
        self.name = name
        self.task = task
        self.yielded: object = None
        # Values from resume_fiber calls that found the fiber running.
        self._resumes: deque[object] = deque()
        self._suspended = False

    def is_suspended(self) -> bool:
        """True while the fiber waits in :func:`suspend_fiber`."""
        return self._suspended

    def is_done(self) -> bool:
        """True once the fiber's task has finished."""
        return self.task is not None and self.task.coro.cr_frame is None

    def __repr__(self) -> str:
        state = "suspended" if self._suspended else "done" if self.is_done() else "running"
        return f"<Fiber {self.name!r} {state}>"


def spawn_fiber(fn: Callable[[Unpack[ArgsT]], Awaitable[object]], *args: *ArgsT, name: str | None = None) -> Fiber:
    """Start ``await fn(*args)`` as a new fiber in the current runtime (Ioto's
    ``rSpawnFiber(name, fn, arg)``) and return its :class:`Fiber`.

    Like ``nursery.start_soon``, the fiber starts running at the caller's next
    checkpoint; until then ``fiber.task`` is ``None``.  *name* defaults to
    *fn*'s qualified name.  An exception from the fiber cancels the runtime
    and propagates out of it, as in any trio nursery; catch it in *fn* if the
    rest should go on.

    *fn* is anything trio's ``start_soon`` takes: an ``async def``, a
    :func:`functools.partial` of one, an object with an ``async def
    __call__``, a lambda that returns a coroutine.  As ``start_soon`` does,
    ``spawn_fiber`` calls ``fn(*args)`` at once and raises :class:`TypeError`
    if that did not return a coroutine (a plain function): the error comes
    from this call, and the runtime goes on.

    Raises :class:`RuntimeError` outside a runtime.
    """
    _check_async_callable(fn, "spawn_fiber")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    nursery = _runtime("spawn_fiber()").nursery
    if name is None:
        name = _name_of(fn)
    coroutine = _call_async(fn, args)
    fiber = Fiber(name)
    try:
        nursery.start_soon(_fiber_main, fiber, coroutine, name=name)
    except BaseException:
        # A runtime closed to new fibers: the coroutine will never run.
        coroutine.close()
        raise
    return fiber


async def _fiber_main(fiber: Fiber, coroutine: Coroutine[Any, Any, object]) -> None:
    fiber.task = current_task()
    _current_fiber.set(fiber)
    await coroutine


def _name_of(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _check_async_callable(fn: object, caller: str) -> None:
    """Refuse what cannot be an async function at all, naming the argument;
    *caller* (``"run"``) shows how to call it instead."""
    if isinstance(fn, Coroutine):
        raise TypeError(
            "fn must be an async function, not a coroutine object: pass the function and its arguments, "
            f"{caller}(fn, *args), not {caller}(fn(*args))"
        )
    if not callable(fn):
        raise TypeError(f"fn must be an async function, not {type(fn).__name__}")


def _call_async(fn: Callable[..., Awaitable[T]], args: tuple[object, ...]) -> Coroutine[Any, Any, T]:
    """``fn(*args)``, refused at once unless it returned a coroutine.

    trio's own rule (``nursery.start_soon``): whether *fn* is async cannot be
    told before calling it (a ``functools.partial``, a lambda that returns a
    coroutine, an object with an ``async def __call__``), so call it and look
    at the result.  Calling it here rather than in the new task makes a plain
    function fail in the caller, not crash the runtime later.
    """
    result = fn(*args)
    if not isinstance(result, Coroutine):
        raise TypeError(
            f"fn must be an async function, but {_name_of(fn)} returned {reprlib.repr(result)}, "
            "not a coroutine: is it an async def?"
        )
    return result


def current_fiber() -> Fiber:
    """The :class:`Fiber` of the running task (Ioto's ``rGetFiber``).

    Works in any trio task: a task not started by :func:`spawn_fiber` gets a
    Fiber on first call, the same one on every later call.
    """
    task = current_task()
    fiber = _current_fiber.get()
    if fiber is None or fiber.task is not task:
        fiber = Fiber(task.name, task)
        _current_fiber.set(fiber)
    return fiber


async def suspend_fiber(value: object = None) -> object:
    """Park the current fiber until :func:`resume_fiber` wakes it, and return
    the value given there (Ioto's ``rYieldFiber``).

    *value* is left on :attr:`Fiber.yielded` for the resumer.  If a resume
    already arrived while the fiber was running, this returns its value at
    once (still a checkpoint).  Cancellable: a cancellation raises
    :class:`trio.Cancelled` and a later resume is queued for the next suspend.
    """
    fiber = current_fiber()
    fiber.yielded = value
    if fiber._resumes:
        # Check for cancellation before taking the value, so a cancelled
        # suspend leaves it queued.
        await checkpoint_if_cancelled()
        resumed = fiber._resumes.popleft()
        await cancel_shielded_checkpoint()
        return resumed

    def abort(raise_cancel: RaiseCancelT) -> Abort:
        fiber._suspended = False
        return Abort.SUCCEEDED

    fiber._suspended = True
    return await wait_task_rescheduled(abort)


def resume_fiber(fiber: Fiber, value: object = None) -> None:
    """Wake *fiber* from :func:`suspend_fiber`, which returns *value* (Ioto's
    ``rResumeFiber``).

    Synchronous; call it from any task of the same trio run.  If the fiber is
    not suspended (still running, or not started yet), the value is queued and
    its next ``suspend_fiber`` returns it at once: no wake-up is lost.

    Raises :class:`RuntimeError` if the fiber has finished (nothing would
    ever take the value).
    """
    if not isinstance(fiber, Fiber):
        raise TypeError(f"fiber must be a Fiber, not {type(fiber).__name__}")
    if fiber._suspended:
        fiber._suspended = False
        assert fiber.task is not None
        reschedule(fiber.task, outcome.Value(value))
        return
    if fiber.is_done():
        raise RuntimeError(f"cannot resume {fiber!r}: it has finished")
    fiber._resumes.append(value)
