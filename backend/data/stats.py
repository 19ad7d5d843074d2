"""Statistics of word-timed dialogues: hours, words per minute, overlap share, gaps between turns."""

from dataclasses import asdict, dataclass, field

import numpy as np

from backend.core import intervals
from backend.core.spec import SPEAKERS
from backend.data.transcripts import Word

TURN_BRIDGE = 0.5  # words of one speaker closer than this form one turn (seconds)


@dataclass
class DialogueStats:
    name: str
    duration: float
    words: dict[str, int]
    words_per_minute: dict[str, float]
    speech_seconds: dict[str, float]
    overlap_seconds: float
    turn_gaps: list[float] = field(default_factory=list)  # next turn start - previous turn end; < 0 is overlap

    @property
    def overlap_share(self) -> float:
        """Share of speech time (either speaker) during which both speak."""
        speech = sum(self.speech_seconds.values()) - self.overlap_seconds  # union of both speakers
        return self.overlap_seconds / speech if speech > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"overlap_share": self.overlap_share}


def turns(words: list[Word], speaker: str) -> list[intervals.Interval]:
    return intervals.merge([(w.start, w.end) for w in words if w.speaker == speaker], bridge=TURN_BRIDGE)


def turn_gaps(words: list[Word]) -> list[float]:
    """Floor-transfer offsets: for each change of speaker, next turn start minus previous turn end."""
    tagged = sorted((s, e, spk) for spk in SPEAKERS for s, e in turns(words, spk))
    return [round(s - prev_e, 4) for (_, prev_e, prev), (s, _, spk) in zip(tagged, tagged[1:]) if spk != prev]


def dialogue_stats(name: str, words: list[Word], duration: float) -> DialogueStats:
    speech = {s: intervals.merge([(w.start, w.end) for w in words if w.speaker == s]) for s in SPEAKERS}
    minutes = duration / 60 if duration > 0 else float("nan")
    counts = {s: sum(w.speaker == s for w in words) for s in SPEAKERS}
    return DialogueStats(
        name=name,
        duration=duration,
        words=counts,
        words_per_minute={s: counts[s] / minutes for s in SPEAKERS},
        speech_seconds={s: intervals.total(speech[s]) for s in SPEAKERS},
        overlap_seconds=intervals.total(intervals.intersect(speech["A"], speech["B"])),
        turn_gaps=turn_gaps(words),
    )


@dataclass
class CorpusStats:
    dialogues: int
    hours: float
    words_per_minute: dict[str, float]
    overlap_share: float
    gap_histogram: dict[str, list[float]]  # {"edges": [...], "counts": [...]} of turn gaps in seconds

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_stats(items: list[DialogueStats], bins: int = 20) -> CorpusStats:
    duration = sum(d.duration for d in items)
    minutes = duration / 60 if duration else float("nan")
    speech = sum(sum(d.speech_seconds.values()) - d.overlap_seconds for d in items)
    gaps = np.array([g for d in items for g in d.turn_gaps], dtype=float)
    counts, edges = np.histogram(gaps, bins=bins, range=(-2.0, 3.0)) if len(gaps) else (np.zeros(0), np.zeros(0))
    return CorpusStats(
        dialogues=len(items),
        hours=duration / 3600,
        words_per_minute={s: sum(d.words[s] for d in items) / minutes for s in SPEAKERS},
        overlap_share=sum(d.overlap_seconds for d in items) / speech if speech else 0.0,
        gap_histogram={"edges": edges.tolist(), "counts": counts.tolist()},
    )
