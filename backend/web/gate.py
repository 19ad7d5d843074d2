"""One ASGI gate in front of a whole server (pages, API, file routes, websockets), in this order:

1. Host must be a name the server answers to (names.py), else 421.
2. A websocket's Origin must be this server or an allowed origin, which stops another site's page from opening
   the chat endpoint in a user's browser.
3. With accounts: HTTP Basic credentials, or the session cookie a first authenticated request earns (HttpOnly,
   SameSite=Strict, valid until the process ends), so the browser's fetches and websockets carry it too.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import sys
from typing import Any, Awaitable, Callable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocketClose

from backend.core.errors import ConfigError

from .access import Access
from .accounts import parse_pair

COOKIE = "moshi_studio_session"
REALM = "Moshi Studio"

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class AccessGate:
    def __init__(self, app: ASGIApp, access: Access):
        self.app, self.access = app, access
        self.key = secrets.token_bytes(32)  # sessions end with the process

    def _session(self, user: str) -> str:
        return f"{user.encode().hex()}.{hmac.new(self.key, user.encode(), hashlib.sha256).hexdigest()}"

    def _from_basic(self, headers: Headers) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, password = parse_pair(base64.b64decode(value, validate=True).decode("utf-8"), "credentials")
        except (binascii.Error, UnicodeDecodeError, ConfigError):
            return None
        known = self.access.users.get(user)
        return user if known is not None and hmac.compare_digest(known.encode(), password.encode()) else None

    def _from_cookie(self, headers: Headers) -> str | None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                try:
                    user = bytes.fromhex(value.partition(".")[0]).decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    return None
                if user in self.access.users and hmac.compare_digest(value, self._session(user)):
                    return user
        return None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        websocket = scope["type"] == "websocket"

        async def refuse(status: int, reason: str, extra: dict[str, str] | None = None) -> None:
            # A refused websocket handshake gets the same HTTP answer where the server can send one (uvicorn
            # can: the ASGI websocket.http.response extension), else the bare 403 of a closed handshake.
            if websocket and "websocket.http.response" not in scope.get("extensions", {}):
                return await WebSocketClose(code=1008, reason=reason[:120])(scope, receive, send)
            await PlainTextResponse(f"{REALM}: {reason}\n", status_code=status, headers=extra)(scope, receive, send)

        host = headers.get("host")
        if not self.access.hosts.allows(host):
            return await refuse(
                421,
                f"this server does not answer to the host name {(host or '')[:100]!r} (a page "
                "on a name pointed at it: DNS rebinding?); if the name is yours, start the "
                "server with --allowed-hosts NAME",
            )
        origin = headers.get("origin")
        if websocket and not self.access.origins.allows(origin, host):
            # The browser shows the page none of this (a failed handshake is only "closed"): the server's log says it.
            reason = (
                f"websocket from a page of origin {(origin or '')[:100]!r} refused; if that page is yours, "
                f"start the server with --allowed-origins {(origin or '')[:100]}"
            )
            print(f"{REALM}: {reason}", file=sys.stderr, flush=True)
            return await refuse(403, reason)
        if not self.access.users or self._from_cookie(headers) is not None:
            return await self.app(scope, receive, send)
        user = self._from_basic(headers)
        if user is None:
            return await refuse(
                401,
                "log in (user and password from the server's auth file)",
                {"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )
        if websocket:
            return await self.app(scope, receive, send)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={self._session(user)}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
