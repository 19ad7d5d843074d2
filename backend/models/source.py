"""The facts about models that every other module of backend.models builds on: model folders' file names, hub
ids, dtypes, LM kwargs and stream layout, the tiny and demo presets, writing a model folder. Importing it loads
neither torch nor moshi (each function imports them when it runs); loading weights is backend.models.weights'."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError, InputError
from backend.core.paths import ASSETS
from backend.core.spec import CARD, DELAYS, NUM_CODEBOOKS, TEXT_CARD

if TYPE_CHECKING:
    import torch
    from moshi.models.compression import MimiModel
    from moshi.models.lm import LMModel

# The demo codec trained by backend.demo.codec_training (issue: audible offline demo), shipped in the repo.
DEMO_MIMI_ASSET = ASSETS / "demo_mimi"
MIMI_WEIGHTS = "mimi.safetensors"
MIMI_CONFIG = "mimi_config.json"
LM_WEIGHTS = "model.safetensors"
LM_KWARGS = "moshi_lm_kwargs.json"
SERVE_CONFIG = "config.json"  # Kyutai's format, what moshi.server --config-path reads
Dtype = Literal["float32", "bfloat16", "float16"]  # parameter dtypes, named as torch names them
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


# moshi's own DEFAULT_REPO (moshi.models.loaders), written out so that the stage configs that default to it
# import without moshi (the studio builds its forms from them); tests/test_preprocess.py checks they agree.
DEFAULT_REPO = "kyutai/moshiko-pytorch-bf16"


def torch_dtype(name: str) -> torch.dtype:
    if name not in get_args(Dtype):
        raise ConfigError(f"dtype: {name!r} is not one of {', '.join(get_args(Dtype))}")
    import torch

    return getattr(torch, name)


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """An inference dtype: 'auto' is bfloat16 on CUDA, float32 on CPU; float16 needs a GPU."""
    if name == "auto":
        name = "bfloat16" if device.startswith("cuda") else "float32"
    if name == "float16" and not device.startswith("cuda"):
        raise ConfigError("dtype float16 needs a GPU; on CPU use float32 or bfloat16")
    return torch_dtype(name)


def is_hub_id(source: str | Path) -> bool:
    """`owner/name` that is not a local path (hub ids are looked up only when nothing local matches)."""
    text = str(source)
    return _HUB_ID.fullmatch(text) is not None and not text.startswith(".") and not Path(text).exists()


def moshi_lm_kwargs() -> dict[str, Any]:
    """Moshi 7B's LMModel kwargs: a copy of moshi's private module-level dict (never edit that in place)."""
    from moshi.models import loaders

    return copy.deepcopy(loaders._lm_kwargs)


def read_lm_kwargs(folder: str | Path) -> dict[str, Any]:
    """The LMModel kwargs of a model or checkpoint folder (its moshi_lm_kwargs.json)."""
    file = Path(folder) / LM_KWARGS
    if not file.is_file():
        raise InputError(folder, f"not a model folder: {LM_KWARGS} is missing (make one with the init stage)")
    try:
        kwargs = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise InputError(file, f"cannot read the LM kwargs ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(kwargs, dict) or "dep_q" not in kwargs or "n_q" not in kwargs:
        raise InputError(file, "not LMModel kwargs (needs at least n_q and dep_q)")
    return kwargs


def check_layout(kwargs: dict[str, Any], where: str | Path) -> None:
    """SPEC.md's stream layout: text + 16 audio rows (Moshi's 8, the user's 8) with the training view's
    delays and cards; the depformer predicts Moshi's 8 codebooks or both streams' 16."""
    n_q, dep_q = kwargs.get("n_q"), kwargs.get("dep_q")
    if n_q != 2 * NUM_CODEBOOKS or dep_q not in (NUM_CODEBOOKS, 2 * NUM_CODEBOOKS):
        raise InputError(
            where,
            f"n_q {n_q} / dep_q {dep_q}: a Moshi dialogue model has n_q 16 (Moshi's 8 audio "
            f"streams + the user's 8) and dep_q 8 (Moshi's stream) or 16 (both streams)",
        )
    delays, card, text_card = list(kwargs.get("delays") or []), kwargs.get("card"), kwargs.get("text_card")
    if delays != DELAYS or card != CARD or text_card != TEXT_CARD:
        raise InputError(
            where, f"delays {delays}, card {card}, text_card {text_card}: expected {DELAYS}, {CARD}, {TEXT_CARD}"
        )


def tiny_lm_kwargs() -> dict[str, Any]:
    """SPEC.md's tiny LM: the real stream layout (n_q 16, dep_q 8, cards, delays), ~8.4 M parameters."""
    kwargs = moshi_lm_kwargs()
    kwargs.update(
        dim=64,
        num_heads=4,
        num_layers=2,
        depformer_dim=32,
        depformer_dim_feedforward=132,
        depformer_num_heads=2,
        depformer_num_layers=1,
    )
    return kwargs


def moshi_mimi_config() -> dict[str, Any]:
    """The full Mimi's config: a copy of moshi's private module-level dict."""
    from moshi.models import loaders

    return copy.deepcopy(loaders._mimi_config)


def tiny_mimi_config() -> dict[str, Any]:
    """SPEC.md's tiny Mimi: 24 kHz, 12.5 Hz, 1920-sample frames, 8 x 2048 codebooks, ~0.25 M parameters."""
    cfg = moshi_mimi_config()
    cfg["seanet"].update(dimension=64, n_filters=4)
    cfg["quantizer"].update(dimension=16, input_dimension=64, output_dimension=64)
    cfg["transformer"].update(
        d_model=64, num_layers=1, num_heads=4, dim_feedforward=256, input_dimension=64, output_dimensions=[64]
    )
    return cfg


def demo_mimi_config(n_filters: int = 16, dimension: int = 128, layers: int = 1) -> dict[str, Any]:
    """The trained demo codec's architecture (assets/demo_mimi): SPEC.md's frame layout (24 kHz,
    12.5 Hz, 1920-sample frames, 8 x 2048 codebooks) with a small SEANet and one transformer layer,
    so that streaming encode + decode of one frame stays well inside 80 ms on two CPU cores."""
    cfg = moshi_mimi_config()
    cfg["seanet"].update(dimension=dimension, n_filters=n_filters)
    cfg["quantizer"].update(n_q=8, dimension=32, input_dimension=dimension, output_dimension=dimension)
    cfg["transformer"].update(
        d_model=dimension,
        num_layers=layers,
        num_heads=4,
        dim_feedforward=4 * dimension,
        input_dimension=dimension,
        output_dimensions=[dimension],
    )
    return cfg


def randomize_codebooks(mimi: MimiModel, seed: int) -> None:
    """Give a randomly initialised Mimi random codebook entries.

    A fresh `MimiModel` has all-zero codebooks (they are filled by k-means in training), so every
    frame would encode to token 0; random entries make random weights produce varied tokens.
    """
    import torch

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
    import torch
    from moshi.models import loaders

    torch.manual_seed(seed)
    mimi = loaders.get_mimi(None, mimi_config=config, device=device)
    randomize_codebooks(mimi, seed)
    return mimi


def _save_model(
    module: torch.nn.Module,
    weights: str,
    config: dict[str, Any],
    config_name: str,
    directory: str | Path,
    half_parameters: bool = False,
) -> Path:
    """Write the weights (safetensors) and their JSON config into `directory`, each atomically. With
    `half_parameters`, parameters are stored as float16 (half the file; the loaders cast them back),
    buffers such as codebook statistics keep their precision."""
    from backend.models.tensor_file import save_tensors

    directory = Path(directory)
    params = {name for name, _ in module.named_parameters()} if half_parameters else set()
    save_tensors(directory / weights, {k: v.half() if k in params else v for k, v in module.state_dict().items()})
    write_text_atomic(directory / config_name, json.dumps(config, indent=2) + "\n")
    return directory


def save_mimi(mimi: MimiModel, config: dict[str, Any], directory: str | Path, half_parameters: bool = False) -> Path:
    """Write `mimi.safetensors` + `mimi_config.json` into `directory`."""
    return _save_model(mimi, MIMI_WEIGHTS, config, MIMI_CONFIG, directory, half_parameters)


def save_lm(model: LMModel, lm_kwargs: dict[str, Any], directory: str | Path) -> Path:
    """Write `model.safetensors` + `moshi_lm_kwargs.json` into `directory`."""
    return _save_model(model, LM_WEIGHTS, lm_kwargs, LM_KWARGS, directory)
