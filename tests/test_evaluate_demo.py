"""The demo, end to end: the tiny demo LM fine-tuned on the demo dialogues with the demo preset (its user-stream
extension, 125 steps, speaker A playing Moshi) and the same LM untrained, evaluated side by side on the demo-turns
probes (the user's channel of each demo dialogue, every place where speaker A takes the turn) and on continuations of
the dataset. The fine-tuned model takes the turn where the dialogues do, about as late as they do, and its
continuations pause and hand over the turn like them; the random one does neither. If the chat loop fed the model
the wrong channel, shifted its words in time, scored the wrong windows or measured the wrong channels, the
fine-tuned column would look like the base's."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from train_helpers import reset_accelerate

from backend.core import config
from backend.demo.workspace import create_demo_workspace
from backend.evaluate.job import list_runs
from backend.evaluate.report import REFERENCE, read_results
from backend.finetune.config import FinetuneConfig
from backend.finetune.presets import PRESETS
from backend.finetune.runs import absolute_config
from backend.models.checkpoints import latest_checkpoint


@pytest.mark.slow
def test_the_fine_tuned_demo_model_takes_the_demo_turns_and_the_base_model_does_not(tmp_path: Path) -> None:
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.finetune.trainer import train
    from backend.models.initialise import InitConfig, init_model

    ws = create_demo_workspace(tmp_path / "workspace")  # its own: the evaluation is the only one listed
    prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))  # the Data tab's Build
    cfg = dataclasses.replace(FinetuneConfig(), **PRESETS[next(iter(PRESETS))])
    init_model(InitConfig(source=str(ws.demo_lm), output=ws.root / cfg.base_model))  # the Fine-tune tab's Initialise
    run = ws.root / "runs" / "20260101-000000-demo"
    run.mkdir(parents=True)
    config.save(absolute_config(cfg, ws.root), run / "config.json")
    try:
        assert train(run) == "finished"
    finally:
        reset_accelerate()
    tuned = latest_checkpoint(run)
    assert tuned is not None

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "evaluate",
            "start",
            "--workspace",
            str(ws.root),
            "--models",
            "base=models/demo-lm",
            f"tuned={tuned}",
            "--probes",
            "demo-turns",
            "--eval-data",
            "dataset",
            "--text-temperature",
            "0",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--wait",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (evaluation,) = list_runs(ws.root)
    results = read_results(evaluation.dir)
    table = (evaluation.dir / "table.md").read_text()
    base, fine_tuned = (results["summary"][m]["dialogue_turns"] for m in ("base", "tuned"))
    reference = fine_tuned["reference_latency"]  # the dialogues' own: speaker A answers every turn, this late
    assert fine_tuned["samples"] == 3 and 0.2 < reference < 1.0, table
    assert fine_tuned["tor"] >= 0.9, f"the fine-tuned model misses the demo's turns:\n{table}"
    assert abs(fine_tuned["latency"] - reference) < 0.3, f"the fine-tuned model answers off the demo's timing:\n{table}"
    assert base["tor"] <= 0.5, f"the random model takes the demo's turns too: the probes tell nothing\n{table}"

    turns = results["turn_taking"]
    for unit, key in (("ipu", "seconds"), ("gap", "per_minute"), ("overlap_within", "seconds")):
        ref, *models = (turns[s][unit][key] for s in (REFERENCE, "tuned", "base"))
        assert abs(models[0] - ref) < abs(models[1] - ref), f"continuations, {unit} {key}:\n{table}"
    assert "continuations: gaps per minute (reference" in table
