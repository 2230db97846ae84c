"""The client's address as the log-in rate limit and the session record should see it.

Behind a reverse proxy the TCP peer is the proxy, so every user would share one
per-address failure budget. A proxy names the client in `X-Forwarded-For`; that header
is believed only when the direct peer is a configured trusted proxy
(`server.web.trusted_proxies`), and then only as far as the chain stays trusted: the
address taken is the right-most one that is *not* a trusted proxy. Anything a client
wrote further left is its own claim and is ignored, so a spoofed header from an
untrusted peer (or one prepended before the proxy) changes nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=16)
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """The config's CIDRs, parsed once per distinct list (the config is validated)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _parse(text: str) -> Address | None:
    """An address from a forwarded hop: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`,
    `2001:db8::1`; None for anything else (`unknown`, obfuscated identifiers)."""
    hop = text.strip()
    if hop.startswith("["):
        hop = hop[1:].split("]", 1)[0]
    elif hop.count(":") == 1:
        hop = hop.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(hop)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, networks: Sequence[Network]) -> bool:
    return any(addr in net for net in networks)


def resolve_client(peer: str | None, forwarded_for: Iterable[str],
                   networks: Sequence[Network]) -> str:
    """The right-most address of [X-Forwarded-For..., peer] that is not a trusted proxy
    (walking right to left while the hops are trusted); the peer itself when it is not
    trusted. If every hop is trusted, the left-most one."""
    if not peer:
        return "unknown"
    current = _parse(peer)
    if current is None or not networks or not _trusted(current, networks):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:  # garbage in a trusted chain: stop at the last hop we know
            break
        current = addr
        if not _trusted(current, networks):
            break
    return str(current)


def client_address(request: web.Request, trusted_proxies: Sequence[str]) -> str:
    networks = trusted_networks(tuple(trusted_proxies))
    return resolve_client(request.remote, request.headers.getall("X-Forwarded-For", []),
                          networks)
