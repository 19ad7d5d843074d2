"""The workspace layout: one folder holding everything the studio works on (the demo workspace is built by
backend.demo.workspace).

    raw/                  dialogue audio + transcripts (<name>.flac|wav + <name>.json)
    models/demo-mimi/     tiny random Mimi (mimi.safetensors + mimi_config.json)
    models/demo-lm/       tiny random LM (model.safetensors + moshi_lm_kwargs.json)
    models/tokenizer.model  small SentencePiece model trained on the demo words
    tokens/audio/, tokens/text/, dataset/, runs/
    settings.json         WorkspaceSettings: which models and tokenizer the stages use

Paths in the settings are relative to the workspace (the folder can be moved); a value that is
neither an absolute path nor a file in the workspace is a hub repo id.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.core import config
from backend.core.config import option
from backend.core.errors import InputError

SETTINGS_FILE = "settings.json"
RUNS_DIR = "runs"  # one folder per fine-tune run (backend.finetune.run_folder names its files)
PREPROCESS_DIR = "preprocess"  # one folder per preprocessing run (backend.dataset.preprocess), same files
# Where the demo models live (built by backend.demo.workspace); the default settings point at them.
DEMO_MIMI = "models/demo-mimi"
DEMO_LM = "models/demo-lm"
DEMO_TOKENIZER = "models/tokenizer.model"
# Choices offered for the LM; any path or repo id is accepted.
LM_PRESETS = (DEMO_LM, "kyutai/moshiko-pytorch-bf16", "kyutai/moshika-pytorch-bf16", "nu-dialogue/j-moshi-ext")


@dataclass
class WorkspaceSettings:
    mimi: str = option(DEMO_MIMI, "Mimi weights: a folder or .safetensors file (relative to the workspace) "
                                  "or a hub repo id such as kyutai/moshiko-pytorch-bf16")
    lm: str = option(DEMO_LM, "Moshi LM to fine-tune: a model folder (relative to the workspace) or a hub "
                              "repo id such as kyutai/moshiko-pytorch-bf16")
    tokenizer: str = option(DEMO_TOKENIZER, "SentencePiece model file in the workspace (a path relative to it; "
                                            "Kyutai's 32k one: tokenizer_spm_32k_3.model of their hub repos)")
    demo: bool = option(True, "offline demo models: the project's small trained Mimi (speech-like audio) and a "
                               "tiny random LM that speaks only after fine-tuning")
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
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

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
        return [self.raw, self.models, self.tokens_audio, self.tokens_text, self.dataset, self.runs]


def open_workspace(path: str | Path) -> Workspace:
    root = Path(path).resolve()
    settings_file = root / SETTINGS_FILE
    if not settings_file.is_file():
        raise InputError(settings_file, "not a workspace (no settings file); create one with "
                                        f"`moshi-studio workspace init-demo {path}`")
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


def model_folders(ws: Workspace) -> list[str]:
    """Every LM folder of the workspace, relative to it: models/, run exports and complete checkpoints (newest
    runs first)."""
    from backend.finetune.checkpoints import list_checkpoints
    from backend.finetune.run_folder import EXPORTS_DIR
    from backend.models.source import LM_KWARGS

    found = sorted(p.parent for p in ws.models.glob(f"*/{LM_KWARGS}"))
    for run in sorted(ws.runs.glob("*/"), reverse=True):
        found += sorted((p.parent for p in (run / EXPORTS_DIR).glob(f"*/{LM_KWARGS}")), reverse=True)
        found += [p for p in reversed(list_checkpoints(run)) if (p / LM_KWARGS).is_file()]
    return [str(p.relative_to(ws.root)) for p in found]
