"""The Data tab's "Build dataset": tokenize audio and text of a workspace, then write Parquet.

Each step is its stage's own function with its own config object; this only fills the
workspace's paths in and chains them under one progress callback.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.core.progress import Progress
from backend.core.workspace import Workspace
from backend.data.files import is_recording, scan_dialogues
from backend.dataset.build import VALIDATION_DIR, DatasetConfig, DatasetReport, build_dataset
from backend.dataset.selection import left_out
from backend.dataset.text_layout import DialogueAudit
from backend.dataset.tokenize_audio import AudioTokenizeConfig, tokenize_audio
from backend.dataset.tokenize_text import TextTokenizeConfig, TokenizeFailures, tokenize_text


def text_paths(ws: Workspace) -> dict[str, Any]:
    """The TextTokenizeConfig fields a workspace decides, and its default for whitespace (the form supplies the
    layout options)."""
    return {
        "transcripts": ws.raw,
        "tokenizer": ws.tokenizer_path,
        "output": ws.tokens_text,
        "audio": ws.raw,
        "whitespace": ws.settings.whitespace,
    }


RECORDINGS_WHY = "chat recording(s) (tick *include chat recordings* to add them)"


@dataclass
class PrepareResult:
    audio: Any
    audits: list[DialogueAudit]
    dataset: DatasetReport
    notes: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # name -> why (selection.left_out, recordings)
    unusable: list[str] = field(default_factory=list)  # "<file>: <problem>" of what could not be tokenized

    def markdown(self) -> str:
        """The report under Build: the audit of the dataset's rows only; what stayed out, counted; what could not
        be used, each with its problem."""
        d = self.dataset
        lines = [f"✔ {d.rows} dialogues, {d.hours:.3f} h of audio in {len(d.files)} shard(s)"]
        counts = [f"{n} {why}" for why, n in sorted(Counter(self.left_out.values()).items())]
        counts += [
            f"{len(names)} without {what} tokens"
            for what, names in (("audio", d.missing_audio), ("text", d.missing_text))
            if names
        ]
        lines += [f"Left out: {', '.join(counts)}."] if counts else []
        lines += (
            [
                f"Held out for validation (`{VALIDATION_DIR}/`, the fine-tune form's eval data): "
                f"{', '.join(d.validation)}."
            ]
            if d.validation
            else []
        )
        lines += [f"- ✘ not usable, left out: {u}" for u in self.unusable]
        lines += ["", "| dialogue | text audit |", "|---|---|"]
        lines += [f"| {a.name} | {a.summary()} |" for a in self.audits]
        lines += [f"- {n}" for n in self.notes]
        lines += [f"- wrote `{Path(f).parent.name}/{Path(f).name}`" for f in self.dataset.files]
        return "\n".join(lines)


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """Map a stage's 0..1 progress onto [lo, hi] of the whole build."""
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * f, msg)


def _drop_tokens(ws: Workspace, names: dict[str, str]) -> dict[str, str]:
    """Token files are caches of raw/: those of left-out dialogues go, so the dataset cannot take them."""
    for name in names:
        for folder in (ws.tokens_audio, ws.tokens_text):
            (Path(folder) / f"{name}.npz").unlink(missing_ok=True)
    return names


def prepare_dataset(
    ws: Workspace,
    text_cfg: TextTokenizeConfig,
    progress: Progress | None = None,
    recordings: bool = False,
    validation: str = "",
    split_seed: int = 0,
) -> PrepareResult:
    """`recordings`: chat recordings become rows too; dialogues marked excluded never do. `validation` and
    `split_seed`: the dialogues Build holds out (DatasetConfig's fields of those names). What is left out is
    skipped before it is read (its old token files dropped); a dialogue whose audio or transcript cannot be
    tokenized is listed with its problem and the others still make the dataset."""
    out = left_out(ws)
    if not recordings:
        out |= {d.name: RECORDINGS_WHY for d in scan_dialogues(ws.raw).dialogues if is_recording(d.name)}
    skip = frozenset(_drop_tokens(ws, out))
    audio = tokenize_audio(
        AudioTokenizeConfig(
            input_dir=ws.raw, output_dir=ws.tokens_audio, mimi=ws.mimi_source, device=ws.settings.device
        ),
        progress=_stage(progress, 0.0, 0.7),
        skip=skip,
    )
    try:
        audits, failures = tokenize_text(text_cfg, progress=_stage(progress, 0.7, 0.85), skip=skip), []
    except TokenizeFailures as e:
        audits, failures = e.audits, e.failures
    unusable = [message.replace(f"{ws.raw}/", "") for message in audio.failed.values()]
    unusable += [f"{Path(e.path).name if e.path else ''}: {e.problem}" for e in failures]
    dataset_cfg = DatasetConfig(
        audio_tokens=ws.tokens_audio,
        text_tokens=ws.tokens_text,
        output=ws.dataset,
        recordings=recordings,
        validation=validation,
        split_seed=split_seed,
    )
    report = build_dataset(dataset_cfg, progress=_stage(progress, 0.85, 0.95))
    count = carry_personas(ws, dataset_cfg.output_prefix)
    notes = [f"{count} persona(s) written to the dataset"] if count else []
    return PrepareResult(audio, audits, report, notes, out, unusable)


def carry_personas(ws: Workspace, prefix: str) -> int:
    """Encode the raw dialogues' personas (raw/<name>.persona.json) into the dataset's personas.json sidecar,
    keyed by the dialogue ids Build wrote; returns how many. Without raw personas the sidecar is left alone."""
    from backend.data.raw_personas import raw_personas
    from backend.dataset.personas import build_persona, save_personas
    from backend.dataset.read import list_dialogues
    from backend.models.persona import read_voice, voice_file

    stored = raw_personas(ws)
    if not stored:
        return 0
    ids = set(list_dialogues(ws.dataset))
    personas = {}
    for name, p in stored.items():
        if f"{prefix}/{name}" in ids:
            voice = voice_file(ws.voices, p.voice, f"{name}: voice prompt") if p.voice else None
            personas[(f"{prefix}/{name}", p.speaker)] = build_persona(
                p.text, str(ws.tokenizer_path), read_voice(voice) if voice else None, ws.mimi_source, voice or name
            )
    save_personas(ws.dataset, personas)
    return len(personas)
