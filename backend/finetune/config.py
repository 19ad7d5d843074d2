"""The fine-tune stage's one config object and every check of it: read by the training script
(`python -m backend.finetune.trainer`), the launcher (`backend.finetune.runs`), the budget and the studio's
Fine-tune tab (which validates on every change), and saved in every run folder.

Importing this module, or calling `check_config`, loads neither torch nor moshi (a device of 'auto' or
'cuda' asks torch whether this machine has a GPU)."""

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backend.core.config import option
from backend.core.errors import ConfigError, InputError
from backend.core.paths import ASSETS
from backend.dataset.read import check_schema
from backend.jobs.launch_config import MAX_COUNT, LaunchConfig, check_launch, on_cpu
from backend.models.source import Dtype, check_layout, is_hub_id
from backend.models.text_tokenizer import check_model
from backend.models.weights import lm_kwargs_of

DEEPSPEED_PRESETS = {name: ASSETS / "deepspeed" / f"{name}.json" for name in ("zero2", "zero3")}
STREAMS_WITH_USER = 16  # dep_q of a model that also predicts the user's 8 codebooks
MAX_STEPS = 10**9  # beyond any real run; larger numbers are typing mistakes or hostile input


@dataclass
class FinetuneConfig(LaunchConfig):  # the launch settings (device, processes, machines) come first
    # --- model ---
    base_model: str = option(
        "models/demo-lm-init",
        "model to train: a model folder (model.safetensors + "
        "moshi_lm_kwargs.json), usually made by the init stage (moshi-studio init)",
    )
    dtype: Dtype = option("float32", "parameter dtype of the training model")
    # --- data ---
    train_data: Path = option(Path("dataset"), "Parquet dataset folder (or one .parquet file) to train on")
    eval_data: Path | None = option(None, "Parquet dataset to evaluate on (none: no evaluation)")
    main_speaker: Literal["A", "B", "both"] = option(
        "both", "speaker that plays Moshi; 'both' makes one example per speaker"
    )
    max_frames: int = option(375, "longest training chunk in 12.5 Hz frames (375 = 30 s)", ge=2, le=10**6)
    min_frames: int = option(25, "shortest chunk kept in frames; shorter tails are dropped", ge=2, le=10**6)
    # --- loss (SPEC.md) ---
    loss_variant: Literal["jmoshi", "kyutai"] = option(
        "jmoshi", "jmoshi: separate means for PAD and non-PAD text; kyutai: one weighted mean"
    )
    text_pad_weight: float = option(0.5, "weight of text PAD (and, kyutai variant, EPAD) targets", ge=0)
    semantic_weight: float = option(100.0, "weight of codebook 0 (semantic) targets", ge=0)
    acoustic_weight: float = option(1.0, "weight of codebooks 1..7 (acoustic) targets", ge=0)
    user_stream: bool = option(
        True,
        "also learn the user's audio (the depformer predicts both streams); needs a "
        "dep_q 16 model, made by the init stage's user-stream extension",
    )
    user_stream_weight: float = option(1.0, "multiplier of the user stream's audio loss (dep_q 16 models)", ge=0)
    text_weight: float = option(1.0, "weight of the text loss in the total", ge=0)
    audio_weight: float = option(1.0, "weight of the audio loss in the total", ge=0)
    persona_text_loss: bool = option(
        False, "persona prefixes (dataset personas.json): also learn their role text; their audio is never learnt"
    )
    # --- what trains ---
    mode: Literal["full", "lora", "subset"] = option("full", "full fine-tune, LoRA adapters, or the named subset")
    lora_rank: int = option(16, "LoRA rank (mode lora)", ge=1, le=MAX_COUNT)
    lora_scaling: float = option(2.0, "LoRA scaling (mode lora)")
    trainable: list[str] = option([], "parameter name prefixes to train (mode subset), e.g. depformer text_emb")
    # --- optimiser (J-Moshi defaults) ---
    lr: float = option(3e-5, "learning rate of the temporal transformer and embeddings", gt=0, le=1)
    depformer_lr: float | None = option(None, "learning rate of the depth transformer (none: same as lr)", gt=0, le=1)
    weight_decay: float = option(0.1, "AdamW weight decay", ge=0)
    beta1: float = option(0.9, "AdamW beta1", ge=0, lt=1)
    beta2: float = option(0.95, "AdamW beta2", ge=0, lt=1)
    eps: float = option(1e-5, "AdamW epsilon", gt=0, le=1)
    warmup_steps: int = option(0, "linear warm-up steps, then constant", ge=0, le=MAX_STEPS)
    max_steps: int = option(100, "optimiser steps to train for", ge=1, le=MAX_STEPS)
    batch_size: int = option(1, "examples per device per micro-step", ge=1, le=MAX_COUNT)
    grad_accum: int = option(1, "micro-steps per optimiser step", ge=1, le=MAX_COUNT)
    grad_clip: float = option(1.0, "gradient norm clipping (0: off)", ge=0)
    activation_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    seed: int = option(0, "seed of data order, initialisation and dropout", ge=0)
    # --- bookkeeping ---
    log_every: int = option(1, "optimiser steps between metrics.jsonl lines", ge=1, le=MAX_STEPS)
    eval_every: int = option(
        0, "optimiser steps between evaluations (0: only at the end, if eval_data is set)", ge=0, le=MAX_STEPS
    )
    eval_probes_every: int = option(
        0,
        "optimiser steps between behaviour probes of the checkpoint written then, "
        "and of the last one (TOR and latency per step beside the losses; a background "
        "process on the CPU, one probe per task; 0: off)",
        ge=0,
        le=MAX_STEPS,
    )
    eval_probes: str = option(
        "studio-en",
        "probe set of eval_probes_every: a shipped set's name (studio-en, "
        "demo-turns) or a folder of Full-Duplex-Bench samples",
    )
    checkpoint_every: int = option(50, "optimiser steps between checkpoints (0: only at the end)", ge=0, le=MAX_STEPS)
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep", ge=1, le=MAX_COUNT)
    tracker: Literal["none", "tensorboard", "wandb"] = option("none", "experiment tracker besides metrics.jsonl")
    # --- launch (accelerate) ---
    deepspeed: str = option("none", "DeepSpeed: none, zero2, zero3 (configs under assets/deepspeed) or a JSON path")
    mixed_precision: Literal["no", "bf16", "fp16"] = option("no", "mixed precision (GPUs: bf16)")

    def deepspeed_file(self) -> Path | None:
        return deepspeed_config_path(self)

    def precision(self) -> str:
        return self.mixed_precision


# ---------------------------------------------------------------- checks (all of them: the launcher, the
# trainer and the studio's form call check_config)


def deepspeed_config_path(cfg: FinetuneConfig) -> Path | None:
    """The DeepSpeed JSON of a config: none, a preset under assets/deepspeed, or a file path."""
    if cfg.deepspeed in ("", "none"):
        return None
    path = DEEPSPEED_PRESETS.get(cfg.deepspeed, Path(cfg.deepspeed))
    if not path.is_file():
        raise ConfigError(f"deepspeed: {cfg.deepspeed!r} is neither none, zero2, zero3 nor an existing JSON file")
    return path


def deepspeed_config(cfg: FinetuneConfig) -> dict[str, Any] | None:
    """The DeepSpeed config with the values this stage owns filled in (accelerate fills the precision)."""
    path = deepspeed_config_path(cfg)
    if path is None:
        return None
    try:
        ds = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"{path}: not a readable DeepSpeed JSON file ({type(e).__name__}: {str(e)[:200]})") from None
    zero = ds.get("zero_optimization") if isinstance(ds, dict) else None
    if not isinstance(zero, dict) or zero.get("stage") not in (0, 1, 2, 3):
        raise ConfigError(f"{path}: a DeepSpeed config needs zero_optimization.stage (0..3)")
    for owned in ("optimizer", "scheduler"):
        if owned in ds:
            raise ConfigError(
                f"{path}: remove the '{owned}' section; the optimiser and schedule come from the "
                f"run's configuration (lr, depformer_lr, warmup_steps...)"
            )
    ds.update(
        train_micro_batch_size_per_gpu=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        gradient_clipping=cfg.grad_clip,
    )
    ds.pop("train_batch_size", None)  # derived by accelerate from the above and the process count
    return ds


def check_model_kwargs(kwargs: dict[str, Any], cfg: FinetuneConfig) -> None:
    """The model must read the 17-row view; the user stream needs dep_q 16 (J-Moshi found out as a shape
    error hours later)."""
    try:
        check_layout(kwargs, cfg.base_model)
    except InputError as e:
        raise ConfigError(str(e)) from None
    dep_q = kwargs["dep_q"]
    if cfg.user_stream and dep_q != STREAMS_WITH_USER:
        raise ConfigError(
            f"{cfg.base_model}: dep_q is {dep_q}, but user_stream needs a dep_q 16 model (run the "
            f"init stage with the user-stream extension, or set user_stream to false)"
        )
    if kwargs.get("lora"):
        raise ConfigError(f"{cfg.base_model}: this is a LoRA checkpoint; train from a merged export instead")


def check_relations(cfg: FinetuneConfig) -> None:
    """Rules between fields (each field's own bounds are declared on it: `config.check_numbers`)."""
    rules = [
        (cfg.max_frames >= cfg.min_frames, f"max_frames ({cfg.max_frames}) must be >= min_frames ({cfg.min_frames})"),
        (cfg.text_weight + cfg.audio_weight > 0, "text_weight and audio_weight are both 0: nothing to learn"),
        (cfg.mode != "subset" or bool(cfg.trainable), "mode subset needs parameter name prefixes in trainable"),
        (
            not (cfg.eval_probes_every and cfg.checkpoint_every) or cfg.eval_probes_every % cfg.checkpoint_every == 0,
            f"eval_probes_every ({cfg.eval_probes_every}) must be a multiple of checkpoint_every "
            f"({cfg.checkpoint_every}): the probes run on checkpoints",
        ),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def check_config(cfg: FinetuneConfig) -> None:
    """Refuse a configuration before any work, with a ConfigError naming the field or file: numbers, GPUs,
    the datasets, the device and precision, DeepSpeed, the base model's layout and the tracker. Paths are taken
    as they are (the launcher first makes a workspace's relative paths absolute: runs.absolute_config)."""
    check_launch(cfg)  # also every field's own bounds (config.check_numbers)
    check_relations(cfg)
    for name in ("train_data", "eval_data"):
        path = getattr(cfg, name)
        if path is not None and not Path(path).exists():
            raise ConfigError(f"{name}: {path} not found (build the dataset first)")
    if on_cpu(cfg, must_exist=not cfg.slurm) and (cfg.mixed_precision == "fp16" or cfg.dtype == "float16"):
        raise ConfigError("float16 training needs a GPU; on CPU use float32 or bfloat16")
    deepspeed_config(cfg)
    try:
        if not is_hub_id(cfg.base_model):  # a hub model's kwargs are known once the trainer downloads it
            check_model_kwargs(lm_kwargs_of(cfg.base_model), cfg)
            check_model(cfg.base_model, {"train_data": cfg.train_data, "eval_data": cfg.eval_data})
        check_schema(cfg.train_data)
        if cfg.eval_data is not None:
            check_schema(cfg.eval_data)
    except InputError as e:
        raise ConfigError(str(e)) from None
    if cfg.tracker != "none" and importlib.util.find_spec(cfg.tracker) is None:
        raise ConfigError(
            f"tracker {cfg.tracker}: the {cfg.tracker} package is not installed "
            f"(install it or use tracker none; metrics.jsonl is always written)"
        )
