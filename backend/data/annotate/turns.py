"""Alignment mode's input: `<name>.txt` next to the audio, the words of each speaker without timings.

UTF-8 text, one turn per line, each starting with the speaker and a colon:

    A: hello, customer service, how can I help you?
    B: hi, I'd like to book a table
    # a comment line; blank lines are ignored too

`A` is the left channel, `B` the right one. A speaker's turns are aligned in the order they appear
against that speaker's channel alone, so the order of A's lines relative to B's does not matter, and
overlapping speech needs no special notation. Words are split on white space and written to the
transcript as they are spelled here.
"""

from pathlib import Path

from backend.core.errors import InputError
from backend.core.spec import SPEAKERS

MAX_BYTES = 10_000_000  # a transcript of many hours is far smaller; anything bigger is not a transcript


def read_turns(path: str | Path) -> dict[str, list[str]]:
    """The words of each speaker, in order: {"A": [...], "B": [...]}."""
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
    words: dict[str, list[str]] = {s: [] for s in SPEAKERS}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        speaker, colon, said = line.partition(":")
        speaker = speaker.strip().upper()
        if not colon or speaker not in words:
            raise InputError(path, f"line {number}: a turn starts with 'A:' or 'B:', found {line[:40]!r}")
        words[speaker].extend(said.split())
    if not any(words.values()):
        raise InputError(path, "no words: expected lines such as 'A: hello there'")
    return words


def format_turns(turns: list[tuple[str, str]]) -> str:
    """(speaker, text) turns as the file's text (the inverse of read_turns, line by line)."""
    return "".join(f"{speaker}: {said}\n" for speaker, said in turns)
