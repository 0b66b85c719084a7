"""Where a completion callback may go: public addresses only (SSRF rules). Pure.

The reconciler POSTs signed job bodies from inside the cluster, so a callback URL must not
be able to aim it at the inside: the metadata service (169.254.169.254), the database, an
admin port on loopback. A URL is refused when its host is, or resolves to, an address of one
of these kinds (``CallbackRefused.why``):

============  =====================================================================
loopback      127.0.0.0/8, ::1; and the names ``localhost`` and ``*.localhost``
unspecified   0.0.0.0/8, ::
link_local    169.254.0.0/16 (cloud metadata), fe80::/10
multicast     224.0.0.0/4, ff00::/8
unique_local  fc00::/7 (IPv6's private networks), and the deprecated site-local fec0::/10
private       10/8, 172.16/12, 192.168/16 and the other non-routable ranges of RFC 6890
reserved      240.0.0.0/4, 255.255.255.255, ::/8 and IETF-reserved blocks
not_global    anything else that is not globally routable (100.64.0.0/10, carrier NAT)
============  =====================================================================

An IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``,
Teredo, NAT64 ``64:ff9b::/96``) is judged by the IPv4 address too. A literal IPv4 host is read
the way the C resolver reads it, so ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and
``127.1`` are all 127.0.0.1. Networks listed in ``CLIPLINE_CALLBACKS_ALLOW_NETWORKS`` (for
local development: a receiver on 127.0.0.1) pass whatever their kind.

The API checks at submit time; the sender checks again at delivery, after resolving the
name, and connects to the address it checked (``pipeline.adapters.callbacks.http``), so a
name that resolves elsewhere by then (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.errors import CallbackRefused

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""host, port → the addresses it resolves to now; raises ``OSError`` when it does not."""

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")
_IPV4_SPELLING = re.compile(r"[0-9a-fA-FxX.]+")


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """What the settings allow: plain http (development) and networks that pass anyway."""

    allow_http: bool = False
    allow_networks: tuple[Network, ...] = ()


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.0/8, ::1"`` → networks. Raises ``ValueError`` naming a bad entry."""
    found = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                found.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"not an IP network: {part!r}") from exc
    return tuple(found)


def literal_address(host: str) -> Address | None:
    """The address a URL's host spells, in any spelling; None for a name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    bare = host.removesuffix(".")
    if _IPV4_SPELLING.fullmatch(bare):
        try:  # decimal, hex, octal and short forms, as inet_aton (and so the resolver) reads them
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to ``address`` really goes to (IPv4-mapped, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:  # DNS64 networks give every IPv4-only receiver such an address
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a tunnel (6to4, Teredo) may lead to."""
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def kind(address: Address) -> str | None:
    """Why ``address`` is refused (see the table above), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "link_local"
        carried = _carried_ipv4(address)
        if carried is not None:
            return kind(carried)
        tunnelled = _tunnelled_ipv4(address)
        if tunnelled is not None and kind(tunnelled) is not None:
            return kind(tunnelled)
    for name, hit in (
        ("unspecified", address.is_unspecified or address in ipaddress.IPv4Network("0.0.0.0/8")),
        ("loopback", address.is_loopback),
        ("link_local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unique_local", isinstance(address, ipaddress.IPv6Address)
         and (address in ipaddress.IPv6Network("fc00::/7") or address in SITE_LOCAL)),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not_global", not address.is_global),
    ):
        if hit:
            return name
    return None


def check_address(address: Address, policy: CallbackPolicy, host: str) -> None:
    """Raises ``CallbackRefused`` unless ``address`` is public or in an allowed network."""
    if any(address in net for net in policy.allow_networks):
        return
    why = kind(address)
    if why is not None:
        shown = host if str(address) == host.strip("[]") else f"{host} ({address})"
        raise CallbackRefused(f"callback address {shown} is {why.replace('_', '-')}: Clipline "
                              "only calls public addresses (CLIPLINE_CALLBACKS_ALLOW_NETWORKS "
                              "lists exceptions for development)", why)


def target(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a callback URL. Raises ``CallbackRefused`` for one without a
    host or with a scheme other than http(s)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"callback URL has a bad port: {exc}", "invalid_url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("callback URLs are http(s) URLs with a host", "invalid_url")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, policy: CallbackPolicy,
              resolve: Resolver | None = None) -> list[Address]:
    """The addresses ``url`` may be delivered to, every one checked.

    A literal address is checked as it is; ``localhost`` and ``*.localhost`` are loopback by
    definition (RFC 6761); any other name is resolved with ``resolve`` and every address it
    gives must pass. Without a resolver a name gives ``[]`` (the check is left to delivery).

    Raises ``CallbackRefused`` (plain http without ``allow_http`` is ``insecure``) and lets
    the resolver's ``OSError`` through (a name that does not resolve now)."""
    scheme, host, port = target(url)
    if scheme != "https" and not policy.allow_http:
        raise CallbackRefused("callback URLs must use https", "insecure")
    literal = literal_address(host)
    if literal is not None:
        check_address(literal, policy, host)
        return [literal]
    name = host.lower().removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        check_address(ipaddress.IPv4Address("127.0.0.1"), policy, host)
    if resolve is None:
        return []
    found = _addresses(resolve(host, port))
    if not found:
        raise OSError(f"{host} resolves to no address")
    for address in found:
        check_address(address, policy, host)
    return found


def _addresses(texts: Iterable[str]) -> list[Address]:
    seen: list[Address] = []
    for text in texts:
        address = ipaddress.ip_address(text)  # a zone ("fe80::1%eth0") is kept, and refused
        if address not in seen:
            seen.append(address)
    return seen
