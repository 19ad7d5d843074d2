"""The demo codec's training script runs end to end on a tiny corpus (so it cannot rot), and the
speech corpus it trains on is seeded, varied and kept apart from the held-out sentences."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from backend.core.spec import FRAME_SIZE, NUM_CODEBOOKS, SAMPLE_RATE
from backend.demo import speech_corpus
from backend.demo.codec_training import CodecTrainConfig, train_codec
from backend.models.source import MIMI_WEIGHTS
from backend.models.weights import load_mimi

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt)")


def test_sentences_are_seeded_and_held_out_apart() -> None:
    train, held = speech_corpus.split_sentences(200, 20, seed=3)
    assert train == speech_corpus.split_sentences(200, 20, seed=3)[0]
    assert not set(train) & set(held) and len(set(train)) == 200
    assert speech_corpus.sentences(50, seed=4) != speech_corpus.sentences(50, seed=3)


@needs_espeak
def test_corpus_has_clearly_different_voices(tmp_path) -> None:
    pytest.importorskip("piper", reason="piper-tts is not installed (pip install -e '.[codec]')")
    text = "Could you tell me where the station is?"
    piper = speech_corpus.synthesize(text, speech_corpus.VOICES[1], tmp_path)
    espeak = speech_corpus.synthesize(text, speech_corpus.VOICES[4], tmp_path)
    assert len(piper) > SAMPLE_RATE and len(espeak) > SAMPLE_RATE
    # Different voices: the long-term spectra differ markedly (not one voice at another level).
    spectra = [np.abs(np.fft.rfft(a[:SAMPLE_RATE], 4096)) for a in (piper, espeak)]
    spectra = [s / s.sum() for s in spectra]
    assert np.abs(spectra[0] - spectra[1]).sum() > 0.3


@needs_espeak
def test_training_smoke(tmp_path) -> None:
    pytest.importorskip("piper", reason="piper-tts is not installed (pip install -e '.[codec]')")
    cfg = CodecTrainConfig(
        output_dir=str(tmp_path / "codec"),
        corpus_dir=str(tmp_path / "corpus"),
        train_sentences=6,
        held_out_sentences=2,
        steps=6,
        warmup_steps=3,
        batch_size=2,
        segment_frames=4,
        n_filters=4,
        dimension=32,
        log_every=1,
        save_every=0,
    )
    out = train_codec(cfg)
    history = json.loads((out / "training.json").read_text())["history"]
    assert [h["step"] for h in history] == list(range(6))
    assert history[0]["commit"] == 0.0 and history[-1]["commit"] > 0.0  # the quantizer joins after warm-up
    assert all(np.isfinite(h["mel"]) for h in history)
    assert len(list((tmp_path / "corpus" / "held_out").glob("*.flac"))) == 2
    # Seeded: the same config again (reusing the synthesized corpus) writes the same weights, byte for byte.
    again = train_codec(dataclasses.replace(cfg, output_dir=str(tmp_path / "again")))
    assert (again / MIMI_WEIGHTS).read_bytes() == (out / MIMI_WEIGHTS).read_bytes()
    mimi = load_mimi(out)  # the moshi loader reads what the script wrote
    audio = sf.read(sorted((tmp_path / "corpus" / "train").glob("*.flac"))[0], dtype="float32")[0]
    with torch.no_grad():
        codes = mimi.encode(torch.from_numpy(audio[: 10 * FRAME_SIZE])[None, None])
    assert codes.shape == (1, NUM_CODEBOOKS, 10)
    assert len(torch.unique(codes[0, 0])) > 1  # k-means gave the codebook more than one live entry
