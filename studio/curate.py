"""The Data tab's Curate block: annotate recordings, then fix their transcripts where they are drawn.

Handlers are plain functions of (workspace, values) returning plain data; those that edit are methods of a
Curator, which holds the editing state server-side, one TranscriptEditor per transcript. The studio's context
owns its Curator (one per studio, so every browser session of a workspace sees the same unsaved edits, and a
second studio or a test has its own); the browser only sends edit events
({"op": ..., "i": ..., ...} as JSON, from the preview widget or the form's buttons), which are bounded
and checked before they reach the editor. Every handler returns (message, preview HTML).
"""

import json
import math
import reprlib
from html import escape
from pathlib import Path
from typing import Any, Callable

from backend.core import config
from backend.core.confine import inside_workspace
from backend.core.errors import StudioError
from backend.core.paths import ASSETS
from backend.core.progress import Progress
from backend.core.spec import SPEAKERS
from backend.core.workspace import Workspace
from backend.data.annotate.edit import TranscriptEditor, is_excluded, set_excluded, swap_channels
from backend.data.annotate.run import AnnotateConfig, annotate_folder
from backend.data.audio_io import probe, scan_audio
from backend.data.files import DialogueFiles, is_recording, scan_dialogues
from backend.data.preview import waveform, word_layers
from backend.dataset.selection import left_out

from .alignment_view import render_alignment
from .files import file_url

ENGINES = list(config.choices(AnnotateConfig, "engine"))
MAX_EVENT_CHARS = 2000  # one edit event: an op, indices, times and two words at most
OPS = ("text", "times", "delete", "insert", "split", "merge")
BAR_BUTTONS = [
    ("text", "Set text"),
    ("times", "Set times"),
    ("delete", "Delete"),
    ("insert", "Insert"),
    ("split", "Split at"),
    ("merge", "Merge with next"),
]  # the edit bar's buttons (curate.js sends them)
BAR_LABELS = {
    "text": "text",
    "start": "start (s)",
    "end": "end (s)",
    "at": "split at (s)",
    "spk": "insert as speaker",
}  # the edit bar's inputs (curate.js reads them by class)

CURATE_JS: str = (ASSETS / "studio" / "curate.js").read_text()


def _dialogue(ws: Workspace, name: Any) -> DialogueFiles:
    """A dialogue of raw/ by name: the only way a client's string reaches a file."""
    d = next((d for d in scan_dialogues(ws.raw).dialogues if d.name == name), None)
    if d is None or d.audio is None:
        raise StudioError(f"{name!r}: no such recording in the workspace")
    return d


def dialogue_labels(ws: Workspace) -> list[tuple[str, str]]:
    """(label, name) of every dialogue: the list says which need annotation, which Build leaves out and which are
    chat recordings."""
    out = left_out(ws)
    labels = []
    for d in scan_dialogues(ws.raw).dialogues:
        tags = (
            ([out[d.name]] if d.name in out else [])
            + (["needs annotation"] if d.transcript is None else [])
            + (["chat recording"] if is_recording(d.name) else [])
        )
        labels.append((f"{d.name} ({', '.join(tags)})" if tags else d.name, d.name))
    return labels


def excluded(ws: Workspace, name: Any) -> bool:
    """The picked dialogue's exclude marker (False for no pick)."""
    try:
        return is_excluded(_dialogue(ws, name).audio)  # type: ignore[arg-type]
    except StudioError:
        return False


def _whisper_model(ws: Workspace, value: Any) -> str:
    """A local model folder must lie in the workspace (a hub id passes as a name in it, as in Fine-tune)."""
    raw = str(value or "").strip()[:500]
    if not raw:
        return ""
    path = inside_workspace(ws.root, raw, "whisper_model")
    return str(path) if path.exists() else raw


def parse_event(raw: Any) -> dict[str, Any]:
    """An edit event from the browser: a small JSON object with a known op; anything else is refused."""
    if not isinstance(raw, str) or len(raw) > MAX_EVENT_CHARS:
        raise StudioError(f"an edit event is a JSON object of at most {MAX_EVENT_CHARS} characters")
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: a few hundred nested brackets
        raise StudioError("an edit event must be a flat JSON object") from None
    if not isinstance(event, dict) or event.get("op") not in OPS:
        raise StudioError(f"an edit event needs an op among {', '.join(OPS)}")
    return event


def _index(event: dict[str, Any], key: str = "i") -> int:
    i = event.get(key)
    if not isinstance(i, int) or isinstance(i, bool):
        raise StudioError(f"{key} must be a word index, not {i!r}")
    return i


def _seconds(event: dict[str, Any], key: str, duration: float) -> float:
    t = event.get(key)
    number = isinstance(t, float) or (isinstance(t, int) and not isinstance(t, bool) and t.bit_length() <= 64)
    if not number or not math.isfinite(t) or not 0 <= t <= duration:  # bit_length: float(400 digits) overflows
        raise StudioError(
            f"{key} must be a time in seconds within the audio (0..{duration:.2f}), not {reprlib.repr(t)}"
        )
    return float(t)


def _text(event: dict[str, Any], key: str) -> str:
    t = event.get(key)
    if not isinstance(t, str):
        raise StudioError(f"{key} must be text")
    return t  # the editor checks emptiness and length


def apply_event(editor: TranscriptEditor, event: dict[str, Any], duration: float) -> tuple[str, int | None]:
    """One checked edit on the editor: (what was done, the index of the word it produced)."""
    op = event["op"]
    if op == "text":
        i = editor.set_text(_index(event), _text(event, "text"))
    elif op == "times":
        i = editor.set_times(_index(event), _seconds(event, "start", duration), _seconds(event, "end", duration))
    elif op == "delete":
        editor.delete(_index(event))
        return "deleted a word", None
    elif op == "insert":
        i = editor.insert(
            str(event.get("speaker"))[:1],
            _text(event, "text"),
            _seconds(event, "start", duration),
            _seconds(event, "end", duration),
        )
    elif op == "split":
        i = editor.split(_index(event), _seconds(event, "at", duration), _text(event, "first"), _text(event, "second"))
    else:
        i = editor.merge(_index(event), _index(event, "j"))
    w = editor.words[i]
    return f"{op}: word {i} is now {w.word!r} ({w.start:.2f}..{w.end:.2f} s)", i


def edit_view(d: DialogueFiles, editor: TranscriptEditor, selected: int | None = None) -> str:
    """The edit bar over the alignment preview of the editor's words (unsaved edits shown), each word with its
    index and confidence; `selected` (the word an edit produced) starts selected with its values in the bar."""
    scan = scan_audio(d.audio)  # type: ignore[arg-type]  # the editor's words, not the file's (they may be none)
    data = {"name": d.name, "duration": scan.duration, "envelope": waveform(scan)}
    words = [
        {"i": i, "speaker": w.speaker, "word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence}
        for i, w in enumerate(editor.words)
    ]
    preview = render_alignment({**data, **word_layers(words)}, file_url(d.audio))  # type: ignore[arg-type]
    w = editor.words[selected] if selected is not None and 0 <= selected < len(editor.words) else None
    if w is not None:
        preview = preview.replace(f'data-i="{selected}" ', f'data-i="{selected}" data-selected="1" ', 1)

    def field(cls: str, v: Any, kind: str = "text") -> str:  # a visible label around each input
        return (
            f'<label class="cur-field">{BAR_LABELS[cls]}<input class="cur-{cls}" type="{kind}" step="0.001" '
            f'min="0" value="{escape(str(v), quote=True)}"></label>'
        )

    bar = (
        f'<div class="cur-bar"><b class="cur-label">{"word " + str(selected) if w else "click a word"}</b>'
        + field("text", w.word if w else "")
        + field("start", f"{w.start:.3f}" if w else "", "number")
        + field("end", f"{w.end:.3f}" if w else "", "number")
        + field("at", f"{(w.start + w.end) / 2:.3f}" if w else "", "number")
        + f'<label class="cur-field">{BAR_LABELS["spk"]}<select class="cur-spk">'
        + "".join(f"<option{' selected' if w and w.speaker == s else ''}>{s}</option>" for s in SPEAKERS)
        + "</select></label>"
        + "".join(f'<button type="button" data-op="{op}">{label}</button>' for op, label in BAR_BUTTONS)
        + "</div>"
    )
    sel = f' data-sel="{selected}"' if w is not None else ""
    return f'<div class="ms-curate"{sel}>{bar}{preview}</div>'


def _guarded(fn: Callable[..., tuple[str, str]]) -> Callable[..., tuple[str, str]]:
    """A refused action leaves the preview as it was and says why."""

    def run(self: "Curator", ws: Workspace, name: Any, *values: Any) -> tuple[str, str]:
        try:
            return fn(self, ws, name, *values)
        except StudioError as e:
            return f"✘ {e}", self.safe_preview(ws, name)

    return run


class Curator:
    """The Curate handlers that read or change transcripts, over the editors they keep open."""

    def __init__(self) -> None:
        # transcript path -> (the file's mtime when read or saved here, its editor with unsaved edits); a file
        # changed by anything else (a new upload, re-annotation) is read afresh.
        self._editors: dict[Path, tuple[int, TranscriptEditor]] = {}

    def _editor(self, d: DialogueFiles) -> TranscriptEditor:
        if d.transcript is None:
            raise StudioError(f"{d.name}: no transcript yet; press Annotate first")
        key = d.transcript.resolve()
        mtime = key.stat().st_mtime_ns
        if key not in self._editors or self._editors[key][0] != mtime:
            self._editors[key] = (mtime, TranscriptEditor.open(key))
        return self._editors[key][1]

    def _saved(self, editor: TranscriptEditor) -> None:
        editor.save()
        key = editor.path.resolve()
        self._editors[key] = (key.stat().st_mtime_ns, editor)

    def preview(self, d: DialogueFiles, selected: int | None = None) -> str:
        """The edit bar over the alignment preview of the editor's words (unsaved edits shown), each word with its
        index and confidence; `selected` (the word an edit produced) starts selected with its values in the bar."""
        return edit_view(d, self._editor(d), selected)

    def _status(self, d: DialogueFiles) -> str:
        editor = self._editors.get(d.transcript.resolve(), (0, None))[1] if d.transcript else None
        flags = ["excluded: Build leaves it out" if is_excluded(d.audio) else "Build includes it"]  # type: ignore[arg-type]
        if editor is not None and editor.unsaved:
            flags.append("unsaved edits (Undo takes them back; Save writes them)")
        return f"**{d.name}**: " + ", ".join(flags)

    def _view(self, ws: Workspace, name: Any, message: str = "", selected: int | None = None) -> tuple[str, str]:
        d = _dialogue(ws, name)
        if d.transcript is None:
            return message or f"**{d.name}**: needs annotation (press Annotate)", ""
        return (message + "\n\n" if message else "") + self._status(d), self.preview(d, selected)

    def safe_preview(self, ws: Workspace, name: Any) -> str:
        try:
            return self._view(ws, name)[1]
        except StudioError:
            return ""

    @_guarded
    def on_curate_pick(self, ws: Workspace, name: Any) -> tuple[str, str]:
        return self._view(ws, name)

    def on_annotate(
        self, ws: Workspace, name: Any, engine: Any, whisper_model: Any, progress: Progress | None = None
    ) -> tuple[str, str]:
        """Annotate the recordings of raw/ as `annotate` plans them (done ones are skipped, your transcripts
        kept), then show `name`; the message says each dialogue's mode and why, and names turns that could not be
        aligned."""
        if engine not in ENGINES:
            return f"✘ engine must be one of {', '.join(ENGINES)}", ""
        try:
            cfg = AnnotateConfig(input=ws.raw, engine=engine, whisper_model=_whisper_model(ws, whisper_model))
            summary = annotate_folder(cfg, progress)
        except StudioError as e:
            return f"✘ {e}", self.safe_preview(ws, name)
        lines = [
            f"✔ annotated {', '.join(summary.written) or 'nothing new'}"
            + (f" · already done: {len(summary.skipped)}" if summary.skipped else "")
            + (
                f" · real-time factor {summary.compute_seconds / summary.audio_seconds:.2f} (CPU time)"
                if summary.audio_seconds
                else ""
            )
        ]
        lines += [f"{'✘' if problem else '·'} {line}" for problem, line in summary.report()]
        try:
            return self._view(ws, name, "\n\n".join(lines))
        except StudioError:
            return "\n\n".join(lines), ""

    @_guarded
    def on_edit(self, ws: Workspace, name: Any, raw_event: Any) -> tuple[str, str]:
        d = _dialogue(ws, name)
        editor, event = self._editor(d), parse_event(raw_event)
        done, selected = apply_event(editor, event, probe(d.audio).duration)  # type: ignore[arg-type]
        return self._view(ws, name, f"✔ {done}", selected)

    @_guarded
    def on_undo(self, ws: Workspace, name: Any) -> tuple[str, str]:
        undone = self._editor(_dialogue(ws, name)).undo()
        return self._view(ws, name, "✔ undone" if undone else "nothing to undo")

    @_guarded
    def on_save(self, ws: Workspace, name: Any) -> tuple[str, str]:
        d = _dialogue(ws, name)
        self._saved(self._editor(d))
        return self._view(
            ws,
            name,
            f"✔ saved {d.transcript.name}; the original stays in "  # type: ignore[union-attr]
            f"{d.transcript.stem}.original.json",
        )  # type: ignore[union-attr]

    @_guarded
    def on_swap(self, ws: Workspace, name: Any) -> tuple[str, str]:
        """Swap the channels on disk (audio and transcript together); unsaved edits are saved first."""
        d = _dialogue(ws, name)
        editor = self._editor(d)
        if editor.can_undo:
            self._saved(editor)
        swap_channels(d.audio, d.transcript)  # type: ignore[arg-type]  # a new mtime: the editor reads it afresh
        return self._view(ws, name, "✔ swapped the channels: A is now B and B is A (audio and transcript)")

    @_guarded
    def on_exclude(self, ws: Workspace, name: Any, excluded: Any) -> tuple[str, str]:
        d = _dialogue(ws, name)
        set_excluded(d.audio, bool(excluded))  # type: ignore[arg-type]
        return self._view(ws, name, "✔ left out of the dataset" if excluded else "✔ Build includes it again")
