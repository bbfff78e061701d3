"""A worker's entry point: ``python -m trio_rsocket._worker CONTROL READY FDS``.

Started by :func:`trio_rsocket.run`'s supervisor, never by hand; the work is
in :func:`trio_rsocket._workers.worker_main` (a module of its own here so that
``-m`` does not load a second copy of ``_workers`` as ``__main__``).
"""

import sys

from ._workers import worker_main

if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
