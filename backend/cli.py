"""`moshi-studio <stage> [settings...]`: the one command of every stage (installed by pyproject.toml's
[project.scripts]; `python -m backend.cli` is the same). Each stage is its module's own `main(argv)`, so
`python -m backend.<package>.<module>` keeps working and `moshi-studio <stage> --help` lists its settings.
A new stage is one line in STAGES."""

import argparse
import importlib
import sys
from typing import NamedTuple


class Stage(NamedTuple):
    module: str  # imported only when the stage runs: most stages load torch
    summary: str


STAGES: dict[str, Stage] = {
    "workspace": Stage(
        "backend.demo.workspace",
        "create an empty workspace for your own data (init DIR), the "
        "offline demo one (init-demo DIR), or show one (show DIR)",
    ),
    "join-mono": Stage("backend.data.mono_pair", "two mono recordings (one per speaker) -> one stereo dialogue"),
    "annotate": Stage("backend.data.annotate.run", "stereo recordings -> word-timed transcripts (ASR or alignment)"),
    "validate": Stage("backend.data.validate", "check dialogues (stereo audio + word transcript), with reasons"),
    "tokenize-audio": Stage("backend.dataset.tokenize_audio", "stereo dialogue audio -> Mimi tokens"),
    "tokenize-text": Stage("backend.dataset.tokenize_text", "word transcripts -> per-frame text tokens"),
    "tokenizer": Stage(
        "backend.dataset.tokenizer_cli",
        "a SentencePiece model's fingerprint, PAD/EPAD pieces and "
        "byte fallback, and its pieces on transcripts (inspect MODEL); train one on "
        "transcripts (train)",
    ),
    "build-dataset": Stage("backend.dataset.build", "merge audio and text tokens into the Parquet dataset"),
    "personas": Stage("backend.dataset.personas", "set or remove a dialogue's persona (role text + voice prompt)"),
    "timeline": Stage("backend.dataset.timeline", "show the token timeline of one dataset row"),
    "init": Stage("backend.models.initialise", "turn a Moshi LM into the model a fine-tune starts from"),
    "runs": Stage("backend.finetune.runs", "fine-tune runs: start, list, show, abort, resume"),
    "export": Stage("backend.models.export", "export a training checkpoint for serving"),
    "generate": Stage("backend.inference.generate", "prompted continuations of dataset dialogues"),
    "turn-taking": Stage("backend.inference.turn_taking", "turn-taking statistics of stereo dialogues"),
    "evaluate": Stage(
        "backend.evaluate.job",
        "behaviour probes through the chat loop, Full-Duplex-Bench's metrics, "
        "models side by side: start, show, resume, abort, score",
    ),
    "probes": Stage("backend.demo.probes", "synthesize the behaviour probe sets (assets/probes, developers)"),
    "chat-server": Stage("backend.inference.chat_server", "serve /api/chat (moshi's protocol) without the studio"),
    "demo-dialogues": Stage("backend.demo.dialogues", "synthesize the demo dialogues (assets/demo, developers)"),
    "codec-training": Stage("backend.demo.codec_training", "train the demo codec (assets/demo_mimi, developers)"),
}


def parser() -> argparse.ArgumentParser:
    width = max(map(len, STAGES))
    table = "\n".join(f"  {name:<{width}}  {stage.summary}" for name, stage in STAGES.items())
    p = argparse.ArgumentParser(
        prog="moshi-studio",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Moshi Studio's stages from the command line (the studio itself: python launch.py).",
        epilog=f"stages:\n{table}\n\n`moshi-studio <stage> --help` lists a stage's settings. The trainer is started "
        f"by `runs start` (accelerate launch -m backend.finetune.trainer).",
    )
    p.add_argument("stage", choices=STAGES, metavar="<stage>", help="one of the stages below")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = parser().parse_args(argv[:1]).stage  # --help, a missing or an unknown stage end here
    stage = STAGES[name]
    sys.argv[0] = f"moshi-studio {name}"  # argparse names the program after argv[0] in usage and errors
    return importlib.import_module(stage.module).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
