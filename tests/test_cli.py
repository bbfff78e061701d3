"""The trio-rsocket command, run as a user runs it: in subprocesses, over loopback."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from trio_rsocket._cli import main
from trio_rsocket._command import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING_PACKAGE,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_TLS,
    EXIT_USAGE,
)
from trio_rsocket.testing import CertFiles

from .conftest import has_ipv6

# Generous bounds on how long a subprocess may take before the test gives up;
# they bound a hang, they do not time anything.
PATIENCE = 60.0

COMMAND = [sys.executable, "-m", "trio_rsocket"]


def run_cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*COMMAND, *args], input=stdin, capture_output=True, timeout=PATIENCE, check=False, env=env)


def read_line(stream: IO[bytes]) -> bytes:
    """One line from a subprocess's pipe, or fail if none comes in time."""
    ready, _, _ = select.select([stream], [], [], PATIENCE)
    assert ready, "the subprocess printed nothing"
    return stream.readline()


@contextmanager
def echo_server(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    """``trio-rsocket echo`` in a subprocess: yields it, and the host and port it printed."""
    with echo_process(*args) as server:
        assert server.stdout is not None
        line = read_line(server.stdout).decode()
        found = re.search(r"listening on \[?([^\]\s]+?)\]?:(\d+) ", line)
        assert found, f"no address in {line!r}"
        yield server, found[1], int(found[2])


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory for Unix sockets: pytest's tmp_path can be longer than
    the 107 bytes a socket's path may have."""
    directory = tempfile.mkdtemp(prefix="rs-cli-")
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def unix_echo_server(path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``trio-rsocket echo --unix PATH`` in a subprocess: yields it and the line it printed first."""
    with echo_process("--unix", str(path)) as server:
        assert server.stdout is not None
        yield server, read_line(server.stdout).decode()


@contextmanager
def echo_process(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    server = subprocess.Popen([*COMMAND, "echo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        try:
            server.wait(PATIENCE)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            for pipe in (server.stdout, server.stderr):
                if pipe is not None:
                    pipe.close()


@contextmanager
def interactive_connect(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``trio-rsocket connect`` in a subprocess, its pipes open for the test."""
    client = subprocess.Popen(
        [*COMMAND, "connect", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        yield client
    finally:
        if client.poll() is None:
            client.kill()
        client.communicate()


def echo_one_line(client: subprocess.Popen[bytes], line: bytes) -> bytes:
    """Send *line*, read the line that comes back, then end standard input
    and wait for the client to exit."""
    assert client.stdin is not None
    assert client.stdout is not None
    client.stdin.write(line)
    client.stdin.flush()
    echoed = read_line(client.stdout)
    # communicate() closes standard input; TLS has no half-close, so the
    # client then closes once the server has been quiet for --wait.
    client.communicate(timeout=PATIENCE)
    return echoed


@contextmanager
def silent_listener() -> Iterator[int]:
    """A listening TCP socket that accepts (through its backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


# ----------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------


def test_demo_exits_0_after_echoing_every_message_intact() -> None:
    result = run_cli("demo")
    output = result.stdout.decode()
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert re.search(r"^summary: .* (\d+)/\1 echoed intact", output, flags=re.MULTILINE), output
    assert output.rstrip().endswith("-> ok")


def test_demo_without_trustme_exits_5_saying_how_to_install_it_from_a_clone(tmp_path: Path) -> None:
    # A trustme that cannot be imported, first on the path.
    (tmp_path / "trustme.py").write_text("raise ImportError('hidden from this test')\n")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_cli("demo", env={**os.environ, "PYTHONPATH": path})
    assert result.returncode == EXIT_MISSING_PACKAGE
    # trio-rsocket is not on a package index: the hint that works is the clone's.
    assert b"pip install '.[testing]' in a clone of trio-rsocket" in result.stderr
    assert b"Traceback" not in result.stderr


def test_demo_into_a_pipe_closed_early_leaves_without_a_traceback() -> None:
    # As `trio-rsocket demo | head -1`.
    demo = subprocess.Popen([*COMMAND, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert demo.stdout is not None
        assert read_line(demo.stdout).startswith(b"trio-rsocket ")
        demo.stdout.close()
        _, errors = demo.communicate(timeout=PATIENCE)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert b"Traceback" not in errors, errors.decode()


# ----------------------------------------------------------------------
# echo + connect
# ----------------------------------------------------------------------


def test_echo_and_connect_round_trip_over_plain_tcp() -> None:
    message = b"hello\nover plain TCP\n"
    with echo_server() as (_, host, port):
        result = run_cli("connect", host, str(port), stdin=message)
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert result.stdout == message


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this machine")
def test_echo_and_connect_round_trip_over_ipv6_loopback() -> None:
    with echo_server("--host", "::1") as (_, host, port):
        result = run_cli("connect", host, str(port), stdin=b"over IPv6")
    assert host == "::1"
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert result.stdout == b"over IPv6"


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this machine")
def test_connect_accepts_the_bracketed_ipv6_address_that_echo_prints() -> None:
    # echo prints "listening on [::1]:PORT"; the helper reads the address inside.
    with echo_server("--host", "::1") as (_, host, port):
        result = run_cli("connect", f"[{host}]", str(port), stdin=b"brackets")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert result.stdout == b"brackets"


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback on this machine")
def test_echo_listens_on_the_bracketed_ipv6_address_it_prints() -> None:
    with echo_server("--host", "[::1]") as (_, host, port):
        result = run_cli("connect", "[::1]", str(port), stdin=b"brackets both ways")
    assert host == "::1"
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert result.stdout == b"brackets both ways"


def test_connect_with_timeout_inf_never_gives_up_and_works() -> None:
    with echo_server() as (_, host, port):
        result = run_cli("connect", "--timeout", "inf", host, str(port), stdin=b"no time limit")
    assert result.returncode == EXIT_OK, result.stderr.decode()
    assert result.stdout == b"no time limit"


def test_echo_and_connect_round_trip_over_tls(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    with (
        echo_server("--cert", str(files.server_cert), "--key", str(files.server_key)) as (_, host, port),
        interactive_connect(host, str(port), "--ca", str(files.authority), "--wait", "0.1") as client,
    ):
        echoed = echo_one_line(client, b"hello over TLS\n")
    assert echoed == b"hello over TLS\n"
    assert client.returncode == EXIT_OK


def test_echo_prints_one_line_per_connection_on_stderr() -> None:
    with echo_server() as (server, host, port):
        run_cli("connect", host, str(port), stdin=b"12345")
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=PATIENCE)
    assert re.search(rb"connected\n.*closed after echoing 5 bytes", errors), errors


def test_echo_stops_with_status_0_on_ctrl_c() -> None:
    with echo_server() as (server, _, _):
        server.send_signal(signal.SIGINT)
        server.wait(PATIENCE)
    assert server.returncode == EXIT_OK


def test_echo_with_workers_serves_from_worker_processes_and_stops_with_status_0_on_ctrl_c() -> None:
    with echo_server("--workers", "2") as (server, host, port):
        result = run_cli("connect", host, str(port), stdin=b"through a worker\n")
        assert result.stdout == b"through a worker\n"
        server.send_signal(signal.SIGINT)
        output, errors = server.communicate(timeout=PATIENCE)
    assert server.returncode == EXIT_OK
    # Any other worker that got as far says it listens on the same port (the
    # first line was read already).
    ports = re.findall(rb"listening on 127\.0\.0\.1:(\d+) \(plain TCP, worker [01], pid \d+\)", output)
    assert all(int(other) == port for other in ports), output
    assert re.search(rb"Stopping the workers \(SIGINT\)", errors), errors
    assert b"Traceback" not in errors


def test_echo_with_0_workers_is_a_usage_error() -> None:
    result = run_cli("echo", "--workers", "0")
    assert result.returncode == EXIT_USAGE
    assert b"workers must be at least 1, not 0" in result.stderr


def test_echo_on_a_port_in_use_exits_1_with_a_message() -> None:
    with silent_listener() as port:
        result = run_cli("echo", "--port", str(port))
    assert result.returncode == EXIT_FAILED
    assert b"Cannot bind/listen on 127.0.0.1:%d: Address already in use" % port in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_echo_with_a_missing_certificate_file_exits_3_naming_it(tmp_path: Path, workers: str) -> None:
    missing = tmp_path / "missing.pem"
    result = run_cli("echo", "--cert", str(missing), "--key", str(missing), "--workers", workers)
    assert result.returncode == EXIT_TLS
    assert str(missing).encode() in result.stderr


# ----------------------------------------------------------------------
# Unix sockets
# ----------------------------------------------------------------------


def test_echo_and_connect_round_trip_over_a_unix_socket(short_dir: Path) -> None:
    path = short_dir / "echo.sock"
    message = b"hello\nover a Unix socket\n"
    with unix_echo_server(path) as (server, line):
        assert line == f"echo server listening on {path} (Unix socket); Ctrl-C stops it\n"
        # The library's default mode: the owner only.
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with interactive_connect("--unix", str(path)) as connect:
            out, err = connect.communicate(message, timeout=PATIENCE)
        result = subprocess.CompletedProcess(connect.args, connect.returncode, out, err)
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=PATIENCE)
    assert result.returncode == EXIT_OK, result.stderr.decode()
    # End of standard input went over as end of file: the server echoed it all and closed.
    assert result.stdout == message
    assert server.returncode == EXIT_OK
    # Each client is named by the process at the other end: here, run_cli's.
    client = re.search(rb"client 1 \(pid (\d+), uid (\d+)\) connected\n", errors)
    assert client, errors
    assert int(client[1]) == connect.pid
    assert int(client[2]) == os.geteuid()
    assert b"client 1 (pid %s, uid %s) closed after echoing %d bytes" % (client[1], client[2], len(message)) in errors
    # Stopped, the server took its socket file with it.
    assert not path.exists()


def test_echo_on_a_unix_socket_where_a_server_listens_exits_1_and_leaves_it_alone(short_dir: Path) -> None:
    path = short_dir / "busy.sock"
    with unix_echo_server(path) as (server, _):
        result = run_cli("echo", "--unix", str(path))
        assert result.returncode == EXIT_FAILED
        assert (
            result.stderr.decode().strip().endswith(f"echo: Cannot bind/listen on {path}: a server is listening there")
        )
        # The first server still has its socket, and still answers.
        echoed = run_cli("connect", "--unix", str(path), stdin=b"still mine")
        assert echoed.stdout == b"still mine"
        assert server.poll() is None


def test_connect_to_a_missing_unix_socket_exits_1_saying_why_once(short_dir: Path) -> None:
    path = short_dir / "nobody.sock"
    result = run_cli("connect", "--unix", str(path))
    assert result.returncode == EXIT_FAILED
    last_line = result.stderr.decode().strip().splitlines()[-1]
    assert f" connect: Cannot connect socket to {path}" in last_line
    assert last_line.count("No such file or directory") == 1


def test_a_unix_socket_path_too_long_is_a_usage_error_saying_how_long_is_allowed() -> None:
    path = "/tmp/" + "x" * 200
    for command in ("echo", "connect"):
        result = run_cli(command, "--unix", path)
        assert result.returncode == EXIT_USAGE
        assert b"at most 107 bytes" in result.stderr
        assert b"Traceback" not in result.stderr


def test_connect_usage_offers_host_port_or_unix_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["connect", "--help"]) == EXIT_OK
    usage = " ".join(capsys.readouterr().out.split("\n\n")[0].split())
    assert usage == (
        "usage: trio-rsocket connect [-h] [--tls] [--ca FILE] [--insecure] [--timeout S] [--wait S] "
        "(HOST PORT | --unix PATH)"
    )


# ----------------------------------------------------------------------
# connect failures
# ----------------------------------------------------------------------


def test_connect_to_a_closed_port_exits_1_saying_refused() -> None:
    # Bound but not listening: the kernel refuses connections to it, and no
    # other process can take the port meanwhile.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        result = run_cli("connect", "127.0.0.1", str(port))
    assert result.returncode == EXIT_FAILED
    last_line = result.stderr.decode().strip().splitlines()[-1]
    assert f" connect: Cannot connect socket to 127.0.0.1:{port}" in last_line
    # The OS's words, once, whether the library's message has them or not.
    assert last_line.count("Connection refused") == 1


def test_connect_to_an_untrusted_certificate_exits_3(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    with echo_server("--cert", str(files.server_cert), "--key", str(files.server_key)) as (_, host, port):
        # The system CA store does not know the test CA.
        result = run_cli("connect", "--tls", host, str(port))
    assert result.returncode == EXIT_TLS
    assert b"TLS" in result.stderr


def test_connect_insecure_accepts_an_untrusted_certificate(rsocket_cert_files: CertFiles) -> None:
    files = rsocket_cert_files
    with (
        echo_server("--cert", str(files.server_cert), "--key", str(files.server_key)) as (_, host, port),
        interactive_connect("--insecure", host, str(port), "--wait", "0.1") as client,
    ):
        echoed = echo_one_line(client, b"anyone there?\n")
    assert echoed == b"anyone there?\n"
    assert client.returncode == EXIT_OK


def test_connect_with_a_missing_ca_file_exits_3_naming_it_without_connecting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        result = run_cli("connect", "--ca", str(missing), "127.0.0.1", str(listener.getsockname()[1]))
        # Nothing reached the listener's backlog: no connection was tried.
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.returncode == EXIT_TLS
    last_line = result.stderr.decode().strip().splitlines()[-1]
    assert last_line.endswith(f" connect: cannot use --ca {missing}: No such file or directory")


def test_connect_with_a_ca_file_that_is_not_pem_exits_3_naming_it(tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate\n")
    result = run_cli("connect", "--ca", str(not_pem), "127.0.0.1", "9")
    assert result.returncode == EXIT_TLS
    assert f"cannot use --ca {not_pem}: ".encode() in result.stderr
    assert b"TLS with" not in result.stderr


def test_connect_times_out_with_status_4_when_the_handshake_never_ends() -> None:
    with silent_listener() as port:
        result = run_cli("connect", "--tls", "--timeout", "0.2", "127.0.0.1", str(port))
    assert result.returncode == EXIT_TIMEOUT
    assert b"timed out" in result.stderr


def test_connect_to_an_unknown_host_exits_1() -> None:
    # .invalid never resolves (RFC 2606), so nothing is looked up off the machine.
    result = run_cli("connect", "no-such-host.invalid", "80")
    assert result.returncode == EXIT_FAILED
    assert b"Cannot find address of no-such-host.invalid:80" in result.stderr


# ----------------------------------------------------------------------
# Arguments and help
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["launch"], "invalid choice: 'launch'"),
        (["connect", "127.0.0.1"], "the following arguments are required: PORT"),
        (["connect", "127.0.0.1", "65536"], "port must be in 1..65535, not 65536"),
        (["connect", "127.0.0.1", "http"], "port must be a number, not 'http'"),
        (["connect", "", "80"], "HOST must not be empty"),
        (["connect", "127.0.0.1", "80", "--timeout", "-1"], "must be a positive number of seconds (or inf), not -1"),
        (["connect", "127.0.0.1", "80", "--timeout", "nan"], "must be a positive number of seconds (or inf), not nan"),
        (["connect", "127.0.0.1", "80", "--wait", "soon"], "must be a number of seconds (or inf), not 'soon'"),
        (["connect", "[::1", "80"], "brackets go around an IPv6 address, as in [::1]; not '[::1'"),
        (["connect", "[localhost]", "80"], "brackets go around an IPv6 address, as in [::1]; not '[localhost]'"),
        (["connect", "127.0.0.1", "80", "--ca", "ca.pem", "--insecure"], "--ca and --insecure contradict"),
        (["echo", "--port", "-5"], "port must be in 0..65535, not -5"),
        (["echo", "--host", "[::1"], "argument --host: brackets go around an IPv6 address, as in [::1]; not '[::1'"),
        (["echo", "--host", "[localhost]"], "brackets go around an IPv6 address, as in [::1]; not '[localhost]'"),
        (["echo", "--cert", "server.pem"], "--cert and --key go together"),
        (["connect"], "the following arguments are required: HOST, PORT (or --unix PATH)"),
        (["connect", "--unix", ""], "argument --unix: PATH must not be empty"),
        (["connect", "--unix", "s.sock", "127.0.0.1", "80"], "--unix PATH takes the place of HOST PORT"),
        (["connect", "--unix", "s.sock", "--tls"], "--unix and --tls contradict each other: TLS over a Unix socket"),
        (["connect", "--unix", "s.sock", "--ca", "ca.pem"], "--unix and --ca contradict each other: TLS over"),
        (["connect", "--unix", "s.sock", "--insecure"], "--unix and --insecure contradict each other: TLS over"),
        (["echo", "--unix", ""], "argument --unix: PATH must not be empty"),
        (["echo", "--unix", "s.sock", "--host", "::1"], "--unix and --host contradict each other: a Unix socket"),
        (["echo", "--unix", "s.sock", "--port", "0"], "--unix and --port contradict each other: a Unix socket"),
        (["echo", "--unix", "s.sock", "--cert", "c.pem", "--key", "k.pem"], "--unix and --cert contradict each other"),
        (["echo", "--unix", "s.sock", "--key", "k.pem"], "--unix and --key contradict each other: TLS over a Unix"),
        (["echo", "--unix", "s.sock", "--workers", "2"], "--unix and --workers contradict each other: the workers"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_bad_arguments_exit_2_from_the_command_line() -> None:
    result = run_cli("connect")
    assert result.returncode == EXIT_USAGE
    assert b"usage:" in result.stderr


@pytest.mark.parametrize("command", ["demo", "echo", "connect", "bench"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == EXIT_OK
    assert f"trio-rsocket {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["demo"], ["echo"], ["connect"], ["bench"]])
def test_every_help_screen_lists_the_exit_statuses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == EXIT_OK
    help_text = capsys.readouterr().out
    assert "exit status:\n  0    success\n" in help_text
    assert "\n  2    bad arguments\n" in help_text
    assert "\n  130  interrupted (Ctrl-C)\n" in help_text


def test_bench_interrupted_by_ctrl_c_exits_130_with_one_line() -> None:
    bench = subprocess.Popen(
        [*COMMAND, "bench", "--quick", "--only", "accept", "--no-pin"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert bench.stderr is not None
        # "accept: sequential accepts ...": the benchmark is measuring.
        assert read_line(bench.stderr).startswith(b"accept:")
        # As Ctrl-C in a terminal: to the whole process group, servers included.
        os.killpg(bench.pid, signal.SIGINT)
        _, errors = bench.communicate(timeout=PATIENCE)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    assert bench.returncode == EXIT_INTERRUPTED
    assert errors.decode().strip().splitlines()[-1].endswith(" bench: interrupted")
    assert b"Traceback" not in errors


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("trio-rsocket")
    if not script.exists():
        pytest.skip("trio-rsocket is not installed as a console script in this environment")
    result = subprocess.run([script, "--version"], capture_output=True, timeout=PATIENCE, check=False)
    assert result.returncode == EXIT_OK
    assert result.stdout.startswith(b"trio-rsocket ")
