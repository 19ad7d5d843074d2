"""Data tab: upload or pick dialogues, validation report, alignment preview, statistics, dataset build."""

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from backend.dataset import pipeline as prepare
from backend.data.files import scan_dialogues
from backend.core.errors import StudioError
from backend.data.ingest import import_dialogues
from backend.data.preview import alignment_data
from backend.dataset.tokenize_text import TextTokenizeConfig
from backend.data.validate import DialogueReport, valid_stats, validate_dialogue, validate_folder
from backend.core.workspace import Workspace

from .alignment_view import ALIGNMENT_JS, render_alignment
from .context import Shown, StudioContext
from .forms import build_config, choices_update, config_inputs
from .files import file_url

LAYOUT_FIELDS = ["layout", "no_whitespace", "drop_overflow", "pad_id", "epad_id"]


def report_markdown(r: DialogueReport) -> str:
    head = f"### {'✔' if r.ok else '✘'} {r.name}\n"
    facts = []
    if r.audio_info:
        facts.append(f"{r.audio_info['duration']:.1f} s, {r.audio_info['sample_rate']} Hz")
    facts.append(f"{r.words} words")
    lines = [head, " · ".join(facts), ""]
    if not r.issues:
        lines.append("No problems found.")
    for issue in r.issues:
        lines.append(f"- **{issue.level}**: {issue.message}")
    return "\n".join(lines)


def dialogue_names(ws: Workspace) -> list[str]:
    return [d.name for d in scan_dialogues(ws.raw).dialogues]


def stats_outputs(ws: Workspace) -> tuple[str, pd.DataFrame]:
    c = valid_stats(validate_folder(ws.raw)[0])
    if c is None:
        return "No valid dialogues yet.", pd.DataFrame({"gap (s)": [], "turns": []})
    text = (f"**{c.dialogues} dialogues**, {c.hours * 60:.1f} min of audio · words per minute: "
            f"A {c.words_per_minute['A']:.0f}, B {c.words_per_minute['B']:.0f} · "
            f"overlapping speech: {100 * c.overlap_share:.1f}% of speech time")
    edges, counts = c.gap_histogram["edges"], c.gap_histogram["counts"]
    centres = [f"{(a + b) / 2:+.2f}" for a, b in zip(edges[:-1], edges[1:])]
    return text, pd.DataFrame({"gap (s)": centres, "turns": counts})


def build(ctx: StudioContext, shown: Shown) -> None:
    """The Data tab inside the current gr.Blocks."""
    gr.Markdown("Upload stereo dialogues (left channel = speaker A, right = speaker B) with word transcripts "
                "of the same name (`dialogue.wav` + `dialogue.json`), or pick one already in the workspace.")
    with gr.Row():
        upload = gr.File(label="Upload audio + transcripts", file_count="multiple",
                         file_types=[".wav", ".flac", ".ogg", ".json"], elem_id="data-upload")
        with gr.Column():
            upload_msg = gr.Markdown(elem_id="data-upload-msg")
            pick = gr.Dropdown(choices=[], label="Dialogue", elem_id="data-pick")
    report = gr.Markdown(elem_id="data-report")
    preview = gr.HTML(js_on_load=ALIGNMENT_JS, elem_id="data-preview")
    with gr.Accordion("Dataset statistics", open=False):
        stats_md = gr.Markdown(elem_id="data-stats")
        gaps = gr.BarPlot(x="gap (s)", y="turns", title="Gaps between turns (negative = overlap)")
        stats_btn = gr.Button("Compute statistics")
    with gr.Group():
        gr.Markdown("#### Build the dataset: tokenize audio (Mimi) and text (SentencePiece), write Parquet")
        with gr.Row():
            layout_inputs = config_inputs(TextTokenizeConfig, LAYOUT_FIELDS)
        build_btn = gr.Button("Build dataset", variant="primary", elem_id="data-build")
        build_msg = gr.Markdown(elem_id="data-build-msg")

    def on_upload(files: list[str] | None) -> tuple[str, Any]:
        if not files:
            return "", gr.update()
        result = import_dialogues([Path(f) for f in files], ctx.ws.raw)
        lines = [f"Imported **{r.name}** ({r.words} words)" for r in result.imported]
        lines += [f"✘ {m}" for m in result.rejected]
        chosen = result.imported[-1].name if result.imported else None
        return "\n\n".join(lines), gr.update(choices=dialogue_names(ctx.ws), value=chosen or gr.skip())

    def on_shown(name: str | None) -> Any:  # recordings and files added by hand appear too
        names = dialogue_names(ctx.ws)
        return choices_update(names, name, names[0] if names else None)

    def on_pick(name: str | None) -> tuple[str, str]:
        if not name:
            return "", ""
        d = next((d for d in scan_dialogues(ctx.ws.raw).dialogues if d.name == name), None)
        if d is None:
            return f"{name}: no longer in the workspace", ""
        r = validate_dialogue(d)
        if not r.ok or d.audio is None or d.transcript is None:
            return report_markdown(r), ""
        return report_markdown(r), render_alignment(alignment_data(d.audio, d.transcript), file_url(d.audio))

    def on_build(*values: Any, progress: gr.Progress = gr.Progress()) -> str:
        try:
            layout = build_config(TextTokenizeConfig, prepare.text_paths(ctx.ws), LAYOUT_FIELDS, list(values))
            result = prepare.prepare_dataset(ctx.ws, layout, progress=lambda f, msg: progress(f, desc=msg))
        except StudioError as e:
            return f"✘ {e}"
        return result.markdown()

    upload.upload(on_upload, upload, [upload_msg, pick])
    pick.change(on_pick, pick, [report, preview])
    gr.on(shown, on_shown, pick, pick, show_progress="hidden")
    stats_btn.click(lambda: stats_outputs(ctx.ws), None, [stats_md, gaps])
    build_btn.click(on_build, list(layout_inputs.values()), build_msg)
