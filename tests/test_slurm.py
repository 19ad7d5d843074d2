"""Cluster launches (issue 26): the SLURM batch script and the accelerate config file of a multi-node job hold the
commands the studio runs. The script is run by bash with stand-ins for srun and scontrol that record what each
node's task would exec; the config file is read by accelerate's own launch-argument handling."""

import dataclasses
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from backend.finetune.config import FinetuneConfig
from backend.jobs.accelerate_yaml import accelerate_config_yaml
from backend.jobs.command import accelerate_command, env_for
from backend.jobs.launch_config import LaunchConfig
from backend.jobs.slurm import slurm_script

RUN = Path("/shared/ws/runs/20260101-000000-x")
MODULE = "backend.finetune.trainer"
HOSTS = ["node-a", "node-b", "node-c", "node-d"]

# srun: run the last argument once per node with that node's SLURM_NODEID; its `exec` is a shell function that
# writes the argv and environment it was given instead of replacing the shell.
FAKE_SRUN = r"""#!/bin/bash
nodes=1
for a in "$@"; do case "$a" in --nodes=*) nodes=${a#--nodes=} ;; esac; done
for ((i = 0; i < nodes; i++)); do
  SLURM_NODEID=$i bash -c 'exec() { env > "$OUT/env.$SLURM_NODEID"; printf "%s\0" "$@" > "$OUT/argv.$SLURM_NODEID"; }
'"${@: -1}"
done
"""


def configs(nodes: int) -> list[LaunchConfig]:
    return [
        LaunchConfig(device="cpu", num_processes=2 * nodes, num_machines=nodes, main_address="10.0.0.9"),
        FinetuneConfig(
            device="cuda",
            num_processes=8 * nodes,
            num_machines=nodes,
            deepspeed="zero2",
            main_address="10.0.0.9",
            main_port=29555,
        ),
    ]


def run_script(script: str, tmp_path: Path) -> tuple[list[list[str]], list[dict[str, str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/bash\nprintf '%s\\n' " + " ".join(HOSTS) + "\n")
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "job.sh").write_text(script)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", OUT=str(tmp_path), SLURM_JOB_NODELIST="node-[a-d]")
    subprocess.run(["bash", str(tmp_path / "job.sh")], env=env, check=True, timeout=60)
    argvs, envs = [], []
    for rank in range(len(list(tmp_path.glob("argv.*")))):
        argvs.append((tmp_path / f"argv.{rank}").read_text().split("\0")[:-1])
        envs.append(
            dict(line.split("=", 1) for line in (tmp_path / f"env.{rank}").read_text().splitlines() if "=" in line)
        )
        (tmp_path / f"argv.{rank}").unlink()
    return argvs, envs


@pytest.mark.parametrize("nodes", [1, 4])
def test_slurm_script_runs_each_node_command(tmp_path: Path, nodes: int) -> None:
    for cfg in configs(nodes):
        script = slurm_script(cfg, RUN, MODULE, "ft")
        assert f"#SBATCH --nodes={nodes}\n" in script and "#SBATCH --ntasks-per-node=1\n" in script
        argvs, envs = run_script(script, tmp_path)
        on_allocation = replace(cfg, main_address=HOSTS[0])  # the allocation's first node, not the form's
        assert argvs == [accelerate_command(on_allocation, RUN, MODULE, rank) for rank in range(nodes)]
        for env in envs:
            assert env.items() >= env_for(cfg).items()
        if nodes > 1:
            assert all(a[a.index("--machine_rank") + 1] == str(r) for r, a in enumerate(argvs))


def _launch_args(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """What accelerate's `launch` makes of an argv (its parser, then its merge of a --config_file)."""
    from accelerate.commands import launch

    monkeypatch.setattr(launch, "default_config_file", "/nonexistent/default_config.yaml")
    args = launch.launch_command_parser().parse_args(argv[argv.index(next(a for a in argv if a.startswith("--"))) :])
    args, _, _ = launch._validate_launch_command(args)
    keys = (
        "multi_gpu",
        "cpu",
        "use_deepspeed",
        "deepspeed_config_file",
        "deepspeed_multinode_launcher",
        "num_processes",
        "num_machines",
        "machine_rank",
        "main_process_ip",
        "main_process_port",
        "mixed_precision",
        "gpu_ids",
        "dynamo_backend",
        "module",
        "training_script",
        "training_script_args",
    )
    values = {k: getattr(args, k, None) for k in keys}
    values["dynamo_backend"] = str(values["dynamo_backend"]).lower()
    # accelerate's own defaults for values left unset (its _validate_launch_command sets gpu_ids "all")
    values["machine_rank"] = values["machine_rank"] or 0
    values["gpu_ids"] = values["gpu_ids"] or "all"
    return values


@pytest.mark.parametrize("nodes", [1, 4])
def test_accelerate_config_file_launches_the_same(tmp_path: Path, nodes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for cfg in configs(nodes):
        file = tmp_path / "accelerate.yaml"
        file.write_text(accelerate_config_yaml(cfg, RUN, MODULE))
        for rank in range(nodes):
            ours = accelerate_command(cfg, RUN, MODULE, rank)
            by_hand = [
                "accelerate",
                "launch",
                "--config_file",
                str(file),
                "--machine_rank",
                str(rank),
                "-m",
                MODULE,
                "--run-dir",
                str(RUN),
            ]
            assert _launch_args(by_hand, monkeypatch) == _launch_args(ours, monkeypatch)


def test_the_studio_shows_the_script_beside_the_machine_commands() -> None:
    from backend.jobs.command import display_command
    from backend.jobs.slurm import cluster_preview

    one, four = configs(1)[0], configs(4)[0]
    assert cluster_preview(one, RUN, MODULE) == display_command(one, RUN, MODULE)
    shown = cluster_preview(four, RUN, MODULE)
    assert all(display_command(four, RUN, MODULE, rank) in shown for rank in range(4))
    assert slurm_script(four, RUN, MODULE, "moshi-studio") in shown
    auto = cluster_preview(replace(four, device="auto"), RUN, MODULE)  # decided by this machine: no script
    assert "srun" not in auto and "set device to cuda or cpu" in auto


def test_the_studio_forms_offer_no_slurm_file() -> None:
    """Only the command line writes a script (a client must not name a file the studio writes); the forms show it
    in the command preview instead."""
    from studio import finetune_tab, preprocess_tab

    assert "slurm" not in finetune_tab.FIELDS and all(name != "slurm" for _, name in preprocess_tab.FORM)
    assert "slurm" in {f.name for f in dataclasses.fields(FinetuneConfig)}  # the CLI's flag: the same config


def test_a_slurm_job_is_judged_by_its_nodes_not_by_this_machine(tmp_path: Path) -> None:
    from backend.core.errors import ConfigError
    from backend.jobs.launch_config import check_launch

    many = LaunchConfig(device="cpu", num_processes=4 * 1024, num_machines=4)  # more processes than cores here
    with pytest.raises(ConfigError, match="core"):
        check_launch(many)
    check_launch(replace(many, slurm=str(tmp_path / "job.sbatch")))
    with pytest.raises(ConfigError, match="auto"):  # this machine's device says nothing of the nodes'
        check_launch(replace(many, device="auto", slurm=str(tmp_path / "job.sbatch")))
    with pytest.raises(ConfigError, match="gpu_ids"):  # the allocation picks each node's GPUs
        check_launch(
            LaunchConfig(
                device="cuda", num_processes=8, num_machines=4, gpu_ids="0,1", slurm=str(tmp_path / "job.sbatch")
            )
        )


def test_a_job_created_for_slurm_is_not_resumed_here_but_sent_to_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate start --slurm FILE` leaves a queued job; the studio's Resume and `evaluate resume` would start it on
    this machine (beside the cluster's run of the same folder): both refuse, naming the script to submit."""
    from handler_helpers import make_workspace

    from backend.evaluate import job
    from backend.jobs.control import status
    from backend.jobs.folder import LOG_FILE, STATUS_FILE, read_json
    from studio import evaluate_tab

    ws = make_workspace(tmp_path)
    (ws.models / "m").mkdir()
    monkeypatch.chdir(tmp_path)  # the script's name is relative, as typed on a login node
    argv = ["start", "--workspace", str(ws.root), "--models", "models/m", "--device", "cpu", "--slurm", "ev.sbatch"]
    assert job.main(argv) == 0
    assert "sbatch ev.sbatch" in capsys.readouterr().out
    (run,) = job.list_runs(ws.root)
    assert status(run)["state"] == "queued" and (tmp_path / "ev.sbatch").is_file()
    script = str(tmp_path / "ev.sbatch")

    message = evaluate_tab.on_resume(ws, run.id)
    assert message.startswith("✘") and f"sbatch {script}" in message and "SLURM" in message, message
    assert job.main(["resume", run.id, "--workspace", str(ws.root)]) == 2
    assert f"sbatch {script}" in capsys.readouterr().err
    assert read_json(run.dir / STATUS_FILE)["state"] == "queued" and read_json(run.dir / STATUS_FILE)["attempts"] == 0
    assert not (run.dir / LOG_FILE).exists()  # no attempt was started here
