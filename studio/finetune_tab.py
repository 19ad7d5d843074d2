"""Fine-tune tab: initialise the model, configure (one form = FinetuneConfig), preview the exact
command, start/abort/resume runs, follow logs, progress and per-stream loss curves, export.

The tab owns no process: `backend.finetune.runs` starts and supervises them, and everything shown is read
back from the run folders, so reloading the page or restarting the studio reattaches."""

import dataclasses
import tempfile
import threading
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from backend.finetune import budget, runs

from backend.core import config
from backend.core.errors import StudioError
from backend.models.export import ExportConfig, export_checkpoint
from backend.finetune.config import FinetuneConfig
from backend.finetune.presets import PRESETS
from backend.finetune.command import display_command
from backend.models.initialise import InitConfig, init_model
from backend.models.source import lm_kwargs_of

from .context import Shown, StudioContext
from .forms import build_config, config_inputs, form_value

FIELDS = [f.name for f in dataclasses.fields(FinetuneConfig)]
GROUPS = {  # accordion title -> fields (every FinetuneConfig field appears exactly once)
    "Model and data": ["base_model", "dtype", "train_data", "eval_data", "main_speaker", "max_frames", "min_frames"],
    "What trains": ["user_stream", "mode", "lora_rank", "lora_scaling", "trainable", "activation_checkpointing"],
    "Optimiser": ["lr", "depformer_lr", "weight_decay", "beta1", "beta2", "eps", "warmup_steps", "max_steps",
                  "batch_size", "grad_accum", "grad_clip", "seed"],
    "Loss weights": ["loss_variant", "text_weight", "audio_weight", "text_pad_weight", "semantic_weight",
                     "acoustic_weight", "user_stream_weight"],
    "Checkpoints and logging": ["log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "tracker"],
    "Launch: processes, DeepSpeed, nodes": ["device", "threads", "num_processes", "num_machines", "machine_rank", "main_address",
                                            "main_port", "gpu_ids", "deepspeed", "mixed_precision"],
}
_grouped = {n for names in GROUPS.values() for n in names}
if set(FIELDS) - _grouped:  # a field added to FinetuneConfig still gets an input
    GROUPS["Other"] = [n for n in FIELDS if n not in _grouped]
INIT_FIELDS = ["source", "output", "user_stream", "reinit_text_embeddings", "keep_text_ids", "dtype"]
DEMO_PRESET = next(iter(PRESETS))
LOSS_KEYS = ["loss", "text_nonpad_loss", "text_pad_loss", "moshi_semantic_loss", "moshi_acoustic_loss",
             "user_semantic_loss", "user_acoustic_loss"]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_html(step: int, max_steps: int, eta: float | None, state: str) -> str:
    pct = 100 * step / max(max_steps, 1)
    return (f'<div class="ms-progress" data-state="{state}"><div class="ms-progress-bar" style="width:{pct:.1f}%">'
            f'</div><span>{state} · step {step} / {max_steps} · ETA {_clock(eta)}</span></div>')


def curves(metrics: list[dict[str, Any]]) -> pd.DataFrame:
    """Long format for gr.LinePlot: one row per (step, loss component)."""
    rows = [{"step": m["step"], "series": k, "value": m[k]} for m in metrics
            if "event" not in m and "step" in m for k in LOSS_KEYS if m.get(k) is not None]
    return pd.DataFrame(rows or [{"step": 0, "series": "loss", "value": None}])


def command_preview(cfg: FinetuneConfig) -> str:
    run_dir = Path("runs/<new-run>")
    if cfg.num_machines <= 1:
        return display_command(cfg, run_dir)
    return "\n\n".join(f"# machine {rank}\n{display_command(cfg, run_dir, machine_rank=rank)}"
                       for rank in range(cfg.num_machines))


def build(ctx: StudioContext, shown: Shown) -> None:
    with gr.Accordion("1. Initialise the model (user-stream extension, text-embedding re-init)", open=True):
        with gr.Row():
            init_inputs = config_inputs(InitConfig, INIT_FIELDS)
        init_btn = gr.Button("Initialise", elem_id="ft-init")
        init_msg = gr.Markdown()

    gr.Markdown("#### 2. Configure")
    with gr.Row():
        preset = gr.Dropdown(list(PRESETS), value=DEMO_PRESET, label="preset", scale=3, elem_id="ft-preset")
        save_btn = gr.DownloadButton("Save configuration", scale=1)
        load_btn = gr.UploadButton("Load configuration", file_types=[".json"], scale=1)
    start_values = config.to_dict(dataclasses.replace(FinetuneConfig(), **PRESETS[DEMO_PRESET]))
    inputs: dict[str, gr.components.Component] = {}
    for title, names in GROUPS.items():
        with gr.Accordion(title, open=title == "Model and data"):
            with gr.Row():
                inputs.update(config_inputs(FinetuneConfig, names, start_values))
    ordered = [inputs[n] for n in FIELDS]
    command = gr.Code(label="exact command (one per machine)", language="shell", elem_id="ft-command")
    estimate = gr.Code(label="memory and budget estimate", language=None, elem_id="ft-budget")

    gr.Markdown("#### 3. Runs")
    with gr.Row():
        start_btn = gr.Button("Start", variant="primary", elem_id="ft-start")
        run_pick = gr.Dropdown(label="run", choices=[], scale=3, elem_id="ft-run")
        abort_btn = gr.Button("Abort", variant="stop", elem_id="ft-abort")
        resume_btn = gr.Button("Resume", elem_id="ft-resume")
    run_msg = gr.Markdown(elem_id="ft-msg")
    bar = gr.HTML(elem_id="ft-progress")
    plot = gr.LinePlot(x="step", y="value", color="series", title="losses per stream", elem_id="ft-curves")
    log = gr.Code(label="log (tail)", language=None, elem_id="ft-log", max_lines=20)
    with gr.Row():
        export_clean = gr.Checkbox(value=True, label="clean for serving (dep_q 8)")
        export_btn = gr.Button("Export newest checkpoint", elem_id="ft-export")
    export_msg = gr.Markdown(elem_id="ft-export-msg")
    timer = gr.Timer(2.0)

    def read_form(values: list[Any]) -> FinetuneConfig:
        return build_config(FinetuneConfig, {}, FIELDS, values)

    def on_change(*values: Any) -> tuple[str, str]:
        try:
            cfg = read_form(list(values))
            preview = command_preview(cfg)
        except StudioError as e:
            return f"# {e}", ""
        source = ctx.ws.resolve(cfg.base_model)
        note = "" if Path(source).is_dir() else (f"base_model {cfg.base_model} is not a model folder here: "
                                                  "estimated for moshi's 7B architecture\n")
        try:
            text = note + budget.estimate(cfg, lm_kwargs_of(source)).summary()
        except (StudioError, OSError) as e:
            text = f"(no estimate: {e})"
        return preview, text

    def on_preset(name: str) -> list[Any]:
        values = config.to_dict(dataclasses.replace(FinetuneConfig(), **PRESETS[name]))
        return [form_value(values[n]) for n in FIELDS]

    def on_save(*values: Any) -> str:
        cfg = read_form(list(values))
        path = Path(tempfile.mkdtemp()) / "finetune_config.json"
        config.save(cfg, path)
        return str(path)

    def on_load(file: str) -> list[Any]:
        try:
            cfg = config.load(FinetuneConfig, file)
        except StudioError as e:
            raise gr.Error(str(e)) from None
        values = config.to_dict(cfg)
        return [form_value(values[n]) for n in FIELDS]

    def on_init(*values: Any) -> str:
        try:
            cfg = build_config(InitConfig, {}, INIT_FIELDS, list(values))
            cfg = dataclasses.replace(cfg, source=ctx.ws.resolve(cfg.source), output=ctx.ws.root / cfg.output)
            out = init_model(cfg)
        except StudioError as e:
            return f"✘ {e}"
        return f"✔ wrote `{out}`: use it as base_model ({out.relative_to(ctx.ws.root)})"

    def run_choices(selected: str | None = None) -> Any:
        infos = runs.list_runs(ctx.ws.root)
        ids = [i.id for i in sorted(infos, key=lambda i: i.created, reverse=True)]
        running = [i.id for i in infos if i.state == "running"]
        value = selected if selected in ids else (running[0] if running else ids[0] if ids else None)
        return gr.update(choices=ids, value=value)

    def on_start(*values: Any) -> tuple[str, Any]:
        try:
            run = runs.create_run(ctx.ws.root, read_form(list(values)))
            runs.start(run)
        except StudioError as e:
            return f"✘ {e}", gr.update()
        return f"started **{run.id}**", run_choices(run.id)

    def on_abort(run_id: str | None) -> str:
        if not run_id:
            return "no run selected"
        run = runs.open_run(ctx.ws.root, run_id)
        # abort() waits up to its grace period for the step boundary: keep the page responsive.
        threading.Thread(target=runs.abort, args=(run,), name=f"abort-{run.id}", daemon=True).start()
        return f"abort requested for **{run.id}**: it stops after the current step (forced after 60 s)"

    def on_resume(run_id: str | None) -> str:
        if not run_id:
            return "no run selected"
        try:
            runs.resume(runs.open_run(ctx.ws.root, run_id))
        except StudioError as e:
            return f"✘ {e}"
        return f"resumed **{run_id}**"

    def on_tick(run_id: str | None) -> tuple[str, Any, str]:
        if not run_id:
            return "", gr.skip(), ""
        run = runs.open_run(ctx.ws.root, run_id)
        info = runs.run_info(run)
        return (progress_html(info.step, info.max_steps, info.eta_s, info.state), curves(runs.read_metrics(run)),
                runs.tail_log(run, 6000))

    def on_export(run_id: str | None, clean: bool) -> str:
        if not run_id:
            return "no run selected"
        try:
            run = runs.open_run(ctx.ws.root, run_id)
            ckpts = sorted((run.dir / "checkpoints").glob("step-*"))
            if not ckpts:
                return "✘ this run has no checkpoint yet"
            out = export_checkpoint(ExportConfig(checkpoint=ckpts[-1], clean=clean))
        except StudioError as e:
            return f"✘ {e}"
        return f"✔ exported `{out}`"

    gr.on([c.change for c in ordered] + shown, on_change, ordered, [command, estimate],
          trigger_mode="always_last", show_progress="hidden")
    preset.change(on_preset, preset, ordered)
    save_btn.click(on_save, ordered, save_btn)
    load_btn.upload(on_load, load_btn, ordered)
    init_btn.click(on_init, [init_inputs[n] for n in INIT_FIELDS], init_msg)
    start_btn.click(on_start, ordered, [run_msg, run_pick])
    abort_btn.click(on_abort, run_pick, run_msg)
    resume_btn.click(on_resume, run_pick, run_msg)
    gr.on(shown, run_choices, run_pick, run_pick)  # runs started elsewhere (CLI, another page) appear
    run_pick.change(on_tick, run_pick, [bar, plot, log])
    timer.tick(on_tick, run_pick, [bar, plot, log], show_progress="hidden")
    export_btn.click(on_export, [run_pick, export_clean], export_msg)
