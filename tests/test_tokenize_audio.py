"""backend.dataset.codec and the audio tokenization stage, with the tiny random Mimi (no downloads)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from backend.data.audio_io import load_stereo
from backend.dataset import codec
from backend.dataset import tokenize_audio as stage
from backend.dataset.codec import decode, encode_batch, encode_stereo, replicas
from backend.dataset.tokenize_audio import AudioTokenizeConfig, main, tokenize_audio
from backend.models.source import random_mimi, save_mimi, tiny_mimi_config

SPOKENWOZ = Path(__file__).resolve().parents[2] / "shared/data/spokenwoz_sample"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 intra-op threads, and on a busy 2-core machine every small
    parallel region can stall on a descheduled thread (measured: 0.3 s -> 14 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mimi():
    return random_mimi(tiny_mimi_config()).eval()


@pytest.fixture(scope="module")
def mimi_dir(tmp_path_factory, mimi):
    return save_mimi(mimi, tiny_mimi_config(), tmp_path_factory.mktemp("mimi"))


def stereo(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * sr), 2))).astype(np.float32)


def whole_file_codes(mimi, audio: np.ndarray) -> np.ndarray:
    """Mimi's own non-streaming encoding of each channel over the whole file."""
    with torch.no_grad():
        return mimi.encode(torch.from_numpy(audio)[:, None]).numpy()


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize("sr", [8000, 16000, 24000, 44100, 48000])
def test_frames_are_ceil_of_samples_over_1920(tmp_path, mimi, sr):
    dialogues = []
    for n24 in (1, 1919, 1920, 1921, 3 * 1920 + 5):
        if n24 < 1920:  # a file this short is refused (test_audio_io); the codec still pads it to a frame
            dialogues.append(np.ascontiguousarray(stereo(1.0, 24000, n24)[:n24].T))
            continue
        n = max(1, round(n24 * sr / 24000))
        path = tmp_path / f"{n24}.wav"
        sf.write(str(path), stereo(n / sr, sr, n24)[:n], sr)
        audio, _ = load_stereo(path)
        if sr == 24000:  # no resampling: N is exactly the file's length
            assert audio.shape[1] == n24
        dialogues.append(audio)
    # One batch per rate keeps the test fast; a shorter dialogue's frames are cut to its own length.
    for audio, codes in zip(dialogues, encode_batch(mimi, dialogues)):
        assert codes.dtype == np.int64
        assert codes.shape == (2, 8, -(-audio.shape[1] // 1920))
        assert codes.min() >= 0 and codes.max() < 2048
    assert encode_stereo(mimi, dialogues[1]).shape == (2, 8, 1)


@pytest.fixture(scope="module")
def attentive_mimi():
    """A tiny Mimi whose transformer changes the tokens (no layer scale) and whose attention context
    (10 steps = 5 frames) is far shorter than the test signal, so chunk borders matter."""
    cfg = tiny_mimi_config()
    cfg["transformer"].update(context=10, layer_scale=None)
    return random_mimi(cfg, seed=3).eval()


def test_chunked_encoding_equals_whole_file_encoding(attentive_mimi):
    audio = stereo(24 * 0.08 + 77 / 24000, 24000).T
    whole = whole_file_codes(attentive_mimi, audio)
    assert whole.shape == (2, 8, 25)
    for chunk_frames in (1, 3, 7, 100):
        assert np.array_equal(encode_stereo(attentive_mimi, audio, chunk_frames=chunk_frames), whole), chunk_frames


def test_plain_streaming_would_differ(attentive_mimi, monkeypatch):
    """Why the KV caches are widened: moshi's ring cache holds exactly `context` steps, so a chunk of
    several steps loses keys its first queries need. Guards the sensitivity of the test above."""
    audio = stereo(24 * 0.08, 24000, seed=5).T
    monkeypatch.setattr(codec, "_widen_kv_caches", lambda mimi, steps: None)
    assert not np.array_equal(
        encode_stereo(attentive_mimi, audio, chunk_frames=7), whole_file_codes(attentive_mimi, audio)
    )


def test_chunked_equals_whole_with_the_tiny_preset(mimi):
    audio = stereo(3.3, 24000, seed=7).T
    assert np.array_equal(encode_stereo(mimi, audio, chunk_frames=4), whole_file_codes(mimi, audio))


def test_encode_batch_matches_one_by_one(attentive_mimi):
    dialogues = [stereo(s, 24000, seed=i).T for i, s in enumerate((1.0, 2.53, 0.05))]
    batched = encode_batch(attentive_mimi, dialogues, chunk_frames=6)
    for audio, codes in zip(dialogues, batched):
        assert np.array_equal(codes, encode_stereo(attentive_mimi, audio, chunk_frames=6))
    # Channels spread over model copies in worker threads give the same tokens.
    threaded = encode_batch(replicas(attentive_mimi, 3), dialogues, chunk_frames=6)
    assert all(np.array_equal(a, b) for a, b in zip(threaded, batched))
    with pytest.raises(ValueError, match="stereo"):
        encode_batch(attentive_mimi, [np.zeros((1, 100), np.float32)])


def test_decode_matches_whole_file_decoding(attentive_mimi):
    codes = encode_stereo(attentive_mimi, stereo(2.0, 24000).T)
    out = decode(attentive_mimi, codes, chunk_frames=3)
    assert out.dtype == np.float32 and out.shape == (2, codes.shape[-1] * 1920)
    with torch.no_grad():
        whole = attentive_mimi.decode(torch.from_numpy(codes)).numpy()[:, 0]
    assert np.allclose(out, whole, atol=1e-5)


# ---------------------------------------------------------------- stage


def make_inputs(folder: Path) -> dict[str, str]:
    """Two good dialogues and one of each kind of bad file -> {bad file name: phrase of its error}."""
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / "d1.wav"), stereo(1.3, 16000, 1), 16000)
    sf.write(str(folder / "d2.flac"), stereo(0.7, 44100, 2), 44100)
    sf.write(str(folder / "mono.wav"), stereo(0.5, 16000)[:, 0], 16000)
    sf.write(str(folder / "three.wav"), np.zeros((800, 3)), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "truncated.wav").write_bytes((folder / "d1.wav").read_bytes()[:30])
    (folder / "notes.wav").write_text("not audio")
    (folder / "readme.txt").write_text("ignored: not an audio extension")
    return {
        "mono.wav": "is mono",
        "three.wav": "has 3 channels",
        "empty.wav": "is empty (0 bytes)",
        "truncated.wav": "not a readable audio file",
        "notes.wav": "not a readable audio file",
    }


def test_stage_writes_tokens_reports_bad_files_and_resumes(tmp_path, mimi, mimi_dir, monkeypatch):
    bad = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    cfg = AudioTokenizeConfig(
        input_dir=tmp_path / "in", output_dir=out, mimi=str(mimi_dir), device="cpu", chunk_seconds=0.4
    )
    calls: list[tuple[float, str]] = []
    summary = tokenize_audio(cfg, lambda f, m: calls.append((f, m)))

    assert sorted(summary.written) == ["d1.wav", "d2.flac"]
    assert set(summary.failed) == set(bad)
    for name, phrase in bad.items():
        assert summary.failed[name].startswith(str(tmp_path / "in" / name) + ": ") and phrase in summary.failed[name]
    assert sorted(p.name for p in out.iterdir()) == ["d1.npz", "d2.npz"]  # npz only: J-Moshi's tools list it
    assert (tmp_path / "out.config.json").is_file()
    for name in ("d1.wav", "d2.flac"):
        audio, _ = load_stereo(tmp_path / "in" / name)
        with np.load(out / f"{Path(name).stem}.npz") as npz:
            expected = encode_stereo(mimi, audio)
            for row, speaker in enumerate("AB"):
                assert npz[speaker].dtype == np.int64 and npz[speaker].shape == (8, -(-audio.shape[1] // 1920))
                assert np.array_equal(npz[speaker], expected[row])
            assert json.loads(str(npz["meta"]))["source"] == name
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    # A second run skips the finished files without even loading Mimi.
    monkeypatch.setattr(stage, "load_mimi", lambda *a, **k: pytest.fail("Mimi loaded with nothing to do"))
    again = tokenize_audio(cfg)
    assert sorted(again.skipped) == ["d1.wav", "d2.flac"] and again.written == [] and set(again.failed) == set(bad)
    monkeypatch.undo()

    # A changed source, a damaged token file, other Mimi weights, or --overwrite make files be redone.
    sf.write(str(tmp_path / "in" / "d1.wav"), stereo(2.0, 16000, 9), 16000)
    changed = tokenize_audio(cfg)
    assert changed.written == ["d1.wav"] and changed.skipped == ["d2.flac"]
    (out / "d2.npz").write_bytes((out / "d2.npz").read_bytes()[:100])
    assert tokenize_audio(cfg).written == ["d2.flac"]
    with np.load(out / "d1.npz") as npz:
        assert npz["A"].shape == (8, 25)
    other = save_mimi(random_mimi(tiny_mimi_config(), seed=1), tiny_mimi_config(), tmp_path / "other_mimi")
    assert sorted(tokenize_audio(AudioTokenizeConfig(**{**cfg.__dict__, "mimi": str(other)})).written) == [
        "d1.wav",
        "d2.flac",
    ]
    assert sorted(
        tokenize_audio(AudioTokenizeConfig(**{**cfg.__dict__, "mimi": str(other), "overwrite": True})).written
    ) == ["d1.wav", "d2.flac"]


def test_stage_batches_and_workers_give_the_same_result(tmp_path, mimi_dir):
    make_inputs(tmp_path / "in")
    outs = []
    for batch, workers in ((1, 1), (2, 3)):
        cfg = AudioTokenizeConfig(
            input_dir=tmp_path / "in",
            output_dir=tmp_path / f"out{batch}",
            mimi=str(mimi_dir),
            device="cpu",
            batch_dialogues=batch,
            workers=workers,
        )
        assert sorted(tokenize_audio(cfg).written) == ["d1.wav", "d2.flac"]
        outs.append({n: dict(np.load(tmp_path / f"out{batch}" / n)) for n in ("d1.npz", "d2.npz")})
    for n in ("d1.npz", "d2.npz"):
        for key in ("A", "B"):
            assert np.array_equal(outs[0][n][key], outs[1][n][key])


def test_stage_refuses_bad_settings(tmp_path, mimi_dir):
    from backend.core.errors import ConfigError

    (tmp_path / "empty_in").mkdir()
    with pytest.raises(ConfigError, match="no .wav / .flac / .ogg files"):
        tokenize_audio(
            AudioTokenizeConfig(input_dir=tmp_path / "empty_in", output_dir=tmp_path / "o", mimi=str(mimi_dir))
        )
    with pytest.raises(ConfigError, match="not a folder"):
        tokenize_audio(AudioTokenizeConfig(input_dir=tmp_path / "nope", output_dir=tmp_path / "o"))
    with pytest.raises(ConfigError, match="chunk_seconds"):
        tokenize_audio(AudioTokenizeConfig(input_dir=tmp_path, output_dir=tmp_path / "o", chunk_seconds=0))
    assert not (tmp_path / "o").exists()


def test_duplicate_names_are_refused_not_overwritten(tmp_path, mimi_dir):
    (tmp_path / "in").mkdir()
    sf.write(str(tmp_path / "in" / "x.wav"), stereo(0.3, 16000), 16000)
    sf.write(str(tmp_path / "in" / "x.flac"), stereo(0.3, 16000), 16000)
    summary = tokenize_audio(
        AudioTokenizeConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out", mimi=str(mimi_dir), device="cpu")
    )
    assert set(summary.failed) == {"x.wav", "x.flac"} and "same name" in summary.failed["x.wav"]
    assert not (tmp_path / "out" / "x.npz").exists()


def test_cli_exit_codes_and_messages(tmp_path, mimi_dir, capsys):
    bad = make_inputs(tmp_path / "in")
    args = [
        "--input-dir",
        str(tmp_path / "in"),
        "--output-dir",
        str(tmp_path / "out"),
        "--mimi",
        str(mimi_dir),
        "--device",
        "cpu",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    for name in bad:
        assert f"failed: {tmp_path / 'in' / name}: " in err
    for name in bad:
        (tmp_path / "in" / name).unlink()
    assert main(args) == 0
    assert "0 written, 2 already done, 0 failed" in capsys.readouterr().out
    assert main(args + ["--chunk-seconds", "-1"]) == 2
    assert "chunk_seconds" in capsys.readouterr().err


# ---------------------------------------------------------------- SpokenWOZ sample


@pytest.mark.parametrize("name,frames", [("SNG0072", 1271), ("SNG1640", 1036)])
def test_spokenwoz_frame_counts(mimi, name, frames):
    path = SPOKENWOZ / "audio" / f"{name}.wav"
    if not path.exists():
        pytest.skip(f"SpokenWOZ sample not found at {SPOKENWOZ}")
    audio, sr = load_stereo(path)
    assert sr == 8000
    codes = encode_stereo(mimi, audio, chunk_frames=256)
    assert codes.shape == (2, 8, frames)
