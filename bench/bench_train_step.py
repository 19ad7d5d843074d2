"""Benchmark (run by hand): time per optimiser step of the studio's training loop (backend.finetune.trainer's
Trainer: data stream, loss parts, accelerate, metrics, stop checks) against a bare LMModel
forward/backward/AdamW loop on the same tiny model, batches and optimiser, in one run.

    .venv/bin/python bench/bench_train_step.py [--steps 30] [--rounds 3]

Target: studio overhead at most 3 %.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from train_helpers import write_dataset, write_model  # noqa: E402

from backend.core import config  # noqa: E402
from backend.finetune.config import FinetuneConfig  # noqa: E402
from backend.finetune.data import collate, example_rows  # noqa: E402
from backend.finetune.trainer import Trainer  # noqa: E402
from backend.models.weights import load_lm


def bare_loop(model_dir: Path, batches: list[torch.Tensor], cfg: FinetuneConfig) -> float:
    """Seconds per step of forward, plain masked cross-entropy, backward, clip, AdamW."""
    model = load_lm(model_dir)
    model.train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    start = time.perf_counter()
    for codes in batches:
        out = model(codes)
        audio_target = codes[:, 1 : 1 + model.dep_q]
        text_target = codes[:, :1]
        loss = F.cross_entropy(out.logits[out.mask].float(), audio_target[out.mask]) + F.cross_entropy(
            out.text_logits[out.text_mask].float(), text_target[out.text_mask]
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - start) / len(batches)


def studio_loop(run_dir: Path) -> float:
    """Seconds per step measured by the trainer's own metrics (first step excluded: warm-up)."""
    Trainer(run_dir, config.load(FinetuneConfig, run_dir / "config.json")).run()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "event" not in r]
    first, last = steps[0], steps[-1]
    return (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = write_dataset(root / "data", [args.frames] * 8)
    model_dir = write_model(root / "model", dep_q=16)
    base = {
        "device": "cpu",
        "base_model": str(model_dir),
        "train_data": str(data),
        "max_frames": args.frames,
        "min_frames": args.frames,
        "batch_size": args.batch_size,
        "max_steps": args.steps + 1,
        "checkpoint_every": 0,
        "log_every": 1,
        "lr": 1e-4,
    }
    studio, bare = [], []
    for r in range(args.rounds):
        run_dir = root / f"run{r}"
        run_dir.mkdir()
        cfg = config.from_dict(FinetuneConfig, base)
        config.save(cfg, run_dir / "config.json")
        studio.append(studio_loop(run_dir))
        # The same batches as the trainer's stream draws, built once up front (the bare loop does no data work).
        trainer = Trainer(root / f"run{r}", cfg)
        batches = [
            collate([example_rows(trainer.train_set, ex) for ex in trainer.stream.next_batch()])
            for _ in range(args.steps + 1)
        ]
        bare.append(bare_loop(model_dir, batches[1:], cfg))
        print(f"round {r + 1}: studio {1000 * studio[-1]:.1f} ms/step, bare {1000 * bare[-1]:.1f} ms/step", flush=True)
    s, b = statistics.median(studio), statistics.median(bare)
    print(
        f"tiny LM (dep_q 16), batch {args.batch_size} x {args.frames} frames, "
        f"{args.steps} steps x {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"studio loop: {1000 * s:.1f} ms/step | bare loop: {1000 * b:.1f} ms/step | "
        f"overhead {100 * (s / b - 1):+.1f}% (target <= +3%)"
    )


if __name__ == "__main__":
    main()
