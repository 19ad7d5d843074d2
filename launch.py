#!/usr/bin/env python3
"""Start Moshi Studio: `python launch.py [--host H] [--port P] [--workspace DIR] [--auth-file F] [--ssl-...]`.

Without a workspace it creates the offline demo one (bundled dialogues, tiny random models,
a SentencePiece model trained on the demo transcripts), so it needs no download; `--start empty` creates an
empty one for your own data instead. A host other than
127.0.0.1/localhost needs accounts (--auth-file or MOSHI_STUDIO_AUTH); see README, "Security".
"""

import sys

from backend.core import config


def main(argv: list[str] | None = None) -> int:
    from backend.core.errors import StudioError
    from studio.app import StudioConfig, create_server
    from studio.auth import check_exposure, is_loopback, read_users

    try:
        cfg = config.from_cli(StudioConfig, config.cli_parser(StudioConfig, __doc__.splitlines()[0]).parse_args(argv))
        cfg.check()
        users = read_users(cfg.auth_file)
        check_exposure(cfg.host, users)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    from backend.core.workspace import SETTINGS_FILE, create_empty_workspace, open_workspace
    from backend.demo.workspace import create_demo_workspace
    from backend.inference.chat_server import MAX_MESSAGE_BYTES

    existing = (cfg.workspace / SETTINGS_FILE).is_file()
    if existing:
        ws = open_workspace(cfg.workspace)
    else:
        ws = create_empty_workspace(cfg.workspace) if cfg.start == "empty" else create_demo_workspace(cfg.workspace)
    scheme = "https" if cfg.ssl_certfile else "http"
    login = f", {len(users)} account(s)" if users else ""
    print(f"Moshi Studio on {scheme}://{cfg.host}:{cfg.port}  (workspace: {ws.root}{login})", flush=True)
    if users and scheme == "http" and not is_loopback(cfg.host):
        print("warning: without --ssl-certfile/--ssl-keyfile passwords cross the network in clear", flush=True)
    uvicorn.run(create_server(ws, cfg, users), host=cfg.host, port=cfg.port, log_level="warning",
                timeout_graceful_shutdown=3, ws_max_size=MAX_MESSAGE_BYTES, ssl_certfile=cfg.ssl_certfile,
                ssl_keyfile=cfg.ssl_keyfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
