"""The offline demo workspace: the demo dialogues, the trained demo codec (or a tiny random one), the tiny
random LM, a small tokenizer, and settings pointing at them. In English (assets/demo) or Japanese (assets/demo_ja:
J-Moshi's layout, words joined without spaces, and a tokenizer learnt from the transcripts as
`moshi-studio tokenizer train` does it). The command line also makes an empty workspace for the user's own data
(backend.core.workspace.create_empty_workspace).

    moshi-studio workspace init DIR [--mimi M --lm L --tokenizer T]   (empty: your own data, real weights)
    moshi-studio workspace init-demo DIR [--language ja]     (python -m backend.demo.workspace init-demo DIR)
    moshi-studio workspace show DIR
"""

import argparse
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from backend.core.atomic import atomic_path
from backend.core.errors import ConfigError, StudioError
from backend.core.workspace import (
    KYUTAI_REPO,
    KYUTAI_TOKENIZER,
    VOICES_DIR,
    Workspace,
    WorkspaceSettings,
    create_empty_workspace,
    describe_workspace,
    open_workspace,
)
from backend.demo.dialogues import DEMO_DIR, demo_sentences
from backend.demo.dialogues_ja import DEMO_JA_DIR
from backend.models.source import (
    DEMO_MIMI_ASSET,
    LM_KWARGS,
    LM_WEIGHTS,
    MIMI_CONFIG,
    MIMI_WEIGHTS,
    random_mimi,
    save_lm,
    save_mimi,
    tiny_lm_kwargs,
    tiny_mimi_config,
)

if TYPE_CHECKING:  # torch and moshi load only when models are built
    from moshi.models.lm import LMModel

DEMO_SEED = 0
# Big enough for the demo words' pieces plus the 256 byte-fallback pieces, small enough to train on the ~160 demo words.
DEMO_VOCAB_SIZE = 400
# Japanese: the demo's characters (about 95) plus the byte pieces; a coverage below 1 leaves the rarest characters
# (𠮷, 齬) without a piece, so byte fallback shows as it does with a real Japanese model and rare kanji.
JA_DEMO_VOCAB_SIZE = 400
JA_DEMO_COVERAGE = 0.99
LANGUAGES = ("en", "ja")
DEMO_DIRS = {"en": DEMO_DIR, "ja": DEMO_JA_DIR}


def copy_demo_dialogues(raw: Path, source: Path = DEMO_DIR) -> list[Path]:
    """Copy the demo's dialogues (assets/demo, or `source`) into `raw` (files already there are kept)."""
    sources = sorted(p for p in source.iterdir() if p.suffix in (".flac", ".json"))
    if not sources:
        raise ConfigError(
            f"{source}: the demo dialogues are missing (python -m backend.demo.dialogues, backend.demo.dialogues_ja)"
        )
    for src in sources:
        target = raw / src.name
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
    return [raw / p.name for p in sources]


def copy_demo_personas(ws: Workspace, dialogues: bool) -> list[Path]:
    """The persona demo (assets/demo_personas, backend.demo.personas): its voice prompts into voices/ and, with
    `dialogues`, its dialogues into raw/ with each one's persona (speaker A, role text, voice) beside it. Files
    already there are kept. Returns the persona files written."""
    from backend.data.raw_personas import RawPersona, persona_path, save_raw_persona
    from backend.demo.personas import PERSONA_DIR, PERSONAS

    written = []
    for p in PERSONAS:
        copies = [(PERSONA_DIR / VOICES_DIR / f"{p.name}.wav", ws.voices / f"{p.name}.wav")]
        if dialogues:
            copies += [(PERSONA_DIR / f"{p.name}{ext}", ws.raw / f"{p.name}{ext}") for ext in (".flac", ".json")]
        for src, target in copies:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp:
                    shutil.copyfile(src, tmp)
        if dialogues and not persona_path(ws, p.name).exists():
            written.append(save_raw_persona(ws, p.name, RawPersona("A", p.role, f"{p.name}.wav")))
    return written


def build_demo_mimi(directory: Path, random_codec: bool = False) -> None:
    """The trained demo codec (assets/demo_mimi, see backend.demo.codec_training), or with `random_codec` the
    tiny random Mimi: the same frame layout, ten times faster, but everything it decodes is noise."""
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

    torch.manual_seed(DEMO_SEED)
    return get_moshi_lm(None, lm_kwargs=tiny_lm_kwargs(), dtype=torch.float32)


def build_demo_lm(directory: Path) -> None:
    save_lm(demo_lm(), tiny_lm_kwargs(), directory)


def build_demo_tokenizer(ws: Workspace, language: Literal["en", "ja"]) -> None:
    """English: trained on the demo scripts. Japanese: `tokenizer train` on the transcripts in raw/, words joined
    without spaces, PAD 3 and EPAD 0 as J-Moshi's."""
    if language == "en":
        from backend.dataset.spm import train_spm

        train_spm(demo_sentences(), ws.demo_tokenizer, vocab_size=DEMO_VOCAB_SIZE)
        return
    from backend.dataset.tokenizer_train import TokenizerTrainConfig, train_tokenizer

    train_tokenizer(
        TokenizerTrainConfig(
            transcripts=ws.raw,
            output=ws.demo_tokenizer,
            vocab_size=JA_DEMO_VOCAB_SIZE,
            character_coverage=JA_DEMO_COVERAGE,
            whitespace=False,
        )
    )


def create_demo_workspace(
    path: str | Path, random_codec: bool = False, personas: bool = False, language: Literal["en", "ja"] = "en"
) -> Workspace:
    """Create (or complete) a demo workspace: the demo dialogues, the persona demo's voice prompts (voices/), the
    trained demo codec (or the tiny random one), the tiny random LM, a small tokenizer and settings pointing at them.
    `personas` adds the persona demo's two dialogues with their personas to raw/: opt-in, because everything in
    raw/ joins every Build, and the demo fine-tune preset (1000 steps) is sized to memorise the three dialogues
    (the persona examples' ~75-frame prefixes would also lengthen ~1 batch in 6 by ~60%). Whatever is already there
    is reused, so a second call is cheap; each file is written atomically, so an interrupted call is finished by the
    next one. `language` "ja": the Japanese demo dialogues, their tokenizer, and settings joining words without
    spaces (the persona demo is English only)."""
    if language not in LANGUAGES:
        raise ConfigError(f"language: {language!r} is not one of {', '.join(LANGUAGES)}")
    if personas and language != "en":
        raise ConfigError("personas: the persona demo is English; leave out --personas with --language ja")
    ws = Workspace(Path(path).resolve(), WorkspaceSettings(whitespace=language == "en"))
    for folder in ws.folders():
        folder.mkdir(parents=True, exist_ok=True)
    copy_demo_dialogues(ws.raw, DEMO_DIRS[language])
    copy_demo_personas(ws, personas)
    # A model folder counts as built only with both of its files (an interrupted save leaves one).
    if not all((ws.demo_mimi / f).exists() for f in (MIMI_WEIGHTS, MIMI_CONFIG)):
        build_demo_mimi(ws.demo_mimi, random_codec)
    if not all((ws.demo_lm / f).exists() for f in (LM_WEIGHTS, LM_KWARGS)):
        build_demo_lm(ws.demo_lm)
    if not ws.demo_tokenizer.exists():
        build_demo_tokenizer(ws, language)
    if ws.settings_file.exists():
        return open_workspace(ws.root)  # keep the user's choices
    return ws.with_settings(ws.settings)


def create_workspace(
    path: str | Path, start: Literal["demo", "empty"], language: Literal["en", "ja"] = "en"
) -> Workspace:
    """A new workspace as `workspace init` (`start` "empty": the user's own data, Kyutai's weights) or `workspace
    init-demo` (`start` "demo", in `language`) makes it: what launch.py's --start and its start page choose."""
    if start == "empty":
        return create_empty_workspace(path)
    if start == "demo":
        return create_demo_workspace(path, language=language)
    raise ConfigError(f"start: {start!r} is not one of demo, empty")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create an empty or an offline demo workspace, or inspect one.")
    sub = parser.add_subparsers(dest="command", required=True)
    empty = sub.add_parser("init", help="create an empty workspace for your own data (no demo dialogues)")
    empty.add_argument("dir", type=Path)
    empty.add_argument("--mimi", default=KYUTAI_REPO, help="Mimi weights: hub id or path (default: %(default)s)")
    empty.add_argument("--lm", default=KYUTAI_REPO, help="Moshi LM: hub id or path (default: %(default)s)")
    empty.add_argument(
        "--tokenizer",
        default=KYUTAI_TOKENIZER,
        help="SentencePiece model, a file in the workspace (default: %(default)s, Kyutai's; put it there)",
    )
    init = sub.add_parser("init-demo", help="create (or complete) an offline demo workspace")
    init.add_argument("dir", type=Path)
    init.add_argument(
        "--personas",
        action="store_true",
        help="also put the persona demo's dialogues (barista, "
        "librarian) and their personas in raw/ (they then join every dataset Build)",
    )
    init.add_argument(
        "--language",
        choices=LANGUAGES,
        default="en",
        help="the demo's language: en (assets/demo) or "
        "ja (assets/demo_ja, J-Moshi's layout: words joined without spaces)",
    )
    sub.add_parser("show", help="print a workspace's settings and contents").add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            ws = create_empty_workspace(args.dir, args.mimi, args.lm, args.tokenizer)
        elif args.command == "init-demo":
            ws = create_demo_workspace(args.dir, personas=args.personas, language=args.language)
        else:
            ws = open_workspace(args.dir)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(describe_workspace(ws))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
