"""A channel's stretches of speech laid end to end in windows of Whisper's length, and the words found in a
window handed back to the stretches they came from.

Whisper's encoder always reads 30 s: a 3 s stretch decoded alone costs as much as 30 s of speech, and with the
language left open, faster-whisper runs the encoder a second time per call to detect it. Decoding each of a
channel's stretches on its own made faster-whisper's CPU time about 4x that of packed windows on the SpokenWOZ
calls (0.19 -> 0.05 s per second of a channel, the language then detected once per channel) and gave Whisper
less context (WER 23.9% -> 21.7% there, 25.7% -> 19.4% on 4 held-out "mixed" dialogues; bench_annotate.py).
This is what faster-whisper's own VAD filter does with the speech it finds, with a short silence kept between
stretches so that words of two stretches do not run together.
"""

from dataclasses import dataclass

import numpy as np

from backend.data.annotate.engines import TimedWord

WINDOW_SECONDS = 30.0  # Whisper's input length
GAP_SECONDS = 1.0  # silence between two stretches in a window: Whisper hears a pause, not a joined phrase


@dataclass(frozen=True)
class Window:
    audio: np.ndarray  # float32 mono
    spans: tuple[tuple[int, float, float], ...]  # (stretch index, start in the window, duration), seconds


def pack(pieces: list[np.ndarray], rate: int, window: float = WINDOW_SECONDS, gap: float = GAP_SECONDS) -> list[Window]:
    """Consecutive pieces, in order, joined into windows of at most `window` seconds (a longer piece gets a
    window of its own; the engine reads it in parts as it would alone)."""
    silence = np.zeros(int(round(gap * rate)), np.float32)
    windows: list[Window] = []
    parts: list[np.ndarray] = []
    spans: list[tuple[int, float, float]] = []
    filled = 0  # samples in `parts`

    def close() -> None:
        if spans:
            windows.append(Window(np.concatenate(parts[:-1]).astype(np.float32), tuple(spans)))

    for i, piece in enumerate(pieces):
        if spans and filled + len(piece) > window * rate:
            close()
            parts, spans, filled = [], [], 0
        spans.append((i, filled / rate, len(piece) / rate))
        parts += [piece, silence]
        filled += len(piece) + len(silence)
    close()
    return windows


def unpack(windows: list[Window], found: list[list[TimedWord]], count: int) -> list[list[TimedWord]]:
    """Per piece (`count` of them), the words found in the windows, times relative to their piece. A word goes
    to the stretch its middle falls in (in a gap: the nearer stretch) and is clipped to that stretch."""
    out: list[list[TimedWord]] = [[] for _ in range(count)]
    for win, words in zip(windows, found):
        for w in words:
            middle = (w.start + w.end) / 2

            def distance(span: tuple[int, float, float]) -> float:
                _, start, length = span
                return max(start - middle, middle - start - length, 0.0)

            index, start, length = min(win.spans, key=distance)
            s = min(max(w.start - start, 0.0), length)
            e = min(max(w.end - start, s), length)
            out[index].append(TimedWord(w.word, s, e, w.confidence))
    return out
