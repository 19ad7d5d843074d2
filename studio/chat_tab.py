"""Chat tab: talk with a model in real time over /api/chat (the studio's own server, moshi's protocol).

The browser side (assets/studio/chat_client.js) sends the microphone as Ogg/Opus with the browser's
echo cancellation and plays Moshi's voice through a small jitter buffer; this module only picks the
model and its settings, and shows each recorded conversation once it is saved to the Data folder.
"""

from pathlib import Path
from typing import Any

import gradio as gr

from backend.core import config
from backend.core.confine import inside_workspace
from backend.core.errors import StudioError
from backend.core.paths import ASSETS
from backend.core.workspace import Workspace
from backend.data.raw_personas import voice_pick
from backend.inference.chat_config import ChatConfig
from backend.inference.chat_server import ChatService, check_persona_params, workspace_chat_config
from backend.models.checkpoints import model_folders
from backend.models.persona import MAX_TEXT_PROMPT

from .context import Shown, StudioContext
from .forms import build_config, choices_update, config_inputs

STUDIO_ASSETS = ASSETS / "studio"
CHAT_JS = (STUDIO_ASSETS / "chat_client.js").read_text() + "\n" + (STUDIO_ASSETS / "chat_widget.js").read_text()
# The ChatConfig fields the form sets. queue_seconds too: the tab's own client talks over the same /api/chat as any
# other, so a second tab or client (or Talk right after Stop, before the old session has closed) waits by it.
KNOBS = [
    "text_temperature",
    "text_top_k",
    "audio_temperature",
    "audio_top_k",
    "max_session_seconds",
    "dtype",
    "queue_seconds",
]
GAUGES = [
    ("state", "state", ""),
    ("compute_ms", "compute per frame", "ms"),
    ("rtf", "real-time factor", ""),
    ("buffered_ms", "buffered audio", "ms"),
    ("skipped", "skipped frames", ""),
    ("frames", "frames", ""),
    ("sent_s", "sent", "s"),
    ("received_s", "received", "s"),
    ("dropped_s", "dropped (late)", "s"),
    ("underruns", "underruns", ""),
]


def widget_html() -> str:
    gauges = "".join(
        f'<div class="ms-gauge"><span>{label}</span><b data-gauge="{key}">–</b> {unit}</div>'
        for key, label, unit in GAUGES
    )
    return (
        '<div class="ms-chat"><div class="ms-chat-buttons">'
        '<button class="ms-chat-talk lg primary">Talk</button> <button class="ms-chat-stop lg">Stop</button>'
        f'</div><div class="ms-gauges">{gauges}</div><div class="ms-chat-error"></div>'
        '<div class="ms-chat-transcript" aria-label="Moshi\'s text stream"></div></div>'
    )


def relative(ws: Workspace, path: str) -> str:
    """A path as the model list shows it: relative to the workspace when inside it."""
    p = Path(path)
    return str(p.relative_to(ws.root)) if p.is_absolute() and p.is_relative_to(ws.root) else path


# ---------------------------------------------------------------- handlers: (workspace, service, values) -> plain data


def on_refresh(ws: Workspace, service: ChatService) -> tuple[list[str], str]:
    """The workspace's models and the one the service uses."""
    if not service.configured:  # follow the workspace: its newest clean export once there is one
        service.cfg = workspace_chat_config(ws)
    return model_folders(ws), relative(ws, service.cfg.model)


def on_load(
    ws: Workspace,
    service: ChatService,
    name: str | None,
    rec: bool,
    *values: Any,
    persona: tuple[str, str | None] = ("", None),
) -> str:
    """Load the model `name` (a folder in the workspace or a hub id) with the sampling knobs for the next talks;
    `persona` (role text, voices/ file name) starts every conversation (a client's own query parameters win)."""
    fixed = {k: v for k, v in config.to_dict(workspace_chat_config(ws)).items() if k not in KNOBS}
    fixed["record_dir"] = str(ws.raw) if rec else ""
    fixed["text_prompt"], fixed["voice_prompt"] = persona[0] or "", persona[1] or ""
    try:
        if name:
            inside_workspace(ws.root, name, "model")  # a hub id passes as a name in the workspace
            fixed["model"] = ws.resolve(name)
        cfg = build_config(ChatConfig, fixed, KNOBS, list(values))
        check_persona_params(cfg)
        engine = service.configure(cfg)
    except StudioError as e:
        return f"**Error:** {e}"
    return f"Ready: `{relative(ws, cfg.model)}` on {engine.device}. Press **Talk**."


def on_tick(ws: Workspace, service: ChatService, last: str) -> tuple[str | None, str | None, str]:
    """(recording to play, its note, the recording now in the player); None: nothing new."""
    path = service.last_recording
    if path is None or str(path) == last or not path.exists():
        return None, None, last
    info = f"Saved `{relative(ws, str(path))}` and its transcript: it is listed in the Data tab."
    return str(path), info, str(path)


# ---------------------------------------------------------------- widgets


def build(ctx: StudioContext, shown: Shown, service: ChatService) -> None:
    gr.Markdown(
        "Talk with a model in real time: your microphone (with the browser's echo cancellation; "
        "headphones help) in, Moshi's voice and its text stream out. Chat needs a clean model (dep_q 8): "
        "export a fine-tuned checkpoint with *clean* in the Fine-tune tab."
    )
    with gr.Row():
        model = gr.Dropdown(label="model", choices=[], allow_custom_value=True, elem_id="chat-model", scale=3)
        refresh = gr.Button("↻ Refresh", scale=1)
    with gr.Row():
        knobs = config_inputs(ChatConfig, KNOBS, config.to_dict(service.cfg))
    with gr.Row():
        voice = gr.Dropdown(label="voice prompt (voices/)", choices=[], elem_id="chat-voice")
        role = gr.Textbox(label="role text (persona)", max_length=MAX_TEXT_PROMPT, elem_id="chat-role", scale=2)
    with gr.Row():
        record = gr.Checkbox(
            value=True, label="record each conversation into the Data folder (raw/)", elem_id="chat-record"
        )
        load = gr.Button("Load model", variant="primary", elem_id="chat-load")
    status = gr.Markdown(elem_id="chat-status")
    gr.HTML(widget_html(), js_on_load=CHAT_JS, elem_id="chat-widget")
    recording = gr.Audio(label="last recorded conversation (left: Moshi, right: you)", elem_id="chat-recording")
    recording_info = gr.Markdown(elem_id="chat-recording-info")
    played = gr.State("")  # the recording already in the player
    timer = gr.Timer(2.0)

    def tick(last: str) -> tuple[Any, Any, str]:
        path, info, last = on_tick(ctx.ws, service, last)
        return (gr.update(), gr.update(), last) if path is None else (path, info, last)

    gr.on([*shown, refresh.click], lambda: choices_update(*on_refresh(ctx.ws, service)), outputs=[model])

    def load_model(*values: Any) -> str:
        *values, voice_name, role_text = values
        return on_load(ctx.ws, service, *values, persona=(role_text, voice_name))

    load.click(load_model, inputs=[model, record, *knobs.values(), voice, role], outputs=[status])
    gr.on(
        [*shown, refresh.click], lambda v: choices_update(*voice_pick(ctx.ws, v)), voice, voice, show_progress="hidden"
    )
    timer.tick(tick, inputs=[played], outputs=[recording, recording_info, played])
