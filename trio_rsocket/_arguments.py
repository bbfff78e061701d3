"""Argument checks shared by the RSocket front: each raises :class:`TypeError`
or :class:`ValueError` naming the argument, before any I/O."""

from __future__ import annotations

import fcntl
import io
import os
import socket
import stat
from typing import Final, Protocol

import trio

from ._address import unbracket
from ._deadline import as_float

__all__ = [
    "MAX_LINGER",
    "READ_CAP",
    "FileLike",
    "c_int_error",
    "check_count",
    "check_file",
    "check_host",
    "check_port",
    "check_seconds",
    "check_stream_socket",
    "data_view",
    "writable_view",
]

#: The most one read receives at once, whatever *max_bytes* says.  ``recv``
#: allocates what it is asked for before it knows what is there, so a huge
#: *max_bytes* would be a huge allocation per read; a megabyte is more than a
#: loopback socket's receive buffer holds, so a read never returns less
#: because of it than the kernel had.
READ_CAP: Final = 1 << 20

#: SO_LINGER's seconds are a C int.
MAX_LINGER: Final = 2**31 - 1

# Linux's descriptor that names a file without opening it (0 elsewhere).
_O_PATH: Final = getattr(os, "O_PATH", 0)


def c_int_error(**arguments: object) -> ValueError | None:
    """The error to raise instead of the :class:`OverflowError` (or, for an
    int that could also be bytes, :class:`TypeError`) that a socket call
    raised before any I/O, if an argument is an int past a C int: it names
    that argument.  ``None``: no argument is, the call's error stands."""
    for name, value in arguments.items():
        if isinstance(value, int) and not -(2**31) <= value < 2**31:
            return ValueError(f"{name} must fit in a C int (-2**31 to 2**31-1), not {value}")
    return None


def check_count(value: object, argument: str = "max_bytes") -> int:
    """A byte count of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{argument} must be at least 1, not {value}")
    return value


def check_host(host: object) -> str:
    """A host name or address to connect to; an IPv6 address may come in
    brackets (``[::1]``, as every message prints it), which are dropped."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if not host:
        raise ValueError("host must not be empty")
    if "\0" in host:
        # The resolver would stop at the NUL and connect somewhere else.
        raise ValueError(f"host must not contain a NUL character: {host!r}")
    return unbracket(host)


def check_port(port: object) -> int:
    """A port to connect to: 1..65535."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, not {port}")
    return port


def writable_view(buffer: object) -> memoryview:
    """A flat, writable, non-empty byte view of *buffer* (for ``read_into``)."""
    if type(buffer) is bytearray and buffer:
        # The common case passes every check below by construction.
        return memoryview(buffer)
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"buffer must be a writable bytes-like object (bytearray, memoryview, array), not {type(buffer).__name__}"
        ) from None
    if view.readonly:
        raise TypeError(f"buffer must be writable, but this {type(buffer).__name__} is read-only")
    if not view.c_contiguous:
        raise TypeError("buffer must be C-contiguous")
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    if not view.nbytes:
        raise ValueError("buffer must not be empty (a 0-byte read could not be told from EOF)")
    return view


def data_view(data: object, argument: str = "data") -> memoryview:
    """A flat byte view of any bytes-like *data* (copied once if not contiguous)."""
    if isinstance(data, str):
        raise TypeError(f"{argument} must be bytes-like, not str: encode it first")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{argument} must be bytes-like, not {type(data).__name__}") from None
    if not view.c_contiguous:
        # A strided slice: the kernel needs the bytes in a row.
        return memoryview(view.tobytes())
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    return view


class FileLike(Protocol):
    """A binary file object: what ``send_file`` takes besides a descriptor."""

    def fileno(self) -> int: ...


def _check_offset(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{argument} must be 0 or more, not {value}")
    return value


def check_file(file: object, offset: object, count: object) -> tuple[int, int]:
    """``send_file``'s arguments: the descriptor of a regular file open for
    reading, and how many bytes to send from *offset* (*count* ``None``: to
    the end of the file as it is now; never past it)."""
    if isinstance(file, io.TextIOBase):
        raise TypeError("file must be opened in binary mode ('rb'), not text mode")
    if isinstance(file, int) and not isinstance(file, bool):
        fd = file
    else:
        fileno = getattr(file, "fileno", None)
        if not callable(fileno):
            raise TypeError(f"file must be a file descriptor or a binary file object, not {type(file).__name__}")
        try:
            fd = fileno()
        except (OSError, ValueError) as exc:  # io.BytesIO, a closed file, ...
            raise TypeError(f"file must be a file with a descriptor, but its fileno() failed: {exc}") from None
    first = _check_offset(offset, "offset")
    most = None if count is None else _check_offset(count, "count")
    try:
        info = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as exc:
        raise ValueError(f"file is not an open file: {exc.strerror or exc}") from None
    except OverflowError:  # past a C int: no descriptor has that number
        raise ValueError(f"file is not an open file: there is no file descriptor {fd}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TypeError("file must be a regular file (sockets, pipes and devices cannot be sent from)")
    if flags & _O_PATH:
        raise ValueError("file must be open for reading, not an O_PATH descriptor (which can only name the file)")
    if flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) == os.O_WRONLY:
        raise ValueError("file must be open for reading, not write-only")
    left = max(0, info.st_size - first)
    return fd, left if most is None else min(most, left)


def check_stream_socket(sock: object) -> socket.socket:
    """What ``from_socket`` adopts: a connected ``SOCK_STREAM`` socket (a
    :mod:`socket` one, a trio one, or a :class:`trio.SocketStream`'s), as the
    :mod:`socket` socket that owns the descriptor from now on."""
    if isinstance(sock, trio.SocketStream):
        sock = sock.socket
    if not isinstance(sock, socket.socket | trio.socket.SocketType):
        raise TypeError(f"sock must be a socket.socket, a trio socket or a trio.SocketStream, not {type(sock)}")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"sock must be a SOCK_STREAM socket, not {sock.type!r}")
    try:
        sock.getpeername()
    except OSError as exc:
        raise ValueError(f"sock must be connected ({exc.strerror or exc})") from None
    return sock if isinstance(sock, socket.socket) else socket.socket(fileno=sock.detach())


def check_seconds(seconds: object, argument: str, *, allow_zero: bool = True) -> float:
    """Validate a relative time in seconds and return it as a float; ``inf``
    is allowed (no limit), and an int past float range is ``inf`` too, as a
    deadline reads one (``_deadline.as_float``)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{argument} must be a number of seconds, not {type(seconds).__name__}")
    if seconds != seconds:
        raise ValueError(f"{argument} must be a number of seconds, not NaN")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"{argument} must be {bound} seconds, not {seconds}")
    return as_float(seconds)
