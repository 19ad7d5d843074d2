"""Data tab: upload or pick dialogues, validation report, alignment preview, statistics, dataset build."""

from html import escape
from typing import Any, Callable

import gradio as gr
import pandas as pd

from backend.core.errors import StudioError
from backend.core.progress import Progress
from backend.core.workspace import Workspace
from backend.data.files import scan_dialogues
from backend.data.ingest import import_dialogues
from backend.data.mono_pair import join_into
from backend.data.preview import dialogue_view
from backend.data.raw_personas import (
    RawPersona,
    load_raw_persona,
    raw_personas,
    save_clip,
    save_raw_persona,
    save_upload,
    voice_names,
)
from backend.data.validate import DialogueReport, valid_stats, validate_folder
from backend.dataset.build import DatasetConfig
from backend.dataset.tokenize_text import TextTokenizeConfig
from backend.models.persona import MAX_TEXT_PROMPT

from . import curate
from .alignment_view import ALIGNMENT_JS, render_alignment
from .context import Shown, StudioContext
from .files import file_url, received_uploads
from .forms import build_config, choices_update, config_inputs, kept_pick
from .plots import histogram
from .uploads import named, remove_uploads

LAYOUT_FIELDS = ["layout", "whitespace", "drop_overflow", "pad_id", "epad_id"]
SPLIT_FIELDS = ["validation", "split_seed"]  # DatasetConfig's: the dialogues Build holds out


def report_markdown(r: DialogueReport) -> str:
    head = f"### {'✔' if r.ok else '✘'} {r.name}\n"
    facts = []
    if r.audio_info:
        facts.append(r.audio_facts())
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
    text = (
        f"**{c.dialogues} dialogues**, {c.hours * 60:.1f} min of audio · words per minute: "
        f"A {c.words_per_minute['A']:.0f}, B {c.words_per_minute['B']:.0f} · "
        f"overlapping speech: {100 * c.overlap_share:.1f}% of speech time"
    )
    edges, counts = c.gap_histogram["edges"], c.gap_histogram["counts"]
    centres = [round((a + b) / 2, 3) for a, b in zip(edges[:-1], edges[1:])]  # numbers: overlaps left of zero
    return text, pd.DataFrame({"gap (s)": centres, "turns": counts})


def on_upload(ws: Workspace, files: list[str] | None) -> tuple[str, list[str], str | None]:
    """(message, dialogue names, the one to show): the uploaded pairs validated and copied into raw/."""
    if not files:
        return "", dialogue_names(ws), None
    try:
        result = import_dialogues(received_uploads(files), ws.raw)
    finally:
        remove_uploads(files)
    names = [r.name for r in result.imported] + result.to_annotate
    return named(result.markdown(), files), dialogue_names(ws), names[-1] if names else None


def on_join_mono(
    ws: Workspace, a: str | None, b: str | None, name: Any, offset: Any
) -> tuple[str, list[str], str | None]:
    """(message, dialogue names, the one to show): two uploaded mono recordings, one per speaker, joined into
    raw/<name>.wav (backend/data/mono_pair.py), ready for annotation."""
    try:
        if not a or not b:
            return "✘ upload one mono recording for each speaker (A and B)", dialogue_names(ws), None
        joined = join_into(
            ws.raw, received_uploads([a])[0], received_uploads([b])[0], str(name or ""), float(offset or 0.0)
        )
    except (StudioError, ValueError) as e:
        return named(f"✘ {e}", [p for p in (a, b) if p]), dialogue_names(ws), None
    finally:
        remove_uploads([p for p in (a, b) if p])
    padded = ", ".join(f"{s} +{p:.2f} s of silence" for s, p in joined.padded.items() if p)
    message = (
        f"✔ Joined into **{joined.output.name}**: {joined.seconds:.2f} s stereo at {joined.sample_rate} Hz"
        + (f" ({padded})" if padded else "")
        + "; annotate it in **Curate** below"
    )
    return message, dialogue_names(ws), joined.output.stem


def on_shown(ws: Workspace, name: str | None) -> tuple[list[str], str | None]:
    """Dialogue names afresh (recordings and files added by hand appear too), the pick kept."""
    names = dialogue_names(ws)
    return names, kept_pick(names, name, names[0] if names else None)


def on_pick(ws: Workspace, name: str | None) -> tuple[str, str]:
    """(validation report, alignment preview HTML) of a dialogue of the workspace."""
    if not name:
        return "", ""
    d = next((d for d in scan_dialogues(ws.raw).dialogues if d.name == name), None)
    if d is None:
        return f"{name}: no longer in the workspace", ""
    report, alignment = dialogue_view(d)  # one decode of the audio for both
    if alignment is None or d.audio is None:
        return report_markdown(report), ""
    return report_markdown(report), render_alignment(alignment, file_url(d.audio))


# The clip fields from the preview's current selection (the word last clicked, alignment.js marks it active).
SELECTED_WORD_JS = """(start, end) => {
  const w = document.querySelector("#data-preview .word.ms-active");
  return w ? [parseFloat(w.dataset.start), parseFloat(w.dataset.end)] : [start, end];
}"""


PERSONA_COLUMNS = ("dialogue", "Moshi speaker", "role text", "voice prompt")


def persona_rows(ws: Workspace) -> list[list[str]]:
    return [[name, p.speaker, p.text, p.voice] for name, p in raw_personas(ws).items()]


def persona_table(ws: Workspace) -> str:
    """Every persona as an HTML table. Not a gr.Dataframe: Gradio 6's showed a second saved persona only after a
    reload, and its empty header read "1 2 3"."""
    rows = persona_rows(ws)
    if not rows:
        return "<p>No personas yet.</p>"
    head = "".join(f"<th>{c}</th>" for c in PERSONA_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="ms-personas"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def on_persona(ws: Workspace, name: str | None) -> tuple[str, str, tuple[list[str], str | None], str]:
    """(speaker, role text, (voice choices, voice), every persona) for the persona fields of a picked dialogue."""
    try:
        p = load_raw_persona(ws, name) if name else None
    except StudioError:
        p = None
    voices = voice_names(ws)
    return (
        p.speaker if p else "A",
        p.text if p else "",
        (voices, p.voice if p and p.voice else None),
        persona_table(ws),
    )


def on_save_persona(
    ws: Workspace,
    name: str | None,
    speaker: str,
    text: str,
    voice: str | None,
    clip_start: float | None,
    clip_end: float | None,
    upload: str | None,
) -> tuple[str, tuple[list[str], str | None], str]:
    """(message, (voice choices, voice), every persona): the voice is an uploaded file, else a clip of the
    speaker's channel (end > 0), else the voices/ file picked; empty text and no voice removes the persona."""
    try:
        if not name:
            raise StudioError("pick a dialogue first")
        load_raw_persona(ws, name)  # refuses a name not in raw/
        if upload:
            voice = save_upload(ws, received_uploads([upload])[0])
        elif clip_end:
            voice = save_clip(ws, name, speaker, float(clip_start or 0.0), float(clip_end))
        path = save_raw_persona(ws, name, RawPersona(speaker, text or "", voice or ""))
        message = f"✔ persona of {name} saved to `{path.name}`" if path.exists() else f"✔ {name}: persona removed"
    except StudioError as e:
        message = f"✘ {e}"
    finally:
        remove_uploads(upload)
    return message, (voice_names(ws), voice or None), persona_table(ws)


def on_build(ws: Workspace, progress: Progress | None, recordings: bool, *values: Any) -> str:
    """Tokenize audio and text of raw/ and write the Parquet dataset (chat recordings as rows only when
    `recordings`); the form gives the text layout (LAYOUT_FIELDS), then the validation split (SPLIT_FIELDS)."""
    if progress is not None:  # loading torch and Mimi takes a minute the first time: say so at once
        progress(0.0, "loading the audio tokenizer (Mimi)…")
    from backend.dataset import pipeline  # Mimi: torch loads only when a dataset is built

    try:
        cut = len(LAYOUT_FIELDS)
        layout = build_config(TextTokenizeConfig, pipeline.text_paths(ws), LAYOUT_FIELDS, list(values[:cut]))
        split = build_config(DatasetConfig, {}, SPLIT_FIELDS, list(values[cut:]))
        result = pipeline.prepare_dataset(
            ws,
            layout,
            progress=progress,
            recordings=bool(recordings),
            validation=split.validation,
            split_seed=split.split_seed,
        )
    except StudioError as e:
        return f"✘ {e}"
    return result.markdown()


def build(ctx: StudioContext, shown: Shown) -> None:
    """The Data tab inside the current gr.Blocks."""
    gr.Markdown(
        "Upload stereo dialogues (left channel = speaker A, right = speaker B) with word transcripts "
        "of the same name (`dialogue.wav` + `dialogue.json`), or pick one already in the workspace. "
        "Audio alone (optionally with `dialogue.txt` turns: `A: ...` / `B: ...` lines) is imported "
        "for annotation in **Curate** below."
    )
    with gr.Row():
        upload = gr.File(
            label="Upload audio + transcripts",
            file_count="multiple",
            file_types=[".wav", ".flac", ".ogg", ".json", ".txt"],
            elem_id="data-upload",
        )
        with gr.Column():
            upload_msg = gr.Markdown(elem_id="data-upload-msg")
            pick = gr.Dropdown(choices=[], label="Dialogue", elem_id="data-pick")
    build_mono(ctx, pick)
    report = gr.Markdown(elem_id="data-report")
    preview = gr.HTML(js_on_load=ALIGNMENT_JS, elem_id="data-preview")
    persona_outputs, persona_view = build_persona(ctx, pick)
    curate_outputs, curate_view = build_curate(ctx, pick, [report, preview])
    build_stats(ctx)
    build_dataset_block(ctx)

    def upload_files(files: list[str] | None) -> tuple[str, Any]:
        msg, _, chosen = on_upload(ctx.ws, files)
        return msg, gr.update() if chosen is None else choices_update(curate.dialogue_labels(ctx.ws), chosen)

    def show_dialogue(name: str | None) -> tuple[Any, ...]:
        return *on_pick(ctx.ws, name), *curate_view(name), *persona_view(name)

    # One listener for the pick: Gradio 6 re-fires a whole trigger when a deferred (always_last) listener of it
    # ends, so several listeners on one trigger that overlap (a pick while the last one's views are still
    # loading) re-fire each other for good, and their views overwrite every later message.
    pick.change(
        show_dialogue,
        pick,
        [report, preview, *curate_outputs, *persona_outputs],
        show_progress_on=[report, preview],
    )
    upload.upload(upload_files, upload, [upload_msg, pick], api_name="upload_dialogues")
    pick.input(lambda: "", None, upload_msg, show_progress="hidden")  # "Imported X" goes once another is viewed
    gr.on(
        shown,
        lambda name: choices_update(curate.dialogue_labels(ctx.ws), on_shown(ctx.ws, name)[1]),
        pick,
        pick,
        show_progress="hidden",
        api_name="list_dialogues",
    )


def build_mono(ctx: StudioContext, pick: gr.Dropdown) -> None:
    """Two mono recordings, one per speaker, joined into a stereo dialogue of raw/ (then picked)."""
    with gr.Accordion("Two mono recordings, one per speaker → one stereo dialogue", open=False, elem_id="data-mono"):
        with gr.Row():
            mono_a = gr.File(
                label="speaker A (left channel)",
                file_types=[".wav", ".flac", ".ogg"],
                type="filepath",
                height=90,
                elem_id="data-mono-a",
            )
            mono_b = gr.File(
                label="speaker B (right channel)",
                file_types=[".wav", ".flac", ".ogg"],
                type="filepath",
                height=90,
                elem_id="data-mono-b",
            )
        with gr.Row():
            mono_name = gr.Textbox(label="dialogue name", max_length=200, elem_id="data-mono-name")
            mono_offset = gr.Number(
                0.0, label="seconds B's recording started after A's (negative: before)", elem_id="data-mono-offset"
            )
            mono_btn = gr.Button("Join", elem_id="data-mono-join")
        mono_msg = gr.Markdown(elem_id="data-mono-msg")

    def join_mono(a: str | None, b: str | None, name: str, offset: float) -> tuple[Any, ...]:
        msg, _, chosen = on_join_mono(ctx.ws, a, b, name, offset)
        listed = gr.update() if chosen is None else choices_update(curate.dialogue_labels(ctx.ws), chosen)
        return msg, listed, None, None

    mono_btn.click(join_mono, [mono_a, mono_b, mono_name, mono_offset], [mono_msg, pick, mono_a, mono_b])


def build_persona(ctx: StudioContext, pick: gr.Dropdown) -> tuple[list[Any], Callable[[str | None], tuple[Any, ...]]]:
    """The Persona block: role text and voice prompt of the picked dialogue's Moshi speaker, and every persona.
    Returns the outputs a new pick fills and the function filling them (the tab's one pick listener calls it)."""
    # Closed until wanted: most dialogues have no persona, and open it filled the tab's first screen.
    with gr.Accordion(
        "Persona (PersonaPlex): role text and voice prompt of the speaker playing Moshi; Build puts "
        "it into the dataset",
        open=False,
        elem_id="data-persona",
    ):
        with gr.Row():
            p_speaker = gr.Radio(["A", "B"], value="A", label="Moshi speaker", elem_id="data-persona-speaker")
            p_text = gr.Textbox(label="role text", max_length=MAX_TEXT_PROMPT, elem_id="data-persona-text", scale=3)
        with gr.Row():
            p_voice = gr.Dropdown(label="voice prompt (voices/)", choices=[], elem_id="data-persona-voice")
            p_start = gr.Number(label="or clip from (s)", minimum=0, elem_id="data-persona-start")
            p_end = gr.Number(label="to (s)", minimum=0, elem_id="data-persona-end")
            with gr.Column(min_width=160):  # the button at the fields' height, not stretched beside the upload
                p_take = gr.Button("⇐ word clicked in the preview", size="sm", elem_id="data-persona-take")
            p_upload = gr.File(
                label="or upload a voice wav",
                file_types=[".wav", ".flac", ".ogg"],
                type="filepath",
                height=90,
                elem_id="data-persona-upload",
            )  # not a tall empty grey drop area
        p_save = gr.Button("Save persona", elem_id="data-persona-save")
        p_msg = gr.Markdown(elem_id="data-persona-msg")
        p_table = gr.HTML(persona_table(ctx.ws), label="personas", elem_id="data-personas")

    def show_persona(name: str | None) -> tuple[Any, ...]:
        speaker, text, voices, table = on_persona(ctx.ws, name)
        return speaker, text, choices_update(*voices), table

    def save_persona(*values: Any) -> tuple[Any, ...]:
        message, voices, table = on_save_persona(ctx.ws, *values)
        return message, choices_update(*voices), table, None

    p_take.click(None, [p_start, p_end], [p_start, p_end], js=SELECTED_WORD_JS)
    p_save.click(
        save_persona, [pick, p_speaker, p_text, p_voice, p_start, p_end, p_upload], [p_msg, p_voice, p_table, p_upload]
    )
    return [p_speaker, p_text, p_voice, p_table], show_persona


def build_stats(ctx: StudioContext) -> None:
    with gr.Accordion("Dataset statistics", open=False):
        stats_md = gr.Markdown(elem_id="data-stats")
        gaps = gr.BarPlot(x="gap (s)", y="turns", title="Gaps between turns (negative = overlap)", elem_id="data-gaps")
        stats_btn = gr.Button("Compute statistics")

    def show_stats() -> tuple[str, Any]:
        text, gaps_df = stats_outputs(ctx.ws)
        return text, histogram(gaps_df, "gap (s)")

    stats_btn.click(show_stats, None, [stats_md, gaps])


def build_dataset_block(ctx: StudioContext) -> None:
    with gr.Group():
        gr.Markdown("#### Build the dataset: tokenize audio (Mimi) and text (SentencePiece), write Parquet")
        with gr.Row():
            layout_inputs = config_inputs(TextTokenizeConfig, LAYOUT_FIELDS, {"whitespace": ctx.ws.settings.whitespace})
        with gr.Row():
            split_inputs = config_inputs(DatasetConfig, SPLIT_FIELDS)
        recordings = gr.Checkbox(
            False, label="include chat recordings (chat-*: only Moshi's side is transcribed)", elem_id="data-recordings"
        )
        build_btn = gr.Button("Build dataset", variant="primary", elem_id="data-build")
        build_msg = gr.Markdown(elem_id="data-build-msg")

    def build_dataset(*values: Any, progress: gr.Progress = gr.Progress()) -> str:
        return on_build(ctx.ws, lambda f, msg: progress(f, desc=msg), *values)

    build_btn.click(build_dataset, [recordings, *layout_inputs.values(), *split_inputs.values()], build_msg)


def build_curate(
    ctx: StudioContext, pick: gr.Dropdown, views: list[Any]
) -> tuple[list[Any], Callable[[str | None], tuple[Any, ...]]]:
    """The Curate block (studio/curate.py): annotate the picked recording, then edit its words on the preview.
    `views`: the tab's report and preview, refreshed when Annotate, Save or Swap change the files. Returns the
    block's outputs for a new pick and the function filling them (the tab's one pick listener calls it)."""
    with gr.Accordion("Curate: annotate recordings and fix their transcripts", open=False, elem_id="curate"):
        gr.Markdown(
            "**Annotate** finds the words of every recording that has no transcript yet (with a "
            "`<name>.txt` of turns it places those words instead). Dashed words are ones the engine was "
            "unsure of. Click a word to select it, edit it in the bar, or drag its left or right edge; "
            "**Save** writes the transcript and keeps the first version as `<name>.original.json`."
        )
        with gr.Row():
            engine = gr.Dropdown(curate.ENGINES, value=curate.ENGINES[0], label="Engine", elem_id="curate-engine")
            model = gr.Textbox(label="Whisper model (hub id or local folder)", elem_id="curate-model")
            annotate = gr.Button("Annotate", variant="primary", elem_id="curate-annotate")
        with gr.Row():
            undo = gr.Button("Undo", elem_id="curate-undo")
            save = gr.Button("Save", elem_id="curate-save")
            swap = gr.Button("Swap channels", elem_id="curate-swap")
            exclude = gr.Checkbox(label="Exclude from the dataset", elem_id="curate-exclude")
        msg = gr.Markdown(elem_id="curate-msg")
        view = gr.HTML(js_on_load=ALIGNMENT_JS + "\n" + curate.CURATE_JS, elem_id="curate-preview")
        event = gr.Textbox(elem_id="curate-event", show_label=False, container=False)

    def annotate_now(
        name: str | None, engine_name: str, model_id: str, progress: gr.Progress = gr.Progress()
    ) -> tuple[str, str]:
        return ctx.curator.on_annotate(ctx.ws, name, engine_name, model_id, lambda f, m: progress(f, desc=m))

    def with_list(result: tuple[str, str], name: str | None) -> tuple[str, str, Any]:
        return *result, choices_update(curate.dialogue_labels(ctx.ws), name)

    out = [msg, view]
    # One progress line (on the message), not one over each output.
    annotate.click(annotate_now, [pick, engine, model], out, show_progress_on=[msg]).then(
        lambda name: choices_update(curate.dialogue_labels(ctx.ws), name), pick, pick
    ).then(ctx.bind(on_pick), pick, views)
    event.change(ctx.bind(ctx.curator.on_edit), [pick, event], out)
    undo.click(ctx.bind(ctx.curator.on_undo), pick, out)
    save.click(ctx.bind(ctx.curator.on_save), pick, out).then(ctx.bind(on_pick), pick, views)
    swap.click(ctx.bind(ctx.curator.on_swap), pick, out).then(ctx.bind(on_pick), pick, views)
    exclude.input(
        lambda name, x: with_list(ctx.curator.on_exclude(ctx.ws, name, x), name), [pick, exclude], [msg, view, pick]
    )
    return [*out, exclude], lambda name: (*ctx.curator.on_curate_pick(ctx.ws, name), curate.excluded(ctx.ws, name))
