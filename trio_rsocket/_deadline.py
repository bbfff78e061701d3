"""Deadlines: absolute times on trio's clock.

Theory of operation: a deadline is what Ioto calls it, a point in time, not a
timeout.  Each blocking call that takes one runs inside a
:class:`trio.CancelScope` whose ``deadline`` it is, so the effective deadline
is the earlier of it and any enclosing scope's, and a
:class:`trio.testing.MockClock` drives it like any other trio timeout.  A
scope only catches its *own* cancellation (trio hands a cancellation that is
also visible from an enclosing cancelled scope on to that scope), so when the
call's scope reports ``cancelled_caught`` it was this deadline that passed and
the call raises :class:`DeadlineError`; any other cancellation leaves as the
:class:`trio.Cancelled` it was.

``None`` and ``0`` mean "no deadline" (Ioto uses 0), which costs nothing: the
hot paths skip the cancel scope entirely.
"""

from __future__ import annotations

import math

import trio

__all__ = ["Deadline", "check_deadline", "deadline_after"]

#: What the public API accepts as a deadline.
Deadline = float | int | None


def check_deadline(deadline: object, argument: str = "deadline") -> float:
    """Validate a deadline argument and return it as a float, ``inf`` for none.

    Raises :class:`TypeError` for anything that is not a real number or
    ``None``, and :class:`ValueError` for NaN, naming *argument*.
    """
    if deadline is None:
        return math.inf
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise TypeError(
            f"{argument} must be an absolute time on trio's clock (a number) or None, not {type(deadline).__name__}"
        )
    if deadline != deadline:
        raise ValueError(f"{argument} must be a time, not NaN")
    if deadline == 0:
        return math.inf
    return float(deadline)


def deadline_after(seconds: float) -> float:
    """Return the deadline *seconds* from now: ``trio.current_time() + seconds``.

    Ioto writes ``rGetTime() + 30 * 1000``; here that is ``deadline_after(30)``.
    Must be called from inside trio.

    The result is never exactly ``0``, which would mean "no deadline": at time
    0 (where :class:`trio.testing.MockClock` starts) ``deadline_after(0)`` is
    the largest time before 0 instead, so it is already due.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
    if seconds != seconds:
        raise ValueError("seconds must be a number of seconds, not NaN")
    deadline = trio.current_time() + seconds
    return deadline if deadline != 0 else math.nextafter(0.0, -1.0)
