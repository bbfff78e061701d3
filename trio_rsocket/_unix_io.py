"""What only a Unix socket can do: the peer's credentials, and passing descriptors.

Theory of operation
-------------------
A connected Unix socket carries two things TCP cannot: the kernel knows
which process is at the other end (:func:`peer_credentials`), and a message
may carry open descriptors (``SCM_RIGHTS``) that the kernel installs in the
receiving process as new descriptors of the same open files.

:func:`send_fds` and :func:`receive_fds` drive the plain part's descriptor
the way the plain part itself does (``_plain.PlainConnection``):
``checkpoint_if_cancelled`` → try ``sendmsg``/``recvmsg`` → wait for
writability/readability only when it would block → ``cancel_shielded_checkpoint``
when it never waited.  They live here, not on the part, so the part's hot
paths stay as they are; they count what they send in the part's
``bytes_sent`` before every wait, as its own writes do, so a stopped
``write_fds`` knows exactly how far it got, and a ``close()`` from another
fiber wakes them as it wakes the part's own waits.

Descriptors ride on bytes.  On a stream socket the kernel attaches them to
the first byte of the ``sendmsg`` that carried them and hands them over with
the ``recvmsg`` that returns that byte; a ``recv`` that returns it instead
(``read``, or ``read_until`` filling its buffer) makes the kernel drop them.
So :func:`send_fds` sends them with its first ``sendmsg`` (at least one byte
goes with them, or none of them), and every descriptor :func:`receive_fds`
gets is either returned to the caller or closed, never left open unowned:
those beyond what the caller asked for (the control buffer is rounded up to
a word), and all of them if anything fails after the kernel installed them.
Received descriptors are made non-inheritable at once (``MSG_CMSG_CLOEXEC``
on Linux, in the same system call; elsewhere right after), as every
descriptor Python opens is (PEP 446).
"""

from __future__ import annotations

import array
import contextlib
import errno as errno_codes
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Final, NamedTuple

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled, wait_readable, wait_writable

from ._errors import RSocketError, stream_error
from ._plain import PlainConnection

__all__ = ["MAX_FDS", "PeerCredentials", "check_fds", "peer_credentials", "receive_fds", "send_fds"]

#: The most descriptors one message may carry: Linux's ``SCM_MAX_FD``,
#: applied everywhere (the BSDs bound a message by its control buffer, which
#: holds at least this many).
MAX_FDS: Final = 253

# One descriptor in a control message: a C int.
_FD_SIZE: Final = array.array("i").itemsize
# Linux sets close-on-exec in recvmsg itself; elsewhere it is set right after.
_CMSG_CLOEXEC: Final = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
# sendmsg errors that are the descriptors' fault, not the connection's (with
# the socket still open): one closed under the call (EBADF), too many in
# flight for the receiver's limits (ETOOMANYREFS), a descriptor the kernel
# will not pass (EINVAL).
_PASSING_ERRNOS: Final = frozenset({errno_codes.EBADF, errno_codes.ETOOMANYREFS, errno_codes.EINVAL})


class PeerCredentials(NamedTuple):
    """The process at the other end of a Unix socket, as the kernel saw it
    when the connection was made (or the pair created): returned by
    :meth:`RSocket.get_peer_credentials <trio_rsocket.RSocket.get_peer_credentials>`.

    Attributes:
      pid: its process id; ``None`` where the OS does not say (FreeBSD
        before 13, DragonFly).
      uid: its effective user id.
      gid: its effective group id.
    """

    pid: int | None
    uid: int
    gid: int


def peer_credentials(raw: socket.socket) -> PeerCredentials:
    """The credentials of the peer of the connected Unix socket *raw*.

    Raises :class:`RSocketError` with the OS reason if the OS cannot say.
    """
    try:
        return _read_credentials(raw)
    except OSError as exc:
        raise RSocketError(f"Cannot get the peer's credentials: {exc.strerror or exc}", exc.errno) from exc


if sys.platform == "linux":

    def _read_credentials(raw: socket.socket) -> PeerCredentials:
        # struct ucred: pid, uid, gid.
        pid, uid, gid = struct.unpack("iII", raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return PeerCredentials(pid, uid, gid)

elif sys.platform.startswith("openbsd"):  # pragma: no cover  # untested: only Linux runs the tests

    def _read_credentials(raw: socket.socket) -> PeerCredentials:
        # struct sockpeercred: uid, gid, pid (OpenBSD's order, not Linux's).
        uid, gid, pid = struct.unpack("IIi", raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return PeerCredentials(pid, uid, gid)

elif sys.platform == "darwin" or sys.platform.startswith(("freebsd", "dragonfly")):  # pragma: no cover
    # Untested: only Linux runs the tests.  (getpeereid() is this call, without the pid.)
    # <sys/un.h>: SOL_LOCAL is 0, LOCAL_PEERCRED 1 (struct xucred), macOS's
    # LOCAL_PEERPID 2.  Python names them on some builds only.
    _SOL_LOCAL: Final = getattr(socket, "SOL_LOCAL", 0)
    _LOCAL_PEERCRED: Final = getattr(socket, "LOCAL_PEERCRED", 1)
    _LOCAL_PEERPID: Final[int | None] = 2 if sys.platform == "darwin" else None
    # struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups;
    # gid_t cr_groups[16] (the first is the effective gid); FreeBSD 13 and
    # later add a pid_t cr_pid after them.
    _XUCRED: Final = struct.Struct("=IIh2x16I")
    _XUCRED_PID: Final = struct.Struct("=IIh2x16Ii")

    def _read_credentials(raw: socket.socket) -> PeerCredentials:
        data = raw.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, _XUCRED_PID.size)
        if len(data) < _XUCRED.size:
            raise OSError(errno_codes.EINVAL, "the OS returned no peer credentials")
        version, uid, ngroups, *groups = _XUCRED.unpack_from(data)
        if version != 0 or ngroups < 1:  # XUCRED_VERSION; a peer always has its effective gid
            raise OSError(errno_codes.EINVAL, "the OS returned peer credentials of an unknown form")
        pid: int | None = None
        if _LOCAL_PEERPID is not None:
            (pid,) = struct.unpack("i", raw.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))
        elif sys.platform.startswith("freebsd") and len(data) >= _XUCRED_PID.size:
            pid = _XUCRED_PID.unpack_from(data)[-1] or None
        return PeerCredentials(pid, uid, groups[0])

else:  # pragma: no cover  # NetBSD, Solaris, ...: their calls differ and nothing here tests them

    def _read_credentials(raw: socket.socket) -> PeerCredentials:
        raise OSError(errno_codes.EOPNOTSUPP, f"not supported on {sys.platform} by trio_rsocket")


def check_fds(fds: object) -> list[int]:
    """The descriptors ``write_fds`` was given, checked before any I/O: a
    sequence of at most :data:`MAX_FDS` ints, each an open descriptor."""
    if isinstance(fds, str | bytes | bytearray | memoryview) or not isinstance(fds, Sequence):
        raise TypeError(f"fds must be a sequence of int descriptors (a list or tuple), not {type(fds).__name__}")
    if len(fds) > MAX_FDS:
        raise ValueError(f"fds holds {len(fds)} descriptors; one write_fds passes at most {MAX_FDS}")
    checked = []
    for index, fd in enumerate(fds):
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fds[{index}] must be an int descriptor, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"fds[{index}] must be a descriptor (0 or more), not {fd}")
        try:
            os.fstat(fd)
        except (OSError, OverflowError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no such descriptor"
            raise ValueError(f"fds[{index}] ({fd}) is not an open descriptor: {reason}") from None
        checked.append(int(fd))
    return checked


async def send_fds(part: PlainConnection, data: memoryview | bytes, fds: list[int]) -> None:
    """Write all of *data* through *part*'s Unix socket, *fds* riding on the
    first ``sendmsg`` that the kernel takes any of it from.  Every byte the
    kernel takes is counted in ``part.bytes_sent`` before the next wait.

    Raises:
      RSocketError: the kernel refused the descriptors (nothing was sent;
        the connection stays usable).
      trio.BrokenResourceError, trio.ClosedResourceError: as the part's own writes.
    """
    if part.write_closed:
        raise trio.ClosedResourceError("can't write after send_eof")
    raw = part.raw
    await checkpoint_if_cancelled()
    view = memoryview(data)  # slices of a view copy nothing
    total = len(view)
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    sent = 0
    waited = False
    while True:
        try:
            count = raw.sendmsg([view[sent:]], ancillary)
        except BlockingIOError:
            count = 0
        except OSError as exc:
            if ancillary and exc.errno in _PASSING_ERRNOS and raw.fileno() >= 0:
                raise RSocketError(f"Cannot pass the descriptors: {exc.strerror or exc}", exc.errno) from exc
            part.eof = True
            raise stream_error(exc) from exc
        if count:
            ancillary = []  # they went with these bytes
            sent += count
            part.bytes_sent += count
            if sent == total:
                break
        # Waits outside the except clause, as the plain part's do.
        await wait_writable(raw)
        waited = True
    if not waited:
        await cancel_shielded_checkpoint()


async def receive_fds(part: PlainConnection, max_bytes: int, max_fds: int) -> tuple[bytes, list[int]]:
    """Up to *max_bytes* bytes and up to *max_fds* descriptors, as soon as
    any bytes are there; ``(b"", [])`` at end of file.  Descriptors beyond
    *max_fds* are closed; the ones returned are non-inheritable and belong
    to the caller.

    Raises:
      trio.BrokenResourceError, trio.ClosedResourceError: as the part's own reads.
    """
    raw = part.raw
    control = socket.CMSG_SPACE(max_fds * _FD_SIZE)
    await checkpoint_if_cancelled()
    waited = False
    while True:  # ends at the first call that does not say "would block"
        try:
            data, ancillary, _, _ = raw.recvmsg(max_bytes, control, _CMSG_CLOEXEC)
        except BlockingIOError:
            pass
        except OSError as exc:
            part.eof = True
            raise stream_error(exc) from exc
        else:
            break
        await wait_readable(raw)
        waited = True
    fds = _descriptors(ancillary)
    try:
        # Descriptors ride on bytes: none can come with end of file, but
        # whatever the kernel gave without bytes has no owner but us.
        kept, extra = (fds[:max_fds], fds[max_fds:]) if data else ([], fds)
        _close_all(extra)
        if not _CMSG_CLOEXEC:  # pragma: no cover  # Linux sets it in recvmsg
            for fd in kept:
                os.set_inheritable(fd, False)
        if not data:
            part.eof = True
        if not waited:
            await cancel_shielded_checkpoint()
    except BaseException:
        _close_all(fds)
        raise
    return data, kept


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """Every descriptor in *ancillary* (``recvmsg``'s control messages), in
    order; a truncated last one (``MSG_CTRUNC``) gives those that fit whole."""
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
            fds.extend(received)
    return fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
