"""`moshi-studio evaluate` for real: a job on the demo workspace's tiny model through the CLI (accelerate, the
supervisor, the chat engine), its folder, results read back, a resume that skips what is done."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from conftest import REPO

from backend.core.paths import PROBE_SETS
from backend.evaluate import fdb
from backend.evaluate.job import list_runs
from backend.evaluate.report import read_results
from backend.jobs.control import status
from backend.jobs.folder import tail_log
from backend.jobs.processes import members


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", "evaluate", *args], cwd=REPO, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_an_evaluation_job_streams_scores_and_resumes(demo_workspace, tmp_path: Path) -> None:
    probes = demo_workspace.root / "probes-one"
    shutil.copytree(PROBE_SETS / "studio-en" / "smooth_turn_taking" / "1", probes / "smooth_turn_taking" / "1")
    done = cli(
        "start",
        "--workspace",
        str(demo_workspace.root),
        "--models",
        "base=models/demo-lm",
        "--probes",
        "one=probes-one",
        "--device",
        "cpu",
        "--text-temperature",
        "0",
        "--name",
        "one",
        "--wait",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = [r for r in list_runs(demo_workspace.root) if r.id.endswith("-one")]  # the session's workspace
    assert status(run)["state"] == "finished"
    sample = run.dir / "outputs" / "base" / "one" / "smooth_turn_taking" / "1"
    assert fdb.done(sample)
    assert sf.info(sample / fdb.OUTPUT_WAV).frames == round(sf.info(sample / fdb.INPUT).duration * fdb.OUTPUT_RATE)
    results = read_results(run.dir)
    assert results["models"] == ["base"] and results["summary"]["base"]["smooth_turn_taking"]["samples"] == 1
    assert "smooth turn-taking: TOR" in (run.dir / "table.md").read_text()
    assert (run.dir / "tor_latency.png").stat().st_size > 0 and (run.dir / "backchannel_timing.png").is_file()
    saved = json.loads((run.dir / "config.json").read_text())["config"]
    assert saved["models"] == [f"base={demo_workspace.root / 'models' / 'demo-lm'}"]
    written = (sample / fdb.OUTPUT_JSON).stat().st_mtime_ns
    again = cli("resume", run.id, "--workspace", str(demo_workspace.root), "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (sample / fdb.OUTPUT_JSON).stat().st_mtime_ns == written  # done before: not streamed again
    shown = cli("show", run.id, "--workspace", str(demo_workspace.root))
    assert "| | base |" in shown.stdout


def test_bad_entries_are_refused_by_name_before_anything_is_written(demo_workspace) -> None:
    before = list_runs(demo_workspace.root)  # the session's demo workspace: other tests' evaluations stay
    for args, words in (
        (["--models", "bad label=models/demo-lm"], "label"),
        (["--models", "base=./models/nothing-here"], "no such folder"),
        (["--models", "base=models/demo-lm", "--probes", "nowhere"], "nowhere"),
    ):
        out = cli("start", "--workspace", str(demo_workspace.root), "--device", "cpu", *args)
        assert out.returncode == 2 and words in out.stderr, out.stderr
    assert list_runs(demo_workspace.root) == before


def test_start_slurm_writes_every_node_command_and_starts_nothing(demo_workspace, tmp_path: Path) -> None:
    """`evaluate start --slurm FILE` goes through the same command builder as the fine-tune and preprocessing runs."""
    from dataclasses import replace

    from test_slurm import HOSTS, run_script

    from backend.evaluate.config import load
    from backend.evaluate.job import RANK_MODULE
    from backend.jobs.command import accelerate_command

    before = list_runs(demo_workspace.root)
    script = tmp_path / "eval.sbatch"
    out = cli(
        "start",
        "--slurm",
        str(script),
        "--workspace",
        str(demo_workspace.root),
        "--models",
        "base=models/demo-lm",
        "--device",
        "cuda",
        "--num-processes",
        "8",
        "--num-machines",
        "4",
    )
    assert out.returncode == 0, out.stderr
    (run,) = [job for job in list_runs(demo_workspace.root) if job not in before]
    assert status(run)["state"] == "queued" and f"sbatch {script}" in out.stdout
    argvs, _ = run_script(script.read_text(), tmp_path / "nodes")
    assert argvs == [
        accelerate_command(replace(load(run), main_address=HOSTS[0]), run.dir, RANK_MODULE, rank) for rank in range(4)
    ]
    assert "#SBATCH --gpus-per-node=2" in script.read_text()


@pytest.mark.slow
def test_an_evaluation_aborted_mid_way_keeps_its_samples_and_resumes_to_the_end(demo_workspace) -> None:
    started = cli(
        "start",
        "--workspace",
        str(demo_workspace.root),
        "--models",
        "base=models/demo-lm",
        "--probes",
        "studio-en",
        "--max-probes",
        "1",
        "--device",
        "cpu",
        "--name",
        "to-abort",
    )
    assert started.returncode == 0, started.stdout + started.stderr
    (run,) = [r for r in list_runs(demo_workspace.root) if r.id.endswith("-to-abort")]
    outputs = run.dir / "outputs" / "base" / "studio-en"
    deadline = time.monotonic() + 600
    while not list(outputs.rglob(fdb.OUTPUT_JSON)) and time.monotonic() < deadline:  # the first probe is streamed
        assert status(run)["state"] == "running", tail_log(run)
        time.sleep(0.5)
    written = [p.parent for p in outputs.rglob(fdb.OUTPUT_JSON)]
    assert written, "no probe was streamed within 10 minutes"
    aborted_at = time.monotonic()
    shown = cli("abort", run.id, "--workspace", str(demo_workspace.root))
    assert shown.returncode == 0 and "aborted" in shown.stdout, shown.stdout + shown.stderr
    assert time.monotonic() - aborted_at < 30  # the ranks take SIGTERM at once: no 60 s grace used up
    assert status(run)["state"] == "aborted" and not members(run)
    assert not (run.dir / "results.json").exists()  # never scored: the table is made by a finished evaluation
    assert all(fdb.done(folder) for folder in written)  # what was streamed stays for Resume
    assert len(list(outputs.rglob(fdb.OUTPUT_JSON))) < len({s.task for s in fdb.find_samples(PROBE_SETS / "studio-en")})
    assert "aborted" in cli("show", run.id, "--workspace", str(demo_workspace.root)).stdout

    kept = {folder: (folder / fdb.OUTPUT_JSON).stat().st_mtime_ns for folder in written}
    again = cli("resume", run.id, "--workspace", str(demo_workspace.root), "--wait")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert status(run)["state"] == "finished" and status(run)["attempts"] == 2
    assert {f: (f / fdb.OUTPUT_JSON).stat().st_mtime_ns for f in written} == kept  # not streamed again
    tasks = {s.task for s in fdb.find_samples(PROBE_SETS / "studio-en")}
    summary = read_results(run.dir)["summary"]["base"]
    assert {task: row["samples"] for task, row in summary.items()} == dict.fromkeys(tasks, 1)  # one per task, all
    assert "smooth turn-taking: TOR" in cli("show", run.id, "--workspace", str(demo_workspace.root)).stdout
