"""Preprocess tab: a preprocessing stage (backend.dataset.preprocess: tokenize_audio, annotate) on many processes,
GPUs and nodes. One form per stage from its config dataclass plus the launch settings, the exact command of
every machine as the form changes, then runs followed as the Fine-tune tab follows its own (run_controls.py):
a run folder under <workspace>/preprocess/, each rank's progress, the log, rank 0's summary."""

import dataclasses
from pathlib import Path
from typing import Any

import gradio as gr

from backend.core import config
from backend.core.confine import inside_workspace
from backend.core.errors import StudioError
from backend.core.workspace import PREPROCESS_DIR, Workspace
from backend.dataset import preprocess
from backend.jobs import control, folder
from backend.jobs.launch_config import LaunchConfig, check_launch
from backend.jobs.slurm import cluster_preview

from .context import Shown, StudioContext
from .forms import build_config, config_inputs, form_value
from .run_controls import (
    abort_run,
    explained,
    progress_html,
    resume_run,
    run_row,
    wire_run_row,
)
from .run_controls import (
    run_choices as pick_run,
)

LAUNCH_FIELDS = config.form_fields(LaunchConfig)
_LAUNCH_NAMES = {f.name for f in dataclasses.fields(LaunchConfig)}  # slurm too: the form does not offer it
STAGE_FIELDS = {
    stage: [name for name in config.form_fields(preprocess.run_config_class(stage)) if name not in _LAUNCH_NAMES]
    for stage in preprocess.STAGES
}
# The whole form, in the order its values arrive: (stage, field), stage "" for the launch settings all share.
FORM = [("", n) for n in LAUNCH_FIELDS] + [(stage, n) for stage, names in STAGE_FIELDS.items() for n in names]


def form_defaults(ws: Workspace) -> list[Any]:
    """The form's first values in FORM order: each field's default, the workspace's folders and models in it."""

    def here(path: Path) -> str:
        return str(path.relative_to(ws.root))

    ours = {
        "": {"device": ws.settings.device},
        "tokenize_audio": {"input_dir": here(ws.raw), "output_dir": here(ws.tokens_audio), "mimi": ws.settings.mimi},
        "annotate": {"input": here(ws.raw)},
    }
    values = {
        stage: config.to_dict(preprocess.run_config_class(stage)() if stage else LaunchConfig()) | ours.get(stage, {})
        for stage in ["", *STAGE_FIELDS]
    }
    return [form_value(values[stage][name]) for stage, name in FORM]


def read_form(stage: str, values: list[Any]) -> Any:
    """The run config of `stage` from the whole form's values (FORM order)."""
    cls = preprocess.run_config_class(str(stage))  # refuses an unknown stage
    picked = {name: v for (s, name), v in zip(FORM, values) if s in ("", stage)}
    return build_config(cls, {}, list(picked), list(picked.values()))


def confined(ws: Workspace, stage: str, cfg: Any) -> Any:
    """`cfg` once its paths and local models lie in the workspace (a hub id passes as a name in it)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, Path) or (f.name in preprocess.STAGES[stage].models and str(value).strip()):
            inside_workspace(ws.root, value, f.name)
    return cfg


def on_form(ws: Workspace, stage: str, *values: Any) -> tuple[str, str]:
    """(every machine's command, problem message) on every change of the form."""
    try:
        cfg = preprocess.absolute(stage, confined(ws, stage, read_form(stage, list(values))), ws.root)
        check_launch(cfg)  # its bounds first: num_machines sizes the preview
        command = explained(cluster_preview(cfg, Path(PREPROCESS_DIR) / "<new-run>", preprocess.RANK_MODULE))
    except StudioError as e:
        return f"# {e}", f"✘ {e}"
    try:
        preprocess.check(stage, cfg)
    except StudioError as e:
        return command, f"✘ {e}"
    return command, ""


def run_choices(ws: Workspace, selected: str | None = None) -> tuple[list[str], str | None]:
    found = []
    for run in preprocess.list_runs(ws.root):
        st = control.status(run)
        found.append((run.id, st.get("state", "queued"), st.get("created", 0.0)))
    return pick_run(found, selected)


def open_run(ws: Workspace, run_id: Any) -> folder.Job:
    """A preprocessing run of this workspace by the id the client sent (a folder under preprocess/, nothing else)."""
    return preprocess.open_run(ws.root, inside_workspace(ws.root / PREPROCESS_DIR, run_id, "run"))


def on_start(ws: Workspace, stage: str, *values: Any) -> tuple[str, list[str] | None, str | None]:
    try:
        run = preprocess.start_new(ws.root, stage, confined(ws, stage, read_form(stage, list(values))))
    except StudioError as e:
        return f"✘ {e}", None, None
    return f"started **{run.id}**", *run_choices(ws, run.id)


def on_abort(ws: Workspace, run_id: str | None) -> str:
    return abort_run(ws, run_id, open_run, "the files finished so far are kept")


def on_resume(ws: Workspace, run_id: str | None) -> str:
    return resume_run(ws, run_id, open_run, preprocess.start, "files already done are skipped")


def on_tick(ws: Workspace, run_id: str | None) -> tuple[str, str, str]:
    """(progress bar, each rank's progress then rank 0's summary once the run has ended, log tail)."""
    if not run_id:
        return "", "", ""
    try:
        run = open_run(ws, run_id)
        stage, _ = preprocess.load(run)
        state = control.status(run).get("state", "queued")
    except StudioError as e:
        return f"✘ {e}", "", ""
    fraction, ranks = preprocess.progress(run)
    ended = [] if state in ("queued", "running") else preprocess.read_outcome(run)
    return (
        progress_html(fraction, state, f"{state} · {stage} · {100 * fraction:.0f}%"),
        "\n".join(ranks + ended),
        folder.tail_log(run, 6000),
    )


def build(ctx: StudioContext, shown: Shown) -> None:
    gr.Markdown(
        "Run a preprocessing stage on several processes, GPUs or machines: each process takes its own "
        "share of the files, files already done are skipped (Resume continues a stopped run), and the "
        "first process writes one summary. With several machines, run each machine's command there "
        "(the run folder must be on a file system they all share)."
    )
    first = next(iter(STAGE_FIELDS))
    stage = gr.Radio(list(STAGE_FIELDS), value=first, label="stage", elem_id="pp-stage")
    start_values = dict(zip(FORM, form_defaults(ctx.ws)))
    inputs: dict[tuple[str, str], gr.components.Component] = {}
    groups = []
    for name, fields in STAGE_FIELDS.items():
        with gr.Group(visible=name == first, elem_id=f"pp-form-{name}") as group:
            with gr.Row():
                made = config_inputs(
                    preprocess.run_config_class(name), fields, {n: start_values[(name, n)] for n in fields}
                )
        inputs.update({(name, n): c for n, c in made.items()})
        groups.append(group)
    with gr.Accordion("Launch: processes, GPUs, nodes", open=True):
        with gr.Row():
            made = config_inputs(LaunchConfig, LAUNCH_FIELDS, {n: start_values[("", n)] for n in LAUNCH_FIELDS})
        inputs.update({("", n): c for n, c in made.items()})
    form = [stage, *(inputs[k] for k in FORM)]
    problem = gr.Markdown(elem_id="pp-problem")
    command = gr.Code(label="exact command (one per machine)", language="shell", elem_id="pp-command")
    row = run_row("pp")
    bar = gr.HTML(elem_id="pp-progress")
    status = gr.Code(label="processes and summary", language=None, elem_id="pp-status")
    log = gr.Code(label="log (tail)", language=None, elem_id="pp-log", max_lines=20)
    timer = gr.Timer(2.0)

    # One listener per trigger (see finetune_tab): the stage's form is shown after the command is made.
    gr.on(
        [c.change for c in form] + shown,
        ctx.bind(on_form),
        form,
        [command, problem],
        trigger_mode="always_last",
        show_progress="hidden",
    ).then(lambda picked: [gr.update(visible=picked == n) for n in STAGE_FIELDS], stage, groups, show_progress="hidden")
    wire_run_row(ctx, row, shown, form, on_start, on_abort, on_resume, run_choices)
    row.pick.change(ctx.bind(on_tick), row.pick, [bar, status, log])
    timer.tick(ctx.bind(on_tick), row.pick, [bar, status, log], show_progress="hidden")
