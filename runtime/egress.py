"""Where the platform may send a request a user chose the address of (webhooks): never into its own networks.

A user who sets a webhook must not make a service call what only the service can reach (SSRF):
its loopback, its host's and cluster's private networks, link-local addresses (cloud metadata),
multicast, reserved and unspecified ones. The rule is applied twice: when the address is set
(answered 422) and again when a request is sent, after resolving the name then, to the very
address that was checked (a name that resolved elsewhere at set time, or changes in between,
gains nothing). An explicit allowlist (`networks`) opens chosen networks or names, for tests and
local development only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SCHEMES: Final = {"http": 80, "https": 443}


class RefusedDestinationError(ValueError):
    """The address may not be called."""


@dataclass(frozen=True)
class Allowlist:
    """Networks and host names that may be called although they are not public (tests, local development)."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Allowlist:
        """From settings: each entry a network (`127.0.0.0/8`), an address, or a host name."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower())
        return cls(tuple(networks), frozenset(hosts))

    def admits(self, host: str, address: IPAddress) -> bool:
        """Whether the allowlist opens this host or address."""
        return host.lower() in self.hosts or any(address in network for network in self.networks)


def refusal(address: IPAddress) -> str | None:
    """Why an address may not be called; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    for kind, hit in (
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a private", address.is_private),
        ("a multicast", address.is_multicast),
        ("an unspecified", address.is_unspecified),
        ("a reserved", address.is_reserved),
    ):
        if hit:
            return f"{address} is {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


@dataclass(frozen=True)
class Destination:
    """A checked address: the URL as given, and the addresses it may be sent to."""

    url: str
    host: str
    addresses: tuple[IPAddress, ...]

    def pinned(self) -> str:
        """The URL with its host replaced by the first checked address (the request goes there, nowhere else)."""
        parts = urlsplit(self.url)
        address = self.addresses[0]
        literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        netloc = literal + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


def _parts(url: str) -> tuple[SplitResult, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        msg = "only http and https addresses with a host may be called"
        raise RefusedDestinationError(msg)
    if parts.username or parts.password:
        msg = "an address with credentials in it is refused"
        raise RefusedDestinationError(msg)
    try:
        port = parts.port or _SCHEMES[parts.scheme]
    except ValueError as error:
        msg = f"not a port: {error}"
        raise RefusedDestinationError(msg) from error
    return parts, parts.hostname, port


_RESOLVE_SECONDS: Final = 5.0


async def check(url: str, allow: Allowlist = Allowlist()) -> Destination:
    """Resolve `url`'s host now and check every address it names; `RefusedDestinationError` when one is refused."""
    _, host, port = _parts(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), _RESOLVE_SECONDS
            )
        except (OSError, TimeoutError) as error:
            msg = f"{host} cannot be resolved"
            raise RefusedDestinationError(msg) from error
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            msg = f"{host} cannot be resolved"
            raise RefusedDestinationError(msg)
    for address in addresses:
        why = refusal(address)
        if why is not None and not allow.admits(host, address):
            msg = f"{host} may not be called: {why}"
            raise RefusedDestinationError(msg)
    return Destination(url=url, host=host, addresses=addresses)
