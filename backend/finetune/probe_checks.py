"""Behaviour probes of a run's checkpoints while it trains (FinetuneConfig.eval_probes_every), so TOR and latency per
step sit beside the loss curves.

After a checkpoint is published, rank 0 calls `start_probes`: unless a probe process already runs, it starts
`python -m backend.evaluate.checkpoint_probes --run-dir R` in the background (its own session, CPU only, one
thread). That process probes the newest due checkpoint not yet probed (one probe per task of `eval_probes`) and
appends {"event": "probes", "step", "tor": {task: ...}, "latency": {task: ...}, ...} to the run's probes.jsonl; it
looks again before it exits, so a checkpoint published while it was busy (the run's last one too) is not missed.
Training never waits for it; the run's supervisor waits for every process of the run, so the run ends once its
last checkpoint is probed. The trainer may not import backend.evaluate (tests/test_layers.py): the module is
started by name."""

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backend.core.errors import InputError
from backend.core.paths import REPO
from backend.finetune.config import FinetuneConfig
from backend.jobs.folder import read_jsonl
from backend.models.checkpoints import NAME, list_checkpoints

PROBES_FILE = "probes.jsonl"  # one line per probed checkpoint, in the run folder
PROBES_DIR = "probes"  # <run>/probes/<checkpoint name>/: the written samples (Full-Duplex-Bench's layout)
LOCK_FILE = ".probes.lock"  # held by the probe process for as long as it probes
PROBE_MODULE = "backend.evaluate.checkpoint_probes"


def due(cfg: FinetuneConfig, step: int) -> bool:
    """A checkpoint at `step` is probed: a multiple of eval_probes_every, or the run's last step."""
    return bool(cfg.eval_probes_every) and (step % cfg.eval_probes_every == 0 or step == cfg.max_steps)


def read_probes(run_dir: Path) -> list[dict[str, Any]]:
    """The probe records of a run, oldest first."""
    return [r for r in read_jsonl(Path(run_dir) / PROBES_FILE) if r.get("event") == "probes"]


def step_of(checkpoint: Path) -> int:
    """A checkpoint's step, from its name (the trainer may prune the folder at any time)."""
    found = NAME.match(checkpoint.name)
    if found is None:
        raise InputError(checkpoint, "not a checkpoint folder (step-<digits>)")
    return int(found.group(1))


def next_checkpoint(run_dir: Path, cfg: FinetuneConfig) -> Path | None:
    """The newest due checkpoint if it has not been probed yet (older ones are left: the curve moves on)."""
    found = [c for c in list_checkpoints(run_dir) if due(cfg, step_of(c))]
    if not found:
        return None
    done = {r["step"] for r in read_probes(run_dir)}
    return None if step_of(found[-1]) in done else found[-1]


@contextlib.contextmanager
def probe_lock(run_dir: Path) -> Iterator[bool]:
    """The run's probe lock, taken without waiting: yields whether this process holds it."""
    with open(Path(run_dir) / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start_probes(run_dir: Path, cfg: FinetuneConfig, step: int) -> subprocess.Popen | None:
    """Called by rank 0 once checkpoint `step` is published: start the probe process unless one probes already
    (it looks for this checkpoint once it is done). Returns the process started, if any."""
    if not due(cfg, step):
        return None
    with probe_lock(run_dir) as free:
        if not free:
            return None
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}  # never the training GPUs' memory
    return subprocess.Popen(
        [sys.executable, "-m", PROBE_MODULE, "--run-dir", str(run_dir)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
