"""Text streams: one SentencePiece id per 80 ms frame and per speaker, from word timings (SPEC.md).

Two layouts:

- `spread` (J-Moshi's tools/tokenize_text.py): a speaker's words, sorted by start, are joined
  ("w1 w2 ...", or "w1w2..." in no-whitespace mode) and tokenized once. Each word's time span is
  split evenly over its characters (its leading space included) and a piece starts where its
  first character starts. The leading bare "▁" (SentencePiece's dummy prefix) is dropped.
- `packed` (Kyutai's moshi-finetune interleaver): each word is tokenized alone, keeping its own
  "▁", and its pieces go on consecutive frames from the word's start frame. In no-whitespace
  mode a per-word "▁" would be noise (about half the pieces of Japanese text), so the joined
  text is tokenized once as in `spread` and each piece belongs to the word of its first character.

Placement is Kyutai's frame loop: at frame t every unit (a piece in `spread`, a word in
`packed`) whose start frame is <= t joins a queue, and one queued piece is written per frame.
Units join in text order, so the text is never reordered. With `drop_overflow` (packed only,
Kyutai's default) a new word replaces the queue: the unplaced rest of the previous word is
dropped, and so are words of zero duration. Otherwise pieces are kept and shifted later, and a
zero-duration word is kept too (Kyutai drops those even with keep_and_shift: a word said in no
time by the aligner is still a word said).

Where this differs from the reference tools, on purpose (D1-D5; the README's "Deviations" lists them too):
- D1. A start frame is floor(start * 12.5) (SPEC) with a 1e-6 frame tolerance, in both layouts; J-Moshi's
  `start // 0.08` puts exact boundaries such as 0.24 s one frame early (0.24 / 0.08 < 3 in floats), and
  Kyutai's `start * 12.5 < t + 1` (floor without the tolerance) does so for starts such as 2.32 s.
- D2. J-Moshi writes a piece into the next *free* frame, so when words of one speaker overlap in
  time a later word can land in a gap before an earlier word's last pieces (reordered text, and an
  EPAD right after a piece). The queue keeps text order; for sorted, non-overlapping words the
  result is the same.
- D3. Byte fallback. J-Moshi merges a character's byte pieces back into the character and looks that up
  (<unk> = id 0 = EPAD when it is no piece); its cursor counts the first piece's dummy "▁" as a character,
  so it loses the count after the first piece and stops with "Failed to decode the last byte tokens" on
  the first byte-fallback character (every one in no-whitespace mode: Japanese 𠮷, 齬; an ASCII letter
  a small tokenizer lacks). Here a byte-fallback character keeps its byte-piece ids (as Kyutai's
  tokenizer encodes it and as Moshi decodes it), on consecutive frames from the character's start frame,
  and the audit lists the characters (`byte_characters`).
- D4. Normalisation. Piece spans come from SentencePiece's own offset mapping, so normalisation that
  changes lengths (NFKC: "…" -> "...", half-width "ｶﾞ" -> "ガ"; collapsed spaces) cannot shift
  characters. J-Moshi counts a piece's normalised length in the original text: from such a character
  on, every later piece of the turn is timed by the wrong characters, and the tool fails its check of
  the remaining characters. The audit lists that text (`renormalized`).
- D5. Pieces that find no frame are counted in the audit (J-Moshi warns, Kyutai is silent).

EPAD: after placement, every frame f-1 that is empty while frame f holds a piece becomes EPAD.
A piece on frame 0 has no frame before it, so it gets no EPAD (as in both reference tools).

Stream length, unless `n_frames` is given: `spread` as J-Moshi, int((latest piece end + 1 s) *
12.5) per speaker (a speaker without pieces: the audio's frames if the duration is known, else 0);
`packed` as Kyutai, ceil(duration * 12.5), where a missing duration is taken as the dialogue's
last word end + 1 s.
"""

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import sentencepiece as spm

from backend.core.errors import ConfigError
from backend.core.spec import EPAD_ID, FRAME_RATE, PAD_ID, SPEAKERS
from backend.data.transcripts import Transcript, Word, check_transcript, check_within_audio

BOUNDARY = "\u2581"  # "▁": SentencePiece's word-boundary mark
TOLERANCE = 1e-6  # frames: absorbs float noise such as 0.24 * 12.5 = 2.9999999


def frame_of(seconds: float) -> int:
    """The frame a time falls in: floor(seconds * 12.5)."""
    return math.floor(seconds * FRAME_RATE + TOLERANCE)


def frames_for_duration(seconds: float) -> int:
    """Frames covering a duration: ceil(seconds * 12.5) (= ceil(samples / 1920) at 24 kHz)."""
    return max(0, math.ceil(seconds * FRAME_RATE - TOLERANCE))


@dataclass(frozen=True)
class LayoutOptions:
    layout: Literal["spread", "packed"] = "spread"
    pad_id: int = PAD_ID
    epad_id: int = EPAD_ID
    whitespace: bool = True  # a space before every word but the first (off: Japanese, Chinese)
    drop_overflow: bool = False  # packed only: Kyutai's default of dropping what the next word cuts off


@dataclass
class SpeakerAudit:
    """Where every word and piece of one speaker went. pieces = placed + the three loss counts."""

    speaker: str
    layout: str
    frames: int
    words: int
    words_complete: int = 0  # all pieces placed
    words_partial: int = 0
    words_lost: int = 0  # had pieces, none placed
    words_without_pieces: int = 0  # empty, or its characters tokenized into the previous word's piece
    pieces: int = 0  # ids to place (the dropped dummy-prefix "▁" is not text and not counted)
    placed: int = 0
    overflow_dropped: int = 0  # packed + drop_overflow: cut off by the next word
    zero_duration_dropped: int = 0  # packed + drop_overflow: words with end <= start, as Kyutai drops them
    past_end: int = 0  # no frame left before the stream's end
    after_audio: int = 0  # placed on frames past the audio's end: cut when merged with the audio
    max_drift: int = 0  # frames: placed frame - intended frame, largest over placed pieces
    unknown_pieces: int = 0  # <unk> ids: Kyutai's <unk> is id 0 = EPAD, so these read as EPAD
    bare_boundary_share: float = 0.0  # share of pieces that are a bare "▁"
    pad_share: float = 0.0  # share of frames that are PAD
    byte_characters: list[str] = field(default_factory=list)  # D3: placed as their UTF-8 byte pieces
    renormalized: list[str] = field(default_factory=list)  # D4: text whose length the tokenizer's normalisation changed

    @property
    def not_placed(self) -> int:
        return self.overflow_dropped + self.zero_duration_dropped + self.past_end

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"not_placed": self.not_placed}

    def summary(self) -> str:
        losses = [
            f"{n} {what}"
            for n, what in (
                (self.overflow_dropped, "dropped by overflow"),
                (self.zero_duration_dropped, "dropped, zero duration"),
                (self.past_end, "past the end"),
                (self.after_audio, "after the audio"),
                (self.unknown_pieces, "unknown"),
            )
            if n
        ]
        notes = ([f"{' '.join(self.byte_characters)} as UTF-8 byte pieces"] if self.byte_characters else []) + (
            [f"{' '.join(self.renormalized)} normalised by the tokenizer, timed by their own characters"]
            if self.renormalized
            else []
        )
        return (
            f"{self.speaker}: {self.placed} of {self.pieces} text pieces placed"
            + (f" ({', '.join(losses)})" if losses else "")
            + "".join(f"; {n}" for n in notes)
            + f", at most {self.max_drift / FRAME_RATE:.2f} s late, {100 * self.bare_boundary_share:.0f}% "
            f"are a lone word-start mark, {100 * self.pad_share:.0f}% of {self.frames / FRAME_RATE:.1f} s "
            "without text"
        )


@dataclass
class DialogueAudit:
    name: str
    transcript: str
    format: str
    options: dict[str, Any]
    duration: float | None  # audio seconds, when known
    speakers: dict[str, SpeakerAudit]
    warnings: list[str] = field(default_factory=list)
    tokenizer: dict[str, Any] = field(default_factory=dict)  # the tokenizer's record (backend.models.text_tokenizer)

    @property
    def pieces(self) -> int:
        return sum(a.pieces for a in self.speakers.values())

    @property
    def placed(self) -> int:
        return sum(a.placed for a in self.speakers.values())

    @property
    def not_placed(self) -> int:
        return sum(a.not_placed for a in self.speakers.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transcript": self.transcript,
            "format": self.format,
            "options": self.options,
            "duration": self.duration,
            "pieces": self.pieces,
            "placed": self.placed,
            "not_placed": self.not_placed,
            "speakers": {s: a.to_dict() for s, a in self.speakers.items()},
            "warnings": list(self.warnings),
            "tokenizer": dict(self.tokenizer),
        }

    def summary(self) -> str:
        text = f"{self.name} [{self.options['layout']}]: " + "; ".join(a.summary() for a in self.speakers.values())
        return text + "".join(f"; ⚠ {w}" for w in self.warnings)


@dataclass
class _Unit:
    """Pieces that join the placement queue together, with the word they belong to."""

    frame: int  # intended frame of the first piece
    ids: list[int]
    word: int  # index into the speaker's sorted words
    end: float  # seconds: when the unit's text ends (J-Moshi sizes the stream from it)
    byte_characters: tuple[str, ...] = ()  # characters among its pieces that fell back to bytes (D3)
    renormalized: tuple[str, ...] = ()  # text among its pieces whose length normalisation changed (D4)


@dataclass(frozen=True)
class _Piece:
    id: int
    start: int  # offsets into the tokenized text: the piece's characters are text[start:end]
    end: int
    byte_character: str = ""  # the last byte piece of a byte-fallback character: that character (D3)
    renormalized: str = ""  # text[start:end] when the piece's normalised text has another length (D4)


def encode_pieces(text: str, sp: spm.SentencePieceProcessor) -> list[_Piece]:
    """`text`'s pieces with their character spans, the leading bare dummy-prefix "▁" dropped (no character of
    the text). A byte-fallback piece other than a character's last byte has an empty span (b, b): it belongs to
    character b, so all bytes of a character share its start."""
    enc = sp.encode(text, out_type="offset_mapping")
    out = []
    for n, (pid, piece, (b, e)) in enumerate(zip(enc["ids"], enc["pieces"], enc["offsets"])):
        if n == 0 and piece == BOUNDARY:
            continue
        if sp.is_byte(pid):
            out.append(_Piece(pid, b, e, byte_character=text[b:e]))
            continue
        # The dummy prefix of the first piece and a "▁" standing for a space: one character each, or none.
        length = len(piece) - (n == 0 and piece.startswith(BOUNDARY) and not text[:1].isspace())
        out.append(_Piece(pid, b, e, renormalized=text[b:e] if length != e - b and not sp.is_unknown(pid) else ""))
    return out


def check_options(cfg: LayoutOptions, sp: spm.SentencePieceProcessor) -> None:
    if cfg.layout not in ("spread", "packed"):
        raise ConfigError(f"layout: {cfg.layout!r} is not one of spread, packed")
    if cfg.pad_id == cfg.epad_id:
        raise ConfigError(f"pad_id and epad_id must differ (both {cfg.pad_id})")
    size = sp.get_piece_size()
    for name in ("pad_id", "epad_id"):
        if not 0 <= getattr(cfg, name) < size:
            raise ConfigError(f"{name} {getattr(cfg, name)} is outside the tokenizer's ids 0..{size - 1}")


def _joint_pieces(words: list[Word], sp: spm.SentencePieceProcessor, whitespace: bool) -> list[_Unit]:
    """Tokenize the joined words once; one unit per piece, timed by its first character."""
    text, starts, ends, owner = [], [], [], []
    for j, w in enumerate(words):
        chunk = w.word.strip()
        if not chunk:
            continue
        if text and whitespace:
            chunk = " " + chunk
        step = (w.end - w.start) / len(chunk)  # the word's span, split evenly over its characters
        for i in range(len(chunk)):
            starts.append(w.start + i * step)
            ends.append(w.start + (i + 1) * step)
            owner.append(j)
        text.append(chunk)
    if not owner:
        return []
    units = []
    for p in encode_pieces("".join(text), sp):
        c = min(p.start, len(owner) - 1)
        end = ends[min(p.end, len(owner)) - 1] if p.end > p.start else ends[c]
        units.append(
            _Unit(frame_of(starts[c]), [p.id], owner[c], end, _notes(p.byte_character), _notes(p.renormalized))
        )
    return units


def _notes(text: str) -> tuple[str, ...]:
    return (text,) if text else ()


def _packed_units(words: list[Word], sp: spm.SentencePieceProcessor, whitespace: bool) -> list[_Unit]:
    if not whitespace:
        by_word: dict[int, _Unit] = {}
        for u in _joint_pieces(words, sp, whitespace=False):
            w = by_word.setdefault(u.word, _Unit(frame_of(words[u.word].start), [], u.word, words[u.word].end))
            w.ids.extend(u.ids)
            w.byte_characters += u.byte_characters
            w.renormalized += u.renormalized
        return [by_word[j] for j in sorted(by_word)]
    # Kyutai: each word alone, so each keeps its leading "▁"; an empty word is an empty unit (it
    # still cuts off the previous word under drop_overflow, as in Kyutai's loop).
    units = []
    for j, w in enumerate(words):
        pieces = sp.encode(w.word.strip(), out_type="offset_mapping")  # all ids, its "▁" included
        notes = encode_pieces(w.word.strip(), sp)
        units.append(
            _Unit(
                frame_of(w.start),
                list(pieces["ids"]),
                j,
                w.end,
                tuple(p.byte_character for p in notes if p.byte_character),
                tuple(p.renormalized for p in notes if p.renormalized),
            )
        )
    return units


@dataclass
class _Placement:
    frames: list[list[int]]  # per unit: frames of its placed pieces (always a prefix of its ids)
    overflow: list[int]  # per unit: pieces dropped by the next unit
    past_end: list[int]  # per unit: pieces with no frame left


def _place(units: list[_Unit], n_frames: int, drop_overflow: bool) -> _Placement:
    """Kyutai's frame loop: units join a queue at their frame, in list order; one piece per frame."""
    out = _Placement([[] for _ in units], [0] * len(units), [0] * len(units))
    queue: deque[int] = deque()  # unit index of each waiting piece
    i = 0
    for t in range(n_frames):
        while i < len(units) and units[i].frame <= t:
            if drop_overflow:
                for u in queue:
                    out.overflow[u] += 1
                queue.clear()
            queue.extend([i] * len(units[i].ids))
            i += 1
        if queue:
            out.frames[queue.popleft()].append(t)
    for u in queue:
        out.past_end[u] += 1
    for u in range(i, len(units)):
        out.past_end[u] += len(units[u].ids)
    return out


def _stream_length(cfg: LayoutOptions, units: list[_Unit], words: list[Word], duration: float | None) -> int:
    if cfg.layout == "spread":
        if units:
            return frame_of(max(u.end for u in units) + 1.0)  # J-Moshi: int((end + 1 s) * 12.5)
        return frames_for_duration(duration) if duration is not None else 0
    if duration is None:
        duration = max((w.end for w in words), default=-1.0) + 1.0
    return frames_for_duration(duration)


def _units(words: list[Word], sp: spm.SentencePieceProcessor, cfg: LayoutOptions) -> list[_Unit]:
    """The pieces of one speaker's words (sorted by start), grouped as the layout places them."""
    if cfg.layout == "spread":
        return _joint_pieces(words, sp, cfg.whitespace)
    return _packed_units(words, sp, cfg.whitespace)


def speaker_pieces(words: list[Word], sp: spm.SentencePieceProcessor, cfg: LayoutOptions) -> list[int]:
    """The ids one speaker's words become under the layout, in order, before any is placed or lost."""
    return [pid for u in _units(sorted(words, key=lambda w: w.start), sp, cfg) for pid in u.ids]


def layout_speaker(
    words: list[Word],
    sp: spm.SentencePieceProcessor,
    cfg: LayoutOptions,
    n_frames: int | None = None,
    duration: float | None = None,
) -> tuple[np.ndarray, SpeakerAudit]:
    """One speaker's text stream (int64 [T]) and where each of their words and pieces went.

    `duration` (audio seconds) sizes `packed` streams and lets the audit count pieces placed past
    the audio; `n_frames` overrides the stream length of either layout.
    """
    check_options(cfg, sp)
    speakers = {w.speaker for w in words}
    if len(speakers) > 1:
        raise ValueError(f"layout_speaker takes the words of one speaker, got {sorted(speakers)}")
    words = sorted(words, key=lambda w: w.start)  # stable: ties keep file order, as both tools do
    units = _units(words, sp, cfg)
    zero = [False] * len(words)
    if cfg.layout == "packed" and cfg.drop_overflow:  # Kyutai removes words without duration before placing anything
        zero = [w.end <= w.start for w in words]
    kept = [u for u in units if not zero[u.word]]
    T = n_frames if n_frames is not None else _stream_length(cfg, kept, words, duration)
    placement = _place(kept, T, cfg.drop_overflow and cfg.layout == "packed")

    stream = np.full(T, cfg.pad_id, dtype=np.int64)
    occupied = np.zeros(T, dtype=bool)
    audit = SpeakerAudit(words[0].speaker if words else "-", cfg.layout, T, len(words))
    word_total, word_placed = [0] * len(words), [0] * len(words)
    for u in units:
        word_total[u.word] += len(u.ids)
        if zero[u.word]:
            audit.zero_duration_dropped += len(u.ids)
    for u, frames, over, late in zip(kept, placement.frames, placement.overflow, placement.past_end):
        stream[frames] = u.ids[: len(frames)]
        occupied[frames] = True
        word_placed[u.word] += len(frames)
        audit.overflow_dropped += over
        audit.past_end += late
        for k, f in enumerate(frames):
            audit.max_drift = max(audit.max_drift, f - (u.frame + k))
    # EPAD on the empty frame just before each piece that follows an empty frame (none before frame 0).
    epad = np.zeros(T, dtype=bool)
    epad[:-1] = occupied[1:] & ~occupied[:-1]
    stream[epad] = cfg.epad_id

    all_ids = [pid for u in units for pid in u.ids]
    audit.byte_characters = [c for u in units for c in u.byte_characters]
    audit.renormalized = [t for u in units for t in u.renormalized]
    audit.pieces = len(all_ids)
    audit.placed = int(occupied.sum())
    audit.unknown_pieces = sum(sp.is_unknown(pid) for pid in all_ids)
    audit.bare_boundary_share = (
        sum(sp.id_to_piece(pid) == BOUNDARY for pid in all_ids) / len(all_ids) if all_ids else 0.0
    )
    audit.pad_share = float((~occupied & ~epad).sum()) / T if T else 0.0
    if duration is not None:
        audit.after_audio = int(occupied[frames_for_duration(duration) :].sum())
    for total, placed in zip(word_total, word_placed):
        if total == 0:
            audit.words_without_pieces += 1
        elif placed == total:
            audit.words_complete += 1
        elif placed:
            audit.words_partial += 1
        else:
            audit.words_lost += 1
    return stream, audit


def tokenize_dialogue(
    t: Transcript, sp: spm.SentencePieceProcessor, cfg: LayoutOptions, duration: float | None = None
) -> tuple[dict[str, np.ndarray], DialogueAudit]:
    """Text streams for speakers A and B of a transcript, with the audit of both.

    Without the audio's duration, `packed` sizes both streams from the transcript's last word end + 1 s.
    With it, words far past the audio are refused (InputError) before any stream is sized from them.
    """
    if duration is not None:
        check_within_audio(t, duration)
    n_frames = None  # both speakers of a packed dialogue get the same length, as with the audio's
    if cfg.layout == "packed" and duration is None and t.words:
        n_frames = frames_for_duration(max(w.end for w in t.words) + 1.0)
    streams, audits = {}, {}
    for s in SPEAKERS:
        streams[s], audits[s] = layout_speaker(t.speaker_words(s), sp, cfg, n_frames=n_frames, duration=duration)
        audits[s].speaker = s
    warnings = [i.message for i in check_transcript(t, duration)]
    return streams, DialogueAudit(t.path.stem, str(t.path), t.format, asdict(cfg), duration, audits, warnings)
