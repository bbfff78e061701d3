"""Addresses in the user's words: the one ``host:port`` formatter.

Every message, log line and CLI line that names an endpoint goes through
:func:`host_port`, so an IPv6 address is always bracketed the same way
(``[::1]:443``), and every ``(ip, port)`` the library hands out goes through
:func:`display_address`, so an IPv4-mapped IPv6 address reads as IPv4.
"""

from __future__ import annotations

from typing import Any

__all__ = ["display_address", "host_port", "peer_text"]


def host_port(host: str, port: int | str) -> str:
    """``host:port`` for messages; an IPv6 address in brackets (``[::1]:443``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def display_address(address: Any) -> tuple[str, int]:
    """``(ip, port)`` from a socket address, IPv4-mapped IPv6 shown as dotted IPv4."""
    host, port = str(address[0]), address[1]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def peer_text(address: Any) -> str:
    """``host:port`` of a socket address (a peer's, say) for log lines."""
    try:
        host, port = display_address(address)
    except (TypeError, IndexError):
        return repr(address)
    return host_port(host, port)
