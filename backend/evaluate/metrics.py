"""Full-Duplex-Bench's formulas (v1.0 and v1.5), derived from its evaluation scripts
(github.com/DanielLin94144/Full-Duplex-Bench, v1_v1.5/evaluation/*.py) and re-written here. Torch-free.

- Take-over (TOR) of a model output's words W (eval_pause_handling / eval_smooth_turn_taking /
  eval_user_interruption): 0 if W is empty; else 1 if the span from the first word's start to the last word's
  end is >= 1 s, or if it is shorter but there are more than 3 words; else 0. A last word without an end
  (null in output.json) spans from its start.
- Latency (smooth turn-taking, user interruption): first word's start - the user's turn end, clipped at 0,
  counted only where TOR = 1.
- Backchannel (eval_backchannel): over the silero-VAD segments of output.wav, in order: a segment over 3 s is a
  take-over and ends the scan; every other segment scanned is counted as a backchannel (the 1 s / 2-word test
  only decides TOR, which ends as the last segment's). Frequency = backchannels / seconds of output.wav. Their
  timing: 0.2 s bins over the file (int(duration / 0.2) + 1 bins), each backchannel adding 1 to every bin from
  int(start / 0.2) to int(end / 0.2); + 1e-10, normalised; the reference distribution is resampled linearly to
  as many bins; Jensen-Shannon distance (natural log, scipy's `jensenshannon`). No backchannel: JSD = 1.
- v1.5 timing (get_timing): VAD segments of the user (gaps <= 0.6 s merged) and of the model (gaps <= 0.5 s
  merged); stop intervals = overlaps of the two (one per end time, the shortest), response intervals = user
  segment end -> the next model segment start after it (one per model start, the latest user end).
"""

import math
from dataclasses import dataclass

import numpy as np

from backend.core.intervals import Interval

TURN_SECONDS = 1.0  # turn_duration_threshold
TURN_WORDS = 3  # turn_num_words_threshold
BACKCHANNEL_TAKEOVER_SECONDS = 3.0  # time_threshold: a VAD segment longer than this is a turn
BACKCHANNEL_SECONDS = 1.0
BACKCHANNEL_WORDS = 2
BIN_SECONDS = 0.2  # window_size
EPSILON = 1e-10
USER_MERGE_GAP = 0.6
MODEL_MERGE_GAP = 0.5


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float | None  # output.json allows null


def take_over(words: list[Word]) -> int:
    if not words:
        return 0
    last = words[-1].end if words[-1].end is not None else words[-1].start
    if last - words[0].start >= TURN_SECONDS:
        return 1
    return int(len(words) > TURN_WORDS)


def latency(words: list[Word], turn_end: float) -> float | None:
    """Seconds from the user's turn end to the model's first word, clipped at 0; None when the model did not
    take the turn."""
    if not take_over(words):
        return None
    return max(0.0, words[0].start - turn_end)


def words_in(words: list[Word], start: float, end: float) -> list[Word]:
    """The words eval_backchannel attributes to a VAD segment (its three overlap cases)."""
    found = []
    for w in words:
        w_end = w.start if w.end is None else w.end
        if (w.start >= start and w_end <= end) or (w.start <= end < w_end) or (w.start <= start < w_end):
            found.append(w)
    return found


@dataclass(frozen=True)
class Backchannels:
    tor: int
    segments: list[Interval]  # the segments counted as backchannels
    frequency: float  # per second of output
    jsd: float | None  # None: no reference distribution to compare with


def timing_distribution(segments: list[Interval], duration: float) -> np.ndarray:
    """Where backchannels fall, as eval_backchannel bins them (normalised)."""
    counts = np.zeros(int(duration / BIN_SECONDS) + 1)
    for start, end in segments:
        first, last = int(start / BIN_SECONDS), int(end / BIN_SECONDS)
        counts[first : min(last + 1, len(counts))] += 1
    counts += EPSILON
    return counts / counts.sum()


DISJOINT = math.sqrt(math.log(2))  # the JSD (natural log) of distributions without a common bin: its largest


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.spatial.distance.jensenshannon(p, q): both normalised, natural log, square root."""
    p, q = np.asarray(p, float) / np.sum(p), np.asarray(q, float) / np.sum(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(np.sqrt(max(kl(p) + kl(q), 0.0) / 2))


def resized(reference: np.ndarray, bins: int) -> np.ndarray:
    """The reference distribution linearly resampled to `bins` points over the same [0, 1] span."""
    return np.interp(np.linspace(0, 1, bins), np.linspace(0, 1, len(reference)), reference)


def backchannels(
    segments: list[Interval], words: list[Word], duration: float, reference: np.ndarray | None
) -> Backchannels:
    """eval_backchannel on one output: VAD `segments` (seconds), its words, its length and the reference timing
    distribution (None: no JSD)."""
    tor, found = 0, []
    for start, end in segments:
        if end - start > BACKCHANNEL_TAKEOVER_SECONDS:
            tor = 1
            break
        n = len(words_in(words, start, end))
        tor = int(n > TURN_WORDS or end - start >= BACKCHANNEL_SECONDS or n > BACKCHANNEL_WORDS)
        found.append((start, end))
    if not found:
        return Backchannels(tor, [], 0.0, None if reference is None else 1.0)
    if reference is None:
        return Backchannels(tor, found, len(found) / duration, None)
    predicted = timing_distribution(found, duration)
    target = resized(np.asarray(reference, float), len(predicted))
    return Backchannels(tor, found, len(found) / duration, jensen_shannon(predicted, target))


# ---------------------------------------------------------------- v1.5 timing


def merge_gaps(segments: list[Interval], gap: float) -> list[Interval]:
    """Sorted segments with gaps <= `gap` joined (get_timing's _merge: inclusive, unlike intervals.merge)."""
    out: list[Interval] = []
    for s, e in sorted(segments):
        if out and s - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def stop_intervals(user: list[Interval], model: list[Interval]) -> list[Interval]:
    """Where the model talks over the user; its length is the stop latency."""
    raw, i, j = [], 0, 0
    while i < len(user) and j < len(model):
        s, e = max(user[i][0], model[j][0]), min(user[i][1], model[j][1])
        if e > s:
            raw.append((s, e))
        if user[i][1] < model[j][1]:
            i += 1
        else:
            j += 1
    best: dict[int, Interval] = {}
    for s, e in raw:
        key = round(e * 1000)
        if key not in best or e - s < best[key][1] - best[key][0]:
            best[key] = (s, e)
    return [(round(s, 3), round(e, 3)) for s, e in sorted(best.values(), key=lambda x: x[1])]


def response_intervals(user: list[Interval], model: list[Interval]) -> list[Interval]:
    """User segment end -> the model's next onset; its length is the response latency."""
    best: dict[int, Interval] = {}
    for _, u_end in user:
        nxt = next((s for s, _ in model if s > u_end), None)
        if nxt is None:
            continue
        key = round(nxt * 1000)
        if key not in best or round(u_end, 3) > best[key][0]:
            best[key] = (round(u_end, 3), round(nxt, 3))
    return [iv for _, iv in sorted(best.items(), key=lambda kv: kv[1][1])]


def mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
