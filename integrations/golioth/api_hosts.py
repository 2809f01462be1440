"""Where an API key may go: the API host allow-list and the private-address rule (issue 9).

A staff user who may edit an integration must not be able to send its key to a host they run,
nor make gsync call an internal address (SSRF). So the base URL's host must be on the allow-list
(GSYNC_API_HOSTS, default api.golioth.io), and every address it resolves to must be public unless
GSYNC_ALLOW_PRIVATE_API_HOSTS says otherwise. The form refuses a bad URL when it is saved; the
client asks again before every request, so a URL that reached the database another way, or a
name that now resolves elsewhere, still gets no key.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from integrations.golioth.errors import GoliothError

DEFAULT_API_HOSTS = ("api.golioth.io",)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ApiHostError(GoliothError):
    """The API base URL is not one gsync may send an API key to."""


@dataclass(frozen=True)
class ApiHostPolicy:
    """The allow-list (host names, or `*.example.com` for its subdomains) and whether loopback,
    private, link-local and other non-public addresses are allowed."""

    hosts: tuple[str, ...]
    allow_private: bool

    @classmethod
    def from_settings(cls) -> ApiHostPolicy:
        hosts = getattr(settings, "GSYNC_API_HOSTS", DEFAULT_API_HOSTS)
        allow_private = bool(getattr(settings, "GSYNC_ALLOW_PRIVATE_API_HOSTS", False))
        return cls(tuple(h.strip().lower().rstrip(".") for h in hosts if h.strip()), allow_private)

    def check_url(self, url: str) -> tuple[str, int]:
        """The URL's host and port, or ApiHostError when the host is not allowed (no DNS)."""
        # urllib3 (which requests connects with) and urlsplit read backslashes and odd characters
        # differently: refuse them, so the host checked is the host connected to.
        if any(ch == "\\" or ch.isspace() or not ch.isprintable() for ch in url):
            raise ApiHostError("the API base URL must not contain backslashes, spaces or controls")
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ApiHostError("the API base URL must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ApiHostError("the API base URL must not carry a user name or password")
        host = parts.hostname.lower().rstrip(".")
        if not _matches(host, self.hosts):
            allowed = ", ".join(self.hosts) or "none"
            raise ApiHostError(
                f"the host {_shown(host)} is not an allowed Golioth API host (allowed: {allowed}). "
                "gsync sends API keys only to the hosts in GSYNC_API_HOSTS; whoever runs this "
                "deployment can add one there"
            )
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ApiHostError("the API base URL has an invalid port") from exc
        literal = _ip_or_none(host)
        if literal is not None:
            self._check_address(host, literal)
            self._check_scheme(parts.scheme)
        return host, port

    def check_addresses(self, url: str) -> None:
        """check_url, then every address the host resolves to; socket.gaierror when the name
        does not resolve (the caller decides whether that is transient or fine)."""
        host, port = self.check_url(url)
        if self.allow_private or _ip_or_none(host) is not None:
            return
        for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP):
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            self._check_address(host, address)
        self._check_scheme(urlsplit(url).scheme)

    def _check_scheme(self, scheme: str) -> None:
        """After the address checks, whose reason comes first: a private address is refused
        for what it is, whichever scheme it was given with."""
        if scheme != "https" and not self.allow_private:
            raise ApiHostError(
                "the API base URL must start with https:// (over http:// the API key would "
                "travel unencrypted); http:// is for a local Golioth, with "
                "GSYNC_ALLOW_PRIVATE_API_HOSTS set"
            )

    def _check_address(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address):
        if self.allow_private or _is_public(address):
            return
        raise ApiHostError(
            f"the API host {_shown(host)} resolves to {address}, a loopback, private or "
            "link-local address: refused unless GSYNC_ALLOW_PRIVATE_API_HOSTS is set"
        )


def _matches(host: str, patterns: Collection[str]) -> bool:
    for pattern in patterns:
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global, and so is any IPv4 address the IPv6 one carries (mapped, compatible, NAT64, 6to4),
    since those reach that IPv4 host."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and (address in NAT64 or int(address) >> 32 == 0):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not _is_public(embedded):
            return False
    return address.is_global and not address.is_multicast


def _shown(host: str) -> str:
    # The host is staff input, echoed back to staff: bounded all the same.
    return host if len(host) <= 100 else host[:100] + "…"
