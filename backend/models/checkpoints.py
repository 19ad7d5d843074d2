"""Checkpoint folders of a fine-tune run, and the model folders a workspace holds. Torch-free.

Checkpoints are written whole under a hidden temporary name, marked complete, renamed.

`runs/<id>/checkpoints/step-000050/` holds model.safetensors (or lora.safetensors in LoRA mode) with
moshi's own parameter names, moshi_lm_kwargs.json, trainer_state.json and accelerate_state/ (optimiser,
scheduler, RNG; ZeRO shards under DeepSpeed). It is listed only when its name is `step-<digits>` AND it
holds the `complete` marker, which is written last: a process killed mid-save leaves only a
`.step-*.partial` folder, which is never listed and is removed on the next start.
"""

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from backend.core.workspace import Workspace
from backend.models.source import LM_KWARGS

CHECKPOINTS = "checkpoints"
COMPLETE = "complete"
TRAINER_STATE = "trainer_state.json"
LORA_WEIGHTS = "lora.safetensors"  # LoRA mode: the adapters only (also in an unmerged LoRA export)
ACCELERATE_STATE = "accelerate_state"
EXPORTS_DIR = "exports"  # the export stage's default output: <run>/exports/<checkpoint name>
NAME = re.compile(r"^step-(\d+)$")


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def final_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_root(run_dir) / f"step-{step:06d}"


def staging_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_root(run_dir) / f".step-{step:06d}.partial"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := NAME.match(p.name)) and p.is_dir() and (p / COMPLETE).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / TRAINER_STATE).read_text())


def remove_partials(run_dir: str | Path) -> None:
    """Leftovers of a save that was killed (only ever called while no save is running)."""
    root = checkpoint_root(run_dir)
    if root.is_dir():
        for p in root.glob(".step-*.partial"):
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staging: Path, final: Path) -> None:
    """Mark a fully written staging folder complete and rename it into place."""
    for f in staging.rglob("*"):  # the data must be on disk before the marker that vouches for it
        if f.is_file():
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
    marker = staging / COMPLETE
    marker.write_text("ok\n")
    with open(marker, "rb+") as fh:
        os.fsync(fh.fileno())
    if final.exists():  # a re-save of the same step (resume after a crash right after the rename)
        shutil.rmtree(final)
    os.rename(staging, final)
    _fsync_dir(final.parent)


def prune(run_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints; returns what was deleted."""
    old = list_checkpoints(run_dir)[:-keep] if keep > 0 else []
    for p in old:
        # Hide it first so a half-deleted folder is never listed.
        hidden = p.with_name(f".{p.name}.partial")
        os.rename(p, hidden)
        shutil.rmtree(hidden, ignore_errors=True)
    return old


def model_folders(ws: Workspace) -> list[str]:
    """Every LM folder of the workspace, relative to it: models/, run exports and complete checkpoints (newest
    runs first)."""
    found = sorted(p.parent for p in ws.models.glob(f"*/{LM_KWARGS}"))
    for run in sorted(ws.runs.glob("*/"), reverse=True):
        found += sorted((p.parent for p in (run / EXPORTS_DIR).glob(f"*/{LM_KWARGS}")), reverse=True)
        found += [p for p in reversed(list_checkpoints(run)) if (p / LM_KWARGS).is_file()]
    return [str(p.relative_to(ws.root)) for p in found]
