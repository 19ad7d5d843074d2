"""Export stage: a training checkpoint -> a model folder for serving (SPEC.md "Models and checkpoints").

    python -m backend.models.export --checkpoint runs/<id>/checkpoints/step-000100 --output exports/my-moshi

Reads any of the checkpoint forms the trainer writes (model.safetensors; lora.safetensors on top of the
base model; or only DeepSpeed ZeRO shards under accelerate_state/, consolidated with DeepSpeed's own
zero_to_fp32), always ends in the `moshi` package's parameter names, optionally drops the user stream
("clean": dep_q 8) and merges LoRA adapters, and writes:

    model.safetensors      the LM weights (the base weights when LoRA is kept unmerged)
    lora.safetensors       only for an unmerged LoRA export (lora_A / lora_B, as moshi.modules.lora)
    moshi_lm_kwargs.json   the LMModel kwargs (no LoRA keys: the folder is also a plain model folder)
    config.json            what `python -m moshi.server --moshi-weight <dir>/model.safetensors
                           --config-path <dir>/config.json [--lora-weight <dir>/lora.safetensors]` reads:
                           the LM kwargs, moshi_name / mimi_name / tokenizer_name, lora (+ lora_name,
                           lora_rank, lora_scaling when unmerged)
    export_config.json     the ExportConfig used
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moshi.models import loaders

from backend.core import config
from backend.core.atomic import atomic_dir, write_text_atomic
from backend.core.config import option
from backend.core.errors import ConfigError, StudioError
from backend.core.spec import NUM_CODEBOOKS
from backend.models.checkpoints import CHECKPOINTS, EXPORTS_DIR, LORA_WEIGHTS
from backend.models.loading import Checkpoint, check_checkpoint, lora_rank, merged_weight, read_checkpoint
from backend.models.output_folder import check_output
from backend.models.source import LM_KWARGS, LM_WEIGHTS, SERVE_CONFIG, Dtype, torch_dtype
from backend.models.surgery import State, resize_depformer
from backend.models.tensor_file import save_tensors, write_tensors
from backend.models.text_tokenizer import read_record, write_record

EXPORT_CONFIG = "export_config.json"


@dataclass
class ExportConfig:
    checkpoint: Path | None = option(None, "checkpoint folder (runs/<id>/checkpoints/step-N) or any model folder")
    output: Path | None = option(
        None, "folder to write (default: runs/<id>/exports/<step> next to the checkpoints, or <checkpoint>-export)"
    )
    clean: bool = option(True, "for serving: keep Moshi's 8 depformer steps only (drop the user stream)")
    merge_lora: bool = option(
        True,
        "LoRA checkpoints: merge the adapters into the weights (config says "
        "lora false); off: keep lora.safetensors beside the base weights",
    )
    dtype: Dtype = option("bfloat16", "dtype of the written weights")
    base_model: str = option(
        "",
        "LoRA checkpoints: the base model folder or hub id (default: base_model of "
        "trainer_state.json or of the run's config.json)",
    )
    overwrite: bool = option(
        False, "replace an existing folder that is not an earlier export (never a checkpoint or a model in use)"
    )


def default_output(checkpoint: Path) -> Path:
    if checkpoint.parent.name == CHECKPOINTS:
        return checkpoint.parent.parent / EXPORTS_DIR / checkpoint.name
    return checkpoint.with_name(checkpoint.name + "-export")


def serve_config(kwargs: dict[str, Any], lora: State, scaling: float) -> dict[str, Any]:
    """config.json in Kyutai's format (CheckpointInfo.from_hf_repo pops the names, the rest are LM kwargs)."""
    out = dict(kwargs) | {
        "moshi_name": LM_WEIGHTS,
        "mimi_name": loaders.MIMI_NAME,
        "tokenizer_name": loaders.TEXT_TOKENIZER_NAME,
        "model_type": "moshi",
        "lora": bool(lora),
    }
    if lora:
        out |= {"lora_name": LORA_WEIGHTS, "lora_rank": lora_rank(lora), "lora_scaling": scaling}
    return out


def export_checkpoint(cfg: ExportConfig) -> Path:
    """Write the export folder for `cfg` and return it. Tensors are merged, cast and written one at a time
    (the 7B model is never held twice)."""
    if cfg.checkpoint is None:
        raise ConfigError("checkpoint: give the checkpoint folder to export")
    output = cfg.output or default_output(cfg.checkpoint)
    check_output(output, "export", EXPORT_CONFIG, cfg.checkpoint, overwrite=cfg.overwrite)
    ckpt = read_checkpoint(cfg.checkpoint, cfg.base_model)
    if cfg.clean and int(ckpt.kwargs["dep_q"]) > NUM_CODEBOOKS:
        lora, _ = resize_depformer(ckpt.lora, ckpt.kwargs, NUM_CODEBOOKS)
        state, kwargs = resize_depformer(ckpt.state, ckpt.kwargs, NUM_CODEBOOKS)
        ckpt = Checkpoint(state, kwargs, lora, ckpt.lora_scaling)
    dtype, keep_lora = torch_dtype(cfg.dtype), bool(ckpt.lora) and not cfg.merge_lora
    check_checkpoint(ckpt, str(cfg.checkpoint))
    specs = {k: (dtype, tuple(v.shape)) for k, v in ckpt.state.items()}
    with atomic_dir(output) as tmp:
        if keep_lora:
            write_tensors(tmp / LM_WEIGHTS, specs, lambda k: ckpt.state[k].to(dtype))
            save_tensors(tmp / LORA_WEIGHTS, {k: v.to(dtype) for k, v in ckpt.lora.items()})
        else:
            write_tensors(
                tmp / LM_WEIGHTS, specs, lambda k: merged_weight(ckpt.state, ckpt.lora, ckpt.lora_scaling, k, dtype)
            )
        write_text_atomic(tmp / LM_KWARGS, json.dumps(ckpt.kwargs, indent=2) + "\n")
        write_text_atomic(
            tmp / SERVE_CONFIG,
            json.dumps(serve_config(ckpt.kwargs, ckpt.lora if keep_lora else {}, ckpt.lora_scaling), indent=2) + "\n",
        )
        config.save(cfg, tmp / EXPORT_CONFIG)
        if (tokenizer := read_record(cfg.checkpoint)) is not None:  # its base model's, for chat's check
            write_record(tmp, tokenizer)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(
        ExportConfig,
        "Export a training checkpoint for serving: ZeRO consolidation, "
        "clean (dep_q 8), LoRA merge, config.json for moshi.server.",
    )
    try:
        cfg = config.from_cli(ExportConfig, parser.parse_args(argv))
        out = export_checkpoint(cfg)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    served = json.loads((out / SERVE_CONFIG).read_text())
    lora_flag = f" --lora-weight {out / LORA_WEIGHTS}" if served["lora"] else ""
    print(
        f"wrote {out} (dep_q {served['dep_q']}, lora {served['lora']}); serve with:\n"
        f"  python -m moshi.server --moshi-weight {out / LM_WEIGHTS} --config-path {out / SERVE_CONFIG}{lora_flag}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
