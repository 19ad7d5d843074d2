"""Bring user files into a workspace: validated audio + transcript pairs, and audio alone (optionally with
its `<name>.txt` turns) that still needs annotation; a refused file is never copied."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from backend.core.atomic import atomic_path
from backend.core.errors import InputError
from backend.data.annotate.run import TURNS_SUFFIX
from backend.data.annotate.turns import read_turns
from backend.data.audio_io import probe
from backend.data.files import AUDIO_EXTENSIONS, TRANSCRIPT_EXTENSIONS, DialogueFiles
from backend.data.validate import DialogueReport, validate_dialogue


@dataclass
class ImportResult:
    """What happened to every uploaded file: imported with its dialogue, or refused with the reason."""

    imported: list[DialogueReport] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "<file names>: <reasons>", one per refused dialogue or file
    to_annotate: list[str] = field(default_factory=list)  # names imported as audio without a transcript

    def markdown(self) -> str:
        lines = [f"✔ Imported **{n}**: audio only, needs annotation (Curate → Annotate)" for n in self.to_annotate]
        for r in self.imported:
            files = " + ".join(Path(f).name for f in (r.audio, r.transcript) if f)
            warnings = "".join(f"; ⚠ {i.message}" for i in r.issues if i.level == "warning")
            lines.append(f"✔ Imported **{r.name}**: {files} ({r.words} words{warnings})")
        lines += [f"✘ Not imported: {m}" for m in self.rejected]
        return "\n\n".join(lines)


def import_dialogues(files: list[str | Path], dest: str | Path) -> ImportResult:
    """Validate the uploaded files as dialogues (pairs by basename) and copy the good ones to `dest`.

    Every dialogue is validated before any is copied, so an upload either reports each file or (on an
    unexpected failure) writes nothing. Nothing is written for a refused dialogue; a file whose partner is
    already in `dest` completes it, but a file never replaces one of its kind already there (the old one is kept
    and the upload refused: replacing would silently lose a dialogue the workspace uses).
    """
    dest = Path(dest)
    result = ImportResult()
    groups: dict[str, dict[str, list[Path]]] = {}
    for f in map(Path, files):
        suffix = f.suffix.lower()
        kind = (
            "audio"
            if suffix in AUDIO_EXTENSIONS
            else "text"
            if suffix in TRANSCRIPT_EXTENSIONS
            else "turns"
            if suffix == TURNS_SUFFIX
            else None
        )
        if kind is None:
            result.rejected.append(f"{f.name}: not a dialogue file (expected .wav, .flac, .ogg, .json or .txt)")
            continue
        groups.setdefault(f.stem, {"audio": [], "text": [], "turns": []})[kind].append(f)
    accepted: list[tuple[DialogueReport, list[Path]]] = []
    to_annotate: list[tuple[str, list[Path]]] = []
    for name, group in sorted(groups.items()):
        uploaded = group["audio"] + group["text"] + group["turns"]
        duplicates = [p for kind in ("audio", "text", "turns") if len(group[kind]) > 1 for p in group[kind]]
        if duplicates:
            result.rejected.append(
                f"{', '.join(p.name for p in duplicates)}: several files named '{name}' in one upload; rename one"
            )
            continue
        taken = sorted({t.name for src in uploaded for t in _taken(dest, name, src)})
        if taken:
            result.rejected.append(
                f"{', '.join(p.name for p in uploaded)}: the workspace already has "
                f"{', '.join(taken)}; rename the upload, or delete the old file first"
            )
            continue
        audio = group["audio"][0] if group["audio"] else _existing(dest, name, AUDIO_EXTENSIONS)
        text = group["text"][0] if group["text"] else _existing(dest, name, TRANSCRIPT_EXTENSIONS)
        if text is None and audio is not None and not group["text"]:
            reason = _needs_annotation_problem(audio, group["turns"])
            if reason:
                result.rejected.append(f"{', '.join(p.name for p in uploaded)}: {reason}")
            else:
                to_annotate.append((name, uploaded))
            continue
        if audio is None:  # said here: the validation report would name the upload's temporary path
            result.rejected.append(
                f"{', '.join(p.name for p in uploaded)}: no audio named {name}.wav/.flac/.ogg "
                "in this upload or the workspace; upload the audio with its transcript"
            )
            continue
        if group["turns"]:
            result.rejected.append(
                f"{group['turns'][0].name}: turns are for audio without a transcript; '{name}' has one"
            )
            continue
        report = validate_dialogue(DialogueFiles(name, audio, text))
        if report.ok:
            accepted.append((report, uploaded))
        else:
            reasons = "; ".join(i.message for i in report.issues if i.level == "error")
            result.rejected.append(f"{', '.join(p.name for p in uploaded)}: {reasons}")
    for report, uploaded in accepted:
        for src in uploaded:
            if src.parent.resolve() != dest.resolve():
                with atomic_path(dest / f"{report.name}{src.suffix.lower()}") as tmp:
                    shutil.copyfile(src, tmp)
        result.imported.append(report)
    for name, uploaded in to_annotate:
        for src in uploaded:
            if src.parent.resolve() != dest.resolve():
                with atomic_path(dest / f"{name}{src.suffix.lower()}") as tmp:
                    shutil.copyfile(src, tmp)
        result.to_annotate.append(name)
    return result


def _needs_annotation_problem(audio: Path, turns: list[Path]) -> str | None:
    """Why audio without a transcript cannot be imported for annotation (None: it can)."""
    try:
        probe(audio)
        if turns:
            read_turns(turns[0])
    except InputError as e:
        return e.problem  # the caller names the files (no server paths in the message)
    return None


def _taken(dest: Path, name: str, upload: Path) -> list[Path]:
    """The files of `dest` an upload would replace: any audio of that name for audio (one basename never has two
    audio files), the same file for a transcript or turns; none for a file that is already in `dest`."""
    if upload.parent.resolve() == dest.resolve():
        return []
    suffix = upload.suffix.lower()
    kinds = AUDIO_EXTENSIONS if suffix in AUDIO_EXTENSIONS else (suffix,)
    return [dest / f"{name}{ext}" for ext in kinds if (dest / f"{name}{ext}").exists()]


def _existing(dest: Path, name: str, extensions: tuple[str, ...]) -> Path | None:
    for ext in extensions:
        if (dest / f"{name}{ext}").is_file():
            return dest / f"{name}{ext}"
    return None
