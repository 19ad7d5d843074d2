"""Per-stream loss of each model on a dataset's evaluation split: the training loss (backend.finetune.loss, its
default weights) of every whole dialogue, up to MAX_FRAMES, with `main_speaker` playing Moshi; each part is
averaged over the dialogues that have it (user parts need a model with the user stream, dep_q 16)."""

import numpy as np
import torch

from backend.evaluate.config import EvaluateConfig
from backend.finetune.data import DatasetRows, collate, example_rows, make_examples
from backend.finetune.loss import PARTS, LossWeights, compute_loss
from backend.models.loading import load_model

MAX_FRAMES = 375  # 30 s, the training default


@torch.no_grad()
def dataset_loss(source: str, rows: DatasetRows, main_speaker: str, device: str = "cpu") -> dict[str, float | None]:
    model = load_model(source, device=device)
    sums, counts = np.zeros(len(PARTS)), np.zeros(len(PARTS))
    for ex in make_examples(rows.lengths, main_speaker, MAX_FRAMES, min_frames=2):  # type: ignore[arg-type]
        codes = collate([example_rows(rows, ex)]).to(device)
        parts = compute_loss(model(codes), codes, LossWeights(), model.text_card, model.card).parts
        for i, key in enumerate(PARTS):
            if parts[key] is not None:
                sums[i] += float(parts[key])
                counts[i] += 1
    return {key: (float(sums[i] / counts[i]) if counts[i] else None) for i, key in enumerate(PARTS)}


def model_losses(cfg: EvaluateConfig, models: dict[str, str]) -> dict[str, dict[str, float | None]]:
    assert cfg.eval_data is not None
    rows = DatasetRows(cfg.eval_data)
    return {label: dataset_loss(source, rows, cfg.main_speaker) for label, source in models.items()}
