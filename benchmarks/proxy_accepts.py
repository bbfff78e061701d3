"""Sequential accepts per second with and without a PROXY protocol header.

    python benchmarks/proxy_accepts.py [--seconds S] [--repeat N] [--baseline DIR]

A listener in a process of its own (``listen(..., proxy_protocol=...)``)
answers each connection with one byte and closes it; this process connects
with blocking sockets one at a time, writes the header (none, v1 or v2),
reads up to the close, and counts.  The modes run interleaved, *repeat*
times each, and the medians are printed: accepts per second (noisy on a
shared machine) and the server process's CPU time per connection (read from
``/proc``, Linux only; steadier).  Loopback only.

The ``trio-rsocket bench`` workloads compare RSocket with trio and asyncio,
which take no PROXY headers, so this one lives beside it as a script.
``--baseline DIR`` adds a server without headers from another copy of the
package (``git archive main trio_rsocket | tar -x -C DIR``), to show that a
listener without headers costs what it did before.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

HOST = "127.0.0.1"
MODES = ("off", "v1", "v2", "v2+tlvs")
V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_ADDRESSES = bytes([192, 168, 0, 1, 192, 168, 0, 11]) + struct.pack("!HH", 56324, 443)
V2 = _SIGNATURE + b"\x21\x11" + struct.pack("!H", len(_ADDRESSES)) + _ADDRESSES
_TLVS = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.com"
V2_TLVS = _SIGNATURE + b"\x21\x11" + struct.pack("!H", len(_ADDRESSES) + len(_TLVS)) + _ADDRESSES + _TLVS
HEADERS = {"off": b"", "v1": V1, "v2": V2, "v2+tlvs": V2_TLVS, "baseline": b""}


def serve(mode: str) -> None:
    """The server process: print the port, serve until stdin closes."""
    import trio

    from trio_rsocket import RSocket

    async def answer(data: object, sock: RSocket) -> None:
        await sock.write(b"x")

    async def main() -> None:
        listener = RSocket()
        async with trio.open_nursery() as nursery:
            # No proxy_protocol argument at all when off: a baseline copy may predate it.
            options = {"proxy_protocol": True} if mode != "off" else {}
            await listener.listen(HOST, 0, answer, nursery=nursery, **options)
            print(listener.get_addr()[1], flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)
            listener.close()

    trio.run(main)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accepts(port: int, pid: int, header: bytes, seconds: float) -> tuple[float, float]:
    """Accepts per second, and the server's CPU microseconds per accept."""
    done = 0
    cpu = cpu_seconds(pid)
    start = time.perf_counter()
    stop_at = start + seconds
    while True:
        with socket.create_connection((HOST, port)) as client:
            if header:
                client.sendall(header)
            while client.recv(64):
                pass
        done += 1
        if time.perf_counter() >= stop_at:
            return done / (time.perf_counter() - start), (cpu_seconds(pid) - cpu) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", metavar="DIR", help="also serve without headers from the package in DIR")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    modes = (*MODES, "baseline") if args.baseline else MODES
    servers = {
        mode: subprocess.Popen(
            [sys.executable, __file__, "--serve", "off" if mode == "baseline" else mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": args.baseline} if mode == "baseline" else None,
        )
        for mode in modes
    }
    try:
        assert all(server.stdout is not None for server in servers.values())
        ports = {mode: int(server.stdout.readline()) for mode, server in servers.items()}  # type: ignore[union-attr]
        for mode in modes:
            accepts(ports[mode], servers[mode].pid, HEADERS[mode], 0.2)  # warm up
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        cpus: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.repeat):
            for mode in modes:
                rate, cpu = accepts(ports[mode], servers[mode].pid, HEADERS[mode], args.seconds)
                rates[mode].append(rate)
                cpus[mode].append(cpu)
    finally:
        for server in servers.values():
            server.communicate("")
    base, base_cpu = statistics.median(rates["off"]), statistics.median(cpus["off"])
    print(f"{'header':<10} {'accepts/s':>10} {'vs off':>7} {'server CPU us/accept':>21} {'vs off':>7}")
    for mode in modes:
        rate, cpu = statistics.median(rates[mode]), statistics.median(cpus[mode])
        print(f"{mode:<10} {rate:>10.0f} {rate / base:>7.2f} {cpu:>21.0f} {cpu / base_cpu:>7.2f}")


if __name__ == "__main__":
    main()
