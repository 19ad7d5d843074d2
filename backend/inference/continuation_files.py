"""A continuation's files read back for display (the studio's Continuations tab), torch-free: one channel of
its audio, Moshi's timed words, and turn-taking after the prompt next to the reference's."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from backend.core.errors import InputError
from backend.inference.turn_taking import TurnTakingConfig, analyse_file, compare


def read_audio(path: Path, channel: int | None) -> tuple[int, np.ndarray] | None:
    """(sample rate, int16 samples) of one channel (0 = Moshi, 1 = user) or both (None); None if not written."""
    if not path.is_file():
        return None
    try:
        data, sr = sf.read(path, dtype="int16", always_2d=True)
    except sf.LibsndfileError as e:
        raise InputError(path, f"not a readable audio file ({e.error_string.rstrip('.')})") from None
    return sr, data if channel is None else data[:, channel]


def read_words(path: Path) -> list[dict[str, Any]] | None:
    """Moshi's timed words of a continuation ({"word", "start", ...}); None if no transcript was written."""
    if not path.is_file():
        return None
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["continuation"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise InputError(path, f"not a continuation transcript ({type(e).__name__})") from None


def turn_taking(files: dict[str, dict[str, Path]], reference: Path, prompt_s: float) -> dict[str, Any]:
    """Turn-taking statistics after the prompt: the reference and each label's continuation."""
    tt = TurnTakingConfig(start_seconds=prompt_s)
    sources = {"reference": [analyse_file(reference, tt)]}
    sources.update({label: [analyse_file(f["wav"], tt)] for label, f in files.items()})
    return compare(sources)
