"""Voice activity of one channel: frame energy with hysteresis, then inter-pausal units (IPUs).

Energy, not a speech model: each speaker has a channel of their own, so "the channel carries sound"
is what the turn-taking statistics need, and it stays meaningful for any audio the studio analyses
(the offline demo's random-weight Mimi produces noise, which silero-vad and webrtcvad's speech GMM
reject; synthetic test tones likewise). It is exact to the frame grid and needs no model file.

A frame turns active when its level reaches `on_dbfs` and stays active until the level falls below
`off_dbfs` (hysteresis: a voice fading between the two thresholds does not flicker). Active runs
separated by less than `min_pause` seconds form one IPU; IPUs shorter than `min_speech` (clicks,
breaths) are dropped.
"""

import numpy as np

from backend.core import intervals
from backend.core.intervals import Interval


def frame_levels(x: np.ndarray, hop: int) -> np.ndarray:
    """dBFS (RMS, a full-scale sine is -3 dBFS) of consecutive frames of `hop` samples; a partial last
    frame is measured over the samples it has."""
    n_frames = -(-len(x) // hop)
    padded = np.zeros(n_frames * hop, dtype=np.float64)
    padded[: len(x)] = x
    counts = np.full(n_frames, hop)
    counts[-1] = len(x) - hop * (n_frames - 1)
    power = np.square(padded).reshape(n_frames, hop).sum(axis=1) / counts
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def hysteresis(levels: np.ndarray, on_dbfs: float, off_dbfs: float) -> np.ndarray:
    """Active flags per frame: a frame at or above `on_dbfs` switches on, one below `off_dbfs` switches
    off, a frame in between keeps the previous state (vectorised: forward-fill of the last switch)."""
    switch = np.where(levels >= on_dbfs, 1, np.where(levels < off_dbfs, 0, -1))
    last = np.where(switch >= 0, np.arange(len(switch)), -1)
    last = np.maximum.accumulate(last) if len(last) else last
    return np.where(last >= 0, switch[np.maximum(last, 0)], 0).astype(bool)


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(first frame, end frame) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def ipus(
    x: np.ndarray,
    sr: int,
    *,
    frame_ms: float = 10.0,
    on_dbfs: float = -40.0,
    off_dbfs: float = -45.0,
    min_speech: float = 0.08,
    min_pause: float = 0.2,
) -> list[Interval]:
    """Inter-pausal units of a mono signal, in seconds on the frame grid."""
    if off_dbfs > on_dbfs:
        raise ValueError(f"off threshold ({off_dbfs} dBFS) must not be above the on threshold ({on_dbfs} dBFS)")
    hop = max(1, int(round(sr * frame_ms / 1000)))
    if len(x) == 0:
        return []
    active = hysteresis(frame_levels(x, hop), on_dbfs, off_dbfs)
    # Rounded to the microsecond so that durations built from these times compare exactly.
    segments = [(round(s * hop / sr, 6), round(min(e * hop, len(x)) / sr, 6)) for s, e in runs(active)]
    # A silence exactly min_pause long ends the unit: bridge strictly shorter silences only.
    joined = intervals.merge(segments, bridge=np.nextafter(min_pause, 0.0))
    return [(s, e) for s, e in joined if e - s >= min_speech - 1e-9]
