"""Fine-tune runs: one job folder per run under `<workspace>/runs/` (backend.jobs owns the folder, the
supervisor, the processes and the devices; this module what is a fine-tune's own).

    runs/<YYYYmmdd-HHMMSS>-<slug>/  config.json (FinetuneConfig), command.json, status.json, train.log,
                                   metrics.jsonl, checkpoints/ (backend.models.checkpoints), abort, loss.png

Everything is read back from these files, so a restarted studio (or another shell) sees every run.
"""

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.core import config, figures
from backend.core.errors import ConfigError, StudioError
from backend.core.paths import probe_folder
from backend.core.workspace import RUNS_DIR
from backend.finetune.config import DEEPSPEED_PRESETS, FinetuneConfig, check_config
from backend.finetune.pace import current_phase
from backend.finetune.presets import PRESETS
from backend.jobs import launcher
from backend.jobs.control import abort, status
from backend.jobs.folder import (
    COMMAND_FILE,
    CONFIG_FILE,
    Job,
    list_jobs,
    mark_queued,
    new_job,
    open_job,
    read_json,
    read_metrics,
    tail_log,
)
from backend.jobs.slurm import slurm_note, write_slurm_script

TRAIN_MODULE = "backend.finetune.trainer"
SUMMARY_PLOT = "loss.png"  # loss curves, drawn when the run ends (the supervisor's finish step)


@dataclass(frozen=True)
class RunInfo:
    id: str
    dir: Path
    state: str
    created: float
    started: float | None
    ended: float | None
    step: int
    max_steps: int
    eta_s: float | None
    losses: dict[str, float | None]  # the newest logged value of every *loss key
    exit_code: int | None
    message: str
    phase: str = ""  # what a running trainer does before its first step, e.g. "loading the base model x (35 s)"


@dataclass
class ShowConfig:
    plot: Path | None = figures.plot_option("the run's loss curves (from metrics.jsonl)")


def run_config(run: Job) -> FinetuneConfig:
    return config.load(FinetuneConfig, run.dir / CONFIG_FILE)


# ---------------------------------------------------------------- configuration before launch


def absolute_config(cfg: FinetuneConfig, workspace_root: Path) -> FinetuneConfig:
    """The config with workspace-relative paths made absolute (the trainer runs with cwd = repo)."""
    root = Path(workspace_root).resolve()

    def local(p: str | Path) -> Path:
        return Path(p) if Path(p).is_absolute() else root / p

    changes: dict[str, Any] = {"train_data": local(cfg.train_data)}
    if cfg.eval_data is not None:
        changes["eval_data"] = local(cfg.eval_data)
    # A base model that is not in the workspace stays a hub repo id (workspace.py's convention).
    if local(cfg.base_model).exists():
        changes["base_model"] = str(local(cfg.base_model))
    if cfg.deepspeed not in ("", "none", *DEEPSPEED_PRESETS) and local(cfg.deepspeed).exists():
        changes["deepspeed"] = str(local(cfg.deepspeed))
    changes["eval_probes"] = str(probe_folder(root, cfg.eval_probes))
    return dataclasses.replace(cfg, **changes)


def validate_before_launch(cfg: FinetuneConfig, workspace_root: Path) -> None:
    """Raise ConfigError for anything that would fail after launch: check_config on the config with the
    workspace's paths, and a base model meant to be in the workspace that is not there."""
    parts = Path(cfg.base_model).parts
    if (
        parts
        and not Path(cfg.base_model).is_absolute()
        and (Path(workspace_root) / parts[0]).is_dir()
        and not (Path(workspace_root) / cfg.base_model).exists()
    ):
        raise ConfigError(
            f"base_model: {Path(workspace_root).resolve() / cfg.base_model} not found "
            f"(make it with the init stage, moshi-studio init)"
        )
    if cfg.eval_probes_every and not probe_folder(Path(workspace_root), cfg.eval_probes).is_dir():
        raise ConfigError(
            f"eval_probes: {cfg.eval_probes} is neither a shipped probe set nor a folder in the workspace"
        )
    check_config(absolute_config(cfg, workspace_root))


# ---------------------------------------------------------------- a run's folder


def create_run(workspace_root: Path, cfg: FinetuneConfig, name: str | None = None) -> Job:
    """Validate, then make `runs/<timestamp>-<slug>/` with config.json, command.json and a queued status."""
    validate_before_launch(cfg, workspace_root)
    return _make_run(workspace_root, cfg, name)


def _make_run(workspace_root: Path, cfg: FinetuneConfig, name: str | None) -> Job:
    cfg = absolute_config(cfg, workspace_root)
    run = new_job(Path(workspace_root).resolve() / RUNS_DIR, name or f"{Path(cfg.base_model).name}-{cfg.mode}")
    config.save(cfg, run.dir / CONFIG_FILE)
    write_command(run, cfg)
    mark_queued(run, cfg.slurm)
    return run


def write_command(run: Job, cfg: FinetuneConfig) -> dict[str, Any]:
    """The trainer under accelerate; when the run ends the supervisor draws loss.png."""
    finish = [sys.executable, "-m", __name__, "_plot", str(run.dir)]
    return launcher.write_command(run, cfg, TRAIN_MODULE, finish=finish)


def open_run(workspace_root: Path, run: str | Path) -> Job:
    """A run by id (a folder under <workspace>/runs) or by the path of its folder."""
    return open_job(Path(workspace_root) / RUNS_DIR, run, "run")


def plot_losses(run: Job, path: Path) -> Path:
    return figures.save(figures.loss_curves(read_metrics(run), f"run {run.id}"), path)


def _last_step(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    return next((m for m in reversed(metrics) if "event" not in m and "step" in m), {})


def progress(run: Job, metrics: list[dict[str, Any]] | None = None) -> tuple[int, int, float | None]:
    """(optimiser step, max_steps, ETA in seconds or None) from the newest metrics line."""
    last = _last_step(read_metrics(run) if metrics is None else metrics)
    max_steps = last.get("max_steps") or run_config(run).max_steps
    return int(last.get("step", 0)), int(max_steps), last.get("eta_s")


def run_info(run: Job) -> RunInfo:
    st = status(run)
    metrics = read_metrics(run)
    last = _last_step(metrics)
    step, max_steps, eta = progress(run, metrics)
    return RunInfo(
        id=run.id,
        dir=run.dir,
        state=st.get("state", "queued"),
        created=st.get("created", 0.0),
        started=st.get("started"),
        ended=st.get("ended"),
        step=step,
        max_steps=max_steps,
        eta_s=eta if st.get("state") == "running" else None,
        losses={k: v for k, v in last.items() if k.endswith("loss")},
        exit_code=st.get("exit_code"),
        message=st.get("message", ""),
        phase=current_phase(metrics, time.time()) if st.get("state") == "running" else "",
    )


def list_runs(workspace_root: Path) -> list[RunInfo]:
    """Every run of the workspace, newest first."""
    return [run_info(run) for run in list_jobs(Path(workspace_root) / RUNS_DIR)]


# ---------------------------------------------------------------- starting


def start(run: Job) -> None:
    """Launch the run (or launch it again: resume) as its own process group; returns at once."""

    def prepare() -> dict[str, Any]:
        cfg = run_config(run)
        validate_before_launch(cfg, run.workspace)
        return write_command(run, cfg)

    launcher.launch(run, prepare)


def start_new(workspace_root: Path, cfg: FinetuneConfig, name: str | None = None) -> Job:
    """Create a run and start it (Start in the studio, `runs start`). Refused (bad settings, the devices
    busy) before anything is written: no run folder is left that would never start. With `cfg.slurm` nothing
    starts here: the run is created and its SLURM script written (slurm.write_slurm_script)."""
    validate_before_launch(cfg, workspace_root)
    if cfg.slurm:
        run = _make_run(workspace_root, cfg, name)
        write_slurm_script(Path(cfg.slurm), run_config(run), run.dir, TRAIN_MODULE)
        return run
    with launcher.workspace_lock(workspace_root):
        launcher.refuse_overlap(workspace_root, launcher.devices(cfg))  # before the folder exists: none is left
        run = _make_run(workspace_root, cfg, name)
        launcher.launch_locked(run, lambda: write_command(run, run_config(run)))
    return run


def resume(run: Job) -> None:
    """Start a stopped run again in its folder; the trainer continues from the newest complete checkpoint."""
    state = status(run).get("state")
    if state == "finished":
        raise ConfigError(f"run {run.id} has finished all its steps; raise max_steps in a new run to train further")
    start(run)


def preset_values(name: str) -> dict[str, Any]:
    """A preset of the fine-tune form by its name or an unambiguous start of it (`--preset demo`)."""
    if name in PRESETS:
        return PRESETS[name]
    found = [key for key in PRESETS if key.lower().startswith(name.lower())]
    if len(found) != 1:
        raise ConfigError(f"preset {name!r}: {'ambiguous' if found else 'unknown'}; presets: " + "; ".join(PRESETS))
    return PRESETS[found[0]]


# ---------------------------------------------------------------- CLI


def _plot_summary(run: Job) -> int:
    try:
        plot_losses(run, run.dir / SUMMARY_PLOT)
    except Exception as e:  # a figure must never change how the run is recorded
        print(f"no {SUMMARY_PLOT}: {e}")
    return 0


def _print_info(info: RunInfo) -> None:
    losses = " ".join(f"{k}={v:.4g}" for k, v in info.losses.items() if v is not None)
    code = "" if info.exit_code is None else f" exit={info.exit_code}"
    why = f"  ({info.message})" if info.message else ""
    print(f"{info.id}  {info.state:<8} step {info.step}/{info.max_steps}{code}  {losses}{why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune runs: list, show, start, abort, resume.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (
        ("list", "every run of the workspace"),
        ("show", "status, progress and log tail of a run"),
        ("abort", "stop a run (gracefully, then by force)"),
        ("resume", "start a stopped run again"),
        ("start", "create a run from the fine-tune settings and start it"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder (default: .)")
        if name in ("show", "abort", "resume"):
            p.add_argument("run", help="run id (folder name under <workspace>/runs) or run folder")
        if name == "show":
            config.cli_parser(ShowConfig, text, parser=p)
        if name == "abort":
            p.add_argument("--grace", type=float, default=60.0, help="seconds before processes are killed")
        if name in ("start", "resume"):
            p.add_argument(
                "--wait",
                action="store_true",
                help="follow the log until the run ends "
                "(exit 0 when finished); SIGTERM then aborts the run, as a cluster job should",
            )
        if name == "start":
            p.add_argument("--name", default=None, help="short name in the run's folder name")
            p.add_argument(
                "--preset",
                default=None,
                help="start from a preset of the studio's form (its name or "
                "the start of it, e.g. demo); --config and explicit flags override it. Presets: " + "; ".join(PRESETS),
            )
            config.cli_parser(FinetuneConfig, text, parser=p)
    sub.add_parser("_plot").add_argument("run_dir", type=Path)  # internal: the supervisor's finish step
    args = parser.parse_args(argv)
    if args.cmd == "_plot":
        return _plot_summary(Job(args.run_dir))
    try:
        if args.cmd == "list":
            for info in list_runs(args.workspace):
                _print_info(info)
            return 0
        if args.cmd == "start":
            base = preset_values(args.preset) if args.preset else {}
            run = start_new(args.workspace, config.from_cli(FinetuneConfig, args, base), args.name)
            if slurm := run_config(run).slurm:
                print(slurm_note(run, slurm))
                return 0
        else:
            run = open_run(args.workspace, args.run)
        if args.cmd == "show":
            plot = config.from_cli(ShowConfig, args).plot
            _print_info(run_info(run))
            print(json.dumps(status(run), indent=2))
            print(tail_log(run, 4000))
            if plot is not None:
                print(f"wrote {plot_losses(run, plot)}")
            return 0
        if args.cmd == "abort":
            print(f"run {run.id}: {abort(run, args.grace)}")
            return 0
        if args.cmd == "resume":
            resume(run)
        print(f"run {run.id} started: {read_json(run.dir / COMMAND_FILE)['display']}")
        return launcher.follow(run) if args.wait else 0
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
