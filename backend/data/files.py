"""Find dialogues in a folder: each audio file paired with the transcript of the same basename. The one
scanner of dialogue folders (validation, the studio's data tab and both tokenizers list files through it)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
TRANSCRIPT_EXTENSIONS = (".json",)
# JSON files that sit beside a dialogue but are not its transcript: `<name><suffix>`.
SIDECAR_SUFFIXES = {
    "audit": ".audit.json",
    "annotation": ".annotation.json",
    "original": ".original.json",
    "persona": ".persona.json",
}
AUDIT_SUFFIX = SIDECAR_SUFFIXES["audit"]  # tokenize_text's per-dialogue audit, possibly written beside the transcripts
PERSONA_SUFFIX = SIDECAR_SUFFIXES["persona"]  # a dialogue's persona before Build (backend.data.raw_personas)
Kind = Literal["audio", "text"]
RECORDING_PREFIX = "chat-"  # the Chat tab's recordings: <prefix><time>.wav + .json (Moshi's words only)


def is_recording(name: str) -> bool:
    """Whether a dialogue name is a chat recording (left out of datasets unless chosen)."""
    return name.startswith(RECORDING_PREFIX)


@dataclass(frozen=True)
class DialogueFiles:
    """The two files of one dialogue in a folder (either may be missing)."""

    name: str
    audio: Path | None
    transcript: Path | None


@dataclass
class DialogueScan:
    """Dialogues found in a folder, and the files that cannot be used, each with its reason."""

    dialogues: list[DialogueFiles] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[DialogueFiles]:
        return [d for d in self.dialogues if d.audio is not None and d.transcript is not None]


def file_kind(path: Path) -> Kind | None:
    """The kind of a dialogue file: "audio", "text" (a transcript) or None (any other file, sidecars included)."""
    suffix = path.suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in TRANSCRIPT_EXTENSIONS and not path.name.endswith(tuple(SIDECAR_SUFFIXES.values())):
        return "text"
    return None


def _by_name(folder: Path) -> dict[str, dict[Kind, list[Path]]]:
    """The dialogue files of a folder (not recursive, hidden files left out) grouped by basename, sorted."""
    by_name: dict[str, dict[Kind, list[Path]]] = {}
    for path in sorted(folder.iterdir()):
        kind = file_kind(path)
        if kind is not None and path.is_file() and not path.name.startswith("."):
            by_name.setdefault(path.stem, {"audio": [], "text": []})[kind].append(path)
    return dict(sorted(by_name.items()))


def dialogue_files(folder: str | Path, kind: Kind) -> list[Path]:
    """Every audio file, or every transcript, of a dialogue folder, sorted by name."""
    return [p for group in _by_name(Path(folder)).values() for p in group[kind]]


def scan_dialogues(folder: str | Path) -> DialogueScan:
    """Pair `<name>.wav|flac|ogg` with `<name>.json`, sorted by name.

    Two audio files with one basename (say a.wav and a.flac) are ambiguous: both are reported and
    the dialogue is left out rather than picking one silently. A lone audio file or transcript is
    kept as an incomplete dialogue and reported.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    scan = DialogueScan()
    for name, group in _by_name(folder).items():
        audio, text = group["audio"], group["text"]
        if len(audio) > 1:
            scan.problems.append(
                f"{', '.join(str(p) for p in audio)}: several audio files share the name '{name}'; keep one (left out)"
            )
            continue
        dialogue = DialogueFiles(name, audio[0] if audio else None, text[0] if text else None)
        if dialogue.audio is None:
            scan.problems.append(f"{dialogue.transcript}: transcript without audio (no {name}.wav/.flac/.ogg)")
        elif dialogue.transcript is None:
            scan.problems.append(f"{dialogue.audio}: audio without transcript (no {name}.json)")
        scan.dialogues.append(dialogue)
    return scan
