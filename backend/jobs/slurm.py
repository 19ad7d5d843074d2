"""A SLURM batch script for a job: every node of the allocation runs that node's `accelerate launch` command, the
very argv backend.jobs.command builds (one task per node, `--machine_rank` = the node's index in the job), with
the main address taken from the allocation (its first node) instead of the configured one.

The per-node commands sit in a quoted here-document, so the batch shell expands nothing in them; each task's own
shell (`bash -c`) then picks its node's line by SLURM_NODEID and expands $MAIN_ADDRESS there. Under SLURM the
studio's supervisor is not involved: the processes write the run's files (log lines go to the SLURM output
file; metrics, checkpoints and summaries to the run folder), and the studio reads them from the shared folder.
"""

import shlex
from dataclasses import replace
from pathlib import Path

from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError
from backend.core.paths import REPO
from backend.jobs.command import commands_for_all_nodes, env_for, preview_commands
from backend.jobs.folder import Job
from backend.jobs.launch_config import LaunchConfig, on_cpu

MAIN_ADDRESS_VAR = "MAIN_ADDRESS"
_MAIN_ADDRESS = f"${MAIN_ADDRESS_VAR}"  # a value no real address has: it marks where the variable goes
_HEREDOC_END = "MOSHI_STUDIO_NODE_COMMANDS"


def _shell_words(argv: list[str]) -> str:
    """`argv` quoted for a POSIX shell, the main address left as the variable (double-quoted: one word)."""
    return " ".join(f'"{_MAIN_ADDRESS}"' if word == _MAIN_ADDRESS else shlex.quote(word) for word in argv)


def node_commands(cfg: LaunchConfig, run_dir: Path, module: str) -> list[list[str]]:
    """Each node's argv (index = machine_rank) with the main address as `$MAIN_ADDRESS`."""
    return commands_for_all_nodes(replace(cfg, main_address=_MAIN_ADDRESS), run_dir, module)


def slurm_script(cfg: LaunchConfig, run_dir: Path, module: str, job_name: str) -> str:
    """The batch script (`sbatch FILE`) that runs the job on `cfg.num_machines` nodes of an allocation."""
    nodes = cfg.num_machines
    directives = [
        f"--job-name={job_name}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--output={run_dir}/slurm-%j.out",
    ]
    if not on_cpu(cfg):
        directives.append(f"--gpus-per-node={cfg.num_processes // nodes}")
    exports = [f"export {name}={shlex.quote(value)}" for name, value in env_for(cfg).items()]
    cases = [f"{rank}) exec {_shell_words(argv)} ;;" for rank, argv in enumerate(node_commands(cfg, run_dir, module))]
    return "\n".join(
        [
            "#!/bin/bash",
            *(f"#SBATCH {d}" for d in directives),
            f"# Written by moshi-studio: {module} for {run_dir}, one task per node, each running that node's",
            "# `accelerate launch` command as the studio shows it, the main address being the allocation's first node.",
            "set -euo pipefail",
            f"cd {shlex.quote(str(REPO))}",
            *exports,
            # the first line, without a pipe into head: under pipefail scontrol's SIGPIPE would end the job
            f'{MAIN_ADDRESS_VAR}="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"',
            f"export {MAIN_ADDRESS_VAR}=\"${{{MAIN_ADDRESS_VAR}%%$'\\n'*}}\"",
            f"read -r -d '' NODE_COMMANDS <<'{_HEREDOC_END}' || true",
            'case "$SLURM_NODEID" in',
            *cases,
            '*) echo "no command for node $SLURM_NODEID" >&2; exit 1 ;;',
            "esac",
            _HEREDOC_END,
            f'srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 bash -c "$NODE_COMMANDS"',
            "",
        ]
    )


def write_slurm_script(file: Path, cfg: LaunchConfig, run_dir: Path, module: str) -> Path:
    """`runs start --slurm FILE` / `preprocess start --slurm FILE`: the job's script, for `sbatch FILE`."""
    write_text_atomic(file, slurm_script(cfg, run_dir, module, f"moshi-studio-{run_dir.name}"))
    Path(file).chmod(0o755)
    return Path(file)


def slurm_note(job: Job, file: str) -> str:
    """What `start --slurm FILE` prints: the job is made, nothing runs until the script is submitted."""
    return f"{job.dir.name} created (queued); nothing started here: submit it with  sbatch {shlex.quote(file)}"


def refuse_here(job: Job, script: str) -> ConfigError:
    """Why a job created for SLURM is not started (or resumed) on this machine: its processes belong on the
    allocation's nodes, which a local start would neither use nor tell."""
    return ConfigError(
        f"{job.dir.name} was created for SLURM: it runs on the cluster's nodes, not here. Submit its script with  "
        f"sbatch {shlex.quote(script)}  (submitting it again after a stop continues where the job stopped, as Resume "
        "does); to run it on this machine, start a new job without --slurm"
    )


def cluster_preview(cfg: LaunchConfig, run_dir: Path, module: str) -> str:
    """Every machine's command (command.preview_commands) and, for several machines, the SLURM script that runs
    them all (what `--slurm FILE` writes)."""
    commands = preview_commands(cfg, run_dir, module)
    if cfg.num_machines <= 1:
        return commands
    if cfg.device == "auto":  # refused with --slurm (launch_config.check_launch): say how to get the script
        return f"{commands}\n\n# --- under SLURM: set device to cuda or cpu to see the batch script ---"
    return (
        f"{commands}\n\n# --- or under SLURM: this batch script (start with --slurm FILE writes it; "
        f"then sbatch FILE) ---\n{slurm_script(cfg, run_dir, module, 'moshi-studio')}"
    )
