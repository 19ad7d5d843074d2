"""A job's folder, `<workspace>/<kind>/<YYYYmmdd-HHMMSS>-<slug>/` (kind: runs/, preprocess/, evaluations/; the
workspace names them), and the files every job has. Torch-free: the launcher, the supervisor, the job's own
processes and the studio all read them; a stage adds files of its own (a fine-tune's checkpoints/, loss.png)."""

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.core.atomic import write_text_atomic
from backend.core.errors import StudioError

CONFIG_FILE = "config.json"  # the job's settings (paths absolute): what its processes read
COMMAND_FILE = "command.json"  # {"argv", "env", "cwd", "display", "devices", "module", "finish"}: what is started
ACCELERATE_CONFIG_FILE = "accelerate_config.yaml"  # the same launch as an `accelerate config` file, to run by hand
STATUS_FILE = "status.json"  # state, pid/pgid, process start time, exit code, times
LOG_FILE = "train.log"  # stdout+stderr of the whole process tree
METRICS_FILE = "metrics.jsonl"  # one line per logged step or event, written by the job's rank 0
ABORT_FILE = "abort"  # asks the job's processes for a graceful stop
LOCK_FILE = ".lock"  # in the workspace's runs/: serialises starts in a workspace


@dataclass(frozen=True)
class Job:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def workspace(self) -> Path:
        return self.dir.parent.parent


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StudioError(f"{path}: cannot read ({e})") from None
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def update_status(job: Job, **changes: Any) -> dict[str, Any]:
    status = {**read_json(job.dir / STATUS_FILE), **changes}
    write_json(job.dir / STATUS_FILE, status)
    return status


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def new_job(parent: Path, name: str) -> Job:
    """A new, empty job folder `<parent>/<timestamp>-<slug of name>`."""
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(name)}"
    for n in range(1, 1000):
        job_dir = parent / (base if n == 1 else f"{base}-{n}")
        try:
            job_dir.mkdir()  # exclusive: two jobs created in the same second get different folders
            break
        except FileExistsError:
            continue
    else:
        raise StudioError(f"{parent}: cannot make a new folder named {base}-N")
    return Job(job_dir)


def mark_queued(job: Job, slurm: str = "") -> None:
    """The last file of a new job: listings show only folders that have it (their other files exist). `slurm`: the
    batch script a job created for a cluster runs from (`start --slurm FILE`), absolute, so the launcher can refuse
    to start it here and name the script to submit instead."""
    status: dict[str, Any] = {"state": "queued", "created": time.time(), "attempts": 0}
    if slurm:
        status["slurm"] = os.path.abspath(slurm)
    write_json(job.dir / STATUS_FILE, status)


def open_job(parent: Path, job: str | Path, kind: str) -> Job:
    """A job by id (a folder under `parent`) or by the path of its folder; `kind` names it in the error."""
    path = Path(job)
    if not (path / CONFIG_FILE).is_file():
        path = Path(parent) / str(job)
    if not (path / CONFIG_FILE).is_file():
        raise StudioError(f"{path}: not a {kind} folder (no {CONFIG_FILE})")
    return Job(path.resolve())


def list_jobs(parent: Path) -> list[Job]:
    """Every job folder under `parent`, newest first."""
    found = parent.glob(f"*/{STATUS_FILE}") if parent.is_dir() else []
    return [Job(f.parent.resolve()) for f in sorted(found, reverse=True)]


def read_metrics(job: Job) -> list[dict[str, Any]]:
    return read_jsonl(job.dir / METRICS_FILE)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON-lines file (a line being appended right now is skipped); none if absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def last_event(job: Job) -> dict[str, Any]:
    """The last event rank 0 recorded in metrics.jsonl ({} for none): "finished", "aborted", "failed", ..."""
    events = [m for m in read_metrics(job) if "event" in m]
    return events[-1] if events else {}


# The last error a process printed (a traceback's final line), for a job that ended without saying why.
_ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception)|error)\b:?\s*(?P<text>.+)$")
_LOG_ERROR_BYTES = 64 * 2**10


def failure_message(job: Job) -> str:
    """Why the job's processes stopped: what they said (the last event is "failed", with a message), else the last
    error line of the log (an unexpected error such as a full disk while writing a checkpoint)."""
    last = last_event(job)
    if last.get("event") == "failed" and last.get("message"):
        return str(last["message"])
    found = [m for line in tail_log(job, _LOG_ERROR_BYTES).splitlines() if (m := _ERROR_LINE.match(line.strip()))]
    if not found:
        return ""
    text = found[-1].group(0)[:500]
    if "No space left on device" in text or "Errno 28" in text:
        return f"the disk is full: free some space, then resume ({text})"
    return text


def tail_log(job: Job, n_bytes: int = 20_000) -> str:
    try:
        with open(job.dir / LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n_bytes))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
