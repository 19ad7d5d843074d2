"""Turn-taking statistics of each model's continuations of the evaluation split against the dataset's own
dialogues over the same span: `continued_dialogues` dialogues of `eval_data` continued (sample_dialogues;
backend.inference.generate: a teacher-forced prompt, then both streams generated, decoded by the workspace's Mimi),
and its generated part measured as the reference's (backend.inference.turn_taking: IPUs, pauses, gaps, overlaps).
Per kind of unit: how many per minute, their total seconds, and the Jensen-Shannon distance of their durations to
the reference's (histograms on shared edges, natural log; 0: the same distribution, sqrt(ln 2) = 0.83: disjoint, or
units on one side only)."""

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.core.spec import FRAME_RATE
from backend.evaluate.config import EvaluateConfig
from backend.evaluate.metrics import DISJOINT, jensen_shannon
from backend.evaluate.report import REFERENCE, TURN_UNITS
from backend.finetune.data import DatasetRows
from backend.inference.generate import Continuation, generate, load_continuation
from backend.inference.generate_config import DONE_FILE, SUFFIXES, GenerateConfig
from backend.inference.turn_taking import METRICS, TurnStats, TurnTakingConfig, analyse_file, compare

CONTINUATIONS = "continuations"  # <evaluation>/continuations/<model>/: the generated and reference WAVs


def distance(counts: list[int], reference: list[int]) -> float | None:
    """JSD of two histograms; units on one side only are as far as can be, none on either side has no distance."""
    if not sum(counts) and not sum(reference):
        return None
    return jensen_shannon(counts, reference) if sum(counts) and sum(reference) else DISJOINT


def unit_stats(sources: dict[str, list[TurnStats]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{source: {unit: {"per_minute", "seconds", "jsd"}}}; jsd against the REFERENCE source (None without units)."""
    comparison = compare(sources)["metrics"]
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for label, items in sources.items():
        minutes = sum(t.duration for t in items) / 60
        out[label] = {}
        for unit in TURN_UNITS:
            values = [v for t in items for v in METRICS[unit][0](t)]
            counts, reference = (comparison[unit]["by_source"][s]["counts"] for s in (label, REFERENCE))
            out[label][unit] = {
                "per_minute": len(values) / minutes if minutes > 0 else None,
                "seconds": float(sum(values)),
                "jsd": distance(counts, reference),
            }
    return out


def sample_dialogues(ids: Sequence[str], n: int) -> list[str]:
    """The n ids whose hash is lowest, in the split's order. A hash of each id alone (not a seeded shuffle) keeps
    the choice the same across numpy versions and models, and n + 1 keeps n's dialogues and adds one."""
    ranked = sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).digest())
    return [ids[i] for i in sorted(ranked[:n])]


def generate_config(
    cfg: EvaluateConfig, source: str, output: Path, dialogues: list[str], device: str
) -> GenerateConfig:
    """The continuations of one model: the evaluation's sampling, the chosen dialogues."""
    assert cfg.eval_data is not None
    return GenerateConfig(
        model=source,
        dataset=cfg.eval_data,
        dialogues=dialogues,
        main_speaker=cfg.main_speaker,  # type: ignore[arg-type]
        output=output,
        device=device,  # type: ignore[arg-type]
        **cfg.sampling(),
    )


def continued(gen: GenerateConfig) -> list[Continuation]:
    """A model's continuations: read back when an earlier attempt wrote them all (a resumed evaluation), else
    generated."""
    assert gen.output is not None
    if (gen.output / DONE_FILE).is_file():
        return [load_continuation(p) for p in sorted(gen.output.rglob("*" + SUFFIXES["tokens"]))]
    return generate(gen)


def continuation_stats(cfg: EvaluateConfig, models: dict[str, str], run_dir: Path, device: str) -> dict[str, Any]:
    """The unit statistics of every model's continuations of cfg.eval_data's sampled dialogues, and of the
    reference."""
    assert cfg.eval_data is not None
    dialogues = sample_dialogues(DatasetRows(cfg.eval_data).ids, cfg.continued_dialogues)
    sources: dict[str, list[TurnStats]] = {}
    for label, source in models.items():
        gen = generate_config(cfg, source, run_dir / CONTINUATIONS / label, dialogues, device)
        window = TurnTakingConfig(start_seconds=gen.prompt_frames / FRAME_RATE)  # the generated part only
        found = continued(gen)
        sources[label] = [analyse_file(c.files["wav"], window) for c in found]
        if REFERENCE not in sources:  # the same dialogues and span for every model
            sources[REFERENCE] = [analyse_file(c.files["reference_wav"], window) for c in found]
    return unit_stats(sources)
