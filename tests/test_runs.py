"""Run registry and process owner: validation before launch, run folders, state after a studio restart,
device overlap, and abort reaching the whole process tree (a helper tree, then the real trainer)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from handler_helpers import wait_for
from train_helpers import write_dataset, write_model

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.workspace import RUNS_DIR
from backend.dataset import preprocess
from backend.finetune import runs
from backend.finetune.config import FinetuneConfig
from backend.finetune.runs import TRAIN_MODULE
from backend.jobs import control, folder, launcher, processes
from backend.jobs.command import accelerate_command

REPO = Path(__file__).resolve().parents[1]
# A process tree shaped like the worst case: a child that ignores SIGTERM, a grandchild that ignores it AND
# left the process group (setsid); every pid is written to pids.txt.
TREE = r"""
import os, signal, subprocess, sys, time
role, pids = sys.argv[1], sys.argv[2]
with open(pids, "a") as f:
    f.write(f"{role} {os.getpid()}\n")
if role == "root":
    subprocess.Popen([sys.executable, __file__, "stubborn", pids])
    subprocess.Popen([sys.executable, __file__, "escapee", pids])
else:
    if role == "escapee":
        os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
time.sleep(300)
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset and dep_q 16 tiny model, made once; every test copies nothing, it points at them."""
    root = tmp_path_factory.mktemp("assets")
    write_dataset(root / "dataset", [40, 40, 40, 40])
    write_model(root / "models" / "tiny", dep_q=16)
    write_model(root / "models" / "tiny8", dep_q=8)
    return root


@pytest.fixture
def ws(tmp_path: Path, assets: Path) -> Iterator[Path]:
    """A workspace whose dataset and models are symlinks to the shared assets; no run outlives the test."""
    (tmp_path / "models").mkdir()
    (tmp_path / "dataset").symlink_to(assets / "dataset")
    for name in ("tiny", "tiny8"):
        (tmp_path / "models" / name).symlink_to(assets / "models" / name)
    yield tmp_path
    for info in runs.list_runs(tmp_path):
        if info.state == "running":
            control.abort(folder.Job(info.dir), grace_s=0)


def cfg(**values: object) -> FinetuneConfig:
    base = {
        "base_model": "models/tiny",
        "train_data": "dataset",
        "device": "cpu",
        "max_frames": 16,
        "min_frames": 4,
        "max_steps": 4,
        "checkpoint_every": 0,
        "lr": 1e-3,
    }
    return config.from_dict(FinetuneConfig, base | values)


def living(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def tree_pids(path: Path) -> dict[str, int]:
    lines = path.read_text().splitlines() if path.exists() else []
    return {role: int(pid) for role, pid in (line.split() for line in lines)}


@pytest.fixture
def helper_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs start the helper tree instead of `accelerate launch` (the launcher's own code path otherwise)."""
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    pids = tmp_path / "pids.txt"
    monkeypatch.setattr(
        launcher,
        "accelerate_command",
        lambda c, run_dir, rank=None, module=None: [sys.executable, str(script), "root", str(pids)],
    )
    return pids


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "values,message",
    [
        ({"train_data": "no-such-dataset"}, "train_data: .*no-such-dataset not found"),
        ({"eval_data": "gone"}, "eval_data: .*gone not found"),
        ({"base_model": "models/missing"}, "base_model: .*models/missing not found"),
        ({"deepspeed": "zero4"}, "deepspeed: 'zero4'"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"lr": 0}, "lr must be > 0"),
        ({"num_processes": 1, "num_machines": 2}, "num_processes counts all machines"),
        ({"num_processes": 3, "num_machines": 2}, "must be a multiple of num_machines"),
        ({"num_processes": 2, "num_machines": 2, "machine_rank": 2}, "machine_rank must be in 0..1"),
        ({"max_frames": 8, "min_frames": 10}, r"max_frames \(8\) must be >= min_frames \(10\)"),
        ({"base_model": "models/tiny8"}, "dep_q is 8, but user_stream needs a dep_q 16 model"),
        ({"device": "cuda", "gpu_ids": "0,x"}, "gpu_ids: '0,x'"),
        ({"device": "cuda", "num_processes": 2, "gpu_ids": "3"}, "lists 1 GPU"),
    ],
)
def test_bad_configs_are_refused_before_anything_is_created(ws: Path, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        runs.create_run(ws, cfg(**values))
    assert not (ws / RUNS_DIR).exists() or not any((ws / RUNS_DIR).iterdir())


def test_cli_start_refuses_a_bad_config_with_a_message(ws: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.finetune.runs",
            "start",
            "--workspace",
            str(ws),
            "--train-data",
            "dataset",
            "--base-model",
            "models/tiny",
            "--device",
            "cpu",
            "--max-steps",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "error: max_steps must be >= 1" in out.stderr
    assert not (ws / RUNS_DIR).exists()


# ---------------------------------------------------------------- run folders and state from files


def test_create_run_writes_absolute_config_command_and_status(ws: Path) -> None:
    run = runs.create_run(ws, cfg(), name="My demo!")
    assert run.dir.parent == (ws / "runs").resolve() and run.id.endswith("-my-demo")
    saved = runs.run_config(run)
    assert saved.train_data == ws.resolve() / "dataset" and saved.base_model == str(ws.resolve() / "models/tiny")
    command = json.loads((run.dir / folder.COMMAND_FILE).read_text())
    assert command["argv"] == accelerate_command(saved, run.dir, TRAIN_MODULE) and command["cwd"] == str(REPO)
    assert command["env"] == {"CUDA_VISIBLE_DEVICES": ""}
    assert json.loads((run.dir / folder.STATUS_FILE).read_text())["state"] == "queued"
    second = runs.create_run(ws, cfg(), name="My demo!")  # same second, same name: its own folder
    assert second.dir != run.dir
    assert [i.id for i in runs.list_runs(ws)] == sorted([run.id, second.id], reverse=True)


def test_a_dead_or_reused_pid_is_not_running_after_a_restart(ws: Path) -> None:
    run = runs.create_run(ws, cfg())
    dead = subprocess.Popen(["true"])
    dead.wait()
    status = run.dir / folder.STATUS_FILE
    status.write_text(json.dumps({"state": "running", "pid": dead.pid, "pgid": dead.pid, "proc_start": 1.0}))
    info = runs.run_info(run)
    assert info.state == "failed" and "without recording an exit code" in info.message
    # a live pid with another start time is a reused pid, not the run
    status.write_text(json.dumps({"state": "running", "pid": os.getpid(), "pgid": os.getpid(), "proc_start": 1.0}))
    (run.dir / "abort").touch()
    assert control.status(run)["state"] == "aborted"
    with subprocess.Popen(["sleep", "60"], start_new_session=True) as alive:
        started = psutil.Process(alive.pid).create_time()
        status.write_text(json.dumps({"state": "running", "pid": alive.pid, "pgid": alive.pid, "proc_start": started}))
        assert control.status(run)["state"] == "running"
        alive.kill()


def test_metrics_progress_and_log_are_read_from_the_files(ws: Path) -> None:
    run = runs.create_run(ws, cfg(max_steps=10))
    assert runs.progress(run) == (0, 10, None) and folder.read_metrics(run) == [] and folder.tail_log(run) == ""
    lines = [
        {"step": 1, "max_steps": 10, "eta_s": 9.0, "loss": 5.0, "text_nonpad_loss": 3.0},
        {"event": "checkpoint", "step": 1, "path": "x"},
        {"step": 2, "max_steps": 10, "eta_s": 8.0, "loss": 4.5, "text_nonpad_loss": 2.5},
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"step": 3, "los'  # a line being appended
    (run.dir / "metrics.jsonl").write_text(text)
    (run.dir / "train.log").write_text("a" * 100 + "the end\n")
    assert folder.read_metrics(run) == lines
    assert runs.progress(run) == (2, 10, 8.0)
    assert folder.tail_log(run, 8) == "the end\n"
    assert runs.run_info(run).losses == {"loss": 4.5, "text_nonpad_loss": 2.5}


def test_devices_overlap_rules() -> None:
    def dev(**v: object) -> frozenset[str]:
        return launcher.devices(cfg(**v))

    assert launcher.devices_overlap(dev(device="cpu"), dev(device="cpu", num_processes=2))
    assert launcher.devices_overlap(dev(device="cuda", gpu_ids="0,1"), dev(device="cuda", gpu_ids="1"))
    assert not launcher.devices_overlap(dev(device="cuda", gpu_ids="0,1"), dev(device="cuda", gpu_ids="2,3"))
    assert launcher.devices_overlap(dev(device="cuda"), dev(device="cuda", gpu_ids="5"))  # "all" overlaps any GPU
    assert not launcher.devices_overlap(dev(device="cuda"), dev(device="cpu"))


# ---------------------------------------------------------------- processes (helper tree)


def test_abort_kills_the_whole_tree_and_a_second_cpu_run_is_refused(ws: Path, helper_tree: Path) -> None:
    run = runs.create_run(ws, cfg(), name="first")
    runs.start(run)
    wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the helper tree")
    pids = tree_pids(helper_tree)
    st = control.status(run)
    assert st["state"] == "running" and st["pgid"] == st["pid"]
    assert os.getpgid(pids["root"]) == st["pgid"]  # the launched tree is the run's process group...
    wait_for(lambda: os.getpgid(pids["escapee"]) != st["pgid"], 30, "the escapee to leave the group")  # ...not all
    other = runs.create_run(ws, cfg(num_processes=2), name="second")
    with pytest.raises(ConfigError, match=f"run {run.id} is running on cpu"):
        runs.start(other)
    with pytest.raises(ConfigError, match="already running"):
        runs.start(run)
    # a new process (a restarted studio) sees the run and aborts it
    listed = subprocess.run(
        [sys.executable, "-m", "backend.finetune.runs", "list", "--workspace", str(ws)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"{run.id}  running" in listed.stdout
    t0 = time.monotonic()
    aborted = subprocess.run(
        [sys.executable, "-m", "backend.finetune.runs", "abort", run.id, "--workspace", str(ws), "--grace", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert aborted.returncode == 0 and f"run {run.id}: aborted" in aborted.stdout, aborted.stderr
    assert time.monotonic() - t0 < 60
    assert living([*pids.values(), st["pid"]]) == []
    assert control.status(run)["state"] == "aborted"
    helper_tree.unlink()
    runs.start(other)  # the devices are free again
    wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the second tree")
    assert control.abort(other, grace_s=1) == "aborted"
    assert living(list(tree_pids(helper_tree).values())) == []


def test_preprocessing_and_fine_tuning_do_not_share_devices(ws: Path, helper_tree: Path) -> None:
    """A preprocessing run does not start on the devices a fine-tune holds, nor a fine-tune on a preprocessing
    run's: both are runs of the workspace's one registry."""
    (ws / "recordings").mkdir()
    annotate = config.from_dict(
        preprocess.run_config_class("annotate"), {"input": str(ws / "recordings"), "device": "cpu"}
    )
    holder = runs.start_new(ws, cfg(), name="holder")
    wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the helper tree")
    pre = preprocess.create_run(ws, "annotate", annotate)
    with pytest.raises(ConfigError, match=f"run {holder.id} is running on cpu"):
        preprocess.start(pre)
    assert control.status(pre)["state"] == "queued"
    assert control.abort(holder, grace_s=1) == "aborted"
    helper_tree.unlink()
    preprocess.start(pre)
    try:
        wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the preprocessing run's tree")
        with pytest.raises(ConfigError, match=f"preprocessing run {pre.id} is running on cpu"):
            runs.start_new(ws, cfg(), name="late")
        assert [i.id for i in runs.list_runs(ws)] == [holder.id]  # the refused start wrote no run folder
    finally:
        control.abort(pre, grace_s=1)


def cli(ws: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend.finetune.runs", *args, "--workspace", str(ws)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_start_refused_for_busy_devices_writes_nothing(ws: Path, helper_tree: Path) -> None:
    """`runs start` (and the studio's Start, the same function) while another run holds the CPU."""
    run = runs.start_new(ws, cfg(), name="holder")
    wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the helper tree")
    out = cli(
        ws, "start", "--train-data", "dataset", "--base-model", "models/tiny", "--device", "cpu", "--name", "late"
    )
    assert out.returncode == 2 and f"run {run.id} is running on cpu" in out.stderr, out.stderr
    assert [d.name for d in (ws / RUNS_DIR).iterdir() if d.is_dir()] == [run.id]
    assert [i.id for i in runs.list_runs(ws)] == [run.id]
    assert control.abort(run, grace_s=1) == "aborted"


def test_orphans_of_a_killed_supervisor_are_found_by_abort_and_block_resume(ws: Path, helper_tree: Path) -> None:
    """kill -9 of the supervisor: its tree (here processes that ignore SIGTERM and never look at their
    supervisor, like a stuck trainer) is re-parented; `runs resume` refuses, `runs abort` stops it all."""
    run = runs.start_new(ws, cfg(), name="orphaned")
    wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the helper tree")
    pids = list(tree_pids(helper_tree).values())
    supervisor = control.status(run)["pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: living([supervisor]) == [], 30, "the supervisor to die")
    assert len(living(pids)) == 3
    assert control.status(run)["state"] == "running"  # its processes still run
    out = cli(ws, "resume", run.id)
    assert out.returncode == 2 and f"run {run.id} is already running (process(es)" in out.stderr, (
        out.stdout + out.stderr
    )
    assert control.status(run)["attempts"] == 1
    out = cli(ws, "abort", run.id, "--grace", "2")
    assert out.returncode == 0 and f"run {run.id}: aborted" in out.stdout, out.stdout + out.stderr
    assert living(pids) == []
    helper_tree.unlink()
    runs.resume(run)  # nothing of the run is left: it may start again
    wait_for(lambda: len(tree_pids(helper_tree)) == 3, 60, "the second tree")
    assert control.abort(run, grace_s=1) == "aborted"


def test_the_supervisor_records_the_exit_code(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        launcher,
        "accelerate_command",
        lambda c, run_dir, rank=None, module=None: [sys.executable, "-c", "print('hello'); raise SystemExit(3)"],
    )
    run = runs.create_run(ws, cfg())
    runs.start(run)
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the run to end")
    info = runs.run_info(run)
    assert (info.state, info.exit_code) == ("failed", 3)
    assert "hello" in folder.tail_log(run)
    runs.resume(run)  # a failed run can be started again in its folder
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the second attempt to end")
    assert control.status(run)["attempts"] == 2 and folder.tail_log(run).count("hello") == 2
    status = run.dir / folder.STATUS_FILE
    status.write_text(json.dumps({**json.loads(status.read_text()), "state": "finished"}))
    with pytest.raises(ConfigError, match="has finished all its steps"):
        runs.resume(run)


# ---------------------------------------------------------------- the real trainer


@pytest.mark.slow
def test_real_two_process_run_aborts_gracefully_then_resumes_to_the_end(ws: Path) -> None:
    """`accelerate launch` with 2 gloo processes: abort checkpoints at a step boundary and leaves no process;
    resume finishes the remaining steps in the same folder."""
    run = runs.create_run(ws, cfg(num_processes=2, max_steps=12, main_port=29561), name="real")
    runs.start(run)
    supervisor = psutil.Process(control.status(run)["pid"])
    try:
        wait_for(lambda: runs.progress(run)[0] >= 1 or control.status(run)["state"] != "running", 400, "step 1")
        tree = {supervisor.pid, *(p.pid for p in supervisor.children(recursive=True))}
        # supervisor, accelerate (torchrun's agent), 2 ranks in sessions of their own
        assert len(tree) >= 4 and len({os.getpgid(pid) for pid in tree}) >= 3, folder.tail_log(run)
        first_step = next(m for m in folder.read_metrics(run) if "event" not in m)  # after the startup phases
        assert first_step["samples"] == 2  # two ranks, one example each per step
        assert control.abort(run, grace_s=120) == "aborted"
    finally:
        if control.status(run)["state"] == "running":
            control.abort(run, grace_s=0)
    assert living(list(tree)) == [], folder.tail_log(run)
    events = [m.get("event") for m in folder.read_metrics(run)]
    assert "aborted" in events and "checkpoint" in events, folder.tail_log(run)
    stopped_at = runs.progress(run)[0]
    assert stopped_at < 12
    runs.resume(run)
    try:
        wait_for(lambda: control.status(run)["state"] != "running", 400, "the resumed run to end")
    finally:
        if control.status(run)["state"] == "running":
            control.abort(run, grace_s=0)
    info = runs.run_info(run)
    assert (info.state, info.exit_code, info.step, info.max_steps) == ("finished", 0, 12, 12), folder.tail_log(run)
    steps = [m["step"] for m in folder.read_metrics(run) if "event" not in m]
    assert steps == list(range(1, 13))  # resumed right after the abort checkpoint: no step redone or skipped
    assert json.loads((run.dir / folder.STATUS_FILE).read_text())["attempts"] == 2


@pytest.mark.slow
def test_a_loss_that_stops_being_finite_fails_the_run_and_keeps_the_checkpoints_before(ws: Path) -> None:
    """Legal but unstable AdamW settings (beta2 0, eps 1e-30: a weight whose gradient is zero for one step
    jumps by lr * m / eps) make the real trainer's loss non-finite after a few finite steps."""
    out = cli(
        ws,
        "start",
        "--train-data",
        "dataset",
        "--base-model",
        "models/tiny",
        "--device",
        "cpu",
        "--max-frames",
        "16",
        "--min-frames",
        "4",
        "--max-steps",
        "12",
        "--checkpoint-every",
        "1",
        "--keep-checkpoints",
        "20",
        "--lr",
        "0.01",
        "--beta2",
        "0",
        "--eps",
        "1e-30",
        "--wait",
        timeout=600,
    )
    match = re.search(r"loss became (NaN|Inf) at step (\d+)", out.stdout)
    assert out.returncode == 1 and match, out.stdout[-3000:] + out.stderr
    bad_step = int(match.group(2))
    (info,) = runs.list_runs(ws)
    assert out.stdout.endswith(f"run {info.id}: failed ({match.group(0)})\n")  # the last line of --wait
    assert (info.state, info.message) == ("failed", match.group(0)) and info.exit_code not in (0, None)
    run = folder.Job(info.dir)
    rows = folder.read_metrics(run)
    assert [m["step"] for m in rows if "event" not in m] == list(range(1, bad_step))  # stopped at once
    assert rows[-1] == {"event": "failed", "step": bad_step, "message": match.group(0)}
    kept = sorted(int(p.name.split("-")[1]) for p in (run.dir / "checkpoints").glob("step-*"))
    assert kept == list(range(1, bad_step)), kept  # every step before; none of the state that gave the bad loss


@pytest.mark.slow
def test_the_trainer_stops_when_its_supervisor_is_killed(ws: Path) -> None:
    """The real trainer notices its supervisor's death at the next step, checkpoints and exits; resume then
    continues in the same folder with one trainer: every step once."""
    # Enough steps (6 s unloaded) that the trainer cannot end before it next checks on its supervisor (every 2 s).
    out = cli(
        ws,
        "start",
        "--train-data",
        "dataset",
        "--base-model",
        "models/tiny",
        "--device",
        "cpu",
        "--max-frames",
        "16",
        "--min-frames",
        "4",
        "--max-steps",
        "60",
        "--checkpoint-every",
        "0",
    )
    assert out.returncode == 0, out.stderr
    (info,) = runs.list_runs(ws)
    run = folder.Job(info.dir)
    wait_for(lambda: runs.progress(run)[0] >= 2 or control.status(run)["state"] != "running", 400, "step 2")
    os.kill(control.status(run)["pid"], signal.SIGKILL)
    wait_for(lambda: not processes.members(run), 60, "every process of the run to end")
    events = [m.get("event") for m in folder.read_metrics(run)]
    assert events[-1] == "aborted" and "checkpoint" in events, folder.tail_log(run)
    stopped_at = runs.progress(run)[0]
    assert stopped_at < 60 and "supervisor is gone" in folder.tail_log(run)
    assert control.status(run)["state"] in ("failed", "aborted")
    out = cli(ws, "resume", run.id, "--wait", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    steps = [m["step"] for m in folder.read_metrics(run) if "event" not in m]
    assert steps == list(range(1, 61))  # one trainer at a time: no step twice, none skipped


def test_cli_start_slurm_writes_every_node_command_and_starts_nothing(ws: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from test_slurm import HOSTS, run_script

    script = tmp_path / "ft.sbatch"
    out = cli(
        ws,
        "start",
        "--slurm",
        str(script),
        "--train-data",
        "dataset",
        "--base-model",
        "models/tiny",
        "--device",
        "cuda",
        "--num-processes",
        "16",
        "--num-machines",
        "4",
        "--max-steps",
        "4",
    )
    assert out.returncode == 0, out.stderr
    (info,) = runs.list_runs(ws)
    run = folder.Job(info.dir)
    assert info.state == "queued" and f"sbatch {script}" in out.stdout  # a cluster job: nothing started here
    assert control.status(run)["attempts"] == 0 and not (run.dir / folder.LOG_FILE).exists()
    saved = runs.run_config(run)
    argvs, _ = run_script(script.read_text(), tmp_path / "nodes")
    assert argvs == [
        accelerate_command(replace(saved, main_address=HOSTS[0]), run.dir, TRAIN_MODULE, rank) for rank in range(4)
    ]
    assert "#SBATCH --gpus-per-node=4" in script.read_text()
    assert "num_machines: 4" in (run.dir / folder.ACCELERATE_CONFIG_FILE).read_text()
    out = cli(ws, "resume", run.id)  # would start the 16 processes here: refused, the script named
    assert out.returncode == 2 and f"sbatch {script}" in out.stderr, out.stderr
    assert control.status(run)["attempts"] == 0 and not (run.dir / folder.LOG_FILE).exists()


def test_a_slurm_start_is_refused_before_any_folder_when_it_cannot_be_run(ws: Path, tmp_path: Path) -> None:
    """'auto' would pick this machine's device for the nodes; a script in a folder that is not there would leave
    a run nobody can submit."""
    for device, script, words in (
        ("auto", tmp_path / "ft.sbatch", "device: 'auto'"),
        ("cuda", tmp_path / "no-such-folder" / "ft.sbatch", "does not exist"),
    ):
        out = cli(
            ws,
            "start",
            "--slurm",
            str(script),
            "--train-data",
            "dataset",
            "--base-model",
            "models/tiny",
            "--device",
            device,
            "--num-processes",
            "8",
            "--num-machines",
            "4",
        )
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert runs.list_runs(ws) == [] and not script.exists()


def test_a_runs_processes_do_not_inherit_the_studios_password(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The studio's MOSHI_STUDIO_AUTH would be readable in every run process's /proc/<pid>/environ."""
    monkeypatch.setenv("MOSHI_STUDIO_AUTH", "alice:secret")
    monkeypatch.setenv("MOSHI_STUDIO_PROBE", "visible")  # any other variable still reaches the run
    script = "import os; print('auth', os.environ.get('MOSHI_STUDIO_AUTH'), os.environ.get('MOSHI_STUDIO_PROBE'))"
    monkeypatch.setattr(launcher, "accelerate_command", lambda *a, **k: [sys.executable, "-c", script])
    run = runs.create_run(ws, cfg())
    runs.start(run)
    wait_for(lambda: control.status(run)["state"] != "running", 60, "the run to end")
    assert "auth None visible" in folder.tail_log(run)
