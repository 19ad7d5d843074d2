"""One process of an evaluation (what `accelerate launch` starts; see backend.evaluate.job): its share of the
(model, probe) pairs streamed through the chat engine, then, on rank 0, every sample scored and the results,
table and figures written. A pair already written is skipped (resume)."""

import argparse
import fcntl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from backend.core.errors import StudioError
from backend.core.spec import NUM_CODEBOOKS, SAMPLE_RATE
from backend.dataset.preprocess_rank import gather, place, progress_writer
from backend.evaluate import fdb
from backend.evaluate.config import EvaluateConfig, labelled, load
from backend.evaluate.report import write_figures, write_results
from backend.evaluate.score import score_folder
from backend.inference.chat_config import ChatConfig
from backend.jobs.folder import Job
from backend.jobs.launch_config import on_cpu
from backend.models.checkpoints import TRAINER_STATE
from backend.models.weights import lm_kwargs_of

OUTPUTS, MODELS = "outputs", "models"


@dataclass(frozen=True)
class Pair:
    model: str  # label
    sample: fdb.Sample
    target: Path  # where its outputs go


def pairs(run_dir: Path, cfg: EvaluateConfig) -> list[Pair]:
    """Every (model, probe) pair in a fixed order: each set's samples, at most max_probes per task."""
    samples: list[tuple[str, fdb.Sample, Path]] = []
    for label, folder in labelled(cfg.probes, "probes").items():
        taken: dict[str, int] = {}
        for sample in fdb.find_samples(Path(folder)):
            taken[sample.task] = taken.get(sample.task, 0) + 1
            if not cfg.max_probes or taken[sample.task] <= cfg.max_probes:
                samples.append(
                    (label, sample, sample.dir.relative_to(folder) if sample.dir != Path(folder) else Path())
                )
    return [
        Pair(model, sample, run_dir / OUTPUTS / model / label / rel)
        for model in labelled(cfg.models, "models")
        for label, sample, rel in samples
    ]


def servable(run_dir: Path, label: str, source: str) -> str:
    """A model the chat loop can serve: a checkpoint, or a model with the user stream, is exported clean into the
    evaluation's models/ once (under a lock: every rank may ask)."""
    path = Path(source)
    if not path.is_dir() or (
        (path / "model.safetensors").is_file()
        and not (path / TRAINER_STATE).is_file()
        and int(lm_kwargs_of(path).get("dep_q", NUM_CODEBOOKS)) <= NUM_CODEBOOKS
    ):
        return source
    from backend.models.export import ExportConfig, export_checkpoint

    target = run_dir / MODELS / label
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir / MODELS / f".{label}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_dir():
            export_checkpoint(ExportConfig(checkpoint=path, output=target, clean=True, dtype="float32"))
    return str(target)


def chat_config(cfg: EvaluateConfig, model: str, device: str) -> ChatConfig:
    return ChatConfig(model=model, tokenizer=cfg.tokenizer, device=device, threads=cfg.threads or 1, **cfg.sampling())


def user_audio(sample: fdb.Sample) -> np.ndarray:
    """input.wav as the client sends it: mono float32 at 24 kHz."""
    x, rate = sf.read(str(sample.input), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else x


def stream_share(run_dir: Path, cfg: EvaluateConfig, rank: int, world: int, device: str) -> None:
    """Stream this rank's pairs, one engine per model (loaded when its first pair is due)."""
    from backend.evaluate.stream import stream
    from backend.inference.chat_engine import ChatEngine

    mine = pairs(run_dir, cfg)[rank::world]
    report = progress_writer(run_dir, rank)
    sources = labelled(cfg.models, "models")
    engine, engine_model, chat = None, "", None
    for i, pair in enumerate(mine):
        report(i / max(len(mine), 1), f"{pair.model}: {pair.sample.dir.name} ({pair.sample.task})")
        if fdb.done(pair.target):
            continue
        if engine_model != pair.model:
            engine = None  # free the previous model first
            chat = chat_config(cfg, servable(run_dir, pair.model, sources[pair.model]), device)
            engine, engine_model = ChatEngine(chat), pair.model
        out = stream(engine, chat, user_audio(pair.sample))
        fdb.write_sample(pair.sample, pair.target, out.pcm, SAMPLE_RATE, out.words)
        print(
            f"{pair.model} {pair.sample.task}/{pair.sample.dir.name}: {len(out.words)} words, "
            f"{out.compute_s:.1f} s of compute",
            flush=True,
        )
    report(1.0, f"{len(mine)} probe(s) streamed")


def finish(run_dir: Path, cfg: EvaluateConfig, device: str) -> None:
    """Rank 0: score every model's outputs, the losses and turn-taking of continuations, then results.json, table.md
    and the figures."""
    from backend.evaluate.continuation_stats import continuation_stats
    from backend.evaluate.dataset_eval import model_losses

    models = list(labelled(cfg.models, "models"))
    results: dict[str, Any] = {"models": models, "records": {}, "summary": {}, "loss": {}}
    for model in models:
        scored = score_folder(run_dir / OUTPUTS / model)
        results["records"][model], results["summary"][model] = scored["records"], scored["summary"]
    if cfg.eval_data is not None:
        results["loss"] = model_losses(cfg, labelled(cfg.models, "models"))
        results["turn_taking"] = continuation_stats(cfg, labelled(cfg.models, "models"), run_dir, device)
    write_results(run_dir, results)
    write_figures(run_dir, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One process of an evaluation (started by accelerate launch).")
    parser.add_argument("--run-dir", type=Path, required=True, help="evaluation folder")
    args = parser.parse_args(argv)
    run_dir = args.run_dir
    cfg = load(Job(run_dir))
    rank, world, local_rank, _ = place()
    device = "cpu"
    if not on_cpu(cfg):
        import torch

        torch.cuda.set_device(local_rank)
        device = "cuda"
    error = ""
    try:
        stream_share(run_dir, cfg, rank, world, device)
    except StudioError as e:
        error = str(e)
        print(f"error: {e}", file=sys.stderr, flush=True)
    parts = gather({"rank": rank, "error": error}, world)
    if parts is None:
        return 0
    failed = [p["error"] for p in parts if p["error"]]
    if failed:
        return 1
    finish(run_dir, cfg, device)
    print(f"results: {run_dir / 'table.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
