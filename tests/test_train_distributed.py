"""Two CPU processes through the real `accelerate launch`: plain DDP, DeepSpeed ZeRO-2 and ZeRO-3.

Each run trains a few steps and checkpoints; the checkpoint's model.safetensors (moshi's names) loads
with moshi's loaders and gives the same logits as the weights the run actually trained (consolidated
independently from the accelerate/DeepSpeed state). The two ranks must report different examples:
without gloo they would each think they are alone and train on the same data (PITFALLS).
DeepSpeed compiles its C++ ops on first use; they are cached in TORCH_EXTENSIONS_DIR (left at default).
"""

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import free_port
from safetensors.torch import load_file
from train_helpers import write_dataset, write_model, write_run

from backend.finetune.config import DEEPSPEED_PRESETS
from backend.finetune.runs import TRAIN_MODULE
from backend.jobs.command import accelerate_command, env_for
from backend.jobs.folder import METRICS_FILE
from backend.models import checkpoints
from backend.models.weights import load_lm

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dist")
    return {"model": write_model(root / "model", dep_q=16), "data": write_dataset(root / "data", [16, 16, 16], seed=4)}


def trained_weights(ckpt: Path, deepspeed: str) -> dict[str, torch.Tensor]:
    """The trained weights read back from the training state itself, not from model.safetensors."""
    state = ckpt / checkpoints.ACCELERATE_STATE
    if deepspeed == "none":
        return load_file(str(state / "model.safetensors"))
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(state))


def shard_everything(tmp_path: Path) -> str:
    """The zero3 preset, but with no parameter kept whole for being small: every weight of the tiny model
    is sharded, so any moshi code path that reads a weight without gathering it would fail."""
    ds = json.loads(DEEPSPEED_PRESETS["zero3"].read_text())
    ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    path = tmp_path / "zero3-shard-all.json"
    path.write_text(json.dumps(ds))
    return str(path)


@pytest.mark.parametrize("deepspeed", ["none", "zero2", "zero3"])
def test_two_processes_train_and_checkpoint(tmp_path: Path, assets: dict[str, Path], deepspeed: str) -> None:
    run = tmp_path / "run"
    ds_setting = shard_everything(tmp_path) if deepspeed == "zero3" else deepspeed
    cfg = write_run(
        run,
        base_model=str(assets["model"]),
        train_data=str(assets["data"]),
        deepspeed=ds_setting,
        num_processes=2,
        max_steps=3,
        checkpoint_every=2,
        keep_checkpoints=2,
        lr=1e-3,
        max_frames=8,
        main_port=free_port(),
    )
    # The launcher's own command and environment (backend.jobs.command), as the studio starts a run.
    env = os.environ | env_for(cfg) | {"NO_TORCH_COMPILE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = accelerate_command(cfg, run, TRAIN_MODULE)
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    print(f"{deepspeed}: {time.monotonic() - start:.0f} s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    announced = {
        rank: first
        for rank, _, first in re.findall(r"rank (\d)/2 \(([^)]*)\).*?next: (.*?)(?=rank \d/2 |\n|$)", done.stdout)
    }
    assert set(announced) == {"0", "1"}, done.stdout[-2000:]
    assert announced["0"] != announced["1"]  # each rank has its own shard of the data
    if deepspeed != "none":
        assert f"ZeRO-{deepspeed[-1]}" in done.stdout

    listed = checkpoints.list_checkpoints(run)
    assert [p.name for p in listed] == ["step-000002", "step-000003"]
    ckpt = listed[-1]
    assert checkpoints.read_trainer_state(ckpt)["num_processes"] == 2
    saved = load_file(str(ckpt / "model.safetensors"))
    base = load_lm(assets["model"])
    assert set(saved) == set(base.state_dict())  # moshi's own names, nothing renamed or missing
    assert all(saved[k].shape == v.shape for k, v in base.state_dict().items())

    trained = trained_weights(ckpt, deepspeed)
    assert set(trained) == set(saved)
    changed = [k for k in saved if not torch.equal(saved[k], base.state_dict()[k])]
    assert changed, "the weights did not train"

    served = load_lm(ckpt)  # moshi's loaders on the checkpoint folder
    reference = load_lm(assets["model"])
    reference.load_state_dict(trained)
    codes = torch.randint(0, 2048, (1, 17, 6), generator=torch.Generator().manual_seed(0))
    codes[:, 0] = 3
    with torch.no_grad():
        a, b = served(codes), reference(codes)
    torch.testing.assert_close(a.logits, b.logits, equal_nan=True)
    torch.testing.assert_close(a.text_logits, b.text_logits, equal_nan=True)


@pytest.mark.parametrize("deepspeed", ["zero2", "zero3"])
def test_deepspeed_lora_checkpoints_hold_the_adapters_and_resume(
    tmp_path: Path, assets: dict[str, Path], deepspeed: str
) -> None:
    """DeepSpeed writes its own module states: a LoRA run's hold the adapters, not the frozen base (a 7B base
    would be written at every save), and a relaunch resumes from them and trains on."""
    run = tmp_path / "run"
    common = {
        "base_model": str(assets["model"]),
        "train_data": str(assets["data"]),
        "deepspeed": deepspeed,
        "mode": "lora",
        "num_processes": 1,
        "checkpoint_every": 2,
        "keep_checkpoints": 2,
        "lr": 1e-3,
        "max_frames": 8,
        "main_port": free_port(),
    }
    for max_steps in (2, 3):  # the second launch finds step 2's checkpoint
        cfg = write_run(run, max_steps=max_steps, **common)
        env = os.environ | env_for(cfg) | {"NO_TORCH_COMPILE": "1", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            accelerate_command(cfg, run, TRAIN_MODULE), cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    first, last = checkpoints.list_checkpoints(run)
    assert (first.name, last.name) == ("step-000002", "step-000003")
    # ZeRO-2 names the file mp_rank_00_model_states.pt, ZeRO-3 zero_pp_rank_0_mp_rank_00_model_states.pt.
    (states,) = (first / checkpoints.ACCELERATE_STATE).glob("*/*model_states.pt")
    module = torch.load(states, map_location="cpu", weights_only=False)["module"]
    assert module and all(".lora_A." in k or ".lora_B." in k for k in module), sorted(module)[:5]
    events = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    assert {"event": "resumed", "step": 2} in [{k: e.get(k) for k in ("event", "step")} for e in events]
    assert [e["step"] for e in events if "event" not in e] == [1, 2, 3]
    before, after = (load_file(str(c / checkpoints.LORA_WEIGHTS)) for c in (first, last))
    assert set(before) == set(after) and any(not torch.equal(before[k], after[k]) for k in after)  # step 3 trained
