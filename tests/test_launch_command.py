"""The `accelerate launch` argv of the presets, checked exactly and against accelerate's own parser."""

from pathlib import Path

import pytest
from accelerate.commands.launch import launch_command_parser

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.paths import REPO
from backend.finetune.config import FinetuneConfig
from backend.finetune.runs import TRAIN_MODULE
from backend.jobs.command import (
    accelerate_command,
    accelerate_executable,
    commands_for_all_nodes,
    display_command,
    env_for,
)

RUN = Path("/ws/runs/20250101-000000-demo")
TAIL = ["-m", "backend.finetune.trainer", "--run-dir", str(RUN)]
ZERO2 = str(REPO / "assets" / "deepspeed" / "zero2.json")
ZERO3 = str(REPO / "assets" / "deepspeed" / "zero3.json")


def cfg(**values: object) -> FinetuneConfig:
    return config.from_dict(FinetuneConfig, values)


def flags(argv: list[str]) -> list[str]:
    """The argv between `accelerate launch` and the training module."""
    head = accelerate_executable()
    assert argv[: len(head)] == head and argv[-len(TAIL) :] == TAIL
    return argv[len(head) : -len(TAIL)]


def parsed(argv: list[str]):  # type: ignore[no-untyped-def]
    """accelerate's own parser accepts every flag and sees the module to run."""
    args = launch_command_parser().parse_args(argv[len(accelerate_executable()) :])
    assert args.module and args.training_script == "backend.finetune.trainer"
    assert args.training_script_args == ["--run-dir", str(RUN)]
    return args


def test_the_venvs_own_accelerate_is_used() -> None:
    exe = accelerate_executable()
    assert exe[-1] == "launch" and Path(exe[0]).is_file() and Path(exe[0]).parent.name == "bin"


def test_cpu_one_process() -> None:
    c = cfg(device="cpu")
    argv = accelerate_command(c, RUN, TRAIN_MODULE)
    assert flags(argv) == [
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    assert env_for(c) == {"CUDA_VISIBLE_DEVICES": ""}
    assert parsed(argv).cpu


def test_cpu_two_processes_use_multi_gpu_with_accelerate_use_cpu() -> None:
    # `--cpu --num_processes 2` would silently run one process (PITFALLS.md)
    c = cfg(device="cpu", num_processes=2, main_port=29511)
    argv = accelerate_command(c, RUN, TRAIN_MODULE)
    assert flags(argv) == [
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29511",
    ]
    assert env_for(c) == {"CUDA_VISIBLE_DEVICES": "", "ACCELERATE_USE_CPU": "true"}
    args = parsed(argv)
    assert args.multi_gpu and not args.cpu and args.num_processes == 2


@pytest.mark.parametrize("stage,path", [("zero2", ZERO2), ("zero3", ZERO3)])
def test_cpu_two_processes_deepspeed(stage: str, path: str) -> None:
    c = cfg(device="cpu", num_processes=2, deepspeed=stage)
    argv = accelerate_command(c, RUN, TRAIN_MODULE)
    assert flags(argv) == [
        "--use_deepspeed",
        "--deepspeed_config_file",
        path,
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29500",
    ]
    # accelerate ignores DeepSpeed when told "CPU": DeepSpeed's own CPU accelerator instead
    assert env_for(c) == {"CUDA_VISIBLE_DEVICES": "", "DS_ACCELERATOR": "cpu"}
    args = parsed(argv)
    assert args.use_deepspeed and args.deepspeed_config_file == path and not args.multi_gpu


def test_eight_gpus_zero3_bf16() -> None:
    c = cfg(
        device="cuda",
        num_processes=8,
        deepspeed="zero3",
        mixed_precision="bf16",
        dtype="bfloat16",
        gpu_ids="0,1,2,3,4,5,6,7",
    )
    argv = accelerate_command(c, RUN, TRAIN_MODULE)
    assert flags(argv) == [
        "--use_deepspeed",
        "--deepspeed_config_file",
        ZERO3,
        "--num_processes",
        "8",
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "no",
        "--gpu_ids",
        "0,1,2,3,4,5,6,7",
        "--main_process_port",
        "29500",
    ]
    assert env_for(c) == {}
    assert parsed(argv).gpu_ids == "0,1,2,3,4,5,6,7"


def test_one_gpu_lora_has_no_distributed_flag() -> None:
    c = cfg(device="cuda", mode="lora", mixed_precision="bf16", gpu_ids="1")
    assert flags(accelerate_command(c, RUN, TRAIN_MODULE)) == [
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "no",
        "--gpu_ids",
        "1",
    ]


def test_two_nodes_one_command_per_machine_rank() -> None:
    c = cfg(
        device="cuda",
        num_processes=16,
        num_machines=2,
        deepspeed="zero3",
        mixed_precision="bf16",
        main_address="10.1.2.3",
        main_port=29600,
    )
    commands = commands_for_all_nodes(c, RUN, TRAIN_MODULE)
    assert len(commands) == 2
    for rank, argv in enumerate(commands):
        assert flags(argv) == [
            "--use_deepspeed",
            "--deepspeed_config_file",
            ZERO3,
            "--deepspeed_multinode_launcher",
            "standard",
            "--num_processes",
            "16",
            "--num_machines",
            "2",
            "--mixed_precision",
            "bf16",
            "--dynamo_backend",
            "no",
            "--gpu_ids",
            "all",
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "10.1.2.3",
            "--main_process_port",
            "29600",
        ]
        args = parsed(argv)
        assert (args.machine_rank, args.num_machines, args.deepspeed_multinode_launcher) == (rank, 2, "standard")
    # the config's own machine_rank picks this machine's command
    assert accelerate_command(cfg(**{**config.to_dict(c), "machine_rank": 1}), RUN, TRAIN_MODULE) == commands[1]


def test_two_nodes_without_deepspeed_use_multi_gpu() -> None:
    c = cfg(device="cuda", num_processes=2, num_machines=2, main_address="node0")
    argv = commands_for_all_nodes(c, RUN, TRAIN_MODULE)[1]
    assert flags(argv) == [
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "2",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--gpu_ids",
        "all",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "node0",
        "--main_process_port",
        "29500",
    ]


def test_deepspeed_json_path_and_unknown_name(tmp_path: Path) -> None:
    custom = tmp_path / "my zero.json"
    custom.write_text('{"zero_optimization": {"stage": 1}}')
    argv = accelerate_command(cfg(device="cpu", deepspeed=str(custom)), RUN, TRAIN_MODULE)
    assert argv[argv.index("--deepspeed_config_file") + 1] == str(custom)
    assert f"'{custom}'" in display_command(
        cfg(device="cpu", deepspeed=str(custom)), RUN, TRAIN_MODULE
    )  # quoted for a shell
    with pytest.raises(ConfigError, match="zero4"):
        accelerate_command(cfg(device="cpu", deepspeed="zero4"), RUN, TRAIN_MODULE)


def test_display_is_the_env_then_the_argv() -> None:
    c = cfg(device="cpu", num_processes=2)
    assert display_command(c, RUN, TRAIN_MODULE) == (
        "CUDA_VISIBLE_DEVICES='' ACCELERATE_USE_CPU=true " + " ".join(accelerate_command(c, RUN, TRAIN_MODULE))
    )
