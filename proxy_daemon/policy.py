"""Destination policy: which addresses and ports the proxy may connect to.

The check runs on the resolved address that is actually connected to, so a name that
resolves to a private address (DNS rebinding) is refused the same as the literal.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import BadGateway, Forbidden, GatewayTimeout, OutOfDescriptors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_EXTRA_V4 = (
    ("CGNAT", ipaddress.ip_network("100.64.0.0/10")),
    ("this-network", ipaddress.ip_network("0.0.0.0/8")),
    ("broadcast", ipaddress.ip_network("255.255.255.255/32")),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_refusal(address: str) -> str | None:
    """Why a destination address is refused, or None when it is public."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_refusal(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return address_refusal(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip.sixtofour is not None:
            return address_refusal(str(ip.sixtofour))
    if ip.is_unspecified:
        return f"{ip} is an unspecified address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if isinstance(ip, ipaddress.IPv4Address):
        for label, net in _EXTRA_V4:
            if ip in net:
                return f"{ip} is a {label} address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    return None


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allow_private: bool
    connect_ports: frozenset[int]

    def check_connect_port(self, port: int) -> None:
        if port not in self.connect_ports:
            allowed = ", ".join(str(p) for p in sorted(self.connect_ports)) or "none"
            raise Forbidden(f"CONNECT to port {port} is not allowed (allowed: {allowed})")

    def allowed_addresses(self, host: str, addresses: Iterable[str]) -> list[str]:
        """The addresses that may be connected to; Forbidden naming the reason if none."""
        addresses = list(dict.fromkeys(addresses))
        if self.allow_private:
            return addresses
        allowed, reasons = [], []
        for address in addresses:
            reason = address_refusal(address)
            if reason is None:
                allowed.append(address)
            else:
                reasons.append(reason)
        if not allowed:
            raise Forbidden(f"destination {host} refused: {reasons[0]}")
        return allowed


def resolve(host: str, port: int) -> list[tuple[int, str]]:
    """(family, address) pairs for host; BadGateway when DNS fails."""
    # An IP literal needs no resolver (which gevent runs in a thread pool).
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if "%" not in host:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, str(literal))]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadGateway(f"cannot resolve {host}: {exc}") from None
    out: list[tuple[int, str]] = [
        (fam, str(sa[0])) for fam, _type, _proto, _canon, sa in infos if fam in _FAMILIES
    ]
    if not out:
        raise BadGateway(f"cannot resolve {host}: no IPv4/IPv6 address")
    return out


_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def connect(
    policy: DestinationPolicy, host: str, port: int, *, timeout: float
) -> tuple[socket.socket, str]:
    """A connected socket to an allowed address of host:port, and that address."""
    resolved = resolve(host, port)
    families = dict((addr, fam) for fam, addr in resolved)
    allowed = policy.allowed_addresses(host, [addr for _fam, addr in resolved])
    last_error: Exception | None = None
    timed_out = False
    for address in allowed:
        try:
            sock = socket.socket(families[address], socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE: out of descriptors, not the origin's fault
            raise OutOfDescriptors(
                f"proxy cannot open a connection right now: {exc.strerror}"
            ) from None
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
        except TimeoutError as exc:
            sock.close()
            timed_out, last_error = True, exc
            continue
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        # The check is repeated on the peer the kernel actually connected to.
        peer = sock.getpeername()[0]
        if not policy.allow_private and address_refusal(peer) is not None:
            sock.close()
            raise Forbidden(f"destination {host} refused: {address_refusal(peer)}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address
    if timed_out:
        raise GatewayTimeout(f"connecting to {host}:{port} timed out")
    raise BadGateway(f"cannot connect to {host}:{port}: {last_error}")
