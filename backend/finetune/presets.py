"""Starting points for the fine-tune form: partial FinetuneConfig values (paths relative to the workspace)."""

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "demo on CPU (tiny model, 1 process)": {
        "base_model": "models/demo-lm-init", "train_data": "dataset", "mode": "full", "dtype": "float32",
        "device": "cpu", "num_processes": 1, "num_machines": 1, "deepspeed": "none", "mixed_precision": "no",
        # Enough for the tiny LM to memorise the three demo dialogues (~70% of the audio tokens of a greedy
        # continuation match; a few minutes on 2 cores), so Continuations and Chat play back demo speech.
        "lr": 4e-3, "weight_decay": 0.0, "depformer_lr": None, "warmup_steps": 0, "max_steps": 1000, "batch_size": 2,
        "grad_accum": 1, "max_frames": 100, "min_frames": 25, "checkpoint_every": 250, "keep_checkpoints": 2,
        "log_every": 5,
        "activation_checkpointing": False,
    },
    "1 GPU, LoRA (7B)": {
        "base_model": "models/moshiko-init", "mode": "lora", "lora_rank": 64, "lora_scaling": 2.0,
        "dtype": "bfloat16", "device": "cuda", "num_processes": 1, "num_machines": 1, "deepspeed": "none",
        "mixed_precision": "bf16", "lr": 2e-4, "max_steps": 2000, "batch_size": 1, "grad_accum": 8,
        "max_frames": 375, "activation_checkpointing": True, "checkpoint_every": 250, "gpu_ids": "0",
    },
    "8 GPUs, ZeRO-3, full (7B)": {
        "base_model": "models/moshiko-init", "mode": "full", "dtype": "float32", "device": "cuda",
        "num_processes": 8, "num_machines": 1, "deepspeed": "zero3", "mixed_precision": "bf16", "lr": 3e-5,
        "max_steps": 10_000, "batch_size": 1, "grad_accum": 4, "max_frames": 375,
        "activation_checkpointing": True, "checkpoint_every": 500, "gpu_ids": "all",
    },
    "2 nodes x 8 GPUs, ZeRO-3, full (7B)": {
        "base_model": "models/moshiko-init", "mode": "full", "dtype": "float32", "device": "cuda",
        "num_processes": 16, "num_machines": 2, "machine_rank": 0, "main_address": "node-0.cluster.local",
        "main_port": 29500, "deepspeed": "zero3", "mixed_precision": "bf16", "lr": 3e-5, "max_steps": 10_000,
        "batch_size": 1, "grad_accum": 2, "max_frames": 375, "activation_checkpointing": True,
        "checkpoint_every": 500, "gpu_ids": "all",
    },
}
