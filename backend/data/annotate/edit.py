"""Curation of a word transcript: edits with undo, atomic saves that keep the original beside the edit,
the exclude flag and the channel swap. Plain functions for the Data tab (and scripts).

Words are addressed by their index in the editor's list, which is kept sorted by (start, speaker);
every edit re-sorts and returns the index of the word it produced, so a UI can keep it selected.
Saving writes the format the file was read in (J-Moshi's list, or Kyutai's alignments object) and,
the first time, copies the file as it was to `<name>.original.json`, which later saves never touch.
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.errors import InputError, StudioError
from backend.core.spec import SPEAKERS
from backend.data.annotate.original import keep_original
from backend.data.annotate.run import AnnotatedWord, transcript_json
from backend.data.transcripts import load_transcript, word_problem

EXCLUDE_SUFFIX = ".exclude"  # `<name>.exclude` beside the audio: leave this dialogue out of the dataset
MAX_UNDO = 200


class EditError(StudioError):
    """An edit that cannot be made (bad index, times or text); the transcript is unchanged."""


@dataclass
class TranscriptEditor:
    path: Path
    format: Literal["jmoshi", "kyutai"]
    words: list[AnnotatedWord]
    _undo: list[list[AnnotatedWord]] = field(default_factory=list, repr=False)
    _on_disk: list[AnnotatedWord] | None = field(default=None, repr=False)  # the words as last read or saved

    def __post_init__(self) -> None:
        self._on_disk = list(self.words)

    @classmethod
    def open(cls, path: str | Path) -> "TranscriptEditor":
        """Read a transcript of either format; confidences (format A's field, format B's parallel list) are
        kept, 1.0 where the file has none."""
        path = Path(path)
        if _holds_no_words(path):  # annotating a recording without speech writes one: words can be added
            return cls(path, "jmoshi", [])
        t = load_transcript(path)
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
        if t.format == "jmoshi":
            conf = [e.get("confidence", 1.0) for e in raw]
        else:
            conf = raw.get("confidence") if isinstance(raw.get("confidence"), list) else []
            conf = conf if len(conf) == len(t.words) else [1.0] * len(t.words)
        words = [AnnotatedWord(w.speaker, w.word, w.start, w.end, _confidence(c)) for w, c in zip(t.words, conf)]
        editor = cls(path, t.format, words)
        editor._sort()
        editor._on_disk = list(editor.words)
        return editor

    # ------------------------------------------------------------------ edits
    def _sort(self) -> None:
        self.words.sort(key=lambda w: (w.start, w.speaker, w.end))

    def _commit(self, new_words: list[AnnotatedWord], focus: AnnotatedWord | None) -> int | None:
        self._undo.append(self.words)
        del self._undo[:-MAX_UNDO]
        self.words = new_words
        self._sort()
        return next(i for i, w in enumerate(self.words) if w is focus) if focus is not None else None

    def _index(self, i: int) -> AnnotatedWord:
        if not isinstance(i, int) or not 0 <= i < len(self.words):
            raise EditError(f"no word {i!r} (the transcript has {len(self.words)})")
        return self.words[i]

    def set_text(self, i: int, text: str) -> int:
        new = dataclasses.replace(self._index(i), word=_text(text), confidence=1.0)
        return self._replace(i, [new], new)

    def set_times(self, i: int, start: float, end: float) -> int:
        start, end = _times(start, end)
        new = dataclasses.replace(self._index(i), start=start, end=end, confidence=1.0)
        return self._replace(i, [new], new)

    def delete(self, i: int) -> None:
        self._index(i)
        self._replace(i, [], None)

    def insert(self, speaker: str, text: str, start: float, end: float) -> int:
        if speaker not in SPEAKERS:
            raise EditError(f"speaker must be A or B, not {speaker!r}")
        start, end = _times(start, end)
        new = AnnotatedWord(speaker, _text(text), start, end, 1.0)
        return self._commit([*self.words, new], new)  # type: ignore[return-value]

    def split(self, i: int, at: float, first: str, second: str) -> int:
        """Word i becomes `first` (start..at) and `second` (at..end); returns the index of the first."""
        w = self._index(i)
        if not w.start < at < w.end:
            raise EditError(f"split point {at} s is not inside {w.word!r} ({w.start}..{w.end} s)")
        a = dataclasses.replace(w, word=_text(first), end=float(at), confidence=1.0)
        b = dataclasses.replace(w, word=_text(second), start=float(at), confidence=1.0)
        return self._replace(i, [a, b], a)

    def merge(self, i: int, j: int, text: str | None = None) -> int:
        """Words i and j (one speaker) become one spanning both; its text is `text`, or theirs joined by a space."""
        a, b = sorted((self._index(i), self._index(j)), key=lambda w: w.start)
        if i == j or a.speaker != b.speaker:
            raise EditError("merge needs two different words of the same speaker")
        new = AnnotatedWord(
            a.speaker,
            _text(text if text is not None else f"{a.word} {b.word}"),
            min(a.start, b.start),
            max(a.end, b.end),
            1.0,
        )
        rest = [w for w in self.words if w is not a and w is not b]
        return self._commit([*rest, new], new)  # type: ignore[return-value]

    def swap_speakers(self) -> None:
        """A's words become B's and the other way round (see swap_channels for the audio)."""
        flip = {"A": "B", "B": "A"}
        self._commit([dataclasses.replace(w, speaker=flip[w.speaker]) for w in self.words], None)

    def _replace(self, i: int, new: list[AnnotatedWord], focus: AnnotatedWord | None) -> int:
        return self._commit(self.words[:i] + new + self.words[i + 1 :], focus)  # type: ignore[return-value]

    def undo(self) -> bool:
        """Take back the last edit; False when there is none."""
        if not self._undo:
            return False
        self.words = self._undo.pop()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def unsaved(self) -> bool:
        """The words differ from the file's (Undo back to them counts as saved)."""
        return self.words != self._on_disk

    # ------------------------------------------------------------------ saving
    def save(self) -> Path:
        """Write the words atomically; the first save keeps the file as it was in `<name>.original.json`. The
        file is checked by the importer's rules before it replaces the old one: a save never writes a transcript
        that would fail validation (nor one without words, which no stage could use)."""
        if not self.words:
            raise EditError(
                f"{self.path.name}: not saved, no words are left; insert one, or tick Exclude to "
                "leave the dialogue out of the dataset"
            )
        text = self.to_json()
        keep_original(self.path)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            try:
                load_transcript(tmp)
            except InputError as e:
                raise EditError(f"{self.path.name}: not saved, {e.problem}") from None
        self._on_disk = list(self.words)
        return self.path

    def to_json(self) -> str:
        return json.dumps(transcript_json(self.words, self.format), indent=1) + "\n"


def _holds_no_words(path: Path) -> bool:
    """An empty word list in either format (other problems are load_transcript's to report)."""
    try:
        if path.stat().st_size > 64:
            return False
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return raw == [] or raw == {"alignments": []}


def _text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise EditError("a word needs some text")
    problem = word_problem(text)
    if problem:
        raise EditError(problem)
    return text.strip()


def _times(start: float, end: float) -> tuple[float, float]:
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        raise EditError(f"times must be numbers of seconds, not {start!r} and {end!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
        raise EditError(f"times must satisfy 0 <= start <= end, got {start} and {end}")
    return round(start, 3), round(end, 3)


def _confidence(value: object) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return min(1.0, max(0.0, float(value))) if ok else 1.0  # type: ignore[arg-type]


# ---------------------------------------------------------------------- dialogue-level flags


def exclude_path(audio: Path) -> Path:
    return audio.with_suffix(EXCLUDE_SUFFIX)


def set_excluded(audio: str | Path, excluded: bool, reason: str = "") -> None:
    """Mark (or unmark) a dialogue as left out of the dataset: `<name>.exclude` beside its audio."""
    marker = exclude_path(Path(audio))
    if excluded:
        write_text_atomic(marker, reason.strip()[:500] + "\n")
    else:
        marker.unlink(missing_ok=True)


def is_excluded(audio: str | Path) -> bool:
    return exclude_path(Path(audio)).exists()


def swap_channels(audio: str | Path, transcript: str | Path) -> None:
    """Swap left and right in the audio file (same format and sample type) and A and B in its transcript.

    Both new files are written under temporary names first and renamed only when both are complete (an
    error leaves both files as they were); the transcript's original is kept as by a save.
    """
    audio, transcript = Path(audio), Path(transcript)
    try:
        info = sf.info(str(audio))
        data, sr = sf.read(str(audio), always_2d=True, dtype="int32" if "PCM" in info.subtype else "float32")
    except (sf.LibsndfileError, RuntimeError) as e:
        raise InputError(audio, f"not a readable audio file ({e})") from None
    if data.shape[1] != 2:
        raise InputError(audio, f"has {data.shape[1]} channel(s); only a stereo file can be swapped")
    editor = TranscriptEditor.open(transcript)
    editor.swap_speakers()
    keep_original(transcript)
    with atomic_path(audio) as tmp_audio, atomic_path(transcript) as tmp_text:
        sf.write(str(tmp_audio), np.ascontiguousarray(data[:, ::-1]), sr, subtype=info.subtype, format=info.format)
        tmp_text.write_text(editor.to_json(), encoding="utf-8")
