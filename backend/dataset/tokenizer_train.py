"""`moshi-studio tokenizer train`: a SentencePiece model from a folder of word transcripts.

The training text is what the text layouts tokenize: each turn (a run of one speaker's words, in time order)
joined with spaces, or without them for languages written without (Japanese, Chinese), so the pieces learnt are
the pieces the dataset will hold. PAD and EPAD land on SentencePiece's <pad> and <unk> at the ids the dataset
expects (Kyutai's and J-Moshi's: 3 and 0).
"""

from dataclasses import dataclass
from pathlib import Path

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.spec import EPAD_ID, PAD_ID
from backend.data.transcripts import Transcript, load_transcript
from backend.dataset.spm import train_spm
from backend.dataset.tokenize_text import transcript_files


@dataclass
class TokenizerTrainConfig:
    transcripts: Path = config.option(Path("workspace/raw"), "folder of word transcripts <name>.json to learn from")
    output: Path = config.option(Path("workspace/models/tokenizer.model"), "SentencePiece model file to write")
    vocab_size: int = config.option(
        32000,
        "largest vocabulary (a small corpus gives fewer pieces; with byte "
        "fallback at least the corpus's characters + 260)",
        ge=16,
        le=1_000_000,
    )
    byte_fallback: bool = config.option(True, "characters without a piece become their UTF-8 bytes (else <unk>)")
    character_coverage: float = config.option(
        0.9995,
        "share of the corpus's characters that get a piece of their own (1: all; Japanese models: 0.9995)",
        gt=0.0,
        le=1.0,
    )
    pad_id: int = config.option(PAD_ID, "text id of an empty frame (PAD): SentencePiece's <pad>", ge=0, le=3)
    epad_id: int = config.option(EPAD_ID, "text id of EPAD: SentencePiece's <unk>", ge=0, le=3)
    whitespace: bool = config.option(
        True, "join a turn's words with spaces (off for Japanese and Chinese, as the text layouts join them)"
    )


def turns(transcript: Transcript, whitespace: bool) -> list[str]:
    """Each run of one speaker's words, in time order, joined as the text layouts join them."""
    out: list[str] = []
    speaker = None
    for w in sorted(transcript.words, key=lambda w: w.start):
        text = w.word.strip()
        if not text:
            continue
        if w.speaker == speaker:
            out[-1] += (" " if whitespace else "") + text
        else:
            out.append(text)
            speaker = w.speaker
    return out


def train_tokenizer(cfg: TokenizerTrainConfig) -> Path:
    sentences = [t for path in transcript_files(cfg.transcripts) for t in turns(load_transcript(path), cfg.whitespace)]
    if not sentences:
        raise ConfigError(f"transcripts: no words in {cfg.transcripts} to train a tokenizer on")
    return train_spm(
        sentences, cfg.output, cfg.vocab_size, cfg.byte_fallback, cfg.character_coverage, cfg.pad_id, cfg.epad_id
    )
