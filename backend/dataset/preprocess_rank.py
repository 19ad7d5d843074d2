"""One rank of a preprocessing run (what `accelerate launch` starts; see backend.dataset.preprocess).

The rank's place comes from the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; a
single process has none). Ranks talk only at the end, over gloo whatever the device, to hand rank 0 their
summaries; the process group waits days, not torch's default 30 minutes, since one rank may finish long
before another. A rank that dies makes the launcher stop the others; every file finished by then is kept.
"""

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from backend.core.atomic import write_text_atomic
from backend.core.errors import StudioError
from backend.dataset.preprocess import PROGRESS_DIR, STAGES, SUMMARY_FILE, load, outcome, stage_config
from backend.jobs.folder import Job
from backend.jobs.launch_config import on_cpu

GATHER_TIMEOUT = datetime.timedelta(days=7)
PROGRESS_EVERY_S = 1.0


def place() -> tuple[int, int, int, int]:
    """(rank, world, local rank, processes on this machine)."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", world))


def progress_writer(run_dir: Path, rank: int):  # type: ignore[no-untyped-def]
    """A stage progress callback that keeps <run>/progress/rank-<r>.json current (at most once a second)."""
    target = run_dir / PROGRESS_DIR / f"rank-{rank}.json"
    last = [0.0]

    def report(fraction: float, message: str) -> None:
        if fraction < 1.0 and time.monotonic() - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = time.monotonic()
        write_text_atomic(target, json.dumps({"rank": rank, "fraction": fraction, "message": message}))

    return report


def run_share(run_dir: Path) -> dict[str, Any]:
    """This rank's share of the stage: {"summary": dict} or {"error": message}."""
    stage, cfg = load(Job(run_dir))
    rank, world, local_rank, local_world = place()
    own = stage_config(stage, cfg)
    if on_cpu(cfg):
        own.device = "cpu"
        if hasattr(own, "workers") and not own.workers:  # share the machine's cores among its ranks
            own.workers = max(1, len(os.sched_getaffinity(0)) // local_world)
    else:
        import torch

        torch.cuda.set_device(local_rank)  # "cuda" now means this rank's own GPU
        own.device = "cuda"
    try:
        summary = STAGES[stage].run(own, progress_writer(run_dir, rank), shard=(rank, world))
    except StudioError as e:
        return {"rank": rank, "error": str(e)}
    return {"rank": rank, "summary": summary.to_dict()}


def gather(part: dict[str, Any], world: int) -> list[dict[str, Any]] | None:
    """Every rank's part on rank 0 (None elsewhere)."""
    if world == 1:
        return [part]
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
    try:
        parts: list[Any] = [None] * world if dist.get_rank() == 0 else []
        dist.gather_object(part, parts if dist.get_rank() == 0 else None, dst=0)
        return parts if dist.get_rank() == 0 else None
    finally:
        dist.destroy_process_group()


def finish(run_dir: Path, parts: list[dict[str, Any]]) -> int:
    """Rank 0: one summary, one list of failures (and summary.json); exit code 1 when anything failed."""
    stage, _ = load(Job(run_dir))
    errors = [f"rank {p['rank']}: {p['error']}" for p in parts if "error" in p]
    summaries = [STAGES[stage].summary(**p["summary"]) for p in parts if "summary" in p]
    merged = STAGES[stage].summary.merge(summaries) if summaries else None
    record = {"ranks": len(parts), "errors": errors, "summary": merged.to_dict() if merged else None}
    write_text_atomic(run_dir / SUMMARY_FILE, json.dumps(record, indent=2))
    for line in outcome(stage, record):
        print(line, flush=True)
    return 1 if errors or (merged and merged.failed) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One rank of a preprocessing run (started by accelerate launch).")
    parser.add_argument("--run-dir", type=Path, required=True, help="preprocessing run folder")
    args = parser.parse_args(argv)
    part = run_share(args.run_dir)
    parts = gather(part, place()[1])
    return finish(args.run_dir, parts) if parts is not None else 0


if __name__ == "__main__":
    sys.exit(main())
