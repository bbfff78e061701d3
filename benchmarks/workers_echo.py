"""64-byte echo over 100 concurrent connections, to a server with 1 worker
and with 2, side by side (issue 20's workers figure).

    python benchmarks/workers_echo.py [--repeat 5] [--seconds 1.5] [--workers 1 2]

Each measurement starts ``echo_workers_server.py --workers N`` (``run(main,
workers=N, listen=[("127.0.0.1", 0)])``), waits until every worker serves,
and drives it with the client of ``trio-rsocket bench``'s ``echo100``
workload (RSocket, 100 connections, one task each, for ``--seconds``), after
the bench's own unmeasured warm-up pass; then it stops the server with
SIGTERM.  The worker counts alternate from one repetition to the next.
Nothing is pinned: the client and the workers share the machine's cores,
as they would if the client were on the same host.  With ``--quiet-wait
SECONDS`` each measurement first waits (that long at most) for half a
second in which the machine's other processes use under 0.15 CPUs, and the
summary gives the ratio over the pairs that stayed that quiet.

Prints each measurement (round trips per second; the CPU time per round
trip of the workers together, from ``/proc``, and of the client; how the
100 connections were spread over the workers, each of which reports the
connections it closes; the round trips per wake-up of a worker, from the
workers' voluntary context switches; how many CPUs' worth of time the machine's other
processes used meanwhile, from ``/proc/stat``), then the medians and the median of the
per-repetition ratios to the first worker count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace

from _server_process import ServerProcess

from trio_rsocket._bench.clients import measure, warm_up
from trio_rsocket._bench.workloads import FULL, WORKLOADS

#: The connections of the bench's warm-up pass of echo100 (its small settings).
WARM_UP_CONNECTIONS = 10
ECHO100 = next(workload for workload in WORKLOADS if workload.name == "echo100")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes *pids* so far (Linux)."""
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wake_ups(pids: list[int]) -> int:
    """Voluntary context switches of the processes *pids* so far (Linux): how
    often they went to sleep waiting for something, so how often they woke."""
    count = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    count += int(line.split()[1])
    return count


def machine_busy_seconds() -> float:
    """CPU time every CPU of the machine has spent busy so far (Linux ``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [int(word) for word in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    round_trips_per_second: float
    #: CPU time per round trip, in microseconds: the workers' together, and the client's.
    server_cpu_us: float
    client_cpu_us: float
    #: Round trips per wake-up of the workers (how many each pass through the event loop served).
    round_trips_per_wake_up: float
    #: How many of the 100 connections each worker served, most first.
    spread: list[int]
    #: CPUs' worth of time that other processes of the machine used meanwhile.
    others_cpus: float


#: Other processes using less than this many CPUs count as a quiet machine.
QUIET_CPUS = 0.15


def wait_for_quiet(longest: float) -> None:
    """Wait (up to *longest* seconds) for half a second in which the rest of
    the machine uses less than :data:`QUIET_CPUS`."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:  # bounded by the deadline
        busy_before, own_before = machine_busy_seconds(), sum(os.times()[:2])
        time.sleep(0.5)
        others = machine_busy_seconds() - busy_before - (sum(os.times()[:2]) - own_before)
        if others / 0.5 < QUIET_CPUS:
            return


def one(workers: int, seconds: float, quiet_wait: float) -> Result:
    """One measurement with *workers*, once the machine is quiet (waiting at
    most *quiet_wait* seconds for that)."""
    server = ServerProcess(workers, report_connections=True)
    try:
        port = server.wait_ready()
        if quiet_wait > 0:
            wait_for_quiet(quiet_wait)
        pids = sorted({int(line.words[2]) for line in server.seen if line.words[:1] == ["READY"]})
        settings = replace(FULL, seconds=seconds)
        warm_up("rsocket", "read", ECHO100, port, None, None)
        cpu_before, own_before, woken_before = cpu_seconds(pids), sum(os.times()[:2]), wake_ups(pids)
        busy_before, started = machine_busy_seconds(), time.monotonic()
        measured = measure("rsocket", "read", ECHO100, port, settings, None)
        server_cpu = cpu_seconds(pids) - cpu_before
        woken = wake_ups(pids) - woken_before
        own_cpu = sum(os.times()[:2]) - own_before
        others = machine_busy_seconds() - busy_before - server_cpu - own_cpu
        others_cpus = max(0.0, others) / (time.monotonic() - started)
        # Every connection closed, the warm-up's 10 first: SIGTERM ends a
        # program without workers at once, before its handlers could report.
        closed = server.expect("CLOSED", WARM_UP_CONNECTIONS + settings.concurrent, timeout=60.0)
    finally:
        server.stop()
    spread = Counter(line.words[2] for line in closed[WARM_UP_CONNECTIONS:])
    return Result(
        measured.figure,
        server_cpu / measured.operations * 1e6,
        measured.client_cpu_seconds / measured.operations * 1e6,
        measured.operations / max(woken, 1),
        sorted(spread.values(), reverse=True),
        others_cpus,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per worker count (default 5)")
    parser.add_argument("--seconds", type=float, default=FULL.seconds, help="length of each timed run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"before each measurement, wait up to this long for the other processes to use < {QUIET_CPUS} CPUs",
    )
    options = parser.parse_args()
    counts: list[int] = options.workers
    results: dict[int, list[Result]] = {count: [] for count in counts}
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; 100 connections, {options.seconds:g} s per run")
    print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    for rep in range(options.repeat):
        order = counts if rep % 2 == 0 else counts[::-1]
        for count in order:
            result = one(count, options.seconds, options.quiet_wait)
            results[count].append(result)
            print(
                f"  rep {rep + 1} workers={count}: {result.round_trips_per_second:,.0f} round trips/s; "
                f"CPU per round trip: workers {result.server_cpu_us:.1f} us, client {result.client_cpu_us:.1f} us; "
                f"{result.round_trips_per_wake_up:.1f} round trips per wake-up of a worker; "
                f"connections per worker {result.spread}; other processes used {result.others_cpus:.2f} CPUs"
            )
    print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    base = counts[0]
    for count in counts:
        mine = results[count]
        line = (
            f"workers={count}: median {statistics.median(r.round_trips_per_second for r in mine):,.0f} round trips/s, "
            f"workers' CPU {statistics.median(r.server_cpu_us for r in mine):.1f} us and client's "
            f"{statistics.median(r.client_cpu_us for r in mine):.1f} us per round trip, "
            f"{statistics.median(r.round_trips_per_wake_up for r in mine):.1f} round trips per wake-up of a worker"
        )
        if count != base:
            ratios = [
                r.round_trips_per_second / b.round_trips_per_second for r, b in zip(mine, results[base], strict=True)
            ]
            line += f"; {statistics.median(ratios):.2f}x the round trips of workers={base} (per-repetition ratios: "
            line += ", ".join(f"{ratio:.2f}" for ratio in ratios) + ")"
            quiet = [
                ratio
                for ratio, r, b in zip(ratios, mine, results[base], strict=True)
                if max(r.others_cpus, b.others_cpus) < QUIET_CPUS
            ]
            if quiet:
                line += (
                    f"; on a quiet machine (other processes under {QUIET_CPUS} CPUs in both halves of the pair): "
                    f"{statistics.median(quiet):.2f}x over {len(quiet)} pair(s)"
                )
        print(line)


if __name__ == "__main__":
    main()
