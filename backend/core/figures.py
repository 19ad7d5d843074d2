"""Figures people keep: PNG files of what the studio plots, for a cluster user without a browser.

Drawn on matplotlib's Agg canvas through `matplotlib.figure.Figure` (no pyplot: no global state, safe in
the studio's worker threads, no display needed). matplotlib is imported inside the functions, so the
stages that import this module stay light until they draw.

Japanese (and Chinese, Korean) text: matplotlib's own DejaVu Sans has no CJK glyphs, so the first figure adds a
CJK font installed on the system (Debian's fonts-noto-cjk; .ci/run installs it) behind DejaVu Sans: Latin text
looks as before and CJK characters come from the CJK font. Without one, CJK labels render as boxes.
"""

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.core.atomic import atomic_path
from backend.core.config import option
from backend.core.errors import ConfigError
from backend.core.spec import LOSS_STREAMS, LOSS_TOTALS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
SPECTROGRAM_FFT, SPECTROGRAM_HOP, SPECTROGRAM_RANGE_DB = 1024, 256, 80.0


def plot_option(what: str) -> Any:
    """The `plot` field of a stage's config: one definition of the --plot flag for every CLI."""
    return option(None, f"also draw {what} into this PNG file (none: no figure)")


def check_png_path(path: str | Path) -> Path:
    """Refuse, before any work, a path a figure cannot be written to."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"plot: {path} must be a .png file name")
    if path.is_dir():
        raise ConfigError(f"plot: {path} is a folder; give a file name ending in .png")
    if not path.parent.is_dir():
        raise ConfigError(f"plot: cannot write {path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"plot: cannot write {path}: the folder {path.parent} is not writable")
    return path


CJK_FONT_FILES = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKjp-Regular.otf",
    "NotoSansJP-Regular.otf",
    "ipaexg.ttf",
    "ipag.ttf",
)  # preferred first: Debian fonts-noto-cjk, older Noto packagings, IPA fonts


@functools.cache
def cjk_font() -> str | None:
    """Family name of the CJK font the figures fall back to (registered with matplotlib), None if none is installed."""
    from matplotlib import font_manager, rcParams

    found = {Path(f).name: f for f in font_manager.findSystemFonts()}
    path = next((found[name] for name in CJK_FONT_FILES if name in found), None)
    if path is None:
        return None
    font_manager.fontManager.addfont(path)
    family = font_manager.FontProperties(fname=path).get_name()
    rcParams["font.family"] = ["DejaVu Sans", family]  # per glyph: DejaVu first, then the CJK font
    return family


def new_figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cjk_font()
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: "Figure", path: str | Path) -> Path:
    """Write `fig` as a PNG of exactly its size (width x height x DPI pixels), atomically."""
    path = check_png_path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------- fine-tune runs


def loss_curves(metrics: list[dict[str, Any]], title: str = "") -> "Figure":
    """Training losses against the optimiser step (evaluations as dashed lines with markers), totals on
    the left and each stream on the right, log scale."""
    steps = [m for m in metrics if "event" not in m and "step" in m]
    evals = [m for m in metrics if m.get("event") == "eval"]
    fig = new_figure(12, 4.5)
    fig.suptitle(title or "training losses")
    for ax, keys, name in zip(fig.subplots(1, 2), (LOSS_TOTALS, LOSS_STREAMS), ("totals", "per stream")):
        drawn = False
        for i, key in enumerate(keys):
            colour = f"C{i}"
            for rows, style in ((steps, {"ls": "-"}), (evals, {"ls": "--", "marker": "o", "ms": 3})):
                points = [(m["step"], m[key]) for m in rows if isinstance(m.get(key), (int, float)) and m[key] > 0]
                if points:
                    x, y = zip(*points)
                    ax.plot(x, y, color=colour, label=key if rows is steps else f"{key} (eval)", **style)
                    drawn = True
        if not drawn:
            _empty(ax, "no logged steps yet")
            continue
        ax.set_yscale("log")
        ax.set_xlabel("optimiser step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


# ---------------------------------------------------------------- continuations


def log_spectrogram(x: np.ndarray) -> np.ndarray:
    """[freq, time] magnitude in dB of a mono signal (Hann window, SPECTROGRAM_FFT / SPECTROGRAM_HOP)."""
    x = np.asarray(x, dtype=np.float32)
    if len(x) < SPECTROGRAM_FFT:
        x = np.pad(x, (0, SPECTROGRAM_FFT - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, SPECTROGRAM_FFT)[::SPECTROGRAM_HOP]
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(SPECTROGRAM_FFT), axis=-1)).T
    return 20 * np.log10(np.maximum(magnitude, 1e-6))


def spectrograms(
    reference: np.ndarray, continuation: np.ndarray, sample_rate: int, prompt_seconds: float, title: str = ""
) -> "Figure":
    """Reference and continuation side by side ([2, N] stereo each: left = Moshi, right = user), one row per
    channel, on one colour scale; a line marks the end of the prompt."""
    columns = {"reference": reference, "continuation": continuation}
    specs = {name: [log_spectrogram(ch) for ch in audio] for name, audio in columns.items()}
    top = max(float(s.max()) for chans in specs.values() for s in chans)
    fig = new_figure(12, 5.5)
    fig.suptitle(title or "reference and continuation")
    axes = fig.subplots(2, 2, sharex=True, sharey=True)
    for col, (name, chans) in enumerate(specs.items()):
        for row, (channel, spec) in enumerate(zip(("Moshi (left)", "user (right)"), chans)):
            ax = axes[row, col]
            seconds = columns[name].shape[1] / sample_rate
            image = ax.imshow(
                spec,
                origin="lower",
                aspect="auto",
                cmap="magma",
                vmin=top - SPECTROGRAM_RANGE_DB,
                vmax=top,
                extent=(0, seconds, 0, sample_rate / 2000),
            )
            ax.axvline(prompt_seconds, color="cyan", lw=1, ls="--")
            ax.set_title(f"{name}: {channel}", fontsize=9)
            if row == 1:
                ax.set_xlabel("seconds (dashed: end of prompt)")
            if col == 0:
                ax.set_ylabel("kHz")
    fig.colorbar(image, ax=axes, label="dB", shrink=0.8)
    return fig


# ---------------------------------------------------------------- turn-taking and dataset statistics


def turn_taking_histograms(comparison: dict[str, Any]) -> "Figure":
    """Every metric of `turn_taking.compare` as one histogram panel, one outline per source."""
    metrics = comparison["metrics"]
    cols = 5
    rows = max(1, -(-len(metrics) // cols))
    fig = new_figure(3.2 * cols, 2.8 * rows)
    fig.suptitle("turn-taking: " + " vs ".join(comparison["sources"]))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (metric, m) in zip(axes, metrics.items()):
        ax.set_title(metric.replace("_", " "), fontsize=9)
        if not any(s["n"] for s in m["by_source"].values()):
            _empty(ax, "no events")
            continue
        for i, (label, s) in enumerate(m["by_source"].items()):
            ax.stairs(s["counts"], m["edges"], color=f"C{i}", lw=1.5, label=f"{label} (n={s['n']})")
        ax.legend(fontsize=6)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    return fig


def gap_histogram(edges: list[float], counts: list[int], title: str = "") -> "Figure":
    """Gaps between turns on a numeric axis: overlaps (negative) left of zero."""
    fig = new_figure(7, 4)
    ax = fig.subplots()
    ax.set_title(title or "gaps between turns")
    if not len(counts) or not sum(counts):
        _empty(ax, "no turn changes")
        return fig
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel("seconds from one turn's end to the next turn's start (negative: overlap)")
    ax.set_ylabel("turn changes")
    return fig


# ---------------------------------------------------------------- dataset timeline


def _piece_labels(stream: dict[str, Any]) -> list[str]:
    """A stream's piece labels, each byte-fallback piece with the character its run forms ("𠮷 <0xF0>")."""
    return [f"{char} {label}" if char else label for label, char in zip(stream["text_labels"], stream["text_chars"])]


def timeline(data: dict[str, Any]) -> "Figure":
    """A window of `timeline.timeline_data`: per speaker the 8 codebooks as colours with the text pieces
    above them, then the training view with its delays (16 audio rows, the main speaker's text on top)."""
    times = np.asarray(data["times"], dtype=float)
    step = 1 / data["frame_rate"]
    extent = (times[0], times[-1] + step)
    panels = [(f"speaker {s}", np.asarray(v["codes"]), _piece_labels(v)) for s, v in data["speakers"].items()]
    delayed = np.asarray(data["delayed"]["rows"])
    text_main = _piece_labels(data["speakers"][data["main"]])
    panels.append((f"training view (main {data['main']}, acoustic codebooks delayed)", delayed[1:], text_main))
    fig = new_figure(max(8.0, 0.25 * len(times)), 2.2 * len(panels) + 0.6)
    fig.suptitle(f"{data['dialogue_id']}: frames {data['frames'][0]}-{data['frames'][-1]}")
    for ax, (name, codes, labels) in zip(fig.subplots(len(panels), 1, sharex=True), panels):
        # Ids outside the codebook (initial token, zero token) are blank.
        shown = np.ma.masked_outside(codes, 0, 2047)
        ax.imshow(
            shown,
            aspect="auto",
            cmap="tab20",
            vmin=0,
            vmax=2047,
            interpolation="nearest",
            extent=(*extent, codes.shape[0] - 0.5, -0.5),
        )
        ax.set_yticks(range(codes.shape[0]), [f"cb{i % 8}" for i in range(codes.shape[0])], fontsize=6)
        ax.set_title(name, fontsize=9, loc="left", pad=30)  # above the text pieces
        for t, label in zip(times, labels):
            if label not in ("PAD", "EPAD"):
                ax.text(t + step / 2, -0.7, label, rotation=60, fontsize=7, ha="left", va="bottom")
    fig.axes[-1].set_xlabel("seconds")
    return fig
