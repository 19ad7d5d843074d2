"""Benchmark (run by hand, not a test): Mimi tokenization speed, the studio's tokenizer against the
plain procedure, with the FULL-SIZE Mimi (random weights, no download).

    .venv/bin/python bench/bench_tokenize.py                 # studio vs plain, best of 2 rounds
    .venv/bin/python bench/bench_tokenize.py --attribution   # also: which change buys what
    .venv/bin/python bench/bench_tokenize.py --sweep         # also: studio speed per chunk size

plain  = each channel alone (batch 1), non-streaming `mimi.encode` on the whole channel, torch.no_grad.
studio = backend.dataset.codec.encode_stereo as the tokenize stage runs it on a CPU: streaming chunks,
         inference_mode, the two channels on two model copies, one thread each.
Audio: the first SpokenWOZ sample dialogue when present (about 100 s), else synthesized stereo.
Rounds alternate the procedures so that load from other processes hits both alike; the best
round counts. The tokens of both procedures are compared too (they must be equal).
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.core.spec import SAMPLE_RATE  # noqa: E402
from backend.data.audio_io import load_stereo  # noqa: E402
from backend.dataset.codec import DEFAULT_CHUNK_FRAMES, encode_stereo, replicas  # noqa: E402
from backend.models.source import random_mimi

SPOKENWOZ = Path(__file__).resolve().parents[2] / "shared/data/spokenwoz_sample/audio"


def bench_audio(seconds: float) -> tuple[np.ndarray, str]:
    files = sorted(SPOKENWOZ.glob("*.wav")) if SPOKENWOZ.is_dir() else []
    if files:
        audio, sr = load_stereo(files[0])
        if audio.shape[1] >= 60 * SAMPLE_RATE:
            return audio, f"{files[0].name} ({sr} Hz stereo, resampled)"
    rng = np.random.default_rng(0)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * 3 * t), 0.5 - 0.5 * np.sin(2 * np.pi * 2.3 * t)])
    return (0.1 * rng.standard_normal((2, n)) * envelope).astype(np.float32), "synthesized speech-like noise"


def plain(mimi, audio: np.ndarray, grad_mode=torch.no_grad, batch: bool = False) -> np.ndarray:
    with grad_mode():
        x = torch.from_numpy(audio)[:, None]
        if batch:
            return mimi.encode(x).numpy()
        return torch.cat([mimi.encode(x[i : i + 1]) for i in range(2)]).numpy()


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def load() -> str:
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90.0, help="synthesized length when SpokenWOZ is absent")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--attribution", action="store_true", help="time the steps between plain and studio")
    parser.add_argument("--sweep", action="store_true", help="time the studio tokenizer per chunk size")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    audio, origin = bench_audio(args.seconds)
    seconds = audio.shape[1] / SAMPLE_RATE
    mimi = random_mimi(None).eval()
    pair = replicas(mimi, 2)
    print(
        f"audio: {seconds:.1f} s stereo, {origin}; full-size Mimi "
        f"({sum(p.numel() for p in mimi.parameters()) / 1e6:.0f} M parameters, random weights); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    )
    warm = audio[:, :SAMPLE_RATE]
    plain(mimi, warm), encode_stereo(pair, warm, chunk_frames=args.chunk_frames)

    variants: dict[str, Callable[[], np.ndarray]] = {
        "plain": lambda: plain(mimi, audio),
        "studio": lambda: encode_stereo(pair, audio, chunk_frames=args.chunk_frames),
    }
    if args.attribution:
        variants.update(
            {
                "plain + inference_mode": lambda: plain(mimi, audio, torch.inference_mode),
                "plain + inference_mode + batch of 2": lambda: plain(mimi, audio, torch.inference_mode, batch=True),
                "chunks, one model, batch of 2": lambda: encode_stereo(mimi, audio, chunk_frames=args.chunk_frames),
            }
        )
    if args.sweep:
        for frames in (8, 16, 32, 64, 125, 250):
            variants[f"studio, chunk {frames} frames"] = lambda f=frames: encode_stereo(pair, audio, chunk_frames=f)

    best: dict[str, tuple[float, float]] = {}
    reference = None
    for r in range(args.rounds):
        for name, fn in variants.items():
            wall, cpu, codes = timed(fn)
            if reference is None:
                reference = codes
            same = float(np.mean(codes == reference))
            print(
                f"round {r + 1}  {name:38s} wall {wall:7.2f} s  cpu {cpu:7.2f} s  "
                f"{seconds / wall:6.2f} audio-s/s  tokens equal to plain: {100 * same:.1f}%  load {load()}",
                flush=True,
            )
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    print("\nbest of rounds (audio-seconds of stereo dialogue tokenized per wall-second):")
    for name, (wall, cpu) in best.items():
        print(f"  {name:38s} {seconds / wall:6.2f} audio-s/s   ({wall:.2f} s wall, {cpu:.2f} s cpu)")
    ratio = best["plain"][0] / best["studio"][0]
    print(f"\nstudio / plain = {ratio:.2f}x  (target >= 2x)")


if __name__ == "__main__":
    main()
