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

An int can be larger than any float; such a deadline is ``inf`` (or ``-inf``
below float range), which is what it means and what trio itself accepts,
instead of the :class:`OverflowError` that ``float()`` would raise.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from types import TracebackType

import trio

from ._runtime import outside_trio

__all__ = [
    "NO_DEADLINE",
    "Deadline",
    "DeadlineScope",
    "as_float",
    "check_deadline",
    "deadline_after",
    "deadline_scope",
]

#: What the public API accepts as a deadline.
Deadline = float | int | None


def check_deadline(deadline: object, argument: str = "deadline") -> float:
    """Validate a deadline argument and return it as a float, ``inf`` for none.

    An int past float range is ``inf`` (``-inf`` if negative, already due):
    a time no float can reach never comes.

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
    return as_float(deadline)


def deadline_after(seconds: float) -> float:
    """Return the deadline *seconds* from now: ``trio.current_time() + seconds``.

    Ioto writes ``rGetTime() + 30 * 1000``; here that is ``deadline_after(30)``.
    Must be called from inside trio (:class:`RuntimeError` saying so elsewhere).

    The result is never exactly ``0``, which would mean "no deadline": at time
    0 (where :class:`trio.testing.MockClock` starts) ``deadline_after(0)`` is
    the largest time before 0 instead, so it is already due.  An int past
    float range gives ``inf`` (``-inf`` if negative), as every ``deadline``
    argument reads it.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
    if seconds != seconds:
        raise ValueError("seconds must be a number of seconds, not NaN")
    try:
        now = trio.current_time()
    except RuntimeError:
        raise outside_trio("deadline_after()") from None
    deadline = now + as_float(seconds)
    return deadline if deadline != 0 else math.nextafter(0.0, -1.0)


class DeadlineScope:
    """Run a block under one call's deadline; the deadline's own expiry
    becomes the call's error.

    ``with DeadlineScope(limit, expired): ...`` runs the block in a
    :class:`trio.CancelScope` whose deadline is *limit*.  If *that* deadline
    stops the block, the scope raises ``expired()`` (a
    :class:`~trio_rsocket.DeadlineError` the caller builds, so it can say how
    far the call got); a cancellation from an enclosing scope passes through
    as the :class:`trio.Cancelled` it is.  Enter and exit are plain methods:
    a fiber waiting inside holds no frame for it.
    """

    __slots__ = ("_expired", "_scope")

    def __init__(self, limit: float, expired: Callable[[], BaseException]) -> None:
        self._scope = trio.CancelScope(deadline=limit)
        self._expired = expired

    def __enter__(self) -> None:
        self._scope.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        handled = self._scope.__exit__(kind, value, traceback)
        if self._scope.cancelled_caught:
            raise self._expired() from None
        return handled


#: The scope of a call without a deadline: it does nothing.
NO_DEADLINE: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def deadline_scope(
    deadline: object, expired: Callable[[], BaseException]
) -> DeadlineScope | contextlib.AbstractContextManager[None]:
    """The scope for a call's *deadline* argument (validated here): a
    :class:`DeadlineScope`, or a scope that does nothing when there is no
    deadline (``None``, ``0``), so that case costs no cancel scope."""
    limit = check_deadline(deadline)
    if limit == math.inf:
        return NO_DEADLINE
    return DeadlineScope(limit, expired)


def as_float(number: int | float) -> float:
    """*number* as a float; an int past float range as ``inf`` or ``-inf``
    (what such a time or duration means, where ``float()`` would raise
    :class:`OverflowError`)."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf
