"""Benchmark (run by hand): time per 80 ms frame of the studio's chat loop (backend.inference.chat_engine.ChatEngine
plus the Opus encoding the server does) against the plain `moshi` loop (moshi.server's: Mimi encode,
`LMGen.step`, Mimi decode, Opus), with the same demo weights and the same speech, in one run.

    .venv/bin/python bench/bench_chat.py [--seconds 20] [--rounds 3] [--mimi assets/demo_mimi]

Targets: p95 at most 80 ms per frame (real time), and the studio's loop no slower than the plain one.
The plain loop runs twice: with torch's default threads (what moshi.server does) and with the
thread count the studio uses, so the effect of that setting is visible apart from the loop itself.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import sphn  # noqa: E402
import torch  # noqa: E402
from moshi.models import LMGen  # noqa: E402

from backend.core.spec import FRAME_SIZE, SAMPLE_RATE  # noqa: E402
from backend.data.audio_io import load_stereo  # noqa: E402
from backend.demo.workspace import create_demo_workspace  # noqa: E402
from backend.inference.chat_engine import ChatConfig, ChatEngine  # noqa: E402
from backend.models.loading import load_model
from backend.models.source import DEMO_MIMI_ASSET
from backend.models.text_tokenizer import load_spm  # noqa: E402
from backend.models.weights import load_mimi

REPO = Path(__file__).resolve().parents[1]


def plain_loop(cfg: ChatConfig, frames: list[np.ndarray], threads: int) -> list[float]:
    """moshi.server's per-frame work, written as it is there (ms per frame)."""
    torch.set_num_threads(threads)
    mimi, lm = load_mimi(cfg.mimi), load_model(cfg.model)
    tokenizer = load_spm(cfg.tokenizer)
    lm_gen = LMGen(
        lm, temp=cfg.audio_temperature, temp_text=cfg.text_temperature, top_k=cfg.audio_top_k, top_k_text=cfg.text_top_k
    )
    mimi.streaming_forever(1)
    lm_gen.streaming_forever(1)
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    times = []
    with torch.no_grad():
        for i, pcm in enumerate(frames):
            start = time.perf_counter()
            codes = mimi.encode(torch.from_numpy(pcm)[None, None])
            if i == 0:
                mimi.reset_streaming()
            tokens = lm_gen.step(codes)
            if tokens is not None:
                out = mimi.decode(tokens[:, 1:]).cpu()
                writer.append_pcm(out[0, 0].numpy())
                token = tokens[0, 0, 0].item()
                if token not in (0, 3) and token < tokenizer.vocab_size():
                    tokenizer.id_to_piece(token).replace("\u2581", " ")
            times.append((time.perf_counter() - start) * 1000)
    return times


def studio_loop(cfg: ChatConfig, frames: list[np.ndarray]) -> list[float]:
    engine = ChatEngine(cfg)
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    times = []
    for pcm in frames:
        start = time.perf_counter()
        out = engine.step(pcm)
        if out.pcm is not None:
            writer.append_pcm(out.pcm)
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    t = np.array(times[10:])  # the first frames pay for lazy initialisation
    return float(np.percentile(t, 50)), float(np.percentile(t, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mimi", default=str(DEMO_MIMI_ASSET) if DEMO_MIMI_ASSET.exists() else "")
    args = parser.parse_args()
    ws = create_demo_workspace(Path(tempfile.mkdtemp()) / "ws")
    cfg = ChatConfig(
        model=str(ws.demo_lm), mimi=args.mimi or str(ws.demo_mimi), tokenizer=str(ws.demo_tokenizer), device="cpu"
    )
    audio, _ = load_stereo(REPO / "assets" / "demo" / "demo_cafe.flac")
    speech = audio[1, : int(args.seconds * SAMPLE_RATE)].astype(np.float32)
    frames = [speech[i : i + FRAME_SIZE] for i in range(0, len(speech) - FRAME_SIZE + 1, FRAME_SIZE)]
    print(f"{len(frames)} frames per round, mimi {cfg.mimi}, studio threads {cfg.threads}")
    results: dict[str, list[tuple[float, float]]] = {
        "plain (torch default threads)": [],
        f"plain ({cfg.threads} thread)": [],
        "studio": [],
    }
    default_threads = torch.get_num_threads()
    for r in range(args.rounds):
        results["plain (torch default threads)"].append(summary(plain_loop(cfg, frames, default_threads)))
        results[f"plain ({cfg.threads} thread)"].append(summary(plain_loop(cfg, frames, cfg.threads)))
        torch.set_num_threads(default_threads)
        results["studio"].append(summary(studio_loop(cfg, frames)))
        print(f"round {r + 1}: " + ", ".join(f"{k} p50 {v[-1][0]:.1f} p95 {v[-1][1]:.1f}" for k, v in results.items()))
    best = {k: (min(p50 for p50, _ in v), min(p95 for _, p95 in v)) for k, v in results.items()}
    print("\nms per 80 ms frame (best round)   p50     p95")
    for k, (p50, p95) in best.items():
        print(f"{k:32s} {p50:6.1f}  {p95:6.1f}")
    for k in list(best)[:2]:
        print(f"studio / {k}: p50 {best['studio'][0] / best[k][0]:.2f}x, p95 {best['studio'][1] / best[k][1]:.2f}x")


if __name__ == "__main__":
    main()
