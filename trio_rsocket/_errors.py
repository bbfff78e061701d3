"""The exception hierarchy.

Every error the library raises on its own account is an :class:`RSocketError`
(an :class:`OSError`), and its message is what :meth:`RSocket.get_error`
returns afterwards.  Errors about the *state of a stream* follow trio's
conventions instead, so that trio libraries interoperate: a peer reset or
broken pipe is :class:`trio.BrokenResourceError`, use after a local close is
:class:`trio.ClosedResourceError`, and two fibers reading (or writing) at once
is :class:`trio.BusyResourceError`.
"""

from __future__ import annotations

import errno as errno_codes
from typing import Final

import trio

__all__ = [
    "ConnectError",
    "DeadlineError",
    "DelimiterNotFoundError",
    "FileReadError",
    "IncompleteReadError",
    "ListenError",
    "RSocketError",
    "TLSError",
    "file_error",
    "stream_error",
]

# errnos that mean "this descriptor is gone": trio's convention turns them into
# ClosedResourceError; every other OSError on an open stream means the peer or
# the network broke it.
_CLOSED_ERRNOS: Final = frozenset({errno_codes.EBADF, errno_codes.ENOTSOCK})


def stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The one place that turns an OSError on an open connection into trio's
    error, keeping the OS words: a descriptor that is gone is
    :class:`trio.ClosedResourceError`, anything else (a reset, a broken pipe)
    :class:`trio.BrokenResourceError`."""
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc.strerror or exc}")


class RSocketError(OSError):
    """Base class of trio_rsocket's own errors.

    ``str(error)`` is the message alone (no ``[Errno N]`` prefix); the OS error
    number, when there is one, is kept in :attr:`~OSError.errno`.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        if errno is None:
            super().__init__(message)
        else:
            super().__init__(errno, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.errno))


class ConnectError(RSocketError):
    """The host could not be resolved or no address of it accepted the connection.

    Messages follow Ioto's: ``"Cannot find address of host:port"`` and
    ``"Cannot connect socket to host:port"``; :attr:`~OSError.errno` is the
    OS error of the last attempt.
    """


class ListenError(RSocketError):
    """The listening socket could not be bound or put into listening state."""


class TLSError(RSocketError):
    """A TLS handshake or TLS configuration failed; the message says why in words."""


class DeadlineError(RSocketError, TimeoutError, trio.TooSlowError):
    """The call's own deadline passed before it could complete.

    It is also a :class:`TimeoutError` and a :class:`trio.TooSlowError`, so
    code written for either catches it.  Cancellation by an *enclosing* cancel
    scope is never turned into this error: :class:`trio.Cancelled` passes
    through unchanged.

    Attributes:
      bytes_written: for :meth:`RSocket.write`, :meth:`RSocket.write_fds`
        and :meth:`RSocket.send_file`, how many bytes were handed to the
        kernel (TLS: in whole records, the bytes the peer can decrypt) before
        the deadline; ``0`` for every other call.  Like
        :attr:`BlockingIOError.characters_written`.
    """

    def __init__(self, message: str, bytes_written: int = 0) -> None:
        super().__init__(message)
        self.bytes_written = bytes_written

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.bytes_written))


class FileReadError(RSocketError):
    """:meth:`RSocket.send_file` could not read the *file*: the file is at
    fault, not the connection, which stays open and usable.

    The message names the file and gives the OS reason (``"Cannot read
    'data.bin' to send it: Input/output error"``); :attr:`~OSError.errno` is
    the OS error.

    Attributes:
      bytes_written: how many bytes of the file had been handed to the kernel
        (TLS: written through TLS) before the read failed, as
        :attr:`DeadlineError.bytes_written` counts them.
    """

    def __init__(self, message: str, errno: int | None = None, bytes_written: int = 0) -> None:
        super().__init__(message, errno)
        self.bytes_written = bytes_written

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.errno, self.bytes_written))


def file_error(file: str, exc: OSError, bytes_written: int) -> FileReadError:
    """The error for *exc*, met reading *file* (its name in words) to send it."""
    return FileReadError(f"Cannot read {file} to send it: {exc.strerror or exc}", exc.errno, bytes_written)


class IncompleteReadError(RSocketError, EOFError):
    """End of file arrived before :meth:`RSocket.read_exactly` or
    :meth:`RSocket.read_until` had what it needed.

    Attributes:
      partial: the bytes that did arrive before end of file (consumed).
      expected: the number of bytes asked for, or ``None`` for ``read_until``.
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        wanted = "the delimiter" if expected is None else f"{expected} bytes"
        super().__init__(f"End of file after {len(partial)} bytes, before {wanted}")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.partial, self.expected))


class DelimiterNotFoundError(RSocketError, ValueError):
    """:meth:`RSocket.read_until` found no delimiter within ``max_bytes``.

    Nothing was consumed: the bytes stay buffered for the next read.  It is a
    :class:`ValueError` too, so code that caught the ``ValueError`` raised
    before keeps working.  (anyio's ``DelimiterNotFound``, raised in the same
    case, is a plain :class:`Exception`: code that catches that catches this.)

    Attributes:
      max_bytes: the bound that was reached.
    """

    def __init__(self, message: str, max_bytes: int) -> None:
        super().__init__(message)
        self.max_bytes = max_bytes

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message, self.max_bytes))
