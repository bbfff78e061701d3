"""``trio-rsocket bench``'s command line: its options, ``--load``, the output
files, and its exit statuses, the same as every ``trio-rsocket`` command's
(:mod:`trio_rsocket._command`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, Final

from .._command import EXIT_FAILED, EXIT_MISSING_PACKAGE, EXIT_OK, EXIT_USAGE, PROG, exit_status_help
from .report import Row, format_rst_table, format_table, pyplot, write_chart
from .runner import run
from .workloads import RAW, WORKLOAD_NAMES, BenchError, MissingPackageError

_EXIT_STATUS_HELP: Final = exit_status_help(
    {
        EXIT_FAILED: "the benchmark failed (a server did not start or answer, a run took too long)",
        EXIT_MISSING_PACKAGE: "a package it needs is not installed (trustme for the TLS workloads,\n"
        "matplotlib for --chart; the message says how to install it)",
    }
)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Benchmark RSocket beside trio.SocketStream / trio.SSLStream and asyncio streams "
        "(and anyio's, over Unix sockets, where it is installed) "
        "(loopback and Unix sockets only, server in a separate process, interleaved repetitions, medians, ratios).",
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and two repetitions (a smoke test)")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="WORKLOAD",
        choices=WORKLOAD_NAMES,
        help=f"run only these: {', '.join(WORKLOAD_NAMES)}",
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions per contender (default 5, quick 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--chart", metavar="FILE", help="also draw a chart of the ratios (needs matplotlib)")
    parser.add_argument("--rst", action="store_true", help="also print the table as reST (for the docs)")
    parser.add_argument("--load", metavar="FILE", help="do not measure: show the results saved by --json FILE")
    parser.add_argument(
        "--raw", action="store_true", help=f"also measure the raw {RAW} reference (plain TCP workloads)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin clients and servers to CPUs of their own")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    return parser


class _UsageError(Exception):
    """A bad argument found before measuring: one line, exit status 2."""


def _rows_from_json(path: str) -> tuple[list[Row], dict[str, Any]]:
    """The rows and environment saved by ``--json`` in *path*.

    Raises :class:`_UsageError` for a file that cannot be read, is not JSON,
    or is not such results; the shape is checked by formatting the report
    (:func:`_report`), which touches every field the report shows.
    """
    try:
        with open(path, encoding="utf-8") as saved:
            document = json.load(saved)
    except OSError as exc:
        raise _UsageError(f"--load {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _UsageError(f"--load {path}: not JSON ({exc})") from None
    try:
        rows = [Row(**row) for row in document["rows"]]
        environment = document["environment"]
        _report(rows, environment, rst=True)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise _UsageError(f"--load {path}: not the results saved by --json ({what})") from None
    return rows, environment


def _report(rows: Sequence[Row], environment: dict[str, Any], rst: bool) -> str:
    """What the benchmark prints: the table, the footer, the reST table if asked."""
    parts = [format_table(rows), _footer(environment)]
    if rst:
        parts.append(format_rst_table(rows))
    return "\n\n".join(parts)


@contextmanager
def _output_file(option: str, path: str | None) -> Iterator[io.TextIOWrapper | None]:
    """*path* (given as *option*) opened for writing before anything is
    measured, so that a path that cannot be written fails at once, not after
    the whole run.  Opened for appending, so nothing is lost yet: the writer
    empties it when the results are there.  A file made here and left empty
    (the run failed or was interrupted) is removed again."""
    if path is None:
        yield None
        return
    existed = os.path.lexists(path)
    try:
        out = open(path, "a", encoding="utf-8")  # noqa: SIM115  (held across the run by the with below)
    except OSError as exc:
        raise _UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    try:
        with out:
            yield out
    finally:
        if not existed:
            with contextlib.suppress(OSError):
                if os.path.getsize(path) == 0:
                    os.remove(path)


def main(argv: list[str] | None = None, prog: str = f"{PROG} bench") -> int:
    """``trio-rsocket bench``: run the benchmark and print the table; the
    exit status.  *prog* names the command in its help and its messages."""
    options = _parser(prog).parse_args(argv)
    if os.name != "posix":
        print(f"{prog}: the benchmark runs on POSIX systems (Linux, macOS) only", file=sys.stderr)
        return EXIT_FAILED

    def log(message: str) -> None:
        if not options.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        # Everything that can be found wrong is, before anything is measured.
        loaded = _rows_from_json(options.load) if options.load else None
        if options.chart:
            pyplot()
        with (
            _output_file("--json", None if loaded else options.json) as results,
            _output_file("--chart", options.chart),
        ):
            rows, environment = loaded or run(options, log)
            print(_report(rows, environment, options.rst))
            if results is not None:
                results.truncate(0)
                json.dump({"environment": environment, "rows": [asdict(row) for row in rows]}, results, indent=1)
            if options.chart:
                write_chart(rows, options.chart)
    except _UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BenchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_MISSING_PACKAGE if isinstance(exc, MissingPackageError) else EXIT_FAILED
    return EXIT_OK


def _footer(environment: dict[str, Any]) -> str:
    settings, limits = environment["settings"], environment["fd_limit"]
    limit_note = (
        f"descriptor limit {limits['now']} (raised from {limits['before']})"
        if limits["now"] != limits["before"]
        else f"descriptor limit {limits['now']} (hard limit {limits['hard']})"
    )
    pinned = environment.get("pinned")
    placement = (
        f"clients on CPU {pinned['client']}, servers on CPU {pinned['server']}" if pinned else "processes not pinned"
    )
    return (
        f"Medians of {settings['repeat']} interleaved repetitions; ratio > 1: RSocket ahead "
        f"(memory: RSocket uses less); {placement}.\n"
        f"bulk {settings['bulk_bytes'] // 2**20} MiB, TLS bulk {settings['tls_bulk_bytes'] // 2**20} MiB, "
        f"file {settings.get('file_bytes', 0) // 2**20} MiB, "
        f"{settings['seconds']:g} s per timed run, {settings['concurrent']} concurrent connections, "
        f"{settings['idle_connections']:,} idle connections, "
        f"{settings.get('tls_idle_pairs', 0):,} idle TLS pairs; {limit_note}.\n"
        f"Python {environment['python']}, trio {environment['trio']}, {environment['cpus']} CPUs, "
        f"{environment['platform']}; took {environment.get('seconds', '?')} s."
    )
