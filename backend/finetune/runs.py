"""The run registry and process owner: one folder per fine-tune run under `<workspace>/runs/`.

    runs/<YYYYmmdd-HHMMSS>-<slug>/  config.json, command.json, status.json, train.log, metrics.jsonl,
                                   checkpoints/, abort, loss.png (backend.finetune.run_folder says what each holds)

Everything is read back from these files, so a restarted studio (or another shell) sees every run.
A run is started as a small supervisor, `python -m backend.finetune.runs _supervise DIR`, in a new session (its
process group, pgid = supervisor pid, holds accelerate's launcher). torchrun starts each rank in a session
of its own, so the group alone does not reach them: the supervisor is a child subreaper, every process of
the tree stays its descendant even when its parent dies, and `abort` walks that tree. The supervisor waits
for the whole tree and records the exit code and final state itself, so they survive a studio restart; if
it is killed, the next status read notices (pid gone, or reused: the process start time is compared) and
records the run as failed or aborted.
"""

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

from backend.core import config, figures
from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError, StudioError
from backend.core.launch import LaunchConfig, gpu_id_list, on_cpu
from backend.core.paths import REPO
from backend.core.workspace import PREPROCESS_DIR, RUNS_DIR
from backend.finetune.command import TRAIN_MODULE, accelerate_command, display_command, env_for
from backend.finetune.config import DEEPSPEED_PRESETS, FinetuneConfig, check_config
from backend.finetune.pace import current_phase
from backend.finetune.run_folder import (ABORT_FILE, COMMAND_FILE, CONFIG_FILE, LOCK_FILE, LOG_FILE, METRICS_FILE,
                                         STATUS_FILE, SUMMARY_PLOT)

POLL_S = 0.2
# Every process of a run inherits RUN_ENV=<run folder>, so it can be found wherever it was re-parented (its
# supervisor killed by SIGKILL); the trainer stops by itself once the supervisor in SUPERVISOR_ENV is gone.
RUN_ENV = "MOSHI_STUDIO_RUN"
ENDING_GRACE_S = 5.0  # how long a run that recorded its end may take for its processes to exit
SUPERVISOR_ENV = "MOSHI_STUDIO_SUPERVISOR"  # "<pid> <process start time>"


@dataclass(frozen=True)
class Run:
    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def workspace(self) -> Path:
        return self.dir.parent.parent

    def config(self) -> FinetuneConfig:
        return config.load(FinetuneConfig, self.dir / CONFIG_FILE)


@dataclass(frozen=True)
class RunInfo:
    id: str
    dir: Path
    state: str
    created: float
    started: float | None
    ended: float | None
    step: int
    max_steps: int
    eta_s: float | None
    losses: dict[str, float | None]  # the newest logged value of every *loss key
    exit_code: int | None
    message: str
    phase: str = ""  # what a running trainer does before its first step, e.g. "loading the base model x (35 s)"


@dataclass
class ShowConfig:
    plot: Path | None = figures.plot_option("the run's loss curves (from metrics.jsonl)")


# ---------------------------------------------------------------- configuration before launch

def absolute_config(cfg: FinetuneConfig, workspace_root: Path) -> FinetuneConfig:
    """The config with workspace-relative paths made absolute (the trainer runs with cwd = repo)."""
    root = Path(workspace_root).resolve()

    def local(p: str | Path) -> Path:
        return Path(p) if Path(p).is_absolute() else root / p

    changes: dict[str, Any] = {"train_data": local(cfg.train_data)}
    if cfg.eval_data is not None:
        changes["eval_data"] = local(cfg.eval_data)
    # A base model that is not in the workspace stays a hub repo id (workspace.py's convention).
    if local(cfg.base_model).exists():
        changes["base_model"] = str(local(cfg.base_model))
    if cfg.deepspeed not in ("", "none", *DEEPSPEED_PRESETS) and local(cfg.deepspeed).exists():
        changes["deepspeed"] = str(local(cfg.deepspeed))
    return dataclasses.replace(cfg, **changes)


def validate_before_launch(cfg: FinetuneConfig, workspace_root: Path) -> None:
    """Raise ConfigError for anything that would fail after launch: check_config on the config with the
    workspace's paths, and a base model meant to be in the workspace that is not there."""
    parts = Path(cfg.base_model).parts
    if parts and not Path(cfg.base_model).is_absolute() and (Path(workspace_root) / parts[0]).is_dir() \
            and not (Path(workspace_root) / cfg.base_model).exists():
        raise ConfigError(f"base_model: {Path(workspace_root).resolve() / cfg.base_model} not found "
                          f"(make it with the init stage, moshi-studio init)")
    check_config(absolute_config(cfg, workspace_root))


# ---------------------------------------------------------------- files of a run

def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StudioError(f"{path}: cannot read ({e})") from None
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def _update_status(run: Run, **changes: Any) -> dict[str, Any]:
    status = {**_read_json(run.dir / STATUS_FILE), **changes}
    _write_json(run.dir / STATUS_FILE, status)
    return status


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"


def create_run(workspace_root: Path, cfg: FinetuneConfig, name: str | None = None) -> Run:
    """Validate, then make `runs/<timestamp>-<slug>/` with config.json, command.json and a queued status."""
    validate_before_launch(cfg, workspace_root)
    return _make_run(workspace_root, cfg, name)


def _make_run(workspace_root: Path, cfg: FinetuneConfig, name: str | None) -> Run:
    cfg = absolute_config(cfg, workspace_root)
    run = new_run(Path(workspace_root).resolve() / RUNS_DIR, name or f"{Path(cfg.base_model).name}-{cfg.mode}")
    config.save(cfg, run.dir / CONFIG_FILE)
    write_command(run, cfg)
    mark_queued(run)
    return run


def mark_queued(run: Run) -> None:
    """The last file of a new run: listings show only folders that have it (their other files exist)."""
    _write_json(run.dir / STATUS_FILE, {"state": "queued", "created": time.time(), "attempts": 0})


def new_run(parent: Path, name: str) -> Run:
    """A new, empty run folder `<parent>/<timestamp>-<slug of name>`."""
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(name)}"
    for n in range(1, 1000):
        run_dir = parent / (base if n == 1 else f"{base}-{n}")
        try:
            run_dir.mkdir()  # exclusive: two runs created in the same second get different folders
            break
        except FileExistsError:
            continue
    else:
        raise StudioError(f"{parent}: cannot make a new folder named {base}-N")
    return Run(run_dir)


def write_command(run: Run, cfg: LaunchConfig, module: str = TRAIN_MODULE) -> dict[str, Any]:
    command = {"argv": accelerate_command(cfg, run.dir, module=module), "env": env_for(cfg), "cwd": str(REPO),
               "display": display_command(cfg, run.dir, module=module), "devices": sorted(devices(cfg))}
    _write_json(run.dir / COMMAND_FILE, command)
    return command


def open_run(workspace_root: Path, run: str | Path) -> Run:
    """A run by id (a folder under <workspace>/runs) or by the path of its folder."""
    path = Path(run)
    if not (path / CONFIG_FILE).is_file():
        path = Path(workspace_root) / RUNS_DIR / str(run)
    if not (path / CONFIG_FILE).is_file():
        raise StudioError(f"{path}: not a run folder (no {CONFIG_FILE})")
    return Run(path.resolve())


def read_metrics(run: Run) -> list[dict[str, Any]]:
    """Every complete line of metrics.jsonl (a line being appended right now is skipped)."""
    try:
        text = (run.dir / METRICS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict):
                rows.append(row)
    return rows


def plot_losses(run: Run, path: Path) -> Path:
    return figures.save(figures.loss_curves(read_metrics(run), f"run {run.id}"), path)


def tail_log(run: Run, n_bytes: int = 20_000) -> str:
    try:
        with open(run.dir / LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n_bytes))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _last_step(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    return next((m for m in reversed(metrics) if "event" not in m and "step" in m), {})


def progress(run: Run, metrics: list[dict[str, Any]] | None = None) -> tuple[int, int, float | None]:
    """(optimiser step, max_steps, ETA in seconds or None) from the newest metrics line."""
    last = _last_step(read_metrics(run) if metrics is None else metrics)
    max_steps = last.get("max_steps") or run.config().max_steps
    return int(last.get("step", 0)), int(max_steps), last.get("eta_s")


# ---------------------------------------------------------------- processes

def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int | None, started: float | None) -> bool:
    """The recorded process still runs (same pid AND same start time: pids get reused); zombies are dead."""
    if not pid or started is None:
        return False
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 0.05 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def supervisor_gone() -> bool:
    """Called in a run's trainer: its supervisor died (SIGKILL), so nothing would record the end or answer
    an abort: time to stop. False outside a supervised run."""
    pid, _, start = os.environ.get(SUPERVISOR_ENV, "").partition(" ")
    try:
        return not _alive(int(pid), float(start))
    except ValueError:
        return False


def status(run: Run) -> dict[str, Any]:
    """status.json, corrected when the supervisor died without recording the end (kill -9, reboot) and no
    process of the run is left."""
    st = _read_json(run.dir / STATUS_FILE)
    if st.get("state") == "running" and not _alive(st.get("pid"), st.get("proc_start")):
        st = _read_json(run.dir / STATUS_FILE)  # the supervisor writes before it exits: re-read after the check
        if st.get("state") == "running" and not _members(run):  # orphans of a killed supervisor still run it
            aborted = (run.dir / ABORT_FILE).exists()
            st = _update_status(run, state="aborted" if aborted else "failed", ended=time.time(),
                                message="the run's processes ended without recording an exit code")
    return st


def run_info(run: Run) -> RunInfo:
    st = status(run)
    metrics = read_metrics(run)
    last = _last_step(metrics)
    step, max_steps, eta = progress(run, metrics)
    return RunInfo(id=run.id, dir=run.dir, state=st.get("state", "queued"), created=st.get("created", 0.0),
                   started=st.get("started"), ended=st.get("ended"), step=step, max_steps=max_steps,
                   eta_s=eta if st.get("state") == "running" else None,
                   losses={k: v for k, v in last.items() if k.endswith("loss")},
                   exit_code=st.get("exit_code"), message=st.get("message", ""),
                   phase=current_phase(metrics, time.time()) if st.get("state") == "running" else "")


def list_runs(workspace_root: Path) -> list[RunInfo]:
    """Every run of the workspace, newest first."""
    root = Path(workspace_root) / RUNS_DIR
    dirs = sorted((d for d in root.glob("*") if (d / STATUS_FILE).is_file()), reverse=True) if root.is_dir() else []
    return [run_info(Run(d.resolve())) for d in dirs]


def devices(cfg: LaunchConfig) -> frozenset[str]:
    """What a run occupies on this machine: "cpu", "gpu:<id>" or "gpu:*" (all GPUs)."""
    if on_cpu(cfg):
        return frozenset({"cpu"})
    ids = gpu_id_list(cfg)
    return frozenset({"gpu:*"}) if ids is None else frozenset(f"gpu:{i}" for i in ids)


def devices_overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    def any_gpu(s: frozenset[str]) -> bool:
        return any(d.startswith("gpu:") for d in s)

    return bool(a & b) or ("gpu:*" in a and any_gpu(b)) or ("gpu:*" in b and any_gpu(a))


def _running_devices(workspace_root: Path) -> Iterator[tuple[Run, frozenset[str]]]:
    """Every running job of the workspace, fine-tune or preprocessing, with the devices its command.json records
    (a run started before devices were recorded counts as holding them all)."""
    for kind in (RUNS_DIR, PREPROCESS_DIR):
        for status_file in sorted((Path(workspace_root) / kind).glob(f"*/{STATUS_FILE}")):
            run = Run(status_file.parent.resolve())
            if status(run).get("state") == "running":
                held = _read_json(run.dir / COMMAND_FILE).get("devices")
                yield run, frozenset(held) if isinstance(held, list) else frozenset({"cpu", "gpu:*"})


def _refuse_overlap(workspace_root: Path, mine: frozenset[str], run_dir: Path | None = None) -> None:
    for other, theirs in _running_devices(workspace_root):
        if other.dir != run_dir and devices_overlap(mine, theirs):
            kind = "preprocessing run" if other.dir.parent.name == PREPROCESS_DIR else "run"
            raise ConfigError(f"{kind} {other.id} is running on {', '.join(sorted(theirs))}, which this run "
                              f"({', '.join(sorted(mine))}) would share: abort it or wait for it to end")


@contextlib.contextmanager
def _registry_lock(workspace_root: Path) -> Iterator[None]:
    """Serialises starts in a workspace, so two starts cannot both pass the device check."""
    lock = Path(workspace_root) / RUNS_DIR / LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start(run: Run) -> None:
    """Launch the run (or launch it again: resume) as its own process group; returns at once."""
    def prepare() -> dict[str, Any]:
        cfg = run.config()
        validate_before_launch(cfg, run.workspace)
        return write_command(run, cfg)

    launch(run, prepare)


def launch(run: Run, prepare: Callable[[], dict[str, Any]]) -> None:
    """Start the supervisor of any run folder (a fine-tune, a preprocessing stage) in a new session; returns at
    once. `prepare` validates and writes command.json, under the workspace's lock, and returns that command."""
    with _registry_lock(run.workspace):
        _launch_locked(run, prepare)


def _launch_locked(run: Run, prepare: Callable[[], dict[str, Any]]) -> None:
    """`launch` for a caller that holds the workspace's lock (start_new creates and starts under one lock)."""
    st = status(run)
    left = _members(run)
    deadline = time.monotonic() + ENDING_GRACE_S
    while left and st.get("state") != "running" and time.monotonic() < deadline:
        time.sleep(0.1)  # a supervisor that has recorded the end is exiting: Resume right after is fine
        left = _members(run)
    if left:  # also the orphans of a killed supervisor: a second trainer would share the folder
        raise ConfigError(f"run {run.id} is already running (process(es) "
                          f"{', '.join(str(pid) for pid, _ in sorted(left))}): abort it or wait for its end")
    if st.get("state") == "running":
        raise ConfigError(f"run {run.id} is already running (pid {st.get('pid')})")
    command = prepare()
    _refuse_overlap(run.workspace, frozenset(command["devices"]), run.dir)
    (run.dir / ABORT_FILE).unlink(missing_ok=True)  # a stale abort request would stop the new attempt at once
    env = {**os.environ, **command["env"], "PYTHONUNBUFFERED": "1", RUN_ENV: str(run.dir)}  # live log lines
    attempt = int(st.get("attempts", 0)) + 1
    with open(run.dir / LOG_FILE, "ab") as log:
        log.write(f"=== attempt {attempt}: {command['display']}\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "backend.finetune.runs", "_supervise", str(run.dir)],
                                cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _update_status(run, state="running", pid=proc.pid, pgid=proc.pid, proc_start=_process_start(proc.pid),
                   started=time.time(), ended=None, exit_code=None, attempts=attempt, message="",
                   launcher_pid=None, launcher_start=None)
    assert proc.stdin is not None
    proc.stdin.close()  # go: the supervisor waits for this, so it never finishes before "running" is recorded
    threading.Thread(target=proc.wait, name=f"reap-{run.id}", daemon=True).start()


def start_new(workspace_root: Path, cfg: FinetuneConfig, name: str | None = None) -> Run:
    """Create a run and start it (Start in the studio, `runs start`). Refused (bad settings, the devices
    busy) before anything is written: no run folder is left that would never start."""
    validate_before_launch(cfg, workspace_root)
    with _registry_lock(workspace_root):
        _refuse_overlap(workspace_root, devices(cfg))  # before the run folder exists: none is left behind
        run = _make_run(workspace_root, cfg, name)
        _launch_locked(run, lambda: write_command(run, run.config()))
    return run


def resume(run: Run) -> None:
    """Start a stopped run again in its folder; the trainer continues from the newest complete checkpoint."""
    state = status(run).get("state")
    if state == "finished":
        raise ConfigError(f"run {run.id} has finished all its steps; raise max_steps in a new run to train further")
    start(run)


Proc = tuple[int, float]  # (pid, start time): a pid alone may be reused


def _ident(p: psutil.Process) -> Proc:
    return p.pid, p.create_time()


def _tree(st: dict[str, Any]) -> set[Proc]:
    """The supervisor and all its descendants (as a child subreaper it adopts every orphan of the tree, so
    torchrun's workers, which run in sessions of their own, stay its descendants), plus any process still
    in the run's group (when the supervisor itself is gone)."""
    found: set[Proc] = set()
    if _alive(st.get("pid"), st.get("proc_start")):
        with contextlib.suppress(psutil.Error):
            sup = psutil.Process(st["pid"])
            found |= {_ident(p) for p in [sup, *sup.children(recursive=True)]}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == st.get("pgid"):
                found |= {_ident(q) for q in [p, *p.children(recursive=True)]}
    return found


def _ranks(st: dict[str, Any]) -> set[Proc]:
    """The trainer processes: the launcher's children, and orphans the supervisor adopted (ranks whose
    launcher died)."""
    if not _alive(st.get("pid"), st.get("proc_start")):
        return set()
    launcher = st.get("launcher_pid"), st.get("launcher_start")
    try:
        found = {_ident(p) for p in psutil.Process(st["pid"]).children()} - {launcher}
        if _alive(*launcher):
            found |= {_ident(p) for p in psutil.Process(launcher[0]).children()}
    except psutil.Error:
        return set()
    return found


def _members(run: Run) -> set[Proc]:
    """Every living process started for the run, found by the RUN_ENV it inherited (also orphans whose
    supervisor was killed, which neither the supervisor's tree nor its process group reaches)."""
    found = set()
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(RUN_ENV) == str(run.dir):
                found.add(_ident(p))
    return _living(found)


def _orphan_ranks(members: set[Proc]) -> set[Proc]:
    """The trainer processes among a run's processes (not the launchers, whose argv names the module too)."""
    ranks = set()
    for pid, t in members:
        with contextlib.suppress(psutil.Error):
            argv = psutil.Process(pid).cmdline()
            if TRAIN_MODULE in argv and "launch" not in argv:
                ranks.add((pid, t))
    return ranks


def _living(procs: set[Proc]) -> set[Proc]:
    return {(pid, t) for pid, t in procs if _alive(pid, t)}


def _signal(procs: set[Proc], sig: int) -> None:
    for pid, t in _living(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def abort(run: Run, grace_s: float = 60.0) -> str:
    """Stop a run: the abort file and SIGTERM to the trainer processes (they checkpoint at the next step
    boundary and exit), then after `grace_s` SIGKILL to every process of the tree, wherever it moved.
    Returns the run's final state; no process of the tree survives.

    The ranks are signalled, not the launchers: torchrun's agent answers SIGTERM by SIGKILLing its workers
    30 s later, which could cut a long checkpoint save short."""
    # The recorded state, not status(): if the supervisor died abnormally, its tree may still need killing.
    st = _read_json(run.dir / STATUS_FILE)
    members = _members(run)
    if st.get("state") != "running" and not members:
        return st.get("state", "queued")
    (run.dir / ABORT_FILE).touch()
    tree, ranks = _tree(st) | members, _ranks(st) or _orphan_ranks(members)
    if ranks:
        _signal(ranks, signal.SIGTERM)
    else:  # still starting: nothing to checkpoint yet, stop the launcher
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(st["pgid"]), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _living(tree) and time.monotonic() < deadline:
        st = {**st, **_read_json(run.dir / STATUS_FILE)}  # the launcher's pid appears once it has started
        new_ranks = _ranks(st) - ranks  # started after the first look
        _signal(new_ranks, signal.SIGTERM)
        ranks |= new_ranks
        tree |= _tree(st) | _members(run)
        time.sleep(POLL_S)
    deadline = time.monotonic() + 30  # SIGKILL cannot be refused; only a process stuck in the kernel lingers
    while _living(tree) and time.monotonic() < deadline:
        tree |= _tree(st) | _members(run)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(st["pgid"]), signal.SIGKILL)
        _signal(tree, signal.SIGKILL)
        time.sleep(POLL_S / 4)
    st = status(run)  # the supervisor recorded the end, or status() records the kill
    return st.get("state", "aborted")


# ---------------------------------------------------------------- the supervisor (runs in the new session)

def _become_subreaper() -> None:
    """Orphans of the tree get re-parented to this process instead of init (Linux), so it can wait for
    every one of them and `abort` finds them among its descendants."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def supervise(run_dir: Path) -> int:
    run = Run(Path(run_dir))
    stop = {"signalled": False}

    def note(signum: int, frame: Any) -> None:  # the ranks get their own SIGTERM from abort(); wait for them
        stop["signalled"] = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, note)
    _become_subreaper()
    sys.stdin.read()  # the launcher closes stdin once status.json records this process
    command = _read_json(run.dir / COMMAND_FILE)
    with open(run.dir / LOG_FILE, "ab") as log:
        try:
            me = f"{os.getpid()} {_process_start(os.getpid())!r}"
            child = subprocess.Popen(command["argv"], cwd=command["cwd"], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, SUPERVISOR_ENV: me})
            _update_status(run, launcher_pid=child.pid, launcher_start=_process_start(child.pid))
            rc = child.wait()
        except OSError as e:
            log.write(f"cannot start {command['argv'][0]}: {e}\n".encode())
            rc = 127
    # Ranks may outlive the launcher (accelerate's one-process launcher dies at once on SIGTERM while the
    # trainer still checkpoints): the run ends when the last adopted orphan has.
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    stopped = stop["signalled"] or (run.dir / ABORT_FILE).exists()
    state = "aborted" if stopped else "finished" if rc == 0 else "failed"
    try:
        plot_losses(run, run.dir / SUMMARY_PLOT)
    except Exception as e:  # a figure must never change how the run is recorded
        with open(run.dir / LOG_FILE, "a", encoding="utf-8") as log_text:
            log_text.write(f"no {SUMMARY_PLOT}: {e}\n")
    _update_status(run, state=state, exit_code=rc, ended=time.time(),
                   message=_failure_message(run) if state == "failed" else "")
    return 0


def _failure_message(run: Run) -> str:
    """Why the trainer stopped, when it said so (its last event is "failed", with a message)."""
    events = [m for m in read_metrics(run) if "event" in m]
    last = events[-1] if events else {}
    return str(last.get("message", "")) if last.get("event") == "failed" else ""


# ---------------------------------------------------------------- CLI

def _print_info(info: RunInfo) -> None:
    losses = " ".join(f"{k}={v:.4g}" for k, v in info.losses.items() if v is not None)
    code = "" if info.exit_code is None else f" exit={info.exit_code}"
    why = f"  ({info.message})" if info.message else ""
    print(f"{info.id}  {info.state:<8} step {info.step}/{info.max_steps}{code}  {losses}{why}")


def follow(run: Run) -> int:
    """Print the log as it grows until the run ends; SIGTERM/Ctrl-C (a cluster job ending) aborts the run."""
    def stop(signum: int, frame: Any) -> None:
        print(f"stopping run {run.id}...", file=sys.stderr)
        abort(run)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    offset = 0
    while True:
        st = status(run)
        state = st.get("state")
        with contextlib.suppress(FileNotFoundError), open(run.dir / LOG_FILE, "rb") as f:
            f.seek(offset)
            chunk = f.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        if state != "running":
            print(f"run {run.id}: {state}" + (f" ({st['message']})" if st.get("message") else ""))
            return 0 if state == "finished" else 1
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune runs: list, show, start, abort, resume.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("list", "every run of the workspace"), ("show", "status, progress and log tail of a run"),
                       ("abort", "stop a run (gracefully, then by force)"), ("resume", "start a stopped run again"),
                       ("start", "create a run from the fine-tune settings and start it")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--workspace", type=Path, default=Path("."), help="workspace folder (default: .)")
        if name in ("show", "abort", "resume"):
            p.add_argument("run", help="run id (folder name under <workspace>/runs) or run folder")
        if name == "show":
            config.cli_parser(ShowConfig, text, parser=p)
        if name == "abort":
            p.add_argument("--grace", type=float, default=60.0, help="seconds before processes are killed")
        if name in ("start", "resume"):
            p.add_argument("--wait", action="store_true", help="follow the log until the run ends "
                           "(exit 0 when finished); SIGTERM then aborts the run, as a cluster job should")
        if name == "start":
            p.add_argument("--name", default=None, help="short name in the run's folder name")
            config.cli_parser(FinetuneConfig, text, parser=p)
    sub.add_parser("_supervise").add_argument("run_dir", type=Path)  # internal: started by start()
    args = parser.parse_args(argv)
    if args.cmd == "_supervise":
        return supervise(args.run_dir)
    try:
        if args.cmd == "list":
            for info in list_runs(args.workspace):
                _print_info(info)
            return 0
        if args.cmd == "start":
            run = start_new(args.workspace, config.from_cli(FinetuneConfig, args), args.name)
        else:
            run = open_run(args.workspace, args.run)
        if args.cmd == "show":
            plot = config.from_cli(ShowConfig, args).plot
            _print_info(run_info(run))
            print(json.dumps(status(run), indent=2))
            print(tail_log(run, 4000))
            if plot is not None:
                print(f"wrote {plot_losses(run, plot)}")
            return 0
        if args.cmd == "abort":
            print(f"run {run.id}: {abort(run, args.grace)}")
            return 0
        if args.cmd == "resume":
            resume(run)
        print(f"run {run.id} started: {_read_json(run.dir / COMMAND_FILE)['display']}")
        return follow(run) if args.wait else 0
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
