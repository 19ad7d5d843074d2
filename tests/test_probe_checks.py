"""Behaviour probes of a run's checkpoints while it trains (FinetuneConfig.eval_probes_every): which checkpoints are
due, the settings refused by name, at most one probe process, and a real tiny fine-tune whose checkpoints are probed
in the background into probes.jsonl, read back by the Fine-tune tab beside the loss curves."""

import shutil
from pathlib import Path

import pytest
from handler_helpers import wait_for
from train_helpers import write_dataset, write_model

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.paths import PROBE_SETS
from backend.evaluate import fdb
from backend.finetune import probe_checks, runs
from backend.finetune.config import FinetuneConfig, check_relations
from backend.jobs import control, folder
from backend.models.checkpoints import COMPLETE, final_path
from studio import finetune_tab as ft


def test_due_steps_are_the_multiples_and_the_last() -> None:
    cfg = FinetuneConfig(eval_probes_every=50, max_steps=125)
    assert [s for s in range(1, 126) if probe_checks.due(cfg, s)] == [50, 100, 125]
    assert not any(probe_checks.due(FinetuneConfig(eval_probes_every=0), s) for s in (50, 100))


def test_probes_must_fall_on_checkpoints_and_the_set_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval_probes_every .30. must be a multiple of checkpoint_every .20."):
        check_relations(FinetuneConfig(eval_probes_every=30, checkpoint_every=20))
    check_relations(FinetuneConfig(eval_probes_every=40, checkpoint_every=20))
    with pytest.raises(ConfigError, match="eval_probes: nowhere"):
        runs.validate_before_launch(FinetuneConfig(eval_probes_every=50, eval_probes="nowhere"), tmp_path)


def test_the_newest_due_checkpoint_not_yet_probed_is_next(tmp_path: Path) -> None:
    cfg = FinetuneConfig(eval_probes_every=20, checkpoint_every=10, max_steps=45)
    for step in (10, 20, 30, 40):
        final_path(tmp_path, step).mkdir(parents=True)
        (final_path(tmp_path, step) / COMPLETE).touch()
    assert probe_checks.next_checkpoint(tmp_path, cfg) == final_path(tmp_path, 40)
    (tmp_path / probe_checks.PROBES_FILE).write_text('{"event": "probes", "step": 40, "tor": {}}\n')
    assert probe_checks.next_checkpoint(tmp_path, cfg) is None  # 20 is older: the curve has moved on


def test_no_second_probe_process_while_one_probes(tmp_path: Path) -> None:
    cfg = FinetuneConfig(eval_probes_every=10)
    with probe_checks.probe_lock(tmp_path) as mine:
        assert mine
        assert probe_checks.start_probes(tmp_path, cfg, 10) is None
    assert probe_checks.start_probes(tmp_path, cfg, 11) is None  # not due
    # Free and due: a process starts (no config.json here: it exits at once, with the reason).
    proc = probe_checks.start_probes(tmp_path, cfg, 10)
    assert proc is not None and proc.wait(timeout=60) != 0


def test_probe_curves_put_tor_and_latency_per_task_beside_the_steps() -> None:
    records = [
        {"event": "probes", "step": 2, "tor": {"smooth_turn_taking": 0.0}, "latency": {}},
        {"event": "probes", "step": 4, "error": "OSError: gone"},
        {"event": "probes", "step": 6, "tor": {"smooth_turn_taking": 1.0}, "latency": {"smooth_turn_taking": 0.4}},
    ]
    data = ft.probe_curves(records)
    assert data.values.tolist() == [
        [2, "tor smooth_turn_taking", 0.0],
        [6, "tor smooth_turn_taking", 1.0],
        [6, "latency smooth_turn_taking (s)", 0.4],
    ]
    assert ft.probe_curves([]).empty


@pytest.mark.slow
def test_a_tiny_fine_tune_probes_its_checkpoints_in_the_background(demo_workspace, tmp_path: Path) -> None:
    """A run started as the Fine-tune tab's Start does (accelerate launch, the supervisor): its checkpoints are
    probed by a background process, the run ends only once its last checkpoint is probed, and the tab's progress
    handler returns the probes' TOR and latency per step beside the loss curves."""
    probes = demo_workspace.root / "probes-turn"
    shutil.copytree(PROBE_SETS / "studio-en" / "smooth_turn_taking" / "1", probes / "smooth_turn_taking" / "1")
    model, data = write_model(tmp_path / "model"), write_dataset(tmp_path / "data", [40])
    cfg = config.from_dict(
        FinetuneConfig,
        {
            "base_model": str(model),
            "train_data": str(data),
            "device": "cpu",
            "max_frames": 16,
            "min_frames": 4,
            "log_every": 1,
            "max_steps": 4,
            "checkpoint_every": 2,
            "eval_probes_every": 2,
            "eval_probes": "probes-turn",
            "threads": 1,
        },
    )
    run = runs.start_new(demo_workspace.root, cfg, name="probed")
    try:
        wait_for(lambda: control.status(run)["state"] != "running", 600, "the run to end")
    finally:
        control.abort(run, grace_s=1)
    assert control.status(run)["state"] == "finished", folder.tail_log(run, 3000)
    records = {r["step"]: r for r in probe_checks.read_probes(run.dir)}
    assert 4 in records, (records, folder.tail_log(run, 3000))  # the supervisor waited for the probe process
    last = records[4]
    assert "error" not in last, last
    assert last["samples"] == 1 and last["tor"]["smooth_turn_taking"] in (0.0, 1.0), last
    assert set(records) <= {2, 4}  # step 2 may have been skipped for 4 if 4 was published while 2 waited
    sample = run.dir / "probes" / "step-000004" / "outputs" / "model" / "probes" / "smooth_turn_taking" / "1"
    assert fdb.done(sample)
    assert not (run.dir / "probes" / "step-000004" / "models").exists()  # the clean export is not kept
    assert config.load(FinetuneConfig, run.dir / "config.json").eval_probes_every == 2

    bar, losses, plotted, _ = ft.on_tick(demo_workspace, run.id)
    assert "finished" in bar and not losses.empty
    tor = plotted[plotted["series"] == "tor smooth_turn_taking"]
    assert tor["step"].max() == 4 and set(tor[ft.PROBE_AXIS]) <= {0.0, 1.0}
    assert len(tor) == len(records)  # one point per probed checkpoint
