"""The persona demo (issue 15): two dialogues of the same kind, a barista and a librarian answering the very same
user turn, each in its own espeak-ng voice, plus each persona's voice prompt and role text.

    python -m backend.demo.personas            # writes assets/demo_personas/ (committed)

The user's turn comes first and is rendered from the same seed in both dialogues, so its samples are identical:
up to the end of that turn the two dialogues are the same, and only the persona prefix (models/persona.py) tells
the model which reply to give. Written as the demo dialogues are (backend/demo/dialogues.py: exact word timings).
"""

import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.config import cli_parser, from_cli, option
from backend.core.errors import StudioError
from backend.core.paths import ASSETS
from backend.core.spec import SAMPLE_RATE
from backend.core.workspace import VOICES_DIR
from backend.demo.dialogues import FEMALE_2, MALE, MALE_UK, DemoDialogue, Turn, Voice, render, transcript

PERSONA_DIR = ASSETS / "demo_personas"
USER_TURN = "Hello, can you help me please?"
SEED = "persona-demo"  # one seed for both dialogues: the user's turn renders identically


@dataclass(frozen=True)
class DemoPersona:
    name: str  # dialogue <name>.flac/.json and voice prompt voices/<name>.wav
    role: str  # role text (wrapped in <system> tags when encoded)
    voice: Voice  # Moshi's side (speaker A)
    reply: str
    voice_line: str  # what the voice prompt says


PERSONAS = (
    DemoPersona(
        "persona_barista",
        "You are a barista in a busy cafe.",
        FEMALE_2,
        "Sure, which coffee would you like today?",
        "Fresh coffee is my favourite thing.",
    ),
    DemoPersona(
        "persona_librarian",
        "You are a librarian in a quiet library.",
        MALE,
        "Of course, which book are you looking for?",
        "Quiet reading rooms are my favourite place.",
    ),
)


def dialogue(p: DemoPersona) -> DemoDialogue:
    return DemoDialogue(
        p.name, "jmoshi", {"A": p.voice, "B": MALE_UK}, (Turn("B", USER_TURN, 0.0), Turn("A", p.reply, 0.5))
    )


def voice_prompt(p: DemoPersona, workdir: Path) -> np.ndarray:
    """The persona's voice saying its voice line (mono 24 kHz)."""
    signal, _ = render(
        DemoDialogue(p.name, "jmoshi", {"A": p.voice}, (Turn("A", p.voice_line, 0.0),)),
        random.Random(f"{SEED}:voice"),
        workdir,
    )
    return signal[0]


def write_persona(p: DemoPersona, folder: Path, workdir: Path) -> list[Path]:
    import json

    signal, words = render(dialogue(p), random.Random(SEED), workdir)
    audio, text, voice = folder / f"{p.name}.flac", folder / f"{p.name}.json", folder / VOICES_DIR / f"{p.name}.wav"
    voice.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(audio) as tmp:
        sf.write(
            tmp,
            np.round(np.clip(signal.T, -1, 1) * 32767).astype(np.int16),
            SAMPLE_RATE,
            format="FLAC",
            subtype="PCM_16",
        )
    write_text_atomic(text, json.dumps(transcript(words, "jmoshi"), indent=1) + "\n")
    with atomic_path(voice) as tmp:
        sf.write(tmp, voice_prompt(p, workdir), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return [audio, text, voice]


def persona_sentences() -> list[str]:
    return [USER_TURN] + [s for p in PERSONAS for s in (p.role, p.reply, p.voice_line)]


@dataclass
class PersonaDemoConfig:
    output: str = option(str(PERSONA_DIR), "folder for <name>.flac + <name>.json and voices/<name>.wav")


def main(argv: list[str] | None = None) -> int:
    cfg = from_cli(PersonaDemoConfig, cli_parser(PersonaDemoConfig, "Synthesize the persona demo.").parse_args(argv))
    try:
        with tempfile.TemporaryDirectory() as workdir:
            written = [f for p in PERSONAS for f in write_persona(p, Path(cfg.output), Path(workdir))]
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(map(str, written)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
