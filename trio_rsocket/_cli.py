"""The ``trio-rsocket`` command (also ``python -m trio_rsocket``).

Subcommands:

``demo``
    A TLS echo server and a few clients in one process, on a loopback port,
    with throwaway certificates: shows the library working, no arguments.
``echo``
    An echo server that prints the address it listens on (TCP, or a Unix
    socket with ``--unix PATH``); Ctrl-C stops it.
``connect``
    A netcat-like client: standard input to the socket, the socket to
    standard output (TCP, or a Unix socket with ``--unix PATH``).
``bench``
    The benchmark (:mod:`trio_rsocket._bench`), given the remaining arguments.

Exit status (:mod:`trio_rsocket._command`, shared with the benchmark): 0
success, 1 the connection (or listen) failed, 2 bad arguments, 3 TLS failed
or a certificate file cannot be used, 4 timed out, 5 a package the command
needs is not installed, 130 interrupted by Ctrl-C.

Only the public API is used here, as a user would, with the helpers of
:mod:`trio_rsocket.testing` (throwaway certificates, the echo handler) and
the one ``host:port`` formatter.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import logging
import math
import os
import shutil
import signal
import ssl
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TextIO

import trio

import trio_rsocket
from trio_rsocket import (
    ConnectError,
    DeadlineError,
    ListenError,
    RSocket,
    RSocketError,
    TLSError,
    deadline_after,
)

from ._address import host_port, unbracket
from ._command import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING_PACKAGE,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_TLS,
    EXIT_USAGE,
    PROG,
    exit_status_help,
)
from .testing import SERVER_NAMES, TRUSTME_HINT, CertFiles, echo_handler, make_cert_files, new_ca

_EXIT_STATUS_HELP: Final = exit_status_help(
    {
        EXIT_FAILED: "the connection or listen failed (refused, unknown host, reset, port in use)",
        EXIT_TLS: "TLS failed (certificate not trusted, expired, wrong host name), or a\n"
        "certificate, key or CA file cannot be used (missing, unreadable, not PEM)",
        EXIT_TIMEOUT: "timed out",
        EXIT_MISSING_PACKAGE: "a package the command needs is not installed (the message says which)",
    }
)

# How much each copy step moves at most: trio's default receive size.
_CHUNK: Final = 65536


class _Failure(Exception):
    """A failure to report in one line and turn into an exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _port_number(text: str, lowest: int) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not lowest <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in {lowest}..65535, not {port}")
    return port


def _port(text: str) -> int:
    """A port to listen on: 0 picks a free one."""
    return _port_number(text, 0)


def _workers(text: str) -> int:
    """How many worker processes: 1 or more."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"workers must be a number, not {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"workers must be at least 1, not {count}")
    return count


def _remote_host(text: str) -> str:
    """A host to connect to: a name or an address, never empty.

    An IPv6 address may come in brackets (``[::1]``), as ``echo`` and every
    message print it; the brackets are dropped.
    """
    if not text:
        raise argparse.ArgumentTypeError("HOST must not be empty")
    return _unbracketed(text)


def _listen_host(text: str) -> str:
    """A host to listen on: an address or a name, ``''`` for every
    interface; an IPv6 address may come in brackets, as for HOST."""
    return _unbracketed(text)


def _unbracketed(text: str) -> str:
    try:
        return unbracket(text)
    except ValueError:  # argparse names the argument itself
        raise argparse.ArgumentTypeError(f"brackets go around an IPv6 address, as in [::1]; not {text!r}") from None


def _remote_port(text: str) -> int:
    """A port to connect to."""
    return _port_number(text, 1)


def _unix_path(text: str) -> str:
    """A Unix socket's path, never empty; how long it may be is the
    library's to check (it says how long is allowed)."""
    if not text:
        raise argparse.ArgumentTypeError("PATH must not be empty")
    return text


def _seconds(text: str) -> float:
    """A time limit in seconds: a positive number, or ``inf`` for no limit."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (or inf), not {text!r}") from None
    if math.isnan(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (or inf), not {text}")
    return seconds


def _os_words(error: OSError) -> str:
    """The OS's words for why *error* happened (``"Connection refused"``), or ``""``."""
    # ConnectError keeps the OS error it came from as its cause; a resolver
    # error's number is not an errno, so its words come from there.
    cause = error.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if error.errno is None or error.errno <= 0:
        return ""
    return os.strerror(error.errno)


# ----------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------


def _wrapped_usage(prog: str, options: Sequence[str], last: str) -> str:
    """A usage text for *prog* wrapped as argparse wraps its own: *options*
    filling lines under the command's name, then *last* on a line of its own
    when it all does not fit in one (the width is the terminal's, as argparse
    takes it)."""
    prefix = "usage: "
    width = shutil.get_terminal_size().columns - 2
    if len(prefix) + len(" ".join([prog, *options, last])) <= width:
        return " ".join([prog, *options, last])
    indent = " " * (len(prefix) + len(prog) + 1)
    lines: list[str] = []
    line = [prog]
    length = len(prefix) + len(prog)
    for part in options:
        if length + 1 + len(part) > width:
            lines.append(" ".join(line))
            line, length = [], len(indent) - 1
        line.append(part)
        length += len(part) + 1
    lines.append(" ".join(line))
    return "\n".join([lines[0], *(indent + text for text in lines[1:]), indent + last])


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="trio_rsocket: the Embedthis Ioto agent's RSocket API on trio.",
        epilog=f"Start with '{prog} demo'. Each command has --help.\n\n{_EXIT_STATUS_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {trio_rsocket.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "demo",
        help="TLS echo round trips over loopback with throwaway certificates",
        description=(
            "Start a TLS echo server on an ephemeral loopback port with throwaway "
            "certificates, run a few clients through it, and print what happened. "
            f"Needs trustme ({TRUSTME_HINT})."
        ),
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    echo = commands.add_parser(
        "echo",
        help="run an echo server until Ctrl-C",
        description=(
            "Run an echo server: every connection gets back what it sends. Prints the "
            "address it listens on, then one line per connection on standard error. "
            "Ctrl-C (or SIGTERM) stops it. With --workers N, N worker processes serve "
            "the one port; SIGHUP replaces them one at a time. With --unix PATH, it listens "
            "on a Unix socket instead of TCP."
        ),
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # --host and --port default to None, not to their values, so that giving
    # them beside --unix can be told from not giving them.
    echo.add_argument(
        "--host",
        type=_listen_host,
        help="address to listen on (default 127.0.0.1; '' for every interface; IPv6 as ::1 or [::1])",
    )
    echo.add_argument("--port", type=_port, help="port to listen on (default 0: any free port)")
    echo.add_argument("--cert", metavar="FILE", help="serve TLS with this certificate (PEM; needs --key)")
    echo.add_argument("--key", metavar="FILE", help="the certificate's private key (PEM; needs --cert)")
    echo.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve from N worker processes under a supervisor (default 1: this process serves); "
        "SIGHUP replaces them one at a time",
    )
    echo.add_argument(
        "--unix",
        metavar="PATH",
        type=_unix_path,
        help="listen on a Unix socket at PATH instead of TCP (mode 0600; not with --host, --port, --cert, --key, "
        "--workers)",
    )

    connect_prog = f"{prog} connect"
    connect = commands.add_parser(
        "connect",
        help="netcat-like client: standard input to the socket, the socket to standard output",
        description=(
            "Connect to HOST PORT (or to the Unix socket at --unix PATH), copy standard input "
            "to the socket and the socket to standard output. When standard input ends, plain "
            "TCP and Unix sockets send end of file and go on printing until the peer closes; "
            "TLS, which has no half-close, goes on printing until the peer closes or has been "
            "quiet for --wait seconds."
        ),
        epilog=_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Written out: argparse's own would show [HOST] [PORT] [--unix PATH],
        # three optional things, where it is one of two.
        usage=_wrapped_usage(
            connect_prog,
            [
                "[-h]",
                "[--tls]",
                "[--ca FILE]",
                "[--insecure]",
                "[--timeout S]",
                "[--wait S]",
            ],
            "(HOST PORT | --unix PATH)",
        ),
    )
    # Optional here, so that --unix can take their place; _check_connect
    # says which are missing.
    connect.add_argument("host", metavar="HOST", nargs="?", type=_remote_host, help="host name or IP address")
    connect.add_argument("port", metavar="PORT", nargs="?", type=_remote_port, help="port number")
    connect.add_argument(
        "--unix",
        metavar="PATH",
        type=_unix_path,
        help="connect to the Unix socket at PATH instead of HOST PORT (no TLS over a Unix socket)",
    )
    connect.set_defaults(parser=connect)
    connect.add_argument("--tls", action="store_true", help="use TLS, verifying the server with the system CAs")
    connect.add_argument("--ca", metavar="FILE", help="trust this CA certificate (PEM) instead; implies --tls")
    connect.add_argument(
        "--insecure",
        action="store_true",
        help="use TLS without checking the server's certificate at all; implies --tls",
    )
    connect.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="give up if connecting (and the TLS handshake) takes longer than S seconds "
        "(default 30; inf: never give up)",
    )
    connect.add_argument(
        "--wait",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="TLS only: after standard input ends, close once the peer has been quiet for S seconds "
        "(default 1; inf: wait until the peer closes)",
    )

    commands.add_parser(
        "bench",
        help="benchmark RSocket against trio and asyncio streams (see 'bench --help')",
        add_help=False,
    )
    return parser


# ----------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the ``trio-rsocket`` command with *argv* (default ``sys.argv[1:]``)
    and return its exit status.  The console script passes that to
    :func:`sys.exit`."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        return _bench(args_list[1:], prog)
    parser = _parser(prog)
    try:
        args = parser.parse_args(args_list)
        if args.command == "connect":
            _check_connect(args)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _dispatch(args, prog)
    except BaseException as exc:
        # Nurseries wrap what escapes them in exception groups: report the
        # one error inside, as the user would want to read it.
        error = _single(exc)
        if isinstance(error, _Failure):
            print(f"{prog} {args.command}: {error}", file=sys.stderr)
            return error.status
        if isinstance(error, KeyboardInterrupt):
            print(f"{prog} {args.command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(error, BrokenPipeError):
            # Standard output was closed (`| head`): nobody is left to tell,
            # and the interpreter's own flush at exit must not complain either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED
        if isinstance(error, TLSError):
            print(f"{prog} {args.command}: TLS failed: {error}", file=sys.stderr)
            return EXIT_TLS
        if isinstance(error, RSocketError | trio.BrokenResourceError):
            print(f"{prog} {args.command}: {error}", file=sys.stderr)
            return EXIT_FAILED
        raise


def _check_connect(args: argparse.Namespace) -> None:
    """HOST PORT, or --unix PATH in their place: a usage error (its usage
    line first, as argparse prints its own) when neither or both are there."""
    parser: argparse.ArgumentParser = args.parser
    if args.unix is None:
        missing = [name for name, value in (("HOST", args.host), ("PORT", args.port)) if value is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)} (or --unix PATH)")
    elif args.host is not None:
        parser.error("--unix PATH takes the place of HOST PORT: give one or the other")


def _dispatch(args: argparse.Namespace, prog: str) -> int:
    if args.command == "echo" and args.unix is not None:
        given = [option for option in ("host", "port", "cert", "key") if getattr(args, option) is not None]
        if args.workers > 1:
            given.append("workers")
        if given:
            why = {
                "cert": "TLS over a Unix socket is refused",
                "key": "TLS over a Unix socket is refused",
                "workers": "the workers share a TCP port",
            }.get(given[0], "a Unix socket has no host or port")
            raise _Failure(f"--unix and --{given[0]} contradict each other: {why}", EXIT_USAGE)
    if args.command == "echo" and (args.cert is None) != (args.key is None):
        raise _Failure("--cert and --key go together: give both for TLS", EXIT_USAGE)
    if args.command == "connect" and args.unix is not None:
        tls = [option for option, value in (("tls", args.tls), ("ca", args.ca), ("insecure", args.insecure)) if value]
        if tls:
            raise _Failure(
                f"--unix and --{tls[0]} contradict each other: TLS over a Unix socket is refused", EXIT_USAGE
            )
    if args.command == "connect" and args.ca is not None and args.insecure:
        raise _Failure("--ca and --insecure contradict each other: give one", EXIT_USAGE)
    # Handler errors and failed handshakes are logged by the library: show them.
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    if args.command == "demo":
        return _run_demo(sys.stdout)
    if args.command == "echo" and args.unix is not None:
        status: int = trio.run(_unix_echo_server, args.unix)
        return status
    if args.command == "echo":
        host = "127.0.0.1" if args.host is None else args.host
        port = 0 if args.port is None else args.port
        if args.workers > 1:
            return _echo_workers(host, port, args.cert, args.key, args.workers)
        status = trio.run(_echo_server, host, port, args.cert, args.key)
        return status
    status = trio.run(_connect, args)
    return status


def _single(exc: BaseException) -> BaseException:
    """The exception inside nested one-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _bench(argv: list[str], prog: str) -> int:
    if importlib.util.find_spec("trio_rsocket._bench") is None:
        print(f"{prog} bench: the benchmark is not part of this version of trio-rsocket", file=sys.stderr)
        return EXIT_FAILED
    from . import _bench

    try:
        return _bench.main(argv, f"{prog} bench")
    except SystemExit as exc:  # its --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog} bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# ----------------------------------------------------------------------
# echo
# ----------------------------------------------------------------------

#: A listener's handler, as the echo servers give it.
_Handler = Callable[[object, RSocket], Awaitable[None]]


async def _echo_server(host: str, port: int, cert: str | None, key: str | None) -> int:
    listener = RSocket()
    if cert is not None and key is not None:
        try:
            listener.set_certs(key=key, cert=cert)
        except TLSError as exc:
            raise _Failure(str(exc), EXIT_TLS) from None
    kind = "TLS" if cert is not None else "plain TCP"

    async def listen(handler: _Handler, nursery: trio.Nursery) -> str:
        try:
            await listener.listen(host or None, port, handler, nursery=nursery)
        except ListenError as exc:
            raise _Failure(str(exc), EXIT_FAILED) from None  # it names the address already
        except TLSError as exc:  # the certificate or key, read now
            raise _Failure(f"cannot serve TLS: {exc}", EXIT_TLS) from None
        return f"{host_port(*listener.get_addr())} ({kind})"

    return await _serve_echo(listener, listen, _echo_connection)


async def _unix_echo_server(path: str) -> int:
    listener = RSocket()

    async def listen(handler: _Handler, nursery: trio.Nursery) -> str:
        try:
            await listener.listen_unix(path, handler, nursery=nursery)
        except ListenError as exc:
            raise _Failure(str(exc), EXIT_FAILED) from None  # it names the path already
        except ValueError as exc:  # a path the OS cannot take (too long): the library says why
            raise _Failure(f"--unix: {exc}", EXIT_USAGE) from None
        return f"{listener.get_addr()[0]!s} (Unix socket)"

    # A Unix client's socket has no name as a rule: clients are numbered,
    # and named by the process the kernel says is at the other end.
    clients = itertools.count(1)

    def peer(sock: RSocket) -> str:
        number = next(clients)
        try:
            pid, uid, _ = sock.get_peer_credentials()
        except RSocketError:  # an OS that does not say
            return f"client {number}"
        return f"client {number} ({'' if pid is None else f'pid {pid}, '}uid {uid})"

    return await _serve_echo(listener, listen, _echo_connection_naming(peer))


async def _serve_echo(
    listener: RSocket, listen: Callable[[_Handler, trio.Nursery], Awaitable[str]], handler: _Handler
) -> int:
    """Echo on *listener*, which *listen* starts with *handler* (returning
    the address to print), until SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            address = await listen(handler, nursery)
            print(f"echo server listening on {address}; Ctrl-C stops it", flush=True)
            async for signum in signals:
                print(f"stopping on {signal.Signals(signum).name}", file=sys.stderr, flush=True)
                break
            listener.close()
            nursery.cancel_scope.cancel()
    return EXIT_OK


def _echo_connection_naming(peer_name: Callable[[RSocket], str]) -> _Handler:
    """The handler of one echo connection, with a line on standard error when
    it comes and goes, naming the peer as *peer_name* does."""

    async def echo(data: object, sock: RSocket) -> None:
        peer = "a client"
        try:
            peer = peer_name(sock)
            print(f"{peer} connected", file=sys.stderr, flush=True)
            await echo_handler(data, sock)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            print(f"{peer} broken: {exc}", file=sys.stderr, flush=True)
            return
        count = sock.statistics().bytes_written
        print(f"{peer} closed after echoing {count} bytes", file=sys.stderr, flush=True)

    return echo


#: A TCP echo connection, named by the peer's address.
_echo_connection: Final = _echo_connection_naming(lambda sock: host_port(*sock.get_peer_addr()))


def _echo_workers(host: str, port: int, cert: str | None, key: str | None, workers: int) -> int:
    """``echo --workers N``: a supervisor (this process) and N workers running
    :func:`_echo_worker`; Ctrl-C or SIGTERM stops them, SIGHUP replaces them."""
    if cert is not None and key is not None:
        # Each worker reads them when it listens; a bad file would only make
        # them fail over and over: say so once, here.
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise _Failure(f"cannot serve TLS with --cert {cert} --key {key}: {exc}", EXIT_TLS) from None
    # The supervisor's lines (workers started, stopped, restarted) are the news here.
    logging.getLogger("trio_rsocket").setLevel(logging.INFO)
    trio_rsocket.run(_echo_worker, host, port, cert, key, workers=workers, listen=[(host or None, port)])
    return EXIT_OK


async def _echo_worker(host: str, port: int, cert: str | None, key: str | None) -> None:
    """One worker of ``echo --workers N``: listens on the supervisor's socket
    until the supervisor stops it."""
    listener = RSocket()
    if cert is not None and key is not None:
        listener.set_certs(key=key, cert=cert)
    await listener.listen(host or None, port, _echo_connection)
    address = host_port(*listener.get_addr())
    kind = "TLS" if cert is not None else "plain TCP"
    print(
        f"echo server listening on {address} ({kind}, worker {trio_rsocket.worker_id()}, pid {os.getpid()}); "
        "Ctrl-C stops it",
        flush=True,
    )


# ----------------------------------------------------------------------
# connect
# ----------------------------------------------------------------------


async def _connect(args: argparse.Namespace) -> int:
    unix: str | None = args.unix
    where = unix if unix is not None else host_port(args.host, args.port)
    sock = RSocket()
    tls = bool(args.tls or args.ca or args.insecure)
    try:
        if args.insecure:
            sock.set_tls()
            sock.set_verify(False, False)
        elif args.ca is not None:
            _check_authority_file(args.ca)
            sock.set_certs(authority=args.ca)
        elif tls:
            sock.set_tls()
    except TLSError as exc:
        raise _Failure(str(exc), EXIT_TLS) from None

    deadline = None if math.isinf(args.timeout) else deadline_after(args.timeout)
    try:
        if unix is not None:
            await sock.connect_unix(unix, deadline=deadline)
        else:
            await sock.connect(args.host, args.port, deadline=deadline)
    except ValueError as exc:  # a path the OS cannot take (too long): the library says why
        raise _Failure(f"--unix: {exc}", EXIT_USAGE) from None
    except DeadlineError:
        raise _Failure(f"timed out after {args.timeout:g} s connecting to {where}", EXIT_TIMEOUT) from None
    except TLSError as exc:
        raise _Failure(f"TLS with {where} failed: {exc}", EXIT_TLS) from None
    except ConnectError as exc:
        message, words = str(exc), _os_words(exc)
        # The OS's words once: added only when the library's message lacks them.
        if words and words not in message:
            message = f"{message} ({words})"
        raise _Failure(message, EXIT_FAILED) from None

    async with sock:
        try:
            await _copy_both_ways(sock, tls, args.wait)
        except BaseException as exc:
            error = _single(exc)
            if isinstance(error, trio.BrokenResourceError):
                raise _Failure(f"connection to {where} broken: {error}", EXIT_FAILED) from None
            if isinstance(error, RSocketError):
                raise _Failure(f"connection to {where} failed: {error}", EXIT_FAILED) from None
            raise
    return EXIT_OK


def _check_authority_file(path: str) -> None:
    """Fail now, naming *path*, if the ``--ca`` file cannot serve as a CA.

    The library would report it when connecting, as a TLS error with the
    server; but no connection was tried, and the fix is on this machine.
    """
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except OSError as exc:  # ssl.SSLError included: a file with no certificate in it
        reason = exc.strerror if exc.strerror and not isinstance(exc, ssl.SSLError) else str(exc)
        raise _Failure(f"cannot use --ca {path}: {reason}", EXIT_TLS) from None


async def _copy_both_ways(sock: RSocket, tls: bool, wait: float) -> None:
    """Standard input to *sock* and *sock* to standard output, until the peer
    closes, or (TLS) standard input has ended and the peer is quiet for *wait*."""
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.buffer
    # Bounds the socket-to-stdout copy once standard input has ended on TLS;
    # pushed back each time data arrives.
    quiet = trio.CancelScope()

    async def stdin_to_socket() -> None:
        while True:
            # A thread, not trio's FdStream: that would set O_NONBLOCK on a
            # descriptor shared with the shell.  os.read, not sys.stdin: an
            # abandoned thread must not hold the buffer's lock at exit.
            data = await trio.to_thread.run_sync(os.read, stdin, _CHUNK, abandon_on_cancel=True)
            if not data:
                break
            await sock.write(data)
        if tls:
            quiet.deadline = trio.current_time() + wait
        else:
            await sock.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stdin_to_socket)
        with quiet:
            while data := await sock.read(_CHUNK):
                stdout.write(data)
                stdout.flush()
                if quiet.deadline != math.inf:
                    quiet.deadline = trio.current_time() + wait
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------

_DEMO_CLIENTS: Final = 3
# Sizes of the messages each demo client sends, one round trip each.
_DEMO_SIZES: Final = (0, 1024, 16384)
_DEMO_DEADLINE: Final = 0.1


def _run_demo(out: TextIO) -> int:
    try:
        ca = new_ca()
    except ImportError:
        raise _Failure(
            f"the demo makes throwaway certificates with trustme: {TRUSTME_HINT}", EXIT_MISSING_PACKAGE
        ) from None
    with tempfile.TemporaryDirectory(prefix="trio-rsocket-demo-") as directory:
        status = trio_rsocket.run(_demo, make_cert_files(ca, directory), out)
    return EXIT_FAILED if status is None else status


def _message(client: int, size: int) -> bytes:
    greeting = f"hello from client {client}".encode()
    if not size:
        return greeting
    return (greeting + b" " + bytes(range(256)) * (size // 256 + 1))[:size]


def _preview(data: bytes) -> str:
    return repr(data) if len(data) <= 24 else f"{len(data):,} bytes"


async def _demo(files: CertFiles, out: TextIO) -> int:
    def say(who: str, text: str) -> None:
        print(f"  {who:<12}  {text}", file=out, flush=True)

    print(f"trio-rsocket {trio_rsocket.__version__} demo: TLS echo over loopback, all in one process\n", file=out)
    names = ", ".join(SERVER_NAMES)
    say("certificates", f"throwaway CA and a server certificate for {names} (trustme, in a temporary directory)")

    listener = RSocket()
    listener.set_certs(key=str(files.server_key), cert=str(files.server_cert))
    await listener.listen("127.0.0.1", 0, echo_handler)
    host, port = listener.get_addr()
    say("server", f"listening on {host_port(host, port)}, TLS; each connection is a fiber running echo_handler()")

    round_trips: list[float] = []
    intact = 0
    sent = 0

    async def client(number: int) -> None:
        nonlocal intact, sent
        who = f"client {number}"
        async with RSocket() as sock:
            sock.set_certs(authority=str(files.authority))
            await sock.connect(host, port, deadline=deadline_after(10))
            say(who, f"connected, certificate verified, {sock.get_tls_version()} {sock.get_cipher()}")
            for size in _DEMO_SIZES:
                message = _message(number, size)
                started = trio.current_time()
                await sock.write(message, deadline=deadline_after(10))
                reply = await sock.read_exactly(len(message), deadline=deadline_after(10))
                elapsed = trio.current_time() - started
                round_trips.append(elapsed)
                sent += len(message)
                ok = reply == message
                intact += ok
                say(
                    who,
                    f"sent {_preview(message)}, got {'it' if ok else 'SOMETHING ELSE'} back in {elapsed * 1000:.2f} ms",
                )

    async with trio.open_nursery() as nursery:
        for number in range(1, _DEMO_CLIENTS + 1):
            nursery.start_soon(client, number)

    # A deadline is a point in time; when it passes the call raises
    # DeadlineError and the socket stays usable.
    async with RSocket() as sock:
        sock.set_certs(authority=str(files.authority))
        await sock.connect(host, port, deadline=deadline_after(10))
        started = trio.current_time()
        try:
            await sock.read(deadline=deadline_after(_DEMO_DEADLINE))
            say("deadline", "a read with nothing to read returned: unexpected")
            deadline_ok = False
        except DeadlineError:
            waited = trio.current_time() - started
            await sock.write(b"still here", deadline=deadline_after(10))
            reply = await sock.read_exactly(10, deadline=deadline_after(10))
            deadline_ok = reply == b"still here"
            say(
                "deadline",
                f"read with nothing sent: DeadlineError after {waited:.3f} s; then the socket echoed {reply!r}",
            )

    stats = listener.statistics()
    listener.close()
    say("server", f"closed: {stats.accepted} connections accepted, {stats.handler_errors} handler errors")

    expected = _DEMO_CLIENTS * len(_DEMO_SIZES)
    median = statistics.median(round_trips) * 1000 if round_trips else math.nan
    all_ok = intact == expected and deadline_ok and stats.handler_errors == 0
    print(
        f"\nsummary: {_DEMO_CLIENTS} TLS clients, {expected} round trips, {intact}/{expected} echoed intact, "
        f"{sent:,} bytes each way, median round trip {median:.2f} ms, deadline {'ok' if deadline_ok else 'FAILED'}"
        f" -> {'ok' if all_ok else 'FAILED'}",
        file=out,
        flush=True,
    )
    return EXIT_OK if all_ok else EXIT_FAILED
