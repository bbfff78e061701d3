"""What every ``trio-rsocket`` command shares: its name, its exit statuses and
how its ``--help`` lists them.

The command line (:mod:`trio_rsocket._cli`) and the benchmark
(:mod:`trio_rsocket._bench`) both take them from here, so that a status
means the same whichever command exits with it.  Calls go one way: the
command line calls the benchmark, and both call down to this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

PROG: Final = "trio-rsocket"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_TLS: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_MISSING_PACKAGE: Final = 5
EXIT_INTERRUPTED: Final = 130

#: What a status means in every command; each command words the others itself.
_SHARED_MEANINGS: Final = {
    EXIT_OK: "success",
    EXIT_USAGE: "bad arguments",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_status_help(meanings: Mapping[int, str]) -> str:
    """The ``exit status:`` section of a command's ``--help`` (for an epilog
    shown with :class:`argparse.RawDescriptionHelpFormatter`): the statuses
    every command shares and the command's own *meanings*, in the order of
    their numbers.  A meaning's further lines are indented under its first."""
    lines = ["exit status:"]
    for status, meaning in sorted({**_SHARED_MEANINGS, **meanings}.items()):
        first, *more = meaning.splitlines()
        lines.append(f"  {status:<5}{first}")
        lines.extend(f"{'':7}{line}" for line in more)
    return "\n".join(lines) + "\n"
