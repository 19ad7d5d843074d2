"""The workspace layout, owned here alone: one folder holding everything the studio works on (the demo
workspace is built by backend.demo.workspace).

    settings.json         WorkspaceSettings: which models and tokenizer the stages use
    raw/                  dialogue audio + transcripts (<name>.flac|wav + <name>.json), chat recordings
    models/               demo-mimi/, demo-lm/, tokenizer.model, initialised models
    voices/               voice prompts chosen by file name (persona prompts, /api/chat?voice_prompt=)
    tokens/audio/, tokens/text/   Mimi and text tokens per dialogue
    dataset/              the Parquet shards (+ personas.json)
    continuations/        <label>/<dialogue id>.npz + wavs
    runs/, preprocess/, evaluations/   job folders (backend.jobs), one per fine-tune, preprocessing run, evaluation

Paths in the settings are relative to the workspace (the folder can be moved); a value that is
neither an absolute path nor a file in the workspace is a hub repo id.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.core import config
from backend.core.config import option
from backend.core.errors import ConfigError, InputError

SETTINGS_FILE = "settings.json"
RUNS_DIR = "runs"  # one folder per fine-tune run (backend.jobs.folder names its files); holds the jobs' lock
PREPROCESS_DIR = "preprocess"  # one folder per preprocessing run (backend.dataset.preprocess)
EVALUATIONS_DIR = "evaluations"  # one folder per evaluation
JOB_KINDS = {RUNS_DIR: "run", PREPROCESS_DIR: "preprocessing run", EVALUATIONS_DIR: "evaluation"}  # folder -> name
VOICES_DIR = "voices"
CONTINUATIONS_DIR = "continuations"
# Where the demo models live (built by backend.demo.workspace); the default settings point at them.
DEMO_MIMI = "models/demo-mimi"
DEMO_LM = "models/demo-lm"
DEMO_TOKENIZER = "models/tokenizer.model"
KYUTAI_REPO = "kyutai/moshiko-pytorch-bf16"  # Kyutai's Moshi (Mimi, LM and tokenizer), fetched on first use
KYUTAI_TOKENIZER = "tokenizer_spm_32k_3.model"  # its SentencePiece model, to be put in the workspace
# Choices offered for the LM; any path or repo id is accepted.
LM_PRESETS = (DEMO_LM, KYUTAI_REPO, "kyutai/moshika-pytorch-bf16", "nu-dialogue/j-moshi-ext")


@dataclass
class WorkspaceSettings:
    mimi: str = option(
        DEMO_MIMI,
        "Mimi weights: a folder or .safetensors file (relative to the workspace) "
        "or a hub repo id such as kyutai/moshiko-pytorch-bf16",
    )
    lm: str = option(
        DEMO_LM,
        "Moshi LM to fine-tune: a model folder (relative to the workspace) or a hub "
        "repo id such as kyutai/moshiko-pytorch-bf16",
    )
    tokenizer: str = option(
        DEMO_TOKENIZER,
        "SentencePiece model file in the workspace (a path relative to it; "
        "Kyutai's 32k one: tokenizer_spm_32k_3.model of their hub repos)",
    )
    whitespace: bool = option(
        True,
        "transcripts are written with spaces between words (off for Japanese and "
        "Chinese: J-Moshi's --no_whitespace_before_word); Build's and the tokenizer's default",
    )
    demo: bool = option(
        True,
        "offline demo models: the project's small trained Mimi (speech-like audio) and a "
        "tiny random LM that speaks only after fine-tuning",
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where models run (auto: CUDA when available)")


@dataclass(frozen=True)
class Workspace:
    root: Path
    settings: WorkspaceSettings

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def demo_mimi(self) -> Path:
        return self.root / DEMO_MIMI

    @property
    def demo_lm(self) -> Path:
        return self.root / DEMO_LM

    @property
    def demo_tokenizer(self) -> Path:
        return self.root / DEMO_TOKENIZER

    @property
    def tokens_audio(self) -> Path:
        return self.root / "tokens" / "audio"

    @property
    def tokens_text(self) -> Path:
        return self.root / "tokens" / "text"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def runs(self) -> Path:
        return self.root / RUNS_DIR

    @property
    def preprocess(self) -> Path:
        return self.root / PREPROCESS_DIR

    @property
    def evaluations(self) -> Path:
        return self.root / EVALUATIONS_DIR

    @property
    def voices(self) -> Path:
        return self.root / VOICES_DIR

    @property
    def continuations(self) -> Path:
        return self.root / CONTINUATIONS_DIR

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def saved_finetune_config(self) -> Path:
        """The Fine-tune form's "Save configuration" download (replaced at each save)."""
        return self.root / "finetune_config.json"

    def resolve(self, source: str) -> str:
        """A settings value as the loaders take it: an absolute path if it names a file or folder
        (absolute, or relative to the workspace), else unchanged (a hub repo id)."""
        path = Path(source).expanduser()
        if path.is_absolute():
            return str(path)
        local = self.root / path
        return str(local) if local.exists() else source

    @property
    def mimi_source(self) -> str:
        return self.resolve(self.settings.mimi)

    @property
    def lm_source(self) -> str:
        return self.resolve(self.settings.lm)

    @property
    def tokenizer_path(self) -> Path:
        return Path(self.resolve(self.settings.tokenizer))

    def with_settings(self, settings: WorkspaceSettings) -> "Workspace":
        """Save new settings (atomically) and return the workspace that uses them."""
        config.save(settings, self.settings_file)
        return dataclasses.replace(self, settings=settings)

    def folders(self) -> list[Path]:
        return [
            self.raw,
            self.models,
            self.voices,
            self.tokens_audio,
            self.tokens_text,
            self.dataset,
            self.continuations,
            self.runs,
            self.preprocess,
            self.evaluations,
        ]


def create_empty_workspace(
    path: str | Path, mimi: str = KYUTAI_REPO, lm: str = KYUTAI_REPO, tokenizer: str = KYUTAI_TOKENIZER
) -> Workspace:
    """A workspace for the user's own data: its folders, nothing in raw/ (the demo dialogues would join every
    Build), and settings pointing at real weights (`mimi`, `lm`: a hub id or a path; `tokenizer`: a file in the
    workspace) with the demo models off. A folder that is a workspace already is refused, not changed."""
    root = Path(path).resolve()
    if (root / SETTINGS_FILE).exists():
        raise ConfigError(f"{root}: is a workspace already ({SETTINGS_FILE} exists); nothing changed")
    ws = Workspace(root, WorkspaceSettings(mimi=mimi, lm=lm, tokenizer=tokenizer, demo=False))
    for folder in ws.folders():
        folder.mkdir(parents=True, exist_ok=True)
    return ws.with_settings(ws.settings)


def open_workspace(path: str | Path) -> Workspace:
    root = Path(path).resolve()
    settings_file = root / SETTINGS_FILE
    if not settings_file.is_file():
        raise InputError(
            settings_file,
            "not a workspace (no settings file); create one with "
            f"`moshi-studio workspace init {path}` (empty, for your own data) or "
            f"`moshi-studio workspace init-demo {path}`",
        )
    return Workspace(root, config.load(WorkspaceSettings, settings_file))


def describe_workspace(ws: Workspace) -> str:
    lines = [f"workspace {ws.root}"]
    lines += [f"  {k}: {v}" for k, v in config.to_dict(ws.settings).items()]
    for name, source in (("mimi", ws.mimi_source), ("lm", ws.lm_source), ("tokenizer", str(ws.tokenizer_path))):
        where = "local" if Path(source).exists() else "hub repo id" if name != "tokenizer" else "MISSING"
        lines.append(f"  {name} -> {source} ({where})")
    for folder in ws.folders():
        count = sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0
        lines.append(f"  {folder.relative_to(ws.root)}/: {count} entries")
    return "\n".join(lines)
