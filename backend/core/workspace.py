"""The workspace: one folder holding everything the studio works on.

    raw/                  dialogue audio + transcripts (<name>.flac|wav + <name>.json)
    models/demo-mimi/     tiny random Mimi (mimi.safetensors + mimi_config.json)
    models/demo-lm/       tiny random LM (model.safetensors + moshi_lm_kwargs.json)
    models/tokenizer.model  small SentencePiece model trained on the demo words
    tokens/audio/, tokens/text/, dataset/, runs/
    settings.json         WorkspaceSettings: which models and tokenizer the stages use

Paths in the settings are relative to the workspace (the folder can be moved); a value that is
neither an absolute path nor a file in the workspace is a hub repo id.
"""

import argparse
import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from backend.core import config
from backend.core.atomic import atomic_path
from backend.core.config import option
from backend.demo.dialogues import DEMO_DIR, demo_sentences
from backend.core.errors import ConfigError, InputError, StudioError

if TYPE_CHECKING:  # torch and moshi load only when models are built (opening a workspace stays light)
    from moshi.models.lm import LMModel

SETTINGS_FILE = "settings.json"
DEMO_MIMI = "models/demo-mimi"
DEMO_LM = "models/demo-lm"
DEMO_TOKENIZER = "models/tokenizer.model"
DEMO_SEED = 0
# Big enough for the demo words' pieces plus the 256 byte-fallback pieces, small enough to train on the ~160 demo words.
DEMO_VOCAB_SIZE = 400
# Choices offered for the LM; any path or repo id is accepted.
LM_PRESETS = (DEMO_LM, "kyutai/moshiko-pytorch-bf16", "kyutai/moshika-pytorch-bf16", "nu-dialogue/j-moshi-ext")


@dataclass
class WorkspaceSettings:
    mimi: str = option(DEMO_MIMI, "Mimi weights: a folder or .safetensors file (relative to the workspace) "
                                  "or a hub repo id such as kyutai/moshiko-pytorch-bf16")
    lm: str = option(DEMO_LM, "Moshi LM to fine-tune: a model folder (relative to the workspace) or a hub "
                              "repo id such as kyutai/moshiko-pytorch-bf16")
    tokenizer: str = option(DEMO_TOKENIZER, "SentencePiece model file (relative to the workspace or absolute)")
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
        return self.root / "runs"

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
                                        f"`python -m backend.core.workspace init-demo {path}`")
    return Workspace(root, config.load(WorkspaceSettings, settings_file))


def copy_demo_dialogues(raw: Path) -> list[Path]:
    """Copy assets/demo's dialogues into `raw` (files already there are kept)."""
    sources = sorted(p for p in DEMO_DIR.iterdir() if p.suffix in (".flac", ".json"))
    if not sources:
        raise ConfigError(f"{DEMO_DIR}: the demo dialogues are missing (python -m backend.demo.dialogues)")
    for src in sources:
        target = raw / src.name
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
    return [raw / p.name for p in sources]


def build_demo_mimi(directory: Path, random_codec: bool = False) -> None:
    """The trained demo codec (assets/demo_mimi, see backend.demo.codec_training), or with `random_codec` the
    tiny random Mimi: the same frame layout, ten times faster, but everything it decodes is noise."""
    from backend.models.source import DEMO_MIMI_ASSET, MIMI_CONFIG, MIMI_WEIGHTS, random_mimi, save_mimi, tiny_mimi_config

    if random_codec:
        cfg = tiny_mimi_config()
        save_mimi(random_mimi(cfg, seed=DEMO_SEED), cfg, directory)
        return
    for name in (MIMI_WEIGHTS, MIMI_CONFIG):
        with atomic_path(directory / name) as tmp:
            shutil.copyfile(DEMO_MIMI_ASSET / name, tmp)


def demo_lm() -> "LMModel":
    """The demo LM: SPEC.md's tiny LM with weights drawn from a fixed seed (same on every machine)."""
    import torch
    from moshi.models.loaders import get_moshi_lm

    from backend.models.source import tiny_lm_kwargs

    torch.manual_seed(DEMO_SEED)
    return get_moshi_lm(None, lm_kwargs=tiny_lm_kwargs(), dtype=torch.float32)


def build_demo_lm(directory: Path) -> None:
    from backend.models.source import save_lm, tiny_lm_kwargs

    save_lm(demo_lm(), tiny_lm_kwargs(), directory)


def create_demo_workspace(path: str | Path, random_codec: bool = False) -> Workspace:
    """Create (or complete) a demo workspace: the demo dialogues, the trained demo codec (or the tiny random
    one), the tiny random LM, a small tokenizer and settings pointing at them. Whatever is already there is reused, so a second call
    is cheap; each file is written atomically, so an interrupted call is finished by the next one."""
    from backend.models.source import LM_KWARGS, LM_WEIGHTS, MIMI_CONFIG, MIMI_WEIGHTS
    from backend.dataset.spm import train_spm

    ws = Workspace(Path(path).resolve(), WorkspaceSettings())
    for folder in ws.folders():
        folder.mkdir(parents=True, exist_ok=True)
    copy_demo_dialogues(ws.raw)
    # A model folder counts as built only with both of its files (an interrupted save leaves one).
    if not all((ws.demo_mimi / f).exists() for f in (MIMI_WEIGHTS, MIMI_CONFIG)):
        build_demo_mimi(ws.demo_mimi, random_codec)
    if not all((ws.demo_lm / f).exists() for f in (LM_WEIGHTS, LM_KWARGS)):
        build_demo_lm(ws.demo_lm)
    if not ws.demo_tokenizer.exists():
        train_spm(demo_sentences(), ws.demo_tokenizer, vocab_size=DEMO_VOCAB_SIZE)
    if ws.settings_file.exists():
        return open_workspace(ws.root)  # keep the user's choices
    return ws.with_settings(ws.settings)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create or inspect a studio workspace.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init-demo", help="create (or complete) an offline demo workspace").add_argument("dir", type=Path)
    sub.add_parser("show", help="print a workspace's settings and contents").add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        ws = create_demo_workspace(args.dir) if args.command == "init-demo" else open_workspace(args.dir)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe_workspace(ws))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def model_folders(ws: Workspace) -> list[str]:
    """Every LM folder of the workspace, relative to it: models/, run checkpoints and exports (newest runs first)."""
    from backend.models.source import LM_KWARGS

    found = sorted(ws.models.glob(f"*/{LM_KWARGS}"))
    for run in sorted(ws.runs.glob("*/"), reverse=True):
        found += sorted((run / "exports").glob(f"*/{LM_KWARGS}"), reverse=True)
        found += sorted((run / "checkpoints").glob(f"step-*/{LM_KWARGS}"), reverse=True)
    return [str(p.parent.relative_to(ws.root)) for p in found]
