"""The training script on the tiny dep_q 16 model, on CPU: overfitting, exact resume, abort, crash-safe
checkpoints, LoRA/subset modes and the configuration checks. Some runs go through the real
`accelerate launch`, the way the launcher starts it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import reset_accelerate, write_dataset, write_model, write_run

from backend.core import config
from backend.core.errors import ConfigError
from backend.finetune.config import FinetuneConfig, check_config
from backend.finetune.runs import TRAIN_MODULE
from backend.finetune.trainer import train
from backend.jobs.command import accelerate_command, env_for
from backend.models import checkpoints
from backend.models.weights import load_lm

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {
    "step",
    "max_steps",
    "epoch",
    "samples",
    "tokens_per_s",
    "elapsed_s",
    "eta_s",
    "lr",
    "depformer_lr",
    "loss",
    "text_nonpad_loss",
    "text_pad_loss",
    "moshi_semantic_loss",
    "moshi_acoustic_loss",
    "user_semantic_loss",
    "user_acoustic_loss",
    "text_acc",
    "moshi_semantic_acc",
    "user_semantic_acc",
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    return {
        "model": write_model(root / "model", dep_q=16),
        "model8": write_model(root / "model8", dep_q=8),
        # Two dialogues; audio codes from 8 entries so a few dozen steps can learn them.
        "data": write_dataset(root / "data", [16, 16], seed=1, audio_vocab=8),
        "eval": write_dataset(root / "eval", [12], seed=2, audio_vocab=8, prefix="eval"),
    }


@pytest.fixture(autouse=True)
def fresh_accelerate_state():  # type: ignore[no-untyped-def]
    yield
    reset_accelerate()


def run_cfg(run_dir: Path, assets: dict[str, Path], **overrides: Any) -> FinetuneConfig:
    return write_run(run_dir, **({"base_model": str(assets["model"]), "train_data": str(assets["data"])} | overrides))


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def steps(run_dir: Path) -> list[dict[str, Any]]:
    return [m for m in metrics(run_dir) if "event" not in m]


def env() -> dict[str, str]:
    return os.environ | {"NO_TORCH_COMPILE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The launcher's own `accelerate launch` argv and environment (backend.jobs.command)."""
    cfg = config.load(FinetuneConfig, run_dir / "config.json")
    return accelerate_command(cfg, run_dir, TRAIN_MODULE), env() | env_for(cfg)


def wait_for_step(run_dir: Path, proc: subprocess.Popen, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "metrics.jsonl").exists() and any(m.get("step", 0) >= step for m in steps(run_dir)):
            return
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no step {step} within {timeout} s")


@pytest.mark.slow
def test_tiny_model_overfits_two_dialogues(tmp_path: Path, assets: dict[str, Path]) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, max_steps=25, lr=5e-3, batch_size=2, eval_data=str(assets["eval"]))
    assert train(run) == "finished"
    log = steps(run)
    assert METRIC_KEYS <= set(log[0]) and log[-1]["step"] == 25
    for key in (
        "text_nonpad_loss",
        "text_pad_loss",
        "moshi_semantic_loss",
        "moshi_acoustic_loss",
        "user_semantic_loss",
        "user_acoustic_loss",
    ):
        start = sum(m[key] for m in log[:2]) / 2
        end = sum(m[key] for m in log[-3:]) / 3
        assert end < 0.6 * start, f"{key} fell only from {start:.2f} to {end:.2f}"
    events = [m for m in metrics(run) if m.get("event", "phase") != "phase"]
    assert [e["event"] for e in events] == ["eval", "checkpoint", "finished"]
    assert events[0]["loss"] is not None and events[0]["user_acoustic_loss"] is not None
    # The final checkpoint is a model folder for moshi's loaders, with moshi's own names.
    final = checkpoints.latest_checkpoint(run)
    assert final is not None and final.name == "step-000025"
    trained = load_lm(final)
    assert set(trained.state_dict()) == set(load_lm(assets["model"]).state_dict())


def test_startup_phases_are_reported_in_order_and_the_eta_counts_steps_only(
    tmp_path: Path, assets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, max_steps=4)
    assert train(run) == "finished"
    rows = metrics(run)
    phases = [m["message"] for m in rows if m.get("event") == "phase"]
    assert phases == [
        "memory-mapping the datasets (a row cache is built on first use)",
        f"loading the base model {assets['model']}",
        "preparing the model and optimiser",
        "first step (one-time warm-up: memory, kernels)",
    ]
    first_step = next(i for i, m in enumerate(rows) if "event" not in m)
    assert all(m.get("event") != "phase" for m in rows[first_step:])  # every phase comes before the first step
    log = capsys.readouterr().out  # train.log: the phases, in order, before the first step's line
    at = [log.index(f"{p} ...\n") for p in phases] + [log.index("step 1/4")]
    assert at == sorted(at), log
    # The first step's own duration (warm-up) makes no ETA; later ones come from the steps after it.
    logged = steps(run)
    assert logged[0]["eta_s"] is None and "ETA -" in log
    for m in logged[1:]:
        per_step = (m["elapsed_s"] - logged[0]["elapsed_s"]) / (m["step"] - 1)
        assert m["eta_s"] == pytest.approx(per_step * (4 - m["step"]), rel=0.25, abs=0.1)


def split_vs_straight_config(run: Path, assets: dict[str, Path], max_steps: int, mode: str) -> None:
    run_cfg(
        run,
        assets,
        max_steps=max_steps,
        lr=2e-3,
        warmup_steps=4,
        grad_accum=2,
        batch_size=1,
        max_frames=8,
        checkpoint_every=3,
        main_speaker="both",
        mode=mode,
        lora_rank=4,
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "lora"])
def test_resume_gives_the_same_losses_as_a_straight_run(tmp_path: Path, assets: dict[str, Path], mode: str) -> None:
    """6 steps straight vs 3 steps then a resumed 3 (through accelerate launch): warm-up, grad_accum 2 and
    the epoch boundary (8 examples, 4 per step) all cross the resume point. A LoRA run's checkpoints hold
    its adapters only (the frozen base is the base model's), and resume from them exactly."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    split_vs_straight_config(straight, assets, 6, mode)
    assert train(straight) == "finished"
    split_vs_straight_config(split, assets, 3, mode)
    for _ in range(2):
        cmd, cmd_env = launch(split)
        done = subprocess.run(cmd, cwd=REPO, env=cmd_env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        split_vs_straight_config(split, assets, 6, mode)
    a, b = steps(straight), steps(split)
    assert [m["step"] for m in b] == list(range(1, 7))
    assert any(m.get("event") == "resumed" and m["step"] == 3 for m in metrics(split))
    for x, y in zip(a, b):
        for key in ("loss", "text_loss", "audio_loss", "user_acoustic_loss", "lr"):
            assert y[key] == pytest.approx(x[key], rel=1e-5, abs=1e-6), (x["step"], key)
        assert (x["epoch"], x["samples"]) == (y["epoch"], y["samples"])
    assert [p.name for p in checkpoints.list_checkpoints(split)] == ["step-000003", "step-000006"]
    weights = "model.safetensors" if mode == "full" else "lora.safetensors"
    wa = load_file(str(checkpoints.latest_checkpoint(straight) / weights))
    wb = load_file(str(checkpoints.latest_checkpoint(split) / weights))
    assert set(wa) == set(wb) and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    saved = load_file(str(checkpoints.latest_checkpoint(split) / checkpoints.ACCELERATE_STATE / "model.safetensors"))
    if mode == "lora":
        assert set(saved) == set(wb)  # the adapters only, under the same names
    else:
        assert len(saved) == len(load_lm(assets["model"]).state_dict())


@pytest.mark.slow
def test_abort_file_stops_at_a_step_boundary_with_a_checkpoint(tmp_path: Path, assets: dict[str, Path]) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, max_steps=500, lr=1e-4, keep_checkpoints=1, log_every=2)
    cmd, cmd_env = launch(run)
    proc = subprocess.Popen(cmd, cwd=REPO, env=cmd_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_step(run, proc, 2)
    (run / "abort").touch()
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()[-3000:]
    last = metrics(run)[-1]
    assert last["event"] == "aborted" and 2 <= last["step"] < 500
    ckpt = checkpoints.latest_checkpoint(run)
    assert ckpt is not None and checkpoints.read_trainer_state(ckpt)["step"] == last["step"] == steps(run)[-1]["step"]
    # train.log (the launcher's stdout) has a line per logged step: step, losses, lr, tokens/s, ETA.
    lines = [line for line in out.decode().splitlines() if line.startswith("step ")]
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [m["step"] for m in steps(run)]
    assert all(" loss " in line and " lr " in line and "tokens/s" in line and "ETA " in line for line in lines), lines


def test_a_stop_between_logged_steps_logs_the_step_it_checkpoints(
    tmp_path: Path, assets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The status (newest metrics line) names the step of the checkpoint written, and train.log shows it."""
    run = tmp_path / "run"
    run_cfg(run, assets, max_steps=50, log_every=10)
    (run / "abort").touch()  # read after the first step
    assert train(run) == "aborted"
    ckpt = checkpoints.latest_checkpoint(run)
    assert ckpt is not None and checkpoints.read_trainer_state(ckpt)["step"] == steps(run)[-1]["step"] == 1
    assert "step 1/50  loss " in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_stops_gracefully(tmp_path: Path, assets: dict[str, Path]) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, max_steps=500, lr=1e-4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.finetune.trainer", "--run-dir", str(run)],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_step(run, proc, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert metrics(run)[-1]["event"] == "aborted"
    assert checkpoints.read_trainer_state(checkpoints.latest_checkpoint(run))["step"] == metrics(run)[-1]["step"]


# The save of step 4 hangs after writing everything but the `complete` marker: the test kills it there.
SLOW_SAVE = """
import sys, time
from backend.models import checkpoints
publish = checkpoints.publish
def slow_publish(staging, final):
    if final.name == "step-000004":
        print("SAVING", flush=True)
        time.sleep(600)
    publish(staging, final)
checkpoints.publish = slow_publish
from backend.finetune.trainer import main
sys.exit(main(["--run-dir", sys.argv[1]]))
"""


@pytest.mark.slow
def test_kill_during_checkpoint_save_leaves_no_listed_half_checkpoint(tmp_path: Path, assets: dict[str, Path]) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, max_steps=6, lr=1e-4, checkpoint_every=2, keep_checkpoints=3)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(run)], cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # until the save of step 4 has written its files
            if line.strip() == b"SAVING":
                break
        else:
            pytest.fail(f"the run ended before saving step 4: {proc.wait()}")
    finally:
        proc.kill()
    proc.wait(timeout=60)
    partial = checkpoints.staging_path(run, 4)
    assert (partial / "model.safetensors").exists() and (partial / "accelerate_state").is_dir()
    assert [p.name for p in checkpoints.list_checkpoints(run)] == ["step-000002"]
    assert checkpoints.latest_checkpoint(run).name == "step-000002"
    load_lm(checkpoints.latest_checkpoint(run))  # the listed one is whole
    # A restart removes the leftover and resumes from step 2.
    assert train(run) == "finished"
    assert not partial.exists()
    assert [p.name for p in checkpoints.list_checkpoints(run)] == ["step-000002", "step-000004", "step-000006"]
    assert any(m.get("event") == "resumed" and m["step"] == 2 for m in metrics(run))


def test_lora_trains_only_adapters_and_starts_as_the_base(tmp_path: Path, assets: dict[str, Path]) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, mode="lora", lora_rank=4, max_steps=2, lr=1e-2)
    base_run = tmp_path / "base"
    run_cfg(base_run, assets, max_steps=1, lr=1e-12)
    train(base_run)
    reset_accelerate()
    assert train(run) == "finished"
    # Zero-initialised B: the first step's loss is the base model's.
    assert steps(run)[0]["loss"] == pytest.approx(steps(base_run)[0]["loss"], rel=1e-5)
    ckpt = checkpoints.latest_checkpoint(run)
    lora = load_file(str(ckpt / "lora.safetensors"))
    assert lora and all(".lora_A." in k or ".lora_B." in k for k in lora)
    assert not (ckpt / "model.safetensors").exists()
    assert any(v.abs().sum() > 0 for k, v in lora.items() if ".lora_B." in k)  # the adapters did train
    kwargs = json.loads((ckpt / "moshi_lm_kwargs.json").read_text())
    assert kwargs["lora"] is True and kwargs["lora_rank"] == 4


def test_subset_mode_changes_only_the_named_parameters(tmp_path: Path, assets: dict[str, Path]) -> None:
    run = tmp_path / "run"
    run_cfg(run, assets, mode="subset", trainable=["depformer", "linears"], max_steps=2, lr=1e-2, depformer_lr=2e-2)
    assert train(run) == "finished"
    assert steps(run)[0]["depformer_lr"] == 2e-2 and steps(run)[0]["lr"] is not None
    before = load_file(str(assets["model"] / "model.safetensors"))
    after = load_file(str(checkpoints.latest_checkpoint(run) / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("depformer", "linears")) for k in changed)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train_data": "/nowhere/data"}, "/nowhere/data"),
        ({"eval_data": "/nowhere/eval"}, "/nowhere/eval"),
        ({"deepspeed": "zero9"}, "zero9"),
        ({"deepspeed": "/nowhere/ds.json"}, "ds.json"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"max_frames": 10, "min_frames": 20}, "max_frames"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"threads": -1}, "threads must be >= 0"),
        ({"mode": "subset"}, "trainable"),
        ({"machine_rank": 2, "num_machines": 2, "num_processes": 2}, "machine_rank"),
        ({"base_model": "/nowhere/model"}, "/nowhere/model"),
        ({"tracker": "wandb"}, None),  # refused only when wandb is not installed
    ],
)
def test_bad_configurations_are_refused(
    tmp_path: Path, assets: dict[str, Path], overrides: dict, message: str | None
) -> None:
    cfg = run_cfg(tmp_path / "run", assets, **overrides)
    if message is None:
        import importlib.util

        if importlib.util.find_spec(cfg.tracker) is not None:
            check_config(cfg)
            return
        message = "not installed"
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_user_stream_needs_a_dep_q_16_model(tmp_path: Path, assets: dict[str, Path]) -> None:
    cfg = run_cfg(tmp_path / "run", assets, base_model=str(assets["model8"]))
    with pytest.raises(ConfigError, match="dep_q is 8, but user_stream needs a dep_q 16 model"):
        check_config(cfg)
    check_config(config.from_dict(FinetuneConfig, config.to_dict(cfg) | {"user_stream": False}))
    check_config(run_cfg(tmp_path / "run16", assets))  # the good one passes


def test_bad_deepspeed_json_is_refused(tmp_path: Path, assets: dict[str, Path]) -> None:
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 2}, "optimizer": {"type": "Adam"}}')
    with pytest.raises(ConfigError, match="optimizer"):
        check_config(run_cfg(tmp_path / "run", assets, deepspeed=str(ds)))
    ds.write_text("{not json")
    with pytest.raises(ConfigError, match="ds.json"):
        check_config(run_cfg(tmp_path / "run", assets, deepspeed=str(ds)))
    check_config(run_cfg(tmp_path / "run", assets, deepspeed="zero3"))


def test_half_precision_training_feeds_the_linears_contiguous_inputs(assets: dict[str, Path]) -> None:
    """bfloat16 training models get contiguous inputs on every linear (moshi's per-step slices would make CPU
    matmuls copy whole weights), with the same outputs as without; float32 models are left as they are."""
    from backend.finetune.optim import apply_mode
    from backend.finetune.trainer import training_model
    from backend.models.loading import load_model

    codes = torch.randint(0, 8, (1, 17, 6), generator=torch.Generator().manual_seed(0))
    seen: list[bool] = []

    def run(model: torch.nn.Module) -> torch.Tensor:
        seen.clear()
        handles = [
            m.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous()))
            for m in model.modules()
            if isinstance(m, torch.nn.Linear)
        ]
        with torch.no_grad():
            logits = model(codes).logits.float()
        for h in handles:
            h.remove()
        return logits

    outputs = {}
    for dtype in ("bfloat16", "float32"):
        cfg = FinetuneConfig(base_model=str(assets["model"]), dtype=dtype, mode="lora", lora_rank=4)
        torch.manual_seed(0)
        outputs[dtype] = run(training_model(cfg)[0])
        assert all(seen) if dtype == "bfloat16" else not all(seen)  # float32: the strided slices are there
    torch.manual_seed(0)
    plain = load_model(assets["model"], dtype=torch.bfloat16)
    apply_mode(plain, FinetuneConfig(mode="lora", lora_rank=4))
    plain.train()
    torch.testing.assert_close(outputs["bfloat16"], run(plain), equal_nan=True, atol=1e-2, rtol=1e-2)
    assert not all(seen)
