"""Who may use the studio. Every request (pages, Gradio's API, file routes, the /api/chat websocket) passes
one ASGI gate: HTTP Basic credentials, or the session cookie that a first authenticated request earns (so
the browser's fetches and websocket carry it too). Websockets must also come from a page of this studio
(Origin equal to Host), which stops another site's page from opening the microphone endpoint in the
user's browser. A non-loopback bind without credentials is refused at start."""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocketClose

from backend.core.errors import ConfigError

AUTH_ENV = "MOSHI_STUDIO_AUTH"  # "user:password", an alternative to --auth-file
COOKIE = "moshi_studio_session"
REALM = "Moshi Studio"

Users = dict[str, str]
ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _pair(text: str, where: str) -> tuple[str, str]:
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
                user, password = _pair(line.rstrip("\r\n"), f"{auth_file} line {n}")
                users[user] = password
        if not users:
            raise ConfigError(f"{auth_file}: no user:password line")
    if env.get(AUTH_ENV):
        user, password = _pair(env[AUTH_ENV], AUTH_ENV)
        users[user] = password
    return users


def is_loopback(host: str) -> bool:
    """Only this machine can connect (names other than localhost count as reachable from outside)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, users: Users) -> None:
    if not is_loopback(host) and not users:
        raise ConfigError(
            f"--host {host} lets other machines reach the studio (runs, files, the microphone endpoint): give "
            f"--auth-file FILE (user:password lines) or set {AUTH_ENV}=user:password, and preferably "
            f"--ssl-certfile/--ssl-keyfile. Or keep the default 127.0.0.1 and reach it through an SSH tunnel "
            f"(README, 'Security').")


def same_origin(headers: Headers) -> bool:
    """A browser always sends Origin on a websocket handshake; clients that are not browsers send none."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


class AuthGate:
    """ASGI middleware in front of the whole server (users empty: only the websocket Origin check)."""

    def __init__(self, app: ASGIApp, users: Users):
        self.app, self.users = app, users
        self.key = secrets.token_bytes(32)  # sessions end with the process

    def _session(self, user: str) -> str:
        return f"{user.encode().hex()}.{hmac.new(self.key, user.encode(), hashlib.sha256).hexdigest()}"

    def _from_basic(self, headers: Headers) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, password = _pair(base64.b64decode(value, validate=True).decode("utf-8"), "credentials")
        except (binascii.Error, UnicodeDecodeError, ConfigError):
            return None
        known = self.users.get(user)
        return user if known is not None and hmac.compare_digest(known.encode(), password.encode()) else None

    def _from_cookie(self, headers: Headers) -> str | None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                try:
                    user = bytes.fromhex(value.partition(".")[0]).decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    return None
                if user in self.users and hmac.compare_digest(value, self._session(user)):
                    return user
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        websocket = scope["type"] == "websocket"
        if websocket and not same_origin(headers):
            return await WebSocketClose(code=1008, reason="cross-origin websocket refused")(scope, receive, send)
        if not self.users or self._from_cookie(headers) is not None:
            return await self.app(scope, receive, send)
        user = self._from_basic(headers)
        if user is None:
            if websocket:
                return await WebSocketClose(code=1008, reason="log in to the studio first")(scope, receive, send)
            response = PlainTextResponse("Moshi Studio: log in (user and password from the studio's auth file)",
                                         status_code=401, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
            return await response(scope, receive, send)
        if websocket:
            return await self.app(scope, receive, send)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={self._session(user)}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
