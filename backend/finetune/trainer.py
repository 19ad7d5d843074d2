"""The training script, started by the launcher as
`accelerate launch <args> -m backend.finetune.trainer --run-dir runs/<run-id>`; everything else comes from
`<run-dir>/config.json` (a FinetuneConfig).

Runs the same with 1 or N processes, CPU (gloo) or GPUs, with or without DeepSpeed ZeRO-2/3 (the
DeepSpeed config is chosen by the run's config, not by launcher flags). Resumes exactly from the
newest complete checkpoint of the run folder; stops gracefully at an optimiser-step boundary on the
`abort` file or SIGTERM/SIGINT (checkpoint, {"event": "aborted"}, exit 0).
"""

import argparse
import importlib.util
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from backend.core.paths import ASSETS
from backend.finetune import checkpoints

from backend.core import config
from backend.core.errors import ConfigError, InputError
from backend.finetune.config import FinetuneConfig
from backend.finetune.loss import PARTS, LossWeights, compute_loss
from backend.models.source import LM_KWARGS, LM_WEIGHTS, load_lm
from backend.finetune.optim import apply_mode, make_optimizer, make_scheduler
from backend.finetune.data import Dialogues, ExampleStream, Position, check_schema, collate, eval_share, example_rows, \
    make_examples

DEEPSPEED_PRESETS = {name: ASSETS / "deepspeed" / f"{name}.json" for name in ("zero2", "zero3")}
ABORT_FILE = "abort"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
STREAMS_WITH_USER = 16  # dep_q of a model that also predicts the user's 8 codebooks


# ---------------------------------------------------------------- configuration checks

def deepspeed_config_path(cfg: FinetuneConfig) -> Path | None:
    """The DeepSpeed JSON of a config: none, a preset under assets/deepspeed, or a file path."""
    if cfg.deepspeed in ("", "none"):
        return None
    path = DEEPSPEED_PRESETS.get(cfg.deepspeed, Path(cfg.deepspeed))
    if not path.is_file():
        raise ConfigError(f"deepspeed: {cfg.deepspeed!r} is neither none, zero2, zero3 nor an existing JSON file")
    return path


def deepspeed_config(cfg: FinetuneConfig) -> dict[str, Any] | None:
    """The DeepSpeed config with the values this script owns filled in (accelerate fills the precision)."""
    path = deepspeed_config_path(cfg)
    if path is None:
        return None
    try:
        ds = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable DeepSpeed JSON file ({e})") from None
    if not isinstance(ds, dict) or ds.get("zero_optimization", {}).get("stage") not in (0, 1, 2, 3):
        raise ConfigError(f"{path}: a DeepSpeed config needs zero_optimization.stage (0..3)")
    for owned in ("optimizer", "scheduler"):
        if owned in ds:
            raise ConfigError(f"{path}: remove the '{owned}' section; the optimiser and schedule come from the "
                              f"run's configuration (lr, depformer_lr, warmup_steps...)")
    ds.update(train_micro_batch_size_per_gpu=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
              gradient_clipping=cfg.grad_clip)
    ds.pop("train_batch_size", None)  # derived by accelerate from the above and the process count
    return ds


def base_model_kwargs(source: str) -> dict[str, Any] | None:
    """The LMModel kwargs of a local model folder; None for a hub repo id (not fetched before launch)."""
    path = Path(source)
    if path.is_dir():
        for name in (LM_KWARGS, LM_WEIGHTS):
            if not (path / name).is_file():
                raise ConfigError(f"{path}: no {name} in this model folder (make one with the init stage)")
        return json.loads((path / LM_KWARGS).read_text())
    if path.is_absolute() or source.startswith(".") or source.count("/") != 1:
        raise ConfigError(f"base_model: {source} is neither a model folder nor a hub repo id")
    return None


def check_model_kwargs(kwargs: dict[str, Any], cfg: FinetuneConfig) -> None:
    """The model must read the 17-row view; the user stream needs dep_q 16 (J-Moshi found out as a shape
    error hours later)."""
    n_q, dep_q = kwargs.get("n_q"), kwargs.get("dep_q")
    if n_q != 16:
        raise ConfigError(f"{cfg.base_model}: n_q is {n_q}, but the training view has 16 audio streams "
                          f"(Moshi's 8 + the user's 8)")
    if dep_q not in (8, STREAMS_WITH_USER):
        raise ConfigError(f"{cfg.base_model}: dep_q {dep_q} is not supported (8 or 16)")
    if cfg.user_stream and dep_q != STREAMS_WITH_USER:
        raise ConfigError(f"{cfg.base_model}: dep_q is {dep_q}, but user_stream needs a dep_q 16 model (run the "
                          f"init stage with the user-stream extension, or set user_stream to false)")
    if kwargs.get("lora"):
        raise ConfigError(f"{cfg.base_model}: this is a LoRA checkpoint; train from a merged export instead")


def check_numbers(cfg: FinetuneConfig) -> None:
    rules = [
        (cfg.lr > 0, f"lr must be > 0, got {cfg.lr}"),
        (cfg.depformer_lr is None or cfg.depformer_lr > 0, f"depformer_lr must be > 0, got {cfg.depformer_lr}"),
        (cfg.max_steps >= 1, f"max_steps must be >= 1, got {cfg.max_steps}"),
        (cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}"),
        (cfg.grad_accum >= 1, f"grad_accum must be >= 1, got {cfg.grad_accum}"),
        (cfg.min_frames >= 2, f"min_frames must be >= 2 (one frame has no next-step target), got {cfg.min_frames}"),
        (cfg.max_frames >= cfg.min_frames, f"max_frames ({cfg.max_frames}) must be >= min_frames ({cfg.min_frames})"),
        (cfg.warmup_steps >= 0, f"warmup_steps must be >= 0, got {cfg.warmup_steps}"),
        (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}"),
        (cfg.eps > 0, f"eps must be > 0, got {cfg.eps}"),
        (cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}"),
        (cfg.grad_clip >= 0, f"grad_clip must be >= 0, got {cfg.grad_clip}"),
        (min(cfg.text_pad_weight, cfg.semantic_weight, cfg.acoustic_weight, cfg.user_stream_weight,
             cfg.text_weight, cfg.audio_weight) >= 0, "loss weights must be >= 0"),
        (cfg.text_weight + cfg.audio_weight > 0, "text_weight and audio_weight are both 0: nothing to learn"),
        (cfg.log_every >= 1, f"log_every must be >= 1, got {cfg.log_every}"),
        (cfg.threads >= 0, f"threads must be >= 0, got {cfg.threads}"),
        (cfg.eval_every >= 0, f"eval_every must be >= 0, got {cfg.eval_every}"),
        (cfg.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {cfg.checkpoint_every}"),
        (cfg.keep_checkpoints >= 1, f"keep_checkpoints must be >= 1, got {cfg.keep_checkpoints}"),
        (cfg.mode != "lora" or cfg.lora_rank >= 1, f"lora_rank must be >= 1, got {cfg.lora_rank}"),
        (cfg.mode != "subset" or bool(cfg.trainable), "mode subset needs parameter name prefixes in trainable"),
        (cfg.num_processes >= 1 and cfg.num_machines >= 1, "num_processes and num_machines must be >= 1"),
        (cfg.num_processes >= cfg.num_machines, "num_processes counts all machines: it must be >= num_machines"),
        (0 <= cfg.machine_rank < cfg.num_machines, f"machine_rank must be in 0..{cfg.num_machines - 1}"),
        (1 <= cfg.main_port <= 65535, f"main_port must be a TCP port, got {cfg.main_port}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def uses_cpu(cfg: FinetuneConfig) -> bool:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but this machine has no CUDA GPU; use 'cpu' or 'auto'")
    return cfg.device == "cpu" or not torch.cuda.is_available()


def check_config(cfg: FinetuneConfig) -> None:
    """Refuse a configuration before any work (the launcher calls this before `accelerate launch`)."""
    check_numbers(cfg)
    if uses_cpu(cfg) and (cfg.mixed_precision == "fp16" or cfg.dtype == "float16"):
        raise ConfigError("float16 training needs a GPU; on CPU use float32 or bfloat16")
    deepspeed_config(cfg)
    kwargs = base_model_kwargs(cfg.base_model)
    if kwargs is not None:
        check_model_kwargs(kwargs, cfg)
    try:
        check_schema(cfg.train_data)
        if cfg.eval_data is not None:
            check_schema(cfg.eval_data)
    except InputError as e:
        raise ConfigError(str(e)) from None
    if cfg.tracker != "none" and importlib.util.find_spec(cfg.tracker) is None:
        raise ConfigError(f"tracker {cfg.tracker}: the {cfg.tracker} package is not installed "
                          f"(install it or use tracker none; metrics.jsonl is always written)")


# ---------------------------------------------------------------- run-time helpers

class StopRequest:
    """SIGTERM/SIGINT or the run folder's `abort` file ask for a stop at the next step boundary."""

    def __init__(self, run_dir: Path):
        self.abort_file = run_dir / ABORT_FILE
        self.signalled = False
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        """Give the signals back (the trainer may run inside another program, e.g. a test)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def requested(self) -> bool:
        return self.signalled or self.abort_file.exists()


class MetricsLog:
    """metrics.jsonl, append-only, one flushed line per record, written by rank 0 only."""

    def __init__(self, path: Path, enabled: bool):
        self.file = open(path, "a", encoding="utf-8") if enabled else None

    def write(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
            self.file.write(json.dumps(clean) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def parts_vector(parts: dict[str, torch.Tensor | None], device: torch.device) -> torch.Tensor:
    """The loss parts as one float vector (NaN for a missing part), ready for one all-reduce. It stays on
    the device: reading values here would cost a GPU sync per micro-step."""
    nan = torch.tensor(float("nan"), device=device)
    return torch.stack([nan if parts[k] is None else parts[k].float() for k in PARTS])


def vector_parts(vec: torch.Tensor) -> dict[str, float | None]:
    return {k: None if math.isnan(v) else v for k, v in zip(PARTS, vec.tolist())}


def step_line(record: dict[str, Any]) -> str:
    """A logged step as one line of train.log: step, losses, lr, tokens/s, ETA."""
    def num(key: str) -> str:
        value = record.get(key)
        return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"

    eta = int(record["eta_s"])
    return (f"step {record['step']}/{record['max_steps']}  loss {num('loss')} (text {num('text_loss')}, "
            f"audio {num('audio_loss')})  lr {num('lr')}  {record['tokens_per_s']:.0f} tokens/s  "
            f"ETA {eta // 60}:{eta % 60:02d}\n")


def make_accelerator(cfg: FinetuneConfig, run_dir: Path):  # type: ignore[no-untyped-def]
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    ds = deepspeed_config(cfg)
    cpu = uses_cpu(cfg)
    handlers = []
    if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Without an explicit gloo backend, N CPU processes each believe they are alone (PITFALLS).
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    if ds is not None:
        # accelerate ignores DeepSpeed when it is told "CPU"; DeepSpeed runs on CPU through its own accelerator.
        os.environ.pop("ACCELERATE_USE_CPU", None)
        if cpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
    return Accelerator(
        cpu=cpu and ds is None,
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision,
        deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=ds) if ds is not None else None,
        kwargs_handlers=handlers,
        log_with=None if cfg.tracker == "none" else cfg.tracker,
        project_dir=str(run_dir),
    )


def prepare_for_zero3(model: torch.nn.Module) -> None:
    """ZeRO-3 gathers a module's own parameters around its forward. Checked in moshi 0.2.13: the only
    module that reads child weights directly is ActivationGating (`linear_in.weight` / `linear_out.weight`
    go straight to a functional kernel; embeddings, multi-linear and weights-per-step paths call their
    children). DeepSpeed 0.19 would gather such weights one by one on access (external-parameter
    detection); making ActivationGating a ZeRO-3 leaf fetches both weights together up front, and does
    not depend on that detection."""
    from deepspeed.utils import set_z3_leaf_modules
    from moshi.modules.gating import ActivationGating

    if any(isinstance(m, ActivationGating) for m in model.modules()):
        set_z3_leaf_modules(model, [ActivationGating])


def load_model(cfg: FinetuneConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The base model through moshi's loaders, with its kwargs (saved into every checkpoint)."""
    from moshi.models import loaders

    kwargs = base_model_kwargs(cfg.base_model)
    model = load_lm(cfg.base_model, device="cpu", dtype=DTYPES[cfg.dtype])
    if kwargs is None:  # hub repo: the kwargs that built the model
        kwargs = loaders.CheckpointInfo.from_hf_repo(cfg.base_model).lm_config or dict(loaders._lm_kwargs)
    check_model_kwargs({"n_q": model.n_q, "dep_q": model.dep_q, **kwargs, "lora": False}, cfg)
    if cfg.activation_checkpointing:  # moshi's `gradient_checkpointing` kwarg sets exactly these flags
        model.transformer.checkpointing = True
        model.depformer.checkpointing = True
    apply_mode(model, cfg)
    model.train()
    if cfg.mode == "lora":
        kwargs = {**kwargs, "lora": True, "lora_rank": cfg.lora_rank, "lora_scaling": cfg.lora_scaling}
    return model, kwargs


# ---------------------------------------------------------------- the training run

class Trainer:
    def __init__(self, run_dir: Path, cfg: FinetuneConfig):
        self.run_dir, self.cfg = run_dir, cfg
        self.accelerator = make_accelerator(cfg, run_dir)
        acc = self.accelerator
        self.is_main = acc.is_main_process
        self.stop = StopRequest(run_dir)
        self.metrics = MetricsLog(run_dir / METRICS_FILE, self.is_main)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)

        self.train_set = Dialogues(cfg.train_data)
        examples = make_examples(self.train_set.lengths, cfg.main_speaker, cfg.max_frames, cfg.min_frames)
        self.stream = ExampleStream(examples, cfg.seed, cfg.batch_size, acc.process_index, acc.num_processes)
        self.eval_set = Dialogues(cfg.eval_data) if cfg.eval_data is not None else None
        self.eval_examples = (make_examples(self.eval_set.lengths, cfg.main_speaker, cfg.max_frames, cfg.min_frames)
                              if self.eval_set is not None else [])

        model, self.lm_kwargs = load_model(cfg)
        self.text_card, self.card = model.text_card, model.card
        self.weights = LossWeights(
            variant=cfg.loss_variant, text_pad_weight=cfg.text_pad_weight, semantic_weight=cfg.semantic_weight,
            acoustic_weight=cfg.acoustic_weight, user_stream_weight=cfg.user_stream_weight if cfg.user_stream else 0.0,
            text_weight=cfg.text_weight, audio_weight=cfg.audio_weight,
            pad_id=model.text_padding_token_id, epad_id=model.end_of_text_padding_id)
        optimizer = make_optimizer(model, cfg)
        # Stepped here once per optimiser step: accelerate's wrapper would step it once per process.
        self.scheduler = make_scheduler(optimizer, cfg)
        if acc.state.deepspeed_plugin is not None and acc.state.deepspeed_plugin.zero_stage == 3:
            prepare_for_zero3(model)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        acc.register_for_checkpointing(self.scheduler)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.tracker != "none":
            acc.init_trackers("moshi-studio", config=config.to_dict(cfg))
        self.step = 0

    # -- checkpoints

    def resume(self) -> None:
        if self.is_main:
            checkpoints.remove_partials(self.run_dir)
        self.accelerator.wait_for_everyone()
        latest = checkpoints.latest_checkpoint(self.run_dir)
        if latest is None:
            return
        state = checkpoints.read_trainer_state(latest)
        acc = self.accelerator
        if acc.state.deepspeed_plugin is not None and state["num_processes"] != acc.num_processes:
            raise ConfigError(f"{latest}: written by {state['num_processes']} processes; DeepSpeed shards can only be "
                              f"resumed by as many (this run has {acc.num_processes})")
        acc.load_state(str(latest / checkpoints.ACCELERATE_STATE))
        self.step = state["step"]
        self.stream.position = Position(**state["position"])
        self.metrics.write({"event": "resumed", "step": self.step, "path": str(latest)})

    def save(self) -> Path:
        acc, cfg = self.accelerator, self.cfg
        staging = checkpoints.staging_path(self.run_dir, self.step)
        final = checkpoints.final_path(self.run_dir, self.step)
        if self.is_main:
            staging.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        acc.save_state(str(staging / checkpoints.ACCELERATE_STATE))  # every rank: its RNG, its ZeRO shard
        state_dict = acc.get_state_dict(self.model)  # collective under ZeRO-3; moshi's own names
        if self.is_main:
            from safetensors.torch import save_file

            if cfg.mode == "lora":
                state_dict = {k: v for k, v in state_dict.items() if ".lora_A." in k or ".lora_B." in k}
            weights = "lora.safetensors" if cfg.mode == "lora" else LM_WEIGHTS
            save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(staging / weights))
            (staging / LM_KWARGS).write_text(json.dumps(self.lm_kwargs, indent=2) + "\n")
            trainer_state = {"step": self.step, "position": self.stream.position.to_dict(),
                             "samples": self.samples, "num_processes": acc.num_processes,
                             "base_model": cfg.base_model, "mode": cfg.mode, "weights": weights}
            (staging / checkpoints.TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")
            checkpoints.publish(staging, final)
            checkpoints.prune(self.run_dir, cfg.keep_checkpoints)
            self.metrics.write({"event": "checkpoint", "step": self.step, "path": str(final)})
        acc.wait_for_everyone()
        return final

    # -- steps

    @property
    def samples(self) -> int:
        return self.step * self.stream.global_batch * self.cfg.grad_accum

    def forward_loss(self, examples: list, dialogues: Dialogues):  # type: ignore[no-untyped-def]
        codes = collate([example_rows(dialogues, ex) for ex in examples]).to(self.accelerator.device)
        return compute_loss(self.model(codes), codes, self.weights, self.text_card, self.card)

    def train_step(self) -> tuple[torch.Tensor, int]:
        """One optimiser step (grad_accum micro-steps): mean loss parts and frames seen by this rank."""
        acc, cfg = self.accelerator, self.cfg
        parts, frames = [], 0
        for _ in range(cfg.grad_accum):
            batch = self.stream.next_batch()
            frames += sum(ex.frames for ex in batch)
            with acc.accumulate(self.model):
                result = self.forward_loss(batch, self.train_set)
                acc.backward(result.total)
                if acc.sync_gradients and cfg.grad_clip > 0:
                    acc.clip_grad_norm_(self.trainable, cfg.grad_clip)  # DeepSpeed clips itself (config)
                self.optimizer.step()
                self.optimizer.zero_grad()
            parts.append(parts_vector(result.parts, acc.device))
        self.scheduler.step()
        self.step += 1
        return torch.stack(parts).mean(0), frames

    def evaluate(self) -> dict[str, float | None]:
        acc = self.accelerator
        assert self.eval_set is not None
        sums, counts = torch.zeros(len(PARTS)), torch.zeros(len(PARTS))
        self.model.eval()
        with torch.no_grad():
            for ex, counts_here in eval_share(self.eval_examples, acc.process_index, acc.num_processes):
                vec = parts_vector(self.forward_loss([ex], self.eval_set).parts, acc.device).cpu()
                if counts_here:
                    known = ~vec.isnan()
                    sums += torch.where(known, vec, 0.0)
                    counts += known.float()
        self.model.train()
        sums = acc.reduce(sums.to(acc.device), "sum").cpu()
        counts = acc.reduce(counts.to(acc.device), "sum").cpu()
        return vector_parts(torch.where(counts > 0, sums / counts.clamp_min(1), float("nan")))

    def log_step(self, parts: torch.Tensor, frames: int, t_start: float, step_start: int, t_last: float) -> None:
        acc, cfg = self.accelerator, self.cfg
        parts = acc.reduce(parts.to(acc.device), "mean").cpu()
        frames_all = int(acc.reduce(torch.tensor([frames], device=acc.device), "sum").item())
        now = time.monotonic()
        elapsed = now - t_start
        eta = elapsed / (self.step - step_start) * (cfg.max_steps - self.step)
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.scheduler.optimizer.param_groups)}
        record = {"step": self.step, "max_steps": cfg.max_steps, "epoch": round(self.stream.epoch_progress(), 4),
                  "samples": self.samples, "tokens_per_s": frames_all / max(now - t_last, 1e-9),
                  "elapsed_s": elapsed, "eta_s": eta, "lr": lrs.get("temporal", lrs.get("depformer")),
                  "depformer_lr": lrs.get("depformer", lrs.get("temporal")), **vector_parts(parts)}
        self.metrics.write(record)
        if self.is_main:
            sys.stdout.write(step_line(record))  # one write: the log tail shows progress, not only start-up lines
            sys.stdout.flush()
        if cfg.tracker != "none":
            acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=self.step)

    def run_eval(self) -> None:
        record = {"event": "eval", "step": self.step, **self.evaluate()}
        self.metrics.write(record)
        if self.cfg.tracker != "none":
            self.accelerator.log({f"eval/{k}": v for k, v in record.items() if isinstance(v, float)}, step=self.step)

    def stop_agreed(self) -> bool:
        """All ranks stop at the same step: any rank's request counts."""
        flag = torch.tensor([1.0 if self.stop.requested() else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def announce(self) -> None:
        """One line per rank in train.log: which process this is and which examples it starts with
        (ranks that print the same examples would be training on the same data)."""
        acc, ds = self.accelerator, self.accelerator.state.deepspeed_plugin
        first = ", ".join(f"{self.train_set.ids[e.dialogue]}:{e.main}@{e.start}" for e in self.stream.peek())
        line = (f"rank {acc.process_index}/{acc.num_processes} ({acc.distributed_type.value}"
                f"{f', ZeRO-{ds.zero_stage}' if ds else ''}): {len(self.stream.examples)} training examples, "
                f"step {self.step}, next: {first}\n")
        sys.stdout.write(line)  # one write: print() writes the newline separately and ranks interleave
        sys.stdout.flush()

    def run(self) -> str:
        """Train to max_steps or to a stop request; returns "finished" or "aborted"."""
        cfg = self.cfg
        self.resume()
        self.announce()
        last_saved = self.step if checkpoints.latest_checkpoint(self.run_dir) else -1
        step_start, t_start = self.step, time.monotonic()
        t_last, window_parts, window_frames = t_start, [], 0
        outcome = "finished"
        while self.step < cfg.max_steps:
            parts, frames = self.train_step()
            window_parts.append(parts)
            window_frames += frames
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.log_step(torch.stack(window_parts).nanmean(0), window_frames, t_start, step_start, t_last)
                t_last, window_parts, window_frames = time.monotonic(), [], 0
            if self.eval_set is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
                self.run_eval()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save()
                last_saved = self.step
            if self.step < cfg.max_steps and self.stop_agreed():
                outcome = "aborted"
                if window_parts:  # the status then shows the step the checkpoint is written at
                    self.log_step(torch.stack(window_parts).nanmean(0), window_frames, t_start, step_start, t_last)
                break
        if outcome == "finished" and self.eval_set is not None and not (cfg.eval_every and self.step % cfg.eval_every == 0):
            self.run_eval()
        if last_saved != self.step:
            self.save()
        self.metrics.write({"event": outcome, "step": self.step})
        if cfg.tracker != "none":
            self.accelerator.end_training()
        self.metrics.close()
        return outcome


def train(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    cfg = config.load(FinetuneConfig, run_dir / CONFIG_FILE)
    check_config(cfg)
    trainer = Trainer(run_dir, cfg)
    try:
        return trainer.run()
    finally:
        trainer.stop.restore()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fine-tune Moshi on a Parquet dataset (run by accelerate launch).")
    parser.add_argument("--run-dir", type=Path, required=True, help="run folder holding config.json")
    args = parser.parse_args(argv)
    try:
        outcome = train(args.run_dir)
    except (ConfigError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"training {outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
