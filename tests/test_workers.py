"""Workers: ``run(main, workers=N, listen=[...])``, a supervisor and its worker
processes, with real processes, real signals and loopback sockets."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import trio_rsocket
from trio_rsocket import ListenError, RSocket, _workers, listen_addresses, worker_id

from . import workers_app

ROOT = Path(__file__).resolve().parent.parent
# Generous bounds on how long a process may take before the test gives up;
# they bound a hang, they do not time anything.
PATIENCE = 60.0
# At most this many connections to see both workers answer: the kernel
# hands each one to whichever worker takes it first.
MOST_CONNECTIONS = 2000


class Supervisor:
    """A supervisor (``python -m tests.workers_app N``, say) in a session of its
    own, its log read line by line."""

    def __init__(self, *command: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = int(self.expect(r"Listening on 127\.0\.0\.1:(\d+)")[1])

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self, timeout: float) -> str | None:
        """The next log line, or ``None`` if none came within *timeout* (or the log ended)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is not None:
            self.log.append(line)
        return line

    def expect(self, pattern: str) -> re.Match[str]:
        """Read the log until a line matches *pattern*."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            line = self.next_line(deadline - time.monotonic())
            if line is None and self.process.poll() is not None and self._lines.empty():
                break
            if line is not None and (found := re.search(pattern, line)):
                return found
        raise AssertionError(f"no line matching {pattern!r} in the log:\n" + "\n".join(self.log))

    def read_to_end(self) -> None:
        """Read the log until every process writing to it has gone."""
        self._reader.join(PATIENCE)
        while self.next_line(0) is not None:
            pass

    def worker_pids(self) -> set[int]:
        return {int(pid) for pid in re.findall(r"\(pid (\d+)\) is serving", "\n".join(self.log))}

    def finish(self) -> int:
        """Wait for the supervisor to exit; its status."""
        code = self.process.wait(PATIENCE)
        self.read_to_end()
        return code

    def close(self) -> None:
        """Never leave a process behind, whatever the test did."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                if b"trio_rsocket._worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextlib.contextmanager
def supervisor(workers: int) -> Iterator[Supervisor]:
    with supervising("-m", "tests.workers_app", str(workers)) as running:
        yield running


@contextlib.contextmanager
def supervising(*command: str) -> Iterator[Supervisor]:
    running = Supervisor(*command)
    try:
        yield running
    finally:
        running.close()


def ask(port: int) -> tuple[int, int]:
    """Connect, read the serving worker's ``(worker id, pid)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as client:
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(100)
            assert chunk, f"the connection closed after {reply!r}"
            reply += chunk
    worker, pid = reply.split()
    return int(worker), int(pid)


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_workers_share_the_port_a_killed_one_is_restarted_and_sigterm_stops_all() -> None:
    with supervisor(2) as running:
        serving = {int(running.expect(r"worker (\d) \(pid \d+\) is serving")[1]) for _ in range(2)}
        assert serving == {0, 1}
        first_pids = running.worker_pids()

        seen: dict[int, int] = {}
        for _ in range(MOST_CONNECTIONS):
            worker, pid = ask(running.port)
            seen[worker] = pid
            if len(seen) == 2:
                break
        assert set(seen) == {0, 1}, "one worker took every connection"
        assert set(seen.values()) == first_pids

        os.kill(seen[0], signal.SIGKILL)
        found = running.expect(
            rf"worker 0 \(pid {seen[0]}\) was killed by signal SIGKILL after [\d.]+ seconds; "
            r"restarting it in 0\.1 seconds"
        )
        assert found
        restarted = int(running.expect(r"worker 0 \(pid (\d+)\) is serving")[1])
        assert restarted not in first_pids

        # A connection in its handler when SIGTERM comes is served to its end
        # (within the grace period): the worker stops accepting, not serving.
        with socket.create_connection(("127.0.0.1", running.port), timeout=PATIENCE) as client:
            reader = client.makefile("rb")
            serving, pid = reader.readline().split()
            running.process.send_signal(signal.SIGTERM)
            running.expect(
                rf"worker {serving.decode()} \(pid {pid.decode()}\) stopped accepting on SIGTERM; "
                r"waiting up to 5\.0 seconds for its open connections \(1\)"
            )
            client.sendall(b"after SIGTERM\n")
            assert reader.readline() == b"after SIGTERM\n"
        assert running.finish() == 0
        assert "run returned" in running.log
        for pid in (restarted, seen[1]):
            assert any(f"(pid {pid}) stopped (exited with code 0)" in line for line in running.log), running.log
            assert is_gone(pid)
        assert not any("Traceback" in line for line in running.log), running.log


def wait_gone(pid: int) -> bool:
    """Wait (bounded) for *pid*, not a child of ours, to exit; whether it did."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([handle], [], [], PATIENCE)
        return bool(readable)
    finally:
        os.close(handle)


def test_workers_stop_by_themselves_when_their_supervisor_is_killed() -> None:
    with supervisor(2) as running:
        for _ in range(2):
            running.expect(r"is serving")
        workers = running.worker_pids()
        running.process.kill()
        running.process.wait(PATIENCE)
        # They read end of file on the pipe from the supervisor, and stop as on SIGTERM.
        assert all(wait_gone(pid) for pid in workers)
        running.read_to_end()
        assert sum("The supervisor went away: stopping" in line for line in running.log) == 2


def test_sighup_replaces_every_worker_without_refusing_a_connection_and_ctrl_c_stops_them() -> None:
    with supervisor(2) as running:
        for _ in range(2):
            running.expect(r"is serving")
        old_pids = running.worker_pids()

        running.process.send_signal(signal.SIGHUP)
        answered = refused = 0
        new_pids: set[int] = set()
        stopped: set[int] = set()
        deadline = time.monotonic() + PATIENCE
        # Sequential connections for as long as the replacement lasts (and a
        # few past it), watching the log between two of them.
        while (len(new_pids) < 2 or stopped != old_pids) and time.monotonic() < deadline:
            try:
                ask(running.port)
                answered += 1
            except ConnectionRefusedError:
                refused += 1
            while (line := running.next_line(0)) is not None:
                if found := re.search(r"\(pid (\d+)\) is serving", line):
                    new_pids.add(int(found[1]))
                if found := re.search(r"\(pid (\d+)\) stopped", line):
                    stopped.add(int(found[1]))
        assert stopped == old_pids, running.log
        assert len(new_pids) == 2, running.log
        assert refused == 0
        assert answered > 0
        # One at a time: each new worker serving before its predecessor stops.
        log = "\n".join(running.log)
        for slot in (0, 1):
            olds = re.findall(rf"worker {slot} \(pid (\d+)\) is serving", log)
            assert len(olds) == 2
            assert log.index(f"worker {slot} (pid {olds[1]}) is serving") < log.index(f"(pid {olds[0]}) stopped")

        # Ctrl-C at the terminal: SIGINT to the supervisor's process group.
        os.killpg(running.process.pid, signal.SIGINT)
        assert running.finish() == 0
        assert "run returned" in running.log
        assert all(is_gone(pid) for pid in new_pids)
        assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in running.log), running.log


SCRIPT = """
import logging, sys
import trio_rsocket

if __name__ != "__main__" and "BROKEN" in (__doc__ or ""):
    raise ImportError("this script cannot be imported")

async def hello(data, sock):
    await sock.write(b"hello from a script\\n")

async def main():
    await trio_rsocket.RSocket().listen("127.0.0.1", 0, hello)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        trio_rsocket.run(main, workers=2, listen=[("127.0.0.1", 0)])
    except RuntimeError as exc:
        print(f"run raised: {exc}", file=sys.stderr)
"""


UNGUARDED_SCRIPT = """
import logging
import trio_rsocket
from trio_rsocket.testing import echo_handler

async def main():
    await trio_rsocket.RSocket().listen("127.0.0.1", 0, echo_handler)

logging.basicConfig(level=logging.INFO, format="%(message)s")
trio_rsocket.run(main, workers=2, listen=[("127.0.0.1", 0)])  # not under `if __name__ == "__main__":`
"""


def test_a_script_that_calls_run_at_its_top_level_is_told_to_guard_it(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(UNGUARDED_SCRIPT)
    with supervising(str(script)) as running:
        # Each worker runs the script again to find main: its run() says what to do, and no
        # supervisor starts inside a worker.
        running.expect(
            r"RuntimeError: run\(\) was called while a worker loaded the program's script.*"
            r'call run\(\) under `if __name__ == "__main__":`'
        )
        assert running.finish() == 1  # the supervisor's run(): a worker could not load its main function
        assert not any("is serving" in line for line in running.log)
        assert sum("Listening on" in line for line in running.log) == 1


def test_a_sighup_while_a_worker_is_not_serving_says_what_the_replacement_waits_for() -> None:
    with supervising("-m", "tests.workers_app", "2", "first-only") as running:
        running.expect(r"Listening on 127\.0\.0\.1:\d+")  # the second address
        worker, _ = ask(running.port)  # a worker listens on the first one...
        assert worker in (0, 1)
        running.process.send_signal(signal.SIGHUP)
        # ... but not on the second, so it never serves: a SIGHUP says so.
        running.expect(r"worker \d \(pid \d+\) is not serving yet: the replacement waits for it")
        running.process.send_signal(signal.SIGTERM)
        assert running.finish() == 0
        assert not any("is serving" in line for line in running.log)


def test_a_main_defined_in_the_program_script_runs_in_the_workers(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SCRIPT)
    with supervising(str(script)) as running:
        for _ in range(2):
            running.expect(r"is serving")
        with socket.create_connection(("127.0.0.1", running.port), timeout=PATIENCE) as client:
            assert client.makefile("rb").readline() == b"hello from a script\n"
        running.process.send_signal(signal.SIGTERM)
        assert running.finish() == 0


def test_workers_that_cannot_load_main_stop_the_supervisor_with_an_error(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text('"""BROKEN"""' + SCRIPT)
    with supervising(str(script)) as running:
        running.expect(r"ImportError: this script cannot be imported")
        running.expect(r"run raised: worker \d could not load its main function")
        assert running.finish() == 0
        assert not any("is serving" in line for line in running.log)


def test_a_worker_that_keeps_dying_is_restarted_after_a_delay_doubling_from_0_1_to_10_seconds() -> None:
    delays = [_workers.restart_delay(failures) for failures in range(10)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    assert _workers.restart_delay(10_000) == 10.0


# ----------------------------------------------------------------------
# One process: workers=1 with listen=[...]
# ----------------------------------------------------------------------


async def _serve_listen_addresses(results: list[object]) -> None:
    addresses = listen_addresses()
    results.append(addresses)
    results.append(worker_id())
    ports = []
    for host, port in [("127.0.0.1", 0), ("127.0.0.1", 0)]:
        listener = RSocket()
        await listener.listen(host, port, workers_app.who_am_i)
        ports.append(listener.get_addr()[1])
    results.append(ports)
    async with await trio.open_tcp_stream("127.0.0.1", ports[1]) as client:
        results.append(await client.receive_some(100))
    trio_rsocket.stop()


def test_workers_1_binds_in_this_process_and_listen_adopts_in_order() -> None:
    results: list[object] = []
    trio_rsocket.run(_serve_listen_addresses, results, workers=1, listen=[("127.0.0.1", 0), ("127.0.0.1", 0)])
    addresses, identity, ports, reply = results
    assert isinstance(addresses, list)
    assert [host for host, _ in addresses] == ["127.0.0.1", "127.0.0.1"]
    assert ports == [port for _, port in addresses]
    assert all(port != 0 for port in ports)
    assert identity is None
    assert reply == f"None {os.getpid()}\n".encode()
    assert listen_addresses() == []
    # Closed once run returned: the ports can be listened on again.
    for port in ports:
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))
            again.listen()


# ----------------------------------------------------------------------
# Bad input: refused before any socket is bound or process started
# ----------------------------------------------------------------------


async def _never_runs() -> None:
    raise AssertionError("a process started")


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"workers": 0}, ValueError, "workers must be at least 1"),
        ({"workers": True}, TypeError, "workers must be an int"),
        ({"workers": "2"}, TypeError, "workers must be an int"),
        ({"workers": 2, "listen": "127.0.0.1:80"}, TypeError, "listen must be a list of"),
        ({"workers": 2, "listen": [("127.0.0.1",)]}, TypeError, r"listen\[0\] must be a \(host, port\) pair"),
        ({"workers": 2, "listen": [(1, 80)]}, TypeError, r"listen\[0\]: host must be a str or None"),
        ({"workers": 2, "listen": [("::1", "80")]}, TypeError, r"listen\[0\]: port must be an int"),
        ({"workers": 2, "listen": [(None, 70000)]}, ValueError, r"listen\[0\]: port must be in 0\.\.65535"),
        ({"workers": 2, "grace": -1}, ValueError, "grace must be 0 or more seconds"),
        ({"workers": 2, "clock": trio.testing.MockClock()}, ValueError, "clock is for one process"),
    ],
)
def test_bad_workers_arguments_are_refused_naming_them(options: dict[str, object], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        trio_rsocket.run(_never_runs, **options)  # type: ignore[arg-type]


def test_a_main_the_workers_cannot_import_is_refused_before_binding() -> None:
    async def local_main() -> None:
        raise AssertionError("a process started")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = [("127.0.0.1", taken.getsockname()[1])]
        # Binding first would have failed with ListenError (the port is in use).
        with pytest.raises(TypeError, match="fn and args must be picklable for the workers"):
            trio_rsocket.run(local_main, workers=2, listen=busy)
        with pytest.raises(TypeError, match="picklable"):
            trio_rsocket.run(_never_runs, lambda: None, workers=2, listen=busy)  # type: ignore[call-arg]
        # And a good main gets as far as binding, which is refused.
        with pytest.raises(ListenError):
            trio_rsocket.run(_never_runs, workers=2, listen=busy)
