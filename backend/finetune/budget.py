"""Memory and data budget of a fine-tune run, before launch.

Parameters are counted on the meta device (the real 7B architecture costs no memory). Bytes per
parameter follow the ZeRO paper's accounting:
- without DeepSpeed (torch AdamW, optional autocast): weights and gradients in the model dtype, the two
  AdamW moments in the model dtype too; everything replicated on every process;
- with DeepSpeed: weights and gradients in 16 bits under mixed precision (else 32), plus an fp32 master
  copy and two fp32 moments (12 bytes); ZeRO-1 shards the optimiser state over the processes, ZeRO-2 also
  the gradients, ZeRO-3 also the weights. Frozen parameters (LoRA, subset) cost weights only.
Activations are a rough order of magnitude: ~17 values per token and model dimension per layer kept for
the backward pass (Korthikanti et al. 2022, attention scores not stored by SDPA), only the layer inputs
when activation checkpointing is on, plus the fp32 logits and their gradients.
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.finetune.config import FinetuneConfig, deepspeed_config
from backend.models.source import torch_dtype
from backend.models.weights import lm_kwargs_of

STREAMS = 17  # main text + 8 main codebooks + 8 user codebooks (the training view)
ACT_VALUES_PER_LAYER = 17
GIB = 1024**3


@dataclass(frozen=True)
class Budget:
    params_total: int
    params_trainable: int
    processes: int
    zero_stage: int  # 0 = no DeepSpeed (or ZeRO-0)
    weight_bytes: int  # per process, like every *_bytes field
    grad_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    examples_per_step: int  # per optimiser step, over all processes
    tokens_per_step: int  # examples * max_frames * 17 streams (an upper bound: chunks may be shorter)
    examples_per_pass: int | None  # None when the dataset was not read
    passes: float | None  # over the training examples during max_steps

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes + self.activation_bytes

    def summary(self) -> str:
        def gib(n: int) -> str:
            return f"{n / GIB:.2f} GiB"

        zero = f"DeepSpeed ZeRO-{self.zero_stage}" if self.zero_stage else "no ZeRO sharding"
        lines = [
            f"parameters: {self.params_total / 1e6:,.1f} M total, {self.params_trainable / 1e6:,.1f} M trainable "
            f"({100 * self.params_trainable / max(self.params_total, 1):.2f}%)",
            f"per process ({self.processes} process(es), {zero}):",
            f"  weights {gib(self.weight_bytes)}, gradients {gib(self.grad_bytes)}, "
            f"optimiser state {gib(self.optimizer_bytes)}",
            f"  activations ~{gib(self.activation_bytes)} (rough), total ~{gib(self.total_bytes)}",
            f"per optimiser step: {self.examples_per_step} example(s), up to {self.tokens_per_step:,} tokens "
            f"({STREAMS} streams)",
        ]
        if self.passes is not None:
            lines.append(
                f"data: {self.examples_per_pass} training example(s); max_steps covers "
                f"{self.passes:.2f} pass(es) over them"
            )
        return "\n".join(lines)


def count_parameters(cfg: FinetuneConfig, lm_kwargs: dict[str, Any]) -> tuple[int, int]:
    """(total, trainable) parameters of the training model (LoRA adapters included) built on the meta device."""
    kwargs = {k: v for k, v in lm_kwargs.items() if k not in ("lora", "lora_rank", "lora_scaling")}
    return _count(json.dumps(kwargs, sort_keys=True), cfg.mode, cfg.lora_rank, tuple(cfg.trainable))


@functools.lru_cache(maxsize=32)  # the studio re-estimates on every form change; a 7B meta build takes seconds
def _count(kwargs_json: str, mode: str, lora_rank: int, trainable: tuple[str, ...]) -> tuple[int, int]:
    from backend.finetune.optim import apply_mode
    from backend.models.surgery import meta_lm

    model = meta_lm(json.loads(kwargs_json))
    apply_mode(model, FinetuneConfig(mode=mode, lora_rank=lora_rank, trainable=list(trainable)))  # type: ignore[arg-type]
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def bytes_per_param(cfg: FinetuneConfig, deepspeed: bool) -> tuple[int, int, int]:
    """(weight, gradient, optimiser) bytes per parameter before sharding."""
    if not deepspeed:
        size = torch_dtype(cfg.dtype).itemsize
        return size, size, 2 * size
    size = 2 if cfg.mixed_precision != "no" else 4
    return size, size, 12


def activation_bytes(cfg: FinetuneConfig, lm_kwargs: dict[str, Any]) -> int:
    """Rough activation memory of one micro-batch on one process."""
    elt = 2 if cfg.mixed_precision != "no" else torch_dtype(cfg.dtype).itemsize
    tokens = cfg.batch_size * (cfg.max_frames + 1)  # + the initial column
    dep_q = lm_kwargs["dep_q"]

    def stack(n_tokens: int, dim: int, layers: int) -> int:
        per_layer_full = ACT_VALUES_PER_LAYER * elt * n_tokens * dim
        if cfg.activation_checkpointing:  # layer inputs kept, one layer recomputed at a time
            return layers * elt * n_tokens * dim + per_layer_full
        return layers * per_layer_full

    temporal = stack(tokens, lm_kwargs["dim"], lm_kwargs["num_layers"])
    depth = stack(tokens * dep_q, lm_kwargs["depformer_dim"], lm_kwargs["depformer_num_layers"])
    logits = 2 * 4 * tokens * (lm_kwargs["text_card"] + dep_q * lm_kwargs["card"])  # fp32 logits + their grads
    return temporal + depth + logits


def estimate(cfg: FinetuneConfig, lm_kwargs: dict[str, Any], examples_per_pass: int | None = None) -> Budget:
    """The budget of `cfg` for a model built from `lm_kwargs`; `examples_per_pass` (see `count_examples`)
    adds the number of passes over the data."""
    ds = deepspeed_config(cfg)
    stage = int(ds["zero_optimization"]["stage"]) if ds is not None else 0
    total, trainable = count_parameters(cfg, lm_kwargs)
    w, g, o = bytes_per_param(cfg, ds is not None)
    n = cfg.num_processes
    examples_per_step = cfg.batch_size * cfg.grad_accum * n
    return Budget(
        params_total=total,
        params_trainable=trainable,
        processes=n,
        zero_stage=stage,
        weight_bytes=total * w // (n if stage >= 3 else 1),
        grad_bytes=trainable * g // (n if stage >= 2 else 1),
        optimizer_bytes=trainable * o // (n if stage >= 1 else 1),
        activation_bytes=activation_bytes(cfg, lm_kwargs),
        examples_per_step=examples_per_step,
        tokens_per_step=examples_per_step * cfg.max_frames * STREAMS,
        examples_per_pass=examples_per_pass,
        passes=None if not examples_per_pass else cfg.max_steps * examples_per_step / examples_per_pass,
    )


def count_examples(cfg: FinetuneConfig) -> int:
    """Training examples (chunks x main speakers) the trainer makes from cfg.train_data."""
    from backend.finetune.data import DatasetRows, make_examples

    lengths = DatasetRows(cfg.train_data).lengths
    return len(make_examples(lengths, cfg.main_speaker, cfg.max_frames, cfg.min_frames))


def estimate_config(cfg: FinetuneConfig) -> Budget:
    """The budget of a config with absolute paths (`runs.absolute_config`): the kwargs of its model folder
    (moshiko's architecture for a hub repo id, which is not fetched) and its dataset when it exists."""
    kwargs = lm_kwargs_of(cfg.base_model)
    return estimate(cfg, kwargs, count_examples(cfg) if Path(cfg.train_data).exists() else None)
