"""A job's state as its files and processes tell it, and stopping a job.

The supervisor waits for the whole tree and records the exit code and final state itself, so they survive
a studio restart; if it is killed, the next status read notices (pid gone, or reused: the process start time
is compared) and records the job as failed or aborted."""

import contextlib
import os
import signal
import time
from typing import Any

from backend.jobs import processes
from backend.jobs.folder import ABORT_FILE, COMMAND_FILE, STATUS_FILE, Job, read_json, update_status

POLL_S = 0.2


def status(job: Job) -> dict[str, Any]:
    """status.json, corrected when the supervisor died without recording the end (kill -9, reboot) and no
    process of the job is left."""
    st = read_json(job.dir / STATUS_FILE)
    if st.get("state") == "running" and not processes.alive(st.get("pid"), st.get("proc_start")):
        st = read_json(job.dir / STATUS_FILE)  # the supervisor writes before it exits: re-read after the check
        if st.get("state") == "running" and not processes.members(job):  # orphans of a killed supervisor
            aborted = (job.dir / ABORT_FILE).exists()
            st = update_status(
                job,
                state="aborted" if aborted else "failed",
                ended=time.time(),
                message="the job's processes ended without recording an exit code",
            )
    return st


def abort(job: Job, grace_s: float = 60.0) -> str:
    """Stop a job: the abort file and SIGTERM to its worker processes (a trainer checkpoints at the next step
    boundary and exits), then after `grace_s` SIGKILL to every process of the tree, wherever it moved.
    Returns the job's final state; no process of the tree survives.

    The ranks are signalled, not the launchers: torchrun's agent answers SIGTERM by SIGKILLing its workers
    30 s later, which could cut a long checkpoint save short."""
    # The recorded state, not status(): if the supervisor died abnormally, its tree may still need killing.
    st = read_json(job.dir / STATUS_FILE)
    members = processes.members(job)
    if st.get("state") != "running" and not members:
        return st.get("state", "queued")
    (job.dir / ABORT_FILE).touch()
    module = read_json(job.dir / COMMAND_FILE).get("module", "")
    tree, ranks = processes.tree(st) | members, processes.ranks(st) or processes.orphan_ranks(members, module)
    if ranks:
        processes.send(ranks, signal.SIGTERM)
    else:  # still starting: nothing to checkpoint yet, stop the launcher
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(st["pgid"]), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while processes.living(tree) and time.monotonic() < deadline:
        st = {**st, **read_json(job.dir / STATUS_FILE)}  # the launcher's pid appears once it has started
        new_ranks = processes.ranks(st) - ranks  # started after the first look
        processes.send(new_ranks, signal.SIGTERM)
        ranks |= new_ranks
        tree |= processes.tree(st) | processes.members(job)
        time.sleep(POLL_S)
    deadline = time.monotonic() + 30  # SIGKILL cannot be refused; only a process stuck in the kernel lingers
    while processes.living(tree) and time.monotonic() < deadline:
        tree |= processes.tree(st) | processes.members(job)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(st["pgid"]), signal.SIGKILL)
        processes.send(tree, signal.SIGKILL)
        time.sleep(POLL_S / 4)
    return status(job).get("state", "aborted")  # the supervisor recorded the end, or status() records the kill
