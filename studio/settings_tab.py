"""Settings tab: which Mimi, LM and tokenizer the workspace uses (demo, local files or hub repo ids)."""

import dataclasses
from typing import Any

import gradio as gr

from backend.core import config
from backend.core.errors import StudioError
from backend.core.workspace import LM_PRESETS, WorkspaceSettings

from .context import StudioContext
from .forms import build_config, config_inputs

FIELDS = [f.name for f in dataclasses.fields(WorkspaceSettings)]


def build(ctx: StudioContext) -> None:
    gr.Markdown(f"Workspace: `{ctx.ws.root}`. Paths are relative to it; anything else is read as a Hugging Face "
                f"repo id (for example {', '.join(f'`{p}`' for p in LM_PRESETS[1:])}), downloaded on first use.")
    inputs = config_inputs(WorkspaceSettings, FIELDS, config.to_dict(ctx.ws.settings))
    save = gr.Button("Save settings", variant="primary")
    msg = gr.Markdown()

    def on_save(*values: Any) -> str:
        try:
            ctx.ws = ctx.ws.with_settings(build_config(WorkspaceSettings, {}, FIELDS, list(values)))
        except StudioError as e:
            return f"✘ {e}"
        return "Saved. New settings apply to the next action."

    save.click(on_save, list(inputs.values()), msg)
