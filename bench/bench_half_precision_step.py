"""Benchmark (run by hand): one bfloat16 LoRA training step of moshiko's widths on CPU, with and without the
trainer's contiguous inputs to the depformer's per-step linears (`trainer.contiguous_linear_inputs`), in one run.

    .venv/bin/python bench/bench_half_precision_step.py [--layers 1] [--frames 6] [--rounds 2]

moshi's depformer slices its input per step (`x[:, t:t + 1]`); in bfloat16 on CPU torch's matmul then copies
each weight once per batch row. Random weights, the real architecture (moshi's own LM kwargs, dep_q 16) with
`--layers` temporal layers; the best of `--rounds` steps per variant.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from moshi.models import loaders  # noqa: E402

from backend.finetune.config import FinetuneConfig  # noqa: E402
from backend.finetune.optim import apply_mode  # noqa: E402
from backend.finetune.trainer import contiguous_linear_inputs  # noqa: E402
from backend.models.source import moshi_lm_kwargs
from backend.models.surgery import resize_depformer


def step_seconds(layers: int, frames: int, rounds: int, contiguous: bool) -> float:
    kwargs = moshi_lm_kwargs() | {"num_layers": layers}
    _, kwargs = resize_depformer({}, kwargs, 16)  # the user stream, as the init stage makes it
    torch.manual_seed(0)
    model = loaders.get_moshi_lm(None, lm_kwargs=kwargs, device="cpu", dtype=torch.bfloat16)
    apply_mode(model, FinetuneConfig(mode="lora", lora_rank=16))
    if contiguous:
        contiguous_linear_inputs(model)
    model.train()
    codes = torch.randint(0, 2000, (1, 17, frames))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        out = model(codes)
        (out.logits.float().mean() + out.text_logits.float().mean()).backward()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    plain = step_seconds(args.layers, args.frames, args.rounds, contiguous=False)
    fixed = step_seconds(args.layers, args.frames, args.rounds, contiguous=True)
    print(
        f"bfloat16 LoRA step, moshiko widths, {args.layers} temporal layer(s), {args.frames} frames, best of "
        f"{args.rounds}:\n  strided inputs (moshi as is)   {plain:7.2f} s\n  contiguous inputs (studio)     "
        f"{fixed:7.2f} s\n  speed-up {plain / fixed:.1f}x"
    )


if __name__ == "__main__":
    main()
