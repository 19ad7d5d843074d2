"""The Fine-tune tab's handlers called directly (no browser): form checks as typed, presets, save/load of the
configuration, initialise, start/abort/resume, progress, export; every typed path confined to the workspace."""

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from handler_helpers import escapes, make_workspace, outside, wait_for
from train_helpers import write_dataset, write_model

from backend.core.errors import StudioError
from backend.finetune import runs
from backend.finetune.pace import phase_record
from backend.finetune.presets import PRESETS
from backend.jobs import control, folder, launcher
from backend.models.checkpoints import COMPLETE, final_path
from backend.models.init_config import InitConfig
from backend.models.initialise import init_model
from backend.models.source import LM_KWARGS
from backend.models.weights import lm_kwargs_of
from studio import finetune_tab as ft

SMALL = {
    "base_model": "models/tiny",
    "train_data": "dataset",
    "device": "cpu",
    "max_frames": 16,
    "min_frames": 4,
    "max_steps": 4,
    "checkpoint_every": 0,
    "lr": 1e-3,
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset, a dep_q 8 tiny LM and its user-stream extension (models/tiny), made once."""
    root = tmp_path_factory.mktemp("assets")
    write_dataset(root / "dataset", [40, 40, 40, 40])
    write_model(root / "models" / "tiny8", dep_q=8)
    init_model(InitConfig(source=str(root / "models" / "tiny8"), output=root / "models" / "tiny"))
    return root


@pytest.fixture
def ws(tmp_path: Path, assets: Path):  # type: ignore[no-untyped-def]
    ws = make_workspace(tmp_path, assets)
    yield ws
    for info in runs.list_runs(ws.root):
        if info.state == "running":
            control.abort(folder.Job(info.dir), grace_s=0)


def form(**changes: Any) -> list[Any]:
    """The form's values in FIELDS order: the demo preset with small numbers, then `changes`."""
    values = dict(zip(ft.FIELDS, ft.on_preset(ft.DEMO_PRESET)))
    values.update(SMALL | changes)
    return [values[n] for n in ft.FIELDS]


def init_values(**changes: Any) -> list[Any]:
    values = {
        "source": "models/tiny8",
        "output": "models/tiny-init",
        "user_stream": True,
        "reinit_text_embeddings": False,
        "keep_text_ids": "0 3 32000",
        "dtype": "float32",
        "overwrite": False,
    } | changes
    return [values[n] for n in ft.INIT_FIELDS]


# ---------------------------------------------------------------- the form


def test_a_good_form_shows_the_command_and_no_problem(ws) -> None:  # type: ignore[no-untyped-def]
    command, problem = ft.on_form(ws, *form())
    assert "backend.finetune.trainer" in command and problem == "" and "SBATCH" not in command  # one machine


def test_several_machines_show_their_commands_and_the_slurm_script(ws) -> None:  # type: ignore[no-untyped-def]
    """(This machine has no GPU: the form says so, as Start would run here, and still shows the commands.)"""
    command, _ = ft.on_form(ws, *form(device="cuda", num_processes=8, num_machines=4, main_address="node0"))
    assert "--machine_rank 3" in command and "node0" in command
    assert "#SBATCH --nodes=4" in command and "#SBATCH --gpus-per-node=2" in command


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"lr": -1}, "lr"),
        ({"max_steps": 0}, "max_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"min_frames": 40, "max_frames": 16}, "max_frames"),
        ({"train_data": "nothing-here"}, "train_data"),
        ({"base_model": "../../x"}, "not inside the workspace"),
        ({"eval_data": "/etc"}, "not inside the workspace"),
        ({"deepspeed": "../ds.json"}, "not inside the workspace"),
        ({"lr": "fast"}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"max_steps": 10**30}, "max_steps"),
    ],
)
def test_a_bad_value_is_shown_as_soon_as_it_is_typed(ws, changes: dict, words: str) -> None:  # type: ignore[no-untyped-def]
    _, problem = ft.on_form(ws, *form(**changes))
    assert problem.startswith("✘") and words in problem, problem
    assert not ws.runs.exists() or not any(ws.runs.iterdir())


def test_the_estimate_reads_the_model_folder(ws) -> None:  # type: ignore[no-untyped-def]
    assert "GiB" in ft.on_estimate(ws, *form())
    assert "7B" in ft.on_estimate(ws, *form(base_model="kyutai/moshiko-pytorch-bf16"))
    assert "not inside the workspace" in ft.on_estimate(ws, *form(base_model="/etc"))


def test_each_preset_fills_every_field_with_its_values() -> None:
    for name, preset in PRESETS.items():
        values = dict(zip(ft.FIELDS, ft.on_preset(name)))
        assert set(values) == set(ft.FIELDS)
        for key, value in preset.items():
            assert values[key] == ("" if value is None else value), (name, key)


def test_save_then_load_gives_the_same_form(ws) -> None:  # type: ignore[no-untyped-def]
    values = form(lr=0.002, trainable="depformer text_emb", mode="subset", eval_data="dataset")
    path = Path(ft.on_save(ws, *values))
    assert json.loads(path.read_text())["trainable"] == ["depformer", "text_emb"]
    assert ft.on_load(str(path)) == ft.on_load(ft.on_save(ws, *ft.on_load(str(path))))
    loaded = dict(zip(ft.FIELDS, ft.on_load(str(path))))
    assert (loaded["lr"], loaded["trainable"], loaded["eval_data"]) == (0.002, "depformer text_emb", "dataset")


@pytest.mark.parametrize(
    "content, words",
    [("{", "cannot read"), ('{"lr": 1, "colour": 2}', "colour"), ("[1]", "one JSON object"), ('{"lr": "x"}', "lr")],
)
def test_loading_a_bad_configuration_names_the_problem(tmp_path: Path, content: str, words: str) -> None:
    (tmp_path / "c.json").write_text(content)
    with pytest.raises(StudioError, match=words):
        ft.on_load(str(tmp_path / "c.json"))


# ---------------------------------------------------------------- initialise


def test_initialise_writes_the_user_stream_model_in_the_workspace(ws) -> None:  # type: ignore[no-untyped-def]
    message = ft.on_init(ws, *init_values())
    assert message.startswith("✔") and "models/tiny-init" in message
    assert lm_kwargs_of(ws.models / "tiny-init")["dep_q"] == 16


def test_initialise_refuses_outputs_and_sources_outside_before_writing(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = outside(tmp_path, ws)
    for path in escapes(tmp_path):
        for field in ("output", "source"):
            message = ft.on_init(ws, *init_values(**{field: path}))
            assert message.startswith("✘") and "not inside the workspace" in message, message
    assert outside(tmp_path, ws) == before


# ---------------------------------------------------------------- runs


@pytest.fixture
def quick_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs whose process prints a line and exits 3 (the supervisor and the run folder are real)."""
    monkeypatch.setattr(
        launcher,
        "accelerate_command",
        lambda c, run_dir, rank=None, module=None: [sys.executable, "-c", "print('hello'); raise SystemExit(3)"],
    )


def test_start_follow_and_resume_a_run(ws, quick_runs) -> None:  # type: ignore[no-untyped-def]
    message, ids, picked = ft.on_start(ws, *form())
    assert message.startswith("started") and ids == [picked] and picked in message
    run = runs.open_run(ws.root, picked)
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the run to end")
    bar, curves, probes, log = ft.on_tick(ws, picked)
    assert "failed" in bar and "hello" in log and curves is not None and probes is not None
    assert ft.on_resume(ws, picked) == f"resumed **{picked}**"
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the second attempt to end")
    assert control.status(run)["attempts"] == 2
    assert ft.run_choices(ws, None) == ([picked], picked)
    assert ft.on_abort(ws, picked).startswith("abort requested")


def test_the_bar_says_what_a_starting_run_is_doing(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Before its first step the trainer writes phase lines; the bar shows the newest with its duration."""
    line = json.dumps(phase_record("loading the base model m")) + "\n"
    script = "import sys, time; open(sys.argv[1] + '/metrics.jsonl', 'a').write(sys.argv[2]); time.sleep(60)"
    monkeypatch.setattr(
        launcher,
        "accelerate_command",
        lambda c, run_dir, rank=None, module=None: [sys.executable, "-c", script, str(run_dir), line],
    )
    _, _, picked = ft.on_start(ws, *form())
    run = runs.open_run(ws.root, picked)
    try:
        wait_for(lambda: folder.read_metrics(run) != [], 60, "the phase line")
        bar = ft.on_tick(ws, picked)[0]
        assert "running · loading the base model m (" in bar and "step 0 / " in bar, bar
    finally:
        control.abort(run, grace_s=0)


def test_start_refuses_a_bad_form_and_writes_no_run(ws, quick_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = outside(tmp_path, ws)
    for changes in [{"lr": -1}, *({"train_data": p} for p in escapes(tmp_path))]:
        message, ids, _ = ft.on_start(ws, *form(**changes))
        assert message.startswith("✘") and ids is None
    assert runs.list_runs(ws.root) == [] and outside(tmp_path, ws) == before


@pytest.mark.parametrize("handler", [ft.on_abort, ft.on_resume, ft.on_tick])
def test_run_ids_outside_the_runs_folder_are_refused(ws, tmp_path: Path, handler) -> None:  # type: ignore[no-untyped-def]
    victim = tmp_path / "outside" / "run"
    victim.mkdir(parents=True)
    (victim / "config.json").write_text(json.dumps(SMALL))
    for run_id in [*escapes(tmp_path), str(victim), "../../../outside/run"]:
        result = handler(ws, run_id)
        text = result if isinstance(result, str) else result[0]
        assert text.startswith("✘") and ("not inside the workspace" in text or "not a run folder" in text), text
    assert sorted(p.name for p in victim.iterdir()) == ["config.json"]


# ---------------------------------------------------------------- export


def finished_run(ws, step: int = 2, complete: bool = True) -> str:  # type: ignore[no-untyped-def]
    """A run folder with one checkpoint: the tiny dep_q 16 model, marked complete or not."""
    run = runs.create_run(ws.root, ft.read_form(form()))
    checkpoint = final_path(run.dir, step)
    shutil.copytree(ws.models / "tiny", checkpoint)
    if complete:
        (checkpoint / COMPLETE).write_text("ok\n")
    return run.id


def test_export_skips_a_checkpoint_whose_save_did_not_finish(ws) -> None:  # type: ignore[no-untyped-def]
    run_id = finished_run(ws, complete=False)
    assert ft.on_export(ws, run_id, True) == "✘ this run has no complete checkpoint yet"
    assert ft.on_export(ws, None, True) == "no run selected"


def test_export_writes_the_newest_complete_checkpoint(ws) -> None:  # type: ignore[no-untyped-def]
    run_id = finished_run(ws)
    message = ft.on_export(ws, run_id, True)
    assert message == f"✔ exported `runs/{run_id}/exports/step-000002`", message
    assert lm_kwargs_of(ws.runs / run_id / "exports" / "step-000002")["dep_q"] == 8  # clean: Moshi's 8 steps
    message = ft.on_export(ws, run_id, False, "models/mine")
    assert message == "✔ exported `models/mine`" and (ws.models / "mine" / LM_KWARGS).is_file()


def test_export_refuses_folders_outside_before_writing(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_id = finished_run(ws)
    before = outside(tmp_path, ws)
    for target in escapes(tmp_path):
        message = ft.on_export(ws, run_id, True, target)
        assert message.startswith("✘") and "not inside the workspace" in message, message
    assert outside(tmp_path, ws) == before and not (ws.runs / run_id / "exports").exists()
