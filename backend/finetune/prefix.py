"""Persona prefixes in training (issue 15): each example whose dialogue has a persona for its Moshi speaker is
preceded by the persona's prefix rows exactly as PersonaPlex feeds them at inference (models/persona.lm_rows),
and the prefix is not learnt: its targets are the zero token on every stream (the text row's optionally kept),
so every loss component and per-stream curve covers the conversation only."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from backend.core.errors import InputError
from backend.core.spec import ZERO_TOKEN
from backend.dataset.personas import Personas, load_personas


def dataset_personas(paths: Sequence[Path | None]) -> Personas:
    """The personas of the training and evaluation datasets together; one dialogue id with two different
    personas (two datasets reusing an id) is refused rather than guessed."""
    merged: Personas = {}
    for path in paths:
        if path is None:
            continue
        for key, persona in load_personas(path).items():
            other = merged.get(key)
            if other is not None and (
                other.text_ids != persona.text_ids or not np.array_equal(other.voice, persona.voice)
            ):
                raise InputError(path, f"dialogue {key[0]} (speaker {key[1]}) has another persona in another dataset")
            merged[key] = persona
    return merged


def with_prefixes(
    codes: torch.Tensor, frames: Sequence[int], prefixes: Sequence[np.ndarray | None], keep_text_loss: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(model input, loss targets) for a collated batch `codes` [B, 17, T] whose example b has frames[b] real
    frames: example b gets prefixes[b] ([17, P_b] or None) in front. Without any prefix both are `codes`."""
    if all(p is None for p in prefixes):
        return codes, codes
    lengths = [(0 if p is None else p.shape[1]) + n for p, n in zip(prefixes, frames)]
    inputs = torch.full(
        (codes.shape[0], codes.shape[1], max(lengths)), ZERO_TOKEN, dtype=codes.dtype, device=codes.device
    )
    targets = inputs.clone()
    for b, (p, n) in enumerate(zip(prefixes, frames)):
        start = 0 if p is None else p.shape[1]
        inputs[b, :, start : start + n] = targets[b, :, start : start + n] = codes[b, :, :n]
        if p is not None:
            inputs[b, :, :start] = torch.from_numpy(p).to(codes.device)
            if keep_text_loss:
                targets[b, 0, :start] = inputs[b, 0, :start]
    return inputs, targets


def example_prefixes(personas: Personas, ids: Sequence[str], examples: Sequence) -> list[np.ndarray | None]:
    """The LM rows of each example's persona (None without one); `examples` carry .dialogue and .main."""
    out: list[np.ndarray | None] = []
    for ex in examples:
        persona = personas.get((ids[ex.dialogue], ex.main))
        out.append(None if persona is None else persona.rows())
    return out
