"""Which `Host` and `Origin` a request may carry.

Host (every request): DNS rebinding points a name the attacker owns at 127.0.0.1, and the page on that name then
reaches a loopback server as "same origin", sending its own name as Host. So only names the server is bound to
or was given (--allowed-hosts) are answered. Ports are not compared: rebinding needs a name, and an SSH tunnel
or proxy may forward another port. A wildcard bind (0.0.0.0, ::) answers every address of the machine: any IP
address (which no one can rebind), loopback names and the machine's host name.

Origin (websocket handshakes; browsers always send it, other clients never): the page must be of this server
(Origin's host and port equal Host) or one of --allowed-origins; `*` (any page) only on a loopback bind.
"""

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from backend.core.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::"})
ANY_ORIGIN = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str) -> bool:
    """Only this machine can connect (names other than localhost count as reachable from outside)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name of a Host header value or a bind address: lower case, without port, brackets or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:7860
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        host = host.partition(":")[0]
    return host.rstrip(".")


@dataclass(frozen=True)
class HostRule:
    names: frozenset[str]
    any_ip: bool  # a wildcard bind

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = host_name(host_header)
        return name in self.names or (self.any_ip and _is_ip(name))


def host_rule(bind: str, allowed: Iterable[str]) -> HostRule:
    """The names a server bound to `bind` answers to, plus `allowed` (--allowed-hosts)."""
    names = set()
    for entry in allowed:
        name = host_name(entry)
        if not name or ANY_ORIGIN in name or "/" in name:
            raise ConfigError(
                f"allowed_hosts: {entry[:80]!r} is not a host name (give names such as "
                "studio.example.org, without scheme, path or wildcard)"
            )
        names.add(name)
    bind_name = host_name(bind)
    wildcard = bind_name in WILDCARD_BINDS
    if wildcard or is_loopback(bind_name):
        names |= LOOPBACK_NAMES
    if wildcard:
        names.add(socket.gethostname().lower())
    else:
        names.add(bind_name)
    return HostRule(frozenset(names), wildcard)


def normal_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lower case with the scheme's default port left out; None if not such an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, DEFAULT_PORTS[parts.scheme]) else "")


@dataclass(frozen=True)
class OriginRule:
    allowed: frozenset[str]  # normal origins, or {ANY_ORIGIN}

    def allows(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None:  # not a browser: nothing to protect it from
            return True
        if urlsplit(origin).netloc.lower() == (host_header or "").lower() or ANY_ORIGIN in self.allowed:
            return True
        return normal_origin(origin) in self.allowed


def origin_rule(bind: str, allowed: Iterable[str]) -> OriginRule:
    """--allowed-origins, checked: explicit origins, and `*` only for a server on loopback (off loopback it would
    let any web page a user of the server opens talk to the model in their name)."""
    origins = set()
    for entry in allowed:
        if entry.strip() == ANY_ORIGIN:
            if not is_loopback(host_name(bind)):
                raise ConfigError(
                    f"allowed_origins: '*' (any web page) only on a loopback bind, not with --host "
                    f"{bind}: list the origins of the clients you use, e.g. https://client.example"
                )
            origins.add(ANY_ORIGIN)
            continue
        origin = normal_origin(entry)
        if origin is None:
            raise ConfigError(
                f"allowed_origins: {entry[:80]!r} is not an origin (scheme://host[:port], such as "
                "https://client.example or http://localhost:5173)"
            )
        origins.add(origin)
    return OriginRule(frozenset(origins))
