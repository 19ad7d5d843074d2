"""The recognisers behind one interface: words with times (seconds) and a confidence in [0, 1].

An engine sees one channel at a time, mono float32 at its own `sample_rate`. `transcribe` finds the
words (ASR mode) of each stretch of a channel's speech (stretches closer than the engine's `bridge` joined),
times relative to the stretch; it gets all of a
channel's stretches at once, as they are one speaker's (an engine may adapt to them). `align` places known
words (alignment mode) and returns one entry per given word, in order, with `None` for a word it could not
place (the caller interpolates those).
"""

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

Tick = Callable[[float], None]  # the share of a channel's work done, called as it moves


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float
    end: float
    confidence: float


class Engine(Protocol):
    name: str
    sample_rate: int
    bridge: float  # ASR: own speech closer than this many seconds is one stretch (Whisper wants context)

    def describe(self) -> dict:
        """What the output records about the engine (name, model, version)."""

    def transcribe(self, pieces: list[np.ndarray], tick: Tick | None = None) -> list[list[TimedWord]]: ...

    def align(self, audio: np.ndarray, words: list[str]) -> list[TimedWord | None]: ...


def transcribe_each(
    pieces: list[np.ndarray], one: Callable[[np.ndarray], list[TimedWord]], tick: Tick | None = None
) -> list[list[TimedWord]]:
    """`one` over each stretch of a channel, in order, telling `tick` the share done after each (engines that
    transcribe stretch by stretch)."""
    found = []
    for audio in pieces:
        found.append(one(audio))
        if tick:
            tick(len(found) / len(pieces))
    return found
