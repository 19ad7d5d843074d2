"""The Evaluate tab's handlers called directly (no browser): the model list, a refused start, a client's paths
confined to the workspace, and a finished evaluation's table and figures read back from its folder."""

from pathlib import Path

from handler_helpers import make_workspace

from backend.evaluate import job
from backend.evaluate.report import write_figures, write_results
from backend.jobs.folder import mark_queued
from studio import evaluate_tab as ev

RESULTS = {
    "models": ["base", "tuned"],
    "loss": {},
    "summary": {
        "base": {"smooth_turn_taking": {"samples": 2, "tor": 0.0, "latency": None}},
        "tuned": {"smooth_turn_taking": {"samples": 2, "tor": 1.0, "latency": 0.4}},
    },
    "records": {"base": {}, "tuned": {}},
}


def test_a_finished_evaluation_is_read_back_with_its_table_and_figures(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    run = ws.evaluations / "20260101-000000-x"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"config": {}}')
    mark_queued(job.Job(run))
    write_results(run, RESULTS)
    write_figures(run, RESULTS)
    ids, picked = ev.run_choices(ws)
    assert ids == [run.name] and picked == run.name
    bar, shown, tor, bc, _ = ev.on_tick(ws, run.name)
    assert "| | base | tuned |" in shown and "| smooth turn-taking: TOR ↑ | 0.000 | 1.000 |" in shown
    assert Path(tor).name == "tor_latency.png" and Path(bc).name == "backchannel_timing.png"


def test_start_is_refused_with_the_reason_and_paths_stay_in_the_workspace(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    msg, ids, _ = ev.on_start(ws, [], ["studio-en"], 0, "cpu")
    assert ids is None and "models" in msg
    msg, ids, _ = ev.on_start(ws, ["/etc"], ["studio-en"], 0, "cpu")
    assert ids is None and "not inside the workspace" in msg
    assert ev.on_tick(ws, "../../etc")[0].startswith("✘")
    assert job.list_runs(ws.root) == []


def test_the_evaluation_split_is_confined_to_the_workspace_and_must_exist(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    (ws.models / "m").mkdir()
    assert ev.read_form(ws, ["models/m"], ["studio-en"], 0, "cpu", "dataset").eval_data == ws.dataset.resolve()
    assert ev.read_form(ws, ["models/m"], ["studio-en"], 0, "cpu", "  ").eval_data is None  # none: no continuations
    for split, words in (
        ("../../x", "not inside the workspace"),
        ("/etc", "not inside the workspace"),
        ("nothing-here", "eval_data"),
    ):
        msg, ids, _ = ev.on_start(ws, ["models/m"], ["studio-en"], 0, "cpu", split)
        assert ids is None and words in msg, msg
    assert job.list_runs(ws.root) == []
