"""Turn-taking statistics of a stereo dialogue (left = A / Moshi, right = B / user): a dataset
reference, a generated continuation or a recorded chat, all measured the same way.

    python -m backend.inference.turn_taking \\
        --inputs 'reference=out/**/*.reference.wav' 'generated=out/**/*.continuation.wav' --start-seconds 4

Definitions (after Heldner & Edlund 2010, "Pauses, gaps and overlaps in conversations"):
- IPU (inter-pausal unit): a stretch of one channel's voice activity (`vad.ipus`).
- Backchannel: an IPU no longer than `backchannel_max` lying inside a turn of the other speaker (the
  other's IPUs joined across silences shorter than `turn_bridge`, as in `dialogue_stats`), i.e. the
  other speaks before and after it without giving up the floor.
- The floor: both channels' IPUs without the backchannels, cut into stretches of silence, A alone,
  B alone and both. A silence between two stretches of the same speaker alone is a pause, between
  different speakers a gap. A stretch of both speaking is a between-speaker overlap when the
  speaker alone before it differs from the one after it, else a within-speaker overlap.
- Floor transfer: each change of the speaker talking alone. Its offset is the start of the new
  speaker's IPU minus the end of the previous speaker's IPU: the gap (> 0) or minus the overlap (< 0).
- Talk ratio: each speaker's share of the total talk time; time to first speech from the start of
  the analysed window; backchannel rate per minute of the other speaker's talk.
"""

import glob
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backend.core import config, figures, intervals
from backend.core.atomic import write_text_atomic
from backend.core.config import option
from backend.core.errors import ConfigError, InputError, StudioError
from backend.core.intervals import Interval
from backend.core.spec import SAMPLE_RATE, SPEAKERS
from backend.data import vad
from backend.data.audio_io import load_stereo
from backend.data.stats import TURN_BRIDGE

A, B = SPEAKERS


@dataclass
class TurnTakingConfig:
    inputs: list[str] = option(
        [],
        "stereo audio files, folders (every .wav inside, recursively) or glob patterns; "
        "LABEL=... names the source they belong to (default label: the argument itself)",
    )
    output: Path = option(
        Path("turn_taking.json"), "JSON file to write (per-dialogue statistics and the comparison of the sources)"
    )
    start_seconds: float = option(0.0, "analyse from this time on, e.g. a continuation's prompt end (P / 12.5 s)")
    end_seconds: float | None = option(None, "analyse up to this time (none: to the end)")
    frame_ms: float = option(10.0, "voice-activity frame length in milliseconds (the resolution of every time)")
    on_dbfs: float = option(-40.0, "a frame at or above this level (RMS dBFS) switches voice activity on")
    off_dbfs: float = option(-45.0, "a frame below this level switches it off (hysteresis between the two)")
    min_speech: float = option(0.08, "IPUs shorter than this (seconds) are dropped as clicks or breaths")
    min_pause: float = option(0.2, "silences of one speaker shorter than this (seconds) stay inside an IPU")
    backchannel_max: float = option(1.0, "longest IPU (seconds) that can count as a backchannel")
    turn_bridge: float = option(
        TURN_BRIDGE,
        "silences shorter than this (seconds) do not end a turn when "
        "looking for backchannels (as the word-based dataset statistics)",
    )
    bins: int = option(20, "histogram bins of the comparison")
    plot: Path | None = figures.plot_option("the comparison's histograms (one panel per metric)")


@dataclass(frozen=True)
class FloorTransfer:
    time: float  # when the new speaker starts talking alone
    from_speaker: str
    to_speaker: str
    offset: float  # > 0 gap, < 0 overlap (seconds)


@dataclass
class TurnStats:
    name: str
    start: float  # analysed window, seconds in the file
    end: float
    ipus: dict[str, list[Interval]]
    backchannels: dict[str, list[Interval]]
    pauses: dict[str, list[Interval]]
    gaps: list[Interval]
    overlaps_between: list[Interval]
    overlaps_within: list[Interval]
    floor_transfers: list[FloorTransfer] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def talk_seconds(self) -> dict[str, float]:
        return {s: intervals.total(self.ipus[s]) for s in SPEAKERS}

    @property
    def talk_ratio(self) -> dict[str, float | None]:
        """Each speaker's share of the total talk time (None when nobody speaks)."""
        talk = self.talk_seconds
        both = sum(talk.values())
        return {s: (talk[s] / both if both > 0 else None) for s in SPEAKERS}

    @property
    def overlap_seconds(self) -> float:
        """Time both speak, backchannels included (as the word-based dataset statistics)."""
        return intervals.total(intervals.intersect(self.ipus[A], self.ipus[B]))

    @property
    def first_speech(self) -> dict[str, float | None]:
        """Seconds from the window start to each speaker's first IPU (None: silent)."""
        return {s: (self.ipus[s][0][0] - self.start if self.ipus[s] else None) for s in SPEAKERS}

    @property
    def backchannel_rate(self) -> dict[str, float | None]:
        """Backchannels per minute of the other speaker's talk."""
        talk = self.talk_seconds
        return {s: (len(self.backchannels[s]) / (talk[o] / 60) if talk[o] > 0 else None) for s, o in ((A, B), (B, A))}

    def to_dict(self) -> dict:
        return asdict(self) | {
            "duration": self.duration,
            "talk_seconds": self.talk_seconds,
            "talk_ratio": self.talk_ratio,
            "overlap_seconds": self.overlap_seconds,
            "first_speech": self.first_speech,
            "backchannel_rate": self.backchannel_rate,
        }


# ---------------------------------------------------------------- analysis


def backchannels(units: list[Interval], other: list[Interval], longest: float, bridge: float) -> list[Interval]:
    """Units no longer than `longest` lying strictly inside one of the other speaker's turns."""
    turns = intervals.merge(other, bridge=bridge)
    return [(s, e) for s, e in units if e - s <= longest + 1e-9 and any(ts < s and e < te for ts, te in turns)]


def floor_stretches(a: list[Interval], b: list[Interval], start: float, end: float) -> list[tuple[str, float, float]]:
    """The window cut into maximal stretches labelled "", "A", "B" or "AB" (who is speaking)."""
    cuts = np.array(sorted({start, end} | {t for s, e in a + b for t in (s, e) if start <= t <= end}))

    def speaking(units: list[Interval]) -> np.ndarray:
        """Per cut: inside one of the (sorted, disjoint) units?"""
        if not units:
            return np.zeros(len(cuts), dtype=bool)
        starts, ends = np.array(units).T
        i = np.searchsorted(starts, cuts, side="right") - 1
        return (i >= 0) & (cuts < ends[np.maximum(i, 0)])

    in_a, in_b = speaking(a), speaking(b)
    out: list[tuple[str, float, float]] = []
    for k, (lo, hi) in enumerate(zip(cuts.tolist(), cuts[1:].tolist())):
        label = (A if in_a[k] else "") + (B if in_b[k] else "")
        if out and out[-1][0] == label:
            out[-1] = (label, out[-1][1], hi)
        else:
            out.append((label, lo, hi))
    return out


def _solo_around(stretches: list[tuple[str, float, float]], i: int) -> tuple[str | None, str | None]:
    """The speaker talking alone in the nearest solo stretch before and after stretch i."""
    before = next((lab for lab, _, _ in reversed(stretches[:i]) if lab in SPEAKERS), None)
    after = next((lab for lab, _, _ in stretches[i + 1 :] if lab in SPEAKERS), None)
    return before, after


def analyse(audio: np.ndarray, sr: int, cfg: TurnTakingConfig, name: str = "") -> TurnStats:
    """Statistics of a stereo [2, N] signal over cfg's window (times in seconds of the signal)."""
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"expected stereo audio of shape [2, N], got {list(audio.shape)}")
    total = audio.shape[1] / sr
    start = min(max(cfg.start_seconds, 0.0), total)
    end = total if cfg.end_seconds is None else min(max(cfg.end_seconds, start), total)
    first, last = int(round(start * sr)), int(round(end * sr))
    units = {}
    for s, x in zip(SPEAKERS, audio):
        found = vad.ipus(
            x[first:last],
            sr,
            frame_ms=cfg.frame_ms,
            on_dbfs=cfg.on_dbfs,
            off_dbfs=cfg.off_dbfs,
            min_speech=cfg.min_speech,
            min_pause=cfg.min_pause,
        )
        units[s] = [(round(a + start, 6), round(b + start, 6)) for a, b in found]
    bcs = {s: backchannels(units[s], units[o], cfg.backchannel_max, cfg.turn_bridge) for s, o in ((A, B), (B, A))}
    floor = {s: [u for u in units[s] if u not in bcs[s]] for s in SPEAKERS}
    stretches = floor_stretches(floor[A], floor[B], start, end)

    stats = TurnStats(name, start, end, units, bcs, {A: [], B: []}, [], [], [])
    for i, (label, lo, hi) in enumerate(stretches):
        before, after = _solo_around(stretches, i)
        if label == "" and 0 < i < len(stretches) - 1 and before and after:
            if before == after:
                stats.pauses[before].append((lo, hi))
            else:
                stats.gaps.append((lo, hi))
        elif label == A + B:
            (stats.overlaps_between if before and after and before != after else stats.overlaps_within).append((lo, hi))
    solos = [(label, lo) for label, lo, _ in stretches if label in SPEAKERS]
    for (prev, _), (new, t) in zip(solos, solos[1:]):
        if new != prev:
            began = max(s for s, e in floor[new] if s <= t)  # the new speaker's IPU that takes the floor
            ended = max(e for s, e in floor[prev] if e <= t)  # the previous speaker's last IPU
            stats.floor_transfers.append(FloorTransfer(t, prev, new, round(began - ended, 6)))
    return stats


def analyse_file(path: str | Path, cfg: TurnTakingConfig) -> TurnStats:
    audio, _ = load_stereo(path)  # checked stereo, at 24 kHz
    return analyse(audio, SAMPLE_RATE, cfg, name=str(path))


# ---------------------------------------------------------------- comparing sources


def first_speech(t: TurnStats) -> float | None:
    """Seconds from the window start until anyone speaks (None: silence throughout)."""
    return min((f for f in t.first_speech.values() if f is not None), default=None)


# Per metric: the values one dialogue contributes, and the histogram range shared by all sources
# (values outside are counted in the end bins).
METRICS = {
    "floor_transfer_offset": (lambda t: [f.offset for f in t.floor_transfers], (-2.0, 3.0)),
    "gap": (lambda t: [e - s for s, e in t.gaps], (0.0, 3.0)),
    "pause": (lambda t: [e - s for p in t.pauses.values() for s, e in p], (0.0, 3.0)),
    "overlap_between": (lambda t: [e - s for s, e in t.overlaps_between], (0.0, 3.0)),
    "overlap_within": (lambda t: [e - s for s, e in t.overlaps_within], (0.0, 3.0)),
    "ipu": (lambda t: [e - s for u in t.ipus.values() for s, e in u], (0.0, 10.0)),
    "talk_ratio_A": (lambda t: [] if t.talk_ratio[A] is None else [t.talk_ratio[A]], (0.0, 1.0)),
    "backchannels_per_minute": (lambda t: [r for r in t.backchannel_rate.values() if r is not None], (0.0, 30.0)),
    "time_to_first_speech": (lambda t: [f for f in [first_speech(t)] if f is not None], (0.0, 5.0)),
    "overlap_share": (lambda t: [t.overlap_seconds / t.duration] if t.duration > 0 else [], (0.0, 0.5)),
}


def summary(values: list[float], edges: np.ndarray) -> dict:
    v = np.asarray(values, dtype=float)
    counts = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0] if len(v) else np.zeros(len(edges) - 1)
    stats = {"n": int(len(v)), "counts": [int(c) for c in counts]}
    for key, fn in (
        ("mean", np.mean),
        ("median", np.median),
        ("p10", lambda x: np.percentile(x, 10)),
        ("p90", lambda x: np.percentile(x, 90)),
    ):
        stats[key] = float(fn(v)) if len(v) else None
    return stats


def compare(sources: Mapping[str, Sequence[TurnStats]], bins: int = 20) -> dict:
    """Distributions of every metric per source, on histogram edges shared by all sources:
    {"sources": [...], "metrics": {metric: {"edges": [...], "by_source": {label: {n, mean, median,
    p10, p90, counts}}}}}."""
    out: dict = {"sources": list(sources), "metrics": {}}
    for metric, (values_of, (lo, hi)) in METRICS.items():
        edges = np.linspace(lo, hi, bins + 1)
        out["metrics"][metric] = {
            "edges": edges.tolist(),
            "by_source": {
                label: summary([v for t in items for v in values_of(t)], edges) for label, items in sources.items()
            },
        }
    return out


# ---------------------------------------------------------------- CLI


def resolve_inputs(inputs: list[str]) -> dict[str, list[Path]]:
    """LABEL=PATTERN arguments -> files per label (a folder means every .wav under it)."""
    if not inputs:
        raise ConfigError("inputs: give at least one stereo audio file, folder or glob pattern")
    out: dict[str, list[Path]] = {}
    for arg in inputs:
        label, _, pattern = arg.rpartition("=")
        label = label or pattern
        path = Path(pattern)
        if path.is_dir():
            files = sorted(path.rglob("*.wav"))
        elif path.is_file():
            files = [path]
        else:
            files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(pattern, "no audio file here (give a file, a folder of .wav files or a glob pattern)")
        out.setdefault(label, []).extend(files)
    return out


def run(cfg: TurnTakingConfig) -> dict:
    if cfg.frame_ms <= 0 or cfg.min_pause < 0 or cfg.min_speech < 0 or cfg.bins < 1:
        raise ConfigError("frame_ms and bins must be positive, min_pause and min_speech >= 0")
    if cfg.off_dbfs > cfg.on_dbfs:
        raise ConfigError(f"off_dbfs ({cfg.off_dbfs}) must not be above on_dbfs ({cfg.on_dbfs})")
    if cfg.plot is not None:
        figures.check_png_path(cfg.plot)
    stats = {label: [analyse_file(f, cfg) for f in files] for label, files in resolve_inputs(cfg.inputs).items()}
    result = {
        "config": config.to_dict(cfg),
        "dialogues": {k: [t.to_dict() for t in v] for k, v in stats.items()},
        "comparison": compare(stats, cfg.bins),
    }
    write_text_atomic(cfg.output, json.dumps(result, indent=1) + "\n")
    if cfg.plot is not None:
        figures.save(figures.turn_taking_histograms(result["comparison"]), cfg.plot)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(
        TurnTakingConfig,
        "Turn-taking statistics of stereo dialogues (IPUs, pauses, gaps, "
        "overlaps, floor-transfer offsets, backchannels), compared across "
        "sources; writes JSON.",
    )
    try:
        cfg = config.from_cli(TurnTakingConfig, parser.parse_args(argv))
        result = run(cfg)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, metrics in ((s, result["comparison"]["metrics"]) for s in result["comparison"]["sources"]):
        fto = metrics["floor_transfer_offset"]["by_source"][label]
        median = "-" if fto["median"] is None else f"{fto['median']:.2f} s"
        print(
            f"{label}: {len(result['dialogues'][label])} dialogue(s), {fto['n']} floor transfers, "
            f"median offset {median}"
        )
    print(f"wrote {cfg.output}" + ("" if cfg.plot is None else f" and {cfg.plot}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
