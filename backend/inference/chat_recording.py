"""A chat session as a dialogue of the Data stage: a stereo WAV (left Moshi = speaker A, right the
user = speaker B) and a J-Moshi word transcript of Moshi's text stream, so it drops into the Data tab.

Both channels are laid out on the session's frame clock: frame k of the recording is the k-th
80 ms frame the server received, paired with what Moshi said in reply to it (silence while the
model warms up or when the frame was skipped to keep up with real time).
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.core.atomic import write_text_atomic
from backend.data.audio_io import write_stereo_wav
from backend.core.spec import FRAME_RATE, FRAME_SIZE


@dataclass
class SessionRecording:
    moshi: list[np.ndarray] = field(default_factory=list)
    user: list[np.ndarray] = field(default_factory=list)
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (frame, text piece) of Moshi's text stream

    @property
    def frames(self) -> int:
        return len(self.user)

    @property
    def seconds(self) -> float:
        return self.frames / FRAME_RATE

    def add(self, user: np.ndarray, moshi: np.ndarray | None, text: str = "") -> None:
        if text:
            self.pieces.append((self.frames, text))
        self.user.append(np.asarray(user, dtype=np.float32))
        self.moshi.append(np.zeros(FRAME_SIZE, np.float32) if moshi is None else np.asarray(moshi, np.float32))

    def words(self) -> list[dict[str, object]]:
        """Moshi's words with frame-resolution times: a piece starting with a space starts a word."""
        words: list[dict[str, object]] = []
        for frame, piece in self.pieces:
            start = frame / FRAME_RATE
            if piece.startswith(" ") or not words:
                words.append({"speaker": "A", "word": piece.strip(), "start": start, "end": start + 1 / FRAME_RATE})
            else:
                words[-1]["word"] = f"{words[-1]['word']}{piece}"
                words[-1]["end"] = start + 1 / FRAME_RATE
        return [w for w in words if w["word"]]

    def save(self, folder: Path, name: str | None = None) -> Path:
        """Write `<name>.wav` and `<name>.json` into `folder` (each atomically); returns the WAV path."""
        folder.mkdir(parents=True, exist_ok=True)
        name = name or _free_name(folder, time.strftime("chat-%Y%m%d-%H%M%S"))
        audio = np.stack([np.concatenate(self.moshi), np.concatenate(self.user)])
        write_text_atomic(folder / f"{name}.json", json.dumps(self.words(), indent=1) + "\n")
        return write_stereo_wav(folder / f"{name}.wav", audio)


def _free_name(folder: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`... when a recording of that second already exists."""
    name, n = stem, 1
    while (folder / f"{name}.wav").exists() or (folder / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name
