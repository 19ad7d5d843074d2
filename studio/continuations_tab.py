"""Continuations tab: prompt one or two models with dataset rows, hear the continuation of both
streams next to the reference, read Moshi's timed text, compare turn-taking statistics."""

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from backend.core import config
from backend.core.confine import inside_workspace
from backend.core.errors import StudioError
from backend.core.progress import Progress
from backend.core.spec import FRAME_RATE
from backend.core.workspace import CONTINUATIONS_DIR, Workspace
from backend.data.raw_personas import voice_pick, voice_prompt_path
from backend.dataset.read import list_dialogues
from backend.inference.continuation_files import read_audio, read_words, turn_taking
from backend.inference.generate_config import (
    PAGE_GENERATE_S,
    PAGE_PROMPT_S,
    GenerateConfig,
    output_files,
    page_sampling,
)
from backend.models.checkpoints import model_folders
from backend.models.persona import MAX_TEXT_PROMPT, check_text_prompt

from .context import Shown, StudioContext
from .forms import build_config, choices_update, config_inputs, kept_pick
from .plots import histogram

KNOBS = ["main_speaker", "text_temperature", "text_top_k", "audio_temperature", "audio_top_k", "seed"]
CHANNELS = {"stereo": None, "Moshi (left)": 0, "user (right)": 1}
LABELS = ("model", "second model")  # also the output folders under continuations/
TABLE_METRICS = [
    "floor_transfer_offset",
    "gap",
    "overlap_between",
    "pause",
    "ipu",
    "talk_ratio_A",
    "backchannels_per_minute",
    "time_to_first_speech",
]
Pick = tuple[list[str], Any]  # a dropdown's choices and value


def knob_values(ws: Workspace) -> list[Any]:
    """The sampling knobs' first values (KNOBS order): greedy in a demo workspace, Moshi's sampling otherwise."""
    values = config.to_dict(GenerateConfig()) | page_sampling(ws.settings.demo)
    return [values[k] for k in KNOBS]


def output_dir(ws: Workspace, label: str) -> Path:
    return inside_workspace(ws.root, Path(CONTINUATIONS_DIR) / label, "continuation label")


def transcript_md(words: list[dict[str, Any]] | None, prompt_s: float) -> str:
    """Moshi's words with their start times; those after the prompt in bold."""
    if words is None:
        return ""
    bold = ["**" if w["start"] >= prompt_s else "" for w in words]
    return " ".join(f"{b}{w['word']}{b}<sub>{w['start']:.1f}</sub>" for b, w in zip(bold, words)) or "(no text)"


def stats_table(stats: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for metric in TABLE_METRICS:
        by_source = stats["metrics"][metric]["by_source"]
        row = {"metric": metric}
        for label, s in by_source.items():
            row[label] = "–" if not s["n"] else f"{s['median']:.2f} (n={s['n']})"
        rows.append(row)
    return pd.DataFrame(rows)


def offsets_plot(stats: dict[str, Any]) -> pd.DataFrame:
    m = stats["metrics"]["floor_transfer_offset"]
    edges = m["edges"]
    centres = [round((a + b) / 2, 2) for a, b in zip(edges[:-1], edges[1:])]
    return pd.DataFrame(
        [
            {"offset (s)": c, "count": n, "source": label}
            for label, s in m["by_source"].items()
            for c, n in zip(centres, s["counts"])
        ]
    )


# ---------------------------------------------------------------- handlers: (workspace, values) -> plain data


def on_refresh(ws: Workspace, a: str | None, b: str | None, picked: list[str] | None) -> tuple[Pick, Pick, Pick]:
    """Models (the newest checkpoint or export first picked) and dataset rows, afresh."""
    models = model_folders(ws)
    try:
        ids = list_dialogues(ws.dataset)
    except StudioError:
        ids = []
    best = next((m for m in models if "/checkpoints/" in m or "/exports/" in m), models[-1] if models else None)
    return (
        (models, kept_pick(models, a, best)),
        (models, kept_pick(models, b)),
        (ids, kept_pick(ids, picked or [], ids[:1])),
    )


def on_generate(
    ws: Workspace,
    progress: Progress | None,
    a: str | None,
    b: str | None,
    ids: list[str],
    p_s: float,
    g_s: float,
    *values: Any,
    persona: tuple[str, str | None] = ("", None),
) -> tuple[str, list[str], dict[str, Any]]:
    """(message, dialogue ids continued, state for on_item): each model continues the rows; `persona` (role
    text, voices/ file name) goes before every prompt, else each row's stored persona (as in training)."""
    from backend.inference.generate import generate  # torch loads with the first model

    models = {label: m for label, m in zip(LABELS, (a, b)) if m}
    if not models or not ids:
        return "✘ pick a model and at least one dataset row", [], {}
    prompt = int(round(p_s * FRAME_RATE))
    try:
        text_prompt = check_text_prompt(persona[0] or "", "role text")
        base = build_config(
            GenerateConfig,
            {"text_prompt": text_prompt, "voice_prompt": voice_prompt_path(ws, persona[1])},
            KNOBS,
            list(values),
        )
        for model in models.values():
            inside_workspace(ws.root, model, "model")  # a hub id passes as a name in the workspace
        for i, (label, model) in enumerate(models.items()):
            cfg = dataclasses.replace(
                base,
                model=ws.resolve(model),
                dataset=ws.dataset,
                dialogues=list(ids),
                prompt_frames=prompt,
                gen_frames=int(round(g_s * FRAME_RATE)),
                output=output_dir(ws, label),
                mimi=ws.mimi_source,
                tokenizer=str(ws.tokenizer_path),
                device=ws.settings.device,
            )
            step = (
                None
                if progress is None
                else lambda f, m, i=i, label=label: progress((i + f) / len(models), f"{label}: {m}")
            )
            generate(cfg, progress=step)
    except StudioError as e:
        return f"✘ {e}", [], {}
    return (
        f"✔ {len(ids)} continuation(s) from {', '.join(models.values())}",
        list(ids),
        {"models": models, "prompt_s": prompt / FRAME_RATE},
    )


def on_item(ws: Workspace, dialogue_id: str | None, channel: str, state: dict[str, Any]) -> tuple[Any, ...]:
    """(reference audio, model audio, second model audio, texts, the first model's spectrogram PNG, statistics
    table, offsets plot) of one row."""
    if not dialogue_id or not state:
        return None, None, None, "", None, pd.DataFrame(columns=["metric"]), None
    files = {label: output_files(output_dir(ws, label), dialogue_id) for label in state["models"]}
    index = CHANNELS[channel]
    reference = files[LABELS[0]]["reference_wav"]
    players = [read_audio(files[label]["wav"], index) if label in files else None for label in LABELS]
    stats = turn_taking(files, reference, state["prompt_s"])
    texts = "\n\n".join(
        f"**{label}** ({state['models'][label]}): {transcript_md(read_words(f['transcript']), state['prompt_s'])}"
        for label, f in files.items()
    )
    spectrogram = files[LABELS[0]]["spectrogram"]
    return (
        read_audio(reference, index),
        players[0],
        players[1],
        texts,
        str(spectrogram) if spectrogram.is_file() else None,
        stats_table(stats),
        offsets_plot(stats),
    )


# ---------------------------------------------------------------- widgets


def build(ctx: StudioContext, shown: Shown) -> None:
    gr.Markdown(
        "Continue dataset dialogues from a teacher-forced prompt: both streams are sampled with a "
        "user-stream (dep_q 16) model; with a dep_q 8 model the user's audio comes from the reference."
    )
    with gr.Row():
        model_a = gr.Dropdown(label="model", choices=[], allow_custom_value=True, elem_id="ct-model-a", scale=2)
        model_b = gr.Dropdown(
            label="second model to compare (optional)",
            choices=[],
            allow_custom_value=True,
            elem_id="ct-model-b",
            scale=2,
        )
        refresh = gr.Button("↻ Refresh", scale=1)
    rows = gr.Dropdown(label="dataset rows", choices=[], multiselect=True, elem_id="ct-rows")
    with gr.Row():
        prompt_s = gr.Slider(0.8, 20, value=PAGE_PROMPT_S, step=0.08, label="prompt (s)", elem_id="ct-prompt")
        gen_s = gr.Slider(0.8, 30, value=PAGE_GENERATE_S, step=0.08, label="generate (s)", elem_id="ct-gen")
    with gr.Row():
        knobs = config_inputs(GenerateConfig, KNOBS, dict(zip(KNOBS, knob_values(ctx.ws))))
    with gr.Row():
        voice = gr.Dropdown(
            label="voice prompt (voices/; none: each row's own persona)", choices=[], elem_id="ct-voice"
        )
        role = gr.Textbox(label="role text (persona)", max_length=MAX_TEXT_PROMPT, elem_id="ct-role", scale=2)
    go = gr.Button("Generate", variant="primary", elem_id="ct-generate")
    msg = gr.Markdown(elem_id="ct-msg")
    with gr.Row():
        item = gr.Dropdown(label="item", choices=[], elem_id="ct-item", scale=3)
        channel = gr.Radio(list(CHANNELS), value="stereo", label="listen to", scale=2)
    with gr.Row():
        ref_audio = gr.Audio(label="reference (prompt + what really followed)", elem_id="ct-ref")
        a_audio = gr.Audio(label="model: prompt + continuation", elem_id="ct-a")
        b_audio = gr.Audio(label="second model", elem_id="ct-b")
    text = gr.Markdown(elem_id="ct-text")
    # The caption above the image, not Gradio's label badge, which sits over the figure's title.
    gr.Markdown("**model: spectrograms of reference and continuation** (saved next to the WAVs)")
    spectra = gr.Image(show_label=False, type="filepath", interactive=False, elem_id="ct-spectrograms")
    table = gr.Dataframe(label="turn-taking after the prompt (median, count)", elem_id="ct-stats")
    hist = gr.BarPlot(x="offset (s)", y="count", color="source", title="floor-transfer offsets")
    state = gr.State({})  # label -> model, plus the prompt length of the last generation

    def refresh_lists(*values: Any) -> tuple[Any, Any, Any]:
        return tuple(choices_update(*pick) for pick in on_refresh(ctx.ws, *values))

    def generate(*values: Any, progress: gr.Progress = gr.Progress()) -> tuple[str, Any, dict]:
        *values, voice_name, role_text = values
        message, ids, st = on_generate(
            ctx.ws, lambda f, m: progress(f, desc=m), *values, persona=(role_text, voice_name)
        )
        return message, choices_update(ids, ids[0]) if ids else gr.update(), st

    def show_item(*values: Any) -> tuple[Any, ...]:
        try:
            *shown_item, offsets = on_item(ctx.ws, *values)
            return *shown_item, histogram(offsets, "offset (s)")
        except StudioError as e:
            raise gr.Error(str(e)) from None

    gr.on([*shown, refresh.click], refresh_lists, [model_a, model_b, rows], [model_a, model_b, rows])
    views = [ref_audio, a_audio, b_audio, text, spectra, table, hist]
    # The views follow each generation itself: regenerating the picked row changes no dropdown value, so a
    # change listener would leave the first run's text, players and spectrograms on screen (files replaced).
    go.click(
        generate, [model_a, model_b, rows, prompt_s, gen_s, *knobs.values(), voice, role], [msg, item, state]
    ).then(show_item, [item, channel, state], views)
    gr.on(
        [*shown, refresh.click], lambda v: choices_update(*voice_pick(ctx.ws, v)), voice, voice, show_progress="hidden"
    )
    gr.on([item.input, channel.change], show_item, [item, channel, state], views)
