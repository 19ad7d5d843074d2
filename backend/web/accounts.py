"""Accounts: `user:password` lines of an auth file and/or one account in the environment."""

import os
from pathlib import Path
from typing import Mapping

from backend.core.errors import ConfigError

AUTH_ENV = "MOSHI_STUDIO_AUTH"  # "user:password", an alternative to --auth-file

Users = dict[str, str]


def parse_pair(text: str, where: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError(f"{where}: expected user:password with both parts non-empty")
    return user.strip(), password


def read_users(auth_file: Path | None, env: Mapping[str, str] = os.environ) -> Users:
    """The accounts from the auth file (user:password lines; blank lines and # comments skipped) and the
    environment variable."""
    users: Users = {}
    if auth_file is not None:
        try:
            lines = Path(auth_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{auth_file}: cannot read the auth file ({e})") from None
        for n, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                user, password = parse_pair(line.rstrip("\r\n"), f"{auth_file} line {n}")
                users[user] = password
        if not users:
            raise ConfigError(f"{auth_file}: no user:password line")
    if env.get(AUTH_ENV):
        user, password = parse_pair(env[AUTH_ENV], AUTH_ENV)
        users[user] = password
    return users
