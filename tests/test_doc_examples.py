"""The complete programs on the documentation's pages run, and do what the
page says they do.

Each example is read out of its page (the ``.. code-block:: python`` with a
``:name:``) and executed as it stands, so a change that breaks the example
breaks this test; tracebacks point at the line of the page.  The examples
use the file names ``python -m trustme`` writes (``server.key``,
``server.pem``, ``client.pem``) in the current directory, so each test makes
them with :func:`trio_rsocket.testing.make_cert_files` in a temporary
directory and runs there.
"""

from __future__ import annotations

import ast
import configparser
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_rsocket import ListenError, RSocket, RSocketError, TLSError
from trio_rsocket.testing import make_cert_files, new_ca

DOCS = Path(__file__).resolve().parent.parent / "docs"

_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. code-block:: (?P<language>\w+)\s*$")


def code_block(page: str, name: str, languages: tuple[str, ...] = ("python", "python3")) -> tuple[str, int]:
    """The code of the block named *name* on *page* (in one of *languages*),
    and the line it starts on."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        found = _DIRECTIVE.match(line)
        if found is None or found["language"] not in languages:
            continue
        indent = len(found["indent"])
        options: dict[str, str] = {}
        body = number + 1
        while body < len(lines) and (option := re.match(r"^ +:(\w+):\s*(.*)$", lines[body])):
            options[option[1]] = option[2].strip()
            body += 1
        if options.get("name") != name:
            continue
        end = body
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
            end += 1
        return textwrap.dedent("\n".join(lines[body:end])), body + 1
    raise AssertionError(f"no {'/'.join(languages)} code block named {name!r} in docs/{page}")


def load_example(page: str, name: str) -> dict[str, Any]:
    """Execute the example as a module that is not ``__main__`` (so its
    ``trio.run(main)`` does not run) and return its namespace."""
    code, first_line = code_block(page, name)
    namespace: dict[str, Any] = {"__name__": f"doc_example_{name.replace('-', '_')}"}
    # Padded so that line numbers in a traceback are the page's.
    exec(compile("\n" * (first_line - 1) + code, str(DOCS / page), "exec"), namespace)
    return namespace


@pytest.fixture
def in_cert_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in *tmp_path*, holding what ``python -m trustme`` would write there."""
    files = make_cert_files(new_ca(), tmp_path)
    # trustme's command line calls the CA certificate client.pem.
    shutil.copyfile(files.authority, tmp_path / "client.pem")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------
# docs/servers.rst, "A STARTTLS server"


async def test_the_starttls_example_talks_tls_after_the_upgrade(
    in_cert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example("servers.rst", "example-starttls")
    await example["main"]()
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["TLSv1.3 secure: True", repr(b"hello over TLS\r\n")]


async def test_the_starttls_example_server_refuses_plaintext_sent_before_the_upgrade(in_cert_folder: Path) -> None:
    """What the page says of injection, with the page's own server: bytes
    behind ``STARTTLS\\r\\n`` are refused and the socket closed."""
    example = load_example("servers.rst", "example-starttls")
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, example["serve"], nursery=nursery)
        async with RSocket() as sock:
            await sock.connect(*listener.get_addr())
            await sock.write(b"STARTTLS\r\nMAIL FROM:<injected>\r\n")
            assert await sock.read_until(b"\r\n") == b"220 go ahead\r\n"
            assert await sock.read() == b""  # closed, never upgraded
        await listener.shutdown()
    # The handler's TLSError, logged by the listener.
    assert listener.statistics().handler_errors == 1


async def test_the_starttls_example_client_refuses_a_server_it_does_not_trust(
    in_cert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed upgrade raises TLSError (and closes the socket): the client
    of the page, told to trust another CA."""
    other = in_cert_folder / "other"
    other.mkdir()
    shutil.copyfile(make_cert_files(new_ca(), other).authority, in_cert_folder / "client.pem")
    example = load_example("servers.rst", "example-starttls")
    with pytest.RaisesGroup(pytest.RaisesExc(TLSError, match="not trusted"), flatten_subgroups=True):
        await example["main"]()
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------
# docs/servers.rst, "A file server"


async def test_the_file_server_example_sends_whole_files_and_the_rest_from_an_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    example = load_example("servers.rst", "example-file-server")
    await example["main"]()
    assert capsys.readouterr().out.splitlines() == ["13000 bytes; the rest from 6000: True"]
    assert (tmp_path / "files" / "hello.txt").stat().st_size == 13000


async def test_the_file_server_example_serves_tls_unchanged(in_cert_folder: Path) -> None:
    """The page's TLS variant: the same handler behind a TLS listener, the
    page's ``fetch`` with ``authority=``."""
    example = load_example("servers.rst", "example-file-server")
    folder = (in_cert_folder / "files").resolve()
    folder.mkdir()
    data = bytes(range(256)) * 4096 + b"tail"  # over a MiB: several chunks, many records
    (folder / "big.bin").write_bytes(data)
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        listener.set_certs(key="server.key", cert="server.pem")
        await listener.listen("127.0.0.1", 0, example["serve_file"], folder, nursery=nursery)
        port = listener.get_addr()[1]
        assert await example["fetch"]("localhost", port, "big.bin", authority="client.pem") == data
        assert await example["fetch"]("localhost", port, "big.bin", 1000, authority="client.pem") == data[1000:]
        await listener.shutdown(grace=5)


@pytest.mark.parametrize("name", ["../client.pem", "missing.txt", ""])
async def test_the_file_server_example_refuses_names_outside_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "client.pem").write_bytes(b"not to be served")
    example = load_example("servers.rst", "example-file-server")
    folder = (tmp_path / "files").resolve()
    folder.mkdir()
    async with trio.open_nursery() as nursery:
        listener = RSocket()
        await listener.listen("127.0.0.1", 0, example["serve_file"], folder, nursery=nursery)
        with pytest.raises(RSocketError, match="404 not found"):
            await example["fetch"](*listener.get_addr(), name)
        await listener.shutdown(grace=5)


# ----------------------------------------------------------------------------
# docs/servers.rst, "Listening": listen inside a nursery of one's own


async def test_the_listen_error_example_catches_the_port_in_use_with_except_star(
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = load_example("servers.rst", "example-listen-error")
    await example["main"]()
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1
    assert re.fullmatch(r"cannot serve: Cannot bind/listen on 127\.0\.0\.1:\d+: Address already in use", printed[0])


async def test_the_listen_error_example_server_raises_a_group_that_except_listen_error_misses() -> None:
    """What the page says: the ListenError leaves the nursery in a group,
    and only in a group."""
    example = load_example("servers.rst", "example-listen-error")
    async with trio.open_nursery() as nursery:
        first = RSocket()
        await first.listen("127.0.0.1", 0, example["echo"], nursery=nursery)
        with pytest.RaisesGroup(pytest.RaisesExc(ListenError, match="Address already in use")):
            try:
                await example["serve"](first.get_addr()[1])
            except ListenError:  # pragma: no cover - what the page says does not happen
                pytest.fail("a bare ListenError left the nursery")
        first.close()


# ----------------------------------------------------------------------------
# docs/deploying.rst, "Socket activation with systemd": the sample units


def unit_file(page: str, name: str) -> configparser.ConfigParser:
    """The systemd unit in the ``.. code-block:: ini`` named *name* on
    *page*, parsed the way systemd reads it: keys keep their case, ``$``
    and ``%`` are the unit's own, and a key may repeat (the last one wins
    here; none of the page's units repeats one)."""
    text, _ = code_block(page, name, ("ini",))
    unit = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text, source=f"docs/{page}:{name}")
    return unit


def test_the_socket_unit_passes_one_named_listening_socket_to_one_service() -> None:
    unit = unit_file("deploying.rst", "example-socket-unit")
    assert unit.sections() == ["Unit", "Socket", "Install"]
    socket_section = unit["Socket"]
    assert socket_section["ListenStream"] == "127.0.0.1:4100"
    assert socket_section["Accept"] == "no"  # the service accepts; systemd does not
    assert socket_section["FileDescriptorName"] == "echo"
    assert unit["Install"]["WantedBy"] == "sockets.target"


def test_the_service_unit_starts_python_itself_after_its_socket() -> None:
    unit = unit_file("deploying.rst", "example-service-unit")
    assert unit.sections() == ["Unit", "Service", "Install"]
    assert unit["Unit"]["Requires"] == unit["Unit"]["After"] == "rsocket-echo.socket"
    service = unit["Service"]
    # LISTEN_PID names the main process: ExecStart must exec Python, no shell.
    program, script = service["ExecStart"].split()
    assert program.endswith("/bin/python")
    assert script.endswith(".py")
    # The program runs without workers: SIGHUP would end it, SIGTERM (systemd's
    # default) is the one it waits for, and it needs the grace period (10 s).
    assert "ExecReload" not in service
    assert "KillSignal" not in service
    assert int(service["TimeoutStopSec"]) > 10


def test_the_workers_unit_reloads_with_sighup_and_gives_the_grace_period_time() -> None:
    unit = unit_file("deploying.rst", "example-workers-unit")
    assert unit.sections() == ["Unit", "Service", "Install"]
    assert "Requires" not in unit["Unit"]  # no .socket unit: the supervisor binds
    service = unit["Service"]
    program, script = service["ExecStart"].split()
    assert program.endswith("/bin/python")
    assert script.endswith(".py")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "KillSignal" not in service
    # run()'s default grace (10 s) plus the 5 s after which a worker is killed.
    assert int(service["TimeoutStopSec"]) > 15


def test_the_units_and_the_server_of_the_page_agree_on_the_address() -> None:
    """The server's ``listen`` is on the address the socket unit binds, so
    it adopts systemd's socket instead of binding its own."""
    code, _ = code_block("deploying.rst", "example-socket-activation")
    listen = re.search(r'\.listen\("([^"]+)", (\d+),', code)
    assert listen is not None
    host, port = listen.groups()
    assert unit_file("deploying.rst", "example-socket-unit")["Socket"]["ListenStream"] == f"{host}:{port}"
    page = (DOCS / "deploying.rst").read_text(encoding="utf-8")
    # The prose names the unit files by the names the units refer to each other by.
    assert "/etc/systemd/system/rsocket-echo.socket" in page
    assert "/etc/systemd/system/rsocket-echo.service" in page


# ----------------------------------------------------------------------------
# docs/deploying.rst, "Workers" and "Socket activation with systemd": the
# page's servers as real programs, in processes of their own

_PATIENCE = 60.0


class _Program:
    """A page's server run as a script (``python server.py``), its
    standard output read a line at a time (by a thread: two lines that come
    together are read into one buffer, where waiting on the pipe would not
    see the second)."""

    def __init__(self, command: list[str], cwd: Path, pass_fds: tuple[int, ...] = ()) -> None:
        self.process = subprocess.Popen(command, cwd=cwd, pass_fds=pass_fds, stdout=subprocess.PIPE, text=True)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self) -> str:
        try:
            line = self._lines.get(timeout=_PATIENCE)
        except queue.Empty:
            raise AssertionError(f"no output within {_PATIENCE} s") from None
        assert line is not None, f"the program ended (status {self.process.wait(_PATIENCE)})"
        return line

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(_PATIENCE)
        self._reader.join(_PATIENCE)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _script(page: str, name: str, folder: Path, port: int) -> Path:
    """The page's program *name* as a script in *folder*, on *port* instead of 4100."""
    code, _ = code_block(page, name)
    assert code.count("4100") == 1
    script = folder / "server.py"
    script.write_text(code.replace("4100", str(port)), encoding="utf-8")
    return script


def _echo_round_trip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=_PATIENCE) as client:
        client.sendall(b"ping\n")
        return client.makefile("rb").readline()


def test_the_workers_example_serves_one_port_from_two_workers_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The page's program with port 0: both workers report the one real
    port, echo through it, keep their numbers over a SIGHUP, and SIGTERM
    ends ``run`` (exit status 0)."""
    program = _Program([sys.executable, str(_script("deploying.rst", "example-workers", tmp_path, 0))], tmp_path)
    try:
        serving = re.compile(r"worker (\d) serving on (\[\('127\.0\.0\.1', \d+\)\])")
        first = [serving.fullmatch(program.line()) for _ in range(2)]
        assert all(first), first
        assert sorted(found[1] for found in first if found) == ["0", "1"]
        addresses = {found[2] for found in first if found}
        assert len(addresses) == 1  # one socket, the supervisor's
        ((_, port),) = ast.literal_eval(addresses.pop())
        assert port != 0
        assert _echo_round_trip(port) == b"ping\n"
        program.process.send_signal(signal.SIGHUP)
        again = [serving.fullmatch(program.line()) for _ in range(2)]
        assert sorted(found[1] for found in again if found) == ["0", "1"]  # the numbers are kept
        assert _echo_round_trip(port) == b"ping\n"
        program.process.send_signal(signal.SIGTERM)
        assert program.process.wait(_PATIENCE) == 0
    finally:
        program.close()


# Puts the listening socket at descriptor 3 and sets LISTEN_* for its own
# pid, then execs the program: what systemd does for an Accept=no service.
_SYSTEMD = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); "
    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='echo'); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def test_the_socket_activation_example_adopts_the_socket_systemd_passes(tmp_path: Path) -> None:
    """The page's program started as the page's units start it: it adopts
    the socket (it could not bind the address: the socket is listening),
    prints the line the page says, and stops gracefully on SIGTERM."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        script = _script("deploying.rst", "example-socket-activation", tmp_path, port)
        program = _Program(
            [sys.executable, "-c", _SYSTEMD, str(held.fileno()), str(script)], tmp_path, pass_fds=(held.fileno(),)
        )
    try:
        assert program.line() == f"echo: ('127.0.0.1', {port}), adopted: True"
        assert _echo_round_trip(port) == b"ping\n"
        # systemctl stop: SIGTERM, with a connection in progress that then ends.
        with socket.create_connection(("127.0.0.1", port), timeout=_PATIENCE) as client:
            client.sendall(b"one\n")
            assert client.makefile("rb").readline() == b"one\n"
            program.process.send_signal(signal.SIGTERM)
            client.sendall(b"two\n")
            assert client.makefile("rb").readline() == b"two\n"
        assert program.line() == "stopped; 0 connections cut short"
        assert program.process.wait(_PATIENCE) == 0
    finally:
        program.close()
    page = (DOCS / "deploying.rst").read_text(encoding="utf-8")
    assert "It prints ``echo: ('127.0.0.1', 4100), adopted: True``" in page
