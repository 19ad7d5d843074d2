"""Run an ASGI app (with its `AccessGate`) on a `ServeConfig`'s address, with its TLS files."""

import threading
from typing import Any

from backend.core.errors import ConfigError

from .access import Access, ServeConfig
from .names import is_loopback


def serve(app: Any, cfg: ServeConfig, access: Access, ws_max_size: int, stop: threading.Event | None = None) -> None:
    """Blocks until the server stops: on Ctrl-C, or once `stop` is set (it then finishes the requests under way,
    for at most the graceful timeout, and frees the port for the next server). `ws_max_size`: the largest websocket
    message read (bigger ones close the connection unread)."""
    import uvicorn

    if access.users and cfg.ssl_certfile is None and not is_loopback(cfg.host):
        print("warning: without --ssl-certfile/--ssl-keyfile passwords cross the network in clear", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.host,
            port=cfg.port,
            log_level="warning",
            timeout_graceful_shutdown=3,
            ws_max_size=ws_max_size,
            ssl_certfile=cfg.ssl_certfile,
            ssl_keyfile=cfg.ssl_keyfile,
        )
    )
    if stop is not None:  # uvicorn's main loop checks should_exit every 0.1 s
        threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
    server.run()
    if not server.started:  # uvicorn has logged why (the port is in use, say)
        raise ConfigError(f"could not serve on {cfg.host}:{cfg.port} (see the message above; another --port?)")
