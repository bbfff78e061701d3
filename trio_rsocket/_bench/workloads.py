"""What the benchmark measures, and with what: the sizes of a run, the
workloads, the TLS material and the file of the file transfer.

The lowest room of the benchmark: the constants and the errors that the
other modules share are here too.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Final

from ..testing import TRUSTME_HINT, make_cert_files, new_ca

HOST: Final = "127.0.0.1"
#: The size of every bulk write and of every read buffer (trio's default receive size).
CHUNK: Final = 65536
#: The message of the echo workloads.
ECHO_SIZE: Final = 64
#: One listen backlog for every server, so none is favoured (Linux caps it at somaxconn).
BACKLOG: Final = 4096
#: A server process ends by itself after this long, whatever happens to the bench.
SERVER_LIFETIME: Final = 1800.0
#: The implementations compared; the first is the subject, the others the baselines.
IMPLEMENTATIONS: Final = ("rsocket", "trio", "asyncio")
#: The baseline of the Unix-socket workload that needs a package of its own
#: (the ``bench`` extra); without it its column says it is not installed.
ANYIO: Final = "anyio"
#: The optional reference (``--raw``): trio's socket layer called directly,
#: the floor that a layer over trio can reach (plain TCP only).
RAW: Final = "trio.socket"

#: The neutral server of the file transfer (blocking sockets), and its read size and time limit.
DRAIN: Final = "blocking"
DRAIN_BUFFER: Final = 2**20
DRAIN_TIMEOUT: Final = 120.0


class BenchError(RuntimeError):
    """A workload could not run (a server died, a peer closed early, a limit)."""


class MissingPackageError(BenchError):
    """A package the benchmark needs for what was asked is not installed."""


# ----------------------------------------------------------------------
# What is measured
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one run (``--quick`` picks the small set)."""

    bulk_bytes: int
    tls_bulk_bytes: int
    #: The file of the file transfer workload.
    file_bytes: int
    #: How long each timed measurement (echo, accepts, handshakes) runs.
    seconds: float
    repeat: int
    concurrent: int
    idle_connections: int
    #: Bound on any single measurement.
    timeout: float
    #: Idle TLS connection pairs, both ends in one process.
    tls_idle_pairs: int = 1000


FULL: Final = Settings(
    bulk_bytes=256 * 2**20,
    tls_bulk_bytes=64 * 2**20,
    file_bytes=256 * 2**20,
    seconds=1.5,
    repeat=5,
    concurrent=100,
    idle_connections=10_000,
    timeout=120.0,
)
QUICK: Final = Settings(
    bulk_bytes=8 * 2**20,
    tls_bulk_bytes=4 * 2**20,
    file_bytes=4 * 2**20,
    seconds=0.15,
    repeat=2,
    concurrent=100,
    idle_connections=500,
    timeout=60.0,
    tls_idle_pairs=100,
)


@dataclass(frozen=True)
class Workload:
    """One line (or two) of the table."""

    name: str
    title: str
    unit: str
    #: What the server does with each connection: bulk, echo, accept,
    #: handshake, idle, idle-pairs (idle, with the clients in the server's
    #: process), or drain (served by one neutral blocking-socket server
    #: for every contender, whose CPU time is not the subject).
    server: str
    tls: bool = False
    #: RSocket is measured once per variant (bulk: ``read`` and ``read_into``).
    variants: tuple[str, ...] = ("read",)
    higher_is_better: bool = True
    #: One operation, for the CPU time per operation ("" if not measured).
    operation: str = ""
    #: The contenders as ``(implementation, variant)`` where they are not
    #: RSocket's variants beside one trio and one asyncio client.  A baseline
    #: measured in several variants is shown in the row of the same variant.
    contenders: tuple[tuple[str, str], ...] = ()
    #: Pairs ``(variant, reference)`` shown as ratios of each other, for each
    #: implementation measured in both.
    compare: tuple[tuple[str, str], ...] = ()
    #: Also measure the client's CPU time per operation (the bench process).
    client_cpu: bool = False
    #: Over a Unix socket (a path in a temporary directory) instead of loopback TCP.
    unix: bool = False


#: The TLS reconnect variants: TLS version (the server's highest) and whether
#: the client offers the session of its previous connection.
_RECONNECT_VARIANTS: Final = ("tls1.3-full", "tls1.3-resumed", "tls1.2-full", "tls1.2-resumed")

WORKLOADS: Final = (
    Workload("bulk", "bulk transfer, 64 KiB writes", "MB/s", "bulk", variants=("read", "read_into"), operation="MB"),
    Workload("echo", "64-byte echo, 1 connection", "round trips/s", "echo", operation="round trip"),
    Workload("echo100", "64-byte echo, 100 connections", "round trips/s", "echo", operation="round trip"),
    Workload("accept", "sequential accepts", "accepts/s", "accept", operation="accept"),
    Workload(
        "file",
        "file transfer",
        "MB/s",
        "drain",
        variants=("send_file", "read+write"),
        operation="MB",
        # trio has no sendfile (trio#45): its read + send_all loop stands in both rows.
        contenders=(
            ("rsocket", "send_file"),
            ("rsocket", "read+write"),
            ("trio", "read+write"),
            ("asyncio", "send_file"),
            ("asyncio", "read+write"),
        ),
        compare=(("send_file", "read+write"),),
        client_cpu=True,
    ),
    Workload("tls-bulk", "TLS bulk transfer", "MB/s", "bulk", tls=True, operation="MB"),
    Workload("tls-echo", "TLS 64-byte echo, 1 connection", "round trips/s", "echo", tls=True, operation="round trip"),
    Workload(
        "tls-echo100", "TLS 64-byte echo, 100 connections", "round trips/s", "echo", tls=True, operation="round trip"
    ),
    Workload("tls-handshake", "TLS handshakes", "handshakes/s", "handshake", tls=True, operation="handshake"),
    Workload(
        "tls-resume",
        "TLS reconnects",
        "connects/s",
        "echo",
        tls=True,
        variants=_RECONNECT_VARIANTS,
        operation="connect",
        # asyncio's streams cannot offer a session (no session= anywhere on the way to the SSLObject).
        contenders=tuple((impl, variant) for impl in ("rsocket", "trio") for variant in _RECONNECT_VARIANTS),
        compare=(("tls1.3-resumed", "tls1.3-full"), ("tls1.2-resumed", "tls1.2-full")),
        client_cpu=True,
    ),
    Workload(
        "unix-echo",
        "Unix socket 64-byte echo, 1 connection",
        "round trips/s",
        "echo",
        operation="round trip",
        # trio: open_unix_socket, and a SocketListener on a bound AF_UNIX socket
        # (trio has no serve_unix); anyio where it is installed.
        contenders=(("rsocket", "read"), ("trio", ""), ("asyncio", ""), (ANYIO, "")),
        unix=True,
    ),
    Workload("idle", "idle connections, memory", "KiB/connection", "idle", higher_is_better=False),
    Workload("tls-idle", "idle TLS pairs, memory", "KiB/pair", "idle-pairs", tls=True, higher_is_better=False),
)
WORKLOAD_NAMES: Final = tuple(workload.name for workload in WORKLOADS)

#: How a variant is named in the table.
VARIANT_TITLES: Final = {
    "read+write": "read + write",
    "tls1.3-full": "TLS 1.3 full",
    "tls1.3-resumed": "TLS 1.3 resumed",
    "tls1.2-full": "TLS 1.2 full",
    "tls1.2-resumed": "TLS 1.2 resumed",
}


def variant_title(variant: str) -> str:
    """How *variant* is named in the table."""
    return VARIANT_TITLES.get(variant, variant)


# ----------------------------------------------------------------------
# TLS material
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throwaway CA and a server certificate for 127.0.0.1,
    and the highest TLS version a server offers ("": the default, TLS 1.3)."""

    ca: str
    cert: str
    key: str
    max_version: str = ""


def make_tls_files(directory: str) -> TLSFiles:
    """Write a trustme CA and a server certificate for 127.0.0.1 into *directory*
    (with :func:`trio_rsocket.testing.make_cert_files`, as the fixtures do)."""
    try:
        ca = new_ca()
    except ImportError:
        raise MissingPackageError(
            f"the TLS workloads need trustme: {TRUSTME_HINT} (or skip them with --only)"
        ) from None
    files = make_cert_files(ca, directory)
    return TLSFiles(ca=str(files.authority), cert=str(files.server_cert), key=str(files.server_key))


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """A server's context for *files*: trio's and asyncio's always, RSocket's
    where *files* caps the TLS version."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    if files.max_version == "1.2":
        # The server caps the version, so every client connects as it always does.
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


_client_contexts: dict[str, ssl.SSLContext] = {}


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """The context of a trio or asyncio client that trusts *files*' CA."""
    # One context per CA for the whole run, as a real client would keep it.
    context = _client_contexts.get(files.ca)
    if context is None:
        context = _client_contexts[files.ca] = ssl.create_default_context(cafile=files.ca)
    return context


def make_transfer_file(directory: str, size: int) -> str:
    """Write the file of the file transfer workload into *directory*: *size*
    bytes, a random MiB repeated.  Just written, it sits in the page cache,
    so the transfers measure the network path, not the disk."""
    path = os.path.join(directory, "transfer.bin")
    block = os.urandom(2**20)
    with open(path, "wb") as file:
        for offset in range(0, size, len(block)):
            file.write(block[: size - offset])
    return path
