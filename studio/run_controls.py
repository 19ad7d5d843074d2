"""What the tabs that start runs share (Fine-tune, Preprocess): the row of run controls and its wiring, the
run picker's choice, abort (without holding up the page) and resume, the progress bar.

Those tabs own no process: backend.finetune.runs starts and supervises them and everything shown is read
back from the run folders, so reloading the page or restarting the studio reattaches."""

import html
import threading
from typing import Any, Callable, NamedTuple

import gradio as gr

from backend.core.errors import StudioError
from backend.core.workspace import Workspace
from backend.jobs import control, folder

from .context import Shown, StudioContext
from .forms import choices_update


class RunRow(NamedTuple):
    start: gr.Button
    pick: gr.Dropdown
    abort: gr.Button
    resume: gr.Button
    msg: gr.Markdown


def run_choices(found: list[tuple[str, str, float]], selected: str | None) -> tuple[list[str], str | None]:
    """(id, state, created) of every run -> (ids newest first, the pick): the selection kept, else the running
    run, else the newest."""
    ids = [i for i, _, _ in sorted(found, key=lambda f: f[2], reverse=True)]
    running = [i for i, state, _ in found if state == "running"]
    return ids, selected if selected in ids else (running[0] if running else ids[0] if ids else None)


OpenRun = Callable[[Workspace, str], folder.Job]  # a run of the workspace by the id the client sent (confined)


def abort_run(ws: Workspace, run_id: str | None, open_run: OpenRun, note: str) -> str:
    """Abort in the background (control.abort waits up to its grace period for the processes to stop)."""
    if not run_id:
        return "no run selected"
    try:
        run = open_run(ws, run_id)
    except StudioError as e:
        return f"✘ {e}"
    threading.Thread(target=control.abort, args=(run,), name=f"abort-{run.id}", daemon=True).start()
    return f"abort requested for **{run.id}**: {note}"


def resume_run(
    ws: Workspace, run_id: str | None, open_run: OpenRun, start: Callable[[folder.Job], None], note: str = ""
) -> str:
    if not run_id:
        return "no run selected"
    try:
        start(open_run(ws, run_id))
    except StudioError as e:
        return f"✘ {e}"
    return f"resumed **{run_id}**" + (f": {note}" if note else "")


CPU_PROCESSES_NOTE = (
    "# On the CPU, accelerate starts several processes only with --multi_gpu; ACCELERATE_USE_CPU=true "
    "keeps them on the CPU (no GPU is used)."
)


def explained(command: str) -> str:
    """A command preview, with a note where it says --multi_gpu for CPU processes (it looks like a mistake)."""
    on_cpu = "ACCELERATE_USE_CPU=true" in command and "--multi_gpu" in command
    return f"{CPU_PROCESSES_NOTE}\n{command}" if on_cpu else command


def progress_html(fraction: float, state: str, text: str) -> str:
    """A bar `fraction` full, coloured by the run's state (studio.css), with `text` on it."""
    return (
        f'<div class="ms-progress" data-state="{html.escape(state)}"><div class="ms-progress-bar" '
        f'style="width:{100 * fraction:.1f}%"></div><span>{html.escape(text)}</span></div>'
    )


def run_row(prefix: str) -> RunRow:
    """Start, the run picker, Abort, Resume and the message line (element ids `<prefix>-start` ...)."""
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id=f"{prefix}-start")
        pick = gr.Dropdown(label="run", choices=[], scale=3, elem_id=f"{prefix}-run")
        abort = gr.Button("Abort", variant="stop", elem_id=f"{prefix}-abort")
        resume = gr.Button("Resume", elem_id=f"{prefix}-resume")
    return RunRow(start, pick, abort, resume, gr.Markdown(elem_id=f"{prefix}-msg"))


Handler = Callable[..., Any]


def wire_run_row(
    ctx: StudioContext,
    row: RunRow,
    shown: Shown,
    form: list[Any],
    on_start: Handler,
    on_abort: Handler,
    on_resume: Handler,
    choices: Handler,
) -> None:
    """Start (the form's values -> (message, run ids or None for a refusal, the new run)), Abort, Resume (run id
    -> message), and the run list refreshed whenever the tab is shown (runs started elsewhere appear)."""

    def start(*values: Any) -> tuple[str, Any]:
        msg, ids, value = on_start(ctx.ws, *values)
        if ids is None:  # a refusal: a notice that goes away, not a line that stays for the whole run
            gr.Warning(msg, duration=20)
            return "", gr.update()
        return msg, choices_update(ids, value)

    row.start.click(start, form, [row.msg, row.pick])
    row.abort.click(ctx.bind(on_abort), row.pick, row.msg)
    row.resume.click(ctx.bind(on_resume), row.pick, row.msg)
    gr.on(shown, lambda current: choices_update(*choices(ctx.ws, current)), row.pick, row.pick)
