"""Data for the alignment preview: per-speaker waveform envelopes, word tiers, overlapping speech."""

from pathlib import Path
from typing import Any

import numpy as np

from backend.core import intervals
from backend.data.audio_io import load_stereo
from backend.core.spec import SAMPLE_RATE, SPEAKERS
from backend.data.transcripts import check_within_audio, load_transcript


def envelope(channel: np.ndarray, bins: int) -> list[list[float]]:
    """[min, max] per bin: enough to draw a waveform at any zoom the preview uses."""
    if len(channel) == 0:
        return []
    edges = np.linspace(0, len(channel), bins + 1).astype(int)
    return [[round(float(channel[a:b].min()), 3), round(float(channel[a:b].max()), 3)] if b > a else [0.0, 0.0]
            for a, b in zip(edges[:-1], edges[1:])]


def alignment_data(audio_path: str | Path, transcript_path: str | Path, bins_per_second: int = 40) -> dict[str, Any]:
    audio, _ = load_stereo(audio_path)
    transcript = load_transcript(transcript_path)
    duration = audio.shape[1] / SAMPLE_RATE
    check_within_audio(transcript, duration)
    words = transcript.words
    bins = max(1, int(duration * bins_per_second))
    speech = {s: intervals.merge([(w.start, w.end) for w in words if w.speaker == s]) for s in SPEAKERS}
    return {
        "name": Path(audio_path).stem,
        "duration": duration,
        "envelope": {s: envelope(audio[i], bins) for i, s in enumerate(SPEAKERS)},
        "words": [{"speaker": w.speaker, "word": w.word, "start": w.start, "end": w.end}
                  for w in sorted(words, key=lambda w: (w.start, w.speaker))],
        "overlaps": [list(iv) for iv in intervals.intersect(speech["A"], speech["B"])],
    }
