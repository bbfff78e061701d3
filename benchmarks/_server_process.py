"""A handle on ``echo_workers_server.py`` running in a process of its own:
start it, wait until its workers serve, read what it reports, stop it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo_workers_server.py")


@dataclass
class Line:
    """One line the server printed, and when (``time.monotonic()``)."""

    at: float
    words: list[str]


@dataclass
class ServerProcess:
    workers: int
    port: int = 0
    report_connections: bool = False
    process: subprocess.Popen[str] = field(init=False)
    reader: threading.Thread = field(init=False)
    lines: queue.Queue[Line | None] = field(init=False, default_factory=queue.Queue)
    #: Every line read so far (those taken from *lines* too).
    seen: list[Line] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, SERVER, "--workers", str(self.workers), "--port", str(self.port)]
            + (["--report-connections"] if self.report_connections else []),
            stdout=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            line = Line(time.monotonic(), text.split())
            self.seen.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, word: str, count: int, timeout: float) -> list[Line]:
        """The next *count* lines that start with *word* (others are skipped)."""
        found: list[Line] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"server: {len(found)} of {count} {word} lines after {timeout} s") from None
            if line is None:
                raise RuntimeError(f"server exited ({self.process.wait()}) after {len(found)} of {count} {word} lines")
            if line.words[:1] == [word]:
                found.append(line)
        return found

    def wait_ready(self, timeout: float = 60.0) -> int:
        """Wait until every worker serves; the port."""
        ready = self.expect("READY", self.workers, timeout)
        ports = {line.words[3] for line in ready}
        assert len(ports) == 1, f"workers on different ports: {ports}"
        self.port = int(ports.pop())
        return self.port

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, and wait for the supervisor to exit and every line it
        (and its workers) printed to be read; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
            self.reader.join(timeout)
            return status
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"server did not stop within {timeout} s of SIGTERM") from None
