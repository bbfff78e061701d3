"""What the documentation shows a program printing is what it prints.

The convention in the pages: an rst comment (invisible in the built docs)
right before a code block marks the block as output that a test here
reproduces::

    .. checked-output: cli-connect

    .. code-block:: console

       $ trio-rsocket connect 127.0.0.1 1
       trio-rsocket connect: Cannot connect socket to 127.0.0.1:1: Connection refused

Each marked block has one test here, registered under its id with
:func:`checks`; the tests below the helpers check that every marker has a
test and that every block showing output on :data:`CHECKED_PAGES` is marked,
so a page cannot show output that nothing checks.

Reading a block:

* In a ``console`` block, a line starting with ``$`` is a command; the lines
  under it are what it prints (standard output and standard error, merged).
  The command is run as shown, with ``bash``, in a temporary directory, with
  this Python's ``bin`` folder first on ``PATH`` (so ``python`` and
  ``trio-rsocket`` are the ones under test).  A line ``^C`` is where the test
  sends SIGINT.
* A line that is only ``...`` stands for one or more lines, and ``...``
  inside a line for any text (doctest's ellipsis).
* The pages use fixed ports (9000, 9443).  A server a page starts on one of
  them is started on port 0 instead, and the commands that talk to it get
  the port it printed; port numbers in the output (``host:port``, and the
  tuple ``get_addr()`` returns) are compared as "some port".  Each test says
  what else may vary (times, the order of concurrent lines).

Nothing here reaches beyond loopback, and every wait is bounded.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

#: Pages on which every block that shows output must be checked here.
CHECKED_PAGES = ("index.rst", "tutorial.rst", "cli.rst")

# Bound on every command and every wait for a line (seconds).  Generous for
# a loaded machine; a passing run takes a fraction of it.
TIMEOUT = 60.0

_MARKER = re.compile(r"^\.\. checked-output: (?P<id>[\w-]+)\s*$")
_CODE_BLOCK = re.compile(r"^(?P<indent> *)\.\. code-block:: (?P<language>\S+)\s*$")


# ----------------------------------------------------------------------------
# Reading the pages


@dataclass(frozen=True)
class Block:
    """A ``code-block`` of a page."""

    page: str
    line: int  # of the block's first line, 1-based
    language: str
    name: str | None  # its :name: option
    checked: str | None  # the id of the checked-output marker before it
    lines: tuple[str, ...]


def blocks(page: str) -> list[Block]:
    """Every ``code-block`` on *page*, in order."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    for number, line in enumerate(lines):
        directive = _CODE_BLOCK.match(line)
        if directive is None:
            continue
        indent = len(directive["indent"])
        options: dict[str, str] = {}
        body = number + 1
        while body < len(lines) and (option := re.match(r"^ +:(\w+):\s*(.*)$", lines[body])):
            options[option[1]] = option[2].strip()
            body += 1
        end = body
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
            end += 1
        before = [earlier for earlier in lines[:number] if earlier.strip()]
        marker = _MARKER.match(before[-1]) if before else None
        text = textwrap.dedent("\n".join(lines[body:end])).strip("\n")
        found.append(
            Block(
                page=page,
                line=body + 1,
                language=directive["language"],
                name=options.get("name"),
                checked=marker["id"] if marker else None,
                lines=tuple(text.splitlines()),
            )
        )
    return found


def shown(page: str, checked: str) -> Block:
    """The block on *page* marked ``.. checked-output: <checked>``."""
    for block in blocks(page):
        if block.checked == checked:
            return block
    raise AssertionError(f"no block marked checked-output: {checked} in docs/{page}")


def named(page: str, name: str) -> Block:
    """The block on *page* with ``:name: <name>``."""
    for block in blocks(page):
        if block.name == name:
            return block
    raise AssertionError(f"no code block named {name!r} in docs/{page}")


def session(block: Block) -> list[tuple[str, list[str]]]:
    """A console block as (command, the lines it prints) pairs."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.lines:
        if line.startswith("$ "):
            command = re.sub(r"\s+#.*$", "", line[2:]).strip()  # "# see it work"
            steps.append((command, []))
        else:
            assert steps, f"docs/{block.page}:{block.line}: output before any command"
            steps[-1][1].append(line)
    return steps


# ----------------------------------------------------------------------------
# Comparing

Normalizer = Callable[[str], str]

_PORT = re.compile(r"(?<=[\w\]]:)\d+|(?<=', )\d+(?=\))")


def any_port(line: str) -> str:
    """Port numbers (``127.0.0.1:9000``, ``('127.0.0.1', 9000)``) as PORT."""
    return _PORT.sub("PORT", line)


def any_time(line: str) -> str:
    """Durations (``6.11 ms``, ``0.101 s``) as TIME."""
    return re.sub(r"\b\d+(\.\d+)? (ms|s)\b", r"TIME \2", line)


def any_process(line: str) -> str:
    """A process's ids (``(pid 4242, uid 1000)``) as PID and UID."""
    return re.sub(r"\(pid \d+, uid \d+\)", "(pid PID, uid UID)", line)


def _line_matches(expected: str, actual: str) -> bool:
    if "..." not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def _matches(expected: Sequence[str], actual: Sequence[str]) -> bool:
    if not expected:
        return not actual
    if expected[0].strip() == "...":  # one or more lines
        return any(_matches(expected[1:], actual[skip:]) for skip in range(1, len(actual) + 1))
    return bool(actual) and _line_matches(expected[0], actual[0]) and _matches(expected[1:], actual[1:])


def assert_shows(
    block: Block, expected: Sequence[str], actual: Sequence[str], normalize: Sequence[Normalizer] = (any_port,)
) -> None:
    """*actual* is what *expected* (lines of *block*) shows, after *normalize*."""

    def normalized(lines: Sequence[str]) -> list[str]:
        result = []
        for line in lines:
            for function in normalize:
                line = function(line)
            result.append(line.rstrip())
        return result

    want, got = normalized(expected), normalized(actual)
    assert _matches(want, got), (
        f"docs/{block.page}:{block.line} shows\n"
        + textwrap.indent("\n".join(expected), "    ")
        + "\nbut the program printed\n"
        + textwrap.indent("\n".join(actual), "    ")
    )


# ----------------------------------------------------------------------------
# Running


def environment() -> dict[str, str]:
    """This Python's python and trio-rsocket first on PATH; a fixed width for
    argparse's usage lines; output unbuffered, so that standard output and
    standard error interleave as on a terminal."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def with_ports(command: str, ports: dict[int, int]) -> str:
    """*command* with the page's ports replaced by the real ones."""
    for shown_port, real_port in ports.items():
        command = re.sub(rf"\b{shown_port}\b", str(real_port), command)
    return command


def run_shell(commands: Sequence[str], folder: Path) -> list[str]:
    """Run *commands* one after the other in one bash, as typed at a prompt
    (so ``echo $?`` sees the previous status); return what they printed."""
    result = subprocess.run(
        ["bash", "-c", "\n".join(commands)],
        cwd=folder,
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return result.stdout.splitlines()


# A shell's background job ignores SIGINT, and a Python started with SIGINT
# ignored never raises KeyboardInterrupt: so that Ctrl-C reaches the command
# as a terminal delivers it, the command is started by a Python that sets
# SIGINT back to its default and then becomes bash (no fork-time hook, which
# is not safe in a process with threads).
_WITH_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp('bash', ['bash', '-c', 'exec ' + sys.argv[1]])"
)


class Background:
    """A command running on its own, as in a terminal of its own."""

    def __init__(self, command: str, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WITH_DEFAULT_SIGINT, command],
            cwd=folder,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._pending = {self.process.stdout: b"", self.process.stderr: b""}
        self.first_line = ""  # set by port()

    def read_line(self, stream: str = "stdout") -> str:
        """The next line the command writes to *stream* (within TIMEOUT)."""
        pipe = self.process.stdout if stream == "stdout" else self.process.stderr
        assert pipe is not None
        for _ in range(10_000):  # bounded: each round reads something or fails
            if b"\n" in self._pending[pipe]:
                line, _, self._pending[pipe] = self._pending[pipe].partition(b"\n")
                return line.decode()
            ready, _, _ = select.select([pipe], [], [], TIMEOUT)
            assert ready, f"no line on {stream} within {TIMEOUT} s"
            chunk = os.read(pipe.fileno(), 65536)
            assert chunk, f"{stream} ended; so far: {self._pending[pipe]!r}"
            self._pending[pipe] += chunk
        raise AssertionError(f"no end of line on {stream}")

    def port(self) -> int:
        """The port in the first line the command printed (a server's address)."""
        line = self.read_line()
        found = re.search(r"(?:[\d\]]:|', )(\d+)", line)
        assert found, f"no port in {line!r}"
        self.first_line = line
        return int(found[1])

    def interrupt(self) -> tuple[str, str, int]:
        """Ctrl-C: what the command printed after it, and its exit status."""
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=TIMEOUT)
        return (
            (self._pending[self.process.stdout] + out).decode(),
            (self._pending[self.process.stderr] + err).decode(),
            self.process.returncode,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=TIMEOUT)


@contextmanager
def background(command: str, folder: Path) -> Iterator[Background]:
    running = Background(command, folder)
    try:
        yield running
    finally:
        running.stop()


def program(page: str, name: str, folder: Path, file_name: str, ports: dict[int, int]) -> Path:
    """Write the page's program *name* to *folder*/*file_name*, with the real ports."""
    path = folder / file_name
    path.write_text(with_ports("\n".join(named(page, name).lines), ports) + "\n", encoding="utf-8")
    return path


@contextmanager
def tls_echo_server(folder: Path) -> Iterator[int]:
    """cli.rst's TLS echo server, started as the page shows (certificates by
    ``python -m trustme`` in *folder*); yields its port."""
    (trustme, trustme_output), (serve, serve_output) = session(named("cli.rst", "cli-echo-tls"))
    assert trustme == "python -m trustme"
    assert not trustme_output
    assert not serve_output
    subprocess.run(
        trustme.split(), cwd=folder, env=environment(), stdout=subprocess.DEVNULL, timeout=TIMEOUT, check=True
    )
    with background(with_ports(serve, {9443: 0}), folder) as server:
        yield server.port()


@contextmanager
def tutorial_tls_server(folder: Path) -> Iterator[int]:
    """The tutorial's first server with the TLS section's ``set_certs`` line
    (certificates by ``python -m trustme``, as that section makes them);
    yields its port."""
    trustme = [block for block in blocks("tutorial.rst") if block.lines == ("$ python -m trustme",)]
    assert len(trustme) == 1
    subprocess.run(
        ["python", "-m", "trustme"],
        cwd=folder,
        env=environment(),
        stdout=subprocess.DEVNULL,
        timeout=TIMEOUT,
        check=True,
    )
    server = named("tutorial.rst", "tutorial-server").lines
    fragment = next(
        block for block in blocks("tutorial.rst") if any("listener.set_certs(" in line for line in block.lines)
    )
    created, set_certs, listen = fragment.lines
    assert created in [line.strip() for line in server]
    assert with_ports(listen, {9443: 9000}) in [line.strip() for line in server]
    code = []
    for line in server:
        code.append(line)
        if line.strip() == created:
            code.append(line.replace(created, set_certs))
    (folder / "tls_server.py").write_text(with_ports("\n".join(code), {9000: 0}) + "\n", encoding="utf-8")
    with background("python tls_server.py", folder) as running:
        yield running.port()


@contextmanager
def plain_echo_server(folder: Path) -> Iterator[int]:
    """cli.rst's echo server, started as the page shows; yields its port."""
    ((serve, _),) = session(shown("cli.rst", "cli-echo"))
    with background(with_ports(serve, {9000: 0}), folder) as server:
        yield server.port()


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


# ----------------------------------------------------------------------------
# Which test checks which block

CHECKS: set[str] = set()
F = TypeVar("F", bound=Callable[..., object])


def checks(checked: str) -> Callable[[F], F]:
    """Register the decorated test as the check of the block *checked*."""

    def register(test: F) -> F:
        assert checked not in CHECKS, f"two tests check {checked}"
        CHECKS.add(checked)
        return test

    return register


def test_every_marked_block_has_a_test_and_every_test_a_block() -> None:
    markers: list[str] = []
    for page in sorted(DOCS.glob("*.rst")):
        text = page.read_text(encoding="utf-8")
        page_markers = [found["id"] for found in map(_MARKER.match, text.splitlines()) if found]
        attached = [block.checked for block in blocks(page.name) if block.checked]
        assert page_markers == attached, f"docs/{page.name}: a checked-output marker not right before a code block"
        markers += page_markers
    assert len(markers) == len(set(markers)), f"a checked-output id used twice: {sorted(markers)}"
    assert set(markers) == CHECKS


@pytest.mark.parametrize("page", CHECKED_PAGES)
def test_every_block_that_shows_output_is_checked(page: str) -> None:
    """Output in a console block, and any text block but a command synopsis,
    is marked; no ``::`` literal block escapes the rule."""
    for block in blocks(page):
        if block.checked:
            continue
        where = f"docs/{page}:{block.line}"
        if block.language == "console":
            output = [line for line in block.lines if not line.startswith("$ ")]
            assert not output, f"{where}: output not checked by a test: {output}"
        elif block.language == "text":
            assert all(line.startswith("trio-rsocket ") for line in block.lines), f"{where}: not checked"
    text = (DOCS / page).read_text(encoding="utf-8")
    literal = [line for line in text.splitlines() if line.rstrip().endswith("::") and not line.startswith("..")]
    assert not literal, f"docs/{page}: a '::' literal block cannot be checked; use a marked code-block: {literal}"


# ----------------------------------------------------------------------------
# docs/tutorial.rst


@checks("tutorial-server")
def test_tutorial_first_server_prints_its_address_and_ends_on_ctrl_c_with_a_short_traceback(tmp_path: Path) -> None:
    block = shown("tutorial.rst", "tutorial-server")
    ((command, output),) = session(block)
    assert command == "python server.py"
    program("tutorial.rst", "tutorial-server", tmp_path, "server.py", {9000: 0})
    before, after = output[: output.index("^C")], output[output.index("^C") + 1 :]
    with background(command, tmp_path) as server:
        first = [server.read_line() for _ in before]
        assert_shows(block, before, first)
        # Ctrl-C comes when the server is idle, as when a user presses it:
        # after one connection has been served, main() has long returned.
        port = int(re.findall(r"\d+", first[0])[-1])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"hello")
            echoed = b""
            for _ in range(5):  # at least a byte a round
                echoed += client.recv(5 - len(echoed))
                if len(echoed) == 5:
                    break
            assert echoed == b"hello"
        out, err, status = server.interrupt()
    assert_shows(block, after, (out + err).splitlines())
    assert status == -signal.SIGINT  # as any Python program that Ctrl-C ended


@checks("tutorial-client")
def test_tutorial_client_prints_the_echoed_line(tmp_path: Path) -> None:
    block = shown("tutorial.rst", "tutorial-client")
    ((command, output),) = session(block)
    program("tutorial.rst", "tutorial-server", tmp_path, "server.py", {9000: 0})
    with background("python server.py", tmp_path) as server:
        program("tutorial.rst", "tutorial-client", tmp_path, "client.py", {9000: server.port()})
        assert_shows(block, output, run_shell([command], tmp_path))


@checks("tutorial-refused")
def test_tutorial_refused_connect_prints_the_message_and_the_errno(tmp_path: Path) -> None:
    block = shown("tutorial.rst", "tutorial-refused")
    ((command, output),) = session(block)
    with refused_port() as port:
        program("tutorial.rst", "tutorial-refused", tmp_path, "refused.py", {9000: port})
        assert_shows(block, output, run_shell([command], tmp_path))


@checks("tutorial-tls-client")
def test_tutorial_tls_client_prints_the_version_and_cipher(tmp_path: Path) -> None:
    block = shown("tutorial.rst", "tutorial-tls-client")
    ((command, output),) = session(block)
    with tutorial_tls_server(tmp_path) as port:
        program("tutorial.rst", "tutorial-tls-client", tmp_path, "tls_client.py", {9443: port})
        assert_shows(block, output, run_shell([command], tmp_path))


@checks("tutorial-tls-untrusted")
def test_tutorial_tls_client_without_its_authority_ends_with_certificate_not_trusted(tmp_path: Path) -> None:
    """The page: "With sock.set_tls() in place of sock.set_certs(authority=...)
    ... a traceback whose last line is"."""
    block = shown("tutorial.rst", "tutorial-tls-untrusted")
    with tutorial_tls_server(tmp_path) as port:
        path = program("tutorial.rst", "tutorial-tls-client", tmp_path, "tls_client.py", {9443: port})
        code = path.read_text(encoding="utf-8")
        without = code.replace('sock.set_certs(authority="client.pem")', "sock.set_tls()")
        assert without != code
        path.write_text(without, encoding="utf-8")
        printed = run_shell(["python tls_client.py"], tmp_path)
    assert printed[0] == "Traceback (most recent call last):"
    assert_shows(block, block.lines, printed[-1:])


# ----------------------------------------------------------------------------
# docs/cli.rst


def _clients_in_any_order(lines: Sequence[str]) -> list[str]:
    """The demo's three clients run at once: compare each run of their lines
    as a sorted list, keeping everything else in place."""
    result: list[str] = []
    run: list[str] = []
    for line in lines:
        if line.startswith("  client "):
            run.append(line)
        else:
            result += [*sorted(run), line]
            run = []
    return result + sorted(run)


def _any_version(line: str) -> str:
    return re.sub(r"^trio-rsocket \S+ demo:", "trio-rsocket VERSION demo:", line)


@checks("cli-demo")
def test_cli_demo_prints_the_sample_output(tmp_path: Path) -> None:
    """Ports, times and the version may differ, and the order in which the
    clients' lines come."""
    block = shown("cli.rst", "cli-demo")
    ((command, output),) = session(block)
    printed = run_shell([command, "echo status $?"], tmp_path)
    assert printed[-1] == "status 0"

    def normalized(lines: Sequence[str]) -> list[str]:
        return _clients_in_any_order([_any_version(any_time(any_port(line.rstrip()))) for line in lines])

    assert_shows(block, normalized(output), normalized(printed[:-1]), normalize=())


@checks("cli-echo")
def test_cli_echo_prints_its_address_a_line_per_connection_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    block = shown("cli.rst", "cli-echo")
    ((command, output),) = session(block)
    before, after = output[: output.index("^C")], output[output.index("^C") + 1 :]
    with background(with_ports(command, {9000: 0}), tmp_path) as server:
        port = server.port()
        # "here a client sent hello and closed"
        assert run_shell([f"echo hello | trio-rsocket connect 127.0.0.1 {port}"], tmp_path) == ["hello"]
        printed = [server.first_line] + [server.read_line("stderr") for _ in before[1:]]
        assert_shows(block, before, printed)
        out, err, status = server.interrupt()
    assert_shows(block, after, (out + err).splitlines())
    assert status == 0


@contextmanager
def unix_echo_server(folder: Path) -> Iterator[None]:
    """cli.rst's echo server on a Unix socket, started as the page shows, in
    *folder*; yields once it listens."""
    ((serve, _),) = session(shown("cli.rst", "cli-echo-unix"))
    with background(serve, folder) as server:
        server.first_line = server.read_line()
        yield


@checks("cli-echo-unix")
def test_cli_echo_on_a_unix_socket_prints_its_path_numbered_clients_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    block = shown("cli.rst", "cli-echo-unix")
    ((command, output),) = session(block)
    before, after = output[: output.index("^C")], output[output.index("^C") + 1 :]
    with background(command, tmp_path) as server:
        printed = [server.read_line()]
        # "a client sent hello and closed", as in the TCP example above.
        assert run_shell(["echo hello | trio-rsocket connect --unix echo.sock"], tmp_path) == ["hello"]
        printed += [server.read_line("stderr") for _ in before[1:]]
        assert_shows(block, before, printed, normalize=(any_process,))
        out, err, status = server.interrupt()
    assert_shows(block, after, (out + err).splitlines(), normalize=())
    assert status == 0
    assert not (tmp_path / "echo.sock").exists()


@checks("cli-connect-unix")
def test_cli_connect_over_a_unix_socket_prints_what_the_page_shows(tmp_path: Path) -> None:
    block = shown("cli.rst", "cli-connect-unix")
    steps = session(block)
    with unix_echo_server(tmp_path):
        printed = run_shell([command for command, _ in steps], tmp_path)
    assert_shows(block, [line for _, output in steps for line in output], printed, normalize=())


@checks("cli-connect")
def test_cli_connect_prints_what_the_page_shows(tmp_path: Path) -> None:
    block = shown("cli.rst", "cli-connect")
    steps = session(block)
    with plain_echo_server(tmp_path) as plain, tls_echo_server(tmp_path) as tls:
        printed = run_shell([with_ports(command, {9000: plain, 9443: tls}) for command, _ in steps], tmp_path)
    assert_shows(block, [line for _, output in steps for line in output], printed)
