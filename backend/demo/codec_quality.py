"""How intelligible a codec is: STOI (pystoi) of decode(encode(x)) against x on held-out speech."""

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from moshi.models.compression import MimiModel

from backend.core.errors import StudioError
from backend.core.spec import SAMPLE_RATE


@torch.no_grad()
def round_trip(mimi: MimiModel, audio: np.ndarray) -> np.ndarray:
    """Mono float32 audio through the codec (whole-utterance encode, then decode), same length."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None, None]
    return mimi.decode(mimi.encode(x))[0, 0, : len(audio)].numpy()


def stoi(reference: np.ndarray, degraded: np.ndarray) -> float:
    """Short-time objective intelligibility of `degraded` against `reference` (both 24 kHz mono)."""
    try:
        from pystoi import stoi as pystoi
    except ImportError as exc:
        raise StudioError("pystoi is needed to measure intelligibility: pip install -e '.[codec]'") from exc
    n = min(len(reference), len(degraded))
    return float(pystoi(reference[:n], degraded[:n], SAMPLE_RATE, extended=False))


def codec_stoi(mimi: MimiModel, files: list[Path]) -> float:
    """Mean STOI of the codec's round trip over utterance files."""
    scores = [stoi(audio, round_trip(mimi, audio)) for audio in (sf.read(f, dtype="float32")[0] for f in files)]
    return float(np.mean(scores))
