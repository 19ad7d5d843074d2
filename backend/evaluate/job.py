"""Evaluations as jobs (backend.jobs: a folder, a supervised process tree, abort, resume, reattach):

    <workspace>/evaluations/<YYYYmmdd-HHMMSS>-<name>/
        config.json          {"config": EvaluateConfig, paths absolute}
        command.json, status.json, train.log, progress/rank-<r>.json   (as every job's)
        models/<label>/      checkpoints exported clean for the chat loop
        outputs/<model>/<probe set>/<sample>/   input.wav + task file + output.wav + output.json (FD-Bench's layout)
        continuations/<model>/   with eval_data: its continuations of the split (backend.evaluate.continuation_stats)
        results.json         per-sample records, per-task summaries, losses and continuations' turn-taking, per model
                             (backend.evaluate.report)
        table.md, tor_latency.png, backchannel_timing.png, continuation_turns.png (with eval_data)

    moshi-studio evaluate start --workspace W --models base=models/demo-lm tuned=runs/<id>/exports/step-000125 --wait
    moshi-studio evaluate show|resume|abort ID --workspace W
    moshi-studio evaluate score FOLDER     # FD-Bench's metrics of any folder of written samples

Every rank streams its share of (model, probe) pairs; a pair whose output.json exists is skipped, so Resume
continues where an abort stopped. Rank 0 then scores every sample and writes the results (continuations written
completely by an earlier attempt are read back)."""

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from backend.core import config
from backend.core.atomic import write_text_atomic
from backend.core.errors import StudioError
from backend.core.paths import probe_folder
from backend.core.workspace import EVALUATIONS_DIR, Workspace, open_workspace
from backend.evaluate.config import EvaluateConfig, check, labelled, load
from backend.evaluate.report import RESULTS_FILE, read_results, table
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
    tail_log,
)
from backend.jobs.launch_config import check_launch, on_cpu
from backend.jobs.slurm import slurm_note, write_slurm_script

RANK_MODULE = "backend.evaluate.rank"


def absolute(cfg: EvaluateConfig, ws: Workspace) -> EvaluateConfig:
    """Sources made absolute (the processes run with cwd = the repository); hub ids stay as they are."""
    models = [f"{label}={ws.resolve(source)}" for label, source in labelled(cfg.models, "models").items()]
    probes = [f"{label}={probe_folder(ws.root, source)}" for label, source in labelled(cfg.probes, "probes").items()]
    return dataclasses.replace(
        cfg,
        models=models,
        probes=probes,
        mimi=ws.resolve(cfg.mimi or ws.settings.mimi),
        tokenizer=str(ws.resolve(cfg.tokenizer or ws.settings.tokenizer)),
        eval_data=None if cfg.eval_data is None else Path(ws.resolve(str(cfg.eval_data))),
    )


def validate(cfg: EvaluateConfig, ws: Workspace, here: bool = True) -> None:
    config.check_numbers(cfg)
    check_launch(cfg)
    if here:
        on_cpu(cfg, must_exist=True)
    check(cfg, ws)


def create_run(ws: Workspace, cfg: EvaluateConfig, name: str = "") -> Job:
    """Validate, then make `<workspace>/evaluations/<timestamp>-<name>/` ready to start: here, or with
    `cfg.slurm` on a cluster's nodes by the SLURM script written there (slurm.write_slurm_script)."""
    validate(cfg, ws, here=not cfg.slurm)
    cfg = absolute(cfg, ws)
    run = new_job(ws.evaluations, name or "-".join(labelled(cfg.models, "models")))
    write_text_atomic(run.dir / CONFIG_FILE, json.dumps({"config": config.to_dict(cfg)}, indent=2))
    launcher.write_command(run, cfg, RANK_MODULE)
    if cfg.slurm:
        write_slurm_script(Path(cfg.slurm), cfg, run.dir, RANK_MODULE)
    mark_queued(run, cfg.slurm)
    return run


def start(run: Job) -> None:
    """Start (or start again: resume) an evaluation; returns at once."""

    def prepare() -> dict[str, Any]:
        cfg = load(run)
        validate(cfg, open_workspace(run.workspace))
        return launcher.write_command(run, cfg, RANK_MODULE)

    launcher.launch(run, prepare)


def open_run(workspace: Path, run: str | Path) -> Job:
    return open_job(Path(workspace) / EVALUATIONS_DIR, run, "evaluation")


def list_runs(workspace: Path) -> list[Job]:
    return list_jobs(Path(workspace) / EVALUATIONS_DIR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moshi-studio evaluate",
        description="Behaviour probes through the chat "
        "loop, scored with Full-Duplex-Bench's formulas, models side by side.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = config.cli_parser(EvaluateConfig, "start an evaluation", parser=sub.add_parser("start"))
    p.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder (default: .)")
    p.add_argument("--name", default="", help="name of the evaluation folder (default: the model labels)")
    p.add_argument("--wait", action="store_true", help="follow the log until the evaluation ends")
    for name in ("show", "resume", "abort"):
        p = sub.add_parser(name, help=f"{name} an evaluation")
        p.add_argument("run", help="evaluation id (folder name under <workspace>/evaluations) or its folder")
        p.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder (default: .)")
        if name == "resume":
            p.add_argument("--wait", action="store_true", help="follow the log until the evaluation ends")
    p = sub.add_parser(
        "score",
        help="score a folder of written samples (FD-Bench's layout: input.wav, task file, output.wav, output.json)",
    )
    p.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "score":
            from backend.evaluate.score import score_folder

            print(json.dumps(score_folder(args.folder), indent=1))
            return 0
        ws = open_workspace(args.workspace)
        if args.cmd == "start":
            run = create_run(ws, config.from_cli(EvaluateConfig, args), args.name)
            if slurm := load(run).slurm:
                print(slurm_note(run, slurm))
                return 0
        else:
            run = open_run(ws.root, args.run)
        if args.cmd == "show":
            print(f"{run.id}  {status(run).get('state')}")
            results = read_results(run.dir)
            print(table(results) if results else tail_log(run, 4000))
            return 0
        if args.cmd == "abort":
            print(f"evaluation {run.id}: {abort(run)}")
            return 0
        start(run)
        print(f"evaluation {run.id} started: {read_json(run.dir / COMMAND_FILE)['display']}")
        if not args.wait:
            return 0
        code = launcher.follow(run)
        if (run.dir / RESULTS_FILE).is_file():
            print(table(read_results(run.dir)))
        return code
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
