"""Socket activation: listening sockets handed to this process, adopted by ``listen``.

Theory of operation
-------------------
A process may start with listening sockets already open, passed the way
systemd passes them (``sd_listen_fds(3)``): ``LISTEN_FDS=n`` descriptors
from fd 3 (``SD_LISTEN_FDS_START``), meant for the process whose pid is
``LISTEN_PID``, optionally named by ``LISTEN_FDNAMES`` (colon-separated).  A
worker under :func:`trio_rsocket.run`'s supervisor gets its sockets the same
way, so both are this one piece of code.

The variables are read once, on first use (:func:`inherited_sockets`, or
the first ``listen``), and removed from :data:`os.environ` whether or not
they were meant for this process (as ``sd_listen_fds(1)`` does), so that a
child process never takes them for its own; the descriptors get
``FD_CLOEXEC`` for the same reason.  Only listening stream sockets
(``SO_ACCEPTCONN`` set, ``SOCK_STREAM``) can be adopted; anything else is
listed by :func:`inherited_sockets` with ``listening=False`` and left alone
(not closed, not touched again), for the program to use as it will.

``listen(host, port, ...)`` asks :func:`adopt` first (``listen_unix(path)``
:func:`adopt_unix`, by the path): an inherited socket
bound to that address, not adopted yet, becomes the listener's socket
instead of a new one, and from then on the listener owns it (``close``
closes it).  An address matches as ``listen`` would bind it: host ``None``
or ``""`` a wildcard socket (``::`` or ``0.0.0.0``), ``"localhost"``
127.0.0.1, an IP address that address; the port must be equal.  Sockets
that :func:`trio_rsocket.run` bound for ``listen=[...]`` (in its own
process, or in a supervisor for its workers) also carry the address as the
program asked for it: port 0 there is matched by ``listen(host, 0)``, in
order, and a host name by the same name.

The listeners whose accept loop runs are kept here too (their
:class:`~trio_rsocket._listen.Listener` calls :func:`serving_started` and
:func:`serving_stopped`), because a worker needs them twice: it is ready
once every socket it inherited has an accept loop (:func:`call_when_ready`),
and on SIGTERM it shuts them all down gracefully (:func:`shutdown_listeners`).
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import socket as stdlib_socket
from collections.abc import Callable, Sequence
from socket import AddressFamily
from typing import Final, NamedTuple, Protocol

import trio

from ._address import display_address

__all__ = [
    "LISTEN_FDS_START",
    "InheritedSocket",
    "adopt",
    "adopt_unix",
    "call_when_ready",
    "inherited_sockets",
    "provide",
    "serving_started",
    "serving_stopped",
    "set_requested",
    "shutdown_listeners",
    "stop_accepting",
]

logger: Final = logging.getLogger("trio_rsocket")

#: The first inherited descriptor (systemd's ``SD_LISTEN_FDS_START``).
LISTEN_FDS_START: Final = 3
#: The name of a socket that ``LISTEN_FDNAMES`` does not name (systemd's).
UNNAMED: Final = "unknown"

_WILDCARDS: Final = frozenset({"::", "0.0.0.0"})


class InheritedSocket(NamedTuple):
    """One socket this process was given, as :func:`trio_rsocket.inherited_sockets` lists it.

    Attributes:
      fd (int): the descriptor (3, 4, ... as systemd passes them).
      family (socket.AddressFamily): ``AF_INET``, ``AF_INET6`` or ``AF_UNIX``
        (``AF_UNSPEC`` for a descriptor that is not a socket).
      address (tuple[str, int]): the address it is bound to, ``(host,
        port)``, or ``(path, 0)`` for a Unix socket (``("", 0)`` when it has
        none, or is not a socket).
      name (str): its name from ``LISTEN_FDNAMES`` (systemd's
        ``FileDescriptorName=``), ``"unknown"`` when it has none (as systemd
        says), ``"listen-0"``, ``"listen-1"``, ... for the sockets of
        ``run(..., listen=[...])``.
      listening (bool): whether it is a listening stream socket, the only
        kind ``listen`` adopts.
      adopted (bool): whether a ``listen`` has adopted it.
    """

    fd: int
    family: AddressFamily
    address: tuple[str, int]
    name: str
    listening: bool
    adopted: bool


class _Entry:
    """One inherited descriptor, and what became of it."""

    __slots__ = ("address", "adopted", "family", "fd", "listening", "name", "requested", "socket")

    def __init__(
        self, fd: int, name: str, socket: stdlib_socket.socket | None, family: int, address: tuple[str, int]
    ) -> None:
        self.fd = fd
        self.name = name
        # The socket object, for a listening stream socket only.
        self.socket = socket
        self.family = stdlib_socket.AddressFamily(family)
        self.address = address
        self.listening = socket is not None
        self.adopted = False
        # The (host, port) the program asked run() for, when run() bound it.
        self.requested: tuple[str | None, int] | None = None


class _ServingListener(Protocol):
    """What is kept of a listener (``_listen.Listener``): its socket, and a
    graceful shutdown."""

    @property
    def socket(self) -> stdlib_socket.socket: ...

    @property
    def active(self) -> int: ...

    def close(self) -> None: ...

    async def shutdown(self, grace: float | None) -> int: ...


# None until the environment has been read.
_entries: list[_Entry] | None = None
# Addresses as the program asked run() for them, in the order of the sockets
# (set by a worker's bootstrap before the first read).
_requested: list[tuple[str | None, int]] = []
_serving: set[_ServingListener] = set()
_when_ready: Callable[[], None] | None = None


def inherited_sockets() -> list[InheritedSocket]:
    """The sockets this process was started with, in descriptor order.

    These are the sockets passed by systemd's socket activation
    (``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES``), or by
    :func:`trio_rsocket.run`'s supervisor to a worker, plus those that
    ``run(..., listen=[...])`` bound in this process.  ``listen(host, port,
    ...)`` on one of their addresses adopts the socket instead of binding a
    new one (see :meth:`trio_rsocket.RSocket.listen`).

    The environment is read on the first call (or the first ``listen``),
    only if ``LISTEN_PID`` is this process's pid; the three variables are
    then removed from :data:`os.environ` in any case, and the descriptors are
    made close-on-exec, so that child processes do not inherit them.  A
    descriptor that is not a listening stream socket is listed with
    ``listening=False`` and never adopted; it stays open for the program.
    Outside socket activation the list is empty.
    """
    return [
        InheritedSocket(entry.fd, entry.family, entry.address, entry.name, entry.listening, entry.adopted)
        for entry in _read()
    ]


def set_requested(addresses: Sequence[tuple[str | None, int]]) -> None:
    """The addresses as ``run(listen=...)`` was given them, one per inherited
    socket in order (a worker's bootstrap, before the environment is read)."""
    global _requested
    _requested = list(addresses)


def provide(sockets: Sequence[stdlib_socket.socket], requested: Sequence[tuple[str | None, int]]) -> None:
    """Offer *sockets*, bound by ``run(listen=...)`` in this process for the
    *requested* addresses, to ``listen`` as if inherited."""
    entries = _read()
    for index, (sock, address) in enumerate(zip(sockets, requested, strict=True)):
        entry = _Entry(sock.fileno(), f"listen-{index}", sock, sock.family, display_address(sock.getsockname()))
        entry.requested = address
        entries.append(entry)


def withdraw(sockets: Sequence[stdlib_socket.socket]) -> None:
    """Forget *sockets* (offered by :func:`provide`): ``run`` has closed them."""
    global _entries
    if _entries is not None:
        _entries = [entry for entry in _entries if entry.socket not in sockets]


def adopt(host: str | None, port: int) -> stdlib_socket.socket | None:
    """The inherited listening socket that ``listen(host, port)`` should use
    instead of binding, now the caller's to own, or ``None`` to bind.

    *host* is as ``listen`` validated it (an IPv6 address without brackets).
    """
    entries = _entries if _entries is not None else _read()
    for entry in entries:
        if entry.socket is not None and not entry.adopted and _matches(entry, host, port):
            entry.adopted = True
            entry.socket.setblocking(False)
            return entry.socket
    return None


def adopt_unix(address: bytes) -> stdlib_socket.socket | None:
    """The inherited listening Unix socket bound to *address* (a path, or a
    Linux abstract name with its leading NUL, as ``listen_unix`` checked
    it) that ``listen_unix`` should use instead of binding, or ``None``."""
    entries = _entries if _entries is not None else _read()
    for entry in entries:
        if (
            entry.socket is not None
            and not entry.adopted
            and entry.family == stdlib_socket.AF_UNIX
            and os.fsencode(entry.address[0]) == address
        ):
            entry.adopted = True
            entry.socket.setblocking(False)
            return entry.socket
    return None


def _matches(entry: _Entry, host: str | None, port: int) -> bool:
    if entry.family not in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6):
        return False
    requested = entry.requested
    if requested is not None:
        if (requested[0] or None) == (host or None) and requested[1] == port:
            return True  # as the program asked run() for it, port 0 included
        if port == 0:
            return False  # port 0 means "a port of run()'s", never some other inherited socket
    bound_host, bound_port = entry.address
    if port != bound_port or port == 0:
        return False
    if not host:
        return bound_host in _WILDCARDS
    if host == "localhost":
        host = "127.0.0.1"
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(bound_host)
    except ValueError:
        return False  # a name: matched only as run() was given it, above


def _read() -> list[_Entry]:
    """The inherited sockets, reading (and clearing) the environment the first time."""
    global _entries
    if _entries is not None:
        return _entries
    pid = os.environ.pop("LISTEN_PID", None)
    count = os.environ.pop("LISTEN_FDS", None)
    names = os.environ.pop("LISTEN_FDNAMES", None)
    _entries = []
    if pid is None or count is None:
        return _entries
    try:
        ours = int(pid) == os.getpid()
        number = int(count)
    except ValueError:
        logger.warning("Ignored the inherited sockets: LISTEN_PID=%r or LISTEN_FDS=%r is not a number", pid, count)
        return _entries
    if not ours:
        # Meant for another process (our parent's, say): not ours to touch.
        return _entries
    if number < 0:
        logger.warning("Ignored the inherited sockets: LISTEN_FDS=%r is negative", count)
        return _entries
    labels = names.split(":") if names else []
    for index in range(number):
        fd = LISTEN_FDS_START + index
        name = labels[index] if index < len(labels) and labels[index] else UNNAMED
        _entries.append(_inspect(fd, name, _requested[index] if index < len(_requested) else None))
    return _entries


def _inspect(fd: int, name: str, requested: tuple[str | None, int] | None) -> _Entry:
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFD)
        fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        sock = stdlib_socket.socket(fileno=fd)
    except OSError as exc:
        logger.warning("Inherited descriptor %d (%s) is not a socket: %s", fd, name, exc)
        return _Entry(fd, name, None, stdlib_socket.AF_UNSPEC, ("", 0))
    try:
        family = sock.family
        address = display_address(sock.getsockname())
        listening = sock.type == stdlib_socket.SOCK_STREAM and bool(
            sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_ACCEPTCONN)
        )
    except OSError as exc:
        sock.detach()
        logger.warning("Inherited socket %d (%s) cannot be inspected: %s", fd, name, exc)
        return _Entry(fd, name, None, stdlib_socket.AF_UNSPEC, ("", 0))
    if not listening:
        # Listed, never adopted, and never closed by us: the program's to use.
        sock.detach()
        return _Entry(fd, name, None, family, address)
    entry = _Entry(fd, name, sock, family, address)
    entry.requested = requested
    return entry


def serving_started(listener: _ServingListener) -> None:
    """*listener*'s accept loop is starting (called by the listener)."""
    _serving.add(listener)
    _check_ready()


def serving_stopped(listener: _ServingListener) -> None:
    """*listener*'s accept loop is over (called by the listener)."""
    _serving.discard(listener)


def call_when_ready(callback: Callable[[], None]) -> None:
    """Call *callback* once, as soon as every inherited listening socket has
    been adopted by a listener whose accept loop runs (at once if there is
    none to adopt)."""
    global _when_ready
    _when_ready = callback
    _check_ready()


def _check_ready() -> None:
    global _when_ready
    if _when_ready is None:
        return
    serving = {listener.socket for listener in _serving}
    if all(entry.socket in serving for entry in _read() if entry.socket is not None):
        callback, _when_ready = _when_ready, None
        callback()


def stop_accepting() -> int:
    """Close every listener of this process (they stop accepting; their
    handlers go on); return how many connections they are serving."""
    listeners = list(_serving)
    for listener in listeners:
        listener.close()
    return sum(listener.active for listener in listeners)


async def shutdown_listeners(grace: float | None) -> None:
    """Shut every listener of this process down gracefully, all at once:
    stop accepting, wait up to *grace* seconds for their handlers, cancel
    the rest (a worker told to stop)."""
    async with trio.open_nursery() as nursery:
        for listener in list(_serving):
            nursery.start_soon(listener.shutdown, grace)
