"""The text tokenizer a model, a dataset and a run share, and the checks that they do.

Two tokenizers can share a file name (J-Moshi's rinna model and Kyutai's English one are both
`tokenizer_spm_32k_3.model`), so a tokenizer is named by a fingerprint of its pieces: the id, text, score and kind
of every piece, which decide every tokenization (the file's other contents, such as the trainer's input paths, do
not). Text-token audits, datasets (`<dataset>/tokenizer.json`) and initialised models (`<model>/tokenizer.json`)
record it with the vocabulary size and the PAD/EPAD ids; a training checkpoint's is its base model's. Whatever
joins two of them (init, training, continuations, chat) refuses a disagreement before any work: ids from another
tokenizer are other words, silently.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm

from backend.core.atomic import write_text_atomic
from backend.core.errors import ConfigError, InputError
from backend.models.checkpoints import TRAINER_STATE  # a checkpoint's state names its base model

RECORD_FILE = "tokenizer.json"


def load_spm(path: str | Path) -> spm.SentencePieceProcessor:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "SentencePiece model not found")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as e:
        raise InputError(path, f"not a SentencePiece model ({e})") from None


def piece_kind(sp: spm.SentencePieceProcessor, pid: int) -> str:
    for kind, test in (
        ("unknown", sp.is_unknown),
        ("control", sp.is_control),
        ("byte", sp.is_byte),
        ("unused", sp.is_unused),
    ):
        if test(pid):
            return kind
    return "normal"


def fingerprint(sp: spm.SentencePieceProcessor) -> str:
    """16 hex digits of a SHA-256 over every piece's id, text, score and kind: equal models, equal prints."""
    digest = hashlib.sha256()
    for pid in range(sp.get_piece_size()):
        digest.update(f"{pid}\t{sp.id_to_piece(pid)}\t{sp.get_score(pid)!r}\t{piece_kind(sp, pid)}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TokenizerRecord:
    fingerprint: str
    vocab_size: int
    pad_id: int
    epad_id: int
    file: str = ""  # where it was read from, for messages only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"tokenizer {self.fingerprint} ({self.vocab_size} pieces, PAD {self.pad_id}, EPAD {self.epad_id}" + (
            f", {self.file})" if self.file else ")"
        )


def record_of(sp: spm.SentencePieceProcessor, pad_id: int, epad_id: int, file: str | Path = "") -> TokenizerRecord:
    return TokenizerRecord(fingerprint(sp), sp.get_piece_size(), pad_id, epad_id, str(file))


def read_tokenizer(path: str | Path, pad_id: int, epad_id: int) -> TokenizerRecord:
    return record_of(load_spm(path), pad_id, epad_id, path)


def write_record(folder: Path, record: TokenizerRecord) -> Path:
    write_text_atomic(folder / RECORD_FILE, json.dumps(record.to_dict(), indent=1) + "\n")
    return folder / RECORD_FILE


def read_record(folder: str | Path) -> TokenizerRecord | None:
    """The tokenizer recorded in a dataset or model folder; a checkpoint's is its base model's. None: not recorded
    (made before records, or a hub model)."""
    folder = Path(folder)
    path = folder / RECORD_FILE
    if path.is_file():
        try:
            return TokenizerRecord(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:
            raise InputError(path, f"not a tokenizer record ({e})") from None
    state = folder / TRAINER_STATE
    if state.is_file():
        base = json.loads(state.read_text(encoding="utf-8")).get("base_model")
        if base and Path(base).is_dir() and Path(base).resolve() != folder.resolve():
            return read_record(base)
    return None


def model_pad_ids(kwargs: dict[str, Any]) -> tuple[int, int]:
    """(PAD, EPAD) of an LM from its kwargs (moshi's LMModel defaults: 3 and 0)."""
    return int(kwargs.get("existing_text_padding_id", 3)), int(kwargs.get("existing_text_end_padding_id", 0))


def check_model(
    model: str | Path, datasets: dict[str, str | Path | None] | None = None, tokenizer: str | Path | None = None
) -> None:
    """Before a model meets data (training, continuations) or a tokenizer (chat): refuse (ConfigError) when the
    datasets' recorded tokenizers, the tokenizer file and the model's record disagree, or do not fit the model's
    text card and PAD/EPAD ids. `datasets`: a name per dataset folder ("train_data") and the folder."""
    from backend.models.weights import lm_kwargs_of

    kwargs = lm_kwargs_of(model)
    pads = model_pad_ids(kwargs)
    sides = {f"model {model}": read_record(model) if Path(model).is_dir() else None}
    sides |= {f"{name} {folder}": read_record(folder) for name, folder in (datasets or {}).items() if folder}
    if tokenizer:
        sides[f"tokenizer {tokenizer}"] = read_tokenizer(tokenizer, *pads)
    check_agreement(sides, text_card=int(kwargs["text_card"]), model_pad=pads)


def check_agreement(
    what: dict[str, TokenizerRecord | None], text_card: int | None = None, model_pad: tuple[int, int] | None = None
) -> None:
    """Refuse (ConfigError, naming both sides) when recorded tokenizers differ, when a vocabulary is larger than the
    model's text card, or when PAD/EPAD ids differ from each other's or the model's (`model_pad`: its PAD, EPAD).
    `what`: a name per side ("dataset dataset/", "model models/x", "tokenizer models/t.model") and its record."""
    known = [(name, r) for name, r in what.items() if r is not None]
    for name, r in known:
        if text_card is not None and r.vocab_size > text_card:
            raise ConfigError(
                f"{name}: its {r.describe()} has more pieces than the model's text card "
                f"({text_card}): ids past it have no embedding (re-initialise a model for it: "
                "init --reinit-text-embeddings keeps the card, so the tokenizer must fit it)"
            )
        if model_pad is not None and (r.pad_id, r.epad_id) != model_pad:
            raise ConfigError(
                f"{name}: PAD {r.pad_id} / EPAD {r.epad_id}, but the model's are PAD {model_pad[0]} / "
                f"EPAD {model_pad[1]} (existing_text_padding_id / existing_text_end_padding_id)"
            )
    for (name_a, a), (name_b, b) in zip(known, known[1:]):
        if a.fingerprint != b.fingerprint:
            raise ConfigError(
                f"different tokenizers: {name_a} has {a.describe()}, {name_b} has {b.describe()}; text "
                "ids of one tokenizer are other words in the other. Use the same tokenizer (tokenize the "
                "text again, or re-initialise the model with --reinit-text-embeddings for a new one)"
            )
        if (a.pad_id, a.epad_id) != (b.pad_id, b.epad_id):
            raise ConfigError(
                f"{name_a} has PAD {a.pad_id} / EPAD {a.epad_id}, {name_b} PAD {b.pad_id} / EPAD "
                f"{b.epad_id}: use the same ids"
            )
