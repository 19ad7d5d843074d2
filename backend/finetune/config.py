"""The fine-tune stage's one config object: read by the training script (`python -m backend.finetune.trainer`),
the launcher (`backend.finetune.runs`), the studio's Fine-tune tab and saved in every run folder."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.core.config import option


@dataclass
class FinetuneConfig:
    # --- model ---
    base_model: str = option("models/demo-lm-init", "model to train: a model folder (model.safetensors + "
                             "moshi_lm_kwargs.json), usually made by the init stage (python -m backend.models.initialise)")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", "parameter dtype of the training model")
    # --- data ---
    train_data: Path = option(Path("dataset"), "Parquet dataset folder (or one .parquet file) to train on")
    eval_data: Path | None = option(None, "Parquet dataset to evaluate on (none: no evaluation)")
    main_speaker: Literal["A", "B", "both"] = option("both", "speaker that plays Moshi; 'both' makes one example "
                                                     "per speaker")
    max_frames: int = option(375, "longest training chunk in 12.5 Hz frames (375 = 30 s)")
    min_frames: int = option(25, "shortest chunk kept in frames; shorter tails are dropped")
    # --- loss (SPEC.md) ---
    loss_variant: Literal["jmoshi", "kyutai"] = option("jmoshi", "jmoshi: separate means for PAD and non-PAD text; "
                                                       "kyutai: one weighted mean")
    text_pad_weight: float = option(0.5, "weight of text PAD (and, kyutai variant, EPAD) targets")
    semantic_weight: float = option(100.0, "weight of codebook 0 (semantic) targets")
    acoustic_weight: float = option(1.0, "weight of codebooks 1..7 (acoustic) targets")
    user_stream: bool = option(True, "also learn the user's audio (the depformer predicts both streams); needs a "
                               "dep_q 16 model, made by the init stage's user-stream extension")
    user_stream_weight: float = option(1.0, "multiplier of the user stream's audio loss (dep_q 16 models)")
    text_weight: float = option(1.0, "weight of the text loss in the total")
    audio_weight: float = option(1.0, "weight of the audio loss in the total")
    # --- what trains ---
    mode: Literal["full", "lora", "subset"] = option("full", "full fine-tune, LoRA adapters, or the named subset")
    lora_rank: int = option(16, "LoRA rank (mode lora)")
    lora_scaling: float = option(2.0, "LoRA scaling (mode lora)")
    trainable: list[str] = option([], "parameter name prefixes to train (mode subset), e.g. depformer text_emb")
    # --- optimiser (J-Moshi defaults) ---
    lr: float = option(3e-5, "learning rate of the temporal transformer and embeddings")
    depformer_lr: float | None = option(None, "learning rate of the depth transformer (none: same as lr)")
    weight_decay: float = option(0.1, "AdamW weight decay")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.95, "AdamW beta2")
    eps: float = option(1e-5, "AdamW epsilon")
    warmup_steps: int = option(0, "linear warm-up steps, then constant")
    max_steps: int = option(100, "optimiser steps to train for")
    batch_size: int = option(1, "examples per device per micro-step")
    grad_accum: int = option(1, "micro-steps per optimiser step")
    grad_clip: float = option(1.0, "gradient norm clipping (0: off)")
    activation_checkpointing: bool = option(False, "recompute activations in the backward pass to save memory")
    seed: int = option(0, "seed of data order, initialisation and dropout")
    # --- bookkeeping ---
    log_every: int = option(1, "optimiser steps between metrics.jsonl lines")
    eval_every: int = option(0, "optimiser steps between evaluations (0: only at the end, if eval_data is set)")
    checkpoint_every: int = option(50, "optimiser steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = option(2, "how many recent checkpoints to keep")
    tracker: Literal["none", "tensorboard", "wandb"] = option("none", "experiment tracker besides metrics.jsonl")
    # --- launch (accelerate) ---
    deepspeed: str = option("none", "DeepSpeed: none, zero2, zero3 (configs under assets/deepspeed) or a JSON path")
    mixed_precision: Literal["no", "bf16", "fp16"] = option("no", "mixed precision (GPUs: bf16)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "cpu runs the processes on CPU with gloo; auto uses "
                                                    "GPUs when there are any")
    threads: int = option(0, "torch CPU threads per process (0: torch's default, one per core); a small model on "
                          "a shared machine steps faster and steadier with 1 (all threads wait for the slowest)")
    num_processes: int = option(1, "processes in total, over all machines (one per GPU)")
    num_machines: int = option(1, "machines (nodes)")
    machine_rank: int = option(0, "rank of this machine (0 = main)")
    main_address: str = option("127.0.0.1", "address of machine 0, reachable from every node")
    main_port: int = option(29500, "port on machine 0 for the rendezvous")
    gpu_ids: str = option("all", "GPUs of this machine the run may use, e.g. 0,1 (used to refuse overlapping runs)")
