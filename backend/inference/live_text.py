"""Moshi's text stream as text, one token at a time, for live display (chat transcript, recordings).

SentencePiece with byte fallback spells a character missing from its vocabulary as byte pieces
("<0xE6>" "<0x97>" "<0xA5>" for 日): frequent in Japanese (J-Moshi). Those bytes are held until they
form a character, so a live transcript shows 日 rather than nothing or escape codes.
"""

import codecs

import sentencepiece as spm

from backend.dataset.text_layout import BOUNDARY


class LiveText:
    def __init__(self, tokenizer: spm.SentencePieceProcessor):
        self.tokenizer = tokenizer
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace")

    def reset(self) -> None:
        self._bytes.reset()

    def piece(self, token: int) -> str:
        """The text this token adds: "" for control pieces and for a byte that does not end a character yet;
        a character cut short by a normal piece is shown as U+FFFD."""
        if self.tokenizer.is_control(token):
            return ""
        piece = self.tokenizer.id_to_piece(token)
        if self.tokenizer.is_byte(token):
            text = self._bytes.decode(bytes([int(piece[3:5], 16)]))
        else:
            text = self._bytes.decode(b"", final=True) + piece.replace(BOUNDARY, " ")
        return "".join(c for c in text if c.isprintable())
