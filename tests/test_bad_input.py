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
import trio.testing

import trio_rsocket
from trio_rsocket import RSocket, deadline_after
from trio_rsocket.testing import echo_handler

from .conftest import has_ipv6, round_trip, serving

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


# ----------------------------------------------------------------------------
# Numbers past float or C int range (issue 16): never an OverflowError, never
# a failure after the socket was bound.  Past float range a time is for ever,
# as a deadline reads it; a backlog past a C int is the longest there is.

BEYOND_FLOATS = 10**400


async def test_a_happy_eyeballs_delay_past_float_range_is_for_ever(no_fd_leak: None) -> None:
    async with serving() as listener, RSocket() as client:
        await client.connect("127.0.0.1", listener.get_addr()[1], happy_eyeballs_delay=BEYOND_FLOATS)
        assert await round_trip(client) == b"ping"


@pytest.mark.parametrize("backlog", [2**31, 2**64])
async def test_a_backlog_past_a_c_int_listens_as_long_as_the_os_allows(backlog: int, no_fd_leak: None) -> None:
    async with serving(backlog=backlog) as listener, RSocket() as client:
        await client.connect("127.0.0.1", listener.get_addr()[1])
        assert await round_trip(client) == b"ping"


async def test_a_handshake_timeout_past_float_range_is_for_ever(no_fd_leak: None) -> None:
    async with serving(handshake_timeout=BEYOND_FLOATS) as listener, RSocket() as client:
        await client.connect("127.0.0.1", listener.get_addr()[1])
        assert await round_trip(client) == b"ping"


async def test_a_shutdown_grace_past_float_range_waits_for_the_handlers() -> None:
    finished = trio.Event()

    async def handler(data: object, sock: RSocket) -> None:
        await sock.read()
        finished.set()

    async with trio.open_nursery() as nursery, RSocket() as listener, RSocket() as client:
        await listener.listen("127.0.0.1", 0, handler, nursery=nursery)
        await client.connect("127.0.0.1", listener.get_addr()[1])
        await trio.testing.wait_all_tasks_blocked()
        client.close()  # the handler's read ends, and so does the handler
        assert await listener.shutdown(BEYOND_FLOATS) == 0
        assert finished.is_set()


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda s: s.connect("127.0.0.1", 80, happy_eyeballs_delay=-BEYOND_FLOATS), "happy_eyeballs_delay"),
        (lambda s: s.listen("127.0.0.1", 0, echo_handler, handshake_timeout=-BEYOND_FLOATS), "handshake_timeout"),
        (lambda s: s.shutdown(-BEYOND_FLOATS), "grace"),
    ],
    ids=["happy_eyeballs_delay", "handshake_timeout", "grace"],
)
async def test_a_negative_time_past_float_range_is_a_value_error_naming_it(
    call: Callable[[RSocket], Any], words: str
) -> None:
    async with trio_rsocket.open_runtime():
        sock = RSocket()
        with pytest.raises(ValueError, match=words):
            await attempt(call, sock)
        assert sock.get_handle() == -1


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda s: s.setsockopt(2**64, socket.SO_KEEPALIVE, 1), "level"),
        (lambda s: s.setsockopt(socket.SOL_SOCKET, 2**40, 1), "option"),
        (lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 2**31), "value"),
        (lambda s: s.getsockopt(-(2**64), socket.SO_KEEPALIVE), "level"),
        (lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 2**40), "buffer_length"),
    ],
    ids=["set level", "set option", "set value", "get level", "get buffer_length"],
)
async def test_a_socket_option_argument_past_a_c_int_is_a_value_error_naming_it(
    pair: tuple[RSocket, RSocket], call: Callable[[RSocket], Any], words: str
) -> None:
    client, server = pair
    with pytest.raises(ValueError, match=f"{words} must fit in a C int"):
        call(client)
    await client.write(b"still fine")
    assert await server.read_exactly(10) == b"still fine"


async def test_a_file_descriptor_past_a_c_int_is_a_value_error_naming_the_file(pair: tuple[RSocket, RSocket]) -> None:
    client, _ = pair
    with pytest.raises(ValueError, match="file is not an open file"):
        await client.send_file(2**64)


# ----------------------------------------------------------------------------
# An IPv6 address in brackets, as every message prints it (issue 16)


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
async def test_connect_and_listen_take_an_ipv6_address_in_brackets(no_fd_leak: None) -> None:
    async with trio.open_nursery() as nursery, RSocket() as listener, RSocket() as client:
        await listener.listen("[::1]", 0, echo_handler, nursery=nursery)
        host, port = listener.get_addr()
        assert host == "::1"
        await client.connect("[::1]", port)
        assert client.get_peer_addr() == ("::1", port)
        await client.write(b"ping")
        assert await client.read_exactly(4) == b"ping"
        nursery.cancel_scope.cancel()


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
async def test_a_bracketed_address_is_named_with_one_pair_of_brackets() -> None:
    listener = socket.socket(socket.AF_INET6)
    listener.bind(("::1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nobody listens there now: refused
    with pytest.raises(trio_rsocket.ConnectError) as caught:
        await RSocket().connect("[::1]", port)
    assert f"[::1]:{port}" in str(caught.value)
    assert "[[" not in str(caught.value)


@pytest.mark.parametrize("host", ["[::1", "::1]", "[localhost]", "[127.0.0.1]", "[]"])
async def test_brackets_around_anything_but_an_ipv6_address_are_a_value_error(host: str) -> None:
    async with trio_rsocket.open_runtime():
        sock = RSocket()
        with pytest.raises(ValueError, match="host must be a name or an address; brackets go around an IPv6"):
            await sock.connect(host, 80)
        with pytest.raises(ValueError, match="host must be a name or an address; brackets go around an IPv6"):
            await sock.listen(host, 0, echo_handler)
        assert sock.get_handle() == -1
