"""Starting points for the fine-tune form: partial FinetuneConfig values (paths relative to the workspace)."""

from typing import Any

from backend.models.init_config import DEMO_INIT, MOSHIKO_INIT

PRESETS: dict[str, dict[str, Any]] = {
    "demo on CPU (tiny model, 1 process)": {
        "base_model": DEMO_INIT,
        "train_data": "dataset",
        "mode": "full",
        "dtype": "float32",
        "device": "cpu",
        "num_processes": 1,
        "num_machines": 1,
        "deepspeed": "none",
        "mixed_precision": "no",
        # The tiny LM memorises the three demo dialogues in 125 steps: a greedy continuation with the
        # Continuations defaults replays their audio tokens (bench/bench_demo_payoff.py), so Continuations and
        # Chat play back demo speech within a few minutes. Measured on the demo (greedy, 4 s prompt):
        # - whole dialogues (max_frames > the longest, 23 s): with 8 s chunks a continuation crossing a chunk
        #   start, which the model has only seen without its past, matched 29% where one inside matched 67%;
        # - speaker A plays Moshi (as Continuations and Chat default to): half the frames per step;
        # - every codebook weighs the same (the weighted audio mean is unchanged by the scale): with the
        #   semantic codebooks at 100, the acoustic ones (7 of 8) still had a loss of 0.4 after 400 steps;
        # - one thread: the small kernels gain little from two, and two threads wait for each other when
        #   another process holds a core (the run then slowed about ten times).
        "lr": 4e-3,
        "weight_decay": 0.0,
        "depformer_lr": None,
        "warmup_steps": 0,
        "max_steps": 125,
        "batch_size": 1,
        "grad_accum": 1,
        "main_speaker": "A",
        "max_frames": 300,
        "min_frames": 25,
        "semantic_weight": 1.0,
        "acoustic_weight": 1.0,
        "threads": 1,
        "checkpoint_every": 50,
        "keep_checkpoints": 2,
        "log_every": 5,
        "activation_checkpointing": False,
    },
    "1 GPU, LoRA (7B)": {
        "base_model": MOSHIKO_INIT,
        "mode": "lora",
        "lora_rank": 64,
        "lora_scaling": 2.0,
        "dtype": "bfloat16",
        "device": "cuda",
        "num_processes": 1,
        "num_machines": 1,
        "deepspeed": "none",
        "mixed_precision": "bf16",
        "lr": 2e-4,
        "max_steps": 2000,
        "batch_size": 1,
        "grad_accum": 8,
        "max_frames": 375,
        "activation_checkpointing": True,
        "checkpoint_every": 250,
        "gpu_ids": "0",
    },
    "8 GPUs, ZeRO-3, full (7B)": {
        "base_model": MOSHIKO_INIT,
        "mode": "full",
        "dtype": "float32",
        "device": "cuda",
        "num_processes": 8,
        "num_machines": 1,
        "deepspeed": "zero3",
        "mixed_precision": "bf16",
        "lr": 3e-5,
        "max_steps": 10_000,
        "batch_size": 1,
        "grad_accum": 4,
        "max_frames": 375,
        "activation_checkpointing": True,
        "checkpoint_every": 500,
        "gpu_ids": "all",
    },
    "2 nodes x 8 GPUs, ZeRO-3, full (7B)": {
        "base_model": MOSHIKO_INIT,
        "mode": "full",
        "dtype": "float32",
        "device": "cuda",
        "num_processes": 16,
        "num_machines": 2,
        "machine_rank": 0,
        "main_address": "node-0.cluster.local",
        "main_port": 29500,
        "deepspeed": "zero3",
        "mixed_precision": "bf16",
        "lr": 3e-5,
        "max_steps": 10_000,
        "batch_size": 1,
        "grad_accum": 2,
        "max_frames": 375,
        "activation_checkpointing": True,
        "checkpoint_every": 500,
        "gpu_ids": "all",
    },
}
