#!/usr/bin/env python3
"""Start Moshi Studio: `python launch.py [--host H] [--port P] [--workspace DIR] [--start empty] [--demo-language ja]
[--auth-file F] [--ssl-...] [--allowed-origins URL] [--preload-chat]`.

Without a workspace it creates the offline demo one (bundled dialogues, tiny random models,
a SentencePiece model trained on the demo transcripts), so it needs no download; `--start empty` creates an
empty one for your own data instead. A host other than
127.0.0.1/localhost needs accounts (--auth-file or MOSHI_STUDIO_AUTH); see README, "Security".
"""

import sys

from backend.core import config


def main(argv: list[str] | None = None) -> int:
    from backend.core.errors import StudioError
    from backend.web.access import access_of
    from studio.app import StudioConfig, create_server

    try:
        cfg = config.from_cli(StudioConfig, config.cli_parser(StudioConfig, __doc__.splitlines()[0]).parse_args(argv))
        cfg.check()
        access = access_of(cfg)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from backend.core.workspace import SETTINGS_FILE, create_empty_workspace, open_workspace
    from backend.demo.workspace import create_demo_workspace
    from backend.inference.chat_server import MAX_MESSAGE_BYTES
    from backend.web.serve import serve

    existing = (cfg.workspace / SETTINGS_FILE).is_file()
    if existing:
        ws = open_workspace(cfg.workspace)
    elif cfg.start == "empty":
        ws = create_empty_workspace(cfg.workspace)
    else:
        ws = create_demo_workspace(cfg.workspace, language=cfg.demo_language)
    scheme = "https" if cfg.ssl_certfile else "http"
    login = f", {len(access.users)} account(s)" if access.users else ""
    try:
        server = create_server(ws, cfg, access)  # with --preload-chat, the chat model is loaded here
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Moshi Studio on {scheme}://{cfg.host}:{cfg.port}  (workspace: {ws.root}{login})", flush=True)
    serve(server, cfg, access, ws_max_size=MAX_MESSAGE_BYTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
