"""Stage: attach personas (role text + voice prompt, issue 15) to a dataset's dialogues.

    python -m backend.dataset.personas --dataset dataset --dialogue train/cafe --speaker A \\
        --text "You are a barista." --voice voices/barista.wav --mimi models/demo-mimi \\
        --tokenizer models/tokenizer.model

Personas live in a sidecar beside the Parquet shards, `<dataset folder>/personas.json` (for a single .parquet
file: `<file stem>.personas.json`), so the shards keep SPEC.md's schema and a dataset without the file simply has
no personas. One entry per (dialogue id, speaker playing Moshi):

    {"format": "moshi-studio-personas/1",
     "personas": {"<dialogue_id>": {"A": {"text": str, "text_ids": [int, ...], "voice": [[int] x F] x 8}}}}

`text_ids` are the ids of the wrapped role text under the dataset's tokenizer and `voice` the Mimi codes of the
-24 LUFS voice prompt (models/persona.py): the trainer builds the prefix from them without a tokenizer or Mimi.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from backend.core import config
from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError, InputError
from backend.core.spec import CARD, NUM_CODEBOOKS, SAMPLE_RATE, SPEAKERS
from backend.models.persona import Persona, has_role_text

FORMAT = "moshi-studio-personas/1"
SIDECAR = "personas.json"
MAX_VOICE_FRAMES = 12_500  # 1000 s: far beyond any voice prompt, a bound on what a sidecar may ask for
MAX_TEXT_IDS = 10_000

Personas = dict[tuple[str, str], Persona]  # (dialogue id, speaker playing Moshi) -> persona


@dataclass
class PersonaConfig:
    dataset: Path = config.option(Path("dataset"), "Parquet dataset (folder of shards or one .parquet file)")
    dialogue: str = config.option("", "dialogue id to give the persona to (as in the dataset's dialogue_id)")
    speaker: Literal["A", "B"] = config.option("A", "speaker of the dialogue the persona belongs to (plays Moshi)")
    text: str = config.option("", "role text, e.g. 'You are a barista.' (wrapped in <system> tags as PersonaPlex)")
    voice: Path | None = config.option(None, "voice prompt audio file (none: no voice phase)")
    voice_channel: Literal["first", "A", "B"] = config.option(
        "first", "channel of the voice file: first (as PersonaPlex reads it), or A/B of a stereo dialogue"
    )
    voice_start: float = config.option(0.0, "clip the voice file from this second")
    voice_end: float = config.option(0.0, "... to this second (0: its end)")
    mimi: str = config.option("models/demo-mimi", "Mimi that tokenized the dataset (folder, file or hub id)")
    tokenizer: str = config.option("models/tokenizer.model", "SentencePiece model of the dataset's text")
    remove: bool = config.option(False, "remove the dialogue's persona for this speaker instead")


def sidecar_path(dataset: str | Path) -> Path:
    path = Path(dataset)
    return path.with_name(f"{path.stem}.personas.json") if path.suffix == ".parquet" else path / SIDECAR


def _persona(where: Path, key: str, entry: Any) -> Persona:
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise InputError(where, f"persona {key}: expected an object with text, text_ids and voice")
    ids, voice = entry.get("text_ids"), entry.get("voice")
    if not (isinstance(ids, list) and len(ids) <= MAX_TEXT_IDS and all(type(i) is int and i >= 0 for i in ids)):
        raise InputError(where, f"persona {key}: text_ids must be a list of at most {MAX_TEXT_IDS} ids >= 0")
    if not (isinstance(voice, list) and len(voice) == NUM_CODEBOOKS and all(isinstance(r, list) for r in voice)):
        raise InputError(where, f"persona {key}: voice must be {NUM_CODEBOOKS} lists of Mimi codes")
    lengths = {len(r) for r in voice}
    if len(lengths) != 1 or lengths.pop() > MAX_VOICE_FRAMES:
        raise InputError(where, f"persona {key}: voice rows differ in length or exceed {MAX_VOICE_FRAMES} frames")
    if not all(type(c) is int and 0 <= c < CARD for r in voice for c in r):
        raise InputError(where, f"persona {key}: voice codes must be integers in 0..{CARD - 1}")
    return Persona(entry["text"], tuple(ids), np.array(voice, dtype=np.int64).reshape(NUM_CODEBOOKS, -1))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable personas file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("personas"), dict):
        raise InputError(path, f"not a personas file (expected format {FORMAT!r} and a personas object)")
    return data


def load_personas(dataset: str | Path) -> Personas:
    """Every persona of a dataset ({} without a sidecar), checked: a bad entry is refused by name."""
    path = sidecar_path(dataset)
    if not path.exists():
        return {}
    out: Personas = {}
    for dialogue, speakers in _read(path)["personas"].items():
        if not isinstance(speakers, dict) or not set(speakers) <= set(SPEAKERS):
            raise InputError(path, f"persona {dialogue}: expected an object keyed by speaker A and/or B")
        for speaker, entry in speakers.items():
            out[(dialogue, speaker)] = _persona(path, f"{dialogue}/{speaker}", entry)
    return out


def save_personas(dataset: str | Path, personas: Personas) -> Path:
    """Write the sidecar (atomically); no personas removes it."""
    path = sidecar_path(dataset)
    if not personas:
        path.unlink(missing_ok=True)
        return path
    body: dict[str, dict[str, Any]] = {}
    for (dialogue, speaker), p in sorted(personas.items()):
        body.setdefault(dialogue, {})[speaker] = {
            "text": p.text,
            "text_ids": list(p.text_ids),
            "voice": p.voice.tolist(),
        }
    write_text_atomic(path, json.dumps({"format": FORMAT, "personas": body}, ensure_ascii=False))
    return path


def voice_clip(cfg: PersonaConfig) -> np.ndarray:
    """The voice prompt's 24 kHz mono samples: the whole first channel (PersonaPlex) or a clip of one speaker."""
    from backend.models.persona import read_voice

    assert cfg.voice is not None
    if cfg.voice_channel == "first" and cfg.voice_start == 0 and cfg.voice_end == 0:
        return read_voice(cfg.voice)
    from backend.data.audio_io import load_stereo

    audio, _ = load_stereo(cfg.voice)
    channel = audio[0 if cfg.voice_channel in ("first", "A") else 1]
    start = int(cfg.voice_start * SAMPLE_RATE)
    stop = int(cfg.voice_end * SAMPLE_RATE) if cfg.voice_end else len(channel)
    if not 0 <= start < stop <= len(channel):
        raise ConfigError(
            f"voice clip {cfg.voice_start}-{cfg.voice_end} s is outside {cfg.voice} "
            f"({len(channel) / SAMPLE_RATE:.2f} s)"
        )
    return channel[start:stop]


def set_persona(cfg: PersonaConfig) -> Personas:
    """Add, replace or remove one dialogue's persona; returns the dataset's personas afterwards."""
    import pyarrow.parquet as pq

    from backend.dataset.read import parquet_files

    ids = {
        i
        for f in parquet_files(cfg.dataset)
        for i in pq.read_table(f, columns=["dialogue_id"]).column("dialogue_id").to_pylist()
    }
    if cfg.dialogue not in ids:
        raise ConfigError(f"{cfg.dataset}: no dialogue {cfg.dialogue!r}")
    personas = load_personas(cfg.dataset)
    key = (cfg.dialogue, cfg.speaker)
    if cfg.remove:
        personas.pop(key, None)
    else:
        if not has_role_text(cfg.text) and cfg.voice is None:
            raise ConfigError("a persona needs a role text, a voice prompt or both")
        personas[key] = build_persona(
            cfg.text, cfg.tokenizer, voice_clip(cfg) if cfg.voice else None, cfg.mimi, cfg.voice or "voice prompt"
        )
    save_personas(cfg.dataset, personas)
    return personas


def build_persona(text: str, tokenizer: str, voice: np.ndarray | None, mimi: str, where: str | Path) -> Persona:
    """Encode role text and voice samples with the given tokenizer and Mimi (loaded only when needed)."""
    from backend.models.persona import encode_voice, make_persona

    sp = None
    if has_role_text(text):
        from backend.models.text_tokenizer import load_spm

        sp = load_spm(tokenizer)
    codes = None
    if voice is not None:
        from backend.models.weights import cached_mimi

        codes = encode_voice(cached_mimi(mimi), voice, where)
    return make_persona(text, sp, codes)


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(PersonaConfig, "Give a dataset dialogue a persona (role text + voice prompt).")
    try:
        cfg = config.from_cli(PersonaConfig, parser.parse_args(argv))
        personas = set_persona(cfg)
    except (ConfigError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(personas)} persona(s) in {sidecar_path(cfg.dataset)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
