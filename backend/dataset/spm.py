"""Training SentencePiece models (the demo's, `moshi-studio tokenizer train`).

Loading one: backend.models.text_tokenizer."""

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from backend.core.atomic import atomic_path
from backend.core.errors import ConfigError
from backend.core.spec import EPAD_ID, PAD_ID

SPECIAL_IDS = range(4)  # SentencePiece's four special pieces: <unk>, <s>, </s>, <pad>


def special_ids(pad_id: int, epad_id: int) -> dict[str, int]:
    """SentencePiece's special ids with PAD on <pad> and EPAD on <unk> (as Kyutai's and J-Moshi's models: a
    frame's EPAD then never collides with a text piece), <s> and </s> on the other two of ids 0..3."""
    if pad_id == epad_id or pad_id not in SPECIAL_IDS or epad_id not in SPECIAL_IDS:
        raise ConfigError(
            f"pad_id {pad_id} and epad_id {epad_id} must be two different ids among 0..3, "
            "SentencePiece's special pieces (Kyutai and J-Moshi: PAD 3, EPAD 0)"
        )
    bos, eos = (i for i in SPECIAL_IDS if i not in (pad_id, epad_id))
    return {"unk_id": epad_id, "pad_id": pad_id, "bos_id": bos, "eos_id": eos}


def train_spm(
    sentences: Iterable[str],
    output: str | Path,
    vocab_size: int = 1000,
    byte_fallback: bool = True,
    character_coverage: float = 1.0,
    pad_id: int = PAD_ID,
    epad_id: int = EPAD_ID,
) -> Path:
    """Train a unigram model (at most `vocab_size` pieces: a small corpus gives fewer) with PAD and EPAD on
    SentencePiece's <pad> and <unk>. Characters outside `character_coverage` of the corpus get no piece: with
    byte fallback they become their UTF-8 bytes, else <unk>."""
    sentences = [s for s in sentences if s.strip()]
    if not sentences:
        raise ConfigError(f"{output}: no text to train a tokenizer on")
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type="unigram",
            byte_fallback=byte_fallback,
            character_coverage=character_coverage,
            hard_vocab_limit=False,
            minloglevel=2,
            **special_ids(pad_id, epad_id),
        )
    except RuntimeError as e:  # e.g. a vocabulary smaller than the corpus's characters (+ 256 bytes)
        raise ConfigError(f"{output}: SentencePiece could not train: {e}") from None
    output = Path(output)
    with atomic_path(output) as tmp:
        tmp.write_bytes(buf.getvalue())
    return output
