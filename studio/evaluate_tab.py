"""Evaluate tab: behaviour probes through the chat loop, models side by side (backend.evaluate). The form lists the
workspace's models (exports, checkpoints, the base model) and probe sets; Start runs an evaluation job, followed as
the Preprocess tab follows its runs (run_controls.py); the table and figures are read back from the folder."""

from typing import Any

import gradio as gr

from backend.core.confine import inside_workspace
from backend.core.errors import StudioError
from backend.core.paths import PROBE_SETS
from backend.core.workspace import EVALUATIONS_DIR, Workspace
from backend.dataset.preprocess import progress
from backend.evaluate import job
from backend.evaluate.config import DEFAULT_SET, EvaluateConfig
from backend.evaluate.report import BACKCHANNEL_FIGURE, TOR_FIGURE, TURNS_FIGURE, read_results, table
from backend.jobs import control, folder
from backend.models.checkpoints import model_folders

from .context import Shown, StudioContext
from .forms import choices_update, config_inputs
from .run_controls import abort_run, progress_html, resume_run, run_row, wire_run_row
from .run_controls import run_choices as pick_run


def probe_choices() -> list[str]:
    return sorted(p.name for p in PROBE_SETS.iterdir() if p.is_dir())


def read_form(
    ws: Workspace,
    models: list[str],
    probes: list[str],
    max_probes: Any,
    device: str,
    eval_data: str = "",
    continued: Any = EvaluateConfig.continued_dialogues,
) -> EvaluateConfig:
    """The config of the form; every model and the evaluation split are in this workspace (a client's text is
    confined); an empty split: no loss and no continuations."""
    for source in models or []:
        inside_workspace(ws.root, source, "models")
    split = inside_workspace(ws.root, eval_data, "evaluation split") if (eval_data or "").strip() else None
    return EvaluateConfig(
        models=list(models or []),
        probes=list(probes or []),
        max_probes=int(max_probes or 0),
        device=device,
        eval_data=split,
        continued_dialogues=int(continued or 0),  # out of bounds: refused by job.create_run, naming the field
    )  # type: ignore[arg-type]


def on_start(
    ws: Workspace,
    models: list[str],
    probes: list[str],
    max_probes: Any,
    device: str,
    eval_data: str = "",
    continued: Any = EvaluateConfig.continued_dialogues,
) -> tuple[str, list[str] | None, str | None]:
    try:
        run = job.create_run(ws, read_form(ws, models, probes, max_probes, device, eval_data, continued))
        job.start(run)
    except (StudioError, ValueError, OverflowError) as e:  # OverflowError: int() of an infinite number
        return f"✘ {e}", None, None
    return f"started **{run.id}**", *run_choices(ws, run.id)


def run_choices(ws: Workspace, selected: str | None = None) -> tuple[list[str], str | None]:
    found = [
        (r.id, (st := control.status(r)).get("state", "queued"), st.get("created", 0.0)) for r in job.list_runs(ws.root)
    ]
    return pick_run(found, selected)


def open_run(ws: Workspace, run_id: Any) -> folder.Job:
    """An evaluation of this workspace by the id the client sent (a folder under evaluations/, nothing else)."""
    return job.open_run(ws.root, inside_workspace(ws.root / EVALUATIONS_DIR, run_id, "evaluation"))


def on_abort(ws: Workspace, run_id: str | None) -> str:
    return abort_run(ws, run_id, open_run, "the probes finished so far are kept")


def on_resume(ws: Workspace, run_id: str | None) -> str:
    return resume_run(ws, run_id, open_run, job.start, "probes already streamed are skipped")


def on_tick(ws: Workspace, run_id: str | None) -> tuple[str, str, str | None, str | None, str | None, str]:
    """(progress bar, the table, the TOR/latency figure, the backchannel figure, the continuations' turn-taking
    figure (with an evaluation split), log tail)."""
    if not run_id:
        return "", "", None, None, None, ""
    try:
        run = open_run(ws, run_id)
        state = control.status(run).get("state", "queued")
        results = read_results(run.dir)
    except StudioError as e:
        return f"✘ {e}", "", None, None, None, ""
    fraction, _ = progress(run)
    figure = {
        name: str(run.dir / name) if (run.dir / name).is_file() else None
        for name in (TOR_FIGURE, BACKCHANNEL_FIGURE, TURNS_FIGURE)
    }
    return (
        progress_html(fraction, state, f"{state} · {100 * fraction:.0f}%"),
        table(results) if results else "",
        figure[TOR_FIGURE],
        figure[BACKCHANNEL_FIGURE],
        figure[TURNS_FIGURE],
        folder.tail_log(run, 6000),
    )


def build(ctx: StudioContext, shown: Shown) -> None:
    gr.Markdown(
        "Stream behaviour probes through the chat loop (the code of /api/chat, frame by frame) for each "
        "model, and score them with Full-Duplex-Bench's formulas: take-over rate (TOR) at pauses, at turn "
        "ends and after interruptions, latency, backchannels. Words come from Moshi's own text stream "
        "(Full-Duplex-Bench uses an ASR there). Each sample is written in Full-Duplex-Bench's folder format."
    )
    with gr.Row():
        models = gr.Dropdown(
            label="models",
            choices=model_folders(ctx.ws),
            multiselect=True,
            allow_custom_value=True,
            scale=3,
            elem_id="ev-models",
        )
        probes = gr.Dropdown(
            label="probe sets",
            choices=probe_choices(),
            value=[DEFAULT_SET],
            multiselect=True,
            allow_custom_value=True,
            elem_id="ev-probes",
        )
        max_probes = gr.Number(label="at most, per task (0: all)", value=0, precision=0, elem_id="ev-max")
        device = gr.Radio(["auto", "cpu", "cuda"], value=ctx.ws.settings.device, label="device", elem_id="ev-device")
    with gr.Row():
        eval_data = gr.Textbox(
            label="evaluation split (a dataset folder in the workspace; empty: none)",
            value="",
            elem_id="ev-data",
            info="each model's per-stream loss on it, and the turn-taking of its "
            "continuations of its dialogues against the dialogues themselves",
            scale=2,
        )
        continued = config_inputs(EvaluateConfig, ["continued_dialogues"])["continued_dialogues"]
    row = run_row("ev")
    bar = gr.HTML(elem_id="ev-progress")
    result = gr.Markdown(elem_id="ev-table")
    with gr.Row():
        tor = gr.Image(label="TOR and latency per task", type="filepath", elem_id="ev-tor")
        bc = gr.Image(label="backchannel timing", type="filepath", elem_id="ev-bc")
    turns = gr.Image(
        label="turn-taking of the continuations against the evaluation split", type="filepath", elem_id="ev-turns"
    )
    log = gr.Code(label="log (tail)", language=None, elem_id="ev-log", max_lines=20)
    timer = gr.Timer(2.0)
    gr.on(shown, lambda current: choices_update(model_folders(ctx.ws), current), models, models)
    wire_run_row(
        ctx,
        row,
        shown,
        [models, probes, max_probes, device, eval_data, continued],
        on_start,
        on_abort,
        on_resume,
        run_choices,
    )
    row.pick.change(ctx.bind(on_tick), row.pick, [bar, result, tor, bc, turns, log])
    timer.tick(ctx.bind(on_tick), row.pick, [bar, result, tor, bc, turns, log], show_progress="hidden")
