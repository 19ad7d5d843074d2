"""Data for the alignment preview: per-speaker waveform envelopes, word tiers, overlapping speech; and a
dialogue's view (validation report + preview) from one decode of its audio."""

from pathlib import Path
from typing import Any

import numpy as np

from backend.core import intervals
from backend.core.errors import InputError
from backend.core.spec import SPEAKERS
from backend.data.audio_io import read_native
from backend.data.files import DialogueFiles
from backend.data.transcripts import check_within_audio, load_transcript
from backend.data.validate import DialogueReport, validate_dialogue


def envelope(channel: np.ndarray, bins: int) -> list[list[float]]:
    """[min, max] per bin: enough to draw a waveform at any zoom the preview uses."""
    if len(channel) == 0:
        return []
    edges = np.linspace(0, len(channel), bins + 1).astype(int)
    return [[round(float(channel[a:b].min()), 3), round(float(channel[a:b].max()), 3)] if b > a else [0.0, 0.0]
            for a, b in zip(edges[:-1], edges[1:])]


def alignment_data(audio_path: str | Path, transcript_path: str | Path, bins_per_second: int = 40,
                   samples: tuple[np.ndarray, int] | None = None) -> dict[str, Any]:
    """`samples`: the audio's `read_native` result when the caller has it already."""
    audio, sr = samples if samples is not None else read_native(Path(audio_path))
    transcript = load_transcript(transcript_path)
    duration = audio.shape[1] / sr
    check_within_audio(transcript, duration)
    bins = max(1, int(duration * bins_per_second))
    words = [{"speaker": w.speaker, "word": w.word, "start": w.start, "end": w.end}
             for w in sorted(transcript.words, key=lambda w: (w.start, w.speaker))]
    return {
        "name": Path(audio_path).stem,
        "duration": duration,
        "envelope": {s: envelope(audio[i], bins) for i, s in enumerate(SPEAKERS)},
        **word_layers(words),
    }


def word_layers(words: list[dict[str, Any]]) -> dict[str, Any]:
    """The preview's "words" and "overlaps" (both speakers talking) of word dicts (speaker, word, start, end)."""
    speech = {s: intervals.merge([(w["start"], w["end"]) for w in words if w["speaker"] == s]) for s in SPEAKERS}
    return {"words": words, "overlaps": [list(iv) for iv in intervals.intersect(speech["A"], speech["B"])]}


def dialogue_view(d: DialogueFiles) -> tuple[DialogueReport, dict[str, Any] | None]:
    """The validation report and, for a valid dialogue, its alignment preview data: the audio is decoded once."""
    try:
        samples = read_native(d.audio) if d.audio is not None else None
    except InputError:
        samples = None  # validate_dialogue reports why
    report = validate_dialogue(d, samples)
    if not report.ok or samples is None or d.audio is None or d.transcript is None:
        return report, None
    return report, alignment_data(d.audio, d.transcript, samples=samples)
