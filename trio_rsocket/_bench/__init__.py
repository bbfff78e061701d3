"""The benchmark: RSocket beside trio's own streams and asyncio's, as ratios.

Theory of operation
-------------------
A wrapper earns its place only if it costs nothing, so every figure RSocket
gets is shown beside the same workload driven by ``trio.SocketStream`` (or
``trio.SSLStream``) and by asyncio streams, measured in the same run on the
same machine, and reported as a ratio.

* **Separate processes.**  The server side of each workload runs in its own
  process (``python -c ... _server_main``), so client and server each get a
  core and neither steals the other's event loop.  The client runs in the
  bench process.  Both sides use the same implementation, so ratios compare
  like with like.  Only loopback (127.0.0.1) is used.  With two CPUs or more
  the clients are pinned to one and the servers to another, so every
  contender gets the same placement.
* **Interleaved.**  For each workload one server per implementation is started,
  then the repetitions run A B C, B C A, C A B, ... so slow drift of the
  machine (other processes, thermal state) lands on every contender alike.
  The figure reported is the median over repetitions, and the ratio is the
  median of the per-repetition ratios (each pair measured back to back).
* **Server CPU.**  Each server answers ``CPU`` on its standard input with
  the CPU time it has used, read before and after every measurement: the
  cost of the server side alone, per operation, whatever the client does.
* **No deadlines.**  Measurements are bounded by a watchdog task, not a
  cancel scope deadline, so every contender runs as the common program
  does, with no deadline anywhere.
* **Bounded.**  Every loop has a count or a size, every measurement a time
  limit, and every server exits when its standard input closes (so a killed
  bench leaves no server behind) or after a hard lifetime.
* **Client CPU.**  Where the client is the subject (the file transfer's
  sender, the TLS reconnects), the bench process's own CPU time around each
  measurement is reported per operation too.  The file transfer's receiver
  is one neutral server, plain blocking sockets reading into a 1 MiB buffer,
  the same for every sender, so that the sender sets the pace.
* **Variants compared.**  Where a workload measures an implementation in
  two ways (``send_file`` and a read + write loop; a TLS reconnect with and
  without resuming the session), the quotient of the two is shown per
  implementation, paired repetition by repetition like every ratio.
* **Idle connections** are the exception: the figure is the server's resident
  memory per connection (``VmRSS`` from ``/proc/self/status`` before and after
  the connections arrive), so each repetition gets a fresh server process.
  The client side of that workload is plain blocking sockets, the same for
  every server.  Idle TLS pairs put both ends in that process, each made
  with the implementation under test (the server process connects to
  itself), so the figure is a whole pair's: client, server and the handler
  waiting in a read.

* **Unix sockets.**  The Unix-socket echo runs each server on a socket file
  of its own in a short temporary directory (``sun_path`` holds 107
  bytes), removed when the servers stop.  trio has a Unix client
  (``open_unix_socket``) but no server: its side is a
  :class:`trio.SocketListener` on a bound ``AF_UNIX`` socket, served by
  ``serve_listeners``.  anyio (``connect_unix``, ``create_unix_listener``, on
  its default asyncio backend) is a baseline there too when it is installed
  (the ``bench`` extra); when it is not, its column says so and the run goes
  on.

``--raw`` adds trio's socket layer called directly, the floor that a layer
over trio can reach.  The benchmark needs nothing beyond trio (and trustme
for the TLS workloads) on a POSIX system; ``--chart`` lazily imports
matplotlib (the ``bench`` extra).

The modules, each calling only those above it:

``workloads``
   What is measured: the sizes of a run, the workloads, the constants and
   errors the others share, the TLS material and the file to transfer.
``backends``
   A connection of each implementation, behind the same four operations.
``clients``
   The client side of each workload, and one timed measurement.
``servers``
   The server process, and the bench's handle on it.
``report``
   The results (a row per workload and variant), the tables and the chart.
``runner``
   The interleaved repetitions, the idle workloads, the whole run.
``cli``
   ``trio-rsocket bench``'s options and output files; ``python -m
   trio_rsocket._bench`` runs it too.
"""

from __future__ import annotations

from .cli import main as main

__all__ = ["main"]
