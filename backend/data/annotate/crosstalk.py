"""Which stretches of a channel belong to its own speaker, from the levels of both channels.

Each speaker has a channel of their own, but the other voice leaks in (a headset hearing the room, a
telephone hybrid). A leaked voice is quieter in this channel than in the other one, where it is the
speaker's own; genuine overlapping speech is loud in both. So a 10 ms frame is the channel's own when
its level is voice-like (at least `on_dbfs`) and the other channel is not louder by more than
`margin_db`. A word's *support* is the share of its frames that are the channel's own among the frames
where anyone is audible: a word built from leaked speech (or from silence) has little support.
"""

from dataclasses import dataclass

import numpy as np

from backend.core import intervals
from backend.core.intervals import Interval
from backend.data.vad import frame_levels, runs

FRAME_SECONDS = 0.01


@dataclass(frozen=True)
class Ownership:
    """Per-frame facts of one channel against the other (10 ms frames)."""

    own: np.ndarray  # bool: this channel's speaker is talking here
    audible: np.ndarray  # bool: either channel is voice-like here

    def support(self, start: float, end: float) -> float:
        """Share of the audible frames of [start, end] that are this channel's own (0 when none is audible)."""
        a = max(0, int(np.floor(start / FRAME_SECONDS)))
        b = max(a + 1, int(np.ceil(end / FRAME_SECONDS)))
        audible = int(self.audible[a:b].sum())
        return float(self.own[a:b].sum()) / audible if audible else 0.0

    def regions(self, bridge: float, pad: float, duration: float) -> list[Interval]:
        """Stretches of own speech, joined across pauses shorter than `bridge`, padded by `pad` seconds."""
        spans = [(s * FRAME_SECONDS, e * FRAME_SECONDS) for s, e in runs(self.own)]
        joined = intervals.merge(spans, bridge=bridge)
        return intervals.merge([(max(0.0, s - pad), min(duration, e + pad)) for s, e in joined])


def ownership(stereo: np.ndarray, sr: int, *, on_dbfs: float, margin_db: float) -> tuple[Ownership, Ownership]:
    """Ownership of channel A (row 0) and channel B (row 1) of float [2, N] audio."""
    hop = max(1, int(round(sr * FRAME_SECONDS)))
    levels = [frame_levels(x, hop) for x in stereo]
    voiced = [lv >= on_dbfs for lv in levels]
    audible = voiced[0] | voiced[1]
    own_a = voiced[0] & (levels[1] <= levels[0] + margin_db)
    own_b = voiced[1] & (levels[0] <= levels[1] + margin_db)
    return Ownership(own_a, audible), Ownership(own_b, audible)


def suppress_foreign(x: np.ndarray, sr: int, own: Ownership, gain_db: float = -30.0) -> np.ndarray:
    """The channel with the frames that are audible but not its own turned down by `gain_db` (smoothed over
    30 ms so no clicks are made): an aligner then finds no speech of this speaker in the other's turns."""
    hop = max(1, int(round(sr * FRAME_SECONDS)))
    foreign = own.audible & ~own.own
    gain = np.where(foreign, 10 ** (gain_db / 20), 1.0)
    gain = np.convolve(gain, np.ones(3) / 3, mode="same")
    per_sample = np.repeat(gain, hop)[: len(x)]
    return (x[: len(per_sample)] * per_sample).astype(np.float32)
