"""The `accelerate launch` command of a job (any module taking `--run-dir`: the trainer, a preprocessing rank,
an evaluation): one argv LIST per machine plus the environment it needs. Never a shell string
(`display_command` joins with shlex for showing only). DeepSpeed and mixed precision come from the job's
config (`LaunchConfig.deepspeed_file` / `precision`, which only training overrides).

Flag choices, checked against accelerate 1.15 and on this CPU machine:
- CPU, one process: `--cpu`. CPU, N processes: `--multi_gpu` + ACCELERATE_USE_CPU=true (gloo);
  `--cpu --num_processes 2` silently runs one process (PITFALLS.md).
- DeepSpeed: `--use_deepspeed --deepspeed_config_file F` (it excludes `--multi_gpu`/`--cpu`). On CPU it must
  NOT get ACCELERATE_USE_CPU (accelerate then ignores DeepSpeed); DS_ACCELERATOR=cpu selects DeepSpeed's CPU
  accelerator instead. Multi-node DeepSpeed uses the `standard` (torchrun) node launcher, so every node runs
  its own command, as without DeepSpeed; accelerate's default (pdsh) would ssh from node 0.
- Multi-node: every machine runs the same command but its `--machine_rank`; the run folder must be on a
  file system all machines share (rank 0 writes metrics, every rank writes its ZeRO shards).
- The values that decide the distributed setup are passed explicitly, so a user's default accelerate config
  cannot change them (it is still read when no `--cpu` is given; single-GPU runs could inherit its type).
"""

import shlex
import sys
from pathlib import Path

from backend.jobs.launch_config import LaunchConfig, on_cpu


def accelerate_executable() -> list[str]:
    """This venv's own `accelerate launch` (not whatever `accelerate` is first on PATH)."""
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe), "launch"] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]


def accelerate_command(cfg: LaunchConfig, run_dir: Path, module: str, machine_rank: int | None = None) -> list[str]:
    """The argv that starts `module --run-dir run_dir` on one machine (default: the config's machine_rank)."""
    rank = cfg.machine_rank if machine_rank is None else machine_rank
    cpu = on_cpu(cfg)
    ds_file = cfg.deepspeed_file()
    argv = accelerate_executable()
    if ds_file is not None:
        argv += ["--use_deepspeed", "--deepspeed_config_file", str(ds_file)]
        if cfg.num_machines > 1:
            argv += ["--deepspeed_multinode_launcher", "standard"]
    elif cfg.num_processes > 1:
        argv.append("--multi_gpu")
    elif cpu:
        argv.append("--cpu")
    argv += [
        "--num_processes",
        str(cfg.num_processes),
        "--num_machines",
        str(cfg.num_machines),
        "--mixed_precision",
        cfg.precision(),
        "--dynamo_backend",
        "no",
    ]
    if not cpu:
        argv += ["--gpu_ids", cfg.gpu_ids]
    if cfg.num_machines > 1:
        argv += ["--machine_rank", str(rank), "--main_process_ip", cfg.main_address]
    if cfg.num_processes > 1:
        argv += ["--main_process_port", str(cfg.main_port)]
    return argv + ["-m", module, "--run-dir", str(run_dir)]


def commands_for_all_nodes(cfg: LaunchConfig, run_dir: Path, module: str) -> list[list[str]]:
    """One argv per machine, index = machine_rank."""
    return [accelerate_command(cfg, run_dir, module, rank) for rank in range(cfg.num_machines)]


def env_for(cfg: LaunchConfig) -> dict[str, str]:
    """Environment variables the command needs on top of the caller's environment."""
    if not on_cpu(cfg):
        return {}
    env = {"CUDA_VISIBLE_DEVICES": ""}  # a CPU run stays off the machine's GPUs, whatever accelerate detects
    if cfg.deepspeed_file() is not None:
        env["DS_ACCELERATOR"] = "cpu"
    elif cfg.num_processes > 1:
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def display_command(cfg: LaunchConfig, run_dir: Path, module: str, machine_rank: int | None = None) -> str:
    """The command as one line a user can paste into a POSIX shell (for showing; never executed)."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_for(cfg).items())
    return (env + " " if env else "") + shlex.join(accelerate_command(cfg, run_dir, module, machine_rank))


def preview_commands(cfg: LaunchConfig, run_dir: Path, module: str) -> str:
    """Every machine's command for showing before a start: the one line, or one per machine under its rank."""
    if cfg.num_machines <= 1:
        return display_command(cfg, run_dir, module)
    return "\n\n".join(
        f"# machine {rank}\n{display_command(cfg, run_dir, module, rank)}" for rank in range(cfg.num_machines)
    )
