"""The PROXY protocol: who may send a header, the parser, and the reading.

Theory of operation
-------------------
A load balancer in TCP mode (HAProxy ``send-proxy``/``send-proxy-v2``, nginx
``proxy_protocol on``, ...) opens its own connection to the server, so the
server sees the balancer's address as every client's.  The PROXY protocol
(HAProxy's ``doc/proxy-protocol.txt``) has the balancer put one header in
front of the client's bytes saying whom the connection is really from.  A
listener made with ``listen(..., proxy_protocol=True)`` requires that header
on every connection, and this room does the work:

* :func:`check_proxy_arguments` turns ``listen``'s *proxy_protocol* and
  *proxy_from* into the :class:`Trusted` networks, before any I/O;
* :func:`take_header` takes what has come of one header off a connection
  without waiting (usually all of it: the listener tries this before it opens
  a cancel scope), and :func:`read_header` waits with trio for the rest;
  neither ever takes a byte of what follows the header (that belongs to the
  TLS handshake or the handler): what has come is peeked at (``MSG_PEEK``),
  and only bytes known to be header are taken: a version 2 header says its
  own length in its first 16 bytes, a version 1 line ends at its CRLF;
* :func:`parse_header` turns those bytes into a :class:`ProxyInfo`.

Anything that is not one whole, valid header raises :class:`ProxyHeaderError`,
the only error the parser raises whatever it is given (a hypothesis test holds
it to that); the listener logs it, counts it and closes the connection.  The
spec's rules, as applied here:

* v1: ``PROXY TCP4|TCP6 src dst sport dport\\r\\n`` with single spaces,
  addresses valid for the family (no leading zeros in IPv4, no IPv6 zone),
  ports 0..65535 without leading zeros or signs; ``PROXY UNKNOWN`` followed
  by anything up to the CRLF; at most :data:`V1_MAX` bytes with the CRLF,
  and no lone CR or LF.
* v2: the 12-byte signature, version 2, command LOCAL or PROXY, family
  UNSPEC, INET, INET6 or UNIX, transport UNSPEC, STREAM or DGRAM; at most
  :data:`V2_MAX` bytes in all.  A PROXY header of a known family must hold
  that family's addresses; the rest of it is TLVs, which must tile it
  exactly.  ALPN and AUTHORITY are kept (UTF-8 authority), a CRC32C is
  checked, each of the three at most once; every other TLV is skipped.
  LOCAL (the balancer's own health checks) and UNSPEC headers carry no
  address to use, and their bodies are skipped unread, as the spec says.
  So are the addresses of a DGRAM header, which no stream connection can
  come from: its connection's own address is used, as for UNSPEC.
"""

from __future__ import annotations

import ipaddress
import os
import socket as stdlib_socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias

from trio.lowlevel import wait_readable

__all__ = [
    "V1_MAX",
    "V2_MAX",
    "ProxyFrom",
    "ProxyHeaderError",
    "ProxyInfo",
    "Trusted",
    "check_proxy_arguments",
    "parse_header",
    "read_header",
    "take_header",
]

#: The longest version 1 line, CRLF included (the spec's worst case:
#: ``PROXY UNKNOWN`` with two full IPv6 addresses and ports).
V1_MAX: Final = 107
#: The longest version 2 header accepted, the 16 fixed bytes included.  The
#: spec's length field would allow 65,551 bytes; it designs headers to fit one
#: 536-byte segment, and 4 KiB leaves room for the TLVs balancers add (TLS
#: details, a unique ID of up to 128 bytes, a cloud's endpoint IDs).
V2_MAX: Final = 4096

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_START: Final = b"PROXY "
# The first peek, before the version is known: the spec's one segment.
_FIRST_PEEK: Final = 536

# v2: command (low nibble of byte 13), family and transport (byte 14).
_LOCAL: Final = 0x0
_PROXY: Final = 0x1
_UNSPEC, _INET, _INET6, _UNIX = 0x0, 0x1, 0x2, 0x3
_STREAM: Final = 0x1
_DGRAM: Final = 0x2
# The size of the addresses of each family (source, destination, and ports).
_ADDRESS_SIZE: Final = {_UNSPEC: 0, _INET: 12, _INET6: 36, _UNIX: 216}
_UNIX_PATH: Final = 108
# TLV types kept or checked; every other one is skipped.
_ALPN: Final = 0x01
_AUTHORITY: Final = 0x02
_CRC32C: Final = 0x03

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
#: What *proxy_from* takes: an address or network (as a str or an
#: :mod:`ipaddress` object), or any iterable of them.
ProxyFrom: TypeAlias = (
    str
    | ipaddress.IPv4Address
    | ipaddress.IPv6Address
    | Network
    | Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address | Network]
    | None
)

# proxy_from=None: the loopback addresses (IPv4-mapped ones are unmapped first).
_LOOPBACK: Final = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))
_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_MAPPED_PREFIX: Final = bytes(10) + b"\xff\xff"


class ProxyHeaderError(ValueError):
    """A connection's PROXY protocol header was refused: malformed, over the
    size limits, incomplete, or the connection ended or broke before it did.
    The message says why (the listener logs it)."""


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """What a PROXY protocol header said (:meth:`RSocket.get_proxy_info
    <trio_rsocket.RSocket.get_proxy_info>`).

    Attributes:
      version: 1 (the text header) or 2 (the binary one).
      source: the client's ``(ip, port)`` as the balancer saw it (what
        :meth:`~trio_rsocket.RSocket.get_peer_addr` returns), IPv4-mapped
        addresses shown as IPv4; ``(path, 0)`` for a Unix socket; ``None``
        when the header carries no address to use (v1 ``UNKNOWN``, v2
        ``LOCAL``, family or transport ``UNSPEC``, ``DGRAM``).
      destination: the address the client connected to (the balancer's),
        in the same form, or ``None`` with *source*.
      local: a v2 ``LOCAL`` header: the balancer's own connection, such as
        a health check.
      alpn: the v2 ``PP2_TYPE_ALPN`` TLV (the protocol the client's TLS
        handshake with the balancer chose), or ``None``.
      authority: the v2 ``PP2_TYPE_AUTHORITY`` TLV (the host name the client
        asked for, its TLS SNI), or ``None``.
    """

    version: int
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    local: bool = False
    alpn: bytes | None = None
    authority: str | None = None


class Trusted:
    """The networks allowed to send PROXY headers (``listen``'s *proxy_from*)."""

    __slots__ = ("_ranges", "networks")

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        # (address size, network, netmask) as the ints of the bytes the OS
        # gives: checked on every connection, so without ipaddress objects
        # (several times slower).
        self._ranges = tuple(
            (len(net.network_address.packed), int(net.network_address), int(net.netmask)) for net in networks
        )

    def __contains__(self, address: object) -> bool:
        """Whether a peer's socket address (``(host, port, ...)``) is trusted;
        an IPv4-mapped IPv6 address is checked as the IPv4 address it is."""
        if not isinstance(address, tuple):
            return False  # not an IP socket: nothing here names it
        host = address[0]
        if not isinstance(host, str):
            return False
        host = host.partition("%")[0]  # a link-local peer's zone is no part of its address
        try:
            packed = stdlib_socket.inet_pton(stdlib_socket.AF_INET6 if ":" in host else stdlib_socket.AF_INET, host)
        except (OSError, ValueError):
            return False
        if packed[:12] == _MAPPED_PREFIX:
            packed = packed[12:]
        value = int.from_bytes(packed)
        return any(size == len(packed) and value & mask == network for size, network, mask in self._ranges)

    def __repr__(self) -> str:
        return f"Trusted({', '.join(map(str, self.networks))})"


def check_proxy_arguments(proxy_protocol: object, proxy_from: object) -> Trusted | None:
    """Validate ``listen``'s *proxy_protocol* and *proxy_from* (before any
    I/O); return who may send headers, or ``None`` when the listener takes
    no headers."""
    if not isinstance(proxy_protocol, bool):
        raise TypeError(f"proxy_protocol must be a bool, not {type(proxy_protocol).__name__}")
    if not proxy_protocol:
        if proxy_from is not None:
            raise ValueError("proxy_from names who may send PROXY headers: it needs proxy_protocol=True")
        return None
    if proxy_from is None:
        return Trusted(_LOOPBACK)
    items = (
        [proxy_from]
        if isinstance(proxy_from, str | ipaddress.IPv4Address | ipaddress.IPv6Address | Network)
        else proxy_from
    )
    if isinstance(items, bytes | bytearray | memoryview) or not isinstance(items, Iterable):
        raise TypeError(
            "proxy_from must be an address or network (a str or an ipaddress object), "
            f"or a list of them, not {type(proxy_from).__name__}"
        )
    networks = tuple(_network(item) for item in items)
    if not networks:
        raise ValueError("proxy_from is empty: no connection could ever be accepted (None means loopback)")
    return Trusted(networks)


def _network(item: object) -> Network:
    """One *proxy_from* entry as a network; an IPv4-mapped one as the IPv4
    network it is (peers are unmapped before they are checked)."""
    if not isinstance(item, str | ipaddress.IPv4Address | ipaddress.IPv6Address | Network):
        raise TypeError(
            f"proxy_from entries must be addresses or networks (str or ipaddress objects), not {type(item).__name__}"
        )
    try:
        network = ipaddress.ip_network(item)
    except ValueError as exc:
        raise ValueError(f"proxy_from has {item!r}, which is not an address or network: {exc}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


# ----------------------------------------------------------------------------
# Reading


async def read_header(raw: stdlib_socket.socket, header: bytes = b"") -> ProxyInfo:
    """Read one PROXY header off the non-blocking socket *raw*, and not one
    byte more, *header* being what :func:`take_header` took of it already;
    waits with trio for what has not come yet (the caller bounds how long).

    Raises :class:`ProxyHeaderError`: the header is malformed or too long,
    or the connection ended (or broke) before it did.
    """
    while True:
        taken = take_header(raw, header)
        if isinstance(taken, ProxyInfo):
            return taken
        header = taken
        await wait_readable(raw)


def take_header(raw: stdlib_socket.socket, header: bytes = b"") -> ProxyInfo | bytes:
    """Take what has come of the PROXY header on *raw* after *header* (the
    bytes of it taken before), without waiting: the :class:`ProxyInfo` once
    the header is whole, else all of it taken so far.

    Every byte known to be header is taken as soon as it is seen, so that a
    wait for readability waits for new bytes, not for ones peeked already.

    Raises :class:`ProxyHeaderError` as :func:`read_header` does.
    """
    while True:
        try:
            peeked = raw.recv(_peek_size(header), stdlib_socket.MSG_PEEK)
        except BlockingIOError:
            return header
        except OSError as exc:
            raise ProxyHeaderError(f"the connection broke before the header ended: {exc.strerror or exc}") from None
        if not peeked:
            raise ProxyHeaderError(
                "the connection closed before the header ended"
                if header
                else "the connection closed before sending a PROXY header"
            )
        seen = header + peeked
        size = header_size(seen)
        take = len(peeked) if size is None else min(size, len(seen)) - len(header)
        try:
            header += raw.recv(take)
        except OSError as exc:  # what was peeked is there: only a reset comes between
            raise ProxyHeaderError(f"the connection broke before the header ended: {exc.strerror or exc}") from None
        if len(header) == size:
            return parse_header(header)


def _peek_size(header: bytes) -> int:
    """How much to peek at after *header* (the bytes taken so far): never
    past the end of a header whose size is known, nor past a v1 line's limit."""
    if header[:1] == b"P":
        return V1_MAX - len(header)
    if len(header) >= 16:
        return 16 + int.from_bytes(header[14:16]) - len(header)
    return _FIRST_PEEK - len(header)


def header_size(seen: bytes) -> int | None:
    """The size of the header that *seen* begins with, or ``None`` if more
    bytes are needed to tell.

    Raises :class:`ProxyHeaderError` as soon as *seen* cannot begin a valid
    header: no signature, a bad version, command or family, a v2 header over
    :data:`V2_MAX`, a v1 line with a lone CR or LF or no CRLF within
    :data:`V1_MAX` bytes.
    """
    if not seen:
        return None
    if seen[0] == 0x0D:  # v2's signature starts with CR, v1's "PROXY" with P
        if not V2_SIGNATURE.startswith(seen[:12]):
            raise ProxyHeaderError(f"not a PROXY protocol header (it starts with {seen[:12]!r})")
        if len(seen) < 16:
            return None
        version_command, family_transport = seen[12], seen[13]
        if version_command >> 4 != 2:
            raise ProxyHeaderError(f"PROXY protocol version {version_command >> 4} is not 2")
        if version_command & 0xF not in (_LOCAL, _PROXY):
            raise ProxyHeaderError(f"unknown v2 command {version_command & 0xF:#x}")
        if family_transport >> 4 not in _ADDRESS_SIZE or family_transport & 0xF > _DGRAM:
            raise ProxyHeaderError(f"unknown v2 address family and transport {family_transport:#04x}")
        size = 16 + int.from_bytes(seen[14:16])
        if size > V2_MAX:
            raise ProxyHeaderError(f"a v2 header of {size} bytes is over the limit of {V2_MAX}")
        return size
    if not _V1_START.startswith(seen[:6]):
        raise ProxyHeaderError(f"not a PROXY protocol header (it starts with {seen[:12]!r})")
    line = seen[:V1_MAX]
    carriage, feed = line.find(b"\r"), line.find(b"\n")
    if feed >= 0 and carriage != feed - 1:
        raise ProxyHeaderError("a line feed without a carriage return before it in a v1 header")
    if carriage >= 0 and carriage + 1 < len(line) and line[carriage + 1] != 0x0A:
        raise ProxyHeaderError("a carriage return without a line feed after it in a v1 header")
    if feed >= 0:
        return feed + 1
    if len(seen) >= V1_MAX:
        raise ProxyHeaderError(f"no CRLF in the first {V1_MAX} bytes of a v1 header")
    return None


# ----------------------------------------------------------------------------
# Parsing


def parse_header(data: bytes) -> ProxyInfo:
    """The :class:`ProxyInfo` of *data*, which must be exactly one PROXY
    header, version 1 or 2 (told apart by their signatures).

    Raises :class:`ProxyHeaderError` for anything else, whatever *data* is.
    """
    size = header_size(data)
    if size is None or size > len(data):
        raise ProxyHeaderError("an incomplete PROXY header")
    if size != len(data):
        raise ProxyHeaderError(f"{len(data) - size} bytes after the PROXY header")
    if data[0] == 0x0D:
        return _parse_v2(data)
    return _parse_v1(data)


def _parse_v1(data: bytes) -> ProxyInfo:
    try:
        line = data[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("a v1 header must be ASCII") from None
    fields = line.split(" ")
    if fields[1] == "UNKNOWN":
        return ProxyInfo(version=1)  # the rest of the line is ignored, as the spec says
    if fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"unknown v1 protocol {fields[1][:16]!r} (TCP4, TCP6 or UNKNOWN)")
    if len(fields) != 6:
        raise ProxyHeaderError(f"a v1 {fields[1]} header has 6 fields separated by single spaces, not {len(fields)}")
    family = stdlib_socket.AF_INET if fields[1] == "TCP4" else stdlib_socket.AF_INET6
    source, destination = (
        _v1_address(family, text, port) for text, port in ((fields[2], fields[4]), (fields[3], fields[5]))
    )
    return ProxyInfo(version=1, source=source, destination=destination)


def _v1_address(family: int, text: str, port: str) -> tuple[str, int]:
    # inet_pton is as strict as the spec: four decimal octets without leading
    # zeros (no octal confusion), or one IPv6 address without a zone.
    try:
        packed = stdlib_socket.inet_pton(family, text)
    except (OSError, ValueError):
        version = 4 if family == stdlib_socket.AF_INET else 6
        raise ProxyHeaderError(f"{text[:48]!r} is not an IPv{version} address in a v1 header") from None
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and (port == "0" or port[0] != "0")):
        raise ProxyHeaderError(f"{port[:16]!r} is not a port (0..65535, no leading zeros) in a v1 header")
    number = int(port)
    if number > 65535:
        raise ProxyHeaderError(f"port {number} is over 65535 in a v1 header")
    return _ip_text(packed), number


def _ip_text(packed: bytes) -> str:
    """An address (4 or 16 bytes) as ``get_peer_addr`` shows one: in the
    OS's words (``inet_ntop``, as ``getpeername`` gives it), IPv4-mapped as IPv4."""
    if len(packed) == 16 and packed[:12] != _MAPPED_PREFIX:
        return stdlib_socket.inet_ntop(stdlib_socket.AF_INET6, packed)
    return stdlib_socket.inet_ntop(stdlib_socket.AF_INET, packed[-4:])


def _parse_v2(data: bytes) -> ProxyInfo:
    command, family, transport = data[12] & 0xF, data[13] >> 4, data[13] & 0xF
    if command == _LOCAL:
        # The proxy's own connection: the body, family included, is ignored.
        return ProxyInfo(version=2, local=True)
    if family == _UNSPEC:
        # Whatever the body holds, it is no address of ours and it need not be TLVs.
        return ProxyInfo(version=2)
    body = memoryview(data)[16:]
    size = _ADDRESS_SIZE[family]
    if len(body) < size:
        raise ProxyHeaderError(f"a v2 header of family {family:#x} needs {size} address bytes, not {len(body)}")
    alpn, authority = _read_tlvs(data, 16 + size)
    source = destination = None
    if transport == _STREAM:
        if family == _UNIX:
            source = (_unix_path(body[:_UNIX_PATH]), 0)
            destination = (_unix_path(body[_UNIX_PATH:size]), 0)
        else:
            length = 4 if family == _INET else 16
            ports = struct.unpack_from("!HH", body, 2 * length)
            source = (_ip_text(bytes(body[:length])), ports[0])
            destination = (_ip_text(bytes(body[length : 2 * length])), ports[1])
    return ProxyInfo(version=2, source=source, destination=destination, alpn=alpn, authority=authority)


def _unix_path(raw: memoryview) -> str:
    """A ``sun_path`` of 108 bytes as ``get_peer_addr`` shows a path: up to
    its first NUL, or a Linux abstract name (leading NUL) without its padding."""
    path = bytes(raw)
    path = b"\0" + path[1:].rstrip(b"\0") if path[:1] == b"\0" else path.split(b"\0", 1)[0]
    return os.fsdecode(path) if path != b"\0" else ""


def _read_tlvs(data: bytes, offset: int) -> tuple[bytes | None, str | None]:
    """The ALPN and authority among the TLVs from *offset* to the end of
    *data*, after checking that they tile it and the CRC32C, if any."""
    alpn: bytes | None = None
    authority: str | None = None
    crc_at = -1
    end = len(data)
    while offset < end:
        if offset + 3 > end:
            raise ProxyHeaderError(f"a v2 TLV header cut short by the end of the header ({end - offset} bytes left)")
        kind, length = data[offset], int.from_bytes(data[offset + 1 : offset + 3])
        start, offset = offset + 3, offset + 3 + length
        if offset > end:
            raise ProxyHeaderError(f"a v2 TLV of type {kind:#04x} runs {offset - end} bytes past the header")
        if kind in (_ALPN, _AUTHORITY, _CRC32C) and (
            (kind == _ALPN and alpn is not None)
            or (kind == _AUTHORITY and authority is not None)
            or (kind == _CRC32C and crc_at >= 0)
        ):
            raise ProxyHeaderError(f"two v2 TLVs of type {kind:#04x}")
        if kind == _ALPN:
            alpn = data[start:offset]
        elif kind == _AUTHORITY:
            try:
                authority = data[start:offset].decode("utf-8")
            except UnicodeDecodeError:
                raise ProxyHeaderError("the v2 authority TLV is not UTF-8") from None
        elif kind == _CRC32C:
            if length != 4:
                raise ProxyHeaderError(f"the v2 CRC32C TLV has {length} bytes, not 4")
            crc_at = start
    if crc_at >= 0:
        expected = int.from_bytes(data[crc_at : crc_at + 4])
        zeroed = data[:crc_at] + b"\0\0\0\0" + data[crc_at + 4 :]
        if crc32c(zeroed) != expected:
            raise ProxyHeaderError("the v2 header's CRC32C does not match")
    return alpn, authority


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli, RFC 4960 appendix B) of *data*.  Pure Python, for
    the few headers that carry one: at most :data:`V2_MAX` bytes each."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
