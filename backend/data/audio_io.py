"""Reading, checking and writing dialogue audio (stereo: left = speaker A, right = speaker B).

Everything goes through soundfile (wav, flac, ogg, ...) and soxr (resampling to Mimi's 24 kHz).
Unusable files (not stereo, shorter than one 80 ms Mimi frame, longer than the duration limit, a sample rate
below 8 kHz, NaN or Inf samples) raise `InputError` naming the file and the problem; `scan_audio` reads a file
in blocks (memory independent of its duration: a few MB of compressed silence can hold hours) and
`audio_report` looks in that scan for problems that leave a file usable but suspicious (clipping, silence, dual
mono or leakage).
"""

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from backend.core.atomic import atomic_path
from backend.core.errors import InputError, Issue
from backend.core.spec import FRAME_SIZE, SAMPLE_RATE, SPEAKERS

MIN_SAMPLE_RATE = 8000  # telephone speech; below it a few samples pass for seconds of "dialogue"
MAX_AUDIO_HOURS_ENV = "MOSHI_STUDIO_MAX_AUDIO_HOURS"  # the duration limit, for the studio and the jobs it starts
DEFAULT_MAX_AUDIO_HOURS = 2.0
BLOCK_SECONDS = 30.0  # what scan_audio decodes at a time


def max_audio_seconds() -> float:
    """The duration limit: tokenization and annotation still hold a whole file (about 1.4 GB per hour at 48 kHz
    stereo), so a file beyond it is refused from its header, before anything is decoded."""
    raw = os.environ.get(MAX_AUDIO_HOURS_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_MAX_AUDIO_HOURS
    except ValueError:
        hours = DEFAULT_MAX_AUDIO_HOURS
    return 3600.0 * (hours if hours > 0 else DEFAULT_MAX_AUDIO_HOURS)


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
        raise InputError(
            path,
            f"has {info.channels} channels; a dialogue file must be stereo "
            "(2 channels: left = speaker A, right = speaker B)",
        )
    if info.samplerate < MIN_SAMPLE_RATE:
        raise InputError(
            path,
            f"has a sample rate of {info.samplerate} Hz; dialogue audio needs at least "
            f"{MIN_SAMPLE_RATE} Hz (telephone speech)",
        )
    _check_length(path, int(info.frames), int(info.samplerate))
    seconds, limit = info.frames / info.samplerate, max_audio_seconds()
    if seconds > limit:
        raise InputError(
            path,
            f"lasts {seconds / 3600:.2f} h, longer than the limit of {limit / 3600:g} h "
            f"(the setting {MAX_AUDIO_HOURS_ENV}); split the recording",
        )
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def _check_length(path: Path, frames: int, sr: int) -> None:
    """At least one Mimi frame (80 ms): a shorter file would be padded into a frame of mostly silence."""
    if frames * SAMPLE_RATE < FRAME_SIZE * sr:
        raise InputError(
            path,
            f"shorter than one frame: {frames} sample(s) at {sr} Hz ({1000 * frames / sr:.1f} ms); "
            f"a dialogue needs at least {1000 * FRAME_SIZE / SAMPLE_RATE:g} ms",
        )


def _check_finite(path: Path, data: np.ndarray, sr: int) -> None:
    """Float files can hold NaN or Inf, which Mimi would silently turn into codes of silence."""
    if np.isfinite(data.sum(axis=0, dtype=np.float64)).all():  # cheap: no per-sample mask when all is well
        return
    bad = ~np.isfinite(data)
    problems = [
        f"channel {speaker} has {int(bad[:, i].sum())} non-finite sample(s) (NaN or Inf), the first at "
        f"{np.argmax(bad[:, i]) / sr:.3f} s"
        for i, speaker in enumerate(SPEAKERS)
        if bad[:, i].any()
    ]
    raise InputError(path, "; ".join(problems) + ": repair or re-export the file")


def read_native(path: Path) -> tuple[np.ndarray, int]:
    """Checked stereo samples at the file's own rate: float32 [2, N], and that rate."""
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
    audio, sr = read_native(Path(path))
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


class _Windows:
    """Sum of squares, min and max of consecutive windows of a stream of [2, n] blocks: the windows do not depend
    on where the blocks end (the samples after the last whole window wait for the next block)."""

    def __init__(self, win: int):
        self.win, self.rest = win, np.zeros((2, 0), dtype=np.float32)
        self.parts: list[np.ndarray] = []  # [3, 2, windows]: sum of squares, min, max

    def feed(self, block: np.ndarray) -> None:
        x = np.concatenate([self.rest, block], axis=1) if self.rest.shape[1] else block
        whole = x.shape[1] // self.win * self.win
        if whole:
            self._reduce(x[:, :whole].reshape(2, -1, self.win))
        self.rest = x[:, whole:]

    def _reduce(self, w: np.ndarray) -> None:
        self.parts.append(np.stack([np.square(w, dtype=np.float64).sum(axis=2), w.min(axis=2), w.max(axis=2)]))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """([3, 2, windows] reductions, samples per window): the last window may be partial."""
        counts = [self.win] * sum(p.shape[2] for p in self.parts)
        if self.rest.shape[1]:
            self._reduce(self.rest[:, None, :])
            counts.append(self.rest.shape[1])
        values = np.concatenate(self.parts, axis=2) if self.parts else np.zeros((3, 2, 0))
        return values, np.array(counts, dtype=np.float64)


class _Correlation:
    """c[k + max_lag] = sum_n a[n] * b[n + k] for |k| <= max_lag over a stream of blocks, by blockwise FFT: each
    block of a is correlated once the next block has brought the b samples just past it."""

    def __init__(self, max_lag: int):
        self.max_lag, self.out = max_lag, np.zeros(2 * max_lag + 1)
        self.before = np.zeros(max_lag)  # b just before the waiting block (zeros: before the file)
        self.waiting: tuple[np.ndarray, np.ndarray] | None = None

    def feed(self, a: np.ndarray, b: np.ndarray) -> None:
        if self.waiting is not None:
            self._run(b[: self.max_lag])
        self.waiting = (a.astype(np.float64), b.astype(np.float64))

    def finish(self) -> np.ndarray:
        if self.waiting is not None:
            self._run(np.zeros(0))
        return self.out

    def _run(self, after: np.ndarray, step: int = 1 << 16) -> None:
        a, b = self.waiting  # type: ignore[misc]
        after = np.pad(after, (0, self.max_lag - len(after)))
        b_ext = np.concatenate([self.before, b, after])  # b[start - max_lag : end + max_lag]
        for start in range(0, len(a), step):
            a_blk = a[start : start + step]
            b_blk = b_ext[start : start + len(a_blk) + 2 * self.max_lag]
            nfft = 1 << int(np.ceil(np.log2(len(a_blk) + len(b_blk))))
            r = np.fft.irfft(np.fft.rfft(b_blk, nfft) * np.conj(np.fft.rfft(a_blk, nfft)), nfft)
            self.out += r[: 2 * self.max_lag + 1]  # r[m] = sum_j a_blk[j] * b_blk[j + m], m = k + max_lag
        self.before = np.concatenate([self.before, b])[len(b) :]  # the last max_lag samples


@dataclass
class AudioScan:
    """What one pass over a file measured: enough for its report and its preview's waveform."""

    path: Path
    sample_rate: int
    frames: int
    rms_windows: np.ndarray  # [2, windows]: RMS of consecutive windows of RMS_WINDOW_S
    rms: np.ndarray  # [2]: RMS of each channel
    peak: np.ndarray  # [2]: largest |sample|
    clipped: np.ndarray  # [2]: share of samples at or beyond the clip level
    envelope: np.ndarray  # [2, bins, 2]: [min, max] of consecutive windows of ENVELOPE_WINDOW_S
    correlation: float  # the largest |normalised correlation| of A and B over small lags
    correlation_lag_ms: float

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


RMS_WINDOW_S = 0.1  # silences are runs of these windows
ENVELOPE_WINDOW_S = 0.025  # the preview's waveform: 40 [min, max] pairs per second at most


def _blocks(path: Path, sr: int) -> Iterator[np.ndarray]:
    """The samples of a probed stereo file as float32 [2, n] blocks of BLOCK_SECONDS."""
    try:
        for block in sf.blocks(str(path), blocksize=max(1, int(BLOCK_SECONDS * sr)), dtype="float32", always_2d=True):
            yield np.ascontiguousarray(block.T)
    except sf.LibsndfileError as e:
        raise InputError(path, f"not a readable audio file ({e.error_string.rstrip('.')})") from None


def scan_audio(path: str | Path, clip_level: float = 0.999, max_lag_ms: float = 20.0) -> AudioScan:
    """Read a dialogue file once, block by block, and measure what its report and preview need. Raises
    InputError for an unusable file (see the module doc), NaN or Inf samples included."""
    path = Path(path)
    info = probe(path)
    sr = info.sample_rate
    rms_w, env_w = _Windows(max(1, int(sr * RMS_WINDOW_S))), _Windows(max(1, int(sr * ENVELOPE_WINDOW_S)))
    corr = _Correlation(max(0, min(int(sr * max_lag_ms / 1000), info.frames - 1)))
    frames, peak, clipped, energy = 0, np.zeros(2), np.zeros(2), np.zeros(2)
    bad, first_bad = np.zeros(2, dtype=np.int64), [-1, -1]
    for block in _blocks(path, sr):
        finite = np.isfinite(block)
        if not finite.all():  # NaN or Inf, which Mimi would silently turn into codes of silence
            for i in range(2):
                if not finite[i].all():
                    first_bad[i] = first_bad[i] if first_bad[i] >= 0 else frames + int(np.argmin(finite[i]))
                    bad[i] += int((~finite[i]).sum())
            block = np.where(finite, block, 0.0).astype(np.float32)
        peak = np.maximum(peak, np.abs(block).max(axis=1))
        clipped += (np.abs(block) >= clip_level).sum(axis=1)
        energy += np.square(block, dtype=np.float64).sum(axis=1)
        rms_w.feed(block)
        env_w.feed(block)
        corr.feed(block[0], block[1])
        frames += block.shape[1]
    if frames == 0:  # the header promised frames the body does not hold
        raise InputError(path, "is empty (the file holds no audio frames)")
    _check_length(path, frames, sr)
    if bad.any():
        problems = [
            f"channel {speaker} has {int(bad[i])} non-finite sample(s) (NaN or Inf), the first at "
            f"{first_bad[i] / sr:.3f} s"
            for i, speaker in enumerate(SPEAKERS)
            if bad[i]
        ]
        raise InputError(path, "; ".join(problems) + ": repair or re-export the file")
    (sq, _, _), counts = rms_w.finish()
    (_, lo, hi), _ = env_w.finish()
    c = corr.finish()
    norm = float(np.sqrt(energy[0] * energy[1]))
    best = int(np.argmax(np.abs(c))) if norm > 0 else corr.max_lag
    return AudioScan(
        path=path,
        sample_rate=sr,
        frames=frames,
        rms_windows=np.sqrt(sq / counts),
        rms=np.sqrt(energy / frames),
        peak=peak,
        clipped=clipped / frames,
        envelope=np.stack([lo, hi], axis=-1),
        correlation=float(abs(c[best]) / norm) if norm > 0 else 0.0,
        correlation_lag_ms=(best - corr.max_lag) * 1000.0 / sr if norm > 0 else 0.0,
    )


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


def _quiet_runs(
    rms: np.ndarray, sr: int, n_samples: int, threshold_db: float, min_seconds: float
) -> list[tuple[float, float]]:
    """(start, end) seconds of runs of windows whose RMS stays below threshold_db for >= min_seconds."""
    win = max(1, int(sr * RMS_WINDOW_S))
    quiet = np.concatenate([[False], rms < 10 ** (threshold_db / 20), [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))  # alternating run starts and ends
    runs = []
    for start, end in zip(edges[::2], edges[1::2]):
        start_s, end_s = float(start * win / sr), float(min(end * win, n_samples) / sr)
        if end_s - start_s >= min_seconds:
            runs.append((round(start_s, 3), round(end_s, 3)))
    return runs


def audio_report(
    path: str | Path,
    *,
    scan: AudioScan | None = None,
    silence_db: float = -50.0,
    min_silence_s: float = 5.0,
    clip_level: float = 0.999,
    clip_warn_share: float = 0.001,
    near_copy: float = 0.9,
    leakage: float = 0.3,
    max_lag_ms: float = 20.0,
) -> AudioReport:
    """Levels, clipping, long silences and channel similarity of a stereo dialogue file, measured at
    its own sample rate (resampling would blur clipped samples), with one Issue per finding.

    silence_db / min_silence_s: a silence is a run of 100 ms windows below silence_db lasting at
    least min_silence_s. One channel's silences are normal in a dialogue (that speaker listens), so
    they are listed but only dead air (both channels silent) and an entirely silent channel
    (overall RMS below silence_db) are issues.
    clip_level: |sample| at or above it counts as clipped; a warning from clip_warn_share.
    near_copy / leakage: correlation thresholds for the "dual mono" and "crosstalk" warnings.
    scan: the file's `scan_audio` when the caller has it already (the file is not read again).
    """
    path = Path(path)
    m = scan if scan is not None else scan_audio(path, clip_level, max_lag_ms)
    sr, n = m.sample_rate, m.frames
    issues: list[Issue] = []
    channels = []
    for i, speaker in enumerate(SPEAKERS):
        rms, clipped = _db(float(m.rms[i])), float(m.clipped[i])
        silences = _quiet_runs(m.rms_windows[i], sr, n, silence_db, min_silence_s)
        channels.append(ChannelReport(speaker, round(rms, 2), round(_db(float(m.peak[i])), 2), clipped, silences))
        if rms < silence_db:
            issues.append(Issue("warning", f"channel {speaker} is silent (RMS {rms:.1f} dBFS)"))
        elif clipped >= clip_warn_share:
            issues.append(Issue("warning", f"{100 * clipped:.1f}% of samples clipped in channel {speaker}"))
    dead_air = _quiet_runs(np.maximum(*m.rms_windows), sr, n, silence_db, min_silence_s)
    if dead_air and not any(c.rms_dbfs < silence_db for c in channels):
        total = sum(end - start for start, end in dead_air)
        issues.append(
            Issue(
                "warning",
                f"both channels are silent for {total:.1f} s in {len(dead_air)} stretch(es) "
                f"of {min_silence_s:g} s or more (first from {dead_air[0][0]:.1f} s)",
            )
        )
    corr, lag_ms = m.correlation, m.correlation_lag_ms
    lag_text = f" at a lag of {lag_ms:+.1f} ms" if lag_ms else ""
    if corr >= near_copy:
        issues.append(
            Issue(
                "warning",
                f"channel B is a near copy of channel A (correlation {corr:.2f}{lag_text}): dual mono or leakage?",
            )
        )
    elif corr >= leakage:
        issues.append(
            Issue(
                "warning",
                f"channels A and B are correlated ({corr:.2f}{lag_text}): "
                "one speaker may leak into the other's channel",
            )
        )
    return AudioReport(
        path=str(path),
        duration=n / sr,
        sample_rate=sr,
        channels=channels,
        dead_air=dead_air,
        correlation=round(corr, 4),
        correlation_lag_ms=round(lag_ms, 3),
        issues=issues,
    )
