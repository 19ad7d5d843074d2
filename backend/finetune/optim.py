"""What trains and how: full / LoRA / named subset, AdamW with one group per transformer, warm-up."""

import torch
from moshi.models.lm import LMModel
from moshi.modules.lora import replace_all_linear_with_lora
from torch import nn

from backend.core.errors import ConfigError
from backend.finetune.config import FinetuneConfig

# Parameters of the depth transformer (trained with depformer_lr); everything else is "temporal".
DEPFORMER_PREFIXES = ("depformer", "linears.")


def apply_mode(model: LMModel, cfg: FinetuneConfig) -> None:
    """Set requires_grad per cfg.mode; LoRA mode first inserts adapters (B at zero: starts as the base)."""
    if cfg.mode == "lora":
        replace_all_linear_with_lora(model, cfg.lora_rank, cfg.lora_scaling)
        for name, module in model.named_modules():
            if name.endswith("lora_B"):
                nn.init.zeros_(module.weight)
        trainable = lambda name: ".lora_A." in name or ".lora_B." in name  # noqa: E731
    elif cfg.mode == "subset":
        trainable = lambda name: name.startswith(tuple(cfg.trainable))  # noqa: E731
    else:
        trainable = lambda name: True  # noqa: E731
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(name))
    if cfg.mode == "subset":
        unknown = [p for p in cfg.trainable if not any(n.startswith(p) for n, _ in model.named_parameters())]
        if unknown:
            raise ConfigError(
                f"trainable: no parameter name starts with {', '.join(unknown)} "
                f"(top-level names: {', '.join(sorted({n.split('.')[0] for n, _ in model.named_parameters()}))})"
            )


def is_depformer(name: str) -> bool:
    return name.startswith(DEPFORMER_PREFIXES)


def param_groups(model: nn.Module, cfg: FinetuneConfig) -> list[dict]:
    """Two AdamW groups: the temporal transformer (+ embeddings, text head) at lr, the depth transformer
    (+ its embeddings and audio heads) at depformer_lr. Empty groups are left out."""
    temporal, depth = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (depth if is_depformer(name) else temporal).append(p)
    groups = [
        {"params": temporal, "lr": cfg.lr, "name": "temporal"},
        {"params": depth, "lr": cfg.depformer_lr or cfg.lr, "name": "depformer"},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: FinetuneConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, cfg), betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier before optimiser step `step` (0-based): linear from 1/warmup to 1, then constant."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: FinetuneConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, cfg.warmup_steps))
