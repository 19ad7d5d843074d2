"""The supervisor of one job: `python -m backend.jobs.supervisor DIR`, started by backend.jobs.launcher in a
new session. It runs command.json's argv, waits for every process of the tree (it is their subreaper), runs
command.json's optional `finish` argv (a stage's summary figure), then records the final state."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from backend.jobs import processes
from backend.jobs.folder import (
    ABORT_FILE,
    COMMAND_FILE,
    LOG_FILE,
    Job,
    failure_message,
    last_event,
    read_json,
    update_status,
)

FINISH_TIMEOUT_S = 300.0


def _run_finish(command: dict[str, Any], log: Any) -> None:
    """The stage's closing step (a figure): its failure is logged, never changes how the job is recorded."""
    if not command.get("finish"):
        return
    try:
        subprocess.run(
            command["finish"],
            cwd=command["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=FINISH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        log.write(f"finish step failed: {e}\n".encode())


def supervise(job_dir: Path) -> int:
    job = Job(Path(job_dir))
    stop = {"signalled": False}

    def note(signum: int, frame: Any) -> None:  # the ranks get their own SIGTERM from abort(); wait for them
        stop["signalled"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, note)
    processes.become_subreaper()
    sys.stdin.read()  # the launcher closes stdin once status.json records this process
    command = read_json(job.dir / COMMAND_FILE)
    with open(job.dir / LOG_FILE, "ab") as log:
        try:
            me = f"{os.getpid()} {processes.process_start(os.getpid())!r}"
            child = subprocess.Popen(
                command["argv"],
                cwd=command["cwd"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, processes.SUPERVISOR_ENV: me},
            )
            update_status(job, launcher_pid=child.pid, launcher_start=processes.process_start(child.pid))
            rc = child.wait()
        except OSError as e:
            log.write(f"cannot start {command['argv'][0]}: {e}\n".encode())
            rc = 127
        # Ranks may outlive the launcher (accelerate's one-process launcher dies at once on SIGTERM while the
        # trainer still checkpoints): the job ends when the last adopted orphan has.
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        _run_finish(command, log)
    stopped = stop["signalled"] or (job.dir / ABORT_FILE).exists()
    # A launcher killed after its ranks finished (accelerate's exits at once on a signal) returns non-zero, but
    # the job's own record of its end says what happened.
    done = rc == 0 or last_event(job).get("event") == "finished"
    state = "aborted" if stopped else "finished" if done else "failed"
    update_status(
        job, state=state, exit_code=rc, ended=time.time(), message=failure_message(job) if state == "failed" else ""
    )
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
