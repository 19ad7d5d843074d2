"""`moshi-studio tokenizer inspect MODEL [--transcripts DIR]`: what a SentencePiece model is (a fingerprint of its
pieces, vocabulary size, PAD/EPAD pieces, byte fallback) and what it makes of transcripts (backend.dataset.
tokenizer_inspect). `moshi-studio tokenizer train --transcripts DIR --output MODEL`: a model learnt from transcripts
(backend.dataset.tokenizer_train), then inspected on them."""

import argparse
import sys
from pathlib import Path

from backend.core import config
from backend.core.errors import StudioError
from backend.dataset.tokenizer_inspect import TokenizerInspectConfig, inspect_tokenizer
from backend.dataset.tokenizer_train import TokenizerTrainConfig, train_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SentencePiece tokenizers.")
    sub = parser.add_subparsers(dest="command", required=True)
    text = "fingerprint, vocabulary, PAD/EPAD pieces and byte fallback of a model; piece shares on transcripts"
    inspect = config.cli_parser(
        TokenizerInspectConfig, text, parser=sub.add_parser("inspect", help=text, description=text)
    )
    inspect.add_argument("model", type=Path, help="SentencePiece model file (.model)")
    text = "train a SentencePiece model on the words of transcripts, PAD/EPAD on the ids the dataset expects"
    config.cli_parser(TokenizerTrainConfig, text, parser=sub.add_parser("train", help=text, description=text))
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            cfg = config.from_cli(TokenizerTrainConfig, args)
            report = inspect_tokenizer(
                TokenizerInspectConfig(
                    model=train_tokenizer(cfg),
                    transcripts=cfg.transcripts,
                    pad_id=cfg.pad_id,
                    epad_id=cfg.epad_id,
                    whitespace=cfg.whitespace,
                )
            )
        else:
            report = inspect_tokenizer(config.from_cli(TokenizerInspectConfig, args))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
