"""Loading the `moshi` package's models, always through its own loaders so that the 7B path is the same code
with other weights: a model folder, a local file, a hub repo id, or PersonaPlex's repo in its own layout
(backend.models.personaplex). Importing it loads neither torch nor moshi."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.core.errors import ConfigError, InputError
from backend.models import personaplex
from backend.models.source import (
    LM_KWARGS,
    LM_WEIGHTS,
    MIMI_CONFIG,
    MIMI_WEIGHTS,
    is_hub_id,
    moshi_lm_kwargs,
    read_lm_kwargs,
)

if TYPE_CHECKING:
    import torch
    from moshi.models.compression import MimiModel
    from moshi.models.lm import LMModel


def lm_kwargs_of(source: str | Path, fetch: bool = False) -> dict[str, Any]:
    """The LMModel kwargs of a source: a model or checkpoint folder's own; for a hub repo id its config.json
    when `fetch` (a download), else Moshi 7B's (moshiko's architecture, no network); PersonaPlex's repo or a
    folder in its layout: models/personaplex.py."""
    if personaplex.is_personaplex(source):
        return personaplex.personaplex_kwargs(source)
    if Path(source).is_dir():
        return read_lm_kwargs(source)
    if not is_hub_id(source):
        raise ConfigError(
            f"{source}: neither a model folder ({LM_WEIGHTS} + {LM_KWARGS}) nor a hub repo id "
            "such as kyutai/moshiko-pytorch-bf16"
        )
    if not fetch:
        return moshi_lm_kwargs()
    from moshi.models import loaders

    try:
        info = loaders.CheckpointInfo.from_hf_repo(str(source))
    except Exception as e:  # huggingface_hub raises many types (offline, missing repo, auth)
        raise InputError(source, f"no such local model folder, and the hub repo could not be read ({e})") from None
    return copy.deepcopy(info.lm_config) if info.lm_config else moshi_lm_kwargs()


def source_kwargs(source: str) -> dict[str, Any]:
    """LMModel kwargs of a model folder, checked against its weights' names and shapes before any weight is
    read, or of a hub repo (its config.json; Moshi 7B's when absent)."""
    from backend.models.surgery import check_shapes, meta_lm, safetensors_shapes, shapes_of

    kwargs = lm_kwargs_of(source, fetch=True)
    weights = Path(source) / LM_WEIGHTS
    if Path(source).is_dir() and not personaplex.is_personaplex(source):  # its loader adapts dep_q 8 weights
        if not weights.is_file():
            raise InputError(source, f"not a model folder: {LM_WEIGHTS} is missing")
        check_shapes(safetensors_shapes(weights), shapes_of(meta_lm(kwargs).state_dict()), str(weights))
    return kwargs


def load_mimi(source: str | Path, device: str = "cpu", num_codebooks: int = 8) -> MimiModel:
    """Mimi from a model directory (mimi.safetensors + mimi_config.json), a local safetensors file
    (full-size config, or a mimi_config.json beside it), or a hub repo id such as kyutai/moshiko-pytorch-bf16."""
    from moshi.models import loaders

    path = Path(source)
    if personaplex.is_personaplex(source):  # its own file name (moshi's MIMI_NAME), mimi_config.json optional beside
        path = personaplex.mimi_file(source)
    if path.is_dir():
        weights, cfg_file = path / MIMI_WEIGHTS, path / MIMI_CONFIG
        if not weights.exists():
            raise ConfigError(f"{path}: no {MIMI_WEIGHTS} in this Mimi directory")
    elif path.is_file():
        weights, cfg_file = path, path.with_name(MIMI_CONFIG)
    elif is_hub_id(source):
        info = loaders.CheckpointInfo.from_hf_repo(str(source))
        return info.get_mimi(device=device)
    else:
        raise ConfigError(
            f"{source}: no such Mimi file or directory (give a directory, a .safetensors file or a hub repo id)"
        )
    config = json.loads(cfg_file.read_text()) if cfg_file.exists() else None
    return loaders.get_mimi(weights, mimi_config=config, device=device, num_codebooks=num_codebooks)


def load_lm(source: str | Path, device: str = "cpu", dtype: torch.dtype | None = None) -> LMModel:
    """LM from a model directory (model.safetensors + moshi_lm_kwargs.json) or a hub repo id (float32 unless
    `dtype` is given)."""
    import torch
    from moshi.models import loaders

    dtype = dtype or torch.float32
    if personaplex.is_personaplex(source):
        return personaplex.load_personaplex(source, device=device, dtype=dtype)
    path = Path(source)
    if path.is_dir():
        return loaders.get_moshi_lm(path / LM_WEIGHTS, lm_kwargs=lm_kwargs_of(path), device=device, dtype=dtype)
    if not is_hub_id(source):
        raise ConfigError(
            f"{source}: no such model folder (give a folder with {LM_WEIGHTS} + {LM_KWARGS}, or a hub "
            "repo id such as kyutai/moshiko-pytorch-bf16)"
        )
    info = loaders.CheckpointInfo.from_hf_repo(str(source))
    return info.get_moshi(device=device, dtype=dtype)


@functools.lru_cache(maxsize=2)
def cached_mimi(source: str, device: str = "cpu") -> MimiModel:
    """One loaded Mimi per source for interactive use (the studio decodes many short windows)."""
    return load_mimi(source, device=device)
