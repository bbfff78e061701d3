"""Addresses in the user's words: the one ``host:port`` formatter.

Every message, log line and CLI line that names an endpoint goes through
:func:`host_port`, so an IPv6 address is always bracketed the same way
(``[::1]:443``), and every ``(ip, port)`` the library hands out goes through
:func:`display_address`, so an IPv4-mapped IPv6 address reads as IPv4 and a
Unix socket's address is ``(path, 0)``.  What is printed can be given back:
every host argument takes an IPv6 address in brackets too (:func:`unbracket`).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

__all__ = ["display_address", "host_port", "peer_text", "unbracket"]


def host_port(host: str, port: int | str) -> str:
    """``host:port`` for messages; an IPv6 address in brackets (``[::1]:443``),
    never two pairs of them."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def unbracket(host: str) -> str:
    """*host* without the brackets an IPv6 address may come in (``"[::1]"``
    is ``"::1"``), as :func:`host_port` prints it; any other *host* as it is.

    Raises :class:`ValueError` (naming the argument, ``host``) for brackets
    around anything but an IPv6 address, or brackets that do not pair up.
    """
    if not (host.startswith("[") or host.endswith("]")):
        return host
    inner = host[1:-1]
    try:
        if not (host.startswith("[") and host.endswith("]")):
            raise ValueError("unpaired brackets")
        ipaddress.IPv6Address(inner)
    except ValueError:
        raise ValueError(
            f"host must be a name or an address; brackets go around an IPv6 address, as in [::1]; not {host!r}"
        ) from None
    return inner


def display_address(address: Any) -> tuple[str, int]:
    """``(ip, port)`` from a socket address, IPv4-mapped IPv6 shown as dotted IPv4.

    A Unix socket's address is ``(path, 0)``: ``""`` for an unnamed socket,
    and a Linux abstract name (which the OS gives as bytes) as a str that
    keeps its leading NUL, decoded as the OS decodes file names.
    """
    if isinstance(address, str | bytes):
        return os.fsdecode(address), 0
    host, port = str(address[0]), address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def peer_text(address: Any) -> str:
    """``host:port`` of a socket address (a peer's, say) for log lines; a Unix
    socket's path (an abstract name with ``@`` for its NUL, as ``ss`` shows
    it; ``"an unnamed socket"`` when it has none)."""
    if isinstance(address, str | bytes):
        path = os.fsdecode(address)
        # An abstract name shown as ss(8) shows it: "@" for the leading NUL.
        return ("@" + path[1:] if path.startswith("\0") else path) or "an unnamed socket"
    try:
        host, port = display_address(address)
    except (TypeError, IndexError):
        return repr(address)
    return host_port(host, port)
