"""Run an ASGI app (with its `AccessGate`) on a `ServeConfig`'s address, with its TLS files."""

from typing import Any

from .access import Access, ServeConfig
from .names import is_loopback


def serve(app: Any, cfg: ServeConfig, access: Access, ws_max_size: int) -> None:
    """Blocks until the server stops. `ws_max_size`: the largest websocket message read (bigger ones close the
    connection unread)."""
    import uvicorn

    if access.users and cfg.ssl_certfile is None and not is_loopback(cfg.host):
        print("warning: without --ssl-certfile/--ssl-keyfile passwords cross the network in clear", flush=True)
    uvicorn.run(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level="warning",
        timeout_graceful_shutdown=3,
        ws_max_size=ws_max_size,
        ssl_certfile=cfg.ssl_certfile,
        ssl_keyfile=cfg.ssl_keyfile,
    )
