"""One probe through the chat engine of /api/chat, 80 ms frame by frame as a client sends it (simulated real time:
each step sees the user's audio up to its own frame, never later), and Moshi's side as Full-Duplex-Bench takes it.

Timing follows FD-Bench's own Moshi client (model_inference/moshi/inference.py): Moshi's k-th output frame is laid
at (k + 1) frames, after one frame of silence (its SKIP_FRAMES), and the output is cut to the input's length.
Words come from Moshi's own text stream on the same grid: a word starts at the frame of its first piece and ends
where the next word starts, at most TEXT_TAIL_S after its last piece (the text leads the voice by a little).
FD-Bench times words with an ASR on output.wav instead, so its figures move with that ASR."""

import math
from dataclasses import dataclass

import numpy as np

from backend.core.spec import FRAME_RATE, FRAME_SIZE
from backend.evaluate.metrics import Word
from backend.inference.chat_config import ChatConfig
from backend.inference.chat_engine import ChatEngine

SKIP_FRAMES = 1
TEXT_TAIL_S = 0.24


@dataclass
class Streamed:
    pcm: np.ndarray  # Moshi's voice, 24 kHz, as long as the input
    words: list[Word]
    compute_s: float


def words_from_pieces(pieces: list[tuple[int, str]]) -> list[Word]:
    """(output frame, text piece) in order -> words: a piece with a leading space starts a new word."""
    spans: list[list] = []  # [text, first frame, last frame]
    for frame, piece in pieces:
        if piece.startswith(" ") or not spans:
            spans.append([piece.strip(), frame, frame])
        else:
            spans[-1][0] += piece
            spans[-1][2] = frame
    spans = [s for s in spans if s[0]]
    words = []
    for i, (text, first, last) in enumerate(spans):
        start = (first + SKIP_FRAMES) / FRAME_RATE
        end = (last + SKIP_FRAMES + 1) / FRAME_RATE + TEXT_TAIL_S
        if i + 1 < len(spans):
            end = min(end, (spans[i + 1][1] + SKIP_FRAMES) / FRAME_RATE)
        words.append(Word(text, round(start, 3), round(end, 3)))
    return words


def stream(engine: ChatEngine, cfg: ChatConfig, user: np.ndarray) -> Streamed:
    """Moshi's side of a conversation whose user says `user` (float32, 24 kHz mono)."""
    n_frames = max(1, math.ceil(len(user) / FRAME_SIZE))
    padded = np.zeros(n_frames * FRAME_SIZE, dtype=np.float32)
    padded[: len(user)] = user
    out = np.zeros_like(padded)
    pieces: list[tuple[int, str]] = []
    engine.start(cfg)
    k, compute_ms = 0, 0.0  # k: Moshi's next output frame (the first step returns none)
    for i in range(n_frames):
        frame = engine.step(padded[i * FRAME_SIZE : (i + 1) * FRAME_SIZE])
        compute_ms += frame.compute_ms
        if frame.pcm is None:
            continue
        at = (k + SKIP_FRAMES) * FRAME_SIZE
        if at < len(out):
            out[at : at + FRAME_SIZE] = frame.pcm[: len(out) - at]
        if frame.text:
            pieces.append((k, frame.text))
        k += 1
    return Streamed(out[: len(user)], words_from_pieces(pieces), compute_ms / 1000)
