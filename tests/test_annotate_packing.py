"""Whisper's input packing (backend.data.annotate.packing): a channel's stretches laid end to end in 30 s
windows, and the words found there handed back to their stretches with times relative to them."""

import numpy as np

from backend.data.annotate.engines import TimedWord
from backend.data.annotate.packing import pack, unpack

RATE = 100  # samples per second: small arrays, exact times


def _pieces(seconds: list[float]) -> list[np.ndarray]:
    """Piece i holds the value i + 1 throughout, so where each lands in a window can be read back."""
    return [np.full(int(round(s * RATE)), i + 1, np.float32) for i, s in enumerate(seconds)]


def test_pieces_fill_windows_in_order_with_a_silence_between() -> None:
    pieces = _pieces([12.0, 10.0, 7.0, 40.0, 3.0])
    windows = pack(pieces, RATE, window=30.0, gap=1.0)
    assert [[i for i, _, _ in w.spans] for w in windows] == [[0, 1], [2], [3], [4]]  # 12+1+10+1+7 > 30
    for w in windows:
        for i, start, length in w.spans:
            a, b = int(round(start * RATE)), int(round((start + length) * RATE))
            assert np.all(w.audio[a:b] == i + 1) and b - a == len(pieces[i])
        assert len(w.audio) == int(round((w.spans[-1][1] + w.spans[-1][2]) * RATE))  # no silence after the last
    first = windows[0]
    gap = first.audio[int(12.0 * RATE) : int(13.0 * RATE)]
    assert first.spans[1][1] == 13.0 and not gap.any()
    assert pack([], RATE) == []


def test_words_go_back_to_their_stretch() -> None:
    windows = pack(_pieces([2.0, 3.0, 2.0]), RATE, window=30.0, gap=1.0)  # starts 0, 3, 7
    found = [
        [
            TimedWord("one", 0.5, 1.0, 0.9),
            TimedWord("across", 1.8, 2.6, 0.8),  # middle 2.2: in the gap, nearer the first stretch
            TimedWord("two", 3.2, 3.9, 0.7),
            TimedWord("late", 5.7, 6.6, 0.6),  # middle 6.15: nearer the second; its end clipped to it
            TimedWord("three", 6.9, 7.5, 0.5),  # middle inside the third; its start clipped to it
        ]
    ]
    back = unpack(windows, found, 3)
    assert [[w.word for w in words] for words in back] == [["one", "across"], ["two", "late"], ["three"]]
    assert back[0][0] == TimedWord("one", 0.5, 1.0, 0.9)
    assert back[0][1].start == 1.8 and back[0][1].end == 2.0
    assert np.isclose(back[1][0].start, 0.2) and np.isclose(back[1][0].end, 0.9)
    assert np.isclose(back[1][1].start, 2.7) and back[1][1].end == 3.0
    assert back[2][0].start == 0.0 and np.isclose(back[2][0].end, 0.5)
    assert unpack(windows, [[]], 3) == [[], [], []]
