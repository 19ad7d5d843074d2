"""The studio: one gr.Blocks with a tab per stage, mounted on the studio's own FastAPI server
(so later stages can add their own routes, e.g. the chat websocket, next to the UI)."""

import warnings
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from backend.core.paths import ASSETS
from backend.core import config
from backend.core.errors import ConfigError
from backend.inference.chat_server import ChatService, add_chat_route, workspace_chat_config
from backend.core.workspace import Workspace

from . import chat_tab, continuations_tab, data_tab, finetune_tab, preprocess_tab, settings_tab, timeline_tab
from .auth import AUTH_ENV, AuthGate, Users
from .context import StudioContext


@dataclass
class StudioConfig:
    host: str = config.option("127.0.0.1", "address to bind (127.0.0.1 keeps the studio on this machine; any "
                                           "other address needs --auth-file or " + AUTH_ENV + ")")
    port: int = config.option(7860, "port to serve on")
    workspace: Path = config.option(Path("workspace"), "workspace folder; created if missing, as --start says")
    start: Literal["demo", "empty"] = config.option("demo", "what a new --workspace starts with: the offline demo "
                                                            "(dialogues and tiny models) or empty, for your own "
                                                            "data (settings pointing at Kyutai's weights)")
    auth_file: Path | None = config.option(None, "file of user:password lines; every page, API call, file and "
                                                 "websocket then needs one of them (also: " + AUTH_ENV + "=user:password)")
    ssl_certfile: Path | None = config.option(None, "TLS certificate (PEM): serve https, which browsers require "
                                                    "before they give a page from another machine the microphone")
    ssl_keyfile: Path | None = config.option(None, "TLS private key (PEM) of --ssl-certfile")
    # An hour of 48 kHz 24-bit stereo WAV is 1.04 GB; dialogues are usually minutes long. Larger files can
    # be copied into the workspace's raw/ folder directly.
    max_upload_mb: int = config.option(1024, "largest file the browser may upload, in MB (1 MB = 2**20 bytes)")

    def check(self) -> None:
        """Refuse a setting that cannot serve, before anything is created."""
        if self.max_upload_mb < 1:
            raise ConfigError(f"max_upload_mb must be >= 1, got {self.max_upload_mb}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
        for path in (self.ssl_certfile, self.ssl_keyfile):
            if path is not None and not path.is_file():
                raise ConfigError(f"{path}: TLS file not found")


def demo_banner(ws: Workspace) -> str:
    if not ws.settings.demo:
        return ""
    return ("**Demo workspace.** The dialogues were synthesized by the project; the Mimi codec is a small one the "
            "project trained on synthetic speech (it sounds like muffled speech), and the Moshi LM is tiny and "
            "*randomly initialised*: it babbles until you fine-tune it on the demo dialogues (Fine-tune tab, demo "
            "preset), after which Continuations and Chat replay what it learnt. Point Settings at real weights "
            "for the real thing.")


def build_blocks(ws: Workspace, chat: ChatService) -> gr.Blocks:
    ctx = StudioContext(ws)
    with gr.Blocks(title="Moshi Studio") as app:
        gr.Markdown("# Moshi Studio")
        gr.Markdown(demo_banner(ws), elem_id="demo-banner")
        # Each tab refreshes its lists when it is shown: new runs, exports and recordings appear without a
        # reload, and no update lands in a hidden tab (Gradio 6 then leaves its spinner over the widget).
        with gr.Tabs():
            with gr.Tab("Data", id="data") as tab:
                data_tab.build(ctx, [app.load, tab.select])
            with gr.Tab("Preprocess", id="preprocess") as tab:
                preprocess_tab.build(ctx, [tab.select])
            with gr.Tab("Timeline", id="timeline") as tab:
                timeline_tab.build(ctx, [tab.select])
            with gr.Tab("Fine-tune", id="finetune") as tab:
                finetune_tab.build(ctx, [tab.select])
            with gr.Tab("Continuations", id="continuations") as tab:
                continuations_tab.build(ctx, [tab.select])
            with gr.Tab("Chat", id="chat") as tab:
                chat_tab.build(ctx, [tab.select], chat)
            with gr.Tab("Settings", id="settings"):
                settings_tab.build(ctx)
    return app


def create_server(ws: Workspace, cfg: StudioConfig | None = None, users: Users | None = None) -> FastAPI:
    """The studio's server (default settings: `StudioConfig()`); with `users`, nothing on it answers without one
    of their passwords."""
    cfg = cfg or StudioConfig()
    users = users or {}
    # Gradio 6.17 reads a status constant Starlette deprecated: without this, one warning per event in the log.
    warnings.filterwarnings("ignore", message="'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated")
    server = FastAPI(title="Moshi Studio")
    server.add_middleware(AuthGate, users=users)  # wraps every route, Gradio's mount and /api/chat included
    chat = ChatService(workspace_chat_config(ws))  # loads its model on first use
    add_chat_route(server, chat)  # before Gradio's catch-all mount at "/"
    css = "\n".join((ASSETS / "studio" / f).read_text(encoding="utf-8") for f in ("studio.css", "curate.css"))
    head = f'<script>{(ASSETS / "studio" / "quiet_vega.js").read_text(encoding="utf-8")}</script>'
    blocks = build_blocks(ws, chat)
    gr.mount_gradio_app(server, blocks, path="/", allowed_paths=[str(ws.root.resolve())], css=css, head=head,
                        theme=gr.themes.Soft(), max_file_size=cfg.max_upload_mb * 2**20)
    # Mounting leaves has_launched False, and Gradio then skips its own check that a file a client names in
    # an event's data is one Gradio received through an upload (processing_utils._check_allowed): any
    # server file could be copied into the cache and served. It is the flag's only use: restore the check.
    blocks.has_launched = True
    return server
