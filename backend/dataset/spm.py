"""SentencePiece models: load any model file, or train a small one (the offline demo's)."""

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from backend.core.atomic import atomic_path
from backend.core.errors import InputError
from backend.core.spec import EPAD_ID, PAD_ID


def load_spm(path: str | Path) -> spm.SentencePieceProcessor:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "SentencePiece model not found")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as e:
        raise InputError(path, f"not a SentencePiece model ({e})") from None


def train_spm(sentences: Iterable[str], output: str | Path, vocab_size: int = 1000) -> Path:
    """Train a unigram model with byte fallback, with Kyutai's special ids (EPAD 0 = unk, PAD 3)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)), model_writer=buf, vocab_size=vocab_size,
        model_type="unigram", byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False,
        unk_id=EPAD_ID, bos_id=1, eos_id=2, pad_id=PAD_ID, minloglevel=2,
    )
    output = Path(output)
    with atomic_path(output) as tmp:
        tmp.write_bytes(buf.getvalue())
    return output
