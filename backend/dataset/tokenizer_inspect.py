"""Facts about a SentencePiece model, and what it makes of a folder of transcripts.

A model is named by a fingerprint of its pieces, not its file name (backend.models.text_tokenizer). On
transcripts, the shares of byte-fallback, unknown and bare "▁" pieces tell whether the model fits the language:
with Japanese and spaces between words, J-Moshi saw close to half its pieces become a bare "▁".
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sentencepiece as spm

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.spec import SPEAKERS
from backend.data.transcripts import load_transcript
from backend.dataset.text_layout import BOUNDARY, LayoutOptions, speaker_pieces
from backend.dataset.tokenize_text import TextLayoutSettings, transcript_files
from backend.models.text_tokenizer import fingerprint, load_spm, piece_kind

PROBE = "\U000f0000"  # a private-use character no tokenizer has a piece for: bytes with byte fallback, else <unk>


@dataclass
class TokenizerInspectConfig(TextLayoutSettings):
    model: Path = config.option(Path("workspace/models/tokenizer.model"), "SentencePiece model file", cli=False)
    transcripts: Path | None = config.option(
        None,
        "folder of word transcripts <name>.json: the shares of "
        "byte-fallback, unknown and bare '▁' pieces they tokenize into",
    )


def byte_fallback(sp: spm.SentencePieceProcessor) -> bool:
    """Whether characters without a piece become their UTF-8 bytes (else one unknown piece)."""
    return any(sp.is_byte(pid) for pid in sp.encode(PROBE))


@dataclass
class PieceShares:
    """Pieces of a set of transcripts, as the layout tokenizes them, and how many are of each doubtful kind."""

    files: int = 0
    pieces: int = 0
    byte_fallback: int = 0
    unknown: int = 0
    bare_boundary: int = 0

    def add(self, ids: list[int], sp: spm.SentencePieceProcessor) -> None:
        self.pieces += len(ids)
        self.byte_fallback += sum(sp.is_byte(pid) for pid in ids)
        self.unknown += sum(sp.is_unknown(pid) for pid in ids)
        self.bare_boundary += sum(sp.id_to_piece(pid) == BOUNDARY for pid in ids)

    def share(self, count: int) -> float:
        return count / self.pieces if self.pieces else 0.0


@dataclass
class TokenizerReport:
    model: str
    fingerprint: str
    vocab_size: int
    byte_fallback: bool
    special: dict[str, dict[str, Any]]  # "pad" / "epad": the configured id, its piece and kind
    warnings: list[str] = field(default_factory=list)
    transcripts: PieceShares | None = None

    def lines(self) -> list[str]:
        out = [
            f"{self.model}",
            f"  fingerprint   {self.fingerprint}",
            f"  vocabulary    {self.vocab_size} pieces",
            f"  byte fallback {'on' if self.byte_fallback else 'off'}",
        ]
        out += [f"  {name.upper():<13} id {s['id']}: {s['piece']!r} ({s['kind']})" for name, s in self.special.items()]
        if self.transcripts is not None:
            t = self.transcripts
            out.append(
                f"  transcripts   {t.files} file(s), {t.pieces} pieces: byte fallback "
                f"{100 * t.share(t.byte_fallback):.1f}%, unknown {100 * t.share(t.unknown):.1f}%, bare ▁ "
                f"{100 * t.share(t.bare_boundary):.1f}%"
            )
        return out + [f"  ⚠ {w}" for w in self.warnings]


def special_pieces(sp: spm.SentencePieceProcessor, pad_id: int, epad_id: int) -> dict[str, dict[str, Any]]:
    size = sp.get_piece_size()
    for name, pid in (("pad_id", pad_id), ("epad_id", epad_id)):
        if not 0 <= pid < size:
            raise ConfigError(f"{name} {pid} is outside the tokenizer's ids 0..{size - 1}")
    return {
        name: {"id": pid, "piece": sp.id_to_piece(pid), "kind": piece_kind(sp, pid)}
        for name, pid in (("pad", pad_id), ("epad", epad_id))
    }


def transcript_shares(sp: spm.SentencePieceProcessor, folder: Path, options: LayoutOptions) -> PieceShares:
    shares = PieceShares()
    for path in transcript_files(folder):
        transcript = load_transcript(path)
        for speaker in SPEAKERS:
            shares.add(speaker_pieces(transcript.speaker_words(speaker), sp, options), sp)
        shares.files += 1
    return shares


def inspect_tokenizer(cfg: TokenizerInspectConfig) -> TokenizerReport:
    sp = load_spm(cfg.model)
    report = TokenizerReport(
        str(cfg.model),
        fingerprint(sp),
        sp.get_piece_size(),
        byte_fallback(sp),
        special_pieces(sp, cfg.pad_id, cfg.epad_id),
    )
    for name, s in report.special.items():
        if s["kind"] == "normal":
            report.warnings.append(
                f"{name.upper()} id {s['id']} is the text piece {s['piece']!r}: every "
                f"{s['piece']!r} in a transcript would read as {name.upper()}"
            )
    if cfg.transcripts is not None:
        options = LayoutOptions(cfg.layout, cfg.pad_id, cfg.epad_id, cfg.whitespace)
        report.transcripts = transcript_shares(sp, cfg.transcripts, options)
    return report
