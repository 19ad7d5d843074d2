"""Data for the alignment preview: per-speaker waveform envelopes, word tiers, overlapping speech; and a
dialogue's view (validation report + preview) from one pass over its audio."""

from pathlib import Path
from typing import Any

import numpy as np

from backend.core import intervals
from backend.core.errors import InputError
from backend.core.spec import SPEAKERS
from backend.data.audio_io import AudioScan, scan_audio
from backend.data.files import DialogueFiles
from backend.data.transcripts import check_within_audio, load_transcript
from backend.data.validate import DialogueReport, validate_dialogue

MAX_ENVELOPE_BINS = 20_000  # [min, max] pairs per channel: 40 a second up to 8 minutes, then coarser


def envelope(pairs: np.ndarray, bins: int = MAX_ENVELOPE_BINS) -> list[list[float]]:
    """[min, max] pairs of a scan's envelope ([n, 2]) merged down to at most `bins`: enough to draw a waveform
    at any zoom the preview uses, whatever the duration."""
    if len(pairs) > bins:
        edges = np.linspace(0, len(pairs), bins + 1).astype(int)
        pairs = np.stack(
            [np.minimum.reduceat(pairs[:, 0], edges[:-1]), np.maximum.reduceat(pairs[:, 1], edges[:-1])], axis=1
        )
    return np.round(pairs, 3).tolist()


def waveform(scan: AudioScan) -> dict[str, list[list[float]]]:
    """Each speaker's envelope, as the preview draws it."""
    return {s: envelope(scan.envelope[i]) for i, s in enumerate(SPEAKERS)}


def alignment_data(
    audio_path: str | Path, transcript_path: str | Path, scan: AudioScan | None = None
) -> dict[str, Any]:
    """`scan`: the audio's `scan_audio` when the caller has it already."""
    scan = scan if scan is not None else scan_audio(audio_path)
    transcript = load_transcript(transcript_path)
    check_within_audio(transcript, scan.duration)
    words = [
        {"speaker": w.speaker, "word": w.word, "start": w.start, "end": w.end}
        for w in sorted(transcript.words, key=lambda w: (w.start, w.speaker))
    ]
    return {
        "name": Path(audio_path).stem,
        "duration": scan.duration,
        "envelope": waveform(scan),
        **word_layers(words),
    }


def word_layers(words: list[dict[str, Any]]) -> dict[str, Any]:
    """The preview's "words" and "overlaps" (both speakers talking) of word dicts (speaker, word, start, end)."""
    speech = {s: intervals.merge([(w["start"], w["end"]) for w in words if w["speaker"] == s]) for s in SPEAKERS}
    return {"words": words, "overlaps": [list(iv) for iv in intervals.intersect(speech["A"], speech["B"])]}


def dialogue_view(d: DialogueFiles) -> tuple[DialogueReport, dict[str, Any] | None]:
    """The validation report and, for a valid dialogue, its alignment preview data: the audio is read once."""
    try:
        scan = scan_audio(d.audio) if d.audio is not None else None
    except InputError:
        scan = None  # validate_dialogue reports why
    report = validate_dialogue(d, scan)
    if not report.ok or scan is None or d.audio is None or d.transcript is None:
        return report, None
    return report, alignment_data(d.audio, d.transcript, scan=scan)
