"""NVIDIA's PersonaPlex checkpoints (nvidia/personaplex-7b-v1, or a local copy of that repo) as studio sources.

PersonaPlex is moshiko's architecture with the depformer predicting both streams: its loader forces dep_q 16
whatever the checkpoint holds and, for a checkpoint of 8 steps, copies steps 0-7 into 8-15. Its repo carries
`model.safetensors`, Mimi as `tokenizer-e351c8d8-checkpoint125.safetensors` and the text tokenizer
`tokenizer_spm_32k_3.model` (moshi's own file names) but no `moshi_lm_kwargs.json`, so a folder in that layout is
recognised here and given moshiko's kwargs (or those of a Kyutai-format `config.json` beside the weights) with
dep_q 16. A checkpoint of 8 steps is extended by the studio's user-stream extension (models/surgery.py: copies of
Moshi's steps, the user's codebook 0 embedding from Moshi's codebook 7) where PersonaPlex's loader leaves that
one embedding uninitialised. PersonaPlex's vendored moshi names attention weights as moshi did before its
per-step lists (`self_attn.in_proj_weight`, `self_attn.out_proj.weight`), and its published weights follow it: both
those names and moshi's current ones load (surgery.current_attention_names).
"""

import copy
import json
import re
from pathlib import Path
from typing import Any

from backend.core.errors import InputError
from backend.core.spec import NUM_CODEBOOKS
from backend.models.source import LM_KWARGS, LM_WEIGHTS

PERSONAPLEX_REPO = "nvidia/personaplex-7b-v1"
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_FILE = "tokenizer_spm_32k_3.model"
KYUTAI_CONFIG = "config.json"
DEP_Q = 2 * NUM_CODEBOOKS  # PersonaPlex's loader: always both streams
_CONFIG_NAMES = (
    "moshi_name",
    "mimi_name",
    "mimi_config_name",
    "tokenizer_name",
    "lora_name",
    "model_type",
    "lm_gen_config",
    "tts_config",
    "stt_config",
    "model_id",
    "lora",
    "lora_rank",
    "lora_scaling",
)
_LINEAR = re.compile(r"linears\.(\d+)\.weight")


def is_personaplex_folder(source: str | Path) -> bool:
    path = Path(source)
    return (
        path.is_dir()
        and (path / LM_WEIGHTS).is_file()
        and (path / MIMI_FILE).is_file()
        and not (path / LM_KWARGS).exists()
    )


def is_personaplex(source: str | Path) -> bool:
    return str(source).lower() == PERSONAPLEX_REPO or is_personaplex_folder(source)


def _folder(source: str | Path) -> Path:
    """The local folder of a PersonaPlex source; for the hub id, its three files are fetched (a download)."""
    if is_personaplex_folder(source):
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(PERSONAPLEX_REPO, allow_patterns=[LM_WEIGHTS, MIMI_FILE, TOKENIZER_FILE]))
    except Exception as e:  # huggingface_hub raises many types (offline, gated repo, auth)
        raise InputError(
            source,
            f"the PersonaPlex hub repo could not be read ({e}); it is gated: accept its "
            "license on huggingface.co and log in, or give a local copy of the repo",
        ) from None


def personaplex_kwargs(source: str | Path) -> dict[str, Any]:
    """LMModel kwargs: a local folder's Kyutai-format config.json without its file names, else moshiko's; dep_q 16.
    Reads no weights and downloads nothing."""
    from moshi.models import loaders

    kwargs = copy.deepcopy(loaders._lm_kwargs)
    config = Path(source) / KYUTAI_CONFIG
    if is_personaplex_folder(source) and config.is_file():
        try:
            kwargs = {k: v for k, v in json.loads(config.read_text(encoding="utf-8")).items() if k not in _CONFIG_NAMES}
        except (OSError, ValueError) as e:
            raise InputError(config, f"cannot read the model config ({e})") from None
    return kwargs | {"dep_q": DEP_Q}


def mimi_file(source: str | Path) -> Path:
    return _folder(source) / MIMI_FILE


def tokenizer_file(source: str | Path) -> Path:
    return _folder(source) / TOKENIZER_FILE


def load_personaplex(source: str | Path, device: str = "cpu", dtype: Any = None, dep_q: int = DEP_Q) -> Any:
    """The LMModel (dep_q 16) of a PersonaPlex folder or of the hub repo; `dep_q` 8 keeps Moshi's steps only
    (chat with moshi's LMGen, which reads the user's codes instead of predicting them)."""
    import torch
    from safetensors.torch import load_file

    from backend.models.surgery import build_lm, current_attention_names, resize_depformer

    weights = _folder(source) / LM_WEIGHTS
    kwargs = personaplex_kwargs(source)
    state = current_attention_names(load_file(str(weights)), weights)
    steps = 1 + max((int(m[1]) for k in state if (m := _LINEAR.fullmatch(k))), default=-1)
    if steps not in (NUM_CODEBOOKS, DEP_Q):
        raise InputError(weights, f"{steps} depformer output heads: PersonaPlex checkpoints have 8 or 16")
    if steps == NUM_CODEBOOKS:
        state, kwargs = resize_depformer(state, kwargs | {"dep_q": steps}, DEP_Q)
    if dep_q != DEP_Q:
        state, kwargs = resize_depformer(state, kwargs, dep_q)
    model = build_lm(state, kwargs, dtype or torch.float32, where=str(weights))
    return model.to(device=device).eval()
