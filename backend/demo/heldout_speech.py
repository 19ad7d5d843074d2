"""Two-speaker stereo dialogues read by piper's neural "joe" voice one word at a time, so every word's
true span is known to the sample: the held-out material for measuring annotation (bench/bench_annotate.py)
and for its tests. Nobody here wrote this speech, and the sentences are drawn from speech_corpus's
grammar with a seed of their own.

Each speaker has a voice of their own: joe at two speeds (`JOE`), or joe against an espeak-ng formant voice
(`MIXED`: two very different voices, as the bench's second set); turns alternate and sometimes overlap the end of the
previous one; each voice leaks into the other channel `leak_db` below its own level, delayed by a few
milliseconds, as a headset or a telephone hybrid hears the room. piper's sampling noise is off, so a seed gives
the same audio on every run (with it, per-channel WER moved by several points between runs of one seed).
"""

import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from backend.core.spec import SAMPLE_RATE, SPEAKERS
from backend.data.transcripts import Word
from backend.demo.dialogues import TRIM_THRESHOLD
from backend.demo.speech_corpus import CorpusVoice, sentences, synthesize

JOE = {
    "A": CorpusVoice("piper", "joe", speed=1.0, noise=False),
    "B": CorpusVoice("piper", "joe", speed=1.12, noise=False),
}
MIXED = {"A": JOE["A"], "B": CorpusVoice("espeak", "en-us+f3", pitch=62, speed=1.05)}
LEAK_DELAY = 0.004  # seconds


@dataclass
class HeldOutDialogue:
    name: str
    audio: np.ndarray  # float32 [2, N] at 24 kHz, left = A
    words: list[Word]  # the true spans
    turns: list[tuple[str, str]]  # (speaker, text), in order

    @property
    def duration(self) -> float:
        return self.audio.shape[1] / SAMPLE_RATE


@lru_cache(maxsize=4096)
def _word_clip(word: str, voice: CorpusVoice) -> np.ndarray:
    """One word, synthesized alone and trimmed so it starts and ends on speech."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        audio = synthesize(word, voice, Path(tmp))
    loud = np.flatnonzero(np.abs(audio) > TRIM_THRESHOLD)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio


def render_dialogue(
    name: str,
    turns: list[tuple[str, str]],
    rng: random.Random,
    leak_db: float = -24.0,
    overlap_share: float = 0.3,
    voices: dict[str, CorpusVoice] = JOE,
) -> HeldOutDialogue:
    """Lay the turns' words on their channels; a share of the turns starts up to 0.6 s before the previous
    turn ends."""
    cursor, words, clips = int(0.5 * SAMPLE_RATE), [], []
    for speaker, text in turns:
        if words:
            gap = -rng.uniform(0.2, 0.6) if rng.random() < overlap_share else rng.uniform(0.2, 0.6)
            cursor = max(int(0.5 * SAMPLE_RATE), cursor + int(gap * SAMPLE_RATE))
            # A speaker's own words never overlap: start after their previous word at least.
            own_end = max((int(w.end * SAMPLE_RATE) for w in words if w.speaker == speaker), default=0)
            cursor = max(cursor, own_end + int(0.15 * SAMPLE_RATE))
        for token in text.split():
            clip = _word_clip(token, voices[speaker])
            words.append(Word(speaker, token, cursor / SAMPLE_RATE, (cursor + len(clip)) / SAMPLE_RATE))
            clips.append(clip)
            pause = rng.uniform(0.12, 0.2) if token[-1] in ",.!?" else rng.uniform(0.02, 0.06)
            cursor += len(clip) + int(pause * SAMPLE_RATE)
    total = max(int(round(w.end * SAMPLE_RATE)) for w in words) + int(0.5 * SAMPLE_RATE)
    clean = np.zeros((2, total), dtype=np.float32)
    for w, clip in zip(words, clips):
        start = int(round(w.start * SAMPLE_RATE))
        clean[SPEAKERS.index(w.speaker), start : start + len(clip)] += clip
    delay = int(LEAK_DELAY * SAMPLE_RATE)
    leaked = np.zeros_like(clean)
    leaked[:, delay:] = clean[::-1, : total - delay] * 10 ** (leak_db / 20)
    return HeldOutDialogue(name, clean + leaked, words, turns)


def heldout_dialogues(
    count: int, seed: int, turns_per_dialogue: int = 4, leak_db: float = -24.0, voices: dict[str, CorpusVoice] = JOE
) -> list[HeldOutDialogue]:
    """`count` dialogues of alternating turns, one grammar sentence per turn (seeded)."""
    rng = random.Random(seed)
    pool = sentences(count * turns_per_dialogue, seed=10_000 + seed)
    out = []
    for i in range(count):
        lines = pool[i * turns_per_dialogue : (i + 1) * turns_per_dialogue]
        turns = [(SPEAKERS[k % 2], line) for k, line in enumerate(lines)]
        out.append(render_dialogue(f"heldout_{i:03d}", turns, rng, leak_db, voices=voices))
    return out
