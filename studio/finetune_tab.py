"""Fine-tune tab: initialise the model, configure (one form = FinetuneConfig), preview the exact
command, start/abort/resume runs (studio/run_controls.py), follow logs, progress and per-stream loss curves,
export."""

import dataclasses
import math
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from backend.core import config
from backend.core.confine import inside_workspace
from backend.core.errors import StudioError
from backend.core.spec import LOSS_STREAMS
from backend.core.workspace import RUNS_DIR, Workspace
from backend.dataset.build import VALIDATION_DIR
from backend.dataset.read import SHARD_PATTERN
from backend.finetune import budget, runs
from backend.finetune.config import FinetuneConfig
from backend.finetune.presets import PRESETS
from backend.finetune.probe_checks import read_probes
from backend.jobs import folder
from backend.jobs.slurm import cluster_preview
from backend.models.checkpoints import latest_checkpoint
from backend.models.init_config import InitConfig, init_output
from backend.models.weights import lm_kwargs_of

from .context import Shown, StudioContext
from .files import received_uploads
from .forms import build_config, config_inputs, form_value
from .run_controls import (
    abort_run,
    explained,
    resume_run,
    run_row,
    wire_run_row,
)
from .run_controls import (
    progress_html as bar_html,
)
from .run_controls import (
    run_choices as pick_run,
)
from .uploads import named, remove_uploads

FIELDS = config.form_fields(FinetuneConfig)
GROUPS = {  # accordion title -> fields (every FinetuneConfig field appears exactly once)
    "Model and data": ["base_model", "dtype", "train_data", "eval_data", "main_speaker", "max_frames", "min_frames"],
    "What trains": ["user_stream", "mode", "lora_rank", "lora_scaling", "trainable", "activation_checkpointing"],
    "Optimiser": [
        "lr",
        "depformer_lr",
        "weight_decay",
        "beta1",
        "beta2",
        "eps",
        "warmup_steps",
        "max_steps",
        "batch_size",
        "grad_accum",
        "grad_clip",
        "seed",
    ],
    "Loss weights": [
        "loss_variant",
        "text_weight",
        "audio_weight",
        "text_pad_weight",
        "semantic_weight",
        "acoustic_weight",
        "user_stream_weight",
    ],
    "Checkpoints and logging": [
        "log_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_probes_every",
        "eval_probes",
        "tracker",
    ],
    "Launch: processes, DeepSpeed, nodes": [
        "device",
        "threads",
        "num_processes",
        "num_machines",
        "machine_rank",
        "main_address",
        "main_port",
        "gpu_ids",
        "deepspeed",
        "mixed_precision",
    ],
}
_grouped = {n for names in GROUPS.values() for n in names}
if set(FIELDS) - _grouped:  # a field added to FinetuneConfig still gets an input
    GROUPS["Other"] = [n for n in FIELDS if n not in _grouped]
INIT_FIELDS = ["source", "output", "user_stream", "reinit_text_embeddings", "keep_text_ids", "dtype", "overwrite"]
DEMO_PRESET = next(iter(PRESETS))
LOSS_AXIS = "log10 loss"  # the curves span decades: on a linear axis everything after the first steps lies on zero
LOSS_FLOOR = 1e-6  # a zero loss is drawn here (its log is -inf)
PROBE_AXIS = "TOR, latency (s)"
LOSS_KEYS = ["loss", *LOSS_STREAMS]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_html(step: int, max_steps: int, eta: float | None, state: str, phase: str = "") -> str:
    doing = f" · {phase}" if phase else ""  # the startup's phase, until the first step is logged
    text = f"{state}{doing} · step {step} / {max_steps} · ETA {_clock(eta)}"
    return bar_html(step / max(max_steps, 1), state, text)


def curves(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format for gr.LinePlot: one row per (step, loss component)."""
    rows = [
        {"step": m["step"], "series": k, LOSS_AXIS: math.log10(max(m[k], LOSS_FLOOR))}
        for m in metrics
        if "event" not in m and "step" in m
        for k in LOSS_KEYS
        if m.get(k) is not None
    ]
    return pd.DataFrame(rows, columns=["step", "series", LOSS_AXIS])  # empty: no placeholder row drawn as "null"


def probe_curves(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format for gr.LinePlot: one row per (probed step, task's TOR or latency); failed probes are left out."""
    rows = [
        {"step": r["step"], "series": f"{key} {task}" + (" (s)" if key == "latency" else ""), PROBE_AXIS: value}
        for r in records
        for key in ("tor", "latency")
        for task, value in r.get(key, {}).items()
    ]
    return pd.DataFrame(rows, columns=["step", "series", PROBE_AXIS])


def command_preview(cfg: FinetuneConfig) -> str:
    return explained(cluster_preview(cfg, Path(RUNS_DIR) / "<new-run>", runs.TRAIN_MODULE))


# ---------------------------------------------------------------- handlers: (workspace, form values) -> plain data


def read_form(values: list[Any]) -> FinetuneConfig:
    return build_config(FinetuneConfig, {}, FIELDS, values)


def confine_form(ws: Workspace, cfg: FinetuneConfig) -> None:
    """The form's paths must lie in the workspace (preset names such as zero3 and hub ids pass as names in it)."""
    for name in ("base_model", "train_data", "eval_data", "deepspeed"):
        value = getattr(cfg, name)
        if value is not None and str(value).strip():
            inside_workspace(ws.root, value, name)


def form_problem(ws: Workspace, cfg: FinetuneConfig) -> str | None:
    """What Start would refuse in this configuration, checked without torch, or None."""
    try:
        confine_form(ws, cfg)
        runs.validate_before_launch(cfg, ws.root)
    except StudioError as e:
        return str(e)
    return None


def on_form(ws: Workspace, *values: Any) -> tuple[str, str]:
    """(command preview, problem message) on every change of the form: a bad value shows as it is typed."""
    try:
        cfg = read_form(list(values))
        confine_form(ws, cfg)
        preview = command_preview(cfg)
    except StudioError as e:
        return f"# {e}", f"✘ {e}"
    problem = form_problem(ws, cfg)
    return preview, "" if problem is None else f"✘ {problem}"


def on_estimate(ws: Workspace, *values: Any) -> str:
    """Memory and budget estimate (builds the model on torch's meta device: slower than the checks)."""
    try:
        cfg = read_form(list(values))
        confine_form(ws, cfg)
        source = ws.resolve(cfg.base_model)
        note = (
            ""
            if Path(source).is_dir()
            else (f"base_model {cfg.base_model} is not a model folder here: estimated for moshi's 7B architecture\n")
        )
        return note + budget.estimate(cfg, lm_kwargs_of(source)).summary()
    except (StudioError, OSError) as e:
        return f"(no estimate: {e})"


def held_out_data(ws: Workspace) -> str | None:
    """The validation split of the workspace's last Build (backend/dataset/build.py), as the form's eval data."""
    folder = ws.dataset / VALIDATION_DIR
    return str(folder.relative_to(ws.root)) if list(folder.glob(SHARD_PATTERN)) else None


def held_out_build(ws: Workspace) -> str | None:
    """Which Build wrote the held-out split (its folder and its shards' newest time), or None without one: each
    Build's split is offered to the form once (`on_shown_eval`)."""
    folder = ws.dataset / VALIDATION_DIR
    try:
        newest = max((p.stat().st_mtime_ns for p in folder.glob(SHARD_PATTERN)), default=None)
    except OSError:  # a Build replacing the shards right now: offered when the form is next shown
        return None
    return None if newest is None else f"{folder.relative_to(ws.root)}@{newest}"


def on_shown_eval(ws: Workspace, current: str, offered: str | None) -> tuple[str, str | None]:
    """(eval_data, offered) as the form is shown: a split a Build wrote since the form last saw one (`offered`, from
    held_out_build) fills an empty eval_data field; a value the user typed, or cleared after that split was offered,
    stays as it is."""
    build = held_out_build(ws)
    if build is None or build == offered:
        return current, offered
    split = held_out_data(ws)
    return (split if not str(current).strip() and split is not None else current), build


def preset_values(name: str, ws: Workspace | None = None) -> dict[str, Any]:
    """A preset's configuration; with `ws`, eval data the preset leaves empty is the workspace's held-out split."""
    values = config.to_dict(dataclasses.replace(FinetuneConfig(), **PRESETS[name]))
    if ws is not None:
        values["eval_data"] = values["eval_data"] or held_out_data(ws)
    return values


def on_preset(name: str, ws: Workspace | None = None) -> list[Any]:
    values = preset_values(name, ws)
    return [form_value(values[n]) for n in FIELDS]


def on_save(ws: Workspace, *values: Any) -> str:
    """The form as a configuration file to download (what the CLI takes with --config): one file in the
    workspace, replaced at each save, so clicks leave nothing behind; a refused form writes nothing."""
    config.save(read_form(list(values)), ws.saved_finetune_config)
    return str(ws.saved_finetune_config)


def on_load(file: str) -> list[Any]:
    """Form values from an uploaded configuration file; raises StudioError for a bad file."""
    (path,) = received_uploads([file])
    try:
        values = config.to_dict(config.load(FinetuneConfig, path))
    except StudioError as e:
        raise StudioError(named(str(e), file)) from None
    finally:
        remove_uploads(file)
    return [form_value(values[n]) for n in FIELDS]


def init_values(ws: Workspace) -> list[Any]:
    """The Initialise form's first values (INIT_FIELDS order): the workspace's LM, written where the presets
    look (the demo's models/demo-lm-init, or models/moshiko-init for real weights)."""
    values = config.to_dict(InitConfig(source=ws.settings.lm, output=Path(init_output(ws.settings.demo))))
    return [form_value(values[n]) for n in INIT_FIELDS]


def on_init(ws: Workspace, *values: Any) -> str:
    from backend.models.initialise import init_model

    try:
        cfg = build_config(InitConfig, {}, INIT_FIELDS, list(values))
        inside_workspace(ws.root, cfg.source, "source")
        output = inside_workspace(ws.root, cfg.output, "output")  # refused before anything is written
        tokenizer = str(ws.tokenizer_path) if ws.tokenizer_path.is_file() else ""  # recorded in the model
        out = init_model(dataclasses.replace(cfg, source=ws.resolve(cfg.source), output=output, tokenizer=tokenizer))
    except StudioError as e:
        return f"✘ {e}"
    return f"✔ wrote `{out}`: use it as base_model ({out.relative_to(ws.root)})"


def open_run(ws: Workspace, run_id: str) -> folder.Job:
    """A run of this workspace by the id the client sent (a folder under runs/, nothing else)."""
    return runs.open_run(ws.root, inside_workspace(ws.runs, run_id, "run"))


def run_choices(ws: Workspace, selected: str | None = None) -> tuple[list[str], str | None]:
    """Run ids, newest first; the selection kept, else the running run, else the newest."""
    return pick_run([(i.id, i.state, i.created) for i in runs.list_runs(ws.root)], selected)


def on_start(ws: Workspace, *values: Any) -> tuple[str, list[str] | None, str | None]:
    try:
        cfg = read_form(list(values))
        confine_form(ws, cfg)
        run = runs.start_new(ws.root, cfg)  # a refusal writes no run folder
    except StudioError as e:
        return f"✘ {e}", None, None
    return f"started **{run.id}**", *run_choices(ws, run.id)


def on_abort(ws: Workspace, run_id: str | None) -> str:
    return abort_run(ws, run_id, open_run, "it stops after the current step (forced after 60 s)")


def on_resume(ws: Workspace, run_id: str | None) -> str:
    return resume_run(ws, run_id, open_run, runs.resume)


def on_tick(ws: Workspace, run_id: str | None) -> tuple[str, pd.DataFrame | None, pd.DataFrame | None, str]:
    """(progress bar, loss curves, behaviour probes per step, log tail) of a run; no curves without a run."""
    if not run_id:
        return "", None, None, ""
    try:
        run = open_run(ws, run_id)
        info = runs.run_info(run)
    except StudioError as e:
        return f"✘ {e}", None, None, ""
    bar = progress_html(info.step, info.max_steps, info.eta_s, info.state, info.phase)
    return bar, curves(folder.read_metrics(run)), probe_curves(read_probes(run.dir)), folder.tail_log(run, 6000)


def on_export(ws: Workspace, run_id: str | None, clean: bool, folder: str = "", overwrite: bool = False) -> str:
    """Export the run's newest complete checkpoint (one whose save finished), to `folder` in the workspace
    or, when empty, next to the checkpoints; `overwrite`: the user confirmed replacing a folder that is not an
    earlier export."""
    from backend.models.export import ExportConfig, export_checkpoint

    if not run_id:
        return "no run selected"
    try:
        run = open_run(ws, run_id)
        output = inside_workspace(ws.root, folder, "export folder") if folder.strip() else None
        checkpoint = latest_checkpoint(run.dir)
        if checkpoint is None:
            return "✘ this run has no complete checkpoint yet"
        out = export_checkpoint(
            ExportConfig(checkpoint=checkpoint, output=output, clean=clean, overwrite=bool(overwrite))
        )
    except StudioError as e:
        return f"✘ {e}"
    return f"✔ exported `{out.relative_to(ws.root) if out.is_relative_to(ws.root) else out}`"


# ---------------------------------------------------------------- widgets


def build_export(ctx: StudioContext, pick: gr.Dropdown) -> None:
    """The export row under the run's log: the chosen run's newest checkpoint to a model folder."""
    with gr.Row():
        clean = gr.Checkbox(value=True, label="clean for serving (dep_q 8)")
        folder = gr.Textbox(
            label="export to (a folder in the workspace; empty: runs/<id>/exports/<step>)",
            elem_id="ft-export-dir",
            scale=2,
        )
        replace = gr.Checkbox(
            value=False, label="replace a folder that is not an earlier export", elem_id="ft-export-replace"
        )
        button = gr.Button("Export newest checkpoint", elem_id="ft-export")
    message = gr.Markdown(elem_id="ft-export-msg")
    button.click(ctx.bind(on_export), [pick, clean, folder, replace], message)


def build(ctx: StudioContext, shown: Shown) -> None:
    with gr.Accordion("1. Initialise the model (user-stream extension, text-embedding re-init)", open=True):
        with gr.Row():
            init_inputs = config_inputs(InitConfig, INIT_FIELDS, dict(zip(INIT_FIELDS, init_values(ctx.ws))))
        init_btn = gr.Button("Initialise", elem_id="ft-init")
        init_msg = gr.Markdown(elem_id="ft-init-msg")

    gr.Markdown("#### 2. Configure")
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value=DEMO_PRESET, label="preset", scale=3, elem_id="ft-preset")
        # A DownloadButton would download the value it had before its click event ran (nothing, the first time).
        save_btn = gr.Button("Save configuration", scale=1, elem_id="ft-save")
        load_btn = gr.UploadButton("Load configuration", file_types=[".json"], scale=1, elem_id="ft-load")
    start_values = preset_values(DEMO_PRESET, ctx.ws)
    inputs: dict[str, gr.components.Component] = {}
    for title, names in GROUPS.items():
        with gr.Accordion(title, open=title == "Model and data"):
            with gr.Row():
                inputs.update(config_inputs(FinetuneConfig, names, start_values))
    ordered = [inputs[n] for n in FIELDS]
    saved = gr.File(label="saved configuration", visible=False, elem_id="ft-saved")
    problem = gr.Markdown(elem_id="ft-problem")
    command = gr.Code(
        command_preview(read_form([form_value(start_values[n]) for n in FIELDS])),
        label="exact command (one per machine)",
        language="shell",
        elem_id="ft-command",
    )
    estimate = gr.Code(
        "estimating… (the first estimate loads torch: up to a minute)",
        label="memory and budget estimate",
        language=None,
        elem_id="ft-budget",
    )

    gr.Markdown("#### 3. Runs")
    row = run_row("ft")
    bar = gr.HTML(elem_id="ft-progress")
    plot = gr.LinePlot(
        x="step",
        y=LOSS_AXIS,
        color="series",
        title="losses per stream (log10, as the run's loss.png)",
        elem_id="ft-curves",
    )
    probes = gr.LinePlot(
        x="step",
        y=PROBE_AXIS,
        color="series",
        title="behaviour probes of the checkpoints (eval_probes_every: TOR and latency per task)",
        elem_id="ft-probes",
    )
    log = gr.Code(label="log (tail)", language=None, elem_id="ft-log", max_lines=20)
    build_export(ctx, row.pick)
    timer = gr.Timer(2.0)

    def load(file: str) -> list[Any]:
        try:
            return on_load(file)
        except StudioError as e:
            raise gr.Error(str(e)) from None

    def tick(run_id: str | None) -> tuple[str, Any, Any, str]:
        html, data, probed, tail = on_tick(ctx.ws, run_id)
        # No rows: no chart at all (an empty one draws "null" axes and Vega "Infinite extent" warnings).
        return html, *(gr.skip() if d is None else None if d.empty else d for d in (data, probed)), tail

    # One listener per trigger (the estimate follows the command): Gradio 6 re-fires a whole trigger when one of
    # its deferred listeners ends, so two always_last listeners of one trigger can re-fire each other for good.
    gr.on(
        [c.change for c in ordered] + shown,
        ctx.bind(on_form),
        ordered,
        [command, problem],
        trigger_mode="always_last",
        show_progress="hidden",
    ).then(ctx.bind(on_estimate), ordered, estimate, show_progress="hidden")
    # A Build in the Data tab since the form was last shown may have written a validation split: offered as eval
    # data (its change event then re-checks the form). Not on the Build's own outputs: they live in another tab.
    offered = gr.State(held_out_build(ctx.ws))  # the split the form's first values took, if any
    gr.on(shown, ctx.bind(on_shown_eval), [inputs["eval_data"], offered], [inputs["eval_data"], offered])
    # Values equal to the form's fire no change event, and Initialise creates the base model folder: re-check.
    preset.change(lambda name: on_preset(name, ctx.ws), preset, ordered).then(
        ctx.bind(on_estimate), ordered, estimate, show_progress="hidden"
    )

    def save(*values: Any) -> Any:
        try:
            return gr.File(on_save(ctx.ws, *values), visible=True)
        except StudioError as e:
            raise gr.Error(str(e)) from None

    save_btn.click(save, ordered, saved)
    load_btn.upload(load, load_btn, ordered, api_name="load_config")
    # The form's problem line and estimate are re-checked: the base model folder may exist only now.
    init_btn.click(ctx.bind(on_init), [init_inputs[n] for n in INIT_FIELDS], init_msg).then(
        ctx.bind(on_form), ordered, [command, problem], show_progress="hidden"
    ).then(ctx.bind(on_estimate), ordered, estimate, show_progress="hidden")
    wire_run_row(ctx, row, shown, ordered, on_start, on_abort, on_resume, run_choices)
    row.pick.change(tick, row.pick, [bar, plot, probes, log])
    timer.tick(tick, row.pick, [bar, plot, probes, log], show_progress="hidden")
