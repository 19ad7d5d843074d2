"""Starting jobs: the command a job runs, the devices it holds, and the one lock under which a workspace's
jobs start, so two starts cannot both pass the device check; and following a job from a shell."""

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError
from backend.core.paths import REPO
from backend.core.workspace import JOB_KINDS, RUNS_DIR
from backend.jobs import processes
from backend.jobs.accelerate_yaml import accelerate_config_yaml
from backend.jobs.command import accelerate_command, display_command, env_for
from backend.jobs.control import abort, status
from backend.jobs.folder import (
    ABORT_FILE,
    ACCELERATE_CONFIG_FILE,
    COMMAND_FILE,
    LOCK_FILE,
    LOG_FILE,
    STATUS_FILE,
    Job,
    read_json,
    update_status,
    write_json,
)
from backend.jobs.launch_config import LaunchConfig, gpu_id_list, on_cpu
from backend.jobs.slurm import refuse_here
from backend.web.accounts import AUTH_ENV

ENDING_GRACE_S = 5.0  # how long a job that recorded its end may take for its processes to exit
# Secrets of the studio's own process that a job's processes must not inherit (readable in /proc/*/environ).
PRIVATE_ENV = (AUTH_ENV,)


def devices(cfg: LaunchConfig) -> frozenset[str]:
    """What a job occupies on this machine: "cpu", "gpu:<id>" or "gpu:*" (all GPUs)."""
    if on_cpu(cfg):
        return frozenset({"cpu"})
    ids = gpu_id_list(cfg)
    return frozenset({"gpu:*"}) if ids is None else frozenset(f"gpu:{i}" for i in ids)


def devices_overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    def any_gpu(s: frozenset[str]) -> bool:
        return any(d.startswith("gpu:") for d in s)

    return bool(a & b) or ("gpu:*" in a and any_gpu(b)) or ("gpu:*" in b and any_gpu(a))


def write_command(job: Job, cfg: LaunchConfig, module: str, finish: list[str] | None = None) -> dict[str, Any]:
    """command.json: what the supervisor starts (`module --run-dir <job>` under accelerate), the devices the job
    holds, and an optional `finish` argv the supervisor runs after the processes end; beside it the same launch as
    an accelerate config file (accelerate_yaml.py)."""
    command = {
        "argv": accelerate_command(cfg, job.dir, module),
        "env": env_for(cfg),
        "cwd": str(REPO),
        "display": display_command(cfg, job.dir, module),
        "devices": sorted(devices(cfg)),
        "module": module,
        "finish": finish or [],
    }
    write_json(job.dir / COMMAND_FILE, command)
    write_text_atomic(job.dir / ACCELERATE_CONFIG_FILE, accelerate_config_yaml(cfg, job.dir, module))
    return command


def _running_devices(workspace_root: Path) -> Iterator[tuple[Job, frozenset[str]]]:
    """Every running job of the workspace, of every kind, with the devices its command.json records (a job
    started before devices were recorded counts as holding them all)."""
    for kind in JOB_KINDS:
        for status_file in sorted((Path(workspace_root) / kind).glob(f"*/{STATUS_FILE}")):
            job = Job(status_file.parent.resolve())
            if status(job).get("state") == "running":
                held = read_json(job.dir / COMMAND_FILE).get("devices")
                yield job, frozenset(held) if isinstance(held, list) else frozenset({"cpu", "gpu:*"})


def refuse_overlap(workspace_root: Path, mine: frozenset[str], job_dir: Path | None = None) -> None:
    for other, theirs in _running_devices(workspace_root):
        if other.dir != job_dir and devices_overlap(mine, theirs):
            kind = JOB_KINDS[other.dir.parent.name]
            raise ConfigError(
                f"{kind} {other.id} is running on {', '.join(sorted(theirs))}, which this run "
                f"({', '.join(sorted(mine))}) would share: abort it or wait for it to end"
            )


@contextlib.contextmanager
def workspace_lock(workspace_root: Path) -> Iterator[None]:
    """Serialises starts in a workspace, so two starts cannot both pass the device check."""
    lock = Path(workspace_root) / RUNS_DIR / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def launch(job: Job, prepare: Callable[[], dict[str, Any]]) -> None:
    """Start the supervisor of a job folder in a new session; returns at once. `prepare` validates and writes
    command.json, under the workspace's lock, and returns that command."""
    with workspace_lock(job.workspace):
        launch_locked(job, prepare)


def launch_locked(job: Job, prepare: Callable[[], dict[str, Any]]) -> None:
    """`launch` for a caller that holds the workspace's lock (a start that creates the folder under the lock)."""
    st = status(job)
    if st.get("slurm"):  # queued for sbatch, not for this machine
        raise refuse_here(job, str(st["slurm"]))
    left = processes.members(job)
    deadline = time.monotonic() + ENDING_GRACE_S
    while left and st.get("state") != "running" and time.monotonic() < deadline:
        time.sleep(0.1)  # a supervisor that has recorded the end is exiting: Resume right after is fine
        left = processes.members(job)
    if left:  # also the orphans of a killed supervisor: a second job would share the folder
        raise ConfigError(
            f"run {job.id} is already running (process(es) "
            f"{', '.join(str(pid) for pid, _ in sorted(left))}): abort it or wait for its end"
        )
    if st.get("state") == "running":
        raise ConfigError(f"run {job.id} is already running (pid {st.get('pid')})")
    command = prepare()
    refuse_overlap(job.workspace, frozenset(command["devices"]), job.dir)
    (job.dir / ABORT_FILE).unlink(missing_ok=True)  # a stale abort request would stop the new attempt at once
    inherited = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    env = {**inherited, **command["env"], "PYTHONUNBUFFERED": "1", processes.JOB_ENV: str(job.dir)}  # live logs
    attempt = int(st.get("attempts", 0)) + 1
    with open(job.dir / LOG_FILE, "ab") as log:
        log.write(f"=== attempt {attempt}: {command['display']}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend.jobs.supervisor", str(job.dir)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    update_status(
        job,
        state="running",
        pid=proc.pid,
        pgid=proc.pid,
        proc_start=processes.process_start(proc.pid),
        started=time.time(),
        ended=None,
        exit_code=None,
        attempts=attempt,
        message="",
        launcher_pid=None,
        launcher_start=None,
    )
    assert proc.stdin is not None
    proc.stdin.close()  # go: the supervisor waits for this, so it never finishes before "running" is recorded
    threading.Thread(target=proc.wait, name=f"reap-{job.id}", daemon=True).start()


def follow(job: Job) -> int:
    """Print the log as it grows until the job ends; SIGTERM/Ctrl-C (a cluster job ending) aborts the job.
    Exit code 0 when it finished."""

    def stop(signum: int, frame: Any) -> None:
        print(f"stopping run {job.id}...", file=sys.stderr)
        abort(job)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    offset = 0
    while True:
        st = status(job)
        state = st.get("state")
        with contextlib.suppress(FileNotFoundError), open(job.dir / LOG_FILE, "rb") as f:
            f.seek(offset)
            chunk = f.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        if state != "running":
            print(f"run {job.id}: {state}" + (f" ({st['message']})" if st.get("message") else ""))
            return 0 if state == "finished" else 1
        time.sleep(1.0)
