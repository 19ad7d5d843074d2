"""Tiny fixtures for the training tests: Parquet datasets of random tokens, dep_q 16 tiny models, run folders."""

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from moshi.models import loaders

from backend.core import config
from backend.core.spec import EPAD_ID, PAD_ID
from backend.dataset.build import SCHEMA, shard_name
from backend.finetune.config import FinetuneConfig
from backend.models.source import save_lm, tiny_lm_kwargs


def speaker_tokens(rng: np.random.Generator, frames: int, audio_vocab: int = 2048) -> np.ndarray:
    """[9, T]: a text row of words between PADs (EPAD before each word), 8 codebooks of random codes
    drawn from the first `audio_vocab` entries."""
    text = np.full(frames, PAD_ID)
    for start in range(2, frames - 1, 5):
        text[start - 1] = EPAD_ID
        text[start : start + 2] = rng.integers(10, 300, size=2)
    return np.concatenate([text[None], rng.integers(0, audio_vocab, size=(8, frames))])


def write_dataset(
    folder: Path, lengths: list[int], seed: int = 0, prefix: str = "train", audio_vocab: int = 2048
) -> Path:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"dialogue_id": [], "A": [], "B": []}
    for i, frames in enumerate(lengths):
        rows["dialogue_id"].append(f"{prefix}/d{i:03d}")
        rows["A"].append(speaker_tokens(rng, frames, audio_vocab).tolist())
        rows["B"].append(speaker_tokens(rng, frames, audio_vocab).tolist())
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows, schema=SCHEMA), folder / shard_name(prefix, 1, 1))
    return folder


def write_model(folder: Path, dep_q: int = 16, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    kwargs = tiny_lm_kwargs() | {"dep_q": dep_q}
    model = loaders.get_moshi_lm(None, lm_kwargs=kwargs, dtype=torch.float32)
    return save_lm(model, kwargs, folder)


def write_run(run_dir: Path, **overrides: Any) -> FinetuneConfig:
    cfg = config.from_dict(
        FinetuneConfig,
        {"device": "cpu", "max_frames": 16, "min_frames": 4, "checkpoint_every": 0, "log_every": 1} | overrides,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(cfg, run_dir / "config.json")
    return cfg


def reset_accelerate() -> None:
    """In-process training runs share accelerate's singleton state; reset it after one."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def trained_checkpoint(run_dir: Path, **overrides: Any) -> Path:
    """Train a run in this process (write_run's config with `overrides`) and return its last checkpoint."""
    from backend.finetune.trainer import train
    from backend.models import checkpoints

    write_run(run_dir, **overrides)
    try:
        assert train(run_dir) == "finished"
    finally:
        reset_accelerate()
    checkpoint = checkpoints.latest_checkpoint(run_dir)
    assert checkpoint is not None
    return checkpoint
