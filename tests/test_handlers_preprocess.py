"""The Preprocess tab's handlers called directly (no browser): the per-machine command and the problems as the
form changes, start/abort/resume, progress and rank 0's summary; every typed path and run id confined to the
workspace."""

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from handler_helpers import escapes, make_workspace, outside, wait_for

from backend.dataset import preprocess
from backend.jobs import control, launcher
from backend.models.source import random_mimi, save_mimi, tiny_mimi_config
from studio import preprocess_tab as pp


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    ws = make_workspace(tmp_path)
    yield ws
    for run in preprocess.list_runs(ws.root):
        if control.status(run).get("state") == "running":
            control.abort(run, grace_s=0)


def form(ws, **changes: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    """The whole form's values in FORM order: the workspace's defaults on CPU, then `changes` ("stage.field" for
    a stage's own field, the bare name for a launch setting)."""
    values = dict(zip(pp.FORM, pp.form_defaults(ws)))
    values[("", "device")] = "cpu"
    for key, value in changes.items():
        stage, _, name = key.rpartition(".")
        assert (stage, name) in values, key
        values[(stage, name)] = value
    return [values[k] for k in pp.FORM]


def test_every_stage_has_a_form_and_the_workspace_defaults(ws) -> None:  # type: ignore[no-untyped-def]
    assert set(pp.STAGE_FIELDS) == set(preprocess.STAGES)
    values = dict(zip(pp.FORM, pp.form_defaults(ws)))
    assert values[("tokenize_audio", "input_dir")] == "raw" and values[("annotate", "input")] == "raw"
    assert values[("tokenize_audio", "mimi")] == ws.settings.mimi
    for stage in preprocess.STAGES:
        command, problem = pp.on_form(ws, stage, *form(ws))
        assert problem == "" and "backend.dataset.preprocess_rank" in command and "--cpu" in command


def test_several_machines_show_one_command_each(ws) -> None:  # type: ignore[no-untyped-def]
    command, _ = pp.on_form(
        ws, "annotate", *form(ws, num_processes=4, num_machines=2, main_address="node0", device="cuda", gpu_ids="0,1")
    )
    assert command.count("# machine") == 2 and "--machine_rank 1" in command and "node0" in command
    # beside them the SLURM script `preprocess start --slurm FILE` writes, the address from the allocation
    assert "#SBATCH --nodes=2" in command and '--main_process_ip "$MAIN_ADDRESS"' in command


@pytest.mark.parametrize(
    "stage, changes, words",
    [
        ("tokenize_audio", {"num_processes": 3, "num_machines": 2}, "multiple of num_machines"),
        ("tokenize_audio", {"num_machines": 10**9}, "num_machines"),
        ("tokenize_audio", {"tokenize_audio.chunk_seconds": -1}, "chunk_seconds"),
        ("tokenize_audio", {"tokenize_audio.input_dir": "nothing-here"}, "input_dir"),
        ("annotate", {"annotate.min_support": 2}, "min_support"),
        ("annotate", {"annotate.engine": "whisper"}, "whisper_model"),
        ("annotate", {"annotate.mode": "guess"}, "mode"),
        ("../../x", {}, "unknown stage"),
    ],
)
def test_a_bad_value_is_shown_as_it_is_typed(ws, stage: str, changes: dict, words: str) -> None:  # type: ignore[no-untyped-def]
    _, problem = pp.on_form(ws, stage, *form(ws, **changes))
    assert problem.startswith("✘") and words in problem, problem


@pytest.mark.parametrize(
    "key",
    [
        "tokenize_audio.input_dir",
        "tokenize_audio.output_dir",
        "tokenize_audio.mimi",
        "annotate.input",
        "annotate.output",
        "annotate.whisper_model",
    ],
)
def test_paths_outside_the_workspace_are_refused_before_anything_is_written(ws, tmp_path: Path, key: str) -> None:  # type: ignore[no-untyped-def]
    before = outside(tmp_path, ws)
    stage = key.partition(".")[0]
    for path in escapes(tmp_path):
        changes = {key: path} | ({"annotate.engine": "whisper"} if key.endswith("whisper_model") else {})
        _, problem = pp.on_form(ws, stage, *form(ws, **changes))
        message, ids, _ = pp.on_start(ws, stage, *form(ws, **changes))
        for text in (problem, message):
            assert text.startswith("✘") and "not inside the workspace" in text, text
        assert ids is None
    assert outside(tmp_path, ws) == before and preprocess.list_runs(ws.root) == []


def test_a_hub_id_is_a_model_name_not_a_path(ws) -> None:  # type: ignore[no-untyped-def]
    _, problem = pp.on_form(
        ws, "annotate", *form(ws, **{"annotate.engine": "whisper", "annotate.whisper_model": "openai/whisper-small"})
    )
    assert problem == ""


@pytest.mark.parametrize("handler", [pp.on_abort, pp.on_resume, pp.on_tick])
def test_run_ids_outside_the_preprocess_folder_are_refused(ws, tmp_path: Path, handler) -> None:  # type: ignore[no-untyped-def]
    victim = tmp_path / "outside" / "run"
    victim.mkdir(parents=True)
    (victim / "config.json").write_text(json.dumps({"stage": "annotate", "config": {}}))
    for run_id in [*escapes(tmp_path), str(victim), "../../../outside/run", "../runs"]:
        result = handler(ws, run_id)
        text = result if isinstance(result, str) else result[0]
        assert text.startswith("✘") and ("not inside the workspace" in text or "not a preprocessing run" in text), text
    assert sorted(p.name for p in victim.iterdir()) == ["config.json"]
    assert handler(ws, None) in ("no run selected", ("", "", ""))


def test_start_follow_resume_and_abort(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The run folder and its supervisor are real; the command prints a line and exits 3."""
    monkeypatch.setattr(
        launcher,
        "accelerate_command",
        lambda c, run_dir, rank=None, module=None: [sys.executable, "-c", "print('hello'); raise SystemExit(3)"],
    )
    message, ids, picked = pp.on_start(ws, "annotate", *form(ws))
    assert message.startswith("started") and ids == [picked] and picked in message and picked.endswith("annotate")
    run = pp.open_run(ws, picked)
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the run to end")
    bar, status, log = pp.on_tick(ws, picked)
    assert "failed" in bar and "annotate" in bar and "hello" in log and status == ""
    assert pp.on_resume(ws, picked).startswith(f"resumed **{picked}**")
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the second attempt to end")
    assert control.status(run)["attempts"] == 2
    assert pp.run_choices(ws, None) == ([picked], picked)
    assert pp.on_abort(ws, picked).startswith("abort requested")


def test_a_real_run_reports_each_rank_and_the_summary(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    save_mimi(random_mimi(tiny_mimi_config()), tiny_mimi_config(), ws.models / "tiny-mimi")
    message, _, picked = pp.on_start(
        ws,
        "tokenize_audio",
        *form(ws, **{"tokenize_audio.mimi": "models/tiny-mimi", "tokenize_audio.output_dir": "tokens/pp"}),
    )
    assert message.startswith("started"), message
    run = pp.open_run(ws, picked)
    wait_for(lambda: control.status(run)["state"] != "running", 600, "the run to end")
    bar, status, log = pp.on_tick(ws, picked)
    written = len(list((ws.root / "tokens" / "pp").glob("*.npz")))
    assert "finished" in bar and "100%" in bar and written == 3, (bar, log)
    assert status.splitlines()[0].startswith("rank 0: 100%")
    assert f"tokenize_audio, 1 rank(s): {written} written, 0 already done, 0 failed" in status
