"""A chat session as a dialogue of the Data stage: a stereo WAV (left Moshi = speaker A, right the
user = speaker B) and a J-Moshi word transcript of Moshi's text stream, so it drops into the Data tab.

Both channels are laid out on the model's frame clock: frame k of the recording is the k-th 80 ms
frame the model processed, paired with what Moshi said in reply to it (silence while the model warms
up). Input the server dropped (a client ahead of real time, a model behind it) is not recorded: the
recording is the conversation as the model heard it. Its room is set when the session starts, for
the session's limit, so a recording can never outgrow it.
"""

import json
import time
from pathlib import Path

import numpy as np

from backend.core.atomic import write_text_atomic
from backend.core.spec import FRAME_RATE, FRAME_SIZE
from backend.data.audio_io import write_stereo_wav
from backend.data.files import RECORDING_PREFIX


class SessionRecording:
    def __init__(self, max_frames: int):
        # np.zeros maps zero pages lazily: memory is taken as frames are written, not for the whole limit.
        self.audio = np.zeros((2, max_frames * FRAME_SIZE), np.float32)  # rows: Moshi, user
        self.frames = 0
        self.pieces: list[tuple[int, str]] = []  # (frame, text piece) of Moshi's text stream

    @property
    def max_frames(self) -> int:
        return self.audio.shape[1] // FRAME_SIZE

    def add(self, user: np.ndarray, moshi: np.ndarray | None, text: str = "") -> None:
        if self.frames >= self.max_frames:
            raise ValueError(f"the recording is full ({self.max_frames} frames: the session limit)")
        if text:
            self.pieces.append((self.frames, text))
        span = slice(self.frames * FRAME_SIZE, (self.frames + 1) * FRAME_SIZE)
        if moshi is not None:
            self.audio[0, span] = moshi
        self.audio[1, span] = user
        self.frames += 1

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
        name = name or _free_name(folder, RECORDING_PREFIX + time.strftime("%Y%m%d-%H%M%S"))
        write_text_atomic(folder / f"{name}.json", json.dumps(self.words(), indent=1) + "\n")
        return write_stereo_wav(folder / f"{name}.wav", self.audio[:, : self.frames * FRAME_SIZE])


def _free_name(folder: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`... when a recording of that second already exists."""
    name, n = stem, 1
    while (folder / f"{name}.wav").exists() or (folder / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name
