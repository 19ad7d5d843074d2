"""HTML for the alignment preview: per-speaker waveform lanes, word tiers, overlapping speech.

The data comes from `backend.data.preview.alignment_data`. Everything is positioned in percent of one
track whose width sets the scale, so the widget's zoom only has to change that width. Behaviour
(click a word to play exactly its span, playhead, zoom) lives in assets/studio/alignment.js, styles
in assets/studio/studio.css.
"""

from html import escape
from typing import Any

from backend.core.paths import ASSETS
from backend.core.spec import SPEAKERS

ALIGNMENT_JS: str = (ASSETS / "studio" / "alignment.js").read_text()

PX_PER_SECOND = 100  # base scale; long files scroll horizontally
MIN_WIDTH = 640  # px: short clips still fill a reasonable width
MAX_TIER_ROWS = 3  # overlapping words of one speaker stack on at most this many rows
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300)  # seconds between axis labels
MIN_TICK_PX = 70
LOW_CONFIDENCE = 0.5  # words the annotator was less sure of stand out for checking


def _pct(t: float, span: float) -> str:
    return f"{100 * min(max(t, 0.0), span) / span:.4f}"


def _box(start: float, end: float, span: float) -> str:
    """Inline style placing [start, end] seconds on the track."""
    left = min(max(start, 0.0), span)
    return f"left:{_pct(left, span)}%;width:{_pct(max(end, left) - left, span)}%"


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _axis(span: float, width: int) -> str:
    step = next((s for s in TICK_STEPS if s * width / span >= MIN_TICK_PX), TICK_STEPS[-1])
    ticks = "".join(
        f'<span class="ms-tick" style="left:{_pct(t, span)}%">{_clock(t)}</span>' for t in range(0, int(span) + 1, step)
    )
    return f'<div class="ms-axis">{ticks}</div>'


def _wave(pairs: list[list[float]], duration: float, span: float) -> str:
    """A filled polygon: the max edge left to right, then the min edge back (1 viewBox unit per bin)."""
    if not pairs:
        return '<svg class="ms-wave" aria-hidden="true"></svg>'
    y = [(round(100 - 100 * min(max(hi, -1.0), 1.0)), round(100 - 100 * min(max(lo, -1.0), 1.0))) for lo, hi in pairs]
    top = " ".join(f"{i},{a}" for i, (a, _) in enumerate(y))
    bottom = " ".join(f"{i},{b}" for i, (_, b) in reversed(list(enumerate(y))))
    return (
        f'<svg class="ms-wave" viewBox="0 0 {max(len(y) - 1, 1)} 200" preserveAspectRatio="none" '
        f'style="width:{_pct(duration, span)}%" aria-hidden="true"><polygon points="{top} {bottom}"/></svg>'
    )


def _tier(words: list[dict[str, Any]], span: float) -> str:
    """Word boxes; a word that overlaps an earlier one of the same speaker goes on a lower row."""
    row_ends = [float("-inf")] * MAX_TIER_ROWS
    boxes, used = [], 1
    for w in sorted(words, key=lambda w: (w["start"], w["end"])):
        start, end = float(w["start"]), float(w["end"])
        row = next((r for r, e in enumerate(row_ends) if e <= start), MAX_TIER_ROWS - 1)
        row_ends[row] = max(row_ends[row], end)
        used = max(used, row + 1)
        # Curation previews carry each word's editor index and confidence: selectable, doubtful ones marked.
        extra = f' data-i="{int(w["i"])}"' if "i" in w else ""
        low = " ms-low" if float(w.get("confidence", 1.0)) < LOW_CONFIDENCE else ""
        boxes.append(
            f'<span class="word ms-r{row}{low}" data-start="{start:.3f}" data-end="{end:.3f}"{extra} '
            f'style="{_box(start, end, span)}" title="{escape(str(w["word"]))}">{escape(str(w["word"]))}</span>'
        )
    return f'<div class="ms-tier" style="--ms-rows:{used}">{"".join(boxes)}</div>'


def render_alignment(data: dict[str, Any], audio_url: str) -> str:
    duration = max(float(data["duration"]), 0.0)
    # Words may end after the audio (SPEC): the track spans whatever is later.
    span = max([duration, 0.001] + [float(w["end"]) for w in data["words"]] + [float(e) for _, e in data["overlaps"]])
    width = max(round(span * PX_PER_SECOND), MIN_WIDTH)
    overlaps = "".join(f'<div class="overlap" style="{_box(s, e, span)}"></div>' for s, e in data["overlaps"])
    lanes = "".join(
        f'<div class="ms-lane ms-spk-{s}" data-speaker="{s}"><div class="ms-lane-label"><b>{s}</b></div>'
        f"{_wave(data['envelope'].get(s, []), duration, span)}"
        f"{_tier([w for w in data['words'] if w['speaker'] == s], span)}</div>"
        for s in SPEAKERS
    )
    return (
        f'<div class="ms-align" data-span="{span:.3f}" data-width="{width}">'
        f'<div class="ms-head"><span class="ms-title">{escape(str(data["name"]))}</span>'
        f'<span class="ms-legend"><i class="ms-key ms-spk-A"></i>A <i class="ms-key ms-spk-B"></i>B '
        f'<i class="ms-key ms-key-ov"></i>both talking · {len(data["words"])} words · {duration:.1f} s</span>'
        f'<label class="ms-zoom-label">zoom <input class="ms-zoom" type="range" min="0.25" max="4" step="0.25" '
        f'value="1"></label></div>'
        f'<audio class="ms-audio" controls preload="auto" src="{escape(audio_url)}"></audio>'
        f'<div class="ms-hint">Click a word to play it; click the waveform to move the playhead.</div>'
        f'<div class="ms-scroll"><div class="ms-track" style="width:{width}px">{_axis(span, width)}'
        f'<div class="ms-lanes"><div class="ms-overlaps">{overlaps}</div>{lanes}</div>'
        f'<div class="ms-playhead" hidden></div></div></div></div>'
    )
