"""Ioto's C names over trio_rsocket, so code from the Ioto docs ports line by line.

::

    import trio_rsocket
    from trio_rsocket.ioto import *

    async def main(arg):
        sock = rAllocSocket()
        if await rConnectSocket(sock, "127.0.0.1", 4100, rGetTime() + 30 * 1000) < 0:
            print("cannot connect:", rGetSocketError(sock))
        rFreeSocket(sock)

    trio_rsocket.run(main, None)          # rInit(main, 0); rServiceEvents();

Theory of operation
-------------------
Each function is a thin layer over the public API (:class:`~trio_rsocket.RSocket` methods and
``trio_rsocket.*`` functions) and holds no socket logic of its own.  What it
adds is C's calling conventions:

* **Return codes.**  Calls return ``0`` or a count on success and a negative
  ``R_ERR_*`` code (Ioto's values) on failure; the message is kept for
  :func:`rGetSocketError`.  Exceptions are turned into codes in one place,
  the same way for every call.  :class:`trio.Cancelled` is never caught: cancellation
  passes through every call unchanged.  Calling a fiber or listen function
  outside a runtime raises :class:`RuntimeError`, as the API does (in C that
  is undefined behaviour: Ioto's socket calls must run in a fiber).
* **Milliseconds.**  Times are milliseconds on trio's clock: ``rGetTime() +
  30 * 1000`` is a deadline 30 s away, ``0`` is no deadline.
* **NULL.**  ``None`` where C takes a socket pointer behaves as Ioto does with
  ``NULL``: tests say "closed"/"EOF", I/O returns ``R_ERR_BAD_ARGS``, close and
  free do nothing.
* **Out parameters** become extra return values after the status:
  ``rc, ip, port = rGetSocketAddr(sock)``.

Every ``async`` function here is a trio checkpoint, also when it fails at once,
so a C-style retry loop never starves other fibers.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import ssl
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Final, ParamSpec, TypeVar, cast

import trio
from trio.lowlevel import checkpoint

from . import (
    CertSource,
    DeadlineError,
    Fiber,
    RSocket,
    RSocketError,
    TLSError,
    current_fiber,
    get_socket_limit,
    resume_fiber,
    set_default_certs,
    set_default_ciphers,
    set_default_verify,
    set_socket_limit,
    spawn_fiber,
    stop,
    suspend_fiber,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "INVALID_SOCKET",
    "ME_BUFSIZE",
    "R_ERR",
    "R_ERR_ABORTED",
    "R_ERR_ALREADY_EXISTS",
    "R_ERR_BAD_ACK",
    "R_ERR_BAD_ARGS",
    "R_ERR_BAD_DATA",
    "R_ERR_BAD_FORMAT",
    "R_ERR_BAD_HANDLE",
    "R_ERR_BAD_NULL",
    "R_ERR_BAD_REQUEST",
    "R_ERR_BAD_RESPONSE",
    "R_ERR_BAD_SESSION",
    "R_ERR_BAD_STATE",
    "R_ERR_BAD_SYNTAX",
    "R_ERR_BAD_TYPE",
    "R_ERR_BAD_VALUE",
    "R_ERR_BASE",
    "R_ERR_BUSY",
    "R_ERR_CANT_ACCESS",
    "R_ERR_CANT_ALLOCATE",
    "R_ERR_CANT_COMPLETE",
    "R_ERR_CANT_CONNECT",
    "R_ERR_CANT_CREATE",
    "R_ERR_CANT_DELETE",
    "R_ERR_CANT_FIND",
    "R_ERR_CANT_INITIALIZE",
    "R_ERR_CANT_LOAD",
    "R_ERR_CANT_OPEN",
    "R_ERR_CANT_READ",
    "R_ERR_CANT_WRITE",
    "R_ERR_DELETED",
    "R_ERR_MAX",
    "R_ERR_MEMORY",
    "R_ERR_NETWORK",
    "R_ERR_NOT_CONNECTED",
    "R_ERR_NOT_INITIALIZED",
    "R_ERR_NOT_READY",
    "R_ERR_OK",
    "R_ERR_READ_ONLY",
    "R_ERR_TIMEOUT",
    "R_ERR_TOO_MANY",
    "R_ERR_WONT_FIT",
    "R_ERR_WOULD_BLOCK",
    "R_READABLE",
    "R_WRITABLE",
    "SOCKET_ERROR",
    "rAllocSocket",
    "rCloseSocket",
    "rConnectSocket",
    "rDisconnectSocket",
    "rFreeSocket",
    "rFreeTlsSession",
    "rGetFiber",
    "rGetSocketAddr",
    "rGetSocketError",
    "rGetSocketHandle",
    "rGetSocketLimit",
    "rGetTicks",
    "rGetTime",
    "rGetTlsSession",
    "rIsSocketClosed",
    "rIsSocketConnected",
    "rIsSocketEof",
    "rIsSocketSecure",
    "rListenSocket",
    "rReadSocket",
    "rResetSocket",
    "rResumeFiber",
    "rSendFile",
    "rSetSocketCerts",
    "rSetSocketCiphers",
    "rSetSocketDefaultCerts",
    "rSetSocketDefaultCiphers",
    "rSetSocketDefaultVerify",
    "rSetSocketLimit",
    "rSetSocketLinger",
    "rSetSocketNoDelay",
    "rSetSocketVerify",
    "rSetSocketWaitMask",
    "rSetTlsSession",
    "rSleep",
    "rSpawnFiber",
    "rStop",
    "rUpgradeTls",
    "rWriteSocket",
    "rYieldFiber",
]

# ----------------------------------------------------------------------------
# Ioto's error codes: include/r.h, "Standard errors. All errors are negative
# and zero is success."  The values are Ioto's, so codes compare and print the
# same as in C.

R_ERR_OK: Final = 0
R_ERR_BASE: Final = -1
R_ERR: Final = -2
R_ERR_ABORTED: Final = -3
R_ERR_ALREADY_EXISTS: Final = -4
R_ERR_BAD_ACK: Final = -5
R_ERR_BAD_ARGS: Final = -6
R_ERR_BAD_DATA: Final = -7
R_ERR_BAD_FORMAT: Final = -8
R_ERR_BAD_HANDLE: Final = -9
R_ERR_BAD_NULL: Final = -10
R_ERR_BAD_REQUEST: Final = -11
R_ERR_BAD_RESPONSE: Final = -12
R_ERR_BAD_SESSION: Final = -13
R_ERR_BAD_STATE: Final = -14
R_ERR_BAD_SYNTAX: Final = -15
R_ERR_BAD_TYPE: Final = -16
R_ERR_BAD_VALUE: Final = -17
R_ERR_BUSY: Final = -18
R_ERR_CANT_ACCESS: Final = -19
R_ERR_CANT_ALLOCATE: Final = -20
R_ERR_CANT_COMPLETE: Final = -21
R_ERR_CANT_CONNECT: Final = -22
R_ERR_CANT_CREATE: Final = -23
R_ERR_CANT_DELETE: Final = -24
R_ERR_CANT_FIND: Final = -25
R_ERR_CANT_INITIALIZE: Final = -26
R_ERR_CANT_LOAD: Final = -27
R_ERR_CANT_OPEN: Final = -28
R_ERR_CANT_READ: Final = -29
R_ERR_CANT_WRITE: Final = -30
R_ERR_DELETED: Final = -31
R_ERR_MEMORY: Final = -32
R_ERR_NETWORK: Final = -33
R_ERR_NOT_CONNECTED: Final = -34
R_ERR_NOT_INITIALIZED: Final = -35
R_ERR_NOT_READY: Final = -36
R_ERR_READ_ONLY: Final = -37
R_ERR_TIMEOUT: Final = -38
R_ERR_TOO_MANY: Final = -39
R_ERR_WONT_FIT: Final = -40
R_ERR_WOULD_BLOCK: Final = -41
R_ERR_MAX: Final = -42

#: ``rGetSocketHandle`` of a socket with no OS socket (Ioto's osdep.h).
INVALID_SOCKET: Final = -1
#: Ioto's osdep.h name for -1, which C code compares some results with.
SOCKET_ERROR: Final = -1
#: Ioto's default I/O buffer size, for ``bytearray(ME_BUFSIZE)`` read buffers.
ME_BUFSIZE: Final = 4096
#: :func:`rSetSocketWaitMask`: wait until the socket is readable (Ioto's value).
R_READABLE: Final = 0x2
#: :func:`rSetSocketWaitMask`: wait until the socket is writable (Ioto's value).
R_WRITABLE: Final = 0x4

_logger = logging.getLogger("trio_rsocket")

# The message of the last failed call on each socket, for rGetSocketError.
# RSocket.get_error() records the library's own errors; this also keeps those
# that trio's conventions raise without a record (use after close, bad
# arguments).  Weak, so a socket dropped without rFreeSocket is not kept alive.
_errors: weakref.WeakKeyDictionary[RSocket, str] = weakref.WeakKeyDictionary()

# ----------------------------------------------------------------------------
# C's calling convention, in one place
#
# Every function that returns a code is written for success and wears
# @_c_call(its own failure code): the decorator answers a None socket, turns
# the exceptions a call may meet into codes, keeps the message and makes a
# failed async call a checkpoint.  So the codes cannot drift apart, and
# tests/test_ioto.py holds each function to the codes its docstring names.

# What a call can fail with and still return a code.  Everything else is a bug
# or a missing runtime and propagates; trio.Cancelled is a BaseException and
# is never among these.
_EXPECTED: Final = (
    OSError,  # RSocketError and its subclasses, and the OS's own
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.BusyResourceError,
    TypeError,  # bad arguments: the API refuses them before any I/O
    ValueError,
)

# Failures that have a code of their own whatever the call, looked at first
# and in this order: a DeadlineError is an OSError too, and a
# DelimiterNotFoundError a ValueError.
_SHARED_CODES: Final[tuple[tuple[type[Exception], int], ...]] = (
    (DeadlineError, R_ERR_TIMEOUT),
    (TypeError, R_ERR_BAD_ARGS),
    (ValueError, R_ERR_BAD_ARGS),
    (trio.BusyResourceError, R_ERR_BUSY),
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _c_call(
    code: int,
    codes: Mapping[type[Exception], int] | None = None,
    *,
    takes_socket: bool = True,
    out: tuple[object, ...] = (),
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Give an Ioto function C's calling convention: the one place that does.

    The function is written for success: it calls the API and returns what C
    returns.  The decorator adds, the same way for every call:

    * **NULL.**  If the function *takes_socket* (its first argument) and that
      is ``None``, the function is not called and returns ``R_ERR_BAD_ARGS``,
      recorded nowhere (there is no socket).  Its body starts with ``assert
      sock is not None``, which only tells the type checker so.
    * **Codes.**  An exception in ``_EXPECTED`` becomes a negative code:
      ``_SHARED_CODES`` first (a passed deadline, bad arguments, a busy
      socket), then the first class in *codes* that matches, else *code*:
      the call's own kind of failure (``R_ERR_CANT_READ`` for a read, ...).
      The message is kept for :func:`rGetSocketError` and logged at debug
      level, as Ioto's ``rSetSocketError`` does.
    * **Out parameters.**  With *out*, a failure returns ``(code, *out)``.
    * **Checkpoint.**  An ``async`` function is a checkpoint when it fails
      too, also at once, so a C-style retry loop never starves other fibers.

    Arguments that do not fit the signature (one left out, say) are a bug in
    the caller, not a bad value: they raise :class:`TypeError` as for any
    function.  :func:`functools.wraps` keeps the function's own signature and
    docstring for ``help()`` and Sphinx; the type keeps it for type checkers.
    """
    by_class = (*_SHARED_CODES, *(codes or {}).items())

    def decorate(call: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(call)
        first = next(iter(signature.parameters), "")

        def socket_in(args: Any, kwargs: Any) -> object:
            """The socket argument, by position or name; None for a function without one."""
            return (args[0] if args else kwargs.get(first)) if takes_socket else None

        def failed(exc: Exception | None, sock: object, args: Any, kwargs: Any) -> Any:
            """What the call returns for *exc*, or for a NULL socket (*exc* None)."""
            signature.bind(*args, **kwargs)  # a call that does not fit raises TypeError
            if exc is None:
                result, message = R_ERR_BAD_ARGS, "socket is None"
            else:
                result = next((value for kind, value in by_class if isinstance(exc, kind)), code)
                message = str(exc) or type(exc).__name__
                if isinstance(sock, RSocket):
                    _errors[sock] = message
            _logger.debug("ioto: %s (%d)", message, result)
            return (result, *out) if out else result

        if inspect.iscoroutinefunction(call):
            call_async = cast(Callable[_P, Awaitable[Any]], call)

            @functools.wraps(call)
            async def checkpointed(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                sock = socket_in(args, kwargs)
                if takes_socket and sock is None:
                    await checkpoint()
                    return failed(None, None, args, kwargs)
                try:
                    return await call_async(*args, **kwargs)
                except _EXPECTED as exc:
                    await checkpoint()
                    return failed(exc, sock, args, kwargs)

            return cast(Callable[_P, _R], checkpointed)

        @functools.wraps(call)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            sock = socket_in(args, kwargs)
            if takes_socket and sock is None:
                return failed(None, None, args, kwargs)
            try:
                return call(*args, **kwargs)
            except _EXPECTED as exc:
                return failed(exc, sock, args, kwargs)

        return wrapper

    return decorate


def _seconds(deadline: object) -> Any:
    """An Ioto deadline (milliseconds on trio's clock, 0 for none) in the API's
    seconds.  Anything that is not a number is passed on for the API to refuse
    with a message that names the argument.  An int past float range is
    ``inf`` (``-inf`` if negative), as the API reads one in seconds."""
    if isinstance(deadline, int | float) and not isinstance(deadline, bool):
        try:
            return deadline / 1000
        except OverflowError:
            return math.inf if deadline > 0 else -math.inf
    return deadline


def _span(buf: object, bufsize: object, smallest: int) -> memoryview:
    """The first *bufsize* bytes of *buf*, without a copy.

    C trusts the caller's size; here a size past the end of the buffer is
    refused (ValueError) instead of silently cut short.
    """
    if isinstance(bufsize, bool) or not isinstance(bufsize, int):
        raise TypeError(f"bufsize must be an int, not {type(bufsize).__name__}")
    if isinstance(buf, str):
        raise TypeError("buf must be bytes-like, not str: encode it first")
    try:
        view = memoryview(buf)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"buf must be a bytes-like object, not {type(buf).__name__}") from None
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    if not smallest <= bufsize <= view.nbytes:
        raise ValueError(f"bufsize must be in {smallest}..{view.nbytes} (the size of buf), not {bufsize}")
    return view[:bufsize]


def _c_bool(value: object) -> Any:
    """C's int flags (``1``, ``0``) as the API's bools; anything else is passed
    on for the API to refuse."""
    if isinstance(value, int):
        return bool(value)
    return value


def _waits(sock: RSocket, mask: object) -> list[Callable[[Any], Awaitable[None]]]:
    """The waits a C wait mask names: ``sock.wait_readable`` for
    ``R_READABLE``, ``sock.wait_writable`` for ``R_WRITABLE``.  A mask with
    neither bit, or with any other bit, is refused (ValueError)."""
    if isinstance(mask, bool) or not isinstance(mask, int):
        raise TypeError(f"mask must be an int (R_READABLE, R_WRITABLE or both), not {type(mask).__name__}")
    if not mask & (R_READABLE | R_WRITABLE) or mask & ~(R_READABLE | R_WRITABLE):
        raise ValueError(f"mask must be R_READABLE (0x2), R_WRITABLE (0x4) or both, not {mask:#x}")
    waits: list[Callable[[Any], Awaitable[None]]] = []
    if mask & R_READABLE:
        waits.append(sock.wait_readable)
    if mask & R_WRITABLE:
        waits.append(sock.wait_writable)
    return waits


async def _first_of(waits: list[Callable[[Any], Awaitable[None]]], deadline: object) -> None:
    """Run the *waits* side by side until the first one ends, and end as it
    did (returning, or raising what it raised); the others are cancelled.
    Ioto arms one wait for both events and resumes the fiber on the first."""
    first: list[Exception | None] = []
    async with trio.open_nursery() as nursery:

        async def one(wait: Callable[[Any], Awaitable[None]]) -> None:
            try:
                await wait(deadline)
            except _EXPECTED as exc:
                first.append(exc)
            else:
                first.append(None)
            nursery.cancel_scope.cancel()

        for wait in waits:
            nursery.start_soon(one, wait)
    if first[0] is not None:
        raise first[0]


# ----------------------------------------------------------------------------
# Sockets


def rAllocSocket() -> RSocket:
    """Allocate an unconnected socket: ``RSocket()`` (Ioto's ``rAllocSocket``).

    Its handle is ``INVALID_SOCKET`` (-1); it is neither secure nor at EOF.
    """
    return RSocket()


def rFreeSocket(sock: RSocket | None) -> None:
    """Close *sock* and forget its error message: ``sock.close()`` (``rFreeSocket``).

    Idempotent; ``None`` is ignored.  On a listening socket this stops
    accepting and frees the port; handlers already running go on.
    """
    if sock is None:
        return
    sock.close()
    _errors.pop(sock, None)


def rCloseSocket(sock: RSocket | None) -> None:
    """Close *sock* now: ``sock.close()`` (``rCloseSocket``).

    Synchronous and idempotent; fibers blocked on the socket wake and their
    calls fail.  Afterwards :func:`rIsSocketClosed` and :func:`rIsSocketEof`
    are true and the handle is -1.  A TLS socket closes without close_notify
    (``await sock.aclose()`` sends one).  ``None`` is ignored.
    """
    if sock is not None:
        sock.close()


def rDisconnectSocket(sock: RSocket | None) -> None:
    """Shut both directions down, keeping the handle: ``sock.disconnect()``
    (``rDisconnectSocket``).  ``None`` is ignored."""
    if sock is not None:
        sock.disconnect()


def rResetSocket(sock: RSocket | None) -> None:
    """Close *sock* and clear its state so it can connect again: ``sock.reset()``
    (``rResetSocket``).  ``None`` is ignored."""
    if sock is not None:
        _errors.pop(sock, None)
        sock.reset()


@_c_call(R_ERR_CANT_CONNECT)
async def rConnectSocket(sock: RSocket | None, host: str, port: int, deadline: float = 0) -> int:
    """Connect to *host*:*port* before *deadline* (ms on trio's clock, 0 for none):
    ``await sock.connect(host, port, deadline)`` (``rConnectSocket``).

    Returns 0, or ``R_ERR_CANT_CONNECT`` (no address accepted, the name does
    not resolve, the TLS handshake failed), ``R_ERR_TIMEOUT`` (the deadline
    passed) or ``R_ERR_BAD_ARGS`` (empty host, port outside 1..65535, socket
    ``None``).  The message is in :func:`rGetSocketError`.
    """
    assert sock is not None
    _errors.pop(sock, None)
    await sock.connect(host, port, _seconds(deadline))
    return 0


@_c_call(R_ERR_CANT_OPEN, {TLSError: R_ERR_CANT_INITIALIZE})
async def rListenSocket(
    sock: RSocket | None,
    host: str | None,
    port: int,
    handler: Callable[[Any, RSocket], Awaitable[object]],
    data: object = None,
) -> int:
    """Listen on *host*:*port* and run ``await handler(data, client)`` in a new
    fiber for each connection: ``await sock.listen(host, port, handler, data)``
    (``rListenSocket``).

    *host* ``None`` listens on all interfaces; port 0 picks a free port
    (:func:`rGetSocketAddr` says which).  The accept loop runs in the current
    runtime, and each connection's socket is closed when its handler returns.
    Returns 0, or ``R_ERR_CANT_OPEN`` (cannot bind or listen: the port is in
    use, ...), ``R_ERR_CANT_INITIALIZE`` (bad TLS settings) or
    ``R_ERR_BAD_ARGS`` (handler not callable, bad port, socket ``None``).

    Raises :class:`RuntimeError` outside a runtime, as the API does.
    """
    assert sock is not None
    await sock.listen(host, port, handler, data)
    return 0


@_c_call(R_ERR_CANT_READ)
async def rReadSocket(sock: RSocket | None, buf: Buffer, bufsize: int, deadline: float = 0) -> int:
    """Read up to *bufsize* bytes into the writable buffer *buf* (a
    ``bytearray``, say) as soon as any are available, before *deadline* (ms on
    trio's clock, 0 for none): ``await sock.read_into(memoryview(buf)[:bufsize],
    deadline)`` (``rReadSocket``).

    Returns the count read.  At end of file it returns ``R_ERR_CANT_READ``, as
    Ioto does, and :func:`rIsSocketEof` is then true: that tells EOF from an
    error.  Other failures: ``R_ERR_CANT_READ`` (connection reset, socket
    closed or never connected), ``R_ERR_TIMEOUT`` (nothing arrived before the
    deadline; nothing is lost, a later read returns what comes),
    ``R_ERR_BUSY`` (another fiber is reading) and ``R_ERR_BAD_ARGS`` (*buf*
    not writable, *bufsize* outside 1..len(buf), socket ``None``).
    """
    assert sock is not None
    count = await sock.read_into(_span(buf, bufsize, 1), _seconds(deadline))
    return count if count else R_ERR_CANT_READ


@_c_call(R_ERR_CANT_WRITE)
async def rWriteSocket(sock: RSocket | None, buf: Buffer, bufsize: int, deadline: float = 0) -> int:
    """Write the first *bufsize* bytes of *buf* (bytes-like) before *deadline*
    (ms on trio's clock, 0 for none): ``await sock.write(memoryview(buf)[:bufsize],
    deadline)`` (``rWriteSocket``).

    Returns *bufsize*: the fiber waits until everything is handed over, as
    Ioto's ``rWriteSocket`` does.  Failures: ``R_ERR_CANT_WRITE`` (socket
    closed or never connected, peer gone), ``R_ERR_TIMEOUT`` (the deadline
    passed; how much went out is lost, as in C: use ``sock.write`` to learn
    it from ``DeadlineError.bytes_written``), ``R_ERR_BUSY`` (another fiber is
    writing) and ``R_ERR_BAD_ARGS`` (*buf* a ``str`` or not bytes-like,
    *bufsize* outside 0..len(buf), socket ``None``).
    """
    assert sock is not None
    return await sock.write(_span(buf, bufsize, 0), _seconds(deadline))


@_c_call(R_ERR_CANT_WRITE)
async def rSendFile(sock: RSocket | None, fd: int | BinaryIO, offset: int, len: int | None, deadline: float = 0) -> int:
    """Send *len* bytes of the file *fd* from *offset* before *deadline* (ms on
    trio's clock, 0 for none): ``await sock.send_file(fd, offset, len,
    deadline)`` (``rSendFile``).

    *fd* is an open file descriptor (an ``int``, as in C) or a binary file
    object with ``fileno()``.  The file's own position is neither used nor
    moved.  Plain TCP sends with the zero-copy ``sendfile()`` as Ioto does;
    unlike Ioto, a TLS socket works too (the file is read in chunks and
    written through TLS).  *deadline* is not in Ioto's signature, which waits
    for ever; leave it out and the C call ports unchanged.  *len* ``None``
    (no C counterpart) sends to the end of the file.

    Returns the count sent: *len*, or fewer only when the file ends first
    (``0`` for *offset* at or past the end).  Failures: ``R_ERR_CANT_WRITE``
    (socket closed or never connected, peer gone), ``R_ERR_TIMEOUT`` (the
    deadline passed; how much went out is lost, as for :func:`rWriteSocket`:
    ``sock.send_file`` tells it in ``DeadlineError.bytes_written``),
    ``R_ERR_BUSY`` (another fiber is writing) and ``R_ERR_BAD_ARGS``
    (negative *offset* or *len*, *fd* not an open regular file, socket
    ``None``), the last before any I/O.
    """
    assert sock is not None
    return await sock.send_file(fd, offset, len, _seconds(deadline))


@_c_call(R_ERR_CANT_COMPLETE)
async def rSetSocketWaitMask(sock: RSocket | None, mask: int, deadline: float = 0) -> int:
    """Wait until *sock* is readable (``R_READABLE``), writable
    (``R_WRITABLE``) or either (both bits), before *deadline* (ms on trio's
    clock, 0 for none): ``await sock.wait_readable(deadline)`` /
    ``await sock.wait_writable(deadline)`` (``rSetSocketWaitMask``).

    Ioto's call is ``void``: it arms the socket's wait for the mask and
    returns, and the event later resumes a fiber parked in ``rWaitForIO`` or
    starts the wait handler.  trio's scheduler owns the waiting here, so this
    is the arm and the park in one: it returns when the first event of the
    mask happens, as Ioto's fiber resumes on the first.  Readable means a read
    would not wait: bytes are buffered or have arrived, or end of file.

    Returns 0, or ``R_ERR_TIMEOUT`` (the deadline passed first),
    ``R_ERR_CANT_COMPLETE`` (socket closed, never connected, or broken),
    ``R_ERR_BUSY`` (another fiber is reading, or writing) and
    ``R_ERR_BAD_ARGS`` (a mask without either bit or with any other bit,
    socket ``None``).
    """
    assert sock is not None
    waits = _waits(sock, mask)
    if len(waits) == 1:
        await waits[0](_seconds(deadline))
    else:
        await _first_of(waits, _seconds(deadline))
    return 0


def rIsSocketClosed(sock: RSocket | None) -> bool:
    """True after :func:`rCloseSocket`: ``sock.is_closed()`` (``rIsSocketClosed``).
    True for ``None``, as Ioto answers for NULL."""
    return sock.is_closed() if sock is not None else True


def rIsSocketEof(sock: RSocket | None) -> bool:
    """True once the peer's end of file was read, or after close:
    ``sock.is_eof()`` (``rIsSocketEof``).  True for ``None``."""
    return sock.is_eof() if sock is not None else True


def rIsSocketSecure(sock: RSocket | None) -> bool:
    """True if *sock* uses TLS: ``sock.is_secure()`` (``rIsSocketSecure``).
    False for ``None``."""
    return sock.is_secure() if sock is not None else False


def rIsSocketConnected(sock: RSocket | None) -> bool:
    """True while *sock* has a connection: ``sock.is_connected()``
    (``rIsSocketConnected``).  False for ``None``."""
    return sock.is_connected() if sock is not None else False


def rGetSocketHandle(sock: RSocket | None) -> int:
    """The OS file descriptor, or ``INVALID_SOCKET`` (-1):
    ``sock.get_handle()`` (``rGetSocketHandle``)."""
    return sock.get_handle() if sock is not None else INVALID_SOCKET


@_c_call(R_ERR_CANT_COMPLETE, out=("", 0))
def rGetSocketAddr(sock: RSocket | None) -> tuple[int, str, int]:
    """The local address: ``(0, ip, port)`` from ``sock.get_addr()``
    (``rGetSocketAddr(sock, ipbuf, ipbufLen, &port)``; the out parameters are
    returned after the status).

    IPv4-mapped IPv6 addresses are shown as dotted IPv4, as in Ioto.  On
    failure ``(R_ERR_CANT_COMPLETE, "", 0)`` (no OS socket), or
    ``(R_ERR_BAD_ARGS, "", 0)`` for ``None``.
    """
    assert sock is not None
    ip, port = sock.get_addr()
    return 0, ip, port


def rGetSocketError(sock: RSocket | None) -> str:
    """The message of the last failed call on *sock*, ``""`` if none
    (``rGetSocketError``).

    The message of a failed call made here, else ``sock.get_error()``.
    Cleared by :func:`rConnectSocket` and :func:`rResetSocket`.
    """
    if sock is None:
        return ""
    return _errors.get(sock) or sock.get_error()


@_c_call(R_ERR_BAD_ARGS)
def rSetSocketLinger(sock: RSocket | None, timeout: int) -> int:
    """Set SO_LINGER: close waits up to *timeout* seconds to deliver unsent data,
    ``0`` makes close reset the connection (RST): ``sock.set_linger(timeout)``
    (``rSetSocketLinger``).  Returns 0 or ``R_ERR_BAD_ARGS``."""
    assert sock is not None
    sock.set_linger(timeout)
    return 0


@_c_call(R_ERR_BAD_ARGS)
def rSetSocketNoDelay(sock: RSocket | None, enable: int) -> int:
    """Turn Nagle's algorithm off (true, the default here) or on:
    ``sock.set_no_delay(enable)`` (``rSetSocketNoDelay``).  Returns 0 or
    ``R_ERR_BAD_ARGS``."""
    assert sock is not None
    sock.set_no_delay(_c_bool(enable))
    return 0


# ----------------------------------------------------------------------------
# TLS


@_c_call(R_ERR_BAD_ARGS)
def rSetSocketCerts(
    sock: RSocket | None,
    key: CertSource | None,
    cert: CertSource | None,
    authority: CertSource | None,
    revoke: CertSource | None,
) -> int:
    """Configure TLS on *sock* and make it secure:
    ``sock.set_certs(key, cert, authority, revoke)`` (``rSetSocketCerts``).

    The order is the seed document's: private key, certificate, certificate
    authority, revocation list; each a PEM file path, PEM bytes or ``None``.
    (Ioto's current ``r.h`` puts the authority first:
    ``rSetSocketCerts(sp, ca, key, cert, revoke)``; reorder such calls.)
    Returns 0, or ``R_ERR_BAD_ARGS``.  The files are read when the socket
    connects or listens: a missing or unusable one makes
    :func:`rConnectSocket` return ``R_ERR_CANT_CONNECT`` and
    :func:`rListenSocket` ``R_ERR_CANT_INITIALIZE``, naming the file.
    """
    assert sock is not None
    sock.set_certs(key=key, cert=cert, authority=authority, revoke=revoke)
    return 0


@_c_call(R_ERR_BAD_ARGS)
def rSetSocketCiphers(sock: RSocket | None, ciphers: str | None) -> int:
    """Choose the TLS ciphers (an OpenSSL cipher string, ``,`` or ``:``
    separated): ``sock.set_ciphers(ciphers)`` (``rSetSocketCiphers``).
    Returns 0 or ``R_ERR_BAD_ARGS``; a list that selects no cipher fails at
    connect or listen time, as a bad certificate file does."""
    assert sock is not None
    sock.set_ciphers(ciphers)
    return 0


@_c_call(R_ERR_BAD_ARGS)
def rSetSocketVerify(sock: RSocket | None, verifyPeer: int, verifyIssuer: int) -> int:
    """Choose how the peer's certificate is checked:
    ``sock.set_verify(verifyPeer, verifyIssuer)`` (``rSetSocketVerify``).
    C's ``1``/``0`` are taken as true/false.  Returns 0 or ``R_ERR_BAD_ARGS``."""
    assert sock is not None
    sock.set_verify(_c_bool(verifyPeer), _c_bool(verifyIssuer))
    return 0


@_c_call(R_ERR_BAD_ARGS, takes_socket=False)
def rSetSocketDefaultCerts(
    key: CertSource | None,
    cert: CertSource | None,
    authority: CertSource | None,
    revoke: CertSource | None,
) -> int:
    """Set the certificates used by sockets that set none:
    ``trio_rsocket.set_default_certs(key, cert, authority, revoke)``
    (``rSetSocketDefaultCerts``; same order as :func:`rSetSocketCerts`).
    Returns 0 or ``R_ERR_BAD_ARGS`` (the message is logged: there is no
    socket to keep it); the files are read when a socket connects or listens."""
    set_default_certs(key=key, cert=cert, authority=authority, revoke=revoke)
    return 0


@_c_call(R_ERR_BAD_ARGS, takes_socket=False)
def rSetSocketDefaultCiphers(ciphers: str | None) -> int:
    """Set the ciphers used by sockets that set none:
    ``trio_rsocket.set_default_ciphers(ciphers)`` (``rSetSocketDefaultCiphers``).
    Returns 0 or ``R_ERR_BAD_ARGS``."""
    set_default_ciphers(ciphers)
    return 0


@_c_call(R_ERR_BAD_ARGS, takes_socket=False)
def rSetSocketDefaultVerify(verifyPeer: int, verifyIssuer: int) -> int:
    """Set the verification used by sockets that set none:
    ``trio_rsocket.set_default_verify(verifyPeer, verifyIssuer)``
    (``rSetSocketDefaultVerify``).  Returns 0 or ``R_ERR_BAD_ARGS``."""
    set_default_verify(_c_bool(verifyPeer), _c_bool(verifyIssuer))
    return 0


@_c_call(
    R_ERR_CANT_CONNECT,
    # A TLSError is a failed handshake; any other RSocketError, or a closed
    # socket, is a socket in the wrong state for an upgrade.
    {TLSError: R_ERR_CANT_CONNECT, RSocketError: R_ERR_BAD_STATE, trio.ClosedResourceError: R_ERR_BAD_STATE},
)
async def rUpgradeTls(sock: RSocket | None, peer: str | None, deadline: float = 0) -> int:
    """Turn the connected plain socket *sock* into TLS (STARTTLS) before
    *deadline* (ms on trio's clock, 0 for none): ``await
    sock.upgrade_tls(peer, deadline)`` (``rUpgradeTls``).

    Ioto's ``rUpgradeTls(tls, fd, peer, deadline)`` takes the socket's
    ``Rtls`` object and its descriptor; this takes the socket itself, whose
    TLS settings (:func:`rSetSocketCerts`, ... ; the module defaults
    otherwise) are used.  A socket that :func:`rConnectSocket` connected is
    the client and checks the server's certificate for *peer* (``None``: the
    host it connected to); one that :func:`rListenSocket` accepted is the
    server (*peer* ``None``), as Ioto's accepted sockets are.

    Returns 0, or ``R_ERR_CANT_CONNECT`` (the handshake failed, or bytes that
    came before the upgrade were waiting unread: plaintext must never pass
    for encrypted data; the socket is then closed), ``R_ERR_TIMEOUT`` (the
    deadline passed), ``R_ERR_BAD_STATE`` (already TLS, closed or not
    connected) and ``R_ERR_BAD_ARGS`` (*peer* not a ``str``, socket ``None``).
    """
    assert sock is not None
    await sock.upgrade_tls(peer, _seconds(deadline))
    return 0


def rGetTlsSession(sock: RSocket | None) -> ssl.SSLSession | None:
    """The TLS session of *sock*'s connection, to resume later with
    :func:`rSetTlsSession`: ``sock.get_tls_session()`` (``rGetTlsSession``).

    ``None`` when there is none: plain TCP, the server side, or TLS 1.3
    before the first read (the server sends its ticket after the handshake,
    and it arrives with data).  ``None`` for a ``None`` socket, as Ioto
    answers NULL.
    """
    return sock.get_tls_session() if sock is not None else None


@_c_call(R_ERR_BAD_ARGS)
def rSetTlsSession(sock: RSocket | None, session: ssl.SSLSession | None) -> int:
    """Offer *session* (from :func:`rGetTlsSession`) at the next
    :func:`rConnectSocket`, to resume it: ``sock.set_tls_session(session)``
    (``rSetTlsSession``); ``None`` offers none.

    Returns 0 or ``R_ERR_BAD_ARGS`` (*session* not an ``ssl.SSLSession``,
    socket ``None``).  Whether the server resumed it:
    ``sock.is_session_reused()``.
    """
    assert sock is not None
    sock.set_tls_session(session)
    return 0


def rFreeTlsSession(session: ssl.SSLSession | None) -> None:
    """Does nothing (``rFreeTlsSession``): Python frees a session when the
    last reference to it goes.  Kept so that C code ports line by line."""


def rGetSocketLimit() -> int:
    """How many server-side sockets may be alive at once:
    ``trio_rsocket.get_socket_limit()`` (``rGetSocketLimit``)."""
    return get_socket_limit()


@_c_call(R_ERR_BAD_ARGS, takes_socket=False)
def rSetSocketLimit(limit: int) -> int:
    """Bound the server-side sockets alive at once, across listeners:
    ``trio_rsocket.set_socket_limit(limit)`` (``rSetSocketLimit``).  Past the
    limit a connection is accepted and closed at once.  Returns 0 or
    ``R_ERR_BAD_ARGS``."""
    set_socket_limit(limit)
    return 0


# ----------------------------------------------------------------------------
# Time


def rGetTicks() -> int:
    """Milliseconds on trio's clock: ``int(trio.current_time() * 1000)``
    (``rGetTicks``).  ``rGetTicks() + 30 * 1000`` is a deadline 30 s away."""
    return math.floor(trio.current_time() * 1000)


def rGetTime() -> int:
    """The same clock as :func:`rGetTicks` (``rGetTime``).

    Ioto's ``rGetTime`` is wall-clock time, but here every deadline is on
    trio's clock (so :class:`trio.testing.MockClock` drives it), and
    ``rGetTime() + 30 * 1000`` from the Ioto docs must be a deadline 30 s away.
    """
    return math.floor(trio.current_time() * 1000)


async def rSleep(ms: float) -> None:
    """Let other fibers run for *ms* milliseconds: ``await trio.sleep(ms / 1000)``
    (``rSleep``).  0 or less just lets the others run once; past float range
    it sleeps for ever (until cancelled)."""
    await trio.sleep(max(_seconds(ms), 0))


# ----------------------------------------------------------------------------
# Fibers


@_c_call(R_ERR_BAD_ARGS, takes_socket=False)
def rSpawnFiber(name: str | None, fn: Callable[[Any], Awaitable[object]], arg: object = None) -> int:
    """Start ``await fn(arg)`` as a new fiber named *name* in the current
    runtime: ``trio_rsocket.spawn_fiber(fn, arg, name=name)`` (``rSpawnFiber``).

    It starts running at the caller's next checkpoint.  Returns 0, or
    ``R_ERR_BAD_ARGS`` (*fn* not an async function: called at once, as trio
    does, and refused unless it returned a coroutine; *name* not a ``str``).  Raises
    :class:`RuntimeError` outside a runtime.  Inside the fiber,
    :func:`rGetFiber` gives its handle.
    """
    spawn_fiber(fn, arg, name=name)
    return 0


def rGetFiber() -> Fiber:
    """The running fiber, for :func:`rResumeFiber`: ``trio_rsocket.current_fiber()``
    (``rGetFiber``)."""
    return current_fiber()


async def rYieldFiber(value: object = None) -> object:
    """Park this fiber until :func:`rResumeFiber` wakes it, and return the value
    given there: ``await trio_rsocket.suspend_fiber(value)`` (``rYieldFiber``).

    *value* is left on the fiber (``fiber.yielded``) for the resumer.  A
    resume that came first is not lost: this then returns at once.
    """
    return await suspend_fiber(value)


def rResumeFiber(fiber: Fiber, value: object = None) -> None:
    """Wake *fiber* from :func:`rYieldFiber`, which returns *value*:
    ``trio_rsocket.resume_fiber(fiber, value)`` (``rResumeFiber``).

    Synchronous: the fiber runs at the caller's next checkpoint, as Ioto does
    for a resume from another fiber, so this returns ``None``, not the value
    the fiber yields next (that is on ``fiber.yielded`` once it has).  A
    fiber that has finished is left alone, as in Ioto.
    """
    if isinstance(fiber, Fiber) and fiber.is_done():
        return
    resume_fiber(fiber, value)


def rStop() -> None:
    """Stop the runtime: every fiber is cancelled and :func:`trio_rsocket.run`
    returns: ``trio_rsocket.stop()`` (``rStop``)."""
    stop()
