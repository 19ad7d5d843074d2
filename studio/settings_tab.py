"""Settings tab: which Mimi, LM and tokenizer the workspace uses (demo, local files or hub repo ids), and what the
tokenizer is (`moshi-studio tokenizer inspect` on the workspace's transcripts)."""

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from backend.core import config
from backend.core.confine import inside_workspace
from backend.core.errors import ConfigError, StudioError
from backend.core.workspace import LM_PRESETS, Workspace, WorkspaceSettings
from backend.models.personaplex import TOKENIZER_FILE
from backend.models.source import DEFAULT_REPO

from .context import StudioContext
from .forms import build_config, config_inputs

FIELDS = [f.name for f in dataclasses.fields(WorkspaceSettings)]
PATHS = ["mimi", "lm", "tokenizer"]  # files in the workspace; a hub id passes as a name in it


def check_tokenizer(ws: Workspace, tokenizer: str) -> None:
    """The tokenizer is a file of the workspace: unlike the models, a hub id is not downloaded."""
    if not Path(ws.resolve(tokenizer)).is_file():
        raise ConfigError(
            f"tokenizer: no file {tokenizer!r} in the workspace. Kyutai's 32k tokenizer is "
            f"{TOKENIZER_FILE} in the hub repo {DEFAULT_REPO}: put it in models/ and give "
            f"models/{TOKENIZER_FILE}"
        )


def on_save(ws: Workspace, *values: Any) -> tuple[Workspace, str]:
    """(the workspace with the new settings, message); nothing is saved unless every path is in the workspace."""
    try:
        settings = build_config(WorkspaceSettings, {}, FIELDS, list(values))
        for name in PATHS:
            inside_workspace(ws.root, getattr(settings, name), name)
        check_tokenizer(ws, settings.tokenizer)
        ws = ws.with_settings(settings)
    except StudioError as e:
        return ws, f"✘ {e}"
    return ws, "Saved. New settings apply to the next action."


def on_inspect(ws: Workspace) -> str:
    """`tokenizer inspect` of the workspace's tokenizer on its transcripts (raw/), joined as the settings say."""
    from backend.dataset.tokenizer_inspect import TokenizerInspectConfig, inspect_tokenizer

    try:
        transcripts = ws.raw if any(ws.raw.glob("*.json")) else None
        report = inspect_tokenizer(
            TokenizerInspectConfig(model=ws.tokenizer_path, transcripts=transcripts, whitespace=ws.settings.whitespace)
        )
    except StudioError as e:
        return f"✘ {e}"
    return "```\n" + "\n".join(report.lines()) + "\n```"


def build(ctx: StudioContext) -> None:
    gr.Markdown(
        f"Workspace: `{ctx.ws.root}`. Paths are relative to it and stay inside it; anything else is read as "
        f"a Hugging Face repo id (for example {', '.join(f'`{p}`' for p in LM_PRESETS[1:])}), downloaded on "
        "first use."
    )
    inputs = config_inputs(WorkspaceSettings, FIELDS, config.to_dict(ctx.ws.settings))
    save = gr.Button("Save settings", variant="primary", elem_id="settings-save")
    msg = gr.Markdown(elem_id="settings-msg")

    def save_settings(*values: Any) -> str:
        ctx.ws, message = on_save(ctx.ws, *values)
        return message

    save.click(save_settings, list(inputs.values()), msg)
    with gr.Group():
        gr.Markdown(
            "#### Tokenizer: its fingerprint (of its pieces, not its file name), vocabulary, PAD/EPAD pieces, "
            "byte fallback, and what it makes of the workspace's transcripts"
        )
        inspect = gr.Button("Inspect the tokenizer", elem_id="settings-inspect")
        report = gr.Markdown(elem_id="settings-tokenizer")
    inspect.click(lambda: on_inspect(ctx.ws), None, report)
