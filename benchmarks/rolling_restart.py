"""Sequential connections through a rolling restart: how many fail.

    python benchmarks/rolling_restart.py [--connections 10000] [--workers 2] [--hup-after 500] [--hups 1]

Starts ``echo_workers_server.py --workers N`` (``run(main, workers=N,
listen=[("127.0.0.1", 0)])``) and waits until every worker serves.  Then
one blocking client makes *connections* connections one after the other,
each: connect, send 64 bytes, read the 64 back, close.  After *hup-after*
of them the supervisor gets SIGHUP; with ``--hups`` above 1 (0: no end) it
gets another each time the previous restart has finished (every worker
replaced: *N* new ``READY`` lines and the old workers' processes gone), as
long as connections remain.  Any
connection that is refused, reset, closed early or takes longer than
``--timeout`` counts as failed and is listed: its number, the time since
the first SIGHUP, the error.

The run is valid only if at least one restart both began and finished
inside the connections; the script says how many did.  Exit status 0: no
connection failed and at least one restart was covered; 1 otherwise.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time

from _server_process import ServerProcess

MESSAGE = b"x" * 64


def round_trip(port: int, timeout: float) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(MESSAGE)
        got = b""
        while len(got) < len(MESSAGE):  # bounded: each pass takes a byte or raises
            data = sock.recv(len(MESSAGE) - len(got))
            if not data:
                raise ConnectionError(f"closed by the server after {len(got)} of {len(MESSAGE)} bytes")
            got += data
    if got != MESSAGE:
        raise ConnectionError(f"echoed {got!r}")


def alive(pid: int) -> bool:
    """Whether *pid* is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hup-after", type=int, default=500, help="connections before the first SIGHUP")
    parser.add_argument("--hups", type=int, default=1, help="rolling restarts, one after another (0: no end)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds each connection may take")
    options = parser.parse_args()
    server = ServerProcess(options.workers)
    failures: list[tuple[int, float, str]] = []
    # (SIGHUP sent, restart finished) since the first SIGHUP, and the connections made in between.
    restarts: list[tuple[float, float, int]] = []
    try:
        port = server.wait_ready()
        serving = {int(line.words[2]) for line in server.seen if line.words[:1] == ["READY"]}
        print(f"{options.workers} workers serving on 127.0.0.1:{port}, pids {sorted(serving)}")
        first_hup: float | None = None
        hup_at: float | None = None
        hup_number = 0
        old: set[int] = set()
        ready_before = 0
        start = time.monotonic()
        for number in range(1, options.connections + 1):
            now = time.monotonic()
            wanted = options.hups == 0 or len(restarts) < options.hups
            if hup_at is None and number > options.hup_after and wanted:
                hup_at, hup_number = now, number
                first_hup = first_hup or now
                old = set(serving)
                ready_before = sum(1 for line in server.seen if line.words[:1] == ["READY"])
                server.signal(signal.SIGHUP)
            elif hup_at is not None:
                readies = [line for line in server.seen if line.words[:1] == ["READY"]][ready_before:]
                if len(readies) >= options.workers and not any(alive(pid) for pid in old):
                    assert first_hup is not None
                    restarts.append((hup_at - first_hup, now - first_hup, number - hup_number))
                    serving = {int(line.words[2]) for line in readies[-options.workers :]}
                    hup_at = None
            try:
                round_trip(port, options.timeout)
            except OSError as exc:
                since = "before the first SIGHUP" if first_hup is None else f"{now - first_hup:+.3f} s"
                failures.append((number, now - (first_hup or start), f"{since}: {exc!r}"))
        elapsed = time.monotonic() - start
    finally:
        status = server.stop()
    print(f"{options.connections:,} sequential connections in {elapsed:.2f} s ({options.connections / elapsed:,.0f}/s)")
    for began, ended, during in restarts:
        print(
            f"  restart: SIGHUP at {began:.3f} s, every worker replaced by {ended:.3f} s "
            f"({ended - began:.3f} s, {during:,} connections meanwhile)"
        )
    if hup_at is not None:
        begun = hup_at - (first_hup or hup_at)
        print(f"  a restart begun at {begun:.3f} s had not finished when the connections ended")
    print(f"{len(restarts)} complete rolling restart(s) inside the run; {len(failures)} failed connection(s)")
    for number, _, what in failures[:50]:
        print(f"  connection {number}: {what}")
    print(f"supervisor exit status after SIGTERM: {status}")
    return 0 if restarts and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
