"""Alignment one turn at a time, so a turn whose words are not what was said fails alone.

pocketsphinx's alignment grammar is linear: one transcript word missing from the speech (or one extra) can
leave no path through a whole channel. So each turn is aligned on its own window of the channel:

- Re-alignment (turns with given times, e.g. SpokenWOZ's coarse ones): the turn's given span widened by
  `margin` seconds on each side, but never into the given span of the speaker's turns before and after it.
- Turn files (no times): the channel's stretches of own speech (crosstalk.py) are shared out among the
  speaker's turns, in order, by dynamic programming: a turn takes a run of consecutive stretches whose speech
  lasts about as long as its letters predict at the channel's own rate (its speech over its letters). A
  stretch nobody takes (a cough, words nobody wrote down) or a turn that takes none (words nobody said) costs a
  fixed penalty. The turn's window reaches from its stretches `margin` seconds outwards, never into another
  turn's stretches.

A turn fails when it gets no window or the engine places none of its words in it; the caller spreads the
words of failed turns between their placed neighbours with confidence 0 (fill_unplaced).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from backend.core.intervals import Interval
from backend.data.annotate.crosstalk import Ownership
from backend.data.annotate.engines import Engine, Tick, TimedWord
from backend.data.annotate.turns import Turn

MARGIN = 0.5  # seconds of context each side of a turn's window
STRETCH_BRIDGE = 0.3  # own speech closer than this is one stretch
RATIO_SPREAD = np.log(1.6)  # a turn lasting 1.6x (or 1/1.6x) its expected time costs 1
SKIP_TURN = 4.0  # a turn without speech: as unlikely as lasting 1.6^2 = 2.6x too long
SKIP_STRETCH = 4.0  # per expected-turn-length of speech left to nobody
MAX_STRETCHES_PER_TURN = 12


@dataclass(frozen=True)
class ChannelAlignment:
    placed: list[TimedWord | None]  # one per word of the turns, in order; None: not placed
    failed: list[tuple[Turn, str]]  # turns none of whose words were placed, with the reason


def _letters(turn: Turn) -> int:
    return sum(len(w) for w in turn.words) + len(turn.words)  # a word boundary takes time too


def share_stretches(turns: Sequence[Turn], stretches: Sequence[Interval]) -> list[tuple[int, int] | None]:
    """Per turn, the run [first, last] of `stretches` it takes (None: no speech of it was found)."""
    n, m = len(turns), len(stretches)
    speech = np.array([e - s for s, e in stretches])
    letters = np.array([_letters(t) for t in turns], dtype=float)
    if not m or not n:
        return [None] * n
    rate = speech.sum() / letters.sum()  # seconds per letter: this channel's speaker, this transcript
    mean_turn = speech.sum() / n
    cum = np.concatenate([[0.0], np.cumsum(speech)])
    cost = np.full((n + 1, m + 1), np.inf)
    back: dict[tuple[int, int], tuple[int, int, bool]] = {}
    cost[0, 0] = 0.0
    for k in range(n + 1):
        for j in range(m + 1):
            here = cost[k, j]
            if not np.isfinite(here):
                continue
            if j < m:  # stretch j goes to nobody
                step = here + SKIP_STRETCH * min(1.0, speech[j] / mean_turn)
                if step < cost[k, j + 1]:
                    cost[k, j + 1], back[(k, j + 1)] = step, (k, j, False)
            if k < n:  # turn k has no speech
                if here + SKIP_TURN < cost[k + 1, j]:
                    cost[k + 1, j], back[(k + 1, j)] = here + SKIP_TURN, (k, j, False)
                for last in range(j, min(m, j + MAX_STRETCHES_PER_TURN)):  # turn k takes stretches j..last
                    ratio = np.log((cum[last + 1] - cum[j]) / (rate * letters[k]))
                    step = here + (ratio / RATIO_SPREAD) ** 2
                    if step < cost[k + 1, last + 1]:
                        cost[k + 1, last + 1], back[(k + 1, last + 1)] = step, (k, j, True)
    taken: list[tuple[int, int] | None] = [None] * n
    k, j = n, m
    while (k, j) != (0, 0):
        pk, pj, took = back[(k, j)]
        if took:
            taken[pk] = (pj, j - 1)
        k, j = pk, pj
    return taken


def turn_windows(
    turns: Sequence[Turn], own: Ownership | None, duration: float, margin: float = MARGIN
) -> list[Interval | None]:
    """Each turn's window of its channel (seconds); see the module docstring. `own` is needed only for turns
    without given times."""
    if all(t.span is not None for t in turns):
        spans: list[Interval | None] = [t.span for t in turns]
    else:
        if own is None:
            raise ValueError("turns without times need the channel's ownership")
        stretches = own.regions(bridge=STRETCH_BRIDGE, pad=0.0, duration=duration)
        spans = [
            None if r is None else (stretches[r[0]][0], stretches[r[1]][1]) for r in share_stretches(turns, stretches)
        ]
    windows: list[Interval | None] = []
    for i, span in enumerate(spans):
        if span is None:
            windows.append(None)
            continue
        before = max((s[1] for s in spans[:i] if s is not None), default=0.0)
        after = min((s[0] for s in spans[i + 1 :] if s is not None), default=duration)
        lo = max(0.0, span[0] - margin, min(before, span[0]))
        hi = min(duration, span[1] + margin, max(after, span[1]))
        windows.append((lo, hi) if hi > lo else None)
    return windows


def align_turns(
    engine: Engine,
    cut: Callable[[float, float], np.ndarray],
    turns: Sequence[Turn],
    windows: Sequence[Interval | None],
    tick: Tick | None = None,
) -> ChannelAlignment:
    """Align each turn in its window; `cut(start, end)` gives the channel's audio of [start, end] seconds at the
    engine's rate, ready for it. A turn left without a window gets a second chance in the window of a neighbour
    that failed in it: a line of words nobody said may have taken the stretch of the line next to it."""

    def attempt(turn: Turn, window: Interval) -> list[TimedWord | None] | None:
        lo, hi = window
        got = engine.align(cut(lo, hi), list(turn.words))
        if all(w is None for w in got):
            return None
        return [None if w is None else TimedWord(w.word, w.start + lo, w.end + lo, w.confidence) for w in got]

    results: list[list[TimedWord | None] | None] = []
    for k, (turn, window) in enumerate(zip(turns, windows)):
        if tick:
            tick(k / len(turns))
        results.append(None if window is None else attempt(turn, window))
    spare = {k for k, (w, r) in enumerate(zip(windows, results)) if w is not None and r is None}
    for k, window in enumerate(windows):
        for j in (k - 1, k + 1) if window is None else ():
            if j in spare and (got := attempt(turns[k], windows[j])) is not None:  # type: ignore[arg-type]
                results[k] = got
                spare.remove(j)
                break
    placed: list[TimedWord | None] = []
    failed: list[tuple[Turn, str]] = []
    for turn, window, got in zip(turns, windows, results):
        placed += got if got is not None else [None] * len(turn.words)
        if got is None:
            failed.append(
                (
                    turn,
                    "no speech of this turn found on its channel"
                    if window is None
                    else f"the words could not be aligned to {window[0]:.2f}-{window[1]:.2f} s",
                )
            )
    return ChannelAlignment(placed, failed)
