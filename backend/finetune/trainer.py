"""The training script, started by the launcher as
`accelerate launch <args> -m backend.finetune.trainer --run-dir runs/<run-id>`; everything else comes from
`<run-dir>/config.json` (a FinetuneConfig).

Runs the same with 1 or N processes, CPU (gloo) or GPUs, with or without DeepSpeed ZeRO-2/3 (the
DeepSpeed config is chosen by the run's config, not by launcher flags). Resumes exactly from the
newest complete checkpoint of the run folder; stops gracefully at an optimiser-step boundary on the
`abort` file or SIGTERM/SIGINT (checkpoint, {"event": "aborted"}, exit 0). A loss that is no longer finite
stops it at once ({"event": "failed", "message": ...}, no checkpoint of that state, exit 1).
"""

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backend.core import config
from backend.core.errors import ConfigError, InputError, StudioError
from backend.finetune.config import FinetuneConfig, check_config, check_model_kwargs, deepspeed_config
from backend.finetune.data import DatasetRows, ExampleStream, Position, collate, eval_share, example_rows, make_examples
from backend.finetune.loss import PARTS, LossWeights, compute_loss
from backend.finetune.optim import apply_mode, make_optimizer, make_scheduler
from backend.finetune.pace import eta_s, phase_record
from backend.finetune.prefix import dataset_personas, example_prefixes, with_prefixes
from backend.finetune.probe_checks import start_probes
from backend.jobs.folder import ABORT_FILE, CONFIG_FILE, METRICS_FILE
from backend.jobs.launch_config import on_cpu
from backend.jobs.processes import supervisor_gone
from backend.models import checkpoints
from backend.models.loading import load_model
from backend.models.source import LM_KWARGS, LM_WEIGHTS, torch_dtype
from backend.models.tensor_file import save_tensors
from backend.models.weights import lm_kwargs_of

# ---------------------------------------------------------------- run-time helpers


class TrainingFailed(StudioError):
    """The run cannot go on (its loss is no longer finite); the checkpoints written before stay."""


class StopRequest:
    """SIGTERM/SIGINT, the run folder's `abort` file or the death of the run's supervisor ask for a stop at the
    next step boundary."""

    SUPERVISOR_CHECK_S = 2.0  # reading its process from /proc at every step of a fast model is wasted work

    def __init__(self, run_dir: Path):
        self.abort_file = run_dir / ABORT_FILE
        self.signalled = False
        self.supervisor_checked = -math.inf
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        """Give the signals back (the trainer may run inside another program, e.g. a test)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def requested(self) -> bool:
        if not self.signalled and time.monotonic() - self.supervisor_checked >= self.SUPERVISOR_CHECK_S:
            self.supervisor_checked = time.monotonic()
            if supervisor_gone():
                print("the run's supervisor is gone: stopping at this step", file=sys.stderr, flush=True)
                self.signalled = True
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


@dataclass
class StepClock:
    """When training started in this process (after the startup) and when its first step completed."""

    start: float
    first_step: int = -1
    first_done: float = math.nan

    def completed(self, step: int) -> None:
        if self.first_step < 0:
            self.first_step, self.first_done = step, time.monotonic()


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

    eta = None if record["eta_s"] is None else int(record["eta_s"])
    return (
        f"step {record['step']}/{record['max_steps']}  loss {num('loss')} (text {num('text_loss')}, "
        f"audio {num('audio_loss')})  lr {num('lr')}  {record['tokens_per_s']:.0f} tokens/s  "
        f"ETA {'-' if eta is None else f'{eta // 60}:{eta % 60:02d}'}\n"
    )


def make_accelerator(cfg: FinetuneConfig, run_dir: Path):  # type: ignore[no-untyped-def]
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    ds = deepspeed_config(cfg)
    cpu = on_cpu(cfg, must_exist=True)
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


def contiguous_linear_inputs(model: torch.nn.Module) -> None:
    """moshi's depformer gives each step's weights a strided slice of its input (`x[:, t:t + 1]`). In half
    precision on CPU, torch's matmul then copies the whole weight once per batch row (a bmm on an expanded
    weight): a bfloat16 LoRA step of moshiko's widths ran 3 to 5 times slower. A contiguous copy of the
    input (a few KB) takes the plain matmul."""
    from moshi.modules.lora import LoRALinear

    inside_lora = {id(m) for lora in model.modules() if isinstance(lora, LoRALinear) for m in lora.children()}
    for module in model.modules():  # a LoRA layer's own linears get its (already contiguous) input
        if isinstance(module, (torch.nn.Linear, LoRALinear)) and id(module) not in inside_lora:
            module.register_forward_pre_hook(lambda _, args: (args[0].contiguous(), *args[1:]))


def training_model(cfg: FinetuneConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The base model ready to train, with its kwargs (saved into every checkpoint)."""
    kwargs = lm_kwargs_of(cfg.base_model, fetch=True)  # a hub repo's: the config.json that builds the model
    check_model_kwargs(kwargs, cfg)
    model = load_model(cfg.base_model, device="cpu", dtype=torch_dtype(cfg.dtype))
    if cfg.activation_checkpointing:  # moshi's `gradient_checkpointing` kwarg sets exactly these flags
        model.transformer.checkpointing = True
        model.depformer.checkpointing = True
    apply_mode(model, cfg)
    if cfg.dtype != "float32" or cfg.mixed_precision != "no":
        contiguous_linear_inputs(model)
    model.train()
    if cfg.mode == "lora":
        kwargs = {**kwargs, "lora": True, "lora_rank": cfg.lora_rank, "lora_scaling": cfg.lora_scaling}
    return model, kwargs


def only_trainable(models: list[torch.nn.Module], weights: list[dict[str, torch.Tensor]], _: str) -> None:
    """accelerate's save-state hook: keep only the parameters that train in each model's saved state."""
    for i, model in enumerate(models):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        weights[i] = {k: v for k, v in weights[i].items() if k in trainable}


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

        self.phase("memory-mapping the datasets (a row cache is built on first use)")
        self.train_set = DatasetRows(cfg.train_data)
        examples = make_examples(self.train_set.lengths, cfg.main_speaker, cfg.max_frames, cfg.min_frames)
        self.stream = ExampleStream(examples, cfg.seed, cfg.batch_size, acc.process_index, acc.num_processes)
        self.eval_set = DatasetRows(cfg.eval_data) if cfg.eval_data is not None else None
        self.eval_examples = (
            make_examples(self.eval_set.lengths, cfg.main_speaker, cfg.max_frames, cfg.min_frames)
            if self.eval_set is not None
            else []
        )

        self.personas = dataset_personas([cfg.train_data, cfg.eval_data])  # sidecars: dataset/personas.py
        self.phase(f"loading the base model {cfg.base_model}")
        model, self.lm_kwargs = training_model(cfg)
        self.text_card, self.card = model.text_card, model.card
        self.weights = LossWeights(
            variant=cfg.loss_variant,
            text_pad_weight=cfg.text_pad_weight,
            semantic_weight=cfg.semantic_weight,
            acoustic_weight=cfg.acoustic_weight,
            user_stream_weight=cfg.user_stream_weight if cfg.user_stream else 0.0,
            text_weight=cfg.text_weight,
            audio_weight=cfg.audio_weight,
            pad_id=model.text_padding_token_id,
            epad_id=model.end_of_text_padding_id,
        )
        optimizer = make_optimizer(model, cfg)
        # Stepped here once per optimiser step: accelerate's wrapper would step it once per process.
        self.scheduler = make_scheduler(optimizer, cfg)
        ds = acc.state.deepspeed_plugin
        self.phase(f"starting DeepSpeed ZeRO-{ds.zero_stage}" if ds else "preparing the model and optimiser")
        if ds is not None and ds.zero_stage == 3:
            prepare_for_zero3(model)
        self.model, self.optimizer = acc.prepare(model, optimizer)
        acc.register_for_checkpointing(self.scheduler)
        # LoRA/subset: the frozen weights are the base model's, so checkpoints hold only what trains (a 7B
        # base would otherwise be written, and serialised in memory, at every save), and resuming loads them
        # over the base. DeepSpeed writes its own module states: it is told the same through its own arguments.
        frozen_base = cfg.mode != "full"
        if acc.state.deepspeed_plugin is not None:
            self.save_kwargs = {"exclude_frozen_parameters": frozen_base}
            self.load_kwargs = {"load_module_strict": not frozen_base}
        else:
            self.save_kwargs, self.load_kwargs = {}, {"strict": not frozen_base}
            if frozen_base:
                acc.register_save_state_pre_hook(only_trainable)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.tracker != "none":
            acc.init_trackers("moshi-studio", config=config.to_dict(cfg))
        self.step = 0

    def phase(self, message: str) -> None:
        """Say what the run is doing before its first step, in metrics.jsonl (the Fine-tune tab) and train.log."""
        self.metrics.write(phase_record(message))
        if self.is_main:
            sys.stdout.write(f"{message} ...\n")  # one write: ranks' lines do not interleave
            sys.stdout.flush()

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
            raise ConfigError(
                f"{latest}: written by {state['num_processes']} processes; DeepSpeed shards can only be "
                f"resumed by as many (this run has {acc.num_processes})"
            )
        self.phase(f"loading checkpoint {latest.name}")
        acc.load_state(str(latest / checkpoints.ACCELERATE_STATE), **self.load_kwargs)
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
        # every rank: its RNG, its ZeRO shard
        acc.save_state(str(staging / checkpoints.ACCELERATE_STATE), **self.save_kwargs)
        state_dict = acc.get_state_dict(self.model)  # collective under ZeRO-3; moshi's own names
        if self.is_main:
            if cfg.mode == "lora":
                state_dict = {k: v for k, v in state_dict.items() if ".lora_A." in k or ".lora_B." in k}
            weights = checkpoints.LORA_WEIGHTS if cfg.mode == "lora" else LM_WEIGHTS
            save_tensors(staging / weights, state_dict)
            (staging / LM_KWARGS).write_text(json.dumps(self.lm_kwargs, indent=2) + "\n")
            trainer_state = {
                "step": self.step,
                "position": self.stream.position.to_dict(),
                "samples": self.samples,
                "num_processes": acc.num_processes,
                "base_model": cfg.base_model,
                "mode": cfg.mode,
                "weights": weights,
            }
            (staging / checkpoints.TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")
            checkpoints.publish(staging, final)
            checkpoints.prune(self.run_dir, cfg.keep_checkpoints)
            self.metrics.write({"event": "checkpoint", "step": self.step, "path": str(final)})
            start_probes(self.run_dir, cfg, self.step)  # in the background (probe_checks.py)
        acc.wait_for_everyone()
        return final

    # -- steps

    @property
    def samples(self) -> int:
        return self.step * self.stream.global_batch * self.cfg.grad_accum

    def forward_loss(self, examples: list, dialogues: DatasetRows):  # type: ignore[no-untyped-def]
        codes = collate([example_rows(dialogues, ex) for ex in examples]).to(self.accelerator.device)
        prefixes = example_prefixes(self.personas, dialogues.ids, examples)
        codes, targets = with_prefixes(codes, [ex.frames for ex in examples], prefixes, self.cfg.persona_text_loss)
        return compute_loss(self.model(codes), targets, self.weights, self.text_card, self.card)

    def train_step(self) -> tuple[torch.Tensor, int, torch.Tensor]:
        """One optimiser step (grad_accum micro-steps): mean loss parts, frames seen by this rank and the
        summed total loss (kept on the device, like the parts)."""
        acc, cfg = self.accelerator, self.cfg
        parts, frames, totals = [], 0, []
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
            totals.append(result.total.detach().float())
        self.scheduler.step()
        self.step += 1
        return torch.stack(parts).mean(0), frames, torch.stack(totals).sum()

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

    def log_step(self, parts: torch.Tensor, frames: int, clock: StepClock, t_last: float) -> None:
        acc, cfg = self.accelerator, self.cfg
        parts = acc.reduce(parts.to(acc.device), "mean").cpu()
        frames_all = int(acc.reduce(torch.tensor([frames], device=acc.device), "sum").item())
        now = time.monotonic()
        elapsed = now - clock.start
        eta = eta_s(self.step, cfg.max_steps, now, clock.first_step, clock.first_done)
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.scheduler.optimizer.param_groups)}
        record = {
            "step": self.step,
            "max_steps": cfg.max_steps,
            "epoch": round(self.stream.epoch_progress(), 4),
            "samples": self.samples,
            "tokens_per_s": frames_all / max(now - t_last, 1e-9),
            "elapsed_s": elapsed,
            "eta_s": eta,
            "lr": lrs.get("temporal", lrs.get("depformer")),
            "depformer_lr": lrs.get("depformer", lrs.get("temporal")),
            **vector_parts(parts),
        }
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

    def agree(self, loss: torch.Tensor) -> tuple[bool, str | None]:
        """(stop requested, "NaN"/"Inf" if the loss is no longer finite) over all ranks, in one all-reduce per
        step, so that every rank stops at the same step: any rank's request or bad loss counts."""
        requested = torch.tensor(1.0 if self.stop.requested() else 0.0, device=loss.device)
        flags = torch.stack([requested, loss.isnan().float(), loss.isinf().float()])
        stop, nan, inf = (self.accelerator.reduce(flags, "sum") > 0).tolist()
        return stop, "NaN" if nan else "Inf" if inf else None

    def fail(self, message: str) -> None:
        """Stop as failed without saving: the weights that gave this loss are not a checkpoint worth keeping."""
        self.metrics.write({"event": "failed", "step": self.step, "message": message})
        if self.cfg.tracker != "none":
            self.accelerator.end_training()
        self.metrics.close()
        raise TrainingFailed(message)

    def announce(self) -> None:
        """One line per rank in train.log: which process this is and which examples it starts with
        (ranks that print the same examples would be training on the same data)."""
        acc, ds = self.accelerator, self.accelerator.state.deepspeed_plugin
        first = ", ".join(f"{self.train_set.ids[e.dialogue]}:{e.main}@{e.start}" for e in self.stream.peek())
        line = (
            f"rank {acc.process_index}/{acc.num_processes} ({acc.distributed_type.value}"
            f"{f', ZeRO-{ds.zero_stage}' if ds else ''}): {len(self.stream.examples)} training examples, "
            f"step {self.step}, next: {first}\n"
        )
        sys.stdout.write(line)  # one write: print() writes the newline separately and ranks interleave
        sys.stdout.flush()

    def run(self) -> str:
        """Train to max_steps or to a stop request; returns "finished" or "aborted"."""
        cfg = self.cfg
        self.resume()
        self.announce()
        last_saved = self.step if checkpoints.latest_checkpoint(self.run_dir) else -1
        self.phase("first step (one-time warm-up: memory, kernels)")
        clock = StepClock(time.monotonic())
        t_last, window_parts, window_frames = clock.start, [], 0
        outcome = "finished"
        while self.step < cfg.max_steps:
            parts, frames, loss = self.train_step()
            clock.completed(self.step)
            stop, bad = self.agree(loss)
            if bad:
                self.fail(f"loss became {bad} at step {self.step}")
            window_parts.append(parts)
            window_frames += frames
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                self.log_step(torch.stack(window_parts).nanmean(0), window_frames, clock, t_last)
                t_last, window_parts, window_frames = time.monotonic(), [], 0
            if self.eval_set is not None and cfg.eval_every and self.step % cfg.eval_every == 0:
                self.run_eval()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save()
                last_saved = self.step
            if self.step < cfg.max_steps and stop:
                outcome = "aborted"
                if window_parts:  # the status then shows the step the checkpoint is written at
                    self.log_step(torch.stack(window_parts).nanmean(0), window_frames, clock, t_last)
                break
        if (
            outcome == "finished"
            and self.eval_set is not None
            and not (cfg.eval_every and self.step % cfg.eval_every == 0)
        ):
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
    except TrainingFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"training {outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
