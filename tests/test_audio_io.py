"""backend.data.audio_io: loading and resampling, rejection of unusable files, the quality report."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.core.errors import InputError
from backend.data.audio_io import audio_report, load_stereo, probe, write_stereo_wav

RNG = np.random.default_rng(1234)


def speechlike(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Noise with a syllable-rate envelope: a stand-in for one speaker's channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + seed % 3) * t + seed)
    return (0.1 * rng.standard_normal(len(t)) * envelope).astype(np.float32)


def write(path: Path, channels: list[np.ndarray], sr: int, **kwargs) -> Path:
    sf.write(str(path), np.stack(channels, axis=1), sr, **kwargs)
    return path


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("sr", [8000, 16000, 24000, 44100, 48000])
@pytest.mark.parametrize("extra", [0, 1, 1919, 1920])
def test_load_stereo_resamples_to_24k(tmp_path, sr, extra):
    n = -(-1920 * sr // 24000) + extra  # from one 80 ms frame at the file's own rate
    path = write(tmp_path / "d.wav", [RNG.uniform(-0.5, 0.5, n), RNG.uniform(-0.5, 0.5, n)], sr)
    audio, original = load_stereo(path)
    assert original == sr
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    expected = n * 24000 / sr
    assert abs(audio.shape[1] - expected) <= 1 and audio.shape[1] >= 1
    if sr == 24000:
        assert audio.shape[1] == n
    if extra == 0:  # one sample less is less than a frame
        short = write(tmp_path / "s.wav", [np.zeros(n - 1), np.zeros(n - 1)], sr)
        with pytest.raises(InputError, match=f"s.wav: shorter than one frame: {n - 1} sample"):
            load_stereo(short)


def test_load_stereo_keeps_channel_order_and_frequency(tmp_path):
    sr = 8000
    t = np.arange(2 * sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    audio, _ = load_stereo(write(tmp_path / "d.wav", [tone, np.zeros_like(tone)], sr))
    assert np.sqrt(np.mean(audio[0] ** 2)) > 0.3 and np.max(np.abs(audio[1])) < 1e-4
    spectrum = np.abs(np.fft.rfft(audio[0]))
    peak_hz = np.argmax(spectrum) * 24000 / audio.shape[1]
    assert abs(peak_hz - 1000) < 5


@pytest.mark.parametrize("ext,kwargs", [(".flac", {}), (".ogg", {"format": "OGG", "subtype": "VORBIS"})])
def test_load_stereo_reads_flac_and_ogg(tmp_path, ext, kwargs):
    sr = 16000
    path = write(tmp_path / f"d{ext}", [speechlike(1.0, sr, 1), speechlike(1.0, sr, 2)], sr, **kwargs)
    info = probe(path)
    assert (info.sample_rate, info.channels, info.frames) == (sr, 2, sr)
    assert info.duration == pytest.approx(1.0)
    audio, original = load_stereo(path)
    assert original == sr and audio.shape == (2, 24000)


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the error message must contain)."""
    good = write(tmp_path / "good.wav", [np.zeros(100), np.zeros(100)], 16000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:20])
    text = tmp_path / "notes.wav"
    text.write_text("these are my notes, not audio\n")
    empty_bytes = tmp_path / "zero.wav"
    empty_bytes.write_bytes(b"")
    no_frames = tmp_path / "noframes.wav"
    sf.write(str(no_frames), np.zeros((0, 2)), 16000)
    mono = tmp_path / "mono.wav"
    sf.write(str(mono), np.zeros(1000), 16000)
    three = tmp_path / "three.flac"
    sf.write(str(three), np.zeros((1000, 3)), 16000)
    click = tmp_path / "click.wav"
    sf.write(str(click), np.zeros((1, 2)), 24000)
    return {
        "missing": (tmp_path / "absent.wav", "no such file"),
        "zero bytes": (empty_bytes, "is empty (0 bytes)"),
        "no frames": (no_frames, "is empty (the file holds no audio frames)"),
        "truncated header": (truncated, "not a readable audio file"),
        "text named .wav": (text, "not a readable audio file"),
        "mono": (mono, "is mono; a dialogue file must be stereo: left = speaker A, right = speaker B"),
        "three channels": (three, "has 3 channels; a dialogue file must be stereo"),
        "one sample": (click, "shorter than one frame: 1 sample(s) at 24000 Hz"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "zero bytes",
        "no frames",
        "truncated header",
        "text named .wav",
        "mono",
        "three channels",
        "one sample",
    ],
)
@pytest.mark.parametrize("reader", [probe, load_stereo, audio_report])
def test_unusable_files_are_rejected_with_file_and_problem(tmp_path, case, reader):
    path, phrase = _bad_files(tmp_path)[case]
    with pytest.raises(InputError) as err:
        reader(path)
    assert str(err.value).startswith(f"{path}: ")
    assert phrase in str(err.value)
    assert err.value.path == str(path)


@pytest.mark.parametrize("reader", [load_stereo, audio_report])
def test_nan_and_inf_samples_are_refused_by_channel_with_counts(tmp_path, reader):
    audio = np.zeros((8000, 2), dtype=np.float32)
    audio[[10, 20], 1] = [np.nan, -np.inf]
    path = write(tmp_path / "f.wav", [audio[:, 0], audio[:, 1]], 16000, subtype="FLOAT")
    with pytest.raises(InputError) as err:
        reader(path)
    assert str(err.value).startswith(
        f"{path}: channel B has 2 non-finite sample(s) (NaN or Inf), the first at 0.001 s"
    ) and "channel A" not in str(err.value)


# ---------------------------------------------------------------- writing


def test_write_stereo_wav_is_16bit_24k_clipped_and_leaves_no_temp(tmp_path):
    audio = np.stack([np.linspace(-2, 2, 4800), np.full(4800, 0.25)]).astype(np.float32)
    out = write_stereo_wav(tmp_path / "sub" / "o.wav", audio)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (24000, 2, 4800, "PCM_16")
    back, _ = sf.read(str(out), dtype="float32")
    assert back[:, 0].max() <= 1.0 and back[:, 0].min() >= -1.0
    assert np.allclose(back[:, 1], 0.25, atol=1e-4)
    assert [p.name for p in out.parent.iterdir()] == ["o.wav"]
    with pytest.raises(ValueError):
        write_stereo_wav(tmp_path / "bad.wav", np.zeros((3, 10)))
    assert not (tmp_path / "bad.wav").exists()


# ---------------------------------------------------------------- report


def messages(report) -> str:
    return " | ".join(i.message for i in report.issues)


SR = 16000


def test_report_clean_dialogue_has_no_issues(tmp_path):
    report = audio_report(write(tmp_path / "clean.wav", [speechlike(6, SR, 1), speechlike(6, SR, 2)], SR))
    assert report.issues == []
    assert report.sample_rate == SR and report.duration == pytest.approx(6.0)
    assert report.correlation < 0.1
    for ch in report.channels:
        assert -40 < ch.rms_dbfs < -15 and ch.clipped_share == 0.0 and ch.silences == []
    d = report.to_dict()
    assert d["channels"][0]["speaker"] == "A" and d["issues"] == []


def test_report_finds_clipping_in_the_right_channel(tmp_path):
    a = np.clip(speechlike(4, SR, 1) * 40, -1, 1)  # hard-clipped speaker A
    report = audio_report(write(tmp_path / "clip.wav", [a, speechlike(4, SR, 2)], SR, subtype="PCM_16"))
    share = report.channels[0].clipped_share
    assert share > 0.05
    assert f"{100 * share:.1f}% of samples clipped in channel A" in messages(report)
    assert report.channels[1].clipped_share == 0.0 and "channel B" not in messages(report)
    assert report.channels[0].peak_dbfs == pytest.approx(0.0, abs=0.01)


def test_report_finds_a_silent_channel(tmp_path):
    report = audio_report(write(tmp_path / "s.wav", [speechlike(4, SR, 1), np.zeros(4 * SR)], SR))
    assert "channel B is silent" in messages(report)
    assert "channel A" not in messages(report)


def test_report_finds_dead_air_with_its_span(tmp_path):
    a, b = speechlike(14, SR, 1), speechlike(14, SR, 2)
    a[3 * SR : 9 * SR] = 0.0
    b[2 * SR : 10 * SR] = 1e-5 * RNG.standard_normal(8 * SR)  # -100 dBFS hiss
    report = audio_report(write(tmp_path / "gap.wav", [a, b], SR), min_silence_s=5.0)
    assert report.channels[0].silences == [(3.0, 9.0)]
    assert report.channels[1].silences == [(2.0, 10.0)]
    assert report.dead_air == [(3.0, 9.0)]
    assert "both channels are silent for 6.0 s" in messages(report)
    shorter = audio_report(tmp_path / "gap.wav", min_silence_s=7.0)
    assert shorter.dead_air == [] and shorter.channels[1].silences == [(2.0, 10.0)]


@pytest.mark.parametrize("delay", [0, 48])
def test_report_finds_dual_mono(tmp_path, delay):
    a = speechlike(4, SR, 1)
    b = np.concatenate([np.zeros(delay, np.float32), a[: len(a) - delay]]) * 0.8
    report = audio_report(write(tmp_path / "dual.wav", [a, b], SR))
    assert "channel B is a near copy of channel A" in messages(report)
    assert report.correlation > 0.95
    assert report.correlation_lag_ms == pytest.approx(1000 * delay / SR)


def test_report_finds_leakage(tmp_path):
    a, own = speechlike(4, SR, 1), speechlike(4, SR, 2)
    report = audio_report(write(tmp_path / "leak.wav", [a, own + 0.6 * a], SR))
    assert "one speaker may leak into the other's channel" in messages(report)
    assert "near copy" not in messages(report)
