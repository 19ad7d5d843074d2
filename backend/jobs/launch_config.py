"""Where the processes of a distributed job go: the `accelerate launch` settings every job shares (fine-tuning,
the preprocessing stages, evaluation); backend.jobs.command turns them into one command per machine."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.core import config
from backend.core.config import option
from backend.core.device import pick_device
from backend.core.errors import ConfigError

MAX_COUNT = 2**16  # processes, machines, batch sizes, ranks: beyond any real job


@dataclass
class LaunchConfig:
    device: Literal["auto", "cpu", "cuda"] = option(
        "auto", "cpu runs the processes on CPU with gloo; auto uses GPUs when there are any"
    )
    threads: int = option(
        0,
        "torch CPU threads per process (0: torch's default, one per core); a small model on "
        "a shared machine steps faster and steadier with 1 (all threads wait for the slowest)",
        ge=0,
        le=1024,
    )
    num_processes: int = option(1, "processes in total, over all machines (one per GPU)", ge=1, le=MAX_COUNT)
    num_machines: int = option(1, "machines (nodes)", ge=1, le=MAX_COUNT)
    machine_rank: int = option(0, "rank of this machine (0 = main)", ge=0, le=MAX_COUNT)
    main_address: str = option("127.0.0.1", "address of machine 0, reachable from every node")
    main_port: int = option(29500, "port on machine 0 for the rendezvous", ge=1, le=65535)
    gpu_ids: str = option("all", "GPUs of this machine the run may use, e.g. 0,1 (used to refuse overlapping runs)")
    slurm: str = option(
        "",
        "do not start here: create the job and write to this file a SLURM batch script that "
        "runs every machine's command, one task per node (then: sbatch FILE); empty: start here",
        form=False,
    )  # the studio shows the script (backend.jobs.slurm); only the CLI writes files

    def deepspeed_file(self) -> Path | None:
        """The DeepSpeed JSON the job runs under (None: plain accelerate); a stage that trains overrides it."""
        return None

    def precision(self) -> str:
        """accelerate's --mixed_precision for the job; a stage that trains overrides it."""
        return "no"


def on_cpu(cfg: LaunchConfig, must_exist: bool = False) -> bool:
    """Whether the job's processes compute on CPUs. 'auto' is decided by this machine (the launcher's), so a
    command previewed for GPU nodes should say device 'cuda'; with `must_exist` (the job starts here) a
    'cuda' job on a machine without a GPU is an error."""
    return pick_device(cfg.device, must_exist) == "cpu"


def gpu_id_list(cfg: LaunchConfig) -> list[int] | None:
    """The GPU ids of this machine the job may use; None means all of them."""
    if cfg.gpu_ids.strip() == "all":
        return None
    try:
        ids = [int(x) for x in cfg.gpu_ids.split(",")]
    except ValueError:
        raise ConfigError(f"gpu_ids: {cfg.gpu_ids!r} is neither 'all' nor comma-separated numbers like 0,1") from None
    if len(set(ids)) != len(ids) or min(ids) < 0:
        raise ConfigError(f"gpu_ids: {cfg.gpu_ids!r} repeats an id or has a negative one")
    return ids


def check_launch(cfg: LaunchConfig) -> None:
    """Refuse launch settings accelerate would fail on later (or silently run differently): each number's own
    bounds, the rules between them, no more processes per machine than it can hold (CPU: one per core of this
    machine; GPU: one per GPU listed, or per GPU of this machine) and gpu_ids naming one GPU per process."""
    config.check_numbers(cfg)
    rules = [
        (cfg.num_processes >= cfg.num_machines, "num_processes counts all machines: it must be >= num_machines"),
        (cfg.machine_rank < cfg.num_machines, f"machine_rank must be in 0..{cfg.num_machines - 1}"),
        (
            cfg.num_processes % cfg.num_machines == 0,
            f"num_processes ({cfg.num_processes}) must be a multiple "
            f"of num_machines ({cfg.num_machines}): every machine runs the same number of processes",
        ),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
    if cfg.slurm and cfg.device == "auto":
        raise ConfigError(
            "device: 'auto' would be decided by this machine, not by the cluster's nodes: with slurm say cuda or cpu"
        )
    if cfg.slurm and cfg.gpu_ids.strip() != "all":
        raise ConfigError(
            "gpu_ids: under SLURM the allocation gives each node its GPUs (--gpus-per-node, "
            "CUDA_VISIBLE_DEVICES): leave gpu_ids 'all'"
        )
    if cfg.slurm and (Path(cfg.slurm).is_dir() or not Path(cfg.slurm).parent.is_dir()):
        raise ConfigError(f"slurm: {cfg.slurm} is a folder or lies in a folder that does not exist")
    per_machine = cfg.num_processes // cfg.num_machines
    if on_cpu(cfg):
        cores = len(os.sched_getaffinity(0))
        # more would only time-share the cores (and 65536 would fork-bomb the machine); a cluster's nodes are not
        # this machine
        if per_machine > cores and not cfg.slurm:
            raise ConfigError(
                f"num_processes: {per_machine} CPU process(es) per machine, but this machine has "
                f"{cores} core(s) for them: at most one process per core"
            )
        return
    ids = gpu_id_list(cfg)
    gpus = _gpus_here()
    if ids is None and gpus and per_machine > gpus:
        raise ConfigError(
            f"num_processes: {per_machine} process(es) per machine, but this machine has {gpus} "
            "GPU(s): one process per GPU"
        )
    if ids is not None and len(ids) != per_machine:
        raise ConfigError(
            f"gpu_ids {cfg.gpu_ids} lists {len(ids)} GPU(s) but each machine runs "
            f"{per_machine} process(es), one per GPU"
        )


def _gpus_here() -> int:
    """CUDA devices of this machine (0 without a GPU: a command previewed for GPU nodes is not bounded here)."""
    import torch  # on_cpu has imported it already for a GPU job

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
