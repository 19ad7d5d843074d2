#!/usr/bin/env python3
"""Start Moshi Studio: `python launch.py [--host H] [--port P] [--workspace DIR] [--start ask|demo|empty]
[--demo-language ja] [--auth-file F] [--ssl-...] [--allowed-origins URL] [--preload-chat]`.

The default ./workspace starts, the first time, as the offline demo (bundled dialogues, tiny random models, a
SentencePiece model trained on the demo transcripts: no download). A new --workspace opens on a page that asks
whether it starts empty, for your own data, or with the demo; the studio then replaces that page. `--start demo` or
`--start empty` answers without asking (scripts). A host other than 127.0.0.1/localhost needs accounts
(--auth-file or MOSHI_STUDIO_AUTH); see README, "Security".
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
    from backend.core.workspace import SETTINGS_FILE, open_workspace
    from backend.demo.workspace import create_workspace
    from backend.inference.chat_server import MAX_MESSAGE_BYTES
    from backend.web.serve import serve

    url = f"{'https' if cfg.ssl_certfile else 'http'}://{cfg.host}:{cfg.port}"
    login = f", {len(access.users)} account(s)" if access.users else ""
    try:
        if (cfg.workspace / SETTINGS_FILE).is_file():
            ws = open_workspace(cfg.workspace)
        elif cfg.new_workspace_start() == "ask":
            from studio.start_page import StartChoice, create_start_server

            choice = StartChoice(cfg.workspace, cfg.demo_language)
            print(f"Moshi Studio on {url}: {choice.root} is new; the page asks how it starts{login}", flush=True)
            serve(create_start_server(choice, access), cfg, access, ws_max_size=MAX_MESSAGE_BYTES, stop=choice.chosen)
            if choice.workspace is None:  # stopped before anyone chose
                return 0
            ws = choice.workspace
        else:
            ws = create_workspace(cfg.workspace, cfg.new_workspace_start(), cfg.demo_language)
        server = create_server(ws, cfg, access)  # with --preload-chat, the chat model is loaded here
        print(f"Moshi Studio on {url}  (workspace: {ws.root}{login})", flush=True)
        serve(server, cfg, access, ws_max_size=MAX_MESSAGE_BYTES)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: uvicorn stopped gracefully, then re-raised it
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
