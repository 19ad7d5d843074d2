"""HTML for the token timeline: what the dataset holds and what the model sees, frame by frame.

The data comes from `backend.dataset.timeline.timeline_data`: one column per 80 ms frame; per speaker the
text stream (decoded pieces) and 8 codebooks; then the 17 rows of the training view, where column
f holds what sits at frame f once the delays are applied (so a +1 row shows its tokens one column
right of where the rows above have them). Behaviour (column selection, audio follow) lives in
assets/studio/timeline.js, styles in assets/studio/studio.css.
"""

from html import escape
from typing import Any

from backend.core.paths import ASSETS
from backend.core.spec import CARD, TEXT_CARD

TIMELINE_JS: str = (ASSETS / "studio" / "timeline.js").read_text()

TIME_LABEL_EVERY = 5  # frames between time labels (0.4 s at 12.5 Hz)
BARE = "\u2581"  # SentencePiece word boundary; alone it is a piece of its own


def _hue(token: int) -> int:
    """Equal tokens get equal colours; neighbouring ids get distant hues (golden angle)."""
    return round(token * 137.508) % 360


def _text_cell(col: int, label: str, char: str = "") -> str:
    """A text frame; `char`: the character a byte-fallback piece's run forms, shown above the byte itself."""
    if label == "PAD":
        return f'<td data-c="{col}" class="ms-pad">pad</td>'
    if label == "EPAD":
        return f'<td data-c="{col}" class="ms-epad">EPAD</td>'
    text = escape(label)
    if char:
        return (
            f'<td data-c="{col}" class="ms-piece ms-byte" title="{escape(char)}: {text}">'
            f'<span class="ms-char">{escape(char)}</span><small>{text}</small></td>'
        )
    kind = "ms-piece ms-bare" if label == BARE else "ms-piece"
    return f'<td data-c="{col}" class="{kind}" title="{text}">{text}</td>'


def _code_cell(col: int, token: int, title: str = "") -> str:
    tip = f' title="{title}"' if title else ""
    return f'<td data-c="{col}" class="ms-code" style="--h:{_hue(token)}"{tip}>{token}</td>'


def _init_cell(col: int) -> str:
    return f'<td data-c="{col}" class="ms-init" title="initial token">init</td>'


def _row(name: str, cells: list[str], cls: str, badge: str = "") -> str:
    return f'<tr class="{cls}"><th class="ms-rowname">{escape(name)}{badge}</th>{"".join(cells)}</tr>'


def _section(title: str, ncols: int) -> str:
    return f'<tr class="ms-sec"><th colspan="{ncols + 1}"><span>{escape(title)}</span></th></tr>'


def _delayed_rows(data: dict[str, Any]) -> list[str]:
    """Training view rows; cells say which frame their token comes from."""
    delayed, frames = data["delayed"], data["frames"]
    main = data["speakers"][data["main"]]
    rows = []
    for i, (name, delay, values) in enumerate(zip(delayed["row_names"], delayed["delays"], delayed["rows"])):
        cells = []
        for col, token in enumerate(values):
            src = col - delay  # column of the undelayed token, when it is inside the window
            if token == (TEXT_CARD if i == 0 else CARD):
                cells.append(_init_cell(col))
            elif i == 0:
                known = 0 <= src < len(frames) and main["text_ids"][src] == token
                cells.append(
                    _text_cell(col, main["text_labels"][src], main["text_chars"][src])
                    if known
                    else _code_cell(col, token)
                )
            else:
                cells.append(_code_cell(col, token, f"from frame {frames[col] - delay}" if delay else ""))
        badge = f' <span class="ms-delay">+{delay}</span>' if delay else ""
        kind = ("ms-text" if i == 0 else "ms-codes") + " ms-train"
        rows.append(_row(name, cells, f"{kind} ms-shift" if delay else kind, badge))
    return rows


def render_timeline(data: dict[str, Any], audio_url: str | None = None) -> str:
    """`audio_url`, when given, is the window's own audio: its time 0 is the first column."""
    frames, times = data["frames"], data["times"]
    n = len(frames)
    head = "".join(
        f'<th data-c="{c}" data-frame="{f}" data-time="{t:.2f}">'
        f"{f'<b>{t:.2f}s</b>' if f % TIME_LABEL_EVERY == 0 else ''}<small>{f}</small></th>"
        for c, (f, t) in enumerate(zip(frames, times))
    )
    body = []
    for s, stream in data["speakers"].items():
        role = "Moshi" if s == data["main"] else "user"
        body.append(_section(f"Speaker {s} ({role} in the training view): dataset row, undelayed", n))
        body.append(
            _row(
                f"text {s}",
                [
                    _text_cell(c, lab, ch)
                    for c, (lab, ch) in enumerate(zip(stream["text_labels"], stream["text_chars"]))
                ],
                "ms-text",
            )
        )
        body += [
            _row(f"{s} cb{k}", [_code_cell(c, tok) for c, tok in enumerate(codes)], "ms-codes")
            for k, codes in enumerate(stream["codes"])
        ]
    body.append(
        _section(
            f"Training view (main {data['main']}): model input with delays applied, "
            f"steps {data['delayed']['start_step']}..{data['delayed']['start_step'] + n - 1}",
            n,
        )
    )
    body += _delayed_rows(data)
    audio = f'<audio class="ms-audio" controls preload="auto" src="{escape(audio_url)}"></audio>' if audio_url else ""
    return (
        f'<div class="ms-tl" data-frame-rate="{data["frame_rate"]}">'
        f'<div class="ms-head"><span class="ms-title">{escape(str(data["dialogue_id"]))}</span>'
        f'<span class="ms-legend"><span class="ms-chip ms-piece">piece</span>'
        f'<span class="ms-chip ms-piece ms-bare">{BARE}</span> word boundary alone '
        f'<span class="ms-chip ms-piece ms-byte"><span class="ms-char">𠮷</span><small>&lt;0xF0&gt;</small></span> '
        f"a character's UTF-8 byte pieces "
        f'<span class="ms-chip ms-pad">pad</span><span class="ms-chip ms-epad">EPAD</span>'
        f'<span class="ms-chip ms-init">init</span> initial token ({TEXT_CARD} / {CARD}) '
        f'<span class="ms-delay">+1</span> row delayed one frame · codes coloured by value</span></div>'
        f'{audio}<div class="ms-tl-info">Click a column to inspect a frame.</div>'
        f'<div class="ms-tl-scroll"><table class="ms-grid"><thead><tr><th class="ms-rowname">frame</th>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table></div></div>"
    )
