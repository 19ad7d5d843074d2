"""Proof (run by hand, not in CI; needs ~50 GB of disk and ~20 GiB of RAM): the 7B path of the studio, for real.

    .venv/bin/python bench/prove_7b.py [--workdir DIR] [--keep] [--layers N]

Writes moshiko's architecture (`moshi`'s own LM kwargs, 7.69 B parameters) with random weights in bfloat16, in
the `moshi` package's safetensors format, then runs the studio's own stages on it in order, each as its own
command, the way a user runs them:

    init        moshi-studio init: the user stream (dep_q 8 -> 16), bfloat16
    finetune    moshi-studio runs start --wait: `accelerate launch`, LoRA, bfloat16, activation checkpointing,
                2 steps of a few frames on the demo dataset
    export      moshi-studio export: LoRA merged, clean (dep_q 8), bfloat16
    serve-load  the export loaded as `moshi.server --moshi-weight --config-path` loads it (CheckpointInfo)
    continue    moshi-studio generate: 3 frames of continuation, bfloat16
    chat        the studio's chat engine: 3 frames of a conversation, bfloat16

For each stage: wall time, the peak RSS of its whole process tree (sampled every 0.2 s) and the largest single
process's peak (the kernel's ru_maxrss). Target: every stage at most 22 GiB on this 24 GiB machine. Folders a
later stage no longer needs are deleted as soon as it is done (disk). `--layers N` keeps the real widths with
N temporal layers: a quick rehearsal of the same path.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.core.workspace import DEMO_TOKENIZER

GIB = 1024**3
TARGET_GIB = 22.0
ENV = os.environ | {"NO_TORCH_COMPILE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
STUDIO = [sys.executable, "-m", "backend.cli"]


class TreeMonitor:
    """Peak RSS of a process and all its descendants, summed, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.2):
        self.root, self.every_s, self.peak = psutil.Process(pid), every_s, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            total = 0
            try:
                for proc in [self.root, *self.root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            self._done.wait(self.every_s)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def run_stage(name: str, argv: list[str], log: Path, results: list[dict]) -> str:
    """Run one stage's command; record wall time and peaks; stop the proof if it fails."""
    shown = argv[2:] if argv[:2] == STUDIO[:2] else ["python -c <script>", *argv[3:]] if argv[1] == "-c" else argv
    print(f"-- {name}: {' '.join(shown)}", flush=True)
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        monitor = TreeMonitor(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    tree_peak = monitor.stop()
    row = {
        "stage": name,
        "seconds": time.monotonic() - start,
        "tree_peak_gib": tree_peak / GIB,
        "process_peak_gib": usage.ru_maxrss * 1024 / GIB,
    }  # ru_maxrss: KiB, largest process of the tree
    results.append(row)
    text = log.read_text(errors="replace")
    print(
        f"   {row['seconds']:7.1f} s   tree peak {row['tree_peak_gib']:5.2f} GiB   "
        f"largest process {row['process_peak_gib']:5.2f} GiB",
        flush=True,
    )
    if proc.returncode != 0:
        print(text[-4000:])
        report(results)
        raise SystemExit(f"stage {name} failed (exit {proc.returncode}); log: {log}")
    return text


def write_random_moshiko(folder: Path, layers: int) -> None:
    """moshiko's LM (moshi's own kwargs) with random bfloat16 weights, written one tensor at a time: normal(0,
    0.02) matrices, unit norm scales (RMSNorm's alpha)."""
    import torch

    from backend.core.atomic import write_text_atomic
    from backend.models.source import LM_KWARGS, LM_WEIGHTS, moshi_lm_kwargs
    from backend.models.surgery import meta_lm
    from backend.models.tensor_file import write_tensors

    kwargs = moshi_lm_kwargs()
    if layers:
        kwargs["num_layers"] = layers
    shapes = {k: tuple(v.shape) for k, v in meta_lm(kwargs).state_dict().items()}
    gen = torch.Generator().manual_seed(0)

    def produce(name: str) -> torch.Tensor:
        if name.endswith(".alpha"):
            return torch.ones(shapes[name], dtype=torch.bfloat16)
        return (torch.randn(shapes[name], generator=gen) * 0.02).to(torch.bfloat16)

    folder.mkdir(parents=True, exist_ok=True)
    write_tensors(folder / LM_WEIGHTS, {k: (torch.bfloat16, s) for k, s in shapes.items()}, produce)
    write_text_atomic(folder / LM_KWARGS, json.dumps(kwargs, indent=2) + "\n")
    count = sum(torch.Size(s).numel() for s in shapes.values())
    print(f"wrote {folder}: {count / 1e9:.2f} B parameters, bfloat16")


def prepare_workspace(root: Path) -> None:
    """The demo workspace (random tiny codec: only its frame layout matters here) with its dataset built, and
    a full-size random Mimi (moshi's own config) for the stages that decode."""
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.demo.workspace import create_demo_workspace
    from backend.models.source import moshi_mimi_config, random_mimi, save_mimi

    ws = create_demo_workspace(root, random_codec=True)
    prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    save_mimi(random_mimi(None), moshi_mimi_config(), root / "models" / "mimi-full")


SERVE_LOAD = """
import sys, torch
from moshi.models import loaders
export, mimi, tokenizer = sys.argv[1:4]
info = loaders.CheckpointInfo.from_hf_repo(loaders.DEFAULT_REPO, moshi_weights=f"{export}/model.safetensors",
                                           mimi_weights=mimi, tokenizer=tokenizer, config_path=f"{export}/config.json")
lm = info.get_moshi(device="cpu", dtype=torch.bfloat16)
print(f"moshi.server's loader: {sum(p.numel() for p in lm.parameters()) / 1e9:.2f} B parameters, dep_q {lm.dep_q}, "
      f"{next(lm.parameters()).dtype}")
"""

CHAT = """
import sys, time, numpy as np
from backend.core.spec import FRAME_SIZE
from backend.inference.chat_config import ChatConfig
from backend.inference.chat_engine import ChatEngine
export, mimi, tokenizer = sys.argv[1:4]
engine = ChatEngine(ChatConfig(model=export, mimi=mimi, tokenizer=tokenizer, device="cpu", dtype="bfloat16", threads=2))
speech = np.random.default_rng(0).normal(0, 0.1, 3 * FRAME_SIZE).astype(np.float32)
for i in range(3):
    start = time.monotonic()
    out = engine.step(speech[i * FRAME_SIZE:(i + 1) * FRAME_SIZE])
    print(f"chat frame {i}: {time.monotonic() - start:.1f} s, audio out: {out.pcm is not None}, text {out.text!r}")
"""


def report(results: list[dict]) -> None:
    print(f"\n{'stage':<12}{'seconds':>9}{'tree peak GiB':>15}{'largest process GiB':>21}")
    for r in results:
        print(f"{r['stage']:<12}{r['seconds']:9.1f}{r['tree_peak_gib']:15.2f}{r['process_peak_gib']:21.2f}")
    if results:
        peak = max(max(r["tree_peak_gib"], r["process_peak_gib"]) for r in results)
        print(
            f"peak {peak:.2f} GiB against a target of {TARGET_GIB:g} GiB: {'met' if peak <= TARGET_GIB else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where to work (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--layers", type=int, default=0, help="temporal layers (0: moshiko's 32)")
    parser.add_argument("--internal", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.internal:  # the stages this script itself runs as measured commands
        step, folder = args.internal
        if step == "write":
            write_random_moshiko(Path(folder), args.layers)
        else:
            prepare_workspace(Path(folder))
        return

    work = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / f"prove-7b-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True, exist_ok=False)
    ws, logs = work / "workspace", work / "logs"
    logs.mkdir()
    source, init, export = work / "moshiko-random", ws / "models" / "7b-init", ws / "exports" / "7b"
    mimi, tokenizer = ws / "models" / "mimi-full" / "mimi.safetensors", ws / DEMO_TOKENIZER
    me = [sys.executable, str(Path(__file__).resolve()), "--layers", str(args.layers), "--internal"]
    results: list[dict] = []
    print(f"work folder {work}; {psutil.virtual_memory().total / GIB:.1f} GiB RAM, {os.cpu_count()} cores")
    try:
        run_stage("workspace", [*me, "workspace", str(ws)], logs / "workspace.log", results)
        run_stage("write", [*me, "write", str(source)], logs / "write.log", results)
        run_stage(
            "init",
            [*STUDIO, "init", "--source", str(source), "--output", str(init), "--dtype", "bfloat16"],
            logs / "init.log",
            results,
        )
        shutil.rmtree(source)
        run_stage(
            "finetune",
            [
                *STUDIO,
                "runs",
                "start",
                "--workspace",
                str(ws),
                "--wait",
                "--name",
                "7b-lora",
                "--base-model",
                str(init),
                "--train-data",
                str(ws / "dataset"),
                "--mode",
                "lora",
                "--dtype",
                "bfloat16",
                "--mixed-precision",
                "no",
                "--activation-checkpointing",
                "--max-steps",
                "2",
                "--batch-size",
                "1",
                "--max-frames",
                "6",
                "--min-frames",
                "4",
                "--main-speaker",
                "A",
                "--checkpoint-every",
                "2",
                "--log-every",
                "1",
                "--device",
                "cpu",
                "--num-processes",
                "1",
                "--threads",
                "2",
                "--lr",
                "1e-4",
            ],
            logs / "finetune.log",
            results,
        )
        checkpoint = sorted((ws / "runs").glob("*/checkpoints/step-*"))[-1]
        run_stage(
            "export",
            [
                *STUDIO,
                "export",
                "--checkpoint",
                str(checkpoint),
                "--output",
                str(export),
                "--clean",
                "--merge-lora",
                "--dtype",
                "bfloat16",
            ],
            logs / "export.log",
            results,
        )
        shutil.rmtree(init)
        print(
            run_stage(
                "serve-load",
                [sys.executable, "-c", SERVE_LOAD, str(export), str(mimi), str(tokenizer)],
                logs / "serve.log",
                results,
            )
            .strip()
            .splitlines()[-1]
        )
        run_stage(
            "continue",
            [
                *STUDIO,
                "generate",
                "--model",
                str(export),
                "--dataset",
                str(ws / "dataset"),
                "--limit",
                "1",
                "--batch-size",
                "1",
                "--prompt-frames",
                "2",
                "--gen-frames",
                "3",
                "--dtype",
                "bfloat16",
                "--device",
                "cpu",
                "--mimi",
                str(mimi.parent),
                "--output",
                str(ws / "continuations"),
            ],
            logs / "continue.log",
            results,
        )
        print(
            "\n".join(
                run_stage(
                    "chat",
                    [sys.executable, "-c", CHAT, str(export), str(mimi.parent), str(tokenizer)],
                    logs / "chat.log",
                    results,
                )
                .strip()
                .splitlines()[-3:]
            )
        )
    finally:
        report(results)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
