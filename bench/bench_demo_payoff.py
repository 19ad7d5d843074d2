"""Benchmark (run by hand): how soon the demo pays off. From pressing Start on the "demo on CPU" preset to a
model whose greedy continuation of the demo dialogues replays them, on a quiet machine and with another
process busy on one core, side by side.

    .venv/bin/python bench/bench_demo_payoff.py [--conditions quiet busy] [--keep DIR] [--language ja]

Setup (not timed): a fresh demo workspace, Build dataset and Initialise as the studio does them. Timed: the
studio's Start (`runs.create_run` + `runs.start`: the supervisor, `accelerate launch`, the trainer) until the run
has ended. Then what the Continuations tab does by default in the demo workspace (its prompt and generated
lengths, its sampling: greedy there; every other setting GenerateConfig's default), one dataset row at a time as
the tab picks one, from the run's last checkpoint: the share of the reference's audio tokens reproduced after the
prompt (Moshi's 8 codebooks; the user's are
sampled too and shown beside). The ETA the run showed about one minute in is set against the real end. The CPU
time of the run's process tree stands in for the wall time on an idle machine (the run uses one thread).
Targets: match >= 60 %, at most 3 min quiet and 6 min busy. The machine's load average is printed with each
row: on a shared machine the figures are only as quiet as the machine was.
"""

import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from backend.core.spec import FRAME_RATE  # noqa: E402
from backend.core.workspace import Workspace
from backend.demo.workspace import create_demo_workspace  # noqa: E402
from backend.finetune import runs  # noqa: E402
from backend.finetune.config import FinetuneConfig  # noqa: E402
from backend.finetune.presets import PRESETS  # noqa: E402
from backend.inference.generate_config import PAGE_GENERATE_S, PAGE_PROMPT_S, page_sampling  # noqa: E402
from backend.jobs import control, folder
from backend.models import checkpoints  # noqa: E402

DEMO_PRESET = next(iter(PRESETS))
ETA_AT_S = 60.0
BUSY_LOOP = "import os\nos.sched_setaffinity(0, {%d})\nwhile True:\n    pass\n"


def prepare(root: Path, language: str) -> Workspace:
    """The demo workspace (English or Japanese) after the studio's Build dataset and Initialise."""
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.models.initialise import InitConfig, init_model

    ws = create_demo_workspace(root, language=language)
    prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    preset = dataclasses.replace(FinetuneConfig(), **PRESETS[DEMO_PRESET])
    init_model(InitConfig(source=str(ws.demo_lm), output=ws.root / preset.base_model, tokenizer=str(ws.tokenizer_path)))
    return ws


def timed_run(ws: Workspace, name: str) -> dict:
    """Start the preset like the studio's Start button and wait for the run to end, noting the ETA shown."""
    cfg = dataclasses.replace(FinetuneConfig(), **PRESETS[DEMO_PRESET])
    cpu_before = children_cpu_s()
    start = time.monotonic()
    run = runs.create_run(ws.root, cfg, name=name)
    runs.start(run)
    eta_seen: tuple[float, float] | None = None  # (seconds since Start, ETA shown)
    while control.status(run)["state"] == "running":
        info = runs.run_info(run)
        now = time.monotonic() - start
        if info.eta_s is not None and (eta_seen is None or now <= ETA_AT_S):
            eta_seen = (now, info.eta_s)
        time.sleep(1.0)
    wall = time.monotonic() - start
    supervisor = control.status(run)["pid"]
    while os.path.exists(f"/proc/{supervisor}"):  # until the launcher's reaper thread has collected it, and
        time.sleep(0.1)  # with it the CPU time of the whole tree
    info = runs.run_info(run)
    if info.state != "finished":
        raise SystemExit(f"run {run.id} ended {info.state}:\n{folder.tail_log(run)[-3000:]}")
    return {
        "run": run,
        "wall_s": wall,
        "cpu_s": children_cpu_s() - cpu_before,
        "steps": info.step,
        "eta_seen": eta_seen,
    }


def children_cpu_s() -> float:
    """CPU seconds of this process's ended children and their waited-for trees (supervisor, launcher,
    trainer): about the wall time the one-thread run needs on a core of its own, whatever the load."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def continuation_match(ws: Workspace, run: folder.Job) -> dict[str, float]:
    """The Continuations tab's default continuation of each demo dialogue from the run's last checkpoint: share
    of matching tokens."""
    from backend.dataset.read import list_dialogues
    from backend.inference.generate import MOSHI_ROWS, USER_ROWS, GenerateConfig, generate

    prompt = int(round(PAGE_PROMPT_S * FRAME_RATE))
    checkpoint = checkpoints.latest_checkpoint(run.dir)
    assert checkpoint is not None, f"run {run.id} wrote no checkpoint"
    start = time.monotonic()
    page = dataclasses.replace(
        GenerateConfig(**page_sampling(ws.settings.demo)),
        model=str(checkpoint),
        dataset=ws.dataset,
        prompt_frames=prompt,
        gen_frames=int(round(PAGE_GENERATE_S * FRAME_RATE)),
        output=None,
        device=ws.settings.device,
    )
    found = [
        c for dialogue in list_dialogues(ws.dataset) for c in generate(dataclasses.replace(page, dialogues=[dialogue]))
    ]

    def same(c, rows: slice) -> float:  # over the frames the reference has (a short dialogue ends before G does)
        n = min(c.tokens.shape[1], c.reference.shape[1])
        return float((c.tokens[rows, prompt:n] == c.reference[rows, prompt:n]).mean())

    rates = {
        key: float(np.mean([same(c, rows) for c in found]))
        for key, rows in (("moshi", MOSHI_ROWS), ("user", USER_ROWS), ("text", slice(0, 1)))
    }
    rates["per_dialogue"] = [same(c, MOSHI_ROWS) for c in found]
    rates["generate_s"] = time.monotonic() - start
    return rates


def busy_loop(core: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP % core])


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", nargs="+", choices=("quiet", "busy"), default=["quiet", "busy"])
    parser.add_argument("--keep", type=Path, default=None, help="build the workspace here and keep it")
    parser.add_argument("--language", choices=("en", "ja"), default="en", help="the demo workspace's language")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp()) / "workspace"
    cores = sorted(os.sched_getaffinity(0))
    print(f"preset {DEMO_PRESET!r}: {PRESETS[DEMO_PRESET]}")
    print(f"{len(cores)} cores; preparing the demo workspace in {root} ...", flush=True)
    ws = prepare(root, args.language)
    results = []
    try:
        for condition in args.conditions:
            load_before = os.getloadavg()
            hog = busy_loop(cores[-1]) if condition == "busy" else None
            try:
                timing = timed_run(ws, f"bench-{condition}")
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            load_after = os.getloadavg()
            match = continuation_match(ws, timing["run"])
            results.append((condition, timing, match, load_before, load_after))
            print(f"{condition}: {clock(timing['wall_s'])} to a model, match {match['moshi']:.3f}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root.parent, ignore_errors=True)
    print(
        f"\nfrom Start to the end of the run; then the Continuations tab's default continuation "
        f"({PAGE_PROMPT_S:g} s prompt, {PAGE_GENERATE_S:g} s generated, {page_sampling(True) or 'sampled'}) "
        f"of the {len(results[0][2]['per_dialogue'])} demo dialogues"
    )
    print(
        f"{'condition':<10} {'wall':>6} {'CPU':>6} {'target':>6} {'steps':>5} {'moshi match':>12} {'per dialogue':>20} "
        f"{'user':>6} {'text':>6}  {'ETA shown at':>12} -> {'real rest':>9}  load 1-min before/after"
    )
    for condition, timing, match, before, after in results:
        target = 180 if condition == "quiet" else 360
        seen = timing["eta_seen"]
        eta = f"{clock(seen[0])}: {clock(seen[1])} -> {clock(timing['wall_s'] - seen[0])}" if seen else "never shown"
        per = " ".join(f"{m:.2f}" for m in match["per_dialogue"])
        print(
            f"{condition:<10} {clock(timing['wall_s']):>6} {clock(timing['cpu_s']):>6} {clock(target):>6} "
            f"{timing['steps']:>5} "
            f"{match['moshi']:>12.3f} {per:>20} {match['user']:>6.3f} {match['text']:>6.3f}  {eta:>28}  "
            f"{before[0]:.1f} / {after[0]:.1f}"
        )
    if len(results) == 2:
        print(f"busy / quiet wall time: {results[1][1]['wall_s'] / results[0][1]['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
