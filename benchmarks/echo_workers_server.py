"""The echo server that ``workers_echo.py`` and ``rolling_restart.py`` drive.

``python benchmarks/echo_workers_server.py --workers N [--port P]`` runs
``trio_rsocket.run(main, workers=N, listen=[("127.0.0.1", P)])``; each
worker's ``main`` listens on that address (adopting the supervisor's socket)
and then reports on its standard output, which the workers share with the
supervisor:

``READY <worker_id> <pid> <port>``
    the worker is serving;
``CLOSED <worker_id> <pid> <bytes>``
    a connection of that worker ended, after echoing that many bytes (with
    ``--report-connections`` only).

The supervisor stops on SIGTERM/SIGINT and replaces its workers on SIGHUP,
as any program under ``run(..., workers=N)`` does.
"""

from __future__ import annotations

import argparse
import os
import sys

import trio_rsocket
from trio_rsocket import RSocket

HOST = "127.0.0.1"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def echo(report: bool, sock: RSocket) -> None:
    """Echo until end of file, then report the connection if asked to."""
    echoed = 0
    try:
        while received := await sock.read():
            await sock.write(received)
            echoed += len(received)
    finally:
        if report:
            _say(f"CLOSED {trio_rsocket.worker_id()} {os.getpid()} {echoed}")


async def main(report: bool) -> None:
    for host, port in trio_rsocket.listen_addresses():
        listener = RSocket()
        await listener.listen(host, port, echo, report)  # adopts the supervisor's socket
        _say(f"READY {trio_rsocket.worker_id()} {os.getpid()} {listener.get_addr()[1]}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)")
    parser.add_argument("--report-connections", action="store_true", help="print a CLOSED line per connection")
    options = parser.parse_args(argv)
    trio_rsocket.run(main, options.report_connections, workers=options.workers, listen=[(HOST, options.port)])


if __name__ == "__main__":
    cli()
