"""Stage: two mono recordings, one per speaker (how calls and podcasts are often recorded), -> one stereo
dialogue file: A's recording on the left channel, B's on the right.

`offset` (seconds) moves B against A: positive when B's recording started later than A's (B is delayed by
that much), negative when earlier. The two must then last about as long: a difference over `max_difference`
seconds usually means two recordings of different calls, or a wrong offset, and is refused with both lengths;
within it, the shorter one is padded with silence. Different sample rates are resampled to the higher one.
The output is 16-bit PCM (WAV, or FLAC by its suffix), written atomically; files already there are refused
unless `overwrite`.

    moshi-studio join-mono --a caller.wav --b agent.wav --output workspace/raw/call1.wav [--offset 0.25]
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.core import config
from backend.core.atomic import atomic_path
from backend.core.errors import ConfigError, InputError, StudioError
from backend.data.files import AUDIO_EXTENSIONS

OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@dataclass
class MonoPairConfig:
    a: Path = config.option(Path("a.wav"), "speaker A's mono recording (becomes the left channel)")
    b: Path = config.option(Path("b.wav"), "speaker B's mono recording (becomes the right channel)")
    output: Path = config.option(Path("workspace/raw/dialogue.wav"), "the stereo dialogue to write (.wav or .flac)")
    offset: float = config.option(0.0, "seconds B's recording started after A's (negative: before)")
    max_difference: float = config.option(
        2.0, "refuse when the two last longer apart than this (seconds), after the offset", ge=0
    )
    overwrite: bool = config.option(False, "replace an existing output file")


@dataclass
class JoinedPair:
    output: Path
    sample_rate: int
    seconds: float
    padded: dict[str, float]  # speaker -> seconds of silence added (the offset and the end)


def _read_mono(path: Path, speaker: str) -> tuple[np.ndarray, int]:
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise InputError(path, f"cannot read speaker {speaker}'s recording ({e})") from None
    if audio.shape[1] != 1:
        raise InputError(
            path, f"speaker {speaker}'s recording has {audio.shape[1]} channels; one mono file per speaker is expected"
        )
    if not len(audio):
        raise InputError(path, f"speaker {speaker}'s recording is empty")
    return audio[:, 0], sr


def join_mono(cfg: MonoPairConfig) -> JoinedPair:
    if not math.isfinite(cfg.offset):
        raise ConfigError(f"offset: a number of seconds, got {cfg.offset}")
    suffix = cfg.output.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"output {cfg.output}: write a .wav or .flac file")
    if cfg.output.exists() and not cfg.overwrite:
        raise ConfigError(f"output {cfg.output}: exists already (--overwrite replaces it)")
    (a, sr_a), (b, sr_b) = _read_mono(cfg.a, "A"), _read_mono(cfg.b, "B")
    sr = max(sr_a, sr_b)
    a, b = (x if r == sr else soxr.resample(x, r, sr).astype(np.float32) for x, r in ((a, sr_a), (b, sr_b)))
    shift = int(round(abs(cfg.offset) * sr))
    lead = {"A": shift if cfg.offset < 0 else 0, "B": shift if cfg.offset > 0 else 0}
    lengths = {"A": lead["A"] + len(a), "B": lead["B"] + len(b)}
    difference = abs(lengths["A"] - lengths["B"]) / sr
    if difference > cfg.max_difference:
        raise InputError(
            cfg.b,
            f"lasts {lengths['B'] / sr:.2f} s against A's {lengths['A'] / sr:.2f} s ({cfg.a}) "
            f"with offset {cfg.offset:+.2f} s: {difference:.2f} s apart, more than "
            f"--max-difference {cfg.max_difference:g} s (recordings of one dialogue?)",
        )
    total = max(lengths.values())
    stereo = np.zeros((total, 2), dtype=np.float32)
    stereo[lead["A"] : lengths["A"], 0] = a
    stereo[lead["B"] : lengths["B"], 1] = b
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cfg.output) as tmp:
        sf.write(tmp, stereo, sr, subtype="PCM_16", format=OUTPUT_FORMATS[suffix])
    return JoinedPair(cfg.output, sr, total / sr, {s: (total - lengths[s] + lead[s]) / sr for s in lengths})


def join_into(raw: Path, a: Path, b: Path, name: str, offset: float) -> JoinedPair:
    """The studio's join: `<name>.wav` in the workspace's `raw` folder, `name` a plain file name that no audio of
    `raw` has yet (a second audio of one name would make the dialogue ambiguous)."""
    name = name.strip()
    if not name or name != Path(name).name or name.startswith(".") or len(name) > 200:
        raise ConfigError(f"dialogue name {name[:80]!r}: a plain file name (no folders, not starting with '.')")
    taken = [f"{name}{ext}" for ext in AUDIO_EXTENSIONS if (raw / f"{name}{ext}").exists()]
    if taken:
        raise ConfigError(f"dialogue name {name!r}: the workspace already has {', '.join(taken)}; choose another")
    return join_mono(MonoPairConfig(a=a, b=b, output=raw / f"{name}.wav", offset=offset))


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(MonoPairConfig, "Join two mono recordings (one per speaker) into a stereo dialogue.")
    try:
        joined = join_mono(config.from_cli(MonoPairConfig, parser.parse_args(argv)))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    padded = ", ".join(f"{s} +{p:.2f} s of silence" for s, p in joined.padded.items() if p)
    print(
        f"wrote {joined.output}: {joined.seconds:.2f} s stereo at {joined.sample_rate} Hz"
        + (f" ({padded})" if padded else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
