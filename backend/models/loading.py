"""The one loading module above the others: a model in any form the trainer, the init stage or the export
writes (full weights, LoRA adapters over their base, DeepSpeed ZeRO shards consolidated with DeepSpeed's own
zero_to_fp32, an export), always ending in the `moshi` package's parameter names; PersonaPlex and hub ids
through backend.models.weights."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from moshi.models.lm import LMModel
from moshi.modules.lora import replace_all_linear_with_lora

from backend.core.errors import InputError
from backend.jobs.folder import CONFIG_FILE
from backend.models.checkpoints import ACCELERATE_STATE, LORA_WEIGHTS, TRAINER_STATE
from backend.models.personaplex import is_personaplex_folder
from backend.models.source import LM_KWARGS, LM_WEIGHTS, SERVE_CONFIG, check_layout, read_lm_kwargs
from backend.models.surgery import State, base_kwargs, build_lm, check_shapes, meta_lm, shapes_of
from backend.models.weights import load_lm, source_kwargs


@dataclass
class Checkpoint:
    """A checkpoint read into moshi's names: base weights, LoRA adapters (maybe none), plain kwargs."""

    state: State
    kwargs: dict[str, Any]
    lora: State = field(default_factory=dict)
    lora_scaling: float = 0.0  # meaningful only with adapters


def _setting(folder: Path, key: str) -> Any:
    """`key` from the checkpoint's own JSON files, else from its run's config.json (runs/<id>/config.json)."""
    for file in (folder / SERVE_CONFIG, folder / LM_KWARGS, folder / TRAINER_STATE, folder.parent.parent / CONFIG_FILE):
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(values, dict) and values.get(key) not in (None, ""):
            return values[key]
    return None


def zero_tag(folder: Path) -> str | None:
    """The tag (sub-folder) of a DeepSpeed checkpoint written by accelerate's save_state, or None."""
    if not folder.is_dir():
        return None
    if (folder / "latest").is_file():
        return (folder / "latest").read_text().strip()
    tags = sorted({p.parent.name for p in folder.glob("*/*model_states.pt")})
    return tags[-1] if tags else None


def zero_state(folder: Path) -> State:
    """Consolidated fp32 weights of a ZeRO-2/3 checkpoint, with DeepSpeed's own zero_to_fp32."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag = zero_tag(folder)
    if tag is None:
        raise InputError(folder, "no DeepSpeed checkpoint here (no 'latest' file, no */*model_states.pt)")
    try:
        return dict(get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise InputError(folder / tag, f"cannot consolidate the ZeRO checkpoint ({e})") from None


def moshi_names(state: State, where: Path) -> tuple[State, State]:
    """(base weights, LoRA adapters) in moshi's names from a training model's state dict.

    The training engine may wrap LMModel (keys like `module.lm.text_emb.weight`): the wrapper's prefix
    is found from `text_emb.weight` and removed. LoRA layers keep their base weight as `frozen_W`,
    which is `<name>.weight` in moshi's names (LoRALinear's own load hook does the same mapping)."""
    anchor = [k for k in state if k == "text_emb.weight" or k.endswith(".text_emb.weight")]
    if len(anchor) != 1:
        raise InputError(where, "not a moshi LM state: no single text_emb.weight parameter")
    prefix = anchor[0][: -len("text_emb.weight")]
    outside = [k for k in state if not k.startswith(prefix)]
    if outside:
        raise InputError(where, f"parameters outside the LM ({prefix!r}): {', '.join(outside[:3])}")
    base: State = {}
    lora: State = {}
    for key, value in state.items():
        name = key[len(prefix) :]
        if ".lora_A." in name or ".lora_B." in name:
            lora[name] = value
        else:
            base[name.replace(".frozen_W.", ".")] = value
    return base, lora


def _load_file(file: Path) -> State:
    from safetensors.torch import load_file

    try:
        return load_file(str(file))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(file, f"not a readable safetensors file ({e})") from None


def _base_for_lora(folder: Path, base_model: str, kwargs: dict[str, Any]) -> State:
    source = base_model or _setting(folder, "base_model")
    if not source:
        raise InputError(
            folder,
            f"{LORA_WEIGHTS} without base weights: give base_model (no base_model in "
            f"{TRAINER_STATE} or the run's config.json)",
        )
    source = str(source)
    base_kw = source_kwargs(source)
    if int(base_kw["dep_q"]) != int(kwargs["dep_q"]):
        raise InputError(
            source,
            f"base model has dep_q {base_kw['dep_q']} but the LoRA checkpoint "
            f"{folder} was trained with dep_q {kwargs['dep_q']}",
        )
    if Path(source).is_dir() and not is_personaplex_folder(source):
        return _load_file(Path(source) / LM_WEIGHTS)  # memory-mapped as stored: not copied, nor widened to float32
    return load_lm(source, dtype=torch.bfloat16).state_dict()  # hub ids; PersonaPlex's names and steps


def read_checkpoint(folder: Path, base_model: str = "") -> Checkpoint:
    """Weights of a checkpoint or model folder in moshi's names, whichever form the trainer wrote
    (names and shapes: `check_checkpoint`)."""
    if not folder.is_dir():
        raise InputError(folder, "no such checkpoint folder")
    if not (folder / LM_KWARGS).is_file():
        raise InputError(folder, f"not a checkpoint or model folder: {LM_KWARGS} is missing")
    kwargs = base_kwargs(read_lm_kwargs(folder))
    lora: State = {}
    if (folder / LM_WEIGHTS).is_file():
        state = _load_file(folder / LM_WEIGHTS)
        if (folder / LORA_WEIGHTS).is_file():  # an unmerged export: base weights + adapters
            lora = _load_file(folder / LORA_WEIGHTS)
    elif (folder / LORA_WEIGHTS).is_file():
        lora = _load_file(folder / LORA_WEIGHTS)
        state = _base_for_lora(folder, base_model, kwargs)
    elif zero_tag(folder / ACCELERATE_STATE) is not None:
        state, lora = moshi_names(zero_state(folder / ACCELERATE_STATE), folder / ACCELERATE_STATE)
    else:
        raise InputError(
            folder, f"no {LM_WEIGHTS}, no {LORA_WEIGHTS} and no DeepSpeed ZeRO checkpoint under {ACCELERATE_STATE}/"
        )
    bad = [k for k in lora if ".lora_A." not in k and ".lora_B." not in k]
    if bad:
        raise InputError(folder / LORA_WEIGHTS, f"holds non-LoRA parameters, e.g. {', '.join(bad[:3])}")
    scaling = _setting(folder, "lora_scaling") if lora else None
    if lora and scaling is None:
        raise InputError(
            folder, "LoRA adapters but no lora_scaling in the checkpoint's JSON files or the run's config.json"
        )
    return Checkpoint(state, kwargs, lora, float(scaling or 0.0))


def lora_rank(lora: State) -> int:
    return int(next(v.shape[0] for k, v in lora.items() if ".lora_A." in k))


def check_lora_fits(kwargs: dict[str, Any], lora: State, where: str) -> None:
    """Every Linear of the model has adapters (moshi's LoRALinear names and shapes), and nothing else does;
    checked on the meta device."""
    model = meta_lm(kwargs)
    replace_all_linear_with_lora(model, lora_rank(lora), 1.0, device=torch.device("meta"))
    expected = {k: v for k, v in shapes_of(model.state_dict()).items() if ".lora_A." in k or ".lora_B." in k}
    check_shapes(shapes_of(lora), expected, f"{where} (LoRA adapters)")


def merged_weight(state: State, lora: State, scaling: float, name: str, dtype: torch.dtype) -> torch.Tensor:
    """`state[name]` with its adapters merged as moshi's replace_lora_with_linear does, W + scaling * B @ A,
    computed in float32 (a bf16 merge would round twice) and cast to `dtype`; one tensor at a time."""
    stem = name.removesuffix(".weight")
    a, b = lora.get(f"{stem}.lora_A.weight"), lora.get(f"{stem}.lora_B.weight")
    if a is None or b is None:
        return state[name].to(dtype)
    return (state[name].float() + scaling * (b.float() @ a.float())).to(dtype)


def check_checkpoint(ckpt: Checkpoint, where: str) -> None:
    """The weights' names and shapes are the model's, and the adapters fit it (meta device, no copies)."""
    check_shapes(shapes_of(ckpt.state), shapes_of(meta_lm(ckpt.kwargs).state_dict()), where)
    if ckpt.lora:
        check_lora_fits(ckpt.kwargs, ckpt.lora, where)


def merged_state(ckpt: Checkpoint, dtype: torch.dtype, where: str) -> State:
    """The checkpoint's weights in `dtype` with its adapters merged (checked to fit; the weights' own names and
    shapes are checked where the model is built, `surgery.build_lm`)."""
    if ckpt.lora:
        check_lora_fits(ckpt.kwargs, ckpt.lora, where)
    return {name: merged_weight(ckpt.state, ckpt.lora, ckpt.lora_scaling, name, dtype) for name in ckpt.state}


def load_model(
    source: str | Path, base_model: str = "", device: str = "cpu", dtype: torch.dtype | None = None
) -> LMModel:
    """The LM of a model folder, of a training checkpoint in any form the trainer writes (full weights,
    LoRA adapters merged onto their base, DeepSpeed shards: `read_checkpoint`) or of a hub id, in
    eval mode; its stream layout is checked (`check_layout`)."""
    dtype = dtype or torch.float32
    if Path(source).is_dir() and not is_personaplex_folder(source):
        ckpt = read_checkpoint(Path(source), base_model)
        # LoRA adapters are merged one weight at a time (export.merged_weight): the model is never held twice.
        model = build_lm(merged_state(ckpt, dtype, str(source)), ckpt.kwargs, dtype, where=str(source))
        model = model.to(device=device)
    else:
        model = load_lm(source, device=device, dtype=dtype)
    check_layout(
        {
            "n_q": model.n_q,
            "dep_q": model.dep_q,
            "delays": list(model.delays),
            "card": model.card,
            "text_card": model.text_card,
        },
        source,
    )
    return model.eval()
