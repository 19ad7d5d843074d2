"""Speech segments of a mono signal by silero-vad, the VAD Full-Duplex-Bench uses (its default settings, at
16 kHz). The model is the TorchScript file inside the silero-vad wheel (`load_silero_vad`), never torch.hub, so
it works offline. silero-vad's import sets torch to one thread; the caller's setting is put back."""

import functools

import numpy as np
import soxr
import torch

from backend.core.intervals import Interval

VAD_RATE = 16_000


@functools.cache
def _model() -> torch.jit.ScriptModule:
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad

    model = load_silero_vad()
    torch.set_num_threads(threads)
    return model


def speech_segments(pcm: np.ndarray, rate: int) -> list[Interval]:
    """[(start, end)] in seconds where silero-vad hears speech."""
    from silero_vad import get_speech_timestamps

    x = np.asarray(pcm, dtype=np.float32)
    if rate != VAD_RATE:
        x = soxr.resample(x, rate, VAD_RATE)
    if len(x) == 0:
        return []
    found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(x)), _model(), sampling_rate=VAD_RATE)
    return [(t["start"] / VAD_RATE, t["end"] / VAD_RATE) for t in found]
