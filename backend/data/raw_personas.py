"""A workspace's personas before Build (issue 15): role text and voice prompt per raw dialogue.

Stored beside the dialogue as `raw/<name>.persona.json` (so it moves and is deleted with the dialogue):

    {"speaker": "A", "text": "You are a barista.", "voice": "<file name in <workspace>/voices/>" or ""}

The voice is always a file of the workspace's voices folder (the one `/api/chat?voice_prompt=` and the Chat and
Continuations tabs choose from): an uploaded wav is copied there, and a clip of the dialogue's Moshi-side speaker
is cut and saved there as `<name>.<speaker>.wav`. Build (dataset/pipeline.py) encodes these into the dataset's
`personas.json` sidecar (dataset/personas.py) under the dialogue ids it wrote.
"""

import filecmp
import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.errors import ConfigError, InputError
from backend.core.spec import SAMPLE_RATE, SPEAKERS
from backend.core.workspace import Workspace
from backend.data.audio_io import load_stereo
from backend.data.files import AUDIO_EXTENSIONS, PERSONA_SUFFIX, scan_dialogues
from backend.models.persona import check_text_prompt, voice_file
from backend.models.voice_preset import is_preset

MAX_CLIP_SECONDS = 60.0  # a voice prompt is a few seconds (PersonaPlex's are ~10 s)
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RawPersona:
    speaker: str  # the dialogue's speaker who plays Moshi
    text: str
    voice: str  # file name in the voices folder, "" for none


def voice_names(ws: Workspace) -> list[str]:
    """The voice prompt files of the workspace (the choices of the Continuations and Chat tabs): audio, and
    PersonaPlex's voice presets (models/voice_preset.py)."""
    folder = ws.voices
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in AUDIO_EXTENSIONS or is_preset(p))
    )


def voice_pick(ws: Workspace, current: str | None) -> tuple[list[str], str | None]:
    """(voice choices, the current pick while it is still one of them) for the tabs' voice dropdowns."""
    voices = voice_names(ws)
    return voices, current if current in voices else None


def persona_path(ws: Workspace, name: str) -> Path:
    """raw/<name>.persona.json of a dialogue that exists in raw/ (any other name is refused)."""
    if name not in {d.name for d in scan_dialogues(ws.raw).dialogues}:
        raise ConfigError(f"dialogue: no dialogue {name[:80]!r} in {ws.raw}")
    return ws.raw / f"{name}{PERSONA_SUFFIX}"


def load_raw_persona(ws: Workspace, name: str) -> RawPersona | None:
    path = persona_path(ws, name)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable persona file ({e})") from None
    if not (
        isinstance(data, dict)
        and data.get("speaker") in SPEAKERS
        and isinstance(data.get("text"), str)
        and isinstance(data.get("voice"), str)
    ):
        raise InputError(path, "expected {speaker: A|B, text: str, voice: file name in voices/ or ''}")
    return RawPersona(data["speaker"], check_text_prompt(data["text"], str(path)), data["voice"])


def raw_personas(ws: Workspace) -> dict[str, RawPersona]:
    """Every dialogue's persona, by dialogue name."""
    found = {}
    for d in scan_dialogues(ws.raw).dialogues:
        persona = load_raw_persona(ws, d.name)
        if persona is not None:
            found[d.name] = persona
    return found


def save_clip(ws: Workspace, name: str, speaker: str, start: float, end: float) -> str:
    """Cut [start, end] s of the speaker's channel of dialogue `name` into voices/<name>.<speaker>.wav."""
    dialogue = next(d for d in scan_dialogues(ws.raw).dialogues if d.name == name)
    if dialogue.audio is None:
        raise ConfigError(f"{name}: the dialogue has no audio to clip a voice from")
    if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end and end - start <= MAX_CLIP_SECONDS):
        raise ConfigError(f"voice clip {start}-{end} s: need 0 <= start < end, at most {MAX_CLIP_SECONDS:.0f} s long")
    audio, _ = load_stereo(dialogue.audio)
    lo, hi = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
    if hi > audio.shape[1]:
        raise ConfigError(
            f"voice clip {start}-{end} s is outside {dialogue.audio.name} ({audio.shape[1] / SAMPLE_RATE:.2f} s)"
        )
    target = ws.voices / f"{name}.{speaker}.wav"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        sf.write(str(tmp), audio[SPEAKERS.index(speaker), lo:hi], SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return target.name


def save_upload(ws: Workspace, upload: Path) -> str:
    """Copy an uploaded audio file into voices/ under a plain name (its own, made safe)."""
    if upload.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ConfigError(f"voice upload {upload.name[:80]!r}: expected {'/'.join(AUDIO_EXTENSIONS)}")
    name = SAFE_NAME.sub("_", upload.name).lstrip(".")[-100:] or "voice.wav"
    target, n = ws.voices / name, 1
    while target.exists():  # other personas may use the old voice: keep it (the same bytes are the same voice)
        if filecmp.cmp(target, upload, shallow=False):
            return target.name
        n += 1
        target = ws.voices / f"{Path(name).stem}-{n}{Path(name).suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(upload, tmp)
    return target.name


def save_raw_persona(ws: Workspace, name: str, persona: RawPersona) -> Path:
    """Write (atomically) or, with neither text nor voice, remove a dialogue's persona; the voice must be a file
    of the voices folder and the text within the bound every client text gets."""
    path = persona_path(ws, name)
    if persona.speaker not in SPEAKERS:
        raise ConfigError(f"speaker: expected one of {', '.join(SPEAKERS)}")
    check_text_prompt(persona.text, "role text")
    if persona.voice:
        voice_file(ws.voices, persona.voice, "voice prompt")
    if not persona.text.strip() and not persona.voice:
        path.unlink(missing_ok=True)
        return path
    write_text_atomic(path, json.dumps(asdict(persona), ensure_ascii=False, indent=1) + "\n")
    return path


def voice_prompt_path(ws: Workspace, name: str | None) -> str:
    """The absolute path of a voices/ file chosen by name ("" for none): the Continuations stage takes a path."""
    return str(voice_file(ws.voices, name, "voice prompt")) if name else ""
