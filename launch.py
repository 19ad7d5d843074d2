#!/usr/bin/env python3
"""Start Moshi Studio: `python launch.py [--host H] [--port P] [--workspace DIR]`.

Without a workspace it creates the offline demo one (bundled dialogues, tiny random models,
a SentencePiece model trained on the demo transcripts), so it needs no download.
"""

import sys

from backend.core import config


def main(argv: list[str] | None = None) -> int:
    from studio.app import StudioConfig, create_server

    cfg = config.from_cli(StudioConfig, config.cli_parser(StudioConfig, __doc__.splitlines()[0]).parse_args(argv))
    import uvicorn

    from backend.core.workspace import SETTINGS_FILE, open_workspace
    from backend.demo.workspace import create_demo_workspace

    existing = (cfg.workspace / SETTINGS_FILE).is_file()
    ws = open_workspace(cfg.workspace) if existing else create_demo_workspace(cfg.workspace)
    print(f"Moshi Studio on http://{cfg.host}:{cfg.port}  (workspace: {ws.root})", flush=True)
    uvicorn.run(create_server(ws), host=cfg.host, port=cfg.port, log_level="warning", timeout_graceful_shutdown=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
