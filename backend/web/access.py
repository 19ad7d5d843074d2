"""The settings every web server of the project shares (where it listens, accounts, TLS, allowed names and
origins), and `access_of`, which checks them at start and returns what the gate enforces."""

from dataclasses import dataclass
from pathlib import Path

from backend.core.config import option
from backend.core.errors import ConfigError

from .accounts import AUTH_ENV, Users, read_users
from .names import HostRule, OriginRule, host_rule, is_loopback, origin_rule
from .tls import check_tls


@dataclass
class ServeConfig:
    host: str = option(
        "127.0.0.1",
        "address to bind (127.0.0.1 keeps the server on this machine; any other address "
        "needs --auth-file or " + AUTH_ENV + ")",
    )
    port: int = option(7860, "port to serve on")
    auth_file: Path | None = option(
        None,
        "file of user:password lines; every page, API call, file and websocket "
        "then needs one of them (also: " + AUTH_ENV + "=user:password)",
    )
    ssl_certfile: Path | None = option(
        None,
        "TLS certificate (PEM): serve https, which browsers require before "
        "they give a page from another machine the microphone",
    )
    ssl_keyfile: Path | None = option(None, "TLS private key (PEM, unencrypted) of --ssl-certfile")
    allowed_hosts: list[str] = option(
        [],
        "host names this server answers to besides the address it is bound to "
        "(loopback names on a loopback bind; also the machine's name and any IP "
        "address on 0.0.0.0): e.g. the name of a proxy in front of it. Requests "
        "for other names are refused (DNS rebinding)",
    )
    allowed_origins: list[str] = option(
        [],
        "web pages of other origins (scheme://host[:port]) whose websocket "
        "clients may connect, e.g. Kyutai's web client served elsewhere; '*' "
        "(any page) only on a loopback bind",
    )


@dataclass(frozen=True)
class Access:
    users: Users  # empty: no login
    hosts: HostRule
    origins: OriginRule


def check_exposure(host: str, users: Users) -> None:
    if not is_loopback(host) and not users:
        raise ConfigError(
            f"--host {host} lets other machines reach this server (and whatever it can do: runs, files, the model, "
            f"recordings): give --auth-file FILE (user:password lines) or set {AUTH_ENV}=user:password, and "
            f"preferably --ssl-certfile/--ssl-keyfile. Or keep the default 127.0.0.1 and reach it through an SSH "
            f"tunnel (README, 'Security')."
        )


def access_of(cfg: ServeConfig) -> Access:
    """Every setting checked before anything starts (a ConfigError names the one that cannot serve)."""
    check_tls(cfg.ssl_certfile, cfg.ssl_keyfile)
    users = read_users(cfg.auth_file)
    check_exposure(cfg.host, users)
    return Access(users, host_rule(cfg.host, cfg.allowed_hosts), origin_rule(cfg.host, cfg.allowed_origins))
