"""Reading, checking and writing dialogue audio (stereo: left = speaker A, right = speaker B).

Everything goes through soundfile (wav, flac, ogg, ...) and soxr (resampling to Mimi's 24 kHz).
Unusable files (not stereo, shorter than one 80 ms Mimi frame, NaN or Inf samples) raise
`InputError` naming the file and the problem; `audio_report` looks for
problems that leave a file usable but suspicious (clipping, silence, dual mono or leakage).
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.core.atomic import atomic_path
from backend.core.errors import InputError, Issue
from backend.core.spec import FRAME_SIZE, SAMPLE_RATE, SPEAKERS


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int  # at the file's own sample rate

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def probe(path: str | Path) -> AudioInfo:
    """Header facts of a dialogue file, without reading the samples. Raises InputError for a file
    that is missing, empty, unreadable, not exactly stereo, or shorter than one frame."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)")
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as e:
        raise InputError(path, f"not a readable audio file ({e.error_string.rstrip('.')})") from None
    if info.frames == 0:
        raise InputError(path, "is empty (the file holds no audio frames)")
    if info.channels == 1:
        raise InputError(path, "is mono; a dialogue file must be stereo: left = speaker A, right = speaker B")
    if info.channels > 2:
        raise InputError(path, f"has {info.channels} channels; a dialogue file must be stereo "
                               "(2 channels: left = speaker A, right = speaker B)")
    _check_length(path, int(info.frames), int(info.samplerate))
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def _check_length(path: Path, frames: int, sr: int) -> None:
    """At least one Mimi frame (80 ms): a shorter file would be padded into a frame of mostly silence."""
    if frames * SAMPLE_RATE < FRAME_SIZE * sr:
        raise InputError(path, f"shorter than one frame: {frames} sample(s) at {sr} Hz ({1000 * frames / sr:.1f} ms); "
                               f"a dialogue needs at least {1000 * FRAME_SIZE / SAMPLE_RATE:g} ms")


def _check_finite(path: Path, data: np.ndarray, sr: int) -> None:
    """Float files can hold NaN or Inf, which Mimi would silently turn into codes of silence."""
    if np.isfinite(data.sum(axis=0, dtype=np.float64)).all():  # cheap: no per-sample mask when all is well
        return
    bad = ~np.isfinite(data)
    problems = [f"channel {speaker} has {int(bad[:, i].sum())} non-finite sample(s) (NaN or Inf), the first at "
                f"{np.argmax(bad[:, i]) / sr:.3f} s" for i, speaker in enumerate(SPEAKERS) if bad[:, i].any()]
    raise InputError(path, "; ".join(problems) + ": repair or re-export the file")


def _read(path: Path) -> tuple[np.ndarray, int]:
    """Checked stereo samples at the file's own rate: float32 [2, N]."""
    probe(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise InputError(path, f"not a readable audio file ({e.error_string.rstrip('.')})") from None
    if data.shape[0] == 0:  # the header promised frames the body does not hold
        raise InputError(path, "is empty (the file holds no audio frames)")
    _check_length(path, data.shape[0], int(sr))
    _check_finite(path, data, int(sr))
    return np.ascontiguousarray(data.T), int(sr)


def load_stereo(path: str | Path) -> tuple[np.ndarray, int]:
    """float32 [2, N] at 24 kHz (soxr, high quality) and the file's original sample rate.
    N is soxr's output length: the input length scaled to 24 kHz, rounded."""
    audio, sr = _read(Path(path))
    if sr != SAMPLE_RATE:
        # soxr resamples [frames, channels]; both channels in one call.
        audio = np.ascontiguousarray(soxr.resample(audio.T, sr, SAMPLE_RATE, quality="HQ").T, dtype=np.float32)
    return audio, sr


def write_stereo_wav(path: str | Path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write [2, N] float audio as 16-bit PCM WAV (left = row 0), atomically; values are clipped to [-1, 1]."""
    audio = np.asarray(audio)
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise ValueError(f"expected stereo audio of shape [2, N], got {list(audio.shape)}")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0).T, sr, subtype="PCM_16", format="WAV")
    return Path(path)


# ---------------------------------------------------------------- quality report

DB_FLOOR = -120.0  # dBFS reported for digital silence (keeps the report JSON-friendly)


def _db(amplitude: float) -> float:
    return float(max(20.0 * np.log10(max(amplitude, 1e-12)), DB_FLOOR))


@dataclass
class ChannelReport:
    speaker: str
    rms_dbfs: float
    peak_dbfs: float
    clipped_share: float  # share of samples at or beyond clip_level
    silences: list[tuple[float, float]]  # (start, end) seconds of long silences


@dataclass
class AudioReport:
    path: str
    duration: float  # seconds
    sample_rate: int  # the file's own rate
    channels: list[ChannelReport]
    dead_air: list[tuple[float, float]]  # long stretches where both channels are silent
    correlation: float  # the largest |normalised correlation| of A and B over small lags
    correlation_lag_ms: float  # the lag where it was found (positive: B lags A)
    issues: list[Issue] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _window_rms(x: np.ndarray, sr: int, window_s: float = 0.1) -> np.ndarray:
    """RMS of consecutive windows; the last, partial window is measured too."""
    win = max(1, int(sr * window_s))
    padded = np.pad(x, (0, -len(x) % win))
    frames = padded.reshape(-1, win).astype(np.float64)
    counts = np.full(len(frames), win)
    counts[-1] = len(x) - win * (len(frames) - 1)
    return np.sqrt(np.sum(np.square(frames), axis=1) / counts)


def _quiet_runs(rms: np.ndarray, sr: int, n_samples: int, threshold_db: float, min_seconds: float,
                window_s: float = 0.1) -> list[tuple[float, float]]:
    """(start, end) seconds of runs of windows whose RMS stays below threshold_db for >= min_seconds."""
    win = max(1, int(sr * window_s))
    quiet = np.concatenate([[False], rms < 10 ** (threshold_db / 20), [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))  # alternating run starts and ends
    runs = []
    for start, end in zip(edges[::2], edges[1::2]):
        start_s, end_s = float(start * win / sr), float(min(end * win, n_samples) / sr)
        if end_s - start_s >= min_seconds:
            runs.append((round(start_s, 3), round(end_s, 3)))
    return runs


def _xcorr_small_lags(a: np.ndarray, b: np.ndarray, max_lag: int, block: int = 1 << 16) -> np.ndarray:
    """c[k + max_lag] = sum_n a[n] * b[n + k] for |k| <= max_lag, by blockwise FFT: linear in
    the length, so a long file at 48 kHz never needs one huge transform."""
    b_pad = np.pad(b.astype(np.float64), (max_lag, max_lag))
    out = np.zeros(2 * max_lag + 1)
    for start in range(0, len(a), block):
        a_blk = a[start:start + block].astype(np.float64)
        b_blk = b_pad[start:start + len(a_blk) + 2 * max_lag]  # b[start - max_lag : start + len + max_lag]
        nfft = 1 << int(np.ceil(np.log2(len(a_blk) + len(b_blk))))
        r = np.fft.irfft(np.fft.rfft(b_blk, nfft) * np.conj(np.fft.rfft(a_blk, nfft)), nfft)
        out += r[:2 * max_lag + 1]  # r[m] = sum_j a_blk[j] * b_blk[j + m], m = k + max_lag
    return out


def _channel_correlation(a: np.ndarray, b: np.ndarray, sr: int, max_lag_ms: float) -> tuple[float, float]:
    """(largest |normalised cross-correlation| over lags within max_lag_ms, that lag in ms)."""
    energy = float(np.dot(a.astype(np.float64), a)) * float(np.dot(b.astype(np.float64), b))
    if energy <= 0.0:
        return 0.0, 0.0
    max_lag = min(int(sr * max_lag_ms / 1000), len(a) - 1)
    c = _xcorr_small_lags(a, b, max_lag) / np.sqrt(energy)
    best = int(np.argmax(np.abs(c)))
    return float(abs(c[best])), (best - max_lag) * 1000.0 / sr


def audio_report(path: str | Path, *, silence_db: float = -50.0, min_silence_s: float = 5.0,
                 clip_level: float = 0.999, clip_warn_share: float = 0.001,
                 near_copy: float = 0.9, leakage: float = 0.3, max_lag_ms: float = 20.0) -> AudioReport:
    """Levels, clipping, long silences and channel similarity of a stereo dialogue file, measured at
    its own sample rate (resampling would blur clipped samples), with one Issue per finding.

    silence_db / min_silence_s: a silence is a run of 100 ms windows below silence_db lasting at
    least min_silence_s. One channel's silences are normal in a dialogue (that speaker listens), so
    they are listed but only dead air (both channels silent) and an entirely silent channel
    (overall RMS below silence_db) are issues.
    clip_level: |sample| at or above it counts as clipped; a warning from clip_warn_share.
    near_copy / leakage: correlation thresholds for the "dual mono" and "crosstalk" warnings.
    """
    path = Path(path)
    audio, sr = _read(path)
    n = audio.shape[1]
    issues: list[Issue] = []
    channels = []
    window_rms = [_window_rms(x, sr) for x in audio]
    for speaker, x, rms_w in zip(SPEAKERS, audio, window_rms):
        rms = _db(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))
        clipped = float(np.mean(np.abs(x) >= clip_level))
        silences = _quiet_runs(rms_w, sr, n, silence_db, min_silence_s)
        channels.append(ChannelReport(speaker, round(rms, 2), round(_db(float(np.max(np.abs(x)))), 2),
                                      clipped, silences))
        if rms < silence_db:
            issues.append(Issue("warning", f"channel {speaker} is silent (RMS {rms:.1f} dBFS)"))
        elif clipped >= clip_warn_share:
            issues.append(Issue("warning", f"{100 * clipped:.1f}% of samples clipped in channel {speaker}"))
    dead_air = _quiet_runs(np.maximum(*window_rms), sr, n, silence_db, min_silence_s)
    if dead_air and not any(c.rms_dbfs < silence_db for c in channels):
        total = sum(end - start for start, end in dead_air)
        issues.append(Issue("warning", f"both channels are silent for {total:.1f} s in {len(dead_air)} stretch(es) "
                                       f"of {min_silence_s:g} s or more (first from {dead_air[0][0]:.1f} s)"))
    corr, lag_ms = _channel_correlation(audio[0], audio[1], sr, max_lag_ms)
    lag_text = f" at a lag of {lag_ms:+.1f} ms" if lag_ms else ""
    if corr >= near_copy:
        issues.append(Issue("warning", f"channel B is a near copy of channel A (correlation {corr:.2f}{lag_text}): "
                                       "dual mono or leakage?"))
    elif corr >= leakage:
        issues.append(Issue("warning", f"channels A and B are correlated ({corr:.2f}{lag_text}): "
                                       "one speaker may leak into the other's channel"))
    return AudioReport(path=str(path), duration=n / sr, sample_rate=sr, channels=channels, dead_air=dead_air,
                       correlation=round(corr, 4), correlation_lag_ms=round(lag_ms, 3), issues=issues)
