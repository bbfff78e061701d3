"""The PROXY protocol on ``listen``: headers written by raw client sockets
(HAProxy's own examples from doc/proxy-protocol.txt among them), the address
the handler sees, refusals, and a fuzzed parser — all over real loopback."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import trio
import trio.testing
import trustme

from trio_rsocket import ProxyInfo, RSocket, _listen, _proxy
from trio_rsocket._proxy import ProxyHeaderError, header_size, parse_header

from .conftest import has_ipv6, serving, with_cert

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="this machine has no IPv6 loopback")

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# HAProxy's own v1 example (doc/proxy-protocol.txt, 2.1), before an HTTP request.
SPEC_V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
SPEC_REQUEST = b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2(
    command: int = 0x1, family: int = 0x11, addresses: bytes | None = None, tlvs: bytes = b"", crc: bool = False
) -> bytes:
    """A v2 header (the spec's layout, 2.2): PROXY TCP over IPv4 from
    192.168.0.1:56324 to 192.168.0.11:443 unless told otherwise; *crc* adds
    a CRC32C TLV computed as the spec says (over the header with it zeroed)."""
    if addresses is None:
        addresses = bytes([192, 168, 0, 1, 192, 168, 0, 11]) + struct.pack("!HH", 56324, 443)
    body = addresses + tlvs + (tlv(0x03, b"\0\0\0\0") if crc else b"")
    header = SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body
    if crc:
        header = header[:-4] + _proxy.crc32c(header).to_bytes(4)
    return header


V2_INET6 = v2(
    family=0x21,
    addresses=ipaddress.IPv6Address("2001:db8::1").packed
    + ipaddress.IPv6Address("2001:db8::2").packed
    + struct.pack("!HH", 4242, 443),
)


@pytest.fixture(autouse=True)
def every_server_socket_is_released() -> Iterator[None]:
    yield
    assert _listen._sockets_alive == 0


class Seen:
    """What the handler saw of each connection."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.infos: list[ProxyInfo | None] = []
        self.lines: list[bytes] = []


async def recording_handler(seen: Seen, sock: RSocket) -> None:
    """Note the peer and the header, read one line and answer it."""
    seen.peers.append(sock.get_peer_addr())
    seen.infos.append(sock.get_proxy_info())
    line = await sock.read_until(b"\n")
    seen.lines.append(line)
    await sock.write(b"ok " + line)


async def exchange(
    port: int, pieces: Sequence[bytes], host: str = "127.0.0.1", bind: str | None = None
) -> tuple[bytes, tuple[str, int]]:
    """Connect a raw socket (bound to *bind*, if given), send each of
    *pieces* in a write of its own, letting the server take each before the
    next, then read until the server closes.  Returns what came back (``b""``
    for a refusal, reset or not) and the client's own address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with trio.socket.socket(family) as client:
        if bind is not None:
            await client.bind((bind, 0))
        await client.connect((host, port))
        own = client.getsockname()[:2]
        for piece in pieces:
            await client.send(piece)  # loopback takes a few bytes whole
            await trio.testing.wait_all_tasks_blocked()
        reply = b""
        try:
            for _ in range(100):  # bounded: the server closes after one line
                chunk = await client.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass  # a refused connection with unread bytes ends with a reset
    return reply, own


def proxy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "trio_rsocket" and record.levelno == logging.WARNING and "PROXY" in record.getMessage()
    ]


# ----------------------------------------------------------------------------
# The address the handler sees


async def test_a_v1_header_gives_the_handler_the_client_address_and_the_data_intact() -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        # Header and request in one write: the header must be read and not a byte more.
        reply, _ = await exchange(listener.get_addr()[1], [SPEC_V1 + SPEC_REQUEST])
    assert reply == b"ok GET / HTTP/1.1\r\n"
    assert seen.peers == [("192.168.0.1", 56324)]
    assert seen.infos == [ProxyInfo(version=1, source=("192.168.0.1", 56324), destination=("192.168.0.11", 443))]
    assert listener.statistics().proxy_refused == 0


@pytest.mark.parametrize(
    ("header", "peer"),
    [
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 4242 443\r\n", ("2001:db8::1", 4242)),
        # An IPv4 client behind an IPv6 balancer: shown as IPv4, as everywhere.
        (b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::2 0 65535\r\n", ("192.0.2.7", 0)),
        (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", ("255.255.255.255", 65535)),
        (v2(), ("192.168.0.1", 56324)),
        (V2_INET6, ("2001:db8::1", 4242)),
        (
            v2(family=0x31, addresses=b"/run/client.sock".ljust(108, b"\0") + b"/run/lb".ljust(108, b"\0")),
            ("/run/client.sock", 0),
        ),
        (v2(crc=True), ("192.168.0.1", 56324)),
    ],
    ids=["v1-tcp6", "v1-tcp6-mapped", "v1-longest-tcp4", "v2-inet", "v2-inet6", "v2-unix", "v2-crc32c"],
)
async def test_the_handler_sees_the_address_the_header_carries(header: bytes, peer: tuple[str, int]) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        reply, _ = await exchange(listener.get_addr()[1], [header + b"hello\n"])
    assert reply == b"ok hello\n"
    assert seen.peers == [peer]


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY UNKNOWN\r\n",
        # The spec's worst case: 107 bytes.
        b"PROXY UNKNOWN " + b" ".join([b":".join([b"ffff"] * 8)] * 2) + b" 65535 65535\r\n",
        v2(command=0x0, family=0x00, addresses=b""),
        # LOCAL with addresses: the receiver "must not assume zero is presented".
        v2(command=0x0),
        v2(family=0x00, addresses=b"anything at all"),
        v2(family=0x12),  # UDP: no stream connection comes from there
    ],
    ids=["v1-unknown", "v1-unknown-longest", "v2-local", "v2-local-with-addresses", "v2-unspec", "v2-dgram"],
)
async def test_a_header_without_an_address_leaves_the_connections_own(header: bytes) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        reply, own = await exchange(listener.get_addr()[1], [header + b"hello\n"])
    assert reply == b"ok hello\n"
    assert seen.peers == [own]
    info = seen.infos[0]
    assert info is not None
    assert info.source is None
    assert info.local == (header[12:13] == b"\x20")


async def test_v2_tlvs_are_read_past_and_alpn_and_authority_exposed() -> None:
    tlvs = (
        tlv(0x04, b"")  # NOOP
        + tlv(0x01, b"h2")
        + tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3"))  # SSL, with a sub-TLV
        + tlv(0x02, "bücher.example".encode())
        + tlv(0x05, b"u" * 128)  # UNIQUE_ID
        + tlv(0xE0, b"custom")
    )
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        reply, _ = await exchange(listener.get_addr()[1], [v2(tlvs=tlvs, crc=True) + b"hello\n"])
    assert reply == b"ok hello\n"
    assert seen.infos == [
        ProxyInfo(
            version=2,
            source=("192.168.0.1", 56324),
            destination=("192.168.0.11", 443),
            alpn=b"h2",
            authority="bücher.example",
        )
    ]


@pytest.mark.parametrize("header", [SPEC_V1, v2(tlvs=tlv(0x01, b"h2"))], ids=["v1", "v2"])
async def test_a_header_split_across_many_writes_is_put_together(header: bytes) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        # One byte per write, the server waiting on each, the last with the data.
        pieces = [header[index : index + 1] for index in range(len(header) - 1)] + [header[-1:] + b"hello\n"]
        reply, _ = await exchange(listener.get_addr()[1], pieces)
    assert reply == b"ok hello\n"
    assert seen.peers == [("192.168.0.1", 56324)]


async def test_tls_runs_after_the_header(ca: trustme.CA, server_cert: trustme.LeafCert) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, configure=with_cert(server_cert), proxy_protocol=True) as listener:
        stream = await trio.open_tcp_stream("127.0.0.1", listener.get_addr()[1])
        await stream.send_all(SPEC_V1)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        async with trio.SSLStream(stream, context, server_hostname="localhost") as tls:
            await tls.send_all(b"hello\n")
            assert await tls.receive_some(100) == b"ok hello\n"
    assert seen.peers == [("192.168.0.1", 56324)]


async def test_a_plain_listener_has_no_proxy_info() -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen) as listener:
        reply, own = await exchange(listener.get_addr()[1], [b"hello\n"])
    assert reply == b"ok hello\n"
    assert seen.peers == [own]
    assert seen.infos == [None]


async def test_an_ipv4_mapped_peer_is_trusted_as_ipv4_loopback() -> None:
    seen = Seen()
    # All interfaces: one dual-stack socket, where 127.0.0.1 arrives as ::ffff:127.0.0.1.
    async with serving(recording_handler, None, data=seen, proxy_protocol=True) as listener:
        reply, _ = await exchange(listener.get_addr()[1], [SPEC_V1 + b"hello\n"])
    assert reply == b"ok hello\n"
    assert seen.peers == [("192.168.0.1", 56324)]


@needs_ipv6
async def test_ipv6_loopback_is_trusted_by_default() -> None:
    seen = Seen()
    async with serving(recording_handler, "::1", data=seen, proxy_protocol=True) as listener:
        reply, _ = await exchange(listener.get_addr()[1], [V2_INET6 + b"hello\n"], host="::1")
    assert reply == b"ok hello\n"
    assert seen.peers == [("2001:db8::1", 4242)]


async def test_a_slow_header_does_not_hold_up_other_connections() -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        port = listener.get_addr()[1]
        with trio.socket.socket() as slow:
            await slow.connect(("127.0.0.1", port))
            await slow.send(SPEC_V1[:10])
            await trio.testing.wait_all_tasks_blocked()
            reply, _ = await exchange(port, [V2_INET6 + b"hello\n"])
            assert reply == b"ok hello\n"
            await slow.send(SPEC_V1[10:] + b"late\n")
            assert await slow.recv(100) == b"ok late\n"
    assert seen.peers == [("2001:db8::1", 4242), ("192.168.0.1", 56324)]


# ----------------------------------------------------------------------------
# Who may send headers


@pytest.mark.parametrize(
    ("proxy_from", "bind", "trusted"),
    [
        ("127.0.0.1/32", "127.0.0.2", False),
        ("127.0.0.2", "127.0.0.1", False),
        ("127.0.0.2", "127.0.0.2", True),
        ([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_address("127.0.0.2")], "127.0.0.2", True),
        ("::ffff:127.0.0.2/128", "127.0.0.2", True),  # a mapped network is the IPv4 one
    ],
)
async def test_only_peers_in_proxy_from_may_send_headers(
    proxy_from: Any, bind: str, trusted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True, proxy_from=proxy_from) as listener:
        reply, own = await exchange(listener.get_addr()[1], [SPEC_V1 + b"hello\n"], bind=bind)
    if trusted:
        assert reply == b"ok hello\n"
        assert seen.peers == [("192.168.0.1", 56324)]
        assert listener.statistics().proxy_refused == 0
    else:
        assert reply == b""
        assert seen.peers == []
        assert listener.statistics().proxy_refused == 1
        assert proxy_warnings(caplog) == [
            f"Refused the connection from {bind}:{own[1]}: PROXY protocol: not in proxy_from"
        ]


@pytest.mark.parametrize(
    ("proxy_from", "address", "trusted"),
    [
        (None, ("127.0.0.1", 1), True),
        (None, ("127.9.9.9", 1), True),
        (None, ("::1", 1, 0, 0), True),
        (None, ("::ffff:127.0.0.1", 1, 0, 0), True),
        (None, ("10.0.0.1", 1), False),
        (None, ("::2", 1, 0, 0), False),
        (None, "/run/balancer.sock", False),  # a Unix peer: no address to check
        ("10.0.0.0/8", ("::ffff:10.1.2.3", 1, 0, 0), True),
        ("0.0.0.0/0", ("::1", 1, 0, 0), False),
        ("fe80::/10", ("fe80::1%lo", 1, 0, 1), True),
    ],
)
def test_proxy_from_checks_the_peer_address_the_os_gives(proxy_from: Any, address: Any, trusted: bool) -> None:
    checked = _proxy.check_proxy_arguments(True, proxy_from)
    assert checked is not None
    assert (address in checked) is trusted


@pytest.mark.parametrize(
    ("proxy_protocol", "proxy_from", "error", "words"),
    [
        (False, "127.0.0.1", ValueError, "proxy_from"),
        (True, "10.0.0.0/33", ValueError, "proxy_from"),
        (True, "not an address", ValueError, "proxy_from"),
        (True, "10.0.0.1/8", ValueError, "proxy_from"),  # host bits set: a mistake, said so
        (True, ["127.0.0.1", "bad"], ValueError, "proxy_from"),
        (True, [], ValueError, "proxy_from"),
        (True, 2130706433, TypeError, "proxy_from"),  # ipaddress would take an int
        (True, [b"127.0.0.1"], TypeError, "proxy_from"),
        (True, b"127.0.0.1", TypeError, "proxy_from"),
        (1, None, TypeError, "proxy_protocol"),
    ],
)
async def test_bad_proxy_arguments_fail_before_any_io(
    proxy_protocol: Any, proxy_from: Any, error: type[Exception], words: str
) -> None:
    sock = RSocket()
    async with trio.open_nursery() as nursery:
        with pytest.raises(error, match=words):
            await sock.listen(
                "127.0.0.1", 0, recording_handler, nursery=nursery, proxy_protocol=proxy_protocol, proxy_from=proxy_from
            )
    assert sock.get_handle() == -1  # never bound


# ----------------------------------------------------------------------------
# Refusals


BAD_HEADERS = {
    "no header": b"GET / HTTP/1.1\r\n\r\n",
    "tls first": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "lowercase": b"proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    "lf only": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
    "cr only": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rx",
    "double space": b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
    "trailing space": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",
    "leading zero in address": b"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",
    "leading zero in port": b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
    "signed port": b"PROXY TCP4 192.168.0.1 192.168.0.11 +5632 443\r\n",
    "port over 65535": b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
    "ipv6 in tcp4": b"PROXY TCP4 ::1 ::1 1 2\r\n",
    "ipv4 in tcp6": b"PROXY TCP6 192.168.0.1 192.168.0.11 1 2\r\n",
    "ipv6 zone": b"PROXY TCP6 fe80::1%lo ::1 1 2\r\n",
    "udp4": b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    "missing port": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
    "not ascii": b"PROXY TCP4 192.168.0.1 192.168.0.\xd9\xa1 1 2\r\n",
    "v1 over 107 bytes": b"PROXY UNKNOWN " + b"f" * 93 + b"\r\n",
    "v2 version 1": SIGNATURE + b"\x11\x11\x00\x00",
    "v2 command 2": SIGNATURE + b"\x22\x11\x00\x00",
    "v2 family 4": SIGNATURE + b"\x21\x41\x00\x00",
    "v2 transport 3": SIGNATURE + b"\x21\x13\x00\x00",
    "v2 short addresses": v2(addresses=bytes(8)),
    "v2 inet6 in inet length": v2(family=0x21),
    # An ALPN TLV saying 2 bytes, with 1 before the header's end.
    "v2 tlv past the end": v2(tlvs=b"\x01\x00\x02h"),
    "v2 tlv header cut": v2(tlvs=b"\x01\x00"),
    "v2 bad crc32c": v2(crc=True)[:-1] + b"\x00",
    "v2 crc32c of 3 bytes": v2(tlvs=tlv(0x03, b"abc")),
    "v2 authority not utf-8": v2(tlvs=tlv(0x02, b"\xff\xfe")),
    "v2 two alpns": v2(tlvs=tlv(0x01, b"h2") + tlv(0x01, b"http/1.1")),
    # Over the size limit: refused on its first 16 bytes, the rest never sent.
    "v2 over the limit": SIGNATURE + b"\x21\x11" + struct.pack("!H", _proxy.V2_MAX - 15),
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
async def test_a_bad_header_is_refused_at_once_logged_and_counted(
    data: bytes, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True, handshake_timeout=30) as listener:
        begin = trio.current_time()
        reply, own = await exchange(listener.get_addr()[1], [data])
        # Refused for what it is, not for going quiet: no timeout went by.
        assert trio.current_time() - begin < 30
    assert reply == b""
    assert seen.peers == []
    assert listener.statistics().proxy_refused == 1
    (warning,) = proxy_warnings(caplog)
    assert warning.startswith(f"Refused the connection from 127.0.0.1:{own[1]}: PROXY protocol: ")


async def test_a_header_that_does_not_come_in_time_is_refused(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True, handshake_timeout=5) as listener:
        with trio.socket.socket() as client:
            await client.connect(("127.0.0.1", listener.get_addr()[1]))
            await client.send(SPEC_V1[:20])
            begin = trio.current_time()
            assert await client.recv(10) == b""  # the server gave up and closed
            assert trio.current_time() - begin == pytest.approx(5)
    assert seen.peers == []
    assert listener.statistics().proxy_refused == 1
    (warning,) = proxy_warnings(caplog)
    assert warning.endswith("PROXY protocol: no PROXY header within 5 seconds")


@pytest.mark.parametrize(("sent", "why"), [(b"", "before sending"), (SPEC_V1[:20], "before the header ended")])
async def test_a_connection_that_ends_before_its_header_is_refused(
    sent: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        with trio.socket.socket() as client:
            await client.connect(("127.0.0.1", listener.get_addr()[1]))
            await client.send(sent)
            client.shutdown(socket.SHUT_WR)
            assert await client.recv(10) == b""
    assert seen.peers == []
    assert listener.statistics().proxy_refused == 1
    (warning,) = proxy_warnings(caplog)
    assert why in warning


async def test_shutdown_counts_a_connection_waiting_for_its_header_as_a_cut_short_handshake() -> None:
    seen = Seen()
    async with serving(recording_handler, data=seen, proxy_protocol=True) as listener:
        with trio.socket.socket() as client:
            await client.connect(("127.0.0.1", listener.get_addr()[1]))
            await client.send(SPEC_V1[:20])
            await trio.testing.wait_all_tasks_blocked()
            assert await listener.shutdown(grace=0) == 0  # no handler was running
    assert listener.statistics().handshakes_cancelled == 1
    assert listener.statistics().proxy_refused == 0


# ----------------------------------------------------------------------------
# The parser, fuzzed

VALID = [
    SPEC_V1,
    b"PROXY TCP6 2001:db8::1 2001:db8::2 4242 443\r\n",
    b"PROXY UNKNOWN\r\n",
    v2(),
    V2_INET6,
    v2(command=0x0, family=0x00, addresses=b""),
    v2(tlvs=tlv(0x01, b"h2") + tlv(0x02, b"example.com"), crc=True),
]

FUZZ = hypothesis.settings(max_examples=400, deadline=None, database=None, derandomize=True)


def _parses_or_refuses(data: bytes) -> None:
    try:
        info = parse_header(data)
    except ProxyHeaderError:
        return
    assert isinstance(info, ProxyInfo)
    assert header_size(data) == len(data)


@FUZZ
@hypothesis.given(st.binary(max_size=300))
def test_the_parser_refuses_or_parses_any_bytes(data: bytes) -> None:
    _parses_or_refuses(data)
    _parses_or_refuses(SIGNATURE + data)
    _parses_or_refuses(b"PROXY " + data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if action == "flip" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[where : where + draw(st.integers(1, 8))]
        else:
            del data[where:]
    return bytes(data)


@FUZZ
@hypothesis.given(mutated())
def test_the_parser_refuses_or_parses_any_mutation_of_a_valid_header(data: bytes) -> None:
    _parses_or_refuses(data)


@FUZZ
@hypothesis.given(st.sampled_from(VALID), st.binary(max_size=200))
def test_a_valid_header_is_sized_the_same_whatever_follows_it(header: bytes, after: bytes) -> None:
    # What the reader relies on to take no byte past the header, and to wait
    # (not refuse) while only part of it has come.
    assert header_size(header + after) == len(header)
    for end in range(len(header)):
        assert header_size(header[:end]) in (None, len(header))
    assert isinstance(parse_header(header), ProxyInfo)


def test_crc32c_is_castagnoli() -> None:
    assert _proxy.crc32c(b"123456789") == 0xE3069283  # RFC 3720's check value
