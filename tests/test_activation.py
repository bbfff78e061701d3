"""Socket activation: listening sockets passed the way systemd passes them
(``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES``, fds 3...), adopted by
``listen``.  Real processes: a launcher puts the sockets in place and sets
``LISTEN_PID`` to its own pid before it execs the program, as systemd does."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from trio_rsocket import _activation

PATIENCE = 60.0

# argv: the pid offset (0: the right pid), LISTEN_FDNAMES or "-", the
# program, then the descriptors to place at 3, 4, ...
LAUNCHER = textwrap.dedent(
    """
    import fcntl, os, sys
    offset, names, program, *fds = sys.argv[1:]
    # Out of the way of 3, 4, ... first, then into place.
    high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 3 + len(fds)) for fd in fds]
    for index, fd in enumerate(high):
        os.dup2(fd, 3 + index, inheritable=True)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid() + int(offset))
    if names != "-":
        os.environ["LISTEN_FDNAMES"] = names
    os.execv(sys.executable, [sys.executable, "-c", program])
    """
)

# The activated program: reports what it inherited, then listens on the
# address it is given and serves one connection (or reports why it cannot).
PROGRAM = textwrap.dedent(
    """
    import fcntl, json, os, sys
    import trio, trio_rsocket
    from trio_rsocket import RSocket, ListenError

    def _closed(fd):
        try:
            os.fstat(fd)
        except OSError:
            return True
        return False

    def report(**what):
        print(json.dumps(what), flush=True)

    async def main():
        inherited = trio_rsocket.inherited_sockets()
        report(
            inherited=[[s.fd, int(s.family), list(s.address), s.name, s.listening, s.adopted] for s in inherited],
            environment=[name for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES") if name in os.environ],
            cloexec=[bool(fcntl.fcntl(s.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC) for s in inherited],
        )
        served = trio.Event()

        async def handler(data, sock):
            await sock.write(b"served by the child\\n")
            served.set()

        listener = RSocket()
        try:
            if HOST is not None and HOST.startswith("/"):
                await listener.listen_unix(HOST, handler)
            else:
                await listener.listen(HOST, PORT, handler)
        except ListenError as exc:
            report(listen_error=exc.errno)
            return
        report(listening=list(listener.get_addr()), adopted=[s.adopted for s in trio_rsocket.inherited_sockets()])
        await served.wait()
        listener.close()
        report(closed=[_closed(s.fd) for s in trio_rsocket.inherited_sockets() if s.adopted])
        # Still open (never adopted, never closed): the program's own.
        report(
            still_open=[os.fstat(s.fd) is not None for s in trio_rsocket.inherited_sockets() if not s.listening],
            file_left=HOST is not None and HOST.startswith("/") and os.path.exists(HOST),
        )
        trio_rsocket.stop()

    trio_rsocket.run(main)
    """
)


class Activated:
    """The program started the way systemd starts it, its report lines read one at a time."""

    def __init__(self, host: str | None, port: int, fds: Sequence[int], *, offset: int = 0, names: str = "-") -> None:
        program = f"HOST = {host!r}\nPORT = {port}\n" + PROGRAM
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(offset), names, program, *map(str, fds)],
            pass_fds=tuple(fds),
            stdout=subprocess.PIPE,
            text=True,
        )

    def report(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the program ended (status {self.process.wait(PATIENCE)})"
        result: dict[str, object] = json.loads(line)
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(PATIENCE)
        if self.process.stdout is not None:
            self.process.stdout.close()


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    sock.listen()
    return sock


def read_reply(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as client:
        return client.makefile("rb").readline()


def test_listen_adopts_a_socket_passed_the_way_systemd_does() -> None:
    with listening_socket() as passed:
        port = passed.getsockname()[1]
        child = Activated("127.0.0.1", port, [passed.fileno()])
        try:
            first = child.report()
            assert first["inherited"] == [[3, int(socket.AF_INET), ["127.0.0.1", port], "unknown", True, False]]
            # Read once, then gone from the environment, and not inherited by children.
            assert first["environment"] == []
            assert first["cloexec"] == [True]
            # The parent still holds the port: binding it again would have failed.
            second = child.report()
            assert second == {"listening": ["127.0.0.1", port], "adopted": [True]}
            assert read_reply(port) == b"served by the child\n"
            # The listener's close closed the adopted socket, as its own.
            assert child.report() == {"closed": [True]}
            assert child.process.wait(PATIENCE) == 0
        finally:
            child.close()


def test_sockets_meant_for_another_pid_are_left_alone_and_the_variables_cleared() -> None:
    with listening_socket() as passed:
        port = passed.getsockname()[1]
        child = Activated("127.0.0.1", port, [passed.fileno()], offset=1)
        try:
            first = child.report()
            assert first["inherited"] == []
            assert first["environment"] == []
            # Not adopted: listen binds, and the parent's socket has the port.
            assert child.report()["listen_error"] == 98  # EADDRINUSE
        finally:
            child.close()


def test_named_sockets_are_listed_and_only_listening_stream_sockets_adopted() -> None:
    with listening_socket() as passed, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        datagram.bind(("127.0.0.1", 0))
        port = passed.getsockname()[1]
        # The datagram socket first, on the same port number as listen asks for.
        child = Activated(None, port, [datagram.fileno(), passed.fileno()], names="metrics:web")
        try:
            inherited = child.report()["inherited"]
            assert inherited == [
                [3, int(socket.AF_INET), ["127.0.0.1", datagram.getsockname()[1]], "metrics", False, False],
                [4, int(socket.AF_INET), ["127.0.0.1", port], "web", True, False],
            ]
            # Host None means a wildcard socket: 127.0.0.1 is not one, so not adopted.
            assert child.report()["listen_error"] == 98
        finally:
            child.close()


def test_a_wildcard_socket_is_adopted_by_listen_on_all_interfaces_and_others_stay_open() -> None:
    with listening_socket("::") as passed, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        port = passed.getsockname()[1]
        child = Activated(None, port, [passed.fileno(), datagram.fileno()], names="web:stats")
        try:
            child.report()
            assert child.report()["adopted"] == [True, False]
            assert read_reply(port) == b"served by the child\n"
            assert child.report() == {"closed": [True]}
            assert child.report() == {"still_open": [True], "file_left": False}
            assert child.process.wait(PATIENCE) == 0
        finally:
            child.close()


def test_listen_unix_adopts_an_inherited_unix_socket_and_never_removes_its_file(tmp_path: Path) -> None:
    path = str(tmp_path / "server.sock")
    with socket.socket(socket.AF_UNIX) as passed:
        passed.bind(path)
        passed.listen()
        child = Activated(path, 0, [passed.fileno()], names="control")
        try:
            assert child.report()["inherited"] == [[3, int(socket.AF_UNIX), [path, 0], "control", True, False]]
            assert child.report() == {"listening": [path, 0], "adopted": [True]}
            with socket.socket(socket.AF_UNIX) as client:
                client.settimeout(PATIENCE)
                client.connect(path)
                assert client.makefile("rb").readline() == b"served by the child\n"
            assert child.report() == {"closed": [True]}
            # Its listener closed: the file is systemd's (here the parent's), still there.
            assert child.report() == {"still_open": [], "file_left": True}
            assert child.process.wait(PATIENCE) == 0
        finally:
            child.close()


def test_a_supervisor_started_by_socket_activation_hands_the_inherited_socket_to_its_workers() -> None:
    # systemd holds the port (a .socket unit) and starts a service that runs
    # workers over it: `trio-rsocket echo --workers 2` on that port.
    with listening_socket() as passed:
        port = passed.getsockname()[1]
        arguments = ["echo", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        program = f"import sys\nfrom trio_rsocket._cli import main\nsys.exit(main({arguments!r}))"
        supervisor = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "0", "echo", program, str(passed.fileno())],
            pass_fds=(passed.fileno(),),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    # Only the supervisor holds the port now: one that bound a socket of its
    # own instead (which fails: the port is taken) would have exited, and
    # the connect below would be refused.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as client:
            client.sendall(b"ping\n")
            assert client.makefile("rb").readline() == b"ping\n"
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(PATIENCE) == 0
        assert supervisor.stderr is not None
        assert b"Stopping the workers (SIGTERM)" in supervisor.stderr.read()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(PATIENCE)
        if supervisor.stderr is not None:
            supervisor.stderr.close()


def entry(address: tuple[str, int], requested: tuple[str | None, int] | None = None) -> _activation._Entry:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    made = _activation._Entry(3, "unknown", None, family, address)
    made.requested = requested
    return made


@pytest.mark.parametrize(
    ("bound", "requested", "host", "port", "adopted"),
    [
        (("::", 8080), None, None, 8080, True),
        (("0.0.0.0", 8080), None, "", 8080, True),
        (("::", 8080), None, None, 8081, False),
        (("127.0.0.1", 8080), None, None, 8080, False),
        (("127.0.0.1", 8080), None, "localhost", 8080, True),
        (("127.0.0.1", 8080), None, "127.0.0.1", 8080, True),
        (("::1", 8080), None, "::1", 8080, True),
        (("::1", 8080), None, "0:0::1", 8080, True),
        (("::1", 8080), None, "127.0.0.1", 8080, False),
        (("10.0.0.1", 8080), None, "example.test", 8080, False),
        # A port of run()'s: port 0 as asked, a name as given.
        (("127.0.0.1", 40000), ("127.0.0.1", 0), "127.0.0.1", 0, True),
        (("127.0.0.1", 40000), ("127.0.0.1", 0), "127.0.0.1", 40000, True),
        (("127.0.0.1", 40000), ("127.0.0.1", 0), None, 0, False),
        (("127.0.0.1", 40000), ("localhost", 0), "localhost", 0, True),
        (("10.0.0.1", 40000), ("example.test", 40000), "example.test", 40000, True),
        # Port 0 never matches a socket run() did not bind for port 0.
        (("127.0.0.1", 40000), None, "127.0.0.1", 0, False),
    ],
)
def test_listen_matches_an_inherited_socket_as_it_would_bind(
    bound: tuple[str, int], requested: tuple[str | None, int] | None, host: str | None, port: int, adopted: bool
) -> None:
    assert _activation._matches(entry(bound, requested), host, port) is adopted
