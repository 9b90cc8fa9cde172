"""The SSRF guard of outgoing connections (HTTP, SMTP): which destinations a task may reach.

A destination is checked after DNS resolution, address by address, and the caller then
connects to one of the returned addresses itself (never to the host name again), so a DNS
answer that changes between the check and the connection ("rebinding") cannot slip through.
Addresses that are not publicly routable are refused — loopback, private, link-local, shared
(CGNAT, 100.64.0.0/10), multicast, unspecified, reserved — including IPv6 forms that embed
such an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo). Networks listed in
`JUNCTION_SSRF_ALLOWED_NETWORKS` are allowed despite this.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class DestinationRefused(Exception):
    """The destination may not be reached; the message says why (safe to show the user)."""


class DestinationUnresolved(Exception):
    """The host name could not be resolved; `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Destination:
    """A checked URL: where to connect (`addresses`) and what to call the host on the wire."""

    url: SplitResult
    scheme: str
    host: str  # the host name (or IP literal) of the URL, for the Host header, SNI and the certificate
    port: int
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == ALLOWED_SCHEMES[self.scheme] else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def target(self) -> str:
        """The request target: path and query of the URL."""
        path = self.url.path or "/"
        return f"{path}?{self.url.query}" if self.url.query else path


@lru_cache(maxsize=8)
def _parse_networks(values: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return tuple(ipaddress.ip_network(value, strict=False) for value in values)
    except ValueError as exc:
        raise ImproperlyConfigured(f"JUNCTION_SSRF_ALLOWED_NETWORKS: {exc}") from None


def allowed_networks() -> tuple[IPNetwork, ...]:
    return _parse_networks(tuple(settings.JUNCTION_SSRF_ALLOWED_NETWORKS))


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Return why `address` is not publicly routable (None when it is)."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.version == 4 and address in _SHARED_ADDRESS_SPACE:
        return "shared address space (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if address.version == 6 and address.is_site_local:
        return "site-local"
    if not address.is_global:
        return "not globally routable"
    return None


def check_address(address: IPAddress, allowed: tuple[IPNetwork, ...] | None = None) -> None:
    """Raise DestinationRefused unless `address` may be reached."""
    allowed = allowed_networks() if allowed is None else allowed
    inner = embedded_ipv4(address)
    # An IPv6 address that carries an IPv4 one is judged by the IPv4 address it reaches.
    judged = address if inner is None else inner
    if any(candidate in network for candidate in {address, judged} for network in allowed
           if candidate.version == network.version):
        return
    reason = refusal_reason(judged)
    if reason is not None:
        shown = str(address) if inner is None else f"{address} ({inner})"
        raise DestinationRefused(
            f"refused to connect to {shown}: {reason} address "
            f"(allow it with JUNCTION_SSRF_ALLOWED_NETWORKS)"
        )


def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """Return the addresses of `host` (an IP literal resolves to itself), in resolver order."""
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        transient = exc.errno in {socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)}
        raise DestinationUnresolved(f"cannot resolve {host!r}: {exc.strerror}", transient=transient) from None
    except UnicodeError:
        raise DestinationUnresolved(f"invalid host name {host!r}", transient=False) from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        # Drop an IPv6 zone ("fe80::1%eth0"): the address alone decides.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationUnresolved(f"{host!r} has no address", transient=False)
    return tuple(addresses)


def checked_destination(url: str) -> Destination:
    """Parse, resolve and check `url`; every address it resolves to must be allowed.

    Raises DestinationRefused for a scheme other than http(s), a malformed URL or a refused
    address, and DestinationUnresolved when DNS has no answer. Nothing is connected to.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DestinationRefused(f"refused URL scheme {parts.scheme or '(none)'!r}: only http and https are allowed")
    host = parts.hostname
    if not host:
        raise DestinationRefused(f"invalid URL {url!r}: no host")
    port = port or ALLOWED_SCHEMES[scheme]
    addresses = resolve(host, port)
    allowed = allowed_networks()
    # Every answer must pass: a resolver mixing a public and a private address is not trusted.
    for address in addresses:
        check_address(address, allowed)
    return Destination(url=parts, scheme=scheme, host=host, port=port, addresses=addresses)


def checked_addresses(host: str, port: int) -> tuple[IPAddress, ...]:
    """Resolve and check a host a task connects to without a URL (e.g. an SMTP server).

    Every address it resolves to must be allowed; connect to one of these addresses, never to
    the host name again. Raises DestinationRefused or DestinationUnresolved as
    `checked_destination` does.
    """
    if not isinstance(host, str) or not host.strip():
        raise DestinationRefused("no host to connect to")
    host = host.strip().strip("[]")
    addresses = resolve(host, port)
    allowed = allowed_networks()
    for address in addresses:
        check_address(address, allowed)
    return addresses
