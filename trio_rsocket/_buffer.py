"""The read buffer behind ``read_until`` and ``read_exactly``.

Theory of operation
-------------------
``read_until`` and ``read_exactly`` receive until the answer is complete and
keep what arrived beyond it; ``read`` and ``read_into`` drain those bytes
first.  :class:`ReadBuffer` is that store: a :class:`bytearray` (so an idle
connection pays for no extra object) with the few operations on it.

An answer is described by a *rule*, a function that looks at the buffer and
returns the length of the complete answer at its head, ``-1`` for "need
more", or raises to refuse (consuming nothing): :meth:`ReadBuffer.exactly`
and :meth:`ReadBuffer.through`.  Each receive asks for at most one read's
worth (:data:`CHUNK`): ``recv(n)`` allocates *n* bytes before it knows what is
there, so asking for all of a large ``read_exactly`` at once would cost a
huge allocation per arrival.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from ._errors import DelimiterNotFoundError, IncompleteReadError

__all__ = ["CHUNK", "ReadBuffer", "Rule"]

#: The most one receive of a buffered read asks for (a plain read's default).
CHUNK: Final = 65536

#: Length of the complete answer at the head of the buffer, or -1.
Rule = Callable[[], int]


class ReadBuffer(bytearray):
    """Bytes received and not yet returned to the program."""

    __slots__ = ()

    async def take(self, max_bytes: int) -> bytes:
        """Up to *max_bytes* from the head.  Done at once, so a cancellable
        checkpoint before (nothing taken yet) and a schedule point after
        (trio's sandwich): a ``close`` from another fiber cannot come between
        taking the bytes and returning them."""
        await checkpoint_if_cancelled()
        data = bytes(self[:max_bytes])
        del self[:max_bytes]
        await cancel_shielded_checkpoint()
        return data

    def exactly(self, count: int) -> Rule:
        """The rule of ``read_exactly(count)``."""
        return lambda: count if len(self) >= count else -1

    def through(self, delimiter: bytes, max_bytes: int) -> Rule:
        """The rule of ``read_until(delimiter, max_bytes)``: each arrival is
        searched once; no delimiter within *max_bytes* is refused."""
        searched = 0

        def rule() -> int:
            nonlocal searched
            found = self.find(delimiter, searched, max_bytes)
            if found >= 0:
                return found + len(delimiter)
            if len(self) >= max_bytes:
                raise DelimiterNotFoundError(f"no delimiter {delimiter!r} within max_bytes={max_bytes}", max_bytes)
            searched = max(0, len(self) - len(delimiter) + 1)
            return -1

        return rule

    async def fill(
        self, receive: Callable[[int], Awaitable[bytes]], rule: Rule, want: int, expected: int | None
    ) -> bytes:
        """Receive into the buffer until *rule* gives a length, then take that
        many bytes.  *want* bounds the answer; *expected* goes into the
        :class:`IncompleteReadError` raised at end of file (``partial``: what
        arrived, consumed)."""
        await checkpoint_if_cancelled()
        end = rule()
        while end < 0:
            data = await receive(max(1, min(want - len(self), CHUNK)))
            if not data:
                partial = bytes(self)
                self.clear()
                raise IncompleteReadError(partial, expected)
            self += data
            end = rule()
        answer = bytes(self[:end])
        del self[:end]
        await cancel_shielded_checkpoint()
        return answer
