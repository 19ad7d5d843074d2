"""The behaviour probes of a fine-tune run's checkpoints (FinetuneConfig.eval_probes_every), one process at a time:
`python -m backend.evaluate.checkpoint_probes --run-dir runs/<id>`, started in the background by
backend.finetune.probe_checks after a checkpoint is published (the protocol is described there).

Per checkpoint: exported clean (deleted once streamed: a 7B export is large), one probe per task of the run's
`eval_probes` streamed through the chat engine on the CPU with one thread (the evaluation's own code,
backend.evaluate.rank), scored, and one line appended to the run's probes.jsonl; the samples stay in
`<run>/probes/<checkpoint>/`. A probe that fails is recorded with its error, so it is not tried again. The process
stops at once when the run is aborted or its supervisor is gone."""

import argparse
import json
import os
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from backend.core import config
from backend.core.workspace import open_workspace
from backend.evaluate.config import EvaluateConfig
from backend.evaluate.job import absolute
from backend.evaluate.rank import MODELS, OUTPUTS, stream_share
from backend.evaluate.score import score_folder
from backend.finetune.config import FinetuneConfig
from backend.finetune.probe_checks import PROBES_DIR, PROBES_FILE, next_checkpoint, probe_lock, step_of
from backend.jobs.folder import ABORT_FILE, CONFIG_FILE, Job
from backend.jobs.processes import supervisor_gone

MODEL, PROBES = "model", "probes"  # labels in the evaluation's own layout
WATCH_S = 1.0


def probe(run_dir: Path, cfg: FinetuneConfig, checkpoint: Path) -> dict[str, Any]:
    """Stream and score one probe per task with `checkpoint`: its probes.jsonl record."""
    out = run_dir / PROBES_DIR / checkpoint.name
    ws = open_workspace(Job(run_dir).workspace)
    evaluation = absolute(
        EvaluateConfig(
            models=[f"{MODEL}={checkpoint}"],
            probes=[f"{PROBES}={cfg.eval_probes}"],
            max_probes=1,
            device="cpu",
            threads=1,
        ),
        ws,
    )
    start = time.monotonic()
    try:
        stream_share(out, evaluation, 0, 1, "cpu")
    finally:
        shutil.rmtree(out / MODELS, ignore_errors=True)
    summary = score_folder(out / OUTPUTS / MODEL)["summary"]
    return {
        "event": "probes",
        "step": step_of(checkpoint),
        "probes": cfg.eval_probes,
        "samples": sum(row["samples"] for row in summary.values()),
        "tor": {task: row["tor"] for task, row in summary.items() if row["tor"] is not None},
        "latency": {task: row["latency"] for task, row in summary.items() if row["latency"] is not None},
        "seconds": round(time.monotonic() - start, 1),
    }


def record(run_dir: Path, cfg: FinetuneConfig, checkpoint: Path) -> None:
    try:
        line = probe(run_dir, cfg, checkpoint)
    except Exception as e:  # recorded, so the next checkpoint is probed rather than this one again
        traceback.print_exc()
        line = {"event": "probes", "step": step_of(checkpoint), "error": f"{type(e).__name__}: {e}"}
    print(f"probes of {checkpoint.name}: {line}", flush=True)
    with open(run_dir / PROBES_FILE, "a", encoding="utf-8") as f:  # only the lock's holder appends
        f.write(json.dumps(line) + "\n")


def watch(run_dir: Path) -> None:
    """Leave at once when the run is aborted or its supervisor died (nothing would wait for this process)."""
    while not (run_dir / ABORT_FILE).exists() and not supervisor_gone():
        time.sleep(WATCH_S)
    os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Behaviour probes of a fine-tune run's newest checkpoints.")
    parser.add_argument("--run-dir", type=Path, required=True, help="the run's folder")
    run_dir = parser.parse_args(argv).run_dir.resolve()
    cfg = config.load(FinetuneConfig, run_dir / CONFIG_FILE)
    threading.Thread(target=watch, args=(run_dir,), daemon=True).start()
    while True:
        with probe_lock(run_dir) as mine:
            if not mine:
                return 0  # another process probes, and looks again once it is done
            while (checkpoint := next_checkpoint(run_dir, cfg)) is not None:
                record(run_dir, cfg, checkpoint)
        if next_checkpoint(run_dir, cfg) is None:  # published after the last look, while the lock was held?
            return 0


if __name__ == "__main__":
    sys.exit(main())
