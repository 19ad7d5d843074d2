"""Shared by the init and export tests: a tiny source LM and logits on one fixed input."""

from pathlib import Path

import torch
from moshi.models.lm import LMModel

from backend.demo.workspace import build_demo_lm


def tiny_source(folder: Path) -> Path:
    """The demo LM (SPEC.md's tiny LM, dep_q 8, fixed seed) as a model folder."""
    build_demo_lm(folder)
    return folder


def fixed_codes(frames: int = 6, seed: int = 1) -> torch.Tensor:
    """[2, 17, T]: text ids (PAD/EPAD among them) and 16 codebooks, undelayed, as the training view."""
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(0, 400, (2, 1, frames), generator=gen)
    text[:, :, ::3] = 3
    audio = torch.randint(0, 2048, (2, 16, frames), generator=gen)
    return torch.cat([text, audio], dim=1)


@torch.no_grad()
def logits_of(model: LMModel, codes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(text logits [B, 1, T, text_card], audio logits [B, dep_q, T, card]) of `LMModel.forward`."""
    model.eval()
    out = model(fixed_codes() if codes is None else codes)
    return out.text_logits.float(), out.logits.float()
