"""PersonaPlex's voice presets (`NATF2.pt` and the like): a voice prompt saved as what the LM read, not as audio.

PersonaPlex's `LMGen(save_voice_prompt_embeddings=True)` steps a voice wav through the model once and writes
`torch.save({"embeddings": ..., "cache": ...})` beside it: `embeddings` [F - 1, 1, 1, dim] are the LM's summed input
embeddings of the voice phase (transformer positions 0 .. F - 2 of a voice of F frames; its first step runs no
transformer), `cache` [1, 17, 4] its token ring after the voice phase (frame f's codebook 0 at column f % 4, its
acoustic codebooks one column later). Replaying a preset feeds those embeddings to the transformer and restores
the cache (PersonaPlex's `_step_voice_prompt_core`).

Here a preset becomes a voice of F frames whose Mimi codes are known for the last two frames only (read from the
cache: all that the steps after the voice phase read of it); the earlier frames carry ZERO_TOKEN and their
transformer inputs are the stored embeddings (`Persona.voice_embeddings`). Chat (LMGen) and continuations
(generate.run_batch) replay them; training cannot use a preset (its input is Mimi codes, which a preset does not
hold for most frames, and embeddings of the model that made it go stale as the model trains): it needs the audio.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.errors import InputError
from backend.core.spec import NUM_CODEBOOKS, ZERO_TOKEN

PRESET_SUFFIX = ".pt"
_KNOWN_FRAMES = 2  # frames of the voice whose codes the saved cache still holds


@dataclass(frozen=True)
class VoicePreset:
    """A preset as the studio uses it: `codes` int64 [8, F] (ZERO_TOKEN but for the last two frames) and
    `embeddings` float [F - 1, dim], the transformer inputs of positions 0 .. F - 2."""

    codes: np.ndarray
    embeddings: Any  # torch.Tensor; typed loosely so that importing this module does not import torch


def is_preset(path: str | Path) -> bool:
    return Path(path).suffix.lower() == PRESET_SUFFIX


def read_preset(path: str | Path) -> VoicePreset:
    """The preset at `path` (read with torch.load's weights_only: tensors and containers, no code)."""
    import torch

    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for files it cannot read
        raise InputError(path, f"not a PersonaPlex voice preset ({e})") from None
    if not isinstance(saved, dict) or not {"embeddings", "cache"} <= set(saved):
        raise InputError(path, "not a PersonaPlex voice preset: expected a dict with 'embeddings' and 'cache'")
    emb, cache = saved["embeddings"], saved["cache"]
    if not (isinstance(emb, torch.Tensor) and emb.dim() == 4 and emb.shape[1:3] == (1, 1) and emb.shape[0] >= 1):
        raise InputError(path, f"'embeddings' must be [F - 1, 1, 1, dim], got {list(getattr(emb, 'shape', []))}")
    rows = 1 + 2 * NUM_CODEBOOKS
    if not (
        isinstance(cache, torch.Tensor)
        and cache.dim() == 3
        and cache.shape[:2] == (1, rows)
        and cache.shape[2] > _KNOWN_FRAMES
    ):
        raise InputError(
            path, f"'cache' must be [1, {rows}, > {_KNOWN_FRAMES}], got {list(getattr(cache, 'shape', []))}"
        )
    frames = emb.shape[0] + 1
    width = cache.shape[2]
    codes = np.full((NUM_CODEBOOKS, frames), ZERO_TOKEN, dtype=np.int64)
    ring = cache[0].long().numpy()
    for f in range(max(frames - _KNOWN_FRAMES, 0), frames):
        codes[0, f] = ring[1, f % width]  # codebook 0: no delay
        codes[1:, f] = ring[2 : 1 + NUM_CODEBOOKS, (f + 1) % width]  # acoustic codebooks: one frame late
    return VoicePreset(codes=codes, embeddings=emb[:, 0, 0].clone())


def check_fits(preset_embeddings: Any, lm: Any, where: str | Path) -> None:
    """The preset was made for an LM of this width (a preset of another model cannot be replayed)."""
    if preset_embeddings.shape[-1] != lm.dim:
        raise InputError(
            where,
            f"a voice preset of an LM with dim {preset_embeddings.shape[-1]}; this model's "
            f"dim is {lm.dim}: use the preset's audio, or a preset made with this model",
        )


def forward_embedding(lm: Any, embedding: Any) -> tuple[Any, Any]:
    """(transformer output, text logits) of one step whose input embedding is given ([B, 1, dim]): moshi's
    LMModel.forward_text after its embedding sum."""
    out = lm.transformer(embedding.to(device=lm.text_emb.weight.device, dtype=lm.text_emb.weight.dtype))
    if lm.out_norm:
        out = lm.out_norm(out)
    return out, lm.text_linear(out)[:, None]
