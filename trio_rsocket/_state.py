"""The life of an RSocket as one value, and the guard that keeps fibers apart.

Theory of operation
-------------------
An :class:`RSocket` is always in exactly one :class:`State`.  The state says
which *role* the socket plays (nothing yet, connecting, listening, an open
connection, closed); which *part* does the work in that role is held beside
it (a connection part, a listener).  Every change of state goes through
:func:`check_move` against :data:`MOVES`, the table below, so a
move the rules do not allow is a bug that shows itself at once instead of
two flags quietly disagreeing.

The rules (h11 writes its own the same way, next to the machine):

========== ====================================== =========================
from       to                                     by
========== ====================================== =========================
FRESH      CONNECTING                             ``connect``
FRESH      LISTENING                              ``listen``
FRESH      OPEN                                   an accept, ``from_socket``
CONNECTING OPEN                                   the connect (and handshake) succeeded
CONNECTING FRESH                                  the connect failed: connect again
LISTENING  FRESH                                  ``listen`` failed before binding
OPEN       OPEN                                   ``upgrade_tls`` swaps the part
any        CLOSED                                 ``close``, ``aclose``, the accept loop ending
CLOSED     FRESH                                  ``reset`` (and ``connect``/``listen``, which reset)
========== ====================================== =========================

End of file is not a state of the socket but a fact about one direction of
its connection: the connection part keeps it (``eof`` for what the peer
sends, ``write_closed`` after ``send_eof``).  Closing makes every I/O call
raise :class:`trio.ClosedResourceError`, whatever the part was doing.

Concurrent use follows trio's rule: one reader and one writer at a time, and
one connect or listen at a time; a second one at once is a
:class:`trio.BusyResourceError` raised by a :class:`Guard`, the same way at
every entry point (trio's ``ConflictDetector``, anyio's ``ResourceGuard``).
"""

from __future__ import annotations

import enum
from types import TracebackType
from typing import Final

import trio

from ._errors import RSocketError

__all__ = ["MOVES", "ErrorLog", "Guard", "State", "check_move"]


class State(enum.Enum):
    """What an RSocket is doing now; see the table in this module's docstring."""

    #: No OS socket: ``get_handle() == -1``; connect or listen may start.
    FRESH = "fresh"
    #: ``connect`` is resolving, connecting or running the TLS handshake.
    CONNECTING = "connecting"
    #: ``listen`` is binding, or the accept loop runs.
    LISTENING = "listening"
    #: A connection is attached: reads and writes go to its part.
    OPEN = "open"
    #: ``close`` ran: every I/O call raises :class:`trio.ClosedResourceError`.
    CLOSED = "closed"


#: The moves the rules allow, from each state.
MOVES: Final[dict[State, frozenset[State]]] = {
    State.FRESH: frozenset({State.CONNECTING, State.LISTENING, State.OPEN, State.CLOSED}),
    State.CONNECTING: frozenset({State.OPEN, State.FRESH, State.CLOSED}),
    State.LISTENING: frozenset({State.FRESH, State.CLOSED}),
    State.OPEN: frozenset({State.OPEN, State.CLOSED}),
    State.CLOSED: frozenset({State.FRESH, State.CLOSED}),
}


def check_move(current: State, new: State) -> None:
    """Raise :class:`AssertionError` for a move :data:`MOVES` does not allow
    (a bug in this package, never the user's doing)."""
    if new not in MOVES[current]:
        raise AssertionError(f"RSocket cannot move from {current.name} to {new.name}")


class ErrorLog:
    """Where an RSocket keeps the message of its last error (``get_error``)."""

    __slots__ = ("message",)

    def __init__(self) -> None:
        self.message = ""


class Guard:
    """Refuse a second fiber in the same direction: ``with guard:`` around a
    call raises :class:`trio.BusyResourceError` if another fiber is inside.

    Every I/O call of an RSocket runs inside one of its guards, so the guard
    is also where the call's failure is written down: the message of an
    :class:`~trio_rsocket.RSocketError` or :class:`trio.BrokenResourceError`
    leaving the guard goes to its :class:`ErrorLog`.  Enter and exit are
    plain methods, so a fiber waiting inside holds no frame for the guard
    (trio's ``ConflictDetector`` is the model).
    """

    __slots__ = ("_busy", "_log", "_message")

    def __init__(self, message: str, log: ErrorLog) -> None:
        self._busy = False
        self._message = message
        self._log = log

    def __enter__(self) -> None:
        if self._busy:
            raise trio.BusyResourceError(self._message)
        self._busy = True

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._busy = False
        if value is not None and isinstance(value, RSocketError | trio.BrokenResourceError):
            self._log.message = str(value)

    @property
    def busy(self) -> bool:
        """Whether a fiber is inside now."""
        return self._busy
