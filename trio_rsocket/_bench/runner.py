"""Running it all: each workload's contenders, interleaved over their
servers (:func:`run_workload`); the idle workloads, a fresh server per
repetition; and the whole run that ``trio-rsocket bench`` asks for
(:func:`run`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket as stdlib_socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import trio

from .backends import missing_package
from .clients import measure, warm_up
from .report import Row
from .servers import ServerProcess, raise_fd_limit
from .workloads import (
    DRAIN,
    FULL,
    HOST,
    QUICK,
    RAW,
    WORKLOADS,
    BenchError,
    Settings,
    TLSFiles,
    Workload,
    make_tls_files,
    make_transfer_file,
    variant_title,
)

# ----------------------------------------------------------------------
# The servers of a workload's contenders
# ----------------------------------------------------------------------


#: Which server a contender talks to: (implementation, highest TLS version or "").
_ServerKey = tuple[str, str]


def _server_key(workload: Workload, impl: str, variant: str) -> _ServerKey:
    if workload.server == "drain":
        return (DRAIN, "")
    return (impl, "1.2" if variant.startswith("tls1.2") else "")


@contextmanager
def _servers(
    keys: Sequence[_ServerKey], kind: str, tls: TLSFiles | None, cpu: int | None, unix: bool = False
) -> Iterator[dict[_ServerKey, ServerProcess]]:
    """A server per key; with *unix*, each on a Unix socket of its own in a
    temporary directory (short: ``sun_path`` holds 107 bytes at most),
    removed with everything in it when they stop."""
    started: dict[_ServerKey, ServerProcess] = {}
    with contextlib.ExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="rsocket-bench-")) if unix else None
        try:
            for key in keys:
                impl, max_version = key
                files = None if tls is None else replace(tls, max_version=max_version)
                path = None if directory is None else os.path.join(directory, f"{impl}.sock")
                started[key] = ServerProcess(impl, kind, files, cpu, path=path)
            yield started
        finally:
            for server in started.values():
                server.stop()


# ----------------------------------------------------------------------
# Idle connections
# ----------------------------------------------------------------------


def _idle_kib_per_connection(impl: str, connections: int, timeout: float, cpu: int | None) -> float:
    """Open *connections* plain connections to a fresh server; its RSS growth per connection."""
    server = ServerProcess(impl, "idle", None, cpu, target=connections)
    socks: list[stdlib_socket.socket] = []
    try:
        for _ in range(connections):
            sock = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(timeout)
            sock.connect((HOST, server.port))
        count, rss = (int(word) for word in server.expect("CONNS", timeout))
        return (rss - server.rss_kib) / count
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def _idle_kib_per_pair(impl: str, pairs: int, tls: TLSFiles | None, timeout: float, cpu: int | None) -> float:
    """A fresh server process that opens *pairs* TLS connections to itself,
    both ends with *impl*, each server handler waiting in a read; its RSS
    growth per pair (client, server and handler)."""
    server = ServerProcess(impl, "idle-pairs", tls, cpu, target=pairs)
    try:
        count, rss = (int(word) for word in server.expect("CONNS", timeout))
        return (rss - server.rss_kib) / count
    finally:
        server.stop()


# ----------------------------------------------------------------------
# Running it all
# ----------------------------------------------------------------------


def _contestants(workload: Workload, raw: bool) -> list[tuple[str, str]]:
    if workload.contenders:
        return list(workload.contenders)
    baselines = [("trio", ""), ("asyncio", "")] + ([(RAW, "")] if raw and not workload.tls else [])
    return [("rsocket", variant) for variant in workload.variants] + baselines


def _shown_variant(contestants: Sequence[tuple[str, str]], impl: str, variant: str) -> str | None:
    """The variant of *impl* shown in the row of RSocket's *variant*: the same
    one if *impl* was measured in it, else its only one (None: neither)."""
    own = [theirs for name, theirs in contestants if name == impl]
    if variant in own:
        return variant
    return own[0] if len(own) == 1 else None


def run_workload(
    workload: Workload,
    settings: Settings,
    tls: TLSFiles | None,
    server_cpu: int | None,
    log: Callable[[str], None],
    raw: bool = False,
    transfer_file: str | None = None,
) -> list[Row]:
    """Measure one workload, interleaved, and return its rows; servers run on
    *server_cpu* if given; *raw* adds the raw trio.socket reference;
    *transfer_file* is the file the file transfer sends."""
    contestants = _contestants(workload, raw)
    impls = list(dict.fromkeys(impl for impl, _ in contestants))
    # A baseline whose package is missing sits the workload out; its column says why.
    missing = {impl: why for impl in impls if (why := missing_package(impl)) is not None}
    contestants = [contestant for contestant in contestants if contestant[0] not in missing]
    impls = [impl for impl in impls if impl not in missing]
    if not workload.tls:
        tls = None
    samples: dict[tuple[str, str], list[float]] = {contestant: [] for contestant in contestants}
    server_cpu_us: dict[tuple[str, str], list[float]] = {contestant: [] for contestant in contestants}
    client_cpu_us: dict[tuple[str, str], list[float]] = {contestant: [] for contestant in contestants}
    if workload.server in ("idle", "idle-pairs"):
        for rep in range(settings.repeat):
            shift = rep % len(contestants)
            for impl, variant in contestants[shift:] + contestants[:shift]:
                samples[impl, variant].append(
                    _idle_kib_per_connection(impl, settings.idle_connections, settings.timeout, server_cpu)
                    if workload.server == "idle"
                    else _idle_kib_per_pair(impl, settings.tls_idle_pairs, tls, settings.timeout, server_cpu)
                )
    else:
        keys = {contestant: _server_key(workload, *contestant) for contestant in contestants}
        unique_keys = list(dict.fromkeys(keys.values()))
        with _servers(unique_keys, workload.server, tls, server_cpu, workload.unix) as servers:
            for impl, variant in contestants:
                server = servers[keys[impl, variant]]
                warm_up(impl, variant, workload, server.port, tls, transfer_file, server.path)
            for rep in range(settings.repeat):
                shift = rep % len(contestants)
                for impl, variant in contestants[shift:] + contestants[:shift]:
                    server = servers[keys[impl, variant]]
                    cpu_before = server.cpu_seconds()
                    measured = measure(impl, variant, workload, server.port, settings, tls, transfer_file, server.path)
                    cpu_used = server.cpu_seconds() - cpu_before
                    samples[impl, variant].append(measured.figure)
                    if measured.operations > 0:
                        # The drain server is the same for every sender: its CPU time is not the subject.
                        if workload.server != "drain":
                            server_cpu_us[impl, variant].append(cpu_used / measured.operations * 1e6)
                        if workload.client_cpu:
                            client_cpu_us[impl, variant].append(measured.client_cpu_seconds / measured.operations * 1e6)
                    log(
                        f"  {workload.name} {impl}{' ' + variant if variant else ''}: "
                        f"{measured.figure:,.1f} {workload.unit}"
                    )
    rows = []
    for variant in workload.variants:
        shown = {impl: _shown_variant(contestants, impl, variant) for impl in impls}
        picked = {impl: (impl, theirs) for impl, theirs in shown.items() if theirs is not None}
        several = len(workload.variants) > 1
        rows.append(
            Row(
                workload=workload.name + (f":{variant}" if several else ""),
                title=workload.title + (f" ({variant_title(variant)})" if several else ""),
                unit=workload.unit,
                higher_is_better=workload.higher_is_better,
                samples={impl: samples[key] for impl, key in picked.items()},
                operation=workload.operation,
                server_cpu={impl: server_cpu_us[key] for impl, key in picked.items()},
                client_cpu={impl: client_cpu_us[key] for impl, key in picked.items() if client_cpu_us[key]},
                variants={impl: theirs for impl, (_, theirs) in picked.items() if theirs},
                missing=dict(missing),
            )
        )
    return rows


def _environment(settings: Settings, fd_limits: tuple[int, int, int]) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "trio": trio.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "settings": asdict(settings),
        "fd_limit": {"before": fd_limits[0], "now": fd_limits[1], "hard": fd_limits[2]},
    }


def run(options: argparse.Namespace, log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    """The whole run that *options* (``trio-rsocket bench``'s, parsed) ask for:
    the rows, and the environment they were measured in; *log* gets the
    progress lines."""
    settings = QUICK if options.quick else FULL
    if options.repeat is not None:
        if options.repeat < 1:
            raise BenchError("--repeat must be at least 1")
        settings = Settings(**{**asdict(settings), "repeat": options.repeat})
    selected = [workload for workload in WORKLOADS if not options.only or workload.name in options.only]
    fd_limits = raise_fd_limit()
    if any(workload.server == "idle" for workload in selected):
        # Each end needs a descriptor per connection, plus a few of its own.
        room = fd_limits[1] - 64
        if 0 < room < settings.idle_connections:
            log(f"descriptor limit {fd_limits[1]}: idle connections scaled down to {room}")
            settings = Settings(**{**asdict(settings), "idle_connections": room})
    if any(workload.server == "idle-pairs" for workload in selected):
        # Both ends of every pair are in the server process.
        room = (fd_limits[1] - 64) // 2
        if 0 < room < settings.tls_idle_pairs:
            log(f"descriptor limit {fd_limits[1]}: idle TLS pairs scaled down to {room}")
            settings = Settings(**{**asdict(settings), "tls_idle_pairs": room})
    started = time.monotonic()
    rows: list[Row] = []
    with (
        _pinned(not options.no_pin) as (client_cpu, server_cpu),
        tempfile.TemporaryDirectory(prefix="trio-rsocket-bench-") as directory,
    ):
        tls = make_tls_files(directory) if any(workload.tls for workload in selected) else None
        transfer_file = None
        if any(workload.server == "drain" for workload in selected):
            transfer_file = make_transfer_file(directory, settings.file_bytes)
        for workload in selected:
            log(f"{workload.name}: {workload.title} ...")
            rows += run_workload(workload, settings, tls, server_cpu, log, options.raw, transfer_file)
    environment = _environment(settings, fd_limits)
    environment["pinned"] = None if client_cpu is None else {"client": client_cpu, "server": server_cpu}
    environment["seconds"] = round(time.monotonic() - started, 1)
    return rows, environment


@contextmanager
def _pinned(wanted: bool) -> Iterator[tuple[int | None, int | None]]:
    """Pin this process (the clients) to one CPU and tell where servers go.

    With client and server each on a CPU of its own, every contender gets the
    same placement; left to the OS, where two processes land varies from one
    start to the next and shifts the figures by more than the differences
    being measured.  Yields ``(None, None)`` where that is not possible.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    setaffinity = getattr(os, "sched_setaffinity", None)
    if not wanted or getaffinity is None or setaffinity is None:
        yield None, None
        return
    original = getaffinity(0)
    if len(original) < 2:
        yield None, None
        return
    client_cpu, server_cpu = sorted(original)[:2]
    setaffinity(0, {client_cpu})
    try:
        yield client_cpu, server_cpu
    finally:
        setaffinity(0, original)
