"""Benchmark (run by hand, not a test): training data larger than memory, the studio's loader against
J-Moshi's loading path, side by side on synthetic datasets of 100 and 1 000 hours.

    .venv/bin/python bench/bench_dataset.py --out /tmp/bench_dataset           # generates, measures, deletes
    .venv/bin/python bench/bench_dataset.py --out /tmp/bench_dataset --keep    # keeps the files for a rerun

studio  = backend.finetune.data: DatasetRows (a memory-mapped Arrow copy beside the shards, int16 tokens)
          -> make_examples -> ExampleStream.next_batch -> collate, with the fine-tune defaults.
jmoshi  = datasets.load_dataset("parquet", data_files=..., split="train") (its memory-mapped Arrow cache,
          int64, under --out/hf_cache), rows fetched with ds[i] (Python lists) for a batch of the same
          size, cut to max_frames and collated alike.
Datasets: the project's Parquet schema (SPEC.md) written in shards named as backend.dataset.build
names them, 5-minute dialogues of random tokens. Every measurement runs in a fresh process (one
process = one rank); "first batch" is timed from before the loader's imports (shown apart) to a collated
batch, with the cache already built and the page cache warm from the build (no root to drop it on a shared
machine).
RSS comes from /proc/self/status after the first batch (anon = the process's own memory; file = mapped
pages it touched, shared by all ranks through the page cache).
run     = a real 1-step `runs start --wait` (accelerate launch, the trainer, fine-tune defaults, device cpu) of a
          tiny model on each dataset, the row cache already built: the peak RSS of its whole process tree
          (CLI, supervisor, accelerate, trainer), sampled every 0.2 s.
    .venv/bin/python bench/bench_dataset.py --only run                           # just that measurement
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.core.spec import CARD, FRAME_RATE, SPEAKERS, TEXT_CARD  # noqa: E402
from backend.dataset.build import SCHEMA, shard_name  # noqa: E402

DIALOGUE_FRAMES = int(5 * 60 * FRAME_RATE)
GROUP_ROWS = 256  # dialogues per Parquet row group while generating
BATCH = 4
# Bytes per token on disk, measured on these random tokens (Parquet: dictionary + bit packing + snappy).
PARQUET_BYTES, STUDIO_BYTES, DATASETS_BYTES = 2.5, 2, 8
TARGETS = {"rss_growth_mb": 150, "first_batch_s": 10, "run_peak_growth_mb": 50}
SAMPLE_S = 0.2  # the run's process tree is sampled this often


def tokens_for(hours: float) -> int:
    return int(hours * 3600 * FRAME_RATE) * 2 * 9


def generate(folder: Path, hours: float, seed: int) -> float:
    """Write `hours` of 5-minute dialogues; returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    count = int(hours * 3600 * FRAME_RATE) // DIALOGUE_FRAMES
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / shard_name("train", 1, 1)  # < 100 000 rows: one shard, as build_dataset writes it
    with pq.ParquetWriter(target, SCHEMA) as writer:
        for first in range(0, count, GROUP_ROWS):
            n = min(GROUP_ROWS, count - first)
            columns = {}
            for s in SPEAKERS:
                tokens = rng.integers(0, CARD, size=(n, 9, DIALOGUE_FRAMES), dtype=np.int64)
                tokens[:, 0] = rng.integers(0, TEXT_CARD, size=(n, DIALOGUE_FRAMES))
                rows = pa.ListArray.from_arrays(
                    np.arange(0, n * 9 + 1, 9, dtype=np.int32),
                    pa.ListArray.from_arrays(
                        np.arange(0, n * 9 * DIALOGUE_FRAMES + 1, DIALOGUE_FRAMES, dtype=np.int64).astype(np.int32),
                        pa.array(tokens.ravel()),
                    ),
                )
                columns[s] = rows
            ids = pa.array([f"train/d{first + i:06d}" for i in range(n)])
            writer.write_table(pa.table({"dialogue_id": ids, **columns}, schema=SCHEMA))
    return time.perf_counter() - started


# ---------------------------------------------------------------- measured in a child process


def rss_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields["VmRSS"], "anon": fields["RssAnon"], "file": fields["RssFile"], "peak": fields["VmHWM"]}


def studio_imports() -> None:
    import backend.finetune.config  # noqa: F401
    import backend.finetune.data  # noqa: F401


def jmoshi_imports() -> None:
    import datasets  # noqa: F401

    studio_imports()  # its batch is collated with the studio's helpers


def studio_first_batch(folder: Path, cache: Path) -> tuple:
    from backend.finetune.config import FinetuneConfig
    from backend.finetune.data import DatasetRows, ExampleStream, collate, example_rows, make_examples

    cfg = FinetuneConfig()
    rows = DatasetRows(folder)
    examples = make_examples(rows.lengths, cfg.main_speaker, cfg.max_frames, cfg.min_frames)
    stream = ExampleStream(examples, cfg.seed, BATCH)
    return collate([example_rows(rows, ex) for ex in stream.next_batch()]).shape


def jmoshi_first_batch(folder: Path, cache: Path) -> tuple:
    from datasets import load_dataset

    from backend.dataset.training_view import training_rows
    from backend.finetune.config import FinetuneConfig
    from backend.finetune.data import collate

    cfg = FinetuneConfig()
    ds = load_dataset(
        "parquet", data_files=[str(f) for f in sorted(folder.glob("*.parquet"))], split="train", cache_dir=str(cache)
    )
    picked = np.random.default_rng(cfg.seed).permutation(len(ds))[:BATCH]
    rows = []
    for i in picked:
        row = ds[int(i)]
        a, b = (np.asarray(row[s], dtype=np.int64)[:, : cfg.max_frames] for s in SPEAKERS)
        rows.append(training_rows(a, b))
    return collate(rows).shape


def child(loader: str, folder: Path, cache: Path) -> None:
    import torch  # noqa: F401  (both paths train with torch: its import is not the loader's cost)

    before = rss_mb()
    started = time.perf_counter()
    {"studio": studio_imports, "jmoshi": jmoshi_imports}[loader]()
    imported = time.perf_counter()
    shape = {"studio": studio_first_batch, "jmoshi": jmoshi_first_batch}[loader](folder, cache)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "seconds": done - started,
                "imports": imported - started,
                "load": done - imported,
                "shape": list(shape),
                "before": before,
                "after": rss_mb(),
            }
        )
    )


def run_child(loader: str, folder: Path, cache: Path) -> dict:
    env = os.environ | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", loader, str(folder), str(cache)], env=env, capture_output=True, text=True
    )
    if out.returncode:
        sys.exit(f"{loader} on {folder} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- a real 1-step run


def tree_rss_mb(root: psutil.Process) -> float:
    """RSS of a process and all its descendants (processes that end between the calls count as 0)."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def run_peak(workspace: Path, model: Path, folder: Path, name: str) -> tuple[float, float]:
    """(peak RSS of the process tree in MB, seconds) of `runs start --wait` training 1 step on `folder`."""
    command = [
        sys.executable,
        "-m",
        "backend.finetune.runs",
        "start",
        "--workspace",
        str(workspace),
        "--wait",
        "--name",
        name,
        "--base-model",
        str(model),
        "--train-data",
        str(folder),
        "--device",
        "cpu",
        "--max-steps",
        "1",
        "--checkpoint-every",
        "0",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(root))
        time.sleep(SAMPLE_S)
    log = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        sys.exit(f"runs start on {folder} failed ({proc.returncode}):\n{log[-3000:]}")
    return peak, time.perf_counter() - started


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from train_helpers import write_model

    return write_model(folder)


def measure_runs(out: Path, hours: list[float]) -> dict[float, tuple[float, float]]:
    """Build each dataset's row cache first (the build is measured by the loader benchmark), then train."""
    from backend.finetune.data import mapped_table

    model = tiny_model(out / "workspace" / "models" / "tiny")
    results = {}
    for h in hours:
        mapped_table(out / f"{h:g}h")
        results[h] = run_peak(out / "workspace", model, out / f"{h:g}h", f"{h:g}h")
        print(f"{h:g} h run: peak RSS of the process tree {results[h][0]:.0f} MB, {results[h][1]:.0f} s", flush=True)
    return results


def report_runs(results: dict[float, tuple[float, float]], hours: list[float]) -> None:
    small, large = hours
    growth = results[large][0] - results[small][0]
    print(f"\n{'1-step runs start, process tree':34}{f'{small:g} h':>12}{f'{large:g} h':>12}{'diff':>9}")
    print(f"{'  peak RSS (MB)':34}{results[small][0]:>12.0f}{results[large][0]:>12.0f}{growth:>+9.0f}")
    print(
        f"{'  seconds':34}{results[small][1]:>12.0f}{results[large][1]:>12.0f}"
        f"{results[large][1] - results[small][1]:>+9.0f}"
    )
    print(
        f"target: run peak growth {growth:.0f} MB <= {TARGETS['run_peak_growth_mb']} MB: "
        f"{'met' if growth <= TARGETS['run_peak_growth_mb'] else 'MISSED'}"
    )


# ---------------------------------------------------------------- the side-by-side run


def cache_size(loader: str, folder: Path, cache: Path) -> float:
    files = list(folder.glob(".rows.arrow")) if loader == "studio" else list(cache.rglob("*.arrow"))
    return sum(f.stat().st_size for f in files) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_dataset"))
    parser.add_argument("--hours", type=float, nargs=2, default=[100.0, 1000.0])
    parser.add_argument("--keep", action="store_true", help="keep the generated data and caches")
    parser.add_argument("--only", choices=("loaders", "run"), default=None, help="one of the two measurements")
    args = parser.parse_args()
    loaders = () if args.only == "run" else ("studio", "jmoshi")

    per_token = PARQUET_BYTES + STUDIO_BYTES + (DATASETS_BYTES if loaders else 0)
    need = sum(tokens_for(h) for h in args.hours) * per_token / 1e9
    free = shutil.disk_usage(args.out.parent).free / 1e9
    print(f"disk: about {need:.1f} GB needed under {args.out}, {free:.1f} GB free")
    if need > free * 0.8:
        sys.exit("not enough free disk: lower --hours")
    try:
        results: dict[tuple[str, float], dict] = {}
        for hours in args.hours:
            folder = args.out / f"{hours:g}h"
            if not any(folder.glob("*.parquet")):
                print(
                    f"{hours:g} h: generating ... {generate(folder, hours, seed=int(hours)):.0f} s, "
                    f"{sum(f.stat().st_size for f in folder.glob('*.parquet')) / 1e9:.2f} GB of Parquet"
                )
            for loader in loaders:
                cache = args.out / "hf_cache" / f"{hours:g}h"
                build = run_child(loader, folder, cache)  # the first process builds the cache
                again = run_child(loader, folder, cache)  # the cache exists: what every later rank/run pays
                results[(loader, hours)] = {"build": build, "first": again, "gb": cache_size(loader, folder, cache)}
                print(
                    f"{hours:g} h {loader}: build {build['seconds']:.1f} s (peak RSS {build['after']['peak']:.0f}"
                    f" MB), first batch {again['seconds']:.2f} s, RSS {again['after']['rss']:.0f} MB",
                    flush=True,
                )
        if loaders:
            report(results, args.hours)
        if args.only != "loaders":
            report_runs(measure_runs(args.out, args.hours), args.hours)
    finally:
        if not args.keep:
            shutil.rmtree(args.out, ignore_errors=True)


def report(results: dict, hours: list[float]) -> None:
    small, large = hours
    print(f"\n{'':34}{'studio':>12}{'J-Moshi':>12}{'ratio':>9}")

    def line(label: str, value, fmt: str = "{:.2f}") -> None:  # type: ignore[no-untyped-def]
        s, j = value("studio"), value("jmoshi")
        print(f"{label:34}{fmt.format(s):>12}{fmt.format(j):>12}{j / s if s else float('nan'):>8.1f}x")

    for h in hours:
        line(f"cache build at {h:g} h (s)", lambda loader: results[(loader, h)]["build"]["seconds"], "{:.1f}")
        line(
            f"cache build peak RSS at {h:g} h (MB)",
            lambda loader: results[(loader, h)]["build"]["after"]["peak"],
            "{:.0f}",
        )
        line(f"cache on disk at {h:g} h (GB)", lambda loader: results[(loader, h)]["gb"])
        line(f"first batch at {h:g} h, cached (s)", lambda loader: results[(loader, h)]["first"]["seconds"])
        line("  of which imports (s)", lambda loader: results[(loader, h)]["first"]["imports"])
        line("  of which loading + batch (s)", lambda loader: results[(loader, h)]["first"]["load"])
        line(f"RSS after it at {h:g} h (MB)", lambda loader: results[(loader, h)]["first"]["after"]["rss"], "{:.0f}")
        line(
            f"  of which anon at {h:g} h (MB)", lambda loader: results[(loader, h)]["first"]["after"]["anon"], "{:.0f}"
        )
    line(
        f"RSS growth {small:g} h -> {large:g} h (MB)",
        lambda loader: (
            results[(loader, large)]["first"]["after"]["rss"] - results[(loader, small)]["first"]["after"]["rss"]
        ),
        "{:.0f}",
    )
    growth = results[("studio", large)]["first"]["after"]["rss"] - results[("studio", small)]["first"]["after"]["rss"]
    first = results[("studio", large)]["first"]["seconds"]
    print(
        f"\ntargets (studio): RSS growth {growth:.0f} MB <= {TARGETS['rss_growth_mb']} MB: "
        f"{'met' if growth <= TARGETS['rss_growth_mb'] else 'MISSED'}; first batch at {large:g} h {first:.2f} s "
        f"<= {TARGETS['first_batch_s']} s: {'met' if first <= TARGETS['first_batch_s'] else 'MISSED'}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
