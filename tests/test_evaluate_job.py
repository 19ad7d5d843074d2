"""`moshi-studio evaluate` for real: a job on the demo workspace's tiny model through the CLI (accelerate, the
supervisor, the chat engine), its folder, results read back, a resume that skips what is done."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from backend.evaluate import fdb
from backend.evaluate.config import PROBE_SETS
from backend.evaluate.job import list_runs
from backend.evaluate.report import read_results
from backend.jobs.control import status
from conftest import REPO


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", "evaluate", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_an_evaluation_job_streams_scores_and_resumes(demo_workspace, tmp_path: Path) -> None:
    probes = demo_workspace.root / "probes-one"
    shutil.copytree(PROBE_SETS / "studio-en" / "smooth_turn_taking" / "1", probes / "smooth_turn_taking" / "1")
    done = cli("start", "--workspace", str(demo_workspace.root), "--models", "base=models/demo-lm",
               "--probes", "one=probes-one", "--device", "cpu", "--text-temperature", "0", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = list_runs(demo_workspace.root)
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
    for args, words in ((["--models", "bad label=models/demo-lm"], "label"),
                        (["--models", "base=./models/nothing-here"], "no such folder"),
                        (["--models", "base=models/demo-lm", "--probes", "nowhere"], "nowhere")):
        out = cli("start", "--workspace", str(demo_workspace.root), "--device", "cpu", *args)
        assert out.returncode == 2 and words in out.stderr, out.stderr
    assert list_runs(demo_workspace.root) == before
