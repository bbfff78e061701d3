"""Bad arguments fail at once, before any I/O, with a message naming the argument.

Each call is made on a fresh, unconnected socket: had it got as far as I/O it
would raise ClosedResourceError ("not connected") instead of the error asked for.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_rsocket
from trio_rsocket import RSocket, deadline_after

NAN = float("nan")

# (call, expected exception, regex the message must match)
CASES: list[tuple[str, Callable[[RSocket], Any], type[Exception], str]] = [
    ("connect host int", lambda s: s.connect(80, 80), TypeError, "host"),
    ("connect host empty", lambda s: s.connect("", 80), ValueError, "host"),
    ("connect host bytes", lambda s: s.connect(b"localhost", 80), TypeError, "host"),
    ("connect port 0", lambda s: s.connect("127.0.0.1", 0), ValueError, "port"),
    ("connect port 65536", lambda s: s.connect("127.0.0.1", 65536), ValueError, "port"),
    ("connect port negative", lambda s: s.connect("127.0.0.1", -1), ValueError, "port"),
    ("connect port str", lambda s: s.connect("127.0.0.1", "80"), TypeError, "port"),
    ("connect port bool", lambda s: s.connect("127.0.0.1", True), TypeError, "port"),
    ("connect port float", lambda s: s.connect("127.0.0.1", 80.0), TypeError, "port"),
    ("connect deadline str", lambda s: s.connect("127.0.0.1", 80, "soon"), TypeError, "deadline"),
    ("connect deadline nan", lambda s: s.connect("127.0.0.1", 80, NAN), ValueError, "deadline"),
    ("read max_bytes 0", lambda s: s.read(0), ValueError, "max_bytes"),
    ("read max_bytes negative", lambda s: s.read(-5), ValueError, "max_bytes"),
    ("read max_bytes float", lambda s: s.read(1.5), TypeError, "max_bytes"),
    ("read max_bytes bool", lambda s: s.read(True), TypeError, "max_bytes"),
    ("read deadline nan", lambda s: s.read(10, NAN), ValueError, "deadline"),
    ("read deadline str", lambda s: s.read(10, "1"), TypeError, "deadline"),
    ("read deadline bool", lambda s: s.read(10, True), TypeError, "deadline"),
    ("read_into bytes", lambda s: s.read_into(b"readonly"), TypeError, "buffer"),
    ("read_into str", lambda s: s.read_into("text"), TypeError, "buffer"),
    ("read_into int", lambda s: s.read_into(5), TypeError, "buffer"),
    ("read_into empty", lambda s: s.read_into(bytearray()), ValueError, "buffer"),
    ("read_into readonly view", lambda s: s.read_into(memoryview(b"ro")), TypeError, "buffer"),
    ("read_into deadline nan", lambda s: s.read_into(bytearray(1), NAN), ValueError, "deadline"),
    ("write str", lambda s: s.write("text"), TypeError, "data"),
    ("write int", lambda s: s.write(5), TypeError, "data"),
    ("write None", lambda s: s.write(None), TypeError, "data"),
    ("write deadline nan", lambda s: s.write(b"x", NAN), ValueError, "deadline"),
    ("write deadline list", lambda s: s.write(b"x", [1]), TypeError, "deadline"),
    ("read_exactly count 0", lambda s: s.read_exactly(0), ValueError, "count"),
    ("read_exactly count str", lambda s: s.read_exactly("4"), TypeError, "count"),
    ("read_exactly deadline nan", lambda s: s.read_exactly(4, NAN), ValueError, "deadline"),
    ("read_until delimiter str", lambda s: s.read_until("\n"), TypeError, "delimiter"),
    ("read_until delimiter empty", lambda s: s.read_until(b""), ValueError, "delimiter"),
    ("read_until delimiter int", lambda s: s.read_until(10), TypeError, "delimiter"),
    ("read_until max_bytes 0", lambda s: s.read_until(b"\n", 0), ValueError, "max_bytes"),
    ("read_until delimiter > max_bytes", lambda s: s.read_until(b"abc", 2), ValueError, "max_bytes"),
    ("read_until deadline nan", lambda s: s.read_until(b"\n", 10, NAN), ValueError, "deadline"),
    ("receive_some 0", lambda s: s.receive_some(0), ValueError, "max_bytes"),
    ("receive_some float", lambda s: s.receive_some(1.5), TypeError, "max_bytes"),
    ("send_all str", lambda s: s.send_all("text"), TypeError, "data"),
    ("set_linger negative", lambda s: s.set_linger(-1), ValueError, "seconds"),
    ("set_linger str", lambda s: s.set_linger("1"), TypeError, "seconds"),
    ("set_linger float", lambda s: s.set_linger(1.5), TypeError, "seconds"),
    ("set_no_delay str", lambda s: s.set_no_delay("yes"), TypeError, "enable"),
]


async def attempt(call: Callable[[RSocket], Any], sock: RSocket) -> None:
    """Make the call, awaiting it if it is async."""
    result = call(sock)
    if inspect.isawaitable(result):
        await result


@pytest.mark.parametrize(("call", "error", "words"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_bad_argument_fails_before_any_io(
    call: Callable[[RSocket], Any], error: type[Exception], words: str
) -> None:
    sock = RSocket()
    with pytest.raises(error, match=words):
        await attempt(call, sock)
    assert sock.get_handle() == -1
    assert not sock.is_closed()


@pytest.mark.parametrize(
    ("seconds", "error"), [("1", TypeError), (NAN, ValueError), (None, TypeError), (True, TypeError)]
)
async def test_deadline_after_rejects_non_numbers(seconds: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="seconds"):
        deadline_after(seconds)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------
# Bad input that used to escape as another error, or act late (issue 11)


def test_a_linger_past_a_c_int_is_a_value_error_at_once() -> None:
    sock = RSocket()
    with pytest.raises(ValueError, match=r"seconds must be in 0\.\.2147483647"):
        sock.set_linger(2**31)
    sock.set_linger(2**31 - 1)  # the largest SO_LINGER takes is fine


async def test_a_nul_in_the_host_is_a_value_error_before_any_io(no_fd_leak: None) -> None:
    async with RSocket() as sock:
        with pytest.raises(ValueError, match="host must not contain a NUL"):
            await sock.connect("127.0.0.1\0.example", 80)
        assert sock.get_handle() == -1


async def test_a_strided_memoryview_is_written_in_order(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    strided = memoryview(b"a-b-c-d-")[::2]
    assert not strided.c_contiguous
    assert await client.write(strided) == 4
    assert await server.read_exactly(4) == b"abcd"


async def test_a_huge_max_bytes_reads_what_is_there(pair: tuple[RSocket, RSocket]) -> None:
    client, server = pair
    await client.write(b"some")
    assert await server.read(2**40) == b"some"  # recv would allocate 1 TiB first


async def test_no_delimiter_within_max_bytes_is_delimiter_not_found_a_value_error(
    pair: tuple[RSocket, RSocket],
) -> None:
    client, server = pair
    await client.write(b"0123456789\n")
    with pytest.raises(trio_rsocket.DelimiterNotFoundError) as caught:
        await server.read_until(b"\n", max_bytes=4)
    assert isinstance(caught.value, ValueError)
    assert caught.value.max_bytes == 4
    assert await server.read_until(b"\n") == b"0123456789\n"  # nothing was consumed


async def test_socket_options_go_to_the_os_socket(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    linger = client.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
    assert isinstance(linger, bytes)
    assert len(linger) == 8


def test_socket_options_need_a_socket() -> None:
    with pytest.raises(trio.ClosedResourceError, match="not connected"):
        RSocket().getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
