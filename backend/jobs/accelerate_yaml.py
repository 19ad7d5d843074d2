"""An `accelerate config` file for a job, for users who launch by hand: `accelerate launch --config_file F
--machine_rank R -m <module> --run-dir <run>` on machine R starts what backend.jobs.command's argv starts (same
distributed type, processes, machines, rendezvous, DeepSpeed file, precision), given the same environment
variables (`env_for`; written as a comment at the top). The keys are accelerate's ClusterConfig fields; the
flag each one stands for is in the comment beside `_fields`."""

from pathlib import Path
from typing import Any

import yaml

from backend.jobs.command import env_for
from backend.jobs.launch_config import LaunchConfig, on_cpu


def _fields(cfg: LaunchConfig) -> dict[str, Any]:
    cpu, ds_file = on_cpu(cfg), cfg.deepspeed_file()
    fields: dict[str, Any] = {"compute_environment": "LOCAL_MACHINE", "debug": False}
    if ds_file is not None:  # --use_deepspeed --deepspeed_config_file F [--deepspeed_multinode_launcher standard]
        fields["distributed_type"] = "DEEPSPEED"
        fields["deepspeed_config"] = {"deepspeed_config_file": str(ds_file)}
        if cfg.num_machines > 1:
            fields["deepspeed_config"]["deepspeed_multinode_launcher"] = "standard"
    elif cfg.num_processes > 1:  # --multi_gpu (on CPU with ACCELERATE_USE_CPU=true, as the command)
        fields["distributed_type"] = "MULTI_GPU"
    else:  # one process: --cpu, or a single GPU
        fields["distributed_type"] = "NO"
    fields["use_cpu"] = cpu and ds_file is None and cfg.num_processes == 1
    fields |= {
        "num_processes": cfg.num_processes,
        "num_machines": cfg.num_machines,
        "machine_rank": 0,
        "mixed_precision": cfg.precision(),
        "dynamo_config": {"dynamo_backend": "NO"},
    }
    if not cpu:
        fields["gpu_ids"] = cfg.gpu_ids
    if cfg.num_machines > 1:
        fields |= {"main_process_ip": cfg.main_address, "rdzv_backend": "static", "same_network": True}
    if cfg.num_processes > 1:
        fields["main_process_port"] = cfg.main_port
    return fields


def accelerate_config_yaml(cfg: LaunchConfig, run_dir: Path, module: str) -> str:
    env = " ".join(f"{k}={v}" for k, v in env_for(cfg).items())
    header = (
        f"# accelerate config for {module} --run-dir {run_dir}: on machine R run\n"
        f"#   {env + ' ' if env else ''}accelerate launch --config_file <this file> --machine_rank R "
        f"-m {module} --run-dir {run_dir}\n"
    )
    return header + yaml.safe_dump(_fields(cfg), sort_keys=False)
