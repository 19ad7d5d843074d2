"""The studio: one gr.Blocks with a tab per stage, mounted on the studio's own FastAPI server
(so later stages can add their own routes, e.g. the chat websocket, next to the UI)."""

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gradio as gr
from fastapi import FastAPI

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.paths import ASSETS
from backend.core.workspace import Workspace
from backend.inference.chat_server import ChatService, add_chat_route, workspace_chat_config
from backend.web.access import Access, ServeConfig, access_of
from backend.web.gate import AccessGate

from . import (
    chat_tab,
    continuations_tab,
    data_tab,
    evaluate_tab,
    finetune_tab,
    preprocess_tab,
    settings_tab,
    timeline_tab,
)
from .context import StudioContext
from .uploads import UploadBound, cache_expiry

DEFAULT_WORKSPACE = Path("workspace")


@dataclass
class StudioConfig(ServeConfig):
    """Where and how the studio serves (ServeConfig: address, accounts, TLS, allowed names) and its workspace."""

    workspace: Path = config.option(DEFAULT_WORKSPACE, "workspace folder; created if missing, as --start says")
    start: Literal["ask", "demo", "empty"] = config.option(
        "ask",
        "what a --workspace that is not a workspace yet (a new folder) starts with: ask in the page, the offline demo "
        "(dialogues and tiny models), or empty, for your own data (settings pointing at Kyutai's weights); "
        "with ask, the default ./workspace starts with the demo (the first run of `make studio` opens on it); "
        "an existing workspace is opened as it is",
    )
    demo_language: Literal["en", "ja"] = config.option(
        "en", "language of the demo a missing workspace is created with (ja: the Japanese demo, J-Moshi's layout)"
    )
    # An hour of 48 kHz 24-bit stereo WAV is 1.04 GB; dialogues are usually minutes long. Larger files can
    # be copied into the workspace's raw/ folder directly.
    max_upload_mb: int = config.option(1024, "largest file the browser may upload, in MB (1 MB = 2**20 bytes)")
    upload_keep_minutes: float = config.option(
        60.0,
        "an upload no event has used (imported or refused) is deleted from the upload cache after this many minutes",
        gt=0,
    )
    preload_chat: bool = config.option(
        False,
        "load the Chat tab's model (the newest clean export, else the demo "
        "LM) when the studio starts, so the first /api/chat conversation does "
        "not wait for it",
    )

    def check(self) -> None:
        """Refuse a setting that cannot serve, before anything is created."""
        if self.max_upload_mb < 1:
            raise ConfigError(f"max_upload_mb must be >= 1, got {self.max_upload_mb}")
        config.check_numbers(self)

    def new_workspace_start(self) -> Literal["ask", "demo", "empty"]:
        """How a folder that is not a workspace yet starts: as --start says, except that `ask` leaves the default
        ./workspace to the demo, the README's first command; a --workspace the user names for their data asks."""
        return "demo" if self.start == "ask" and self.workspace == DEFAULT_WORKSPACE else self.start


THEME = gr.themes.Soft()  # the studio's and its start page's (studio/start_page.py)


def demo_banner(ws: Workspace) -> str:
    if not ws.settings.demo:
        return ""
    return (
        "**Demo workspace.** The dialogues were synthesized by the project; the Mimi codec is a small one the "
        "project trained on synthetic speech (it sounds like muffled speech), and the Moshi LM is tiny and "
        "*randomly initialised*: it babbles until you fine-tune it on the demo dialogues (Fine-tune tab, demo "
        "preset), after which Continuations and Chat replay what it learnt. Point Settings at real weights "
        "for the real thing."
    )


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
            with gr.Tab("Evaluate", id="evaluate") as tab:
                evaluate_tab.build(ctx, [tab.select])
            with gr.Tab("Settings", id="settings"):
                settings_tab.build(ctx)
    return app


def create_server(ws: Workspace, cfg: StudioConfig | None = None, access: Access | None = None) -> FastAPI:
    """The studio's server (default settings: `StudioConfig()`), behind its access gate: nothing on it answers
    a host name or websocket origin `access` does not allow, nor, with accounts, without one of their passwords."""
    cfg = cfg or StudioConfig()
    access = access or access_of(cfg)
    # Gradio 6.17 reads a status constant Starlette deprecated: without this, one warning per event in the log.
    warnings.filterwarnings("ignore", message="'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated")
    server = FastAPI(title="Moshi Studio")
    server.add_middleware(UploadBound, max_file_bytes=cfg.max_upload_mb * 2**20)
    server.add_middleware(AccessGate, access=access)  # wraps every route, Gradio's mount and /api/chat included
    chat = ChatService(workspace_chat_config(ws))  # loads its model on first use, or now with preload_chat
    if cfg.preload_chat:
        print(f"chat model ready: {chat.load().cfg.model}", flush=True)
    add_chat_route(server, chat)  # before Gradio's catch-all mount at "/"
    css = "\n".join((ASSETS / "studio" / f).read_text(encoding="utf-8") for f in ("studio.css", "curate.css"))
    head = f"<script>{(ASSETS / 'studio' / 'quiet_vega.js').read_text(encoding='utf-8')}</script>"
    blocks = build_blocks(ws, chat)
    blocks.delete_cache = cache_expiry(cfg.upload_keep_minutes)  # uploads no event used (Gradio's own sweep)
    gr.mount_gradio_app(
        server,
        blocks,
        path="/",
        allowed_paths=[str(ws.root.resolve())],
        css=css,
        head=head,
        theme=THEME,
        max_file_size=cfg.max_upload_mb * 2**20,
    )
    # Mounting leaves has_launched False, and Gradio then skips its own check that a file a client names in
    # an event's data is one Gradio received through an upload (processing_utils._check_allowed): any
    # server file could be copied into the cache and served. It is the flag's only use: restore the check.
    blocks.has_launched = True
    return server
