"""Where models come from: the tiny demo presets, local files or a hub repo, always through
the `moshi` package's own loaders so that the 7B path is the same code with other weights."""

import copy
import functools
import json
from pathlib import Path
from typing import Any

import torch
from moshi.models import loaders
from moshi.models.compression import MimiModel
from moshi.models.lm import LMModel

from backend.core.paths import ASSETS
from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.errors import ConfigError

# The demo codec trained by backend.demo.codec_training (issue: audible offline demo), shipped in the repo.
DEMO_MIMI_ASSET = ASSETS / "demo_mimi"
DEFAULT_REPO = loaders.DEFAULT_REPO  # kyutai/moshiko-pytorch-bf16
MIMI_WEIGHTS = "mimi.safetensors"
MIMI_CONFIG = "mimi_config.json"
LM_WEIGHTS = "model.safetensors"
LM_KWARGS = "moshi_lm_kwargs.json"


def tiny_lm_kwargs() -> dict[str, Any]:
    """SPEC.md's tiny LM: the real stream layout (n_q 16, dep_q 8, cards, delays), ~8.4 M parameters."""
    kwargs = copy.deepcopy(loaders._lm_kwargs)  # a module-level dict: never edit it in place
    kwargs.update(dim=64, num_heads=4, num_layers=2, depformer_dim=32, depformer_dim_feedforward=132,
                  depformer_num_heads=2, depformer_num_layers=1)
    return kwargs


def tiny_mimi_config() -> dict[str, Any]:
    """SPEC.md's tiny Mimi: 24 kHz, 12.5 Hz, 1920-sample frames, 8 x 2048 codebooks, ~0.25 M parameters."""
    cfg = copy.deepcopy(loaders._mimi_config)
    cfg["seanet"].update(dimension=64, n_filters=4)
    cfg["quantizer"].update(dimension=16, input_dimension=64, output_dimension=64)
    cfg["transformer"].update(d_model=64, num_layers=1, num_heads=4, dim_feedforward=256,
                              input_dimension=64, output_dimensions=[64])
    return cfg


def demo_mimi_config(n_filters: int = 16, dimension: int = 128, layers: int = 1) -> dict[str, Any]:
    """The trained demo codec's architecture (assets/demo_mimi): SPEC.md's frame layout (24 kHz,
    12.5 Hz, 1920-sample frames, 8 x 2048 codebooks) with a small SEANet and one transformer layer,
    so that streaming encode + decode of one frame stays well inside 80 ms on two CPU cores."""
    cfg = copy.deepcopy(loaders._mimi_config)
    cfg["seanet"].update(dimension=dimension, n_filters=n_filters)
    cfg["quantizer"].update(n_q=8, dimension=32, input_dimension=dimension, output_dimension=dimension)
    cfg["transformer"].update(d_model=dimension, num_layers=layers, num_heads=4, dim_feedforward=4 * dimension,
                              input_dimension=dimension, output_dimensions=[dimension])
    return cfg


def randomize_codebooks(mimi: MimiModel, seed: int) -> None:
    """Give a randomly initialised Mimi random codebook entries.

    A fresh `MimiModel` has all-zero codebooks (they are filled by k-means in training), so every
    frame would encode to token 0; random entries make random weights produce varied tokens.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, buf in mimi.named_buffers():
        if name.endswith("embedding_sum"):
            buf.copy_(torch.randn(buf.shape, generator=gen))
        elif name.endswith("cluster_usage"):
            buf.fill_(1.0)
        elif name.endswith("_initialized"):
            buf.fill_(1.0)
    for module in mimi.modules():
        if hasattr(module, "_cached_initialized"):
            module._cached_initialized = False
        if hasattr(module, "_embedding"):
            module._embedding = None


def random_mimi(config: dict[str, Any] | None = None, seed: int = 0, device: str = "cpu") -> MimiModel:
    """A randomly initialised Mimi of `config` (full size when None) with random codebooks."""
    torch.manual_seed(seed)
    mimi = loaders.get_mimi(None, mimi_config=config, device=device)
    randomize_codebooks(mimi, seed)
    return mimi


def _save_model(module: torch.nn.Module, weights: str, config: dict[str, Any], config_name: str,
                directory: str | Path, half_parameters: bool = False) -> Path:
    """Write the weights (safetensors) and their JSON config into `directory`, each atomically. With
    `half_parameters`, parameters are stored as float16 (half the file; the loaders cast them back),
    buffers such as codebook statistics keep their precision."""
    from safetensors.torch import save_file

    directory = Path(directory)
    params = {name for name, _ in module.named_parameters()} if half_parameters else set()
    state = {k: (v.half() if k in params else v).contiguous() for k, v in module.state_dict().items()}
    with atomic_path(directory / weights) as tmp:
        save_file(state, str(tmp))
    write_text_atomic(directory / config_name, json.dumps(config, indent=2) + "\n")
    return directory


def save_mimi(mimi: MimiModel, config: dict[str, Any], directory: str | Path, half_parameters: bool = False) -> Path:
    """Write `mimi.safetensors` + `mimi_config.json` into `directory`."""
    return _save_model(mimi, MIMI_WEIGHTS, config, MIMI_CONFIG, directory, half_parameters)


def load_mimi(source: str | Path, device: str = "cpu", num_codebooks: int = 8) -> MimiModel:
    """Mimi from a model directory (mimi.safetensors + mimi_config.json), a local safetensors file
    (full-size config, or a mimi_config.json beside it), or a hub repo id such as kyutai/moshiko-pytorch-bf16."""
    path = Path(source)
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
        raise ConfigError(f"{source}: no such Mimi file or directory (give a directory, a .safetensors file or a hub repo id)")
    config = json.loads(cfg_file.read_text()) if cfg_file.exists() else None
    return loaders.get_mimi(weights, mimi_config=config, device=device, num_codebooks=num_codebooks)


def is_hub_id(source: str | Path) -> bool:
    """`owner/name` that is not a local path (hub ids are looked up only when nothing local matches)."""
    text = str(source)
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def pick_device(requested: str = "auto") -> str:
    """'auto' means CUDA when available, else CPU; an explicit 'cuda' without a GPU is an error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but this machine has no CUDA GPU; use 'cpu' or 'auto'")
    return requested


def load_lm(source: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> LMModel:
    """LM from a model directory (model.safetensors + moshi_lm_kwargs.json) or a hub repo id."""
    path = Path(source)
    if path.is_dir():
        return loaders.get_moshi_lm(path / LM_WEIGHTS, lm_kwargs=lm_kwargs_of(path), device=device, dtype=dtype)
    if not is_hub_id(source):
        raise ConfigError(f"{source}: no such model folder (give a folder with {LM_WEIGHTS} + {LM_KWARGS}, or a hub "
                          "repo id such as kyutai/moshiko-pytorch-bf16)")
    info = loaders.CheckpointInfo.from_hf_repo(str(source))
    return info.get_moshi(device=device, dtype=dtype)


def save_lm(model: LMModel, lm_kwargs: dict[str, Any], directory: str | Path) -> Path:
    """Write `model.safetensors` + `moshi_lm_kwargs.json` into `directory`."""
    return _save_model(model, LM_WEIGHTS, lm_kwargs, LM_KWARGS, directory)


@functools.lru_cache(maxsize=2)
def cached_mimi(source: str, device: str = "cpu") -> MimiModel:
    """One loaded Mimi per source for interactive use (the studio decodes many short windows)."""
    return load_mimi(source, device=device)


def lm_kwargs_of(source: str | Path) -> dict[str, Any]:
    """The LMModel kwargs of a model folder; for a hub id, moshi's 7B defaults (read without downloading)."""
    path = Path(source)
    if path.is_dir():
        kwargs_file = path / LM_KWARGS
        if not kwargs_file.exists():
            raise ConfigError(f"{path}: no {LM_KWARGS} in this model directory")
        return json.loads(kwargs_file.read_text())
    return copy.deepcopy(loaders._lm_kwargs)
