"""Where the processes of a distributed job go: the `accelerate launch` settings shared by fine-tuning and the
preprocessing stages (backend.finetune.command turns them into one command per machine)."""

from dataclasses import dataclass
from typing import Literal

from backend.core.config import option
from backend.core.errors import ConfigError


@dataclass
class LaunchConfig:
    device: Literal["auto", "cpu", "cuda"] = option("auto", "cpu runs the processes on CPU with gloo; auto uses "
                                                    "GPUs when there are any")
    num_processes: int = option(1, "processes in total, over all machines (one per GPU)")
    num_machines: int = option(1, "machines (nodes)")
    machine_rank: int = option(0, "rank of this machine (0 = main)")
    main_address: str = option("127.0.0.1", "address of machine 0, reachable from every node")
    main_port: int = option(29500, "port on machine 0 for the rendezvous")
    gpu_ids: str = option("all", "GPUs of this machine the run may use, e.g. 0,1 (used to refuse overlapping runs)")


def check_launch(cfg: LaunchConfig) -> None:
    """Refuse launch settings accelerate would fail on later (or silently run differently)."""
    rules = [
        (cfg.num_processes >= 1 and cfg.num_machines >= 1, "num_processes and num_machines must be >= 1"),
        (cfg.num_processes >= cfg.num_machines, "num_processes counts all machines: it must be >= num_machines"),
        (0 <= cfg.machine_rank < cfg.num_machines, f"machine_rank must be in 0..{cfg.num_machines - 1}"),
        (1 <= cfg.main_port <= 65535, f"main_port must be a TCP port, got {cfg.main_port}"),
        (cfg.num_processes % max(cfg.num_machines, 1) == 0, f"num_processes ({cfg.num_processes}) must be a multiple "
         f"of num_machines ({cfg.num_machines}): every machine runs the same number of processes"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
