"""J-Moshi's and Kyutai's own text tools, run from checkouts outside the repository (their code is never copied
here): `JMOSHI_FINETUNE` names a checkout of nu-dialogue/moshi-finetune (J-Moshi's training code, whose
tools/tokenize_text.py has --no_whitespace_before_word), `KYUTAI_FINETUNE` one of kyutai-labs/moshi-finetune
(finetune/data/interleaver.py). Tests that need them skip with the reason when the variable is unset."""

import copy
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import sentencepiece as spm

from backend.core.spec import EPAD_ID, FRAME_RATE, PAD_ID
from backend.data.transcripts import Word

TOOLS = {
    "jmoshi": ("JMOSHI_FINETUNE", "tools/tokenize_text.py"),
    "kyutai": ("KYUTAI_FINETUNE", "finetune/data/interleaver.py"),
}


def checkout_file(tool: str) -> Path | None:
    variable, relative = TOOLS[tool]
    root = os.environ.get(variable)
    return Path(root) / relative if root and (Path(root) / relative).is_file() else None


def why_missing(tool: str) -> str:
    variable, relative = TOOLS[tool]
    return f"set {variable} to a checkout holding {relative} to compare with the tool itself"


def load(tool: str) -> ModuleType:
    path = checkout_file(tool)
    assert path is not None, why_missing(tool)
    name = f"reference_{tool}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def jmoshi_stream(words: list[Word], sp: spm.SentencePieceProcessor, whitespace: bool) -> list[int]:
    """J-Moshi's `tokenize_and_pad_text` on one speaker's words (it raises where it fails)."""
    transcript = [{"speaker": w.speaker, "word": w.word, "start": w.start, "end": w.end} for w in words]
    return load("jmoshi").tokenize_and_pad_text(
        word_transcript=copy.deepcopy(transcript),
        no_whitespace_before_word=not whitespace,
        text_tokenizer=sp,
        text_padding_id=PAD_ID,
        end_of_text_padding_id=EPAD_ID,
        audio_tokenizer_frame_rate=FRAME_RATE,
    )


def kyutai_stream(
    units: list[tuple[list[int], float, float]], sp: spm.SentencePieceProcessor, duration: float, keep_and_shift: bool
) -> list[int]:
    """Kyutai's `Interleaver.build_token_stream` on (ids, start, end) per word, sorted, zero-duration words
    removed as its `prepare_item` does."""
    interleaver = load("kyutai").Interleaver(
        sp, FRAME_RATE, PAD_ID, EPAD_ID, -1, keep_and_shift=keep_and_shift, device="cpu"
    )
    alignments = [(ids, (start, end), "SPEAKER_MAIN") for ids, start, end in units if start < end]
    return interleaver.build_token_stream(alignments, duration).flatten().tolist()
