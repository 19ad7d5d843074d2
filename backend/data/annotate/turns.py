"""Alignment mode's input: `<name>.txt` next to the audio, the words of each speaker without timings.

UTF-8 text, one turn per line, each starting with the speaker and a colon:

    A: hello, customer service, how can I help you?
    B: hi, I'd like to book a table
    # a comment line; blank lines are ignored too

`A` is the left channel, `B` the right one. A speaker's turns are aligned in the order they appear
against that speaker's channel alone, so the order of A's lines relative to B's does not matter, and
overlapping speech needs no special notation. Words are split on white space and written to the
transcript as they are spelled here. Each line is aligned on its own (align.py), so a line whose words
are not what was said fails alone.

Re-alignment takes its turns from an existing transcript instead: a speaker's words in time order, a new
turn wherever a pause of more than `TURN_GAP` separates two of them, each turn with its given times.
"""

from dataclasses import dataclass
from pathlib import Path

from backend.core.errors import InputError
from backend.core.spec import SPEAKERS
from backend.data.transcripts import Word

MAX_BYTES = 10_000_000  # a transcript of many hours is far smaller; anything bigger is not a transcript
TURN_GAP = 0.3  # seconds; SpokenWOZ spreads an utterance's words end to end, utterances are further apart


@dataclass(frozen=True)
class Turn:
    speaker: str
    words: tuple[str, ...]
    line: int  # the line of the turn file; in a transcript, the index of the turn's first word (time order)
    times: tuple[tuple[float, float], ...] | None = None  # each word's given times (re-alignment)

    @property
    def span(self) -> tuple[float, float] | None:
        """The given times of the whole turn (None for a turn file's line)."""
        return None if self.times is None else (self.times[0][0], max(e for _, e in self.times))

    def label(self) -> str:
        """How messages name the turn: speaker, where it is, its first words."""
        where = f"line {self.line}" if self.span is None else f"{self.span[0]:.2f}-{self.span[1]:.2f} s"
        text = " ".join(self.words)
        return f"{self.speaker} {where} {text[:40] + '...' if len(text) > 40 else text!r}"


def read_turns(path: str | Path) -> list[Turn]:
    """The turns of the file, in order (a speaker's turns in the order of their lines)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise InputError(path, f"is larger than {MAX_BYTES // 1_000_000} MB; not a turn transcript")
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read the file ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    turns = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        speaker, colon, said = line.partition(":")
        speaker = speaker.strip().upper()
        if not colon or speaker not in SPEAKERS:
            raise InputError(path, f"line {number}: a turn starts with 'A:' or 'B:', found {line[:40]!r}")
        if said.split():
            turns.append(Turn(speaker, tuple(said.split()), number))
    if not turns:
        raise InputError(path, "no words: expected lines such as 'A: hello there'")
    return turns


def transcript_turns(words: list[Word]) -> list[Turn]:
    """A transcript's words as timed turns: per speaker, in time order, split at pauses over TURN_GAP."""
    ordered = sorted(enumerate(words), key=lambda iw: (iw[1].start, iw[0]))
    turns = []
    for speaker in SPEAKERS:
        group: list[tuple[int, Word]] = []
        for i, w in ((i, w) for i, w in ordered if w.speaker == speaker):
            if group and w.start - max(g.end for _, g in group) > TURN_GAP:
                turns.append(_timed_turn(speaker, group))
                group = []
            group.append((i, w))
        if group:
            turns.append(_timed_turn(speaker, group))
    return turns


def _timed_turn(speaker: str, group: list[tuple[int, Word]]) -> Turn:
    return Turn(speaker, tuple(w.word for _, w in group), group[0][0], tuple((w.start, w.end) for _, w in group))


def format_turns(turns: list[tuple[str, str]]) -> str:
    """(speaker, text) turns as the file's text (the inverse of read_turns, line by line)."""
    return "".join(f"{speaker}: {said}\n" for speaker, said in turns)
