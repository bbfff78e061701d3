"""Workers: ``run(main, *args, workers=N, listen=[...])``, its supervisor and a worker's bootstrap.

Theory of operation
-------------------
trio runs on one thread; a server that needs more cores runs more
processes.  With ``workers=N`` (N > 1) :func:`run_workers` makes the calling
process a *supervisor* with no trio in it: it binds every address of
*listen* once, then starts N workers, each a fresh interpreter (spawn, not
fork: ``python -m trio_rsocket._worker``) that runs ``main(*args)`` in its
own runtime.  The supervisor passes its listening sockets the way systemd
does (``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES``, fds 3...), so a
worker's ``listen`` adopts them with the socket-activation code
(:mod:`trio_rsocket._activation`): every worker accepts from the same kernel
queue, and since the supervisor keeps its copies open for as long as it
runs, the queue never closes while workers come and go.

*main* and *args* travel pickled over a pipe (by reference, as with
:mod:`multiprocessing`'s spawn: *main* must be importable; a *main* defined in
the program's ``__main__`` module is found by running that module again as
``__mp_main__``, so the usual ``if __name__ == "__main__":`` guard is needed).
The pipe stays open: a worker that reads its end of file has lost its
supervisor and stops as on SIGTERM.  A second pipe goes the other way: the
worker writes one byte when it is *serving* (every socket it inherited has a
listener whose accept loop runs), and its end of file tells the supervisor
the worker is gone.  So the supervisor waits on nothing but pipes (and its
own signals, through :func:`signal.set_wakeup_fd`) in one ``selectors`` loop.

Workers are in process groups of their own, so a Ctrl-C at the terminal
reaches the supervisor only; it forwards SIGTERM.  A worker on SIGTERM (or
SIGINT) shuts every listener down gracefully (``shutdown(grace)``), then
cancels its runtime so that ``main`` returns.

Each of the N *slots* has a current worker and, while one is starting, a
pending one; a pending worker that reports serving becomes current and the
one it replaces gets SIGTERM.  That one rule covers the first start, a
restart after a crash and SIGHUP's rolling replacement (one slot at a time,
the next slot once the previous replacement serves).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import pickle
import runpy
import selectors
import signal
import socket as stdlib_socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import types
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import trio

from . import _activation, _runtime
from ._address import unbracket
from ._arguments import check_seconds
from ._listen import bind_listening_socket
from ._runtime import _call_async, current_nursery, run

__all__ = [
    "DEFAULT_GRACE",
    "RESTART_DELAY_MAX",
    "RESTART_DELAY_MIN",
    "RESTART_RESET_AFTER",
    "check_listen",
    "check_workers",
    "listen_addresses",
    "restart_delay",
    "run_in_process",
    "run_workers",
    "worker_id",
    "worker_main",
]

logger: Final = logging.getLogger("trio_rsocket")

#: Seconds a stopping worker's handlers get to finish (``run(grace=...)``).
DEFAULT_GRACE: Final = 10.0
#: Seconds past the grace period after which a worker that has not exited is killed.
KILL_MARGIN: Final = 5.0
#: The delay before the first restart of a worker that died.
RESTART_DELAY_MIN: Final = 0.1
#: The longest delay between restarts of a worker that keeps dying (doubling from the first).
RESTART_DELAY_MAX: Final = 10.0
#: A worker that ran this many seconds before dying is restarted after the shortest delay again.
RESTART_RESET_AFTER: Final = 10.0

_LENGTH: Final = struct.Struct("!Q")
# What a worker writes on its readiness pipe: serving, or could not load main.
_READY: Final = b"R"
_FAILED: Final = b"E"

Address = tuple[str | None, int]
ResultT = TypeVar("ResultT")

# What this process is: set in a worker by its bootstrap, in a supervisor
# (or a run(listen=...) in one process) while run() runs.
_worker_id: int | None = None
_listen_addresses: list[Address] = []


def worker_id() -> int | None:
    """This worker's number, 0 to N-1, in a worker started by
    ``trio_rsocket.run(main, workers=N)``; ``None`` anywhere else (the
    supervisor, a program run without workers).

    A replacement worker (after a crash or SIGHUP) has the number of the one
    it replaces.
    """
    return _worker_id


def listen_addresses() -> list[tuple[str | None, int]]:
    """The addresses ``trio_rsocket.run(..., listen=[...])`` bound, as
    ``(host, port)`` pairs in the order given: the host as given (``None``
    stays ``None``), the port the one bound (a real port for port 0).

    Given in a worker, in the supervisor while ``run`` runs, and in the
    program ``run(..., workers=1, listen=[...])`` runs; empty anywhere else.
    ``listen(host, port, ...)`` with one of these pairs adopts the socket
    ``run`` bound, so ``for host, port in listen_addresses(): await
    sock.listen(host, port, handler)`` serves them all.
    """
    return list(_listen_addresses)


# ----------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------


def check_workers(workers: object) -> int | None:
    """``run``'s *workers*: ``None`` or an int of at least 1."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int (1 or more) or None, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    return workers


def check_listen(listen: object) -> list[Address]:
    """``run``'s *listen*: a list (or tuple) of ``(host, port)`` pairs."""
    if listen is None:
        return []
    if isinstance(listen, str | bytes) or not isinstance(listen, list | tuple):
        raise TypeError(f"listen must be a list of (host, port) pairs, not {type(listen).__name__}")
    addresses: list[Address] = []
    for index, item in enumerate(listen):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"listen[{index}] must be a (host, port) pair, not {item!r}")
        host, port = item
        if host is not None and not isinstance(host, str):
            raise TypeError(f"listen[{index}]: host must be a str or None, not {type(host).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"listen[{index}]: port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise ValueError(f"listen[{index}]: port must be in 0..65535 (0: any free port), not {port}")
        if host:
            try:
                host = unbracket(host)
            except ValueError as exc:
                raise ValueError(f"listen[{index}]: {exc}") from None
        addresses.append((host, port))
    return addresses


def _bind_all(addresses: Sequence[Address]) -> list[stdlib_socket.socket]:
    sockets: list[stdlib_socket.socket] = []
    try:
        for host, port in addresses:
            # One this process inherited (systemd's socket activation) is
            # used as it is, and handed on to the workers as a bound one.
            inherited = _activation.adopt(host, port)
            sockets.append(inherited if inherited is not None else bind_listening_socket(host, port))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bound(addresses: Sequence[Address], sockets: Sequence[stdlib_socket.socket]) -> list[Address]:
    return [(host, sock.getsockname()[1]) for (host, _), sock in zip(addresses, sockets, strict=True)]


# ----------------------------------------------------------------------
# One process: workers=1 (or None) with listen=[...]
# ----------------------------------------------------------------------


def run_in_process(run: Callable[[], ResultT], addresses: Sequence[Address]) -> ResultT:
    """Bind *addresses*, offer them to ``listen`` in this process, and call
    *run* (the plain ``run``); close what no listener adopted afterwards."""
    global _listen_addresses
    sockets = _bind_all(addresses)
    _activation.provide(sockets, addresses)
    _listen_addresses = _bound(addresses, sockets)
    try:
        return run()
    finally:
        _listen_addresses = []
        _activation.withdraw(sockets)
        for sock in sockets:
            sock.close()


# ----------------------------------------------------------------------
# The supervisor
# ----------------------------------------------------------------------


def _payload(fn: Callable[..., Awaitable[object]], args: tuple[object, ...]) -> bytes:
    """*fn* and *args* pickled for a worker, or :class:`TypeError` saying why
    they cannot go to another process."""
    main_module = sys.modules.get("__main__")
    if getattr(fn, "__module__", None) == "__main__" and not _main_is_importable(main_module):
        raise TypeError(
            f"fn must be importable by the workers (they are new processes, as with multiprocessing's spawn): "
            f"{getattr(fn, '__qualname__', fn)!r} is defined in a __main__ that is not a file or module "
            "(an interactive session, python -c): define it in a module"
        )
    try:
        return pickle.dumps((fn, args))
    except Exception as exc:
        raise TypeError(
            "fn and args must be picklable for the workers (they are new processes, as with multiprocessing's "
            f"spawn): a module-level async function, not a lambda or a local function: {exc}"
        ) from exc


def _main_is_importable(module: types.ModuleType | None) -> bool:
    if module is None:
        return False
    spec = getattr(module, "__spec__", None)
    return (spec is not None and spec.name != "__main__") or bool(getattr(module, "__file__", None))


class _Worker:
    """One worker process, seen from the supervisor."""

    def __init__(self, slot: int, process: subprocess.Popen[bytes], ready_fd: int, control_fd: int) -> None:
        self.slot = slot
        self.process = process
        self.ready_fd = ready_fd
        self.control_fd = control_fd
        self.started = time.monotonic()
        self.serving = False
        # It said it could not load the main function (no restart: it would fail again).
        self.failed_to_load = False
        # When it was told to stop (SIGTERM), and when it is killed if still there.
        self.kill_at: float | None = None

    def __repr__(self) -> str:
        return f"worker {self.slot} (pid {self.process.pid})"

    def stop(self, grace: float) -> None:
        if self.kill_at is None:
            self.kill_at = time.monotonic() + grace + KILL_MARGIN
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)


class _Supervisor:
    def __init__(
        self,
        payload: bytes,
        count: int,
        sockets: list[stdlib_socket.socket],
        requested: list[Address],
        bound: list[Address],
        grace: float,
    ) -> None:
        self.payload = payload
        self.count = count
        self.sockets = sockets
        # The addresses as the program gave them (port 0 for any), and as bound.
        self.requested = requested
        self.bound = bound
        self.grace = grace
        self.selector = selectors.DefaultSelector()
        self.current: list[_Worker | None] = [None] * count
        self.pending: list[_Worker | None] = [None] * count
        self.retiring: list[_Worker] = []
        self.restart_at: dict[int, float] = {}
        self.failures = [0] * count
        self.reload_queue: deque[int] = deque()
        self.stopping = False
        self.boot_error: str | None = None

    # The loop ----------------------------------------------------------

    def run(self) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, _note_signal) for signum in handled}
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        try:
            self.selector.register(wake_read, selectors.EVENT_READ, None)
            for slot in range(self.count):
                self._start(slot)
            while not self._finished():
                timeout = self._next_timer()
                for key, _ in self.selector.select(timeout):
                    if key.data is None:
                        self._signals(os.read(wake_read, 512))
                    else:
                        self._worker_readable(key.data)
                self._timers()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for worker in self._all():
                # Only after an error in this loop: never leave a worker behind.
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                worker.process.wait()
                self._forget(worker)
            self.selector.close()
            os.close(wake_read)
            os.close(wake_write)
        if self.boot_error is not None:
            raise RuntimeError(self.boot_error)

    def _finished(self) -> bool:
        return self.stopping and not any(True for _ in self._all())

    def _all(self) -> list[_Worker]:
        workers = [w for w in self.current if w is not None] + [w for w in self.pending if w is not None]
        return workers + self.retiring

    def _next_timer(self) -> float | None:
        times = [*self.restart_at.values(), *(w.kill_at for w in self._all() if w.kill_at is not None)]
        # inf: killed already, or a grace period of inf (never killed).
        times = [when for when in times if when != math.inf]
        return None if not times else max(0.0, min(times) - time.monotonic())

    def _timers(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.restart_at.items()):
            if when <= now:
                del self.restart_at[slot]
                self._start(slot)
        for worker in self._all():
            if worker.kill_at is not None and worker.kill_at <= now:
                logger.warning(
                    "%s did not stop within %s seconds of SIGTERM: killing it", worker, self.grace + KILL_MARGIN
                )
                worker.kill_at = math.inf
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()

    # Signals -----------------------------------------------------------

    def _signals(self, numbers: bytes) -> None:
        for number in numbers:
            if number in (signal.SIGINT, signal.SIGTERM):
                if self.stopping:
                    if number == signal.SIGINT:
                        logger.warning("Second interrupt: killing the workers")
                        for worker in self._all():
                            with contextlib.suppress(ProcessLookupError):
                                worker.process.kill()
                    continue
                logger.info("Stopping the workers (%s)", signal.Signals(number).name)
                self._stop_all()
            elif number == signal.SIGHUP and not self.stopping:
                logger.info("Replacing the workers one at a time (SIGHUP)")
                for waiting in (w for w in self.pending if w is not None):
                    # One at a time: the replacement starts once this one serves.
                    logger.warning(
                        "%s is not serving yet: the replacement waits for it (a worker serves once it "
                        "listens on every address of run(listen=...))",
                        waiting,
                    )
                for slot in range(self.count):
                    if slot not in self.reload_queue:
                        self.reload_queue.append(slot)
                self._next_reload()

    def _stop_all(self) -> None:
        self.stopping = True
        self.restart_at.clear()
        self.reload_queue.clear()
        for worker in self._all():
            worker.stop(self.grace)

    def _next_reload(self) -> None:
        if self.stopping or any(w is not None for w in self.pending) or self.restart_at:
            return  # one at a time: the next once this one serves
        while self.reload_queue:
            slot = self.reload_queue.popleft()
            if self.current[slot] is not None:
                self._start(slot)
                return

    # Workers -----------------------------------------------------------

    def _start(self, slot: int) -> None:
        control_read, control_write = os.pipe()
        ready_read, ready_write = os.pipe()
        socket_fds = [sock.fileno() for sock in self.sockets]
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
        command = [
            sys.executable,
            # The interpreter's own options (-X, -W, ...), as multiprocessing passes them.
            *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
            "-m",
            "trio_rsocket._worker",
            str(control_read),
            str(ready_write),
            ",".join(map(str, socket_fds)),
        ]
        try:
            process = subprocess.Popen(
                command, pass_fds=(control_read, ready_write, *socket_fds), env=env, process_group=0
            )
        except BaseException:
            for fd in (control_read, control_write, ready_read, ready_write):
                os.close(fd)
            raise
        os.close(control_read)
        os.close(ready_write)
        worker = _Worker(slot, process, ready_read, control_write)
        message = pickle.dumps((self.payload, slot, self.requested, self.bound, self.grace, sys.path, _main_location()))
        try:
            # A pipe holds 64 KiB; a larger message is read by the worker as it
            # starts, so write it all (blocking) either way.
            os.write(control_write, _LENGTH.pack(len(message)))
            _write_all(control_write, message)
        except OSError:
            pass  # it died already: its end of file says so
        self.pending[slot] = worker
        self.selector.register(ready_read, selectors.EVENT_READ, worker)
        logger.debug("Started %s", worker)

    def _worker_readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 16)
        except OSError:
            data = b""
        if _FAILED in data:
            worker.failed_to_load = True
        elif data:
            if not worker.serving:
                worker.serving = True
                self._serving(worker)
            return
        # End of file: the worker has exited (or is exiting).
        code = worker.process.wait()
        self._forget(worker)
        slot = worker.slot
        if worker in self.retiring:
            self.retiring.remove(worker)
            logger.info("%s stopped (%s)", worker, _describe(code))
            return
        was_pending = self.pending[slot] is worker
        if was_pending:
            self.pending[slot] = None
        elif self.current[slot] is worker:
            self.current[slot] = None
        if worker.kill_at is not None:
            logger.info("%s stopped (%s)", worker, _describe(code))
            return
        if worker.failed_to_load:
            self.boot_error = f"worker {slot} could not load its main function (its error is above)"
            logger.error("%s could not load its main function: stopping", worker)
            self._stop_all()
            return
        lived = time.monotonic() - worker.started
        if not was_pending and self.pending[slot] is not None:
            # Its replacement is starting already (SIGHUP).
            logger.warning("%s %s after %.1f seconds", worker, _describe(code), lived)
            return
        if lived >= RESTART_RESET_AFTER:
            self.failures[slot] = 0
        delay = restart_delay(self.failures[slot])
        self.failures[slot] += 1
        logger.warning("%s %s after %.1f seconds; restarting it in %.1f seconds", worker, _describe(code), lived, delay)
        self.restart_at[slot] = time.monotonic() + delay

    def _serving(self, worker: _Worker) -> None:
        slot = worker.slot
        logger.info("%s is serving", worker)
        if self.pending[slot] is not worker:
            return
        self.pending[slot] = None
        old = self.current[slot]
        self.current[slot] = worker
        if self.stopping:
            worker.stop(self.grace)
        if old is not None:
            self.retiring.append(old)
            old.stop(self.grace)
        self._next_reload()

    def _forget(self, worker: _Worker) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(worker.ready_fd)
        for fd in (worker.ready_fd, worker.control_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        worker.ready_fd = worker.control_fd = -1


def restart_delay(failures: int) -> float:
    """Seconds before restarting a worker that died after *failures* earlier
    deaths in a row (each within :data:`RESTART_RESET_AFTER` seconds of its
    start): 0.1, 0.2, 0.4, ... up to 10."""
    return min(RESTART_DELAY_MIN * float(2 ** min(failures, 64)), RESTART_DELAY_MAX)


def _note_signal(signum: int, frame: object) -> None:
    """The supervisor's signal handler: nothing to do here, the wake-up
    descriptor carries the signal's number to the loop."""


def _describe(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _main_location() -> tuple[str, str] | None:
    """How a worker finds the program's ``__main__`` module: ``("module",
    name)`` for ``python -m name``, ``("path", file)`` for a script."""
    module = sys.modules.get("__main__")
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", "trio_rsocket._worker"):
        return ("module", spec.name)
    path = getattr(module, "__file__", None)
    if path:
        return ("path", os.path.abspath(path))
    return None


def run_workers(
    fn: Callable[..., Awaitable[object]],
    args: tuple[object, ...],
    count: int,
    addresses: Sequence[Address],
    grace: float,
) -> None:
    """``run(fn, *args, workers=count, listen=addresses)`` with *count* > 1:
    supervise the workers until SIGINT or SIGTERM, then return."""
    global _listen_addresses
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run() with workers must be called in the main thread: it handles the signals")
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run() with workers is a supervisor with no trio in it: call it outside trio.run()")
    payload = _payload(fn, args)
    sockets = _bind_all(addresses)
    bound = _bound(addresses, sockets)
    _listen_addresses = bound
    try:
        for (host, _), (_, port) in zip(addresses, bound, strict=True):
            logger.info("Listening on %s:%d for %d workers", host or "*", port, count)
        _Supervisor(payload, count, sockets, list(addresses), bound, grace).run()
    finally:
        _listen_addresses = []
        for sock in sockets:
            sock.close()


# ----------------------------------------------------------------------
# A worker's bootstrap
# ----------------------------------------------------------------------


def worker_main(argv: Sequence[str]) -> int:
    """The worker process (``python -m trio_rsocket._worker CONTROL READY FDS``):
    put the sockets at fds 3... as systemd would, load *main*, run it."""
    global _worker_id, _listen_addresses
    control_fd, ready_fd = int(argv[0]), int(argv[1])
    socket_fds = [int(fd) for fd in argv[2].split(",")] if argv[2] else []
    count = len(socket_fds)
    # Out of the way of fds 3..3+count first, then into place.
    high = _activation.LISTEN_FDS_START + count
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in socket_fds]
    control = fcntl.fcntl(control_fd, fcntl.F_DUPFD_CLOEXEC, high)
    ready = fcntl.fcntl(ready_fd, fcntl.F_DUPFD_CLOEXEC, high)
    for fd in {*socket_fds, control_fd, ready_fd}:
        os.close(fd)
    for index, fd in enumerate(moved):
        os.dup2(fd, _activation.LISTEN_FDS_START + index, inheritable=True)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(count)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDNAMES"] = ":".join(f"listen-{index}" for index in range(count))
    try:
        (length,) = _LENGTH.unpack(_read_exactly(control, _LENGTH.size))
        payload, slot, requested, bound, grace, path, location = pickle.loads(_read_exactly(control, length))
        sys.path[:] = path
        _runtime.loading_worker_script = True
        try:
            _load_main(location)
        finally:
            _runtime.loading_worker_script = False
        fn, args = pickle.loads(payload)
    except Exception:
        traceback.print_exc()
        print("trio_rsocket worker: cannot load the main function", file=sys.stderr)
        _tell(ready, _FAILED)
        return 1
    _worker_id = slot
    _listen_addresses = list(bound)
    _activation.set_requested(requested)

    run(_serve_as_worker, fn, args, grace, control, ready)
    return 0


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("the supervisor went away before the worker had its main function")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _load_main(location: tuple[str, str] | None) -> None:
    """Make the program's ``__main__`` importable here as multiprocessing's
    spawn does: run it again as ``__mp_main__`` (its ``if __name__ ==
    "__main__":`` part does not run) and let ``__main__`` name it."""
    if location is None:
        return
    kind, where = location
    if kind == "module":
        namespace = runpy.run_module(where, run_name="__mp_main__", alter_sys=False)
    else:
        namespace = runpy.run_path(where, run_name="__mp_main__")
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


async def _serve_as_worker(
    fn: Callable[..., Awaitable[object]], args: tuple[object, ...], grace: float, control: int, ready: int
) -> object:
    runtime = current_nursery("a worker")
    _activation.call_when_ready(lambda: _tell(ready, _READY))
    trio.lowlevel.spawn_system_task(
        _stop_when_told, runtime.cancel_scope, grace, control, name="trio_rsocket worker stop"
    )
    return await _call_async(fn, args)


def _tell(ready: int, what: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(ready, what)


async def _stop_when_told(runtime: trio.CancelScope, grace: float, control: int) -> None:
    """Wait for SIGTERM or SIGINT (or the supervisor's end of file), then shut
    the listeners down gracefully and cancel the runtime."""
    reason: list[str] = []
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        reason.append(signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()

                async def on_orphaned() -> None:
                    while True:
                        await trio.lowlevel.wait_readable(control)
                        if not os.read(control, 4096):
                            logger.warning("The supervisor went away: stopping")
                            reason.append("the end of its supervisor")
                            nursery.cancel_scope.cancel()
                            return

                nursery.start_soon(on_signal)
                nursery.start_soon(on_orphaned)
        connections = _activation.stop_accepting()
        logger.info(
            "worker %s (pid %d) stopped accepting on %s; waiting up to %s seconds for its open connections (%d)",
            _worker_id,
            os.getpid(),
            reason[0],
            grace,
            connections,
        )
        await _activation.shutdown_listeners(grace)
    except trio.Cancelled:
        raise
    except Exception:
        logger.exception("Stopping the worker failed")
    runtime.cancel()


def check_grace(grace: object) -> float:
    """``run``'s *grace*: seconds, at least 0."""
    return check_seconds(grace, "grace")
