"""Stage: stereo dialogue audio -> Mimi tokens, `<output>/<name>.npz` with `A` and `B` int64 [8, T].

Resumable: each npz also holds `meta` (a JSON string) naming the source file's size and
modification time and a fingerprint of the Mimi weights; a file whose npz matches is skipped.
A bad input file is reported by name and gets no output; the other files proceed.

    python -m backend.dataset.tokenize_audio --input-dir data/audio --output-dir data/audio_tokens --mimi models/mimi
"""

import hashlib
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from backend.core import config as cfgmod
from backend.core.atomic import atomic_path, check_output_folder
from backend.core.config import option
from backend.core.device import pick_device
from backend.core.errors import ConfigError, InputError, StudioError
from backend.core.progress import Progress, cli_progress
from backend.core.spec import FRAME_RATE, NUM_CODEBOOKS, SAMPLE_RATE
from backend.data.audio_io import AudioInfo, load_stereo, probe
from backend.data.files import AUDIO_EXTENSIONS, dialogue_files
from backend.dataset.token_folders import config_beside
from backend.jobs.sharding import ShareSummary, share
from backend.models.source import DEFAULT_REPO, MIMI_CONFIG, MIMI_WEIGHTS
from backend.models.weights import load_mimi

FORMAT_VERSION = 1  # bump when the token files change meaning: older files are then redone


@dataclass
class AudioTokenizeConfig:
    input_dir: Path | None = option(
        None, "folder of stereo dialogue files (.wav .flac .ogg); left channel = speaker A, right = speaker B"
    )
    output_dir: Path | None = option(None, "folder for the <name>.npz token files (A and B, int64 [8, T])")
    mimi: str = option(
        DEFAULT_REPO,
        "Mimi weights: a directory made by backend.models.source.save_mimi, a .safetensors file, or a hub repo id",
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where Mimi runs; auto = CUDA when available")
    chunk_seconds: float = option(
        2.56,
        "audio per Mimi call; the tokens do not depend on it (streaming "
        "mode), the speed does: 1-5 s suits a CPU, longer a GPU",
    )
    batch_dialogues: int = option(1, "dialogues encoded together (2 channels each); more can help on a GPU")
    workers: int = option(
        0,
        "CPU only: Mimi copies encoding channels in parallel, one thread each "
        "(about 320 MB each for the full Mimi); 0 = one per CPU core, at most one per channel",
    )
    overwrite: bool = option(False, "tokenize again even files already done with the same settings")


@dataclass
class TokenizeSummary(ShareSummary):  # written, skipped and failed hold input file names
    wall_seconds: float = 0.0

    @classmethod
    def merge(cls, parts: list["TokenizeSummary"], **figures: Any) -> "TokenizeSummary":
        """The ranks ran side by side: the longest wall time."""
        return super().merge(parts, wall_seconds=max(p.wall_seconds for p in parts), **figures)

    def line(self) -> str:
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        return f"{self.counts()} ({self.audio_seconds:.1f} s of audio, {rate:.2f} audio-s per s)"


def _validate(cfg: AudioTokenizeConfig) -> tuple[Path, Path]:
    if cfg.input_dir is None or cfg.output_dir is None:
        raise ConfigError("input_dir and output_dir are both required")
    if not cfg.input_dir.is_dir():
        raise ConfigError(f"{cfg.input_dir}: input_dir is not a folder")
    if cfg.chunk_seconds <= 0:
        raise ConfigError(f"chunk_seconds must be > 0, got {cfg.chunk_seconds}")
    if cfg.batch_dialogues < 1:
        raise ConfigError(f"batch_dialogues must be >= 1, got {cfg.batch_dialogues}")
    if cfg.workers < 0:
        raise ConfigError(f"workers must be >= 0 (0 = automatic), got {cfg.workers}")
    check_output_folder(cfg.output_dir, "output_dir")
    return cfg.input_dir, cfg.output_dir


def mimi_fingerprint(source: str) -> str:
    """What decides the tokens: a hash of local weights (+ config), or the hub repo id."""
    path = Path(source)
    files = [path / MIMI_WEIGHTS, path / MIMI_CONFIG] if path.is_dir() else [path, path.with_name(MIMI_CONFIG)]
    if not path.exists():
        return f"hub:{source}"
    digest = hashlib.sha256()
    for f in files:
        if f.exists():
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _source_meta(path: Path, info: AudioInfo, mimi: str) -> dict:
    stat = path.stat()
    return {
        "format": FORMAT_VERSION,
        "source": path.name,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "sample_rate": info.sample_rate,
        "mimi": mimi,
        "num_codebooks": NUM_CODEBOOKS,
    }


def _is_done(target: Path, meta: dict) -> bool:
    """True when `target` holds tokens made from this very source with these settings."""
    try:
        with np.load(target, allow_pickle=False) as npz:
            stored = json.loads(str(npz["meta"]))
            shapes = [npz[s].shape for s in ("A", "B")]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return False  # missing, damaged or from an older layout: redo
    return all(stored.get(k) == v for k, v in meta.items()) and shapes == [(NUM_CODEBOOKS, stored.get("frames"))] * 2


def write_tokens(target: Path, codes: np.ndarray, meta: dict) -> None:
    """codes int64 [2, 8, T] -> target npz (A, B, meta), atomically."""
    with atomic_path(target) as tmp, tmp.open("wb") as f:
        np.savez_compressed(
            f,
            A=codes[0].astype(np.int64),
            B=codes[1].astype(np.int64),
            meta=np.array(json.dumps({**meta, "frames": int(codes.shape[-1])})),
        )


def tokenize_audio(
    cfg: AudioTokenizeConfig,
    progress: Progress | None = None,
    shard: tuple[int, int] = (0, 1),
    skip: frozenset[str] = frozenset(),
) -> TokenizeSummary:
    """Tokenize every dialogue file of cfg.input_dir into cfg.output_dir (see the module doc); `shard` =
    (rank, world) of a distributed run (backend.dataset.preprocess): only this rank's share of the files;
    `skip`: dialogue names left alone (not even read)."""
    input_dir, output_dir = _validate(cfg)
    device = pick_device(cfg.device)
    report = progress or (lambda fraction, message: None)
    started = time.monotonic()
    summary = TokenizeSummary(output_dir=str(output_dir))
    files = [p for p in dialogue_files(input_dir, "audio") if p.stem not in skip]
    if not files:
        raise ConfigError(f"{input_dir}: no {' / '.join(AUDIO_EXTENSIONS)} files in this folder")

    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    fingerprint = mimi_fingerprint(cfg.mimi)
    todo: list[tuple[Path, AudioInfo, dict]] = []
    for path in share(files, *shard):
        if len(by_stem[path.stem]) > 1:
            others = ", ".join(p.name for p in by_stem[path.stem] if p != path)
            summary.failed[path.name] = str(
                InputError(
                    path, f"another input file has the same name ({others}); both would write the same token file"
                )
            )
            continue
        try:
            info = probe(path)
        except InputError as e:
            summary.failed[path.name] = str(e)
            continue
        meta = _source_meta(path, info, fingerprint)
        if not cfg.overwrite and _is_done(output_dir / f"{path.stem}.npz", meta):
            summary.skipped.append(path.name)
        else:
            todo.append((path, info, meta))

    if todo:
        from backend.dataset.codec import encode_batch, replicas  # torch: not for a studio that only shows forms

        report(0.0, f"loading Mimi from {cfg.mimi}")
        mimi = load_mimi(cfg.mimi, device=device).eval()  # before writing anything: a bad source leaves no trace
        output_dir.mkdir(parents=True, exist_ok=True)
        cfgmod.save(cfg, config_beside(output_dir))  # beside the folder: it holds only <name>.npz
        channels = 2 * min(cfg.batch_dialogues, len(todo))
        workers = 1 if device != "cpu" else min(cfg.workers or len(os.sched_getaffinity(0)), channels)
        models = replicas(mimi, workers)
        chunk_frames = max(1, round(cfg.chunk_seconds * FRAME_RATE))
        total = sum(info.duration for _, info, _ in todo)
        done = 0.0
        todo.sort(key=lambda item: item[1].duration)  # similar lengths batch with less padding
        for start in range(0, len(todo), cfg.batch_dialogues):
            group = todo[start : start + cfg.batch_dialogues]
            loaded = []
            for path, info, meta in group:
                try:
                    loaded.append((path, load_stereo(path)[0], meta))
                except InputError as e:
                    summary.failed[path.name] = str(e)
            if loaded:
                codes = encode_batch(models, [audio for _, audio, _ in loaded], chunk_frames, device)
                for (path, audio, meta), c in zip(loaded, codes):
                    write_tokens(output_dir / f"{path.stem}.npz", c, meta)
                    summary.written.append(path.name)
                    summary.audio_seconds += audio.shape[1] / SAMPLE_RATE
            done += sum(info.duration for _, info, _ in group)
            report(done / total, f"{start + len(group)}/{len(todo)} files ({group[-1][0].name})")
    report(1.0, f"{len(summary.written)} written, {len(summary.skipped)} already done, {len(summary.failed)} failed")
    summary.wall_seconds = time.monotonic() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = cfgmod.cli_parser(
        AudioTokenizeConfig,
        "Tokenize stereo dialogues with Mimi into <output>/<name>.npz "
        "(A and B: int64 [8, T]); files already done are skipped.",
    )
    args = parser.parse_args(argv)
    try:
        cfg = cfgmod.from_cli(AudioTokenizeConfig, args)
        with cli_progress() as progress:
            summary = tokenize_audio(cfg, progress)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    for message in summary.failed.values():
        print(f"failed: {message}", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
