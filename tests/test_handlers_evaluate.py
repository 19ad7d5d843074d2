"""The Evaluate tab's handlers called directly (no browser): the model list, a refused start, a client's paths
confined to the workspace, and a finished evaluation's table and figures read back from its folder."""

from pathlib import Path

from handler_helpers import make_workspace

from backend.evaluate import job
from backend.evaluate.report import REFERENCE, TURN_UNITS, write_figures, write_results
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
    bar, shown, tor, bc, turns, _ = ev.on_tick(ws, run.name)
    assert "| | base | tuned |" in shown and "| smooth turn-taking: TOR ↑ | 0.000 | 1.000 |" in shown
    assert Path(tor).name == "tor_latency.png" and Path(bc).name == "backchannel_timing.png"
    assert turns is None  # no evaluation split: no continuations, no figure of them


def units(per_minute: float, jsd: float | None) -> dict[str, dict[str, float | None]]:
    return {
        unit: {"per_minute": per_minute + i, "seconds": 10.0 * per_minute, "jsd": jsd}
        for i, unit in enumerate(TURN_UNITS)
    }


def test_the_continuations_turn_taking_is_drawn_per_model_beside_the_reference_and_shown(tmp_path: Path) -> None:
    from figure_helpers import png_size

    from backend.evaluate.report import TURNS_FIGURE, turn_taking_figure

    results = RESULTS | {"turn_taking": {REFERENCE: units(2.0, 0.0), "base": units(5.0, 0.8), "tuned": units(3.0, 0.1)}}
    fig = turn_taking_figure(results)
    rates, seconds, jsd = fig.axes
    n = len(TURN_UNITS)
    # bars in order: the reference's units, then each model's; the distance panel has no reference bars
    assert [b.get_height() for b in rates.patches] == [v + i for v in (2.0, 5.0, 3.0) for i in range(n)]
    assert [b.get_height() for b in seconds.patches] == [10 * v for v in (2.0, 5.0, 3.0) for _ in range(n)]
    assert [round(b.get_height(), 3) for b in jsd.patches] == [0.8] * n + [0.1] * n
    assert [t.get_text() for t in rates.get_legend().get_texts()] == [REFERENCE, "base", "tuned"]

    ws = make_workspace(tmp_path)
    run = ws.evaluations / "20260101-000000-y"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"config": {}}')
    mark_queued(job.Job(run))
    write_results(run, results)
    write_figures(run, results)
    *_, turns, _ = ev.on_tick(ws, run.name)
    assert Path(turns) == run / TURNS_FIGURE and png_size(Path(turns)) == (1400, 400)


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


def test_the_number_of_continued_dialogues_reaches_the_job_and_is_bounded(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    (ws.models / "m").mkdir()
    assert ev.read_form(ws, ["models/m"], ["studio-en"], 0, "cpu", "dataset", 5).continued_dialogues == 5
    assert ev.read_form(ws, ["models/m"], ["studio-en"], 0, "cpu").continued_dialogues == 8  # the config's default
    for bad in (0, -3, 10**9, float("inf")):
        msg, ids, _ = ev.on_start(ws, ["models/m"], ["studio-en"], 0, "cpu", "", bad)
        assert ids is None and msg.startswith("✘"), msg
        assert "continued_dialogues" in msg or "infinity" in msg, msg
    assert job.list_runs(ws.root) == []
