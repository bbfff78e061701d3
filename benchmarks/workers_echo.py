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
as they would if the client were on the same host.

Prints each measurement, then the medians, the median of the per-repetition
ratios to the first worker count, and how the connections were spread over
the workers (a worker reports every connection it closes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import Counter
from dataclasses import replace

from _server_process import ServerProcess

from trio_rsocket._bench.clients import measure, warm_up
from trio_rsocket._bench.workloads import FULL, WORKLOADS

ECHO100 = next(workload for workload in WORKLOADS if workload.name == "echo100")


def one(workers: int, seconds: float) -> tuple[float, list[int]]:
    """Round trips per second with *workers*, and the connections per worker."""
    server = ServerProcess(workers, report_connections=True)
    try:
        port = server.wait_ready()
        settings = replace(FULL, seconds=seconds)
        warm_up("rsocket", "read", ECHO100, port, None, None)
        figure = measure("rsocket", "read", ECHO100, port, settings, None).figure
    finally:
        server.stop()
    # The measured connections are the last 100 to close (the warm-up's 10 close first).
    closed = [line.words for line in server.seen if line.words[:1] == ["CLOSED"]]
    spread = Counter(words[2] for words in closed[-settings.concurrent :])
    return figure, sorted(spread.values(), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per worker count (default 5)")
    parser.add_argument("--seconds", type=float, default=FULL.seconds, help="length of each timed run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    options = parser.parse_args()
    counts: list[int] = options.workers
    samples: dict[int, list[float]] = {count: [] for count in counts}
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; 100 connections, {options.seconds:g} s per run")
    for rep in range(options.repeat):
        order = counts if rep % 2 == 0 else counts[::-1]
        for count in order:
            figure, spread = one(count, options.seconds)
            samples[count].append(figure)
            print(f"  rep {rep + 1} workers={count}: {figure:,.0f} round trips/s; connections per worker {spread}")
    base = counts[0]
    for count in counts:
        line = f"workers={count}: median {statistics.median(samples[count]):,.0f} round trips/s"
        if count != base:
            ratios = [mine / theirs for mine, theirs in zip(samples[count], samples[base], strict=True)]
            line += f", {statistics.median(ratios):.2f}x of workers={base} (per-repetition ratios: "
            line += ", ".join(f"{ratio:.2f}" for ratio in ratios) + ")"
        print(line)


if __name__ == "__main__":
    main()
