"""Dataset statistics on hand-built word timings whose answers are known."""

import pytest

from backend.core.intervals import intersect, merge, total
from backend.data.stats import corpus_stats, dialogue_stats, turn_gaps
from backend.data.transcripts import Word


def w(speaker: str, start: float, end: float) -> Word:
    return Word(speaker, "x", start, end)


def test_intervals() -> None:
    assert merge([(2, 3), (0, 1), (0.5, 1.5)]) == [(0, 1.5), (2, 3)]
    assert merge([(0, 1), (1.2, 2)], bridge=0.3) == [(0, 2)]
    assert total([(0, 1), (0.5, 2)]) == 2
    assert intersect([(0, 2), (3, 5)], [(1, 4)]) == [(1, 2), (3, 4)]


def test_gaps_overlaps_and_rates() -> None:
    words = [
        w("A", 0.0, 0.4),
        w("A", 0.5, 1.0),  # A's turn 0-1
        w("B", 1.3, 2.0),  # gap +0.3
        w("A", 1.8, 3.0),  # overlap: A starts 0.2 s before B ends
        w("B", 4.0, 4.5),
    ]  # gap +1.0
    assert turn_gaps(words) == [0.3, -0.2, 1.0]
    s = dialogue_stats("d", words, duration=60.0)
    assert s.words == {"A": 3, "B": 2}
    assert s.words_per_minute == {"A": 3.0, "B": 2.0}
    assert s.overlap_seconds == pytest.approx(0.2)
    speech_union = 1.0 + (3.0 - 1.3) + 0.5 - 0.0  # 0-1, 1.3-3.0, 4.0-4.5 (words 0.4-0.5 bridged only for turns)
    assert s.overlap_share == pytest.approx(0.2 / (speech_union - 0.1))  # A's two words leave a 0.1 s hole
    c = corpus_stats([s, s])
    assert c.dialogues == 2 and c.hours == pytest.approx(120 / 3600)
    assert sum(c.gap_histogram["counts"]) == 6


def test_speaker_without_words() -> None:
    s = dialogue_stats("d", [w("A", 0, 1)], duration=30.0)
    assert s.words["B"] == 0 and s.turn_gaps == [] and s.overlap_seconds == 0
