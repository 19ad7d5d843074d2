"""Timeline tab: one dataset row on the 12.5 Hz grid, as the model sees it, and its audio."""

from typing import Any

import gradio as gr
import numpy as np

from backend.core.errors import InputError, StudioError
from backend.core.spec import SAMPLE_RATE
from backend.core.workspace import Workspace
from backend.dataset.read import list_dialogues, load_row
from backend.dataset.timeline import frame_window, timeline_data, window_audio
from backend.models.text_tokenizer import load_spm

from .context import Shown, StudioContext
from .forms import choices_update, kept_pick
from .timeline_view import TIMELINE_JS, render_timeline


def dataset_ids(ws: Workspace) -> list[str]:
    try:
        return list_dialogues(ws.dataset)
    except StudioError:
        return []


def on_refresh(ws: Workspace, current: str | None) -> tuple[list[str], str | None]:
    ids = dataset_ids(ws)
    return ids, kept_pick(ids, current, ids[0] if ids else None)


def window(
    ws: Workspace, dialogue_id: str | None, start_s: float, length: float
) -> tuple[dict[str, np.ndarray], int, int]:
    """The row and the frames [first, first + count) of the window."""
    if not dialogue_id:
        raise InputError(None, "Pick a dataset row first (build the dataset in the Data tab).")
    row = load_row(ws.dataset, dialogue_id)
    first, count = frame_window(row["A"].shape[1], float(start_s or 0), float(length))
    return row, first, count


def on_show(
    ws: Workspace, dialogue_id: str | None, start_s: float, length: float, main_speaker: str
) -> tuple[str, str]:
    """(status, timeline HTML) of the window."""
    try:
        row, first, count = window(ws, dialogue_id, start_s, length)
        data = timeline_data(row, dialogue_id, first, count, load_spm(ws.tokenizer_path), main_speaker)
    except StudioError as e:
        return f"✘ {e}", ""
    return f"frames {first}–{first + count - 1} of {row['A'].shape[1]}", render_timeline(data)


def on_play(ws: Workspace, dialogue_id: str | None, start_s: float, length: float) -> tuple[int, np.ndarray]:
    """(sample rate, int16 [N, 2]) of the window decoded through the workspace's Mimi; raises StudioError."""
    from backend.models.weights import cached_mimi

    row, first, count = window(ws, dialogue_id, start_s, length)
    wave = window_audio(cached_mimi(ws.mimi_source), row, first, count)
    return SAMPLE_RATE, (np.clip(wave.T, -1, 1) * 32767).astype(np.int16)


def build(ctx: StudioContext, shown: Shown) -> None:
    gr.Markdown(
        "What the model sees: per speaker the text stream (PAD and EPAD marked) and the 8 Mimi codebooks, "
        "one column per 80 ms frame, then the training view with the acoustic delays applied."
    )
    with gr.Row():
        pick = gr.Dropdown(choices=[], label="Dataset row", elem_id="tl-pick", scale=3)
        refresh = gr.Button("↻ Refresh rows", scale=1)
    with gr.Row():
        start = gr.Number(value=0.0, label="start (s)", minimum=0, elem_id="tl-start")
        seconds = gr.Slider(0.4, 12.0, value=3.2, step=0.08, label="window (s)", elem_id="tl-seconds")
        main = gr.Radio(["A", "B"], value="A", label="speaker playing Moshi")
    with gr.Row():
        show = gr.Button("Show", variant="primary", elem_id="tl-show")
        play = gr.Button("▶ Decode and play window", elem_id="tl-play")
    status = gr.Markdown(elem_id="tl-status")
    grid = gr.HTML(js_on_load=TIMELINE_JS, elem_id="tl-grid")
    audio = gr.Audio(
        label="window decoded through Mimi (left A, right B)", type="numpy", elem_id="tl-audio", autoplay=True
    )

    def play_window(*values: Any) -> tuple[int, np.ndarray]:
        try:
            return on_play(ctx.ws, *values)
        except StudioError as e:
            raise gr.Error(str(e)) from None

    gr.on([*shown, refresh.click], lambda current: choices_update(*on_refresh(ctx.ws, current)), pick, pick)
    gr.on([show.click, pick.change], ctx.bind(on_show), [pick, start, seconds, main], [status, grid])
    play.click(play_window, [pick, start, seconds], audio)
