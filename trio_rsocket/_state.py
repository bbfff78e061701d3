"""The life of an RSocket as one value, and the guard that keeps fibers apart.

Theory of operation
-------------------
An :class:`RSocket` is always in exactly one :class:`State`.  The state says
which *role* the socket plays (nothing yet, connecting, listening, an open
connection, closed); which *part* does the work in that role is held beside
it (a connection part, a listener).  Every change of state is an
:class:`Event` looked up in :data:`MOVES`, the table below (the front's
``_move`` is the only caller), so a move the rules do not allow is a bug
that shows itself at once instead of two flags quietly disagreeing.

``close`` and ``reset`` may come from another fiber at any point where a
``connect``, ``listen`` or ``upgrade_tls`` waits.  Those calls hold the setup
guard throughout, so nobody else can start one meanwhile: when the call
wakes and finds the state no longer the one it set (CONNECTING, LISTENING)
or the connection no longer the one it started with, it was closed or reset
under it.  It then undoes its own work (closes what it opened) and raises
:class:`trio.ClosedResourceError`, leaving the state as the close or reset
left it: CLOSED, or FRESH and ready for the next connect.

The rules (h11 writes its own the same way, next to the machine): each
move is an *event* in a state, and :data:`MOVES` is keyed by the pair.
An event the table has no entry for in the current state is refused
(:func:`next_state` raises): a bug in this package, never the user's doing.

========== ================ ========== ==================================================
from       event            to         what happened
========== ================ ========== ==================================================
FRESH      CONNECT          CONNECTING ``connect`` started
FRESH      LISTEN           LISTENING  ``listen`` started
FRESH      ADOPT            OPEN       an accepted connection, ``from_socket``
CONNECTING CONNECTED        OPEN       the connect (and handshake) succeeded
CONNECTING CONNECT_FAILED   FRESH      the connect failed: connect again
LISTENING  LISTEN_FAILED    FRESH      ``listen`` failed before binding
OPEN       UPGRADE          OPEN       ``upgrade_tls`` swapped the part
OPEN       CLOSE_NOTIFY     CLOSING    ``aclose`` of TLS: close_notify is under way
any        CLOSE            CLOSED     ``close``, ``aclose``, ``reset``; a stopped accept loop
CLOSED     RESET            FRESH      ``reset`` (and ``connect``/``listen``, which reset)
========== ================ ========== ==================================================

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
import itertools
from types import TracebackType
from typing import ClassVar, Final

import trio

from ._errors import RSocketError

__all__ = ["MOVES", "Event", "Guard", "ReadGuard", "SetupGuard", "State", "WriteGuard", "last_failure", "next_state"]


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
    #: ``aclose`` is sending TLS close_notify: not connected any more, and
    #: no descriptor to hand out (``get_handle() == -1``); CLOSED follows.
    CLOSING = "closing"
    #: ``close`` ran: every I/O call raises :class:`trio.ClosedResourceError`.
    CLOSED = "closed"

    # Members are singletons: hash them by identity, in C.  (Enum's own
    # __hash__ is Python code, and every accept and close looks a state up.)
    __hash__ = object.__hash__


class Event(enum.Enum):
    """What makes an RSocket move; see the table in this module's docstring."""

    CONNECT = "connect"
    CONNECTED = "connected"
    CONNECT_FAILED = "connect failed"
    LISTEN = "listen"
    LISTEN_FAILED = "listen failed"
    ADOPT = "adopt"
    UPGRADE = "upgrade"
    CLOSE_NOTIFY = "close notify"
    CLOSE = "close"
    RESET = "reset"

    __hash__ = object.__hash__  # as State's: every accept and close looks one up


#: The state each event leads to, from each state it may come in.
MOVES: Final[dict[tuple[State, Event], State]] = {
    (State.FRESH, Event.CONNECT): State.CONNECTING,
    (State.FRESH, Event.LISTEN): State.LISTENING,
    (State.FRESH, Event.ADOPT): State.OPEN,
    (State.CONNECTING, Event.CONNECTED): State.OPEN,
    (State.CONNECTING, Event.CONNECT_FAILED): State.FRESH,
    (State.LISTENING, Event.LISTEN_FAILED): State.FRESH,
    (State.OPEN, Event.UPGRADE): State.OPEN,
    (State.OPEN, Event.CLOSE_NOTIFY): State.CLOSING,
    **{(state, Event.CLOSE): State.CLOSED for state in State},
    (State.CLOSED, Event.RESET): State.FRESH,
}


def next_state(current: State, event: Event) -> State:
    """The state *event* leads to from *current*; :class:`AssertionError` for
    an event the rules do not allow there (a bug in this package, never the
    user's doing)."""
    try:
        return MOVES[current, event]
    except KeyError:
        raise AssertionError(f"RSocket cannot take {event.name} when {current.name}") from None


# Orders the failures recorded by one socket's guards: the last one is what
# get_error() says.
_serials = itertools.count(1)


class Guard:
    """Refuse a second fiber in the same direction: ``with guard:`` around a
    call raises :class:`trio.BusyResourceError` if another fiber is inside.

    Every I/O call of an RSocket runs inside one of its guards, so the guard
    is also where the call's failure is written down: the message of an
    :class:`~trio_rsocket.RSocketError` or :class:`trio.BrokenResourceError`
    leaving the guard becomes its :attr:`failure`, and the latest of a
    socket's guards' failures is its ``get_error()``.  Enter and exit are
    plain methods, so a fiber waiting inside holds no frame for the guard
    (trio's ``ConflictDetector`` is the model).  The two hot paths, a plain
    ``read`` and ``write``, take it inline instead: the same flag, without
    ``with``'s two calls per operation and the method object it keeps on an
    idle connection's stack.  A guard is made when its
    direction is first used: every object an idle connection keeps costs
    memory on every idle connection.
    """

    __slots__ = ("busy", "failure")

    #: What a second fiber is told (each direction says its own).
    busy_message: ClassVar[str]

    def __init__(self) -> None:
        #: Whether a fiber is inside now.
        self.busy = False
        #: ``(order, message)`` of the last failure that left this guard.
        self.failure: tuple[int, str] | None = None

    def __enter__(self) -> None:
        if self.busy:
            raise trio.BusyResourceError(self.busy_message)
        self.busy = True

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.busy = False
        if value is not None:
            self.failed(value)

    def failed(self, error: BaseException) -> None:
        """Write *error* down as this guard's failure, if it is one of ours or
        a broken connection (cancellation and bad arguments are not)."""
        if isinstance(error, RSocketError | trio.BrokenResourceError):
            self.failure = (next(_serials), str(error))


class ReadGuard(Guard):
    """Reads: ``read``, ``read_into``, ``read_until``, ``wait_readable``, ..."""

    __slots__ = ()
    busy_message = "another fiber is already reading from this socket"


class WriteGuard(Guard):
    """Writes: ``write``, ``send_file``, ``send_eof``, ``wait_writable``, ..."""

    __slots__ = ()
    busy_message = "another fiber is already writing to this socket"


class SetupGuard(Guard):
    """Making the connection: ``connect``, ``listen``, ``upgrade_tls``."""

    __slots__ = ()
    busy_message = "another fiber is already connecting or listening on this socket"


def last_failure(*guards: Guard | None) -> str:
    """The message of the latest failure recorded by any of *guards*, ``""`` if none."""
    failures = [guard.failure for guard in guards if guard is not None and guard.failure is not None]
    return max(failures)[1] if failures else ""
