"""Persona prefix (issue 15): the builder against the issue's table written out by hand, the voice encoding,
and the prefix stepped through moshi's LMGen against the model reading the training view."""

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from backend.core.errors import InputError
from backend.dataset.spm import train_spm
from backend.dataset.training_view import delayed_input
from backend.demo.dialogues import demo_sentences
from backend.demo.workspace import DEMO_VOCAB_SIZE
from backend.models import persona
from backend.models.source import random_mimi, tiny_mimi_config
from backend.models.text_tokenizer import load_spm

# The table, typed in again: nothing below reads the module's constants.
SILENCE = [948, 243, 1178, 546, 1736, 1030, 1978, 2008]
SINE = [430, 1268, 381, 1611, 1095, 1495, 56, 472]


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("spm") / "demo.model"
    train_spm(demo_sentences(), path, vocab_size=DEMO_VOCAB_SIZE)
    return load_spm(path)


@pytest.fixture(scope="module")
def mimi():  # type: ignore[no-untyped-def]
    return random_mimi(tiny_mimi_config(), seed=3)


def voice_wav(path: Path, seconds: float, sr: int) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    wav = 0.05 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
    sf.write(path, wav.astype(np.float32), sr)
    return path


def expected_prefix(voice: np.ndarray, text_ids: list[int]) -> np.ndarray:
    """Column by column from the table: voice, 6 silence, role text, 6 silence."""
    columns = [[3] + list(voice[:, f]) + SINE for f in range(voice.shape[1])]
    columns += [[3] + SILENCE + SINE] * 6
    columns += [[t] + SILENCE + SINE for t in text_ids]
    columns += [[3] + SILENCE + SINE] * 6
    return np.array(columns, dtype=np.int64).T


def test_role_text_wrapping(sp) -> None:  # type: ignore[no-untyped-def]
    assert persona.wrap_role_text("  You are a barista. ") == "<system> You are a barista. <system>"
    assert persona.wrap_role_text("<system> As is. <system>") == "<system> As is. <system>"
    assert persona.wrap_role_text("<system> half") == "<system> <system> half <system>"
    ids = persona.role_text_ids(sp, " You are a barista.\n")
    assert ids == sp.encode("<system> You are a barista. <system>")
    assert sp.bos_id() not in ids and sp.eos_id() not in ids
    assert persona.role_text_ids(sp, "") == []


def test_whitespace_role_text_is_fed_as_personaplex_does(sp) -> None:  # type: ignore[no-untyped-def]
    # PersonaPlex (server.py, offline.py): ids = encode(wrap_with_system_tags(text)) if len(text) > 0 else None,
    # and wrap_with_system_tags strips then puts the rest between "<system> " and " <system>".
    ids = sp.encode("<system>  <system>")
    assert persona.role_text_ids(sp, "   ") == ids
    made = persona.make_persona(" \n ", sp, None)
    assert made.text_ids == tuple(ids)
    assert made.rows().shape[1] == 6 + len(ids) + 6 - 1  # role frames present; frame 0 is never fed


def test_loudness_is_measured_on_float32_samples() -> None:
    import pyloudnorm

    # PersonaPlex's normalize_audio gives sphn's float32 samples to pyloudnorm unconverted.
    t = np.arange(31_000) / 24_000
    wav = (0.05 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    meter = pyloudnorm.Meter(24_000)
    expected = pyloudnorm.normalize.loudness(wav, meter.integrated_loudness(wav), -24.0)
    np.testing.assert_array_equal(persona.normalise_loudness(wav), expected)


def test_prefix_matches_the_table(sp, mimi, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyloudnorm

    wav_path = voice_wav(tmp_path / "voice.wav", 1.3, 24_000)
    codes = persona.voice_codes(mimi, wav_path)
    samples = sf.read(wav_path, dtype="float32")[0]
    assert codes.shape == (8, math.ceil(len(samples) / 1920))  # ceil(samples / 1920) frames
    # Independently: -24 LUFS by the meter, zero-padded to whole frames, encoded in one non-streaming call.
    meter = pyloudnorm.Meter(24_000)
    gain = 10 ** ((-24.0 - meter.integrated_loudness(samples)) / 20)
    padded = np.zeros(codes.shape[1] * 1920, dtype=np.float32)
    padded[: len(samples)] = samples * gain
    with torch.no_grad():
        whole = mimi.encode(torch.from_numpy(padded)[None, None])[0].numpy()
    assert np.mean(whole == codes) > 0.95  # streaming vs batch: same frames up to float noise

    text = "You are a librarian."
    ids = sp.encode("<system> You are a librarian. <system>")
    prefix = persona.build_prefix(codes, persona.role_text_ids(sp, text))
    assert prefix.dtype == np.int64
    np.testing.assert_array_equal(prefix, expected_prefix(codes, ids))
    assert prefix.shape[1] == codes.shape[1] + 6 + len(ids) + 6
    made = persona.make_persona(text, sp, codes)
    np.testing.assert_array_equal(made.rows(), expected_prefix(codes, ids)[:, 1:])  # frame 0 is never fed


def test_empty_parts_and_bad_voices(sp, mimi, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = persona.build_prefix(None, [])
    np.testing.assert_array_equal(empty, expected_prefix(np.zeros((8, 0), dtype=np.int64), []))
    with pytest.raises(InputError, match="at least 0.4 s"):
        persona.voice_codes(mimi, voice_wav(tmp_path / "short.wav", 0.2, 24_000))
    sf.write(tmp_path / "silent.wav", np.zeros(24_000, dtype=np.float32), 24_000)
    with pytest.raises(InputError, match="silent"):
        persona.voice_codes(mimi, tmp_path / "silent.wav")
    with pytest.raises(InputError, match="no such voice"):
        persona.voice_codes(mimi, tmp_path / "missing.wav")
    # Another sample rate is resampled to 24 kHz before framing.
    codes = persona.voice_codes(mimi, voice_wav(tmp_path / "v16.wav", 1.0, 16_000))
    assert codes.shape == (8, math.ceil(24_000 / 1920))


def test_step_prefix_leaves_lmgen_where_training_would(sp, mimi, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from moshi.models import LMGen

    from backend.demo.workspace import demo_lm

    torch.manual_seed(0)
    lm = demo_lm().eval()
    codes = persona.voice_codes(mimi, voice_wav(tmp_path / "voice.wav", 0.6, 24_000))
    rows = persona.make_persona("A barista.", sp, codes).rows()
    m = rows.shape[1]
    user0 = np.arange(8, dtype=np.int64) + 100  # the user's first conversation frame
    logits: list[torch.Tensor] = []
    gen = LMGen(lm, use_sampling=False, on_text_logits_hook=lambda x: logits.append(x.clone()))
    with gen.streaming(1):
        pending = persona.step_prefix(gen, rows)
        out = gen.step(torch.from_numpy(user0)[None, :, None])
        out = persona.finish_prefix(gen, out, pending)
        assert out is not None
        np.testing.assert_array_equal(out[0, 1:, 0].numpy(), rows[1:9, -1])  # the prefix's last frame
        cache = gen._streaming_state.cache[0, 2:9, (m + 1) % gen._streaming_state.cache.shape[-1]]
        np.testing.assert_array_equal(cache.numpy(), rows[2:9, -1])
    # The same model reading the training view of the prefix; LMGen's column m carries the user's new frame.
    seq = delayed_input(rows)  # [17, m + 1]
    seq[9, m] = user0[0]
    with torch.no_grad():
        _, text_logits = lm.forward_text(torch.from_numpy(seq)[None])
    torch.testing.assert_close(logits[-1][0, 0, 0], text_logits[0, 0, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits[m - 1][0, 0, 0], text_logits[0, 0, m - 1], rtol=1e-4, atol=1e-4)
