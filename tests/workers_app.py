"""A program run under workers, for tests/test_workers.py (``python -m tests.workers_app N``).

Each worker serves the address ``run`` bound; a connection gets one line,
``"<worker id> <pid>\\n"``, so a client can tell the workers apart, then an
echo of what it sends.  The
supervisor's log goes to standard error, one message a line.  With
``first-only`` after N, ``run`` binds two addresses and each worker listens
on the first only.
"""

from __future__ import annotations

import logging
import os
import sys

import trio_rsocket
from trio_rsocket import RSocket
from trio_rsocket.testing import echo_handler


async def who_am_i(data: None, sock: RSocket) -> None:
    """Say which worker serves, then echo until the client closes (for a
    connection that outlives a SIGTERM)."""
    await sock.write(f"{trio_rsocket.worker_id()} {os.getpid()}\n".encode())
    await echo_handler(data, sock)


async def serve() -> None:
    # Port 0 as run() was given it: the supervisor's socket, not a new port.
    listener = RSocket()
    await listener.listen("127.0.0.1", 0, who_am_i)
    if [listener.get_addr()] != trio_rsocket.listen_addresses():
        raise AssertionError(f"listening on {listener.get_addr()}, not {trio_rsocket.listen_addresses()}")


async def serve_the_first_only() -> None:
    # Of the two addresses run() bound, listen on the first only: such a
    # worker never counts as serving.
    listener = RSocket()
    await listener.listen("127.0.0.1", 0, who_am_i)


# In the supervisor and (loaded again as __mp_main__) in every worker.
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

if __name__ == "__main__":
    if sys.argv[2:] == ["first-only"]:
        listen = [("127.0.0.1", 0), ("127.0.0.1", 0)]
        trio_rsocket.run(serve_the_first_only, workers=int(sys.argv[1]), listen=listen, grace=5)
    else:
        trio_rsocket.run(serve, workers=int(sys.argv[1]), listen=[("127.0.0.1", 0)], grace=5)
    print("run returned", file=sys.stderr, flush=True)
