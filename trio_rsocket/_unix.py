"""Unix domain sockets: the path checks, the race-free bind, the listener that cleans up after itself.

Theory of operation
-------------------
A listener on a Unix socket path must never destroy a live server's socket,
never be reachable with the wrong permissions, and never leave litter.  The
usual recipe (``unlink(path)``, ``bind(path)``, ``chmod(path)``, as anyio
and asyncio do) breaks all three: the unlink steals a live server's socket
(cpython#121252), and between the bind and the chmod the socket has the
umask's permissions.  :func:`open_unix_listening_socket` follows njsmith's
recipe instead (trio#279):

1. bind a short random name beside *path*, in the same directory (so the
   rename below is atomic), through ``/proc/self/fd/<directory>/`` when the
   name written out in full would not fit in ``sun_path`` (a path that fits
   must never fail because its temporary name does not);
2. ``chmod`` it to *mode*, through a descriptor that cannot follow a
   symbolic link, then ``listen``: nobody can connect before the permissions
   are right, and nobody can connect to the final name before it listens;
3. under an exclusive ``flock`` on the directory (non-blocking, retried a
   bounded number of times, held across no checkpoint, so only for
   microseconds), look at what is at *path* (``lstat``, so a symbolic link is
   seen as one): nothing, or a socket file whose connect is refused (stale),
   is replaced by ``rename``-ing the temporary name onto it; a socket that
   accepts a connect (or says its queue is full) is live: ``ListenError``,
   nothing touched; any other kind of file: ``ListenError``, never touched;
4. the temporary name is removed on every way out that did not rename it
   (an error, a cancellation): ``try``/``finally``.

The lock makes the look-then-rename of two of our listeners (in one process
or in several) one after the other, so two processes racing for one path
cannot both win.  A program that binds without it (anyio's unlink-then-bind)
is not serialized, and nothing can make it so.

The listener keeps the directory open and the socket file's device and inode
(:class:`UnixName`).  Its close removes the file only if *path* still names
that inode (another server may have replaced it since), and removes it
*before* it closes the listening descriptor: while the descriptor is open the
socket is live, so no other listener of ours can take the file for stale and
replace it in between.  An abstract name (Linux, a leading NUL) has no file:
nothing to chmod, rename or remove, and the kernel refuses a second bind.
"""

from __future__ import annotations

import contextlib
import errno as errno_codes
import fcntl
import os
import secrets
import socket as stdlib_socket
import stat
import sys
from typing import Any, Final

import trio
from trio.lowlevel import checkpoint

from ._activation import adopt_unix
from ._address import display_address, peer_text
from ._errors import ListenError
from ._listen import Handler, Listener, MakeSocket, SocketT
from ._options import Settings

__all__ = [
    "HAS_ABSTRACT",
    "LOCK_ATTEMPTS",
    "MAX_ABSTRACT_NAME",
    "MAX_PATH",
    "SUN_PATH_SIZE",
    "UnixListener",
    "UnixName",
    "check_mode",
    "check_unix_path",
    "close_unix_listening_socket",
    "open_unix_listening_socket",
]

#: The size of ``sun_path`` in ``struct sockaddr_un`` (108 on Linux, 104 on
#: the BSDs and macOS).
SUN_PATH_SIZE: Final = 104 if sys.platform == "darwin" or "bsd" in sys.platform else 108
#: The longest filesystem path, in bytes: ``sun_path`` holds its closing NUL too.
MAX_PATH: Final = SUN_PATH_SIZE - 1
#: The longest abstract name, in bytes after its leading NUL.
MAX_ABSTRACT_NAME: Final = SUN_PATH_SIZE - 1
#: Whether the OS has the abstract namespace (Linux only).
HAS_ABSTRACT: Final = sys.platform.startswith("linux")

#: The temporary name's length in bytes (a dot and random letters): 55 bits
#: of chance, so a clash (then another name is tried) is as good as never.
TEMP_NAME_LENGTH: Final = 12
#: Names tried before a bind that keeps finding its temporary name taken gives up.
TEMP_NAME_ATTEMPTS: Final = 8
#: Tries of the directory lock, and the pause between two: the lock is held
#: for microseconds (no checkpoint under it), so a lock still held after
#: ``LOCK_ATTEMPTS * LOCK_PAUSE`` seconds (half a second) is held by a
#: program that does something else with it, and waiting longer would not help.
LOCK_ATTEMPTS: Final = 50
LOCK_PAUSE: Final = 0.01

# Linux's descriptor that names a file without opening it (0 elsewhere).
_O_PATH: Final = getattr(os, "O_PATH", 0)
_O_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
# Where a descriptor can be named as a path (Linux's /proc).
_PROC_FD: Final = "/proc/self/fd"
_TEMP_LETTERS: Final = b"abcdefghijklmnopqrstuvwxyz234567"


def check_unix_path(path: object, argument: str = "path") -> tuple[bytes, str]:
    """The socket address of *path* (``str``, ``bytes`` or :class:`os.PathLike`)
    as the OS takes it (bytes: a str is encoded as the OS encodes file
    names), and the text that names it in messages (an abstract name with
    ``@`` for its NUL, as ``ss`` shows it).

    Raises :class:`TypeError` or :class:`ValueError` naming *argument*: an
    empty path, a NUL inside a filesystem path, a path that ends with
    ``/``, a path longer than
    ``sun_path`` holds, an abstract name where the OS has none.
    """
    if isinstance(path, str | bytes | os.PathLike):
        try:
            address = os.fsencode(path)
        except TypeError:  # a PathLike whose __fspath__ returned neither str nor bytes
            address = None
        except UnicodeError as exc:
            raise ValueError(f"{argument} cannot be encoded as a file name: {exc}") from None
    else:
        address = None
    if address is None:
        raise TypeError(f"{argument} must be a str, bytes or os.PathLike, not {type(path).__name__}")
    if not address:
        raise ValueError(f"{argument} must not be empty")
    if address.startswith(b"\0"):
        if not HAS_ABSTRACT:
            raise ValueError(
                f"{argument}: a leading NUL names Linux's abstract namespace, which {sys.platform} has not"
            )
        if len(address) - 1 > MAX_ABSTRACT_NAME:
            raise ValueError(
                f"{argument} is too long: an abstract name is at most {MAX_ABSTRACT_NAME} bytes after its NUL, "
                f"not {len(address) - 1}"
            )
    else:
        if b"\0" in address:
            raise ValueError(f"{argument} must not contain a NUL byte (only a leading one, for an abstract name)")
        if address.endswith(b"/"):
            raise ValueError(f"{argument} must name a socket file, not a directory (it ends with /)")
        if len(address) > MAX_PATH:
            raise ValueError(
                f"{argument} is too long for a Unix socket: at most {MAX_PATH} bytes, not {len(address)} "
                "(a longer path can be reached through a shorter relative one, or a symbolic link)"
            )
    return address, peer_text(address)


def check_mode(mode: object) -> int:
    """The permission bits a listener's socket file gets."""
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int (permission bits, as 0o600), not {type(mode).__name__}")
    if not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be permission bits in 0..0o777, not {mode:#o}")
    return mode


class UnixName:
    """The socket file a listener made: its directory (kept open), its name
    in it, and its device and inode, so that :meth:`remove` removes that file
    and no other."""

    __slots__ = ("_device", "_directory", "_inode", "_name")

    def __init__(self, directory: int, name: bytes, device: int, inode: int) -> None:
        self._directory = directory
        self._name = name
        self._device = device
        self._inode = inode

    def remove(self) -> None:
        """Remove the socket file if the name still names it, and let the
        directory go.  Idempotent; never raises (a close cannot fail)."""
        directory, self._directory = self._directory, -1
        if directory < 0:
            return
        try:
            with contextlib.suppress(OSError):
                found = os.stat(self._name, dir_fd=directory, follow_symlinks=False)
                if (found.st_dev, found.st_ino) == (self._device, self._inode):
                    os.unlink(self._name, dir_fd=directory)
        finally:
            os.close(directory)


class UnixListener(Listener[SocketT]):
    """A :class:`~trio_rsocket._listen.Listener` on a Unix socket: its close
    removes the socket file it made (if that is still the one at the path)
    before it closes the listening socket."""

    def __init__(
        self,
        raw: stdlib_socket.socket,
        path: bytes,
        name: UnixName | None,
        handler: Handler[Any, SocketT],
        data: object,
        settings: Settings,
        make_socket: MakeSocket[SocketT],
        handshake_timeout: float,
    ) -> None:
        super().__init__(raw, handler, data, settings, make_socket, handshake_timeout)
        self._name = name
        #: The path (or abstract name) the listener was asked for, as
        #: ``get_addr`` gives it: the kernel knows it only by the temporary
        #: name it was bound to before the rename.
        self.address = display_address(path)

    def start(self, nursery: trio.Nursery) -> None:
        """Run :meth:`serve` in *nursery*; closed if the nursery takes no new fiber."""
        try:
            nursery.start_soon(self.serve, name=f"trio_rsocket listener {peer_text(os.fsencode(self.address[0]))}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove the socket file (if still ours), then stop accepting and
        close the listening socket.  Idempotent."""
        name, self._name = self._name, None
        if name is not None:
            name.remove()  # first: the socket is live until the descriptor closes
        super().close()


def close_unix_listening_socket(raw: stdlib_socket.socket, name: UnixName | None) -> None:
    """Undo :func:`open_unix_listening_socket`: remove the file (if still
    ours), then close the socket."""
    if name is not None:
        name.remove()
    raw.close()


async def open_unix_listening_socket(
    address: bytes, shown: str, mode: int, backlog: int
) -> tuple[stdlib_socket.socket, UnixName | None]:
    """Bind and listen on the Unix socket *address* (from
    :func:`check_unix_path`; *shown* names it in messages) as the module's
    theory of operation says; return the non-blocking listening socket and
    its :class:`UnixName` (``None`` for an abstract name).

    Raises :class:`ListenError` (errno kept): a live socket or another kind
    of file at the path, a directory that is missing or not writable, ...
    Nothing it made is left behind when it raises or is cancelled.

    A socket this process inherited for *address* (socket activation:
    :mod:`._activation`) is adopted instead, with no :class:`UnixName`: its
    file is not ours, so nothing ever removes it, and *mode* is its binder's.
    """
    await checkpoint()
    inherited = adopt_unix(address)
    if inherited is not None:
        return inherited, None
    if address.startswith(b"\0"):
        raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        try:
            raw.bind(address)
            raw.listen(backlog)
            raw.setblocking(False)
        except OSError as exc:
            raw.close()
            raise _listen_error(shown, exc) from exc
        except BaseException:
            raw.close()
            raise
        return raw, None
    folder, name = os.path.split(address)
    try:
        directory, lockable = _open_directory(folder or b".")
    except OSError as exc:
        raise _listen_error(shown, exc) from exc
    try:
        raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        temp: bytes | None = None
        try:
            temp = _bind_temporary(raw, directory, folder)
            device, inode = _chmod(directory, temp, mode)
            raw.listen(backlog)
            raw.setblocking(False)
            await _lock(directory, lockable, shown)
            try:
                _check_target(directory, name, address, shown)
                os.rename(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
                temp = None
            finally:
                if lockable:
                    fcntl.flock(directory, fcntl.LOCK_UN)
        except OSError as exc:
            raw.close()
            if isinstance(exc, ListenError):
                raise
            raise _listen_error(shown, exc) from exc
        except BaseException:
            raw.close()
            raise
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=directory)
    except BaseException:
        os.close(directory)
        raise
    return raw, UnixName(directory, name, device, inode)


def _listen_error(shown: str, exc: OSError) -> ListenError:
    return ListenError(f"Cannot bind/listen on {shown}: {exc.strerror or exc}", exc.errno)


def _open_directory(folder: bytes) -> tuple[int, bool]:
    """The directory, open, and whether it can be locked: a directory we may
    search but not read opens only as a path (Linux), which ``flock`` refuses."""
    try:
        return os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC), True
    except PermissionError:
        if not _O_PATH:
            raise
    return os.open(folder, _O_PATH | _O_DIRECTORY | _O_CLOEXEC), False


def _bind_temporary(raw: stdlib_socket.socket, directory: int, folder: bytes) -> bytes:
    """Bind *raw* to a fresh random name in *directory* and return the name.

    The name written out beside *folder* fits in ``sun_path`` whenever the
    final name does: where the full length would not, it goes through
    ``/proc/self/fd`` (Linux), or is made shorter (never shorter than the
    final name, which fits).
    """
    prefix = (folder + b"/") if folder else b""
    length = TEMP_NAME_LENGTH
    if len(prefix) + length > MAX_PATH:
        if os.path.isdir(_PROC_FD):
            prefix = os.fsencode(f"{_PROC_FD}/{directory}/")
        else:
            length = MAX_PATH - len(prefix)  # at least the final name's length
    last: OSError | None = None
    for _ in range(TEMP_NAME_ATTEMPTS):
        letters = bytes(secrets.choice(_TEMP_LETTERS) for _ in range(length))
        temp = b"." + letters[1:] if length >= 4 else letters  # "." alone names the directory
        try:
            raw.bind(prefix + temp)
        except OSError as exc:
            if exc.errno != errno_codes.EADDRINUSE:
                raise
            last = exc
            continue
        return temp
    assert last is not None
    raise last


def _chmod(directory: int, temp: bytes, mode: int) -> tuple[int, int]:
    """Give the socket file *temp* its *mode*; return its device and inode.

    Through a descriptor that names the file itself (``O_PATH |
    O_NOFOLLOW``, then ``/proc/self/fd``, as glibc's ``lchmod`` does), so a
    name swapped for a symbolic link meanwhile changes nothing elsewhere.
    """
    if _O_PATH and os.path.isdir(_PROC_FD):
        handle = os.open(temp, _O_PATH | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=directory)
        try:
            found = os.fstat(handle)
            if not stat.S_ISSOCK(found.st_mode):
                raise OSError(errno_codes.EEXIST, "the temporary socket file was replaced")
            os.chmod(f"{_PROC_FD}/{handle}", mode)
        finally:
            os.close(handle)
    else:
        found = os.stat(temp, dir_fd=directory, follow_symlinks=False)
        if not stat.S_ISSOCK(found.st_mode):
            raise OSError(errno_codes.EEXIST, "the temporary socket file was replaced")
        os.chmod(temp, mode, dir_fd=directory)
    return found.st_dev, found.st_ino


async def _lock(directory: int, lockable: bool, shown: str) -> None:
    """Take the directory's exclusive lock, retrying a few times: another
    listener of ours holds it only while it looks and renames."""
    if not lockable:
        await checkpoint()
        return
    for _ in range(LOCK_ATTEMPTS):
        try:
            fcntl.flock(directory, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await trio.sleep(LOCK_PAUSE)
            continue
        return  # held from here to the rename, with no checkpoint in between
    raise ListenError(
        f"Cannot bind/listen on {shown}: its directory stayed locked (flock) by another program", errno_codes.EAGAIN
    )


def _check_target(directory: int, name: bytes, address: bytes, shown: str) -> None:
    """Raise :class:`ListenError` unless *name* in *directory* is free to
    take: missing, or a stale socket (its connect refused)."""
    try:
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise ListenError(
            f"Cannot bind/listen on {shown}: it exists and is not a socket ({_kind(found.st_mode)}); left as it is",
            errno_codes.EEXIST,
        )
    with stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        code = probe.connect_ex(address)
    if code in (errno_codes.ECONNREFUSED, errno_codes.ENOENT):
        return  # stale (nobody listens), or gone meanwhile: the rename takes the name
    if code in (0, errno_codes.EAGAIN, errno_codes.EWOULDBLOCK, errno_codes.EINPROGRESS):
        raise ListenError(f"Cannot bind/listen on {shown}: a server is listening there", errno_codes.EADDRINUSE)
    raise ListenError(
        f"Cannot bind/listen on {shown}: a socket is there and cannot be told stale ({os.strerror(code)}); "
        "left as it is",
        code,
    )


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a socket"
