"""Find dialogues in a folder: each audio file paired with the transcript of the same basename."""

from dataclasses import dataclass, field
from pathlib import Path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
TRANSCRIPT_EXTENSIONS = (".json",)
# JSON files that sit beside a dialogue but are not its transcript: `<name><suffix>`.
SIDECAR_SUFFIXES = {"audit": ".audit.json", "annotation": ".annotation.json", "original": ".original.json"}


@dataclass(frozen=True)
class Dialogue:
    name: str
    audio: Path | None
    transcript: Path | None


@dataclass
class DialogueScan:
    """Dialogues found in a folder, and the files that cannot be used, each with its reason."""

    dialogues: list[Dialogue] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> list[Dialogue]:
        return [d for d in self.dialogues if d.audio is not None and d.transcript is not None]


def scan_dialogues(folder: str | Path) -> DialogueScan:
    """Pair `<name>.wav|flac|ogg` with `<name>.json`, sorted by name.

    Two audio files with one basename (say a.wav and a.flac) are ambiguous: both are reported and
    the dialogue is left out rather than picking one silently. A lone audio file or transcript is
    kept as an incomplete dialogue and reported.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    by_name: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        kind = "audio" if suffix in AUDIO_EXTENSIONS else "text" if suffix in TRANSCRIPT_EXTENSIONS else None
        if kind is None or path.name.endswith(tuple(SIDECAR_SUFFIXES.values())):
            continue
        by_name.setdefault(path.stem, {"audio": [], "text": []})[kind].append(path)
    scan = DialogueScan()
    for name in sorted(by_name):
        audio, text = by_name[name]["audio"], by_name[name]["text"]
        if len(audio) > 1:
            scan.problems.append(f"{', '.join(str(p) for p in audio)}: several audio files share the name "
                                 f"'{name}'; keep one (left out)")
            continue
        dialogue = Dialogue(name, audio[0] if audio else None, text[0] if text else None)
        if dialogue.audio is None:
            scan.problems.append(f"{dialogue.transcript}: transcript without audio (no {name}.wav/.flac/.ogg)")
        elif dialogue.transcript is None:
            scan.problems.append(f"{dialogue.audio}: audio without transcript (no {name}.json)")
        scan.dialogues.append(dialogue)
    return scan
