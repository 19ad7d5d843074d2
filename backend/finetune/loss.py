"""The training loss of SPEC.md "Training view", on the output of moshi's `LMModel.forward`.

`LMModel.forward(codes)` returns logits already aligned with `codes` (no shift needed) plus masks of
the positions that have a valid context. Targets are ignored where the mask is off, where the code is
the zero token (-1) and where it is an "initial" token (text >= text_card, audio >= card).

Text, J-Moshi variant: mean CE over non-PAD targets (EPAD counts as non-PAD) + text_pad_weight x mean
CE over PAD targets, two separate means. Kyutai variant: one mean weighted by text_pad_weight on PAD
and EPAD targets. Audio (both variants): one weighted mean over every predicted codebook; codebook 0
of a stream weighs semantic_weight, codebooks 1..7 acoustic_weight, and the user stream's (depformer
steps 8..15 of a dep_q 16 model) are further multiplied by user_stream_weight.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from moshi.models.lm import LMOutput

from backend.core.spec import ACCURACIES, LOSS_STREAMS, LOSS_TOTALS, NUM_CODEBOOKS

# Every component reported in metrics.jsonl; user_* are None for dep_q 8 models.
PARTS = (*LOSS_TOTALS, *LOSS_STREAMS, *ACCURACIES)


@dataclass(frozen=True)
class LossWeights:
    variant: Literal["jmoshi", "kyutai"] = "jmoshi"
    text_pad_weight: float = 0.5
    semantic_weight: float = 100.0
    acoustic_weight: float = 1.0
    user_stream_weight: float = 1.0
    text_weight: float = 1.0
    audio_weight: float = 1.0
    pad_id: int = 3
    epad_id: int = 0

    def codebook_weights(self, dep_q: int) -> torch.Tensor:
        """Weight of each depformer step: per stream [semantic, acoustic x7], the user's scaled."""
        stream = [self.semantic_weight] + [self.acoustic_weight] * (NUM_CODEBOOKS - 1)
        weights = []
        for s in range(dep_q // NUM_CODEBOOKS):
            scale = 1.0 if s == 0 else self.user_stream_weight
            weights += [w * scale for w in stream]
        return torch.tensor(weights, dtype=torch.float32)


@dataclass
class LossOutput:
    total: torch.Tensor  # differentiable scalar
    parts: dict[str, torch.Tensor | None]  # detached scalars, keys = PARTS


def _mean(values: torch.Tensor) -> torch.Tensor:
    """Mean that is 0 (and keeps the graph) on an empty selection, e.g. a batch without PAD targets."""
    return values.sum() / max(values.numel(), 1)


def _ce(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(CE, logits, targets) at the valid positions only (masked logits are NaN and must not be touched)."""
    picked = logits[valid].float()
    target = targets[valid]
    return F.cross_entropy(picked, target, reduction="none"), picked, target


def _correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1.0 where the top logit is the target's. Only for what is reported: torch's CPU argmax is slow (over
    every audio codebook it took 4% of a tiny model's training step, where 2 of the 16 are reported)."""
    return (logits.detach().argmax(-1) == targets).float()


def text_loss(out: LMOutput, codes: torch.Tensor, w: LossWeights, text_card: int) -> dict[str, torch.Tensor]:
    target = codes[:, 0]
    valid = out.text_mask[:, 0] & (target >= 0) & (target < text_card)
    ce, logits, picked = _ce(out.text_logits[:, 0], target, valid)
    is_pad = picked == w.pad_id
    nonpad, pad = _mean(ce[~is_pad]), _mean(ce[is_pad])
    if w.variant == "jmoshi":
        total = nonpad + w.text_pad_weight * pad
    else:
        weight = torch.where(is_pad | (picked == w.epad_id), w.text_pad_weight, 1.0)
        total = (ce * weight).sum() / weight.sum().clamp_min(1e-8)
    return {
        "text_loss": total,
        "text_nonpad_loss": nonpad,
        "text_pad_loss": pad,
        "text_acc": _mean(_correct(logits, picked)),
    }


def audio_loss(out: LMOutput, codes: torch.Tensor, w: LossWeights, card: int) -> dict[str, torch.Tensor | None]:
    dep_q = out.logits.shape[1]
    target = codes[:, 1 : 1 + dep_q]
    valid = out.mask & (target >= 0) & (target < card)
    ce, logits, picked = _ce(out.logits, target, valid)
    step = torch.arange(dep_q, device=codes.device)[None, :, None].expand_as(target)[valid]
    is_semantic = step % NUM_CODEBOOKS == 0
    semantic_step, semantic_correct = step[is_semantic], _correct(logits[is_semantic], picked[is_semantic])
    weight = w.codebook_weights(dep_q).to(ce.device)[step]
    parts: dict[str, torch.Tensor | None] = {"audio_loss": (ce * weight).sum() / weight.sum().clamp_min(1e-8)}
    for s, stream in enumerate(("moshi", "user")):
        first = s * NUM_CODEBOOKS
        if first >= dep_q:
            parts |= {f"{stream}_semantic_loss": None, f"{stream}_acoustic_loss": None, f"{stream}_semantic_acc": None}
            continue
        semantic = step == first
        acoustic = (step > first) & (step < first + NUM_CODEBOOKS)
        parts |= {
            f"{stream}_semantic_loss": _mean(ce[semantic]),
            f"{stream}_acoustic_loss": _mean(ce[acoustic]),
            f"{stream}_semantic_acc": _mean(semantic_correct[semantic_step == first]),
        }
    return parts


def compute_loss(out: LMOutput, codes: torch.Tensor, w: LossWeights, text_card: int, card: int) -> LossOutput:
    """Loss of one batch: `out` = LMModel.forward(codes), codes [B, 17, T] undelayed with -1 padding."""
    parts: dict[str, torch.Tensor | None] = {**text_loss(out, codes, w, text_card), **audio_loss(out, codes, w, card)}
    total = w.text_weight * parts["text_loss"] + w.audio_weight * parts["audio_loss"]  # type: ignore[operator]
    parts["loss"] = total
    return LossOutput(total, {k: None if parts[k] is None else parts[k].detach() for k in PARTS})  # type: ignore[union-attr]
