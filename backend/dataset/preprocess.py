"""Preprocessing stages across processes, GPUs and nodes, as run folders of the run registry.

`accelerate launch` (the fine-tune's engine, with the fine-tune's command builder) starts
`backend.dataset.preprocess_rank` on every rank. Each rank takes a deterministic share of the stage's files
(backend.jobs.sharding) and runs the stage's own function on it, on its own GPU when there is one. A stage
skips files already done, so starting a run again resumes it; each output file is written atomically by the
rank that made it, so a rank that dies loses only the file it was writing. Rank 0 prints one summary and one
list of failures. The folder is a job's (backend.jobs handles its processes: start, status, abort, reattach):

    <workspace>/preprocess/<YYYYmmdd-HHMMSS>-<stage>/config.json   {"stage": name, "config": stage + launch settings}
                                                    command.json, status.json, train.log (as a fine-tune run's)
                                                    progress/rank-<r>.json  each rank's latest progress
                                                    summary.json            rank 0's merged summary

    python -m backend.dataset.preprocess start tokenize_audio --workspace W --input-dir raw --output-dir tokens/audio \\
        --device cpu --num-processes 2 --wait
    python -m backend.dataset.preprocess preview tokenize_audio --num-machines 2 --num-processes 16 ...
    python -m backend.dataset.preprocess start annotate --workspace W --input raw --num-processes 2 --wait
    python -m backend.dataset.preprocess show|resume|abort RUN --workspace W

A stage joins with one entry in STAGES: its config dataclass, its function taking (cfg, progress,
shard=(rank, world)), its summary class (a sharding.ShareSummary with `line`), its config check. The studio's
Preprocess tab (studio/preprocess_tab.py) builds its forms from the same entries.
"""

import argparse
import dataclasses
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from backend.core import config
from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError, StudioError
from backend.core.workspace import PREPROCESS_DIR
from backend.data.annotate.run import AnnotateConfig, AnnotateSummary, annotate_folder, check_config
from backend.dataset.tokenize_audio import AudioTokenizeConfig, TokenizeSummary, _validate, tokenize_audio
from backend.jobs import launcher
from backend.jobs.command import display_command
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
    tail_log,
)
from backend.jobs.launch_config import LaunchConfig, check_launch, on_cpu
from backend.jobs.slurm import cluster_preview, slurm_note, write_slurm_script

RANK_MODULE = "backend.dataset.preprocess_rank"
PROGRESS_DIR = "progress"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Stage:
    config: type  # the stage's own config dataclass
    run: Callable[..., Any]  # (cfg, progress, shard=(rank, world)) -> summary of that share
    summary: type  # merge(list) -> summary; line() -> str; failed: {file: message}
    check: Callable[[Any], Any]  # refuses a config before launch (ConfigError)
    models: tuple[str, ...] = ()  # text fields naming a model: a path relative to the workspace, or a hub id


STAGES = {
    "tokenize_audio": Stage(AudioTokenizeConfig, tokenize_audio, TokenizeSummary, _validate, ("mimi",)),
    "annotate": Stage(AnnotateConfig, annotate_folder, AnnotateSummary, check_config, ("whisper_model",)),
}


@functools.cache
def run_config_class(stage: str) -> type:
    """The stage's settings plus the launch settings, as one config (one `device` field: the launch's)."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return dataclasses.make_dataclass(
        f"{STAGES[stage].config.__name__}Launch", [], bases=(LaunchConfig, STAGES[stage].config)
    )


def stage_config(stage: str, cfg: Any) -> Any:
    """The stage's own config out of a run config (what the stage function and its saved config see)."""
    cls = STAGES[stage].config
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


def absolute(stage: str, cfg: Any, workspace: Path) -> Any:
    """Workspace-relative paths made absolute (the ranks run with cwd = the repository); a model field that
    names nothing in the workspace stays a hub id (backend.core.workspace's convention)."""
    root = Path(workspace).resolve()
    paths = {
        f.name: root / v
        for f in dataclasses.fields(cfg)
        if isinstance(v := getattr(cfg, f.name), Path) and not v.is_absolute()
    }
    models = {
        name: str(root / v)
        for name in STAGES[stage].models
        if (v := getattr(cfg, name)) and not Path(v).is_absolute() and (root / v).exists()
    }
    return dataclasses.replace(cfg, **paths, **models)


def check(stage: str, cfg: Any, here: bool = True) -> None:
    """Refuse a run config before launch; `here` = it is to start on this machine (not only be shown)."""
    check_launch(cfg)
    if here:
        on_cpu(cfg, must_exist=True)  # a 'cuda' job on a machine without a GPU is refused
    STAGES[stage].check(stage_config(stage, cfg))


def load(run: Job) -> tuple[str, Any]:
    """(stage name, run config) of a preprocessing run folder."""
    try:
        saved = json.loads((run.dir / CONFIG_FILE).read_text(encoding="utf-8"))
        stage = saved["stage"]
        return stage, config.from_dict(run_config_class(stage), saved["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StudioError(f"{run.dir}: not a preprocessing run ({e})") from None


def create_run(workspace: Path, stage: str, cfg: Any) -> Job:
    """Validate, then make `<workspace>/preprocess/<timestamp>-<stage>/` ready to start (on this machine, or
    with `cfg.slurm` on a cluster's nodes, whose devices are not checked here)."""
    cfg = absolute(stage, cfg, workspace)
    check(stage, cfg, here=not cfg.slurm)
    run = new_job(Path(workspace).resolve() / PREPROCESS_DIR, stage)
    write_text_atomic(run.dir / CONFIG_FILE, json.dumps({"stage": stage, "config": config.to_dict(cfg)}, indent=2))
    launcher.write_command(run, cfg, RANK_MODULE)
    mark_queued(run, cfg.slurm)
    return run


def start_new(workspace: Path, stage: str, cfg: Any) -> Job:
    """Create a run and start it (Start in the studio, `preprocess start`). Refused (bad settings, the devices
    busy) before anything is written: no run folder is left that would never start. With `cfg.slurm` nothing
    starts here: the run is created and its SLURM script written (slurm.write_slurm_script)."""
    if cfg.slurm:
        run = create_run(workspace, stage, cfg)
        write_slurm_script(Path(cfg.slurm), load(run)[1], run.dir, RANK_MODULE)
        return run
    cfg = absolute(stage, cfg, workspace)
    check(stage, cfg)
    with launcher.workspace_lock(Path(workspace).resolve()):
        launcher.refuse_overlap(Path(workspace).resolve(), launcher.devices(cfg))  # before the folder exists
        run = create_run(workspace, stage, cfg)
        launcher.launch_locked(run, lambda: launcher.write_command(run, cfg, RANK_MODULE))
    return run


def start(run: Job) -> None:
    """Start (or start again: resume) a preprocessing run; returns at once."""

    def prepare() -> dict[str, Any]:
        stage, cfg = load(run)
        check(stage, cfg)
        return launcher.write_command(run, cfg, RANK_MODULE)

    launcher.launch(run, prepare)


def open_run(workspace: Path, run: str | Path) -> Job:
    return open_job(Path(workspace) / PREPROCESS_DIR, run, "preprocessing run")


def list_runs(workspace: Path) -> list[Job]:
    """Every preprocessing run of the workspace, newest first."""
    return list_jobs(Path(workspace) / PREPROCESS_DIR)


def progress(run: Job) -> tuple[float, list[str]]:
    """(mean fraction done over the ranks that reported, each rank's share done and latest message)."""
    reports = []
    for f in sorted((run.dir / PROGRESS_DIR).glob("rank-*.json")):
        try:
            reports.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # being replaced right now
    if not reports:
        return 0.0, []
    return (
        sum(r["fraction"] for r in reports) / len(reports),
        [f"rank {r['rank']}: {100 * r['fraction']:.0f}% · {r['message']}" for r in reports],
    )


def outcome(stage: str, record: dict[str, Any]) -> list[str]:
    """The lines rank 0 prints at the end (summary.json's record): one summary, each failure, each rank's error."""
    lines = []
    if record.get("summary"):
        merged = STAGES[stage].summary(**record["summary"])
        lines += [f"{stage}, {record['ranks']} rank(s): {merged.line()}"]
        lines += [f"failed: {message}" for message in merged.failed.values()]
    return lines + [f"error: {message}" for message in record.get("errors", [])]


def read_outcome(run: Job) -> list[str]:
    """`outcome` of a run that has ended ([] before rank 0 wrote its summary)."""
    try:
        record = json.loads((run.dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        return outcome(load(run)[0], record)
    except (OSError, ValueError, TypeError, KeyError, StudioError):
        return []


def commands(stage: str, cfg: Any, run_dir: Path) -> list[str]:
    """The command of every machine (index = machine_rank), for showing before a multi-node start."""
    return [display_command(cfg, run_dir, RANK_MODULE, rank) for rank in range(cfg.num_machines)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Preprocessing stages on many processes: start, preview, show, resume, abort."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("start", "preview"):
        stages = sub.add_parser(name, help=f"{name} a stage run").add_subparsers(dest="stage", required=True)
        for stage in STAGES:
            p = config.cli_parser(run_config_class(stage), stage, parser=stages.add_parser(stage))
            p.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder (default: .)")
            if name == "start":
                p.add_argument("--wait", action="store_true", help="follow the log until the run ends")
    for name in ("show", "resume", "abort"):
        p = sub.add_parser(name, help=f"{name} a preprocessing run")
        p.add_argument("run", help="run id (folder name under <workspace>/preprocess) or run folder")
        p.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder (default: .)")
        if name == "resume":
            p.add_argument("--wait", action="store_true", help="follow the log until the run ends")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "preview":
            cfg = absolute(args.stage, config.from_cli(run_config_class(args.stage), args), args.workspace)
            check(args.stage, cfg, here=False)
            print(cluster_preview(cfg, Path(args.workspace).resolve() / PREPROCESS_DIR / "<run>", RANK_MODULE))
            return 0
        if args.cmd == "start":
            run = start_new(args.workspace, args.stage, config.from_cli(run_config_class(args.stage), args))
            if slurm := load(run)[1].slurm:
                print(slurm_note(run, slurm))
                return 0
        else:
            run = open_run(args.workspace, args.run)
        if args.cmd == "show":
            fraction, messages = progress(run)
            print(f"{run.id}  {status(run).get('state')}  {100 * fraction:.0f}%")
            print("\n".join(messages))
            print(tail_log(run, 4000))
            return 0
        if args.cmd == "abort":
            print(f"run {run.id}: {abort(run)}")
            return 0
        if args.cmd != "start":  # resume
            start(run)
        print(f"run {run.id} started: {read_json(run.dir / COMMAND_FILE)['display']}")
        stage, cfg = load(run)
        for rank, line in enumerate(commands(stage, cfg, run.dir)):
            if rank != cfg.machine_rank:  # the other machines join with their own command
                print(f"# machine {rank}: {line}")
        return launcher.follow(run) if args.wait else 0
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
