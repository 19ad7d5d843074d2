"""Continuations tab: prompt one or two models with dataset rows, hear the continuation of both
streams next to the reference, read Moshi's timed text, compare turn-taking statistics."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import soundfile as sf

from backend.dataset.read import list_dialogues
from backend.core.errors import StudioError
from backend.inference.generate import GenerateConfig, generate, output_files
from backend.core.spec import FRAME_RATE
from backend.inference.turn_taking import TurnTakingConfig, analyse_file, compare
from backend.core.workspace import model_folders

from .context import Shown, StudioContext
from .forms import build_config, choices_update, config_inputs

KNOBS = ["main_speaker", "text_temperature", "text_top_k", "audio_temperature", "audio_top_k", "seed"]
CHANNELS = {"stereo": None, "Moshi (left)": 0, "user (right)": 1}
TABLE_METRICS = ["floor_transfer_offset", "gap", "overlap_between", "pause", "ipu", "talk_ratio_A",
                 "backchannels_per_minute", "time_to_first_speech"]


def output_dir(ctx: StudioContext, label: str) -> Path:
    return ctx.ws.root / "continuations" / label


def audio_of(path: Path, channel: str) -> tuple[int, Any] | None:
    if not path.is_file():
        return None
    data, sr = sf.read(path, dtype="int16", always_2d=True)
    index = CHANNELS[channel]
    return sr, data if index is None else data[:, index]


def transcript_md(path: Path, prompt_s: float) -> str:
    if not path.is_file():
        return ""
    words = json.loads(path.read_text())["continuation"]
    return " ".join(f"{'**' if w['start'] >= prompt_s else ''}{w['word']}{'**' if w['start'] >= prompt_s else ''}"
                    f"<sub>{w['start']:.1f}</sub>" for w in words) or "(no text)"


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
    return pd.DataFrame([{"offset (s)": c, "count": n, "source": label}
                         for label, s in m["by_source"].items() for c, n in zip(centres, s["counts"])])


def build(ctx: StudioContext, shown: Shown) -> None:
    gr.Markdown("Continue dataset dialogues from a teacher-forced prompt: both streams are sampled with a "
                "user-stream (dep_q 16) model; with a dep_q 8 model the user's audio comes from the reference.")
    with gr.Row():
        model_a = gr.Dropdown(label="model", choices=[], allow_custom_value=True, elem_id="ct-model-a", scale=2)
        model_b = gr.Dropdown(label="second model to compare (optional)", choices=[], allow_custom_value=True,
                              elem_id="ct-model-b", scale=2)
        refresh = gr.Button("↻ Refresh", scale=1)
    rows = gr.Dropdown(label="dataset rows", choices=[], multiselect=True, elem_id="ct-rows")
    with gr.Row():
        prompt_s = gr.Slider(0.8, 20, value=4.0, step=0.08, label="prompt (s)", elem_id="ct-prompt")
        gen_s = gr.Slider(0.8, 30, value=6.0, step=0.08, label="generate (s)", elem_id="ct-gen")
    with gr.Row():
        knobs = config_inputs(GenerateConfig, KNOBS)
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
    spectra = gr.Image(label="model: spectrograms of reference and continuation (saved next to the WAVs)",
                       type="filepath", interactive=False, elem_id="ct-spectrograms")
    table = gr.Dataframe(label="turn-taking after the prompt (median, count)", elem_id="ct-stats")
    hist = gr.BarPlot(x="offset (s)", y="count", color="source", title="floor-transfer offsets")
    state = gr.State({})  # label -> model, plus the prompt length of the last generation

    def on_refresh(a: str | None, b: str | None, picked: list[str] | None) -> tuple[Any, Any, Any]:
        models = model_folders(ctx.ws)
        try:
            ids = list_dialogues(ctx.ws.dataset)
        except StudioError:
            ids = []
        best = next((m for m in models if "/checkpoints/" in m or "/exports/" in m), models[-1] if models else None)
        return choices_update(models, a, best), choices_update(models, b), choices_update(ids, picked or [], ids[:1])

    def on_generate(a: str | None, b: str | None, ids: list[str], p_s: float, g_s: float, *values: Any,
                    progress: gr.Progress = gr.Progress()) -> tuple[str, Any, dict]:
        models = {label: m for label, m in (("model", a), ("second model", b)) if m}
        if not models or not ids:
            return "✘ pick a model and at least one dataset row", gr.update(), {}
        prompt = int(round(p_s * FRAME_RATE))
        try:
            base = build_config(GenerateConfig, {}, KNOBS, list(values))
            for i, (label, model) in enumerate(models.items()):
                cfg = dataclasses.replace(
                    base, model=ctx.ws.resolve(model), dataset=ctx.ws.dataset, dialogues=list(ids),
                    prompt_frames=prompt, gen_frames=int(round(g_s * FRAME_RATE)), output=output_dir(ctx, label),
                    mimi=ctx.ws.mimi_source, tokenizer=str(ctx.ws.tokenizer_path), device=ctx.ws.settings.device)
                generate(cfg, progress=lambda f, m, i=i: progress((i + f) / len(models), desc=f"{label}: {m}"))
        except StudioError as e:
            return f"✘ {e}", gr.update(), {}
        return (f"✔ {len(ids)} continuation(s) from {', '.join(models.values())}",
                gr.update(choices=list(ids), value=ids[0]), {"models": models, "prompt_s": prompt / FRAME_RATE})

    def on_item(dialogue_id: str | None, chan: str, st: dict) -> tuple[Any, ...]:
        if not dialogue_id or not st:
            return None, None, None, "", None, None, None
        files = {label: output_files(output_dir(ctx, label), dialogue_id) for label in st["models"]}
        first = files["model"]
        ref = audio_of(first["reference_wav"], chan)
        players = [audio_of(files[label]["wav"], chan) if label in files else None for label in ("model", "second model")]
        tt = TurnTakingConfig(start_seconds=st["prompt_s"])
        sources = {"reference": [analyse_file(first["reference_wav"], tt)]}
        sources.update({label: [analyse_file(f["wav"], tt)] for label, f in files.items()})
        stats = compare(sources)
        texts = "\n\n".join(f"**{label}** ({st['models'][label]}): {transcript_md(f['transcript'], st['prompt_s'])}"
                            for label, f in files.items())
        picture = str(first["spectrogram"]) if first["spectrogram"].is_file() else None
        return ref, players[0], players[1], texts, picture, stats_table(stats), offsets_plot(stats)

    gr.on([*shown, refresh.click], on_refresh, [model_a, model_b, rows], [model_a, model_b, rows])
    go.click(on_generate, [model_a, model_b, rows, prompt_s, gen_s, *knobs.values()], [msg, item, state])
    gr.on([item.change, channel.change], on_item, [item, channel, state],
          [ref_audio, a_audio, b_audio, text, spectra, table, hist])
