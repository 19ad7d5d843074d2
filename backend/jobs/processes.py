"""The processes of a job: who belongs to it, wherever they were re-parented, and whether they still live.

A job is started as a supervisor in a new session (pgid = supervisor pid), which starts accelerate's
launcher. torchrun starts each rank in a session of its own, so the group alone does not reach them: the
supervisor is a child subreaper (every process of the tree stays its descendant even when its parent dies),
and every process inherits JOB_ENV=<job folder>, so even the orphans of a killed supervisor are found.
Torch-free: the job's own processes ask `supervisor_gone` every few seconds."""

import contextlib
import ctypes
import os
from typing import Any

import psutil

from backend.jobs.folder import Job

JOB_ENV = "MOSHI_STUDIO_RUN"
SUPERVISOR_ENV = "MOSHI_STUDIO_SUPERVISOR"  # "<pid> <process start time>"

Proc = tuple[int, float]  # (pid, start time): a pid alone may be reused


def process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int | None, started: float | None) -> bool:
    """The recorded process still runs (same pid AND same start time: pids get reused); zombies are dead."""
    if not pid or started is None:
        return False
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def supervisor_gone() -> bool:
    """Called in a job's processes: its supervisor died (SIGKILL), so nothing would record the end or answer
    an abort: time to stop. False outside a supervised job."""
    pid, _, start = os.environ.get(SUPERVISOR_ENV, "").partition(" ")
    try:
        return not alive(int(pid), float(start))
    except ValueError:
        return False


def _ident(p: psutil.Process) -> Proc:
    return p.pid, p.create_time()


def living(procs: set[Proc]) -> set[Proc]:
    return {(pid, t) for pid, t in procs if alive(pid, t)}


def tree(st: dict[str, Any]) -> set[Proc]:
    """The supervisor recorded in a status and all its descendants, plus any process still in the job's group
    (when the supervisor itself is gone)."""
    found: set[Proc] = set()
    if alive(st.get("pid"), st.get("proc_start")):
        with contextlib.suppress(psutil.Error):
            sup = psutil.Process(st["pid"])
            found |= {_ident(p) for p in [sup, *sup.children(recursive=True)]}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == st.get("pgid"):
                found |= {_ident(q) for q in [p, *p.children(recursive=True)]}
    return found


def ranks(st: dict[str, Any]) -> set[Proc]:
    """The job's worker processes: the launcher's children, and orphans the supervisor adopted (ranks whose
    launcher died)."""
    if not alive(st.get("pid"), st.get("proc_start")):
        return set()
    launcher = st.get("launcher_pid"), st.get("launcher_start")
    try:
        found = {_ident(p) for p in psutil.Process(st["pid"]).children()} - {launcher}
        if alive(*launcher):
            found |= {_ident(p) for p in psutil.Process(launcher[0]).children()}
    except psutil.Error:
        return set()
    return found


def members(job: Job) -> set[Proc]:
    """Every living process started for the job, found by the JOB_ENV it inherited."""
    found = set()
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(JOB_ENV) == str(job.dir):
                found.add(_ident(p))
    return living(found)


def orphan_ranks(procs: set[Proc], module: str) -> set[Proc]:
    """The workers among a job's processes: those running its module (not the launchers, whose argv names the
    module too)."""
    found = set()
    for pid, t in procs:
        with contextlib.suppress(psutil.Error):
            argv = psutil.Process(pid).cmdline()
            if module in argv and "launch" not in argv:
                found.add((pid, t))
    return found


def send(procs: set[Proc], sig: int) -> None:
    for pid, _ in living(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def become_subreaper() -> None:
    """Orphans of the tree get re-parented to this process instead of init (Linux), so it can wait for
    every one of them and `abort` finds them among its descendants."""
    PR_SET_CHILD_SUBREAPER = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
