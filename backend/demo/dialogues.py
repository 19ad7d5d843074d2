"""Synthesize the offline demo dialogues (assets/demo/) with espeak-ng, one word at a time.

Each word is synthesized alone, its leading and trailing silence trimmed, and its samples placed
at a chosen offset on its speaker's channel (left = A, right = B). The transcript therefore gives
every word's true span to the sample: start = offset, end = offset + trimmed length. Run by
developers (`python -m backend.demo.dialogues`); the output is committed. The same espeak-ng gives
the same bytes: all choices come from a seeded generator.
"""

import json
import random
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import soundfile as sf
import soxr

from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.config import cli_parser, from_cli, option
from backend.core.errors import StudioError
from backend.core.paths import ASSETS
from backend.core.spec import SAMPLE_RATE
from backend.data.transcripts import KYUTAI_LABELS

DEMO_DIR = ASSETS / "demo"  # where the committed files live
TRIM_THRESHOLD = 0.01  # |sample| above this (-40 dBFS) counts as speech when trimming a word
# espeak-ng spells some backchannels out letter by letter; give it phonemes instead.
PRONUNCIATIONS = {"mhm": "[[m'hm:]]"}
CLAUSE_END = ",.!?、。！？…"  # a word ending in one of these is followed by a longer pause


class SpeakingVoice(Protocol):
    """A demo voice: says one word alone, and varies a little from line to line."""

    def vary(self, rng: random.Random) -> "SpeakingVoice": ...

    def speak(self, word: str, workdir: Path) -> np.ndarray: ...


@dataclass(frozen=True)
class Voice:
    name: str  # espeak-ng voice, with an optional +variant
    pitch: int  # 0..99
    speed: int  # words per minute

    def vary(self, rng: random.Random) -> "Voice":
        return Voice(self.name, self.pitch + rng.randint(-6, 6), self.speed + rng.randint(-12, 12))

    def speak(self, word: str, workdir: Path) -> np.ndarray:
        return synth_word(word, self, workdir)


@dataclass(frozen=True)
class Turn:
    speaker: Literal["A", "B"]
    text: str
    gap: float  # seconds after the previous turn ends; negative = overlap with its end


@dataclass(frozen=True)
class Backchannel:
    """A short word said while the previous turn is going on (it does not take the floor)."""

    speaker: Literal["A", "B"]
    word: str
    at: float  # where it starts, as a fraction of the previous turn's span


@dataclass(frozen=True)
class DemoDialogue:
    name: str
    transcript_format: Literal["jmoshi", "kyutai"]
    voices: dict[str, SpeakingVoice]
    lines: tuple[Turn | Backchannel, ...]


MALE = Voice("en-us", 38, 200)
FEMALE = Voice("en-us+f3", 62, 205)
MALE_UK = Voice("en-gb+m3", 45, 195)
FEMALE_2 = Voice("en-us+f4", 70, 210)

DIALOGUES: tuple[DemoDialogue, ...] = (
    DemoDialogue(
        "demo_cafe",
        "jmoshi",
        {"A": MALE, "B": FEMALE},
        (
            Turn("A", "Hi there, good morning!", 0.0),
            Turn("B", "Morning! What can I get for you?", 0.35),
            Turn("A", "Could I have a large latte, please?", 0.5),
            Backchannel("B", "mhm", 0.55),
            Turn("B", "Sure. Oat milk or regular?", 0.3),
            Turn("A", "Oat milk. Do you have anything sweet?", 0.6),
            Turn("B", "We have muffins and lemon cake.", 0.25),
            Turn("A", "Oh, lemon cake sounds great.", -0.25),
            Turn("B", "That comes to seven fifty.", 0.45),
            Backchannel("A", "okay", 0.7),
            Turn("A", "Here you go, thanks!", 0.4),
        ),
    ),
    DemoDialogue(
        "demo_directions",
        "jmoshi",
        {"A": FEMALE_2, "B": MALE_UK},
        (
            Turn("A", "Excuse me, is the museum far from here?", 0.0),
            Turn("B", "Not really, about ten minutes on foot.", 0.4),
            Turn("A", "Oh good. Which way should I go?", 0.3),
            Turn("B", "Go straight, then turn left at the bank.", 0.55),
            Backchannel("A", "yeah", 0.45),
            Turn("A", "Left at the bank, got it.", -0.2),
            Turn("B", "It is right across from the park.", 0.3),
            Backchannel("A", "mhm", 0.6),
            Turn("A", "Thank you so much!", 0.5),
            Turn("B", "No problem, enjoy!", -0.15),
        ),
    ),
    DemoDialogue(
        "demo_weekend",
        "kyutai",
        {"A": FEMALE, "B": MALE},
        (
            Turn("A", "Hey, any plans for the weekend?", 0.0),
            Turn("B", "Not yet. Maybe a hike if it is sunny.", 0.5),
            Turn("A", "I love hiking. Where would you go?", 0.3),
            Turn("B", "There is a trail by the lake, it is pretty easy.", 0.4),
            Backchannel("A", "mhm", 0.35),
            Backchannel("A", "yeah", 0.8),
            Turn("A", "Could I come along?", -0.3),
            Turn("B", "Of course! Let us meet at nine on Saturday.", 0.35),
            Turn("A", "Perfect, see you then.", 0.6),
        ),
    ),
)


@dataclass(frozen=True)
class PlacedWord:
    speaker: str
    word: str
    offset: int  # first sample, 24 kHz
    length: int  # samples of speech (trimmed)

    @property
    def end(self) -> int:
        return self.offset + self.length


def synth_word(word: str, voice: Voice, workdir: Path) -> np.ndarray:
    """One word from espeak-ng as float32 at 24 kHz, trimmed so it starts and ends on speech."""
    out = workdir / "word.wav"
    spoken = PRONUNCIATIONS.get(word.strip(",.!?").lower(), word)
    cmd = ["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed), "-w", str(out), spoken]
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except FileNotFoundError:
        raise StudioError("espeak-ng is not installed (Debian: apt-get install espeak-ng)") from None
    except subprocess.CalledProcessError as e:
        raise StudioError(f"espeak-ng failed on {word!r}: {e.stderr.decode(errors='replace').strip()}") from None
    samples, rate = sf.read(out, dtype="float32")
    audio = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return trim(audio, f"espeak-ng produced silence for {word!r} with voice {voice.name}")


def trim(audio: np.ndarray, silent: str) -> np.ndarray:
    """The clip from its first to its last sample above TRIM_THRESHOLD; StudioError(`silent`) if none is."""
    loud = np.flatnonzero(np.abs(audio) > TRIM_THRESHOLD)
    if loud.size == 0:
        raise StudioError(silent)
    return audio[loud[0] : loud[-1] + 1]


def render(dialogue: DemoDialogue, rng: random.Random, workdir: Path) -> tuple[np.ndarray, list[PlacedWord]]:
    """Lay the dialogue's words on a [2, N] float32 signal; return it with every word's placement."""
    lead, tail = int(0.4 * SAMPLE_RATE), int(0.5 * SAMPLE_RATE)
    placed: list[PlacedWord] = []
    clips: list[np.ndarray] = []
    turn_start = turn_end = lead
    for line in dialogue.lines:
        # A little variation per line, as one person never says two sentences the same way.
        voice = dialogue.voices[line.speaker].vary(rng)
        if isinstance(line, Backchannel):
            cursor = turn_start + int(line.at * (turn_end - turn_start))
            words = [line.word]
        else:
            cursor = max(lead, turn_end + int(line.gap * SAMPLE_RATE))
            words = line.text.split()
        first = cursor
        for i, word in enumerate(words):
            clip = voice.speak(word, workdir)
            placed.append(PlacedWord(line.speaker, word, cursor, len(clip)))
            clips.append(clip)
            pause = rng.uniform(0.12, 0.22) if word[-1] in CLAUSE_END else rng.uniform(0.02, 0.08)
            cursor += len(clip) + (int(pause * SAMPLE_RATE) if i < len(words) - 1 else 0)
        if isinstance(line, Turn):
            turn_start, turn_end = first, cursor
    signal = np.zeros((2, max(w.end for w in placed) + tail), dtype=np.float32)
    for word, clip in zip(placed, clips):
        channel = signal[0 if word.speaker == "A" else 1, word.offset : word.end]
        if np.any(channel):
            raise StudioError(
                f"{dialogue.name}: {word.speaker}'s word {word.word!r} overlaps their previous word; "
                "fix the script's gaps"
            )
        channel[:] = clip
    return signal, placed


def transcript(words: list[PlacedWord], fmt: Literal["jmoshi", "kyutai"]) -> object:
    """The words in J-Moshi's flat list (format A) or Kyutai's alignments (format B), sorted by start."""
    words = sorted(words, key=lambda w: (w.offset, w.speaker))

    def sec(samples: int) -> float:
        return round(samples / SAMPLE_RATE, 6)  # 1 us: finer than one sample (41.7 us)

    if fmt == "jmoshi":
        return [{"speaker": w.speaker, "word": w.word, "start": sec(w.offset), "end": sec(w.end)} for w in words]
    return {"alignments": [[w.word, [sec(w.offset), sec(w.end)], KYUTAI_LABELS[w.speaker]] for w in words]}


def write_dialogue(dialogue: DemoDialogue, folder: Path, seed: int, workdir: Path) -> tuple[Path, Path]:
    rng = random.Random(f"{seed}:{dialogue.name}")
    signal, words = render(dialogue, rng, workdir)
    pcm = np.round(np.clip(signal.T, -1.0, 1.0) * 32767).astype(np.int16)
    audio_path, text_path = folder / f"{dialogue.name}.flac", folder / f"{dialogue.name}.json"
    with atomic_path(audio_path) as tmp:
        sf.write(tmp, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    write_text_atomic(
        text_path, json.dumps(transcript(words, dialogue.transcript_format), indent=1, ensure_ascii=False) + "\n"
    )
    return audio_path, text_path


def demo_sentences(dialogues: tuple[DemoDialogue, ...] = DIALOGUES, joiner: str = " ") -> list[str]:
    """Every line of the demo scripts: the words of the demo transcripts, a line at a time, joined by `joiner`
    (no space for Japanese, as the no-whitespace layout joins them)."""
    return [
        joiner.join(line.text.split()) if isinstance(line, Turn) else line.word for d in dialogues for line in d.lines
    ]


@dataclass
class DemoConfig:
    output: str = option(str(DEMO_DIR), "folder to write the dialogues (<name>.flac + <name>.json) into")
    seed: int = option(0, "seed of the pauses and voice variation")


def generate(cfg: DemoConfig, dialogues: tuple[DemoDialogue, ...] = DIALOGUES) -> list[Path]:
    folder = Path(cfg.output)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as workdir:
        for dialogue in dialogues:
            written.extend(write_dialogue(dialogue, folder, cfg.seed, Path(workdir)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser(
        DemoConfig, "Synthesize the demo dialogues with espeak-ng, one word at a time (exact word timings)."
    )
    try:
        written = generate(from_cli(DemoConfig, parser.parse_args(argv)))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
