"""Word transcripts: load both input formats of SPEC.md, refuse broken files, warn about odd ones.

Format A (J-Moshi): a flat list of {"speaker": "A"|"B", "word": str, "start": s, "end": s}.
Format B (Kyutai moshi-finetune): {"alignments": [[word, [start, end], speaker_label], ...]}.

Kyutai's interleaver keeps only the words labelled "SPEAKER_MAIN" and its README puts that
speaker (the one Moshi learns to be) on the left channel; its annotate.py transcribes the left
channel only and labels every word SPEAKER_MAIN. So by default SPEAKER_MAIN -> A (left); the one
other label a file may use (SPEAKER_OTHER, SPEAKER_USER, ...) -> B. Anything else needs an
explicit speaker map.
"""

import json
import math
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backend.core.errors import ConfigError, InputError, Issue
from backend.core.spec import SPEAKERS

KYUTAI_MAIN = "SPEAKER_MAIN"
KYUTAI_LABELS = {"A": KYUTAI_MAIN, "B": "SPEAKER_OTHER"}  # the labels the studio writes in format B
MAX_SECONDS = 24 * 3600  # no dialogue time is later than this
AUDIO_TOLERANCE = 1.0  # seconds a word may end after the audio (aligners overshoot a little)
# Bounds on what one transcript may hold, so a file within the upload limit cannot make every later read (the
# preview, Curate, tokenization) cost seconds and gigabytes: fast overlapping speech is ~8 words a second.
MAX_WORD_CHARS = 200  # one word's text (the Curate editor's bound too)
MAX_WORDS_PER_SECOND = 20  # words of both speakers per second of audio
MAX_WORDS = 50_000  # per file: 2 hours (the default audio limit) at ~7 words a second
MAX_TRANSCRIPT_BYTES = 16 * 2**20  # the file itself, checked before it is parsed


@dataclass(frozen=True)
class Word:
    speaker: str  # "A" (left channel) or "B" (right channel)
    word: str
    start: float  # seconds
    end: float


@dataclass
class Transcript:
    path: Path
    format: Literal["jmoshi", "kyutai"]
    words: list[Word]

    def speaker_words(self, speaker: str) -> list[Word]:
        return [w for w in self.words if w.speaker == speaker]


def parse_speaker_map(text: str | None) -> dict[str, str] | None:
    """ "SPEAKER_0=A, SPEAKER_1=B" -> {"SPEAKER_0": "A", "SPEAKER_1": "B"}; empty -> None (default map)."""
    if not text or not text.strip():
        return None
    out = {}
    for item in text.replace(",", " ").split():
        label, sep, speaker = item.partition("=")
        if not sep or not label:
            raise ConfigError(f"speaker map: {item!r} is not LABEL=A or LABEL=B")
        out[label] = speaker
    return out


def _check_map(speaker_map: dict[str, str]) -> None:
    bad = {k: v for k, v in speaker_map.items() if v not in SPEAKERS}
    if bad:
        raise ConfigError(f"speaker map: every label must map to A or B, not {bad}")


def _default_map(fmt: str, labels: set[str]) -> dict[str, str]:
    if fmt == "jmoshi":
        return {"A": "A", "B": "B"}
    mapping = {"A": "A", "B": "B", KYUTAI_MAIN: "A"}
    others = labels - set(mapping)
    if len(others) == 1:  # the one non-main label is the other side of the dialogue
        mapping[others.pop()] = "B"
    return mapping


def _time(path: Path, where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(
            path, f"{where}: '{name}' must be a number of seconds, found {type(value).__name__} {reprlib.repr(value)}"
        )
    if isinstance(value, int) and value.bit_length() > 64:  # float() of a 401-digit int raises OverflowError
        raise InputError(path, f"{where}: '{name}' is a {len(str(abs(value)))}-digit number, not a time in seconds")
    if not math.isfinite(value):
        raise InputError(path, f"{where}: '{name}' is {value} (times must be finite numbers of seconds)")
    if value < 0:
        raise InputError(path, f"{where}: '{name}' is negative ({value} s)")
    if value > MAX_SECONDS:  # bounds the text streams even when no audio says how long the dialogue is
        raise InputError(
            path,
            f"{where}: '{name}' is {value:g} s, more than {MAX_SECONDS // 3600} hours: "
            "not a time within a dialogue (are the times in seconds?)",
        )
    return float(value)


def _check_text(path: Path, where: str, what: str, text: str) -> None:
    """A string SentencePiece can take: JSON's \\ud800 escapes give lone surrogates, which are not Unicode text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            path,
            f"{where}: the {what} holds a lone surrogate ({text[e.start : e.end]!r} at character "
            f"{e.start}), which is not valid Unicode text",
        ) from None


def word_problem(word: str) -> str | None:
    """Why a word's text cannot be used (None: it can): the one rule of the importer and the Curate editor."""
    if len(word) > MAX_WORD_CHARS:  # checked first: the word is not quoted whole
        return f"a word of {len(word)} characters ({word[:20]!r}...); a word may have at most {MAX_WORD_CHARS}"
    try:
        word.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"the word {word!r} holds a lone surrogate ({word[e.start : e.end]!r} at character {e.start}), "
            "which is not valid Unicode text"
        )
    return None


def _jmoshi_entry(path: Path, i: int, entry: Any) -> tuple[str, str, Any, Any]:
    where = f"entry {i}"
    if not isinstance(entry, dict):
        raise InputError(
            path, f"{where}: expected an object with speaker, word, start, end; found {type(entry).__name__}"
        )
    for key in ("speaker", "word", "start", "end"):
        if key not in entry:
            raise InputError(path, f"{where}: missing field '{key}'")
    for key in ("speaker", "word"):
        if not isinstance(entry[key], str):
            raise InputError(path, f"{where}: '{key}' must be a string, found {type(entry[key]).__name__}")
    return entry["speaker"], entry["word"], entry["start"], entry["end"]


def _kyutai_entry(path: Path, i: int, entry: Any) -> tuple[str, str, Any, Any]:
    where = f"alignments entry {i}"
    shape = "[word, [start, end], speaker]"
    if not isinstance(entry, list) or len(entry) != 3:
        raise InputError(path, f"{where}: expected {shape}, found {json.dumps(entry)[:80]}")
    word, times, speaker = entry
    if not isinstance(word, str):
        raise InputError(path, f"{where}: the word must be a string, found {type(word).__name__}")
    if not isinstance(times, list) or len(times) != 2:
        raise InputError(path, f"{where}: the times must be [start, end], found {json.dumps(times)[:80]}")
    if not isinstance(speaker, str):
        raise InputError(path, f"{where}: the speaker label must be a string, found {type(speaker).__name__}")
    return speaker, word, times[0], times[1]


def _read_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_TRANSCRIPT_BYTES:
            raise InputError(
                path,
                f"is {size / 2**20:.1f} MiB; a transcript may hold at most "
                f"{MAX_TRANSCRIPT_BYTES // 2**20} MiB ({MAX_WORDS} words)",
            )
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror or e})") from None
    if not data.strip():
        raise InputError(path, "the file is empty (no words)")
    try:
        text = data.decode("utf-8-sig")  # a BOM is tolerated, as J-Moshi's reader does
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except ValueError as e:  # an integer beyond Python's digit limit
        raise InputError(path, f"not usable JSON: a number has too many digits ({str(e).split(';')[0]})") from None
    except RecursionError:
        raise InputError(path, "not a transcript: the JSON is nested too deeply") from None


def load_transcript(path: str | Path, speaker_map: dict[str, str] | None = None) -> Transcript:
    """Read a transcript in either format; speakers come out as "A"/"B".

    `speaker_map` (label -> "A"|"B") replaces the default mapping; labels it does not name are an error.
    """
    path = Path(path)
    if speaker_map is not None:
        _check_map(speaker_map)
    data = _read_json(path)
    if isinstance(data, list):
        fmt, entries, parse = "jmoshi", data, _jmoshi_entry
    elif isinstance(data, dict) and "alignments" in data:
        fmt, entries, parse = "kyutai", data["alignments"], _kyutai_entry
        if not isinstance(entries, list):
            raise InputError(path, f"'alignments' must be a list, found {type(entries).__name__}")
    else:
        found = "an object without 'alignments'" if isinstance(data, dict) else type(data).__name__
        raise InputError(
            path,
            "expected a list of word entries (J-Moshi format) or an object with "
            f"'alignments' (Kyutai format), found {found}",
        )
    if not entries:
        raise InputError(path, "the transcript has no words")
    if len(entries) > MAX_WORDS:
        raise InputError(
            path, f"holds {len(entries)} words; a transcript may hold at most {MAX_WORDS} (split the dialogue)"
        )
    raw = []
    for i, entry in enumerate(entries):
        label, word, start, end = parse(path, i, entry)
        problem = word_problem(word)
        if problem:
            raise InputError(path, f"entry {i}: {problem}")
        where = f"entry {i} ({word!r})"
        _check_text(path, where, "speaker label", label)
        start, end = _time(path, where, "start", start), _time(path, where, "end", end)
        if start > end:
            raise InputError(path, f"{where}: start {start} s is after end {end} s")
        raw.append((label, word, start, end))
    labels = {r[0] for r in raw}
    mapping = speaker_map if speaker_map is not None else _default_map(fmt, labels)
    unknown = sorted(labels - set(mapping))
    if unknown:
        known = ", ".join(sorted(mapping))
        raise InputError(
            path,
            f"unknown speaker label(s) {', '.join(map(repr, unknown))} "
            f"(known: {known}); give a speaker map such as {unknown[0]}=B",
        )
    return Transcript(path, fmt, [Word(mapping[label], word, start, end) for label, word, start, end in raw])


def _overlaps(words: list[Word]) -> tuple[int, Word | None]:
    """Words of one speaker that start before an earlier word of theirs has ended (count, first one)."""
    count, first, latest_end = 0, None, -math.inf
    for w in sorted(words, key=lambda w: w.start):
        if w.start < latest_end:
            count += 1
            first = first or w
        latest_end = max(latest_end, w.end)
    return count, first


def check_within_audio(t: Transcript, audio_seconds: float) -> None:
    """Refuse words that end well after the audio: wrong times (or the wrong audio), and they would size the
    text streams and previews; and more words than the audio's length can hold. Call before anything is
    allocated from the word times."""
    if len(t.words) > MAX_WORDS_PER_SECOND * max(audio_seconds, 1.0):
        raise InputError(
            t.path,
            f"{len(t.words)} words for {audio_seconds:.2f} s of audio: more than "
            f"{MAX_WORDS_PER_SECOND} words a second is not speech",
        )
    far = [w for w in t.words if w.end > audio_seconds + AUDIO_TOLERANCE]
    if far:
        first = min(far, key=lambda w: w.start)
        raise InputError(
            t.path,
            f"{len(far)} word(s) end more than {AUDIO_TOLERANCE:g} s after the audio "
            f"({audio_seconds:.2f} s), the first {first.word!r} at {first.start:g}-{first.end:g} s: "
            "are the times in seconds, and is this the dialogue's audio?",
        )


def check_transcript(t: Transcript, audio_seconds: float | None) -> list[Issue]:
    """Warnings that leave the transcript usable (errors are raised by load_transcript)."""
    issues = []
    if audio_seconds is not None:
        late = [w for w in t.words if w.end > audio_seconds]
        if late:
            latest = max(w.end for w in late)
            issues.append(
                Issue(
                    "warning",
                    f"{len(late)} word(s) end after the audio ({audio_seconds:.2f} s), "
                    f"the latest at {latest:.2f} s; their text is cut when merged",
                )
            )
    for s in SPEAKERS:
        words = t.speaker_words(s)
        if not words:
            issues.append(Issue("warning", f"speaker {s} has no words (an all-PAD text stream)"))
            continue
        count, first = _overlaps(words)
        if count:
            issues.append(
                Issue(
                    "warning",
                    f"{count} word(s) of speaker {s} overlap an earlier word of theirs, "
                    f"first {first.word!r} at {first.start:.2f} s",
                )
            )
    blank = [i for i, w in enumerate(t.words) if not w.word.strip()]
    if blank:
        issues.append(Issue("warning", f"{len(blank)} empty word(s) (entry {blank[0]} first): no text to place"))
    if any(b.start < a.start for a, b in zip(t.words, t.words[1:])):
        issues.append(Issue("warning", "entries are not sorted by start time (fine: they are sorted when tokenized)"))
    return issues
