"""Stage: stereo recordings -> word-timed transcripts (`<name>.json`), each channel on its own.

ASR mode (no `<name>.txt`): the engine transcribes the stretches where the channel's own speaker talks;
words that the other channel dominates (its voice leaking into this channel) are dropped and listed.
Alignment mode (`<name>.txt`, see turns.py): each speaker's known words are placed on their channel,
with the other speaker's turns turned down first; words the engine cannot place are put evenly into
the gap between their placed neighbours with confidence 0.

A word's confidence is the engine's own (pocketsphinx's posterior in ASR mode; 1 where the engine gives
none) times its support, the share of its audible frames that belong to its channel (crosstalk.py).
Next to each transcript, `<name>.annotation.json` records the engine, the mode, the settings and the
dropped words. Resumable: a dialogue whose transcript exists is skipped; a bad file is listed with its
reason and gets no output. Across processes and nodes it is the `annotate` stage of backend.dataset.preprocess
(each rank annotates its share of the recordings).
"""

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soxr

from backend.core import config
from backend.core.atomic import check_output_folder, write_text_atomic
from backend.core.config import option
from backend.core.errors import ConfigError, InputError, StudioError
from backend.core.progress import Progress, cli_progress
from backend.core.spec import SAMPLE_RATE, SPEAKERS
from backend.data.annotate.crosstalk import Ownership, ownership, suppress_foreign
from backend.data.annotate.engines import Engine, Tick, TimedWord
from backend.data.annotate.turns import read_turns
from backend.data.audio_io import load_stereo, probe
from backend.data.files import AUDIO_EXTENSIONS, SIDECAR_SUFFIXES
from backend.jobs.sharding import ShareSummary, share
from backend.data.transcripts import KYUTAI_LABELS

ANNOTATION_SUFFIX = SIDECAR_SUFFIXES["annotation"]
TURNS_SUFFIX = ".txt"


@dataclass
class AnnotateConfig:
    input: Path = option(Path("workspace/raw"), "folder of stereo recordings <name>.wav|flac|ogg; a <name>.txt "
                                                "beside one (lines 'A: ...' / 'B: ...') selects alignment mode")
    output: Path | None = option(None, "folder for <name>.json (default: the input folder, next to the audio)")
    mode: Literal["auto", "asr", "align"] = option("auto", "asr: find the words; align: place the words of "
                                                           "<name>.txt; auto: align where a .txt exists")
    engine: Literal["pocketsphinx", "whisper"] = option("pocketsphinx", "recogniser: pocketsphinx (English, "
                                                        "offline, inside its wheel) or Whisper (ASR mode only)")
    whisper_model: str = option("", "Whisper model: a Hugging Face id (openai/whisper-small) or a local folder")
    language: str = option("", "Whisper's language code (en, ja, ...); empty: detected per chunk")
    device: str = option("cpu", "torch device for Whisper (cpu, cuda, cuda:1)")
    format: Literal["jmoshi", "kyutai"] = option("jmoshi", "output: J-Moshi's flat word list or Kyutai's "
                                                           "alignments object")
    voice_dbfs: float = option(-45.0, "a 10 ms frame at this level or louder carries voice")
    crosstalk_db: float = option(12.0, "a frame is the other speaker's when their channel is louder by more "
                                      "than this many dB", ge=0)
    min_support: float = option(0.5, "ASR mode drops a word when less than this share of its audible frames "
                                     "are its own channel's", ge=0, le=1)
    adapt: bool = option(True, "pocketsphinx ASR: decode each channel twice, the second time with the acoustic "
                               "model adapted to its speaker (MLLR); fewer errors for about twice the compute")
    overwrite: bool = option(False, "redo dialogues whose transcript already exists")


@dataclass
class AnnotatedWord:
    speaker: str
    word: str
    start: float
    end: float
    confidence: float


@dataclass
class DialogueAnnotation:
    name: str
    mode: Literal["asr", "align"]
    engine: dict
    words: list[AnnotatedWord]
    dropped: list[dict]  # ASR words the other channel dominates, with their support
    unplaced: int  # alignment mode: words the engine could not place (interpolated)
    audio_seconds: float
    compute_seconds: float


@dataclass
class AnnotateSummary(ShareSummary):  # written, skipped and failed hold dialogue names
    compute_seconds: float = 0.0

    @classmethod
    def merge(cls, parts: list["AnnotateSummary"], **figures: Any) -> "AnnotateSummary":
        return super().merge(parts, compute_seconds=sum(p.compute_seconds for p in parts), **figures)

    def line(self) -> str:
        rtf = self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0
        return f"{self.counts()} ({self.audio_seconds:.1f} s of audio, real-time factor {rtf:.2f})"


def _check_engine(cfg: AnnotateConfig) -> None:
    if cfg.engine == "whisper" and not cfg.whisper_model:
        raise ConfigError("whisper_model: a Hugging Face id or a local folder is required for --engine whisper")
    if cfg.engine == "whisper" and cfg.mode == "align":
        raise ConfigError("mode align: Whisper cannot place known words; use --engine pocketsphinx")


def check_config(cfg: AnnotateConfig) -> None:
    """Refuse settings that cannot run, before anything starts (the preprocessing stage's check)."""
    config.check_numbers(cfg)
    recordings(cfg.input)  # refuses a missing folder
    if cfg.output is not None:
        check_output_folder(cfg.output, "output")
    _check_engine(cfg)


def make_engine(cfg: AnnotateConfig) -> Engine:
    _check_engine(cfg)
    if cfg.engine == "whisper":
        from backend.data.annotate.whisper import WhisperEngine

        return WhisperEngine(cfg.whisper_model, language=cfg.language or None, device=cfg.device)
    from backend.data.annotate.sphinx import PocketsphinxEngine

    return PocketsphinxEngine(adapt=cfg.adapt)


def _channel(x: np.ndarray, engine: Engine) -> np.ndarray:
    return soxr.resample(x, SAMPLE_RATE, engine.sample_rate).astype(np.float32)


def _transcribe_channel(engine: Engine, x: np.ndarray, own: Ownership, duration: float,
                        tick: Tick | None = None) -> list[TimedWord]:
    """Words of the stretches of own speech (the rest is the other speaker's or silence)."""
    regions = own.regions(bridge=0.3, pad=0.2, duration=duration)
    pieces = [_channel(x[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)], engine) for start, end in regions]
    return [TimedWord(w.word, w.start + start, w.end + start, w.confidence)
            for (start, _), found in zip(regions, engine.transcribe(pieces, tick) if pieces else []) for w in found]


def fill_unplaced(placed: list[TimedWord | None], words: list[str], duration: float) -> list[TimedWord]:
    """Unplaced words spread evenly over the gap between their placed neighbours, confidence 0."""
    out: list[TimedWord] = []
    i = 0
    while i < len(placed):
        if placed[i] is not None:
            out.append(placed[i])
            i += 1
            continue
        j = i
        while j < len(placed) and placed[j] is None:
            j += 1
        lo = out[-1].end if out else 0.0
        hi = placed[j].start if j < len(placed) else duration
        hi = max(lo, hi)
        step = (hi - lo) / (j - i)
        out += [TimedWord(words[k], lo + (k - i) * step, lo + (k - i + 1) * step, 0.0) for k in range(i, j)]
        i = j
    return out


def annotate_audio(engine: Engine, audio: np.ndarray, cfg: AnnotateConfig,
                   turns: dict[str, list[str]] | None = None, name: str = "",
                   progress: Progress | None = None) -> DialogueAnnotation:
    """Annotate float [2, N] audio at 24 kHz: ASR mode without `turns`, alignment mode with them. `progress`
    moves with each stretch of speech decoded (a minute of audio takes minutes on a busy CPU)."""
    started = time.monotonic()
    duration = audio.shape[1] / SAMPLE_RATE
    owners = ownership(audio, SAMPLE_RATE, on_dbfs=cfg.voice_dbfs, margin_db=cfg.crosstalk_db)
    words, dropped, unplaced = [], [], 0
    for c, (speaker, x, own) in enumerate(zip(SPEAKERS, audio, owners)):
        what = f"speaker {speaker}: {'recognising' if turns is None else 'aligning'} {duration:.0f} s"
        tick = None if progress is None else (lambda f, c=c, what=what: progress((c + f) / len(SPEAKERS), what))
        if tick:
            tick(0.0)
        if turns is None:
            found = _transcribe_channel(engine, x, own, duration, tick)
        else:
            said = turns[speaker]
            if not said:
                continue
            placed = engine.align(_channel(suppress_foreign(x, SAMPLE_RATE, own), engine), said)
            if all(p is None for p in placed):
                raise InputError(None, f"speaker {speaker}: none of the {len(said)} words could be "
                                               f"aligned to channel {speaker}")
            unplaced += sum(p is None for p in placed)
            found = fill_unplaced(placed, said, duration)
        for w in found:
            support = own.support(w.start, w.end)
            if turns is None and support < cfg.min_support:
                dropped.append({"speaker": speaker, "word": w.word, "start": round(w.start, 3),
                                "end": round(w.end, 3), "support": round(support, 3)})
                continue
            words.append(AnnotatedWord(speaker, w.word, round(w.start, 3), round(w.end, 3),
                                       round(w.confidence * support, 3)))
    words.sort(key=lambda w: (w.start, w.speaker))
    return DialogueAnnotation(name, "asr" if turns is None else "align", engine.describe(), words, dropped,
                              unplaced, duration, time.monotonic() - started)


def transcript_json(words: list[AnnotatedWord], fmt: Literal["jmoshi", "kyutai"]) -> object:
    """Format A (with a confidence per word) or format B (confidences in a parallel list)."""
    if fmt == "jmoshi":
        return [asdict(w) for w in words]
    return {"alignments": [[w.word, [w.start, w.end], KYUTAI_LABELS[w.speaker]] for w in words],
            "confidence": [w.confidence for w in words]}


def write_annotation(result: DialogueAnnotation, cfg: AnnotateConfig, folder: Path) -> Path:
    """The sidecar first, the transcript last: a transcript on disk means the dialogue is done."""
    record = {"name": result.name, "mode": result.mode, "engine": result.engine, "words": len(result.words),
              "dropped_crosstalk": result.dropped, "unplaced": result.unplaced,
              "audio_seconds": round(result.audio_seconds, 3),
              "real_time_factor": round(result.compute_seconds / max(result.audio_seconds, 1e-9), 4),
              "config": config.to_dict(cfg)}
    write_text_atomic(folder / f"{result.name}{ANNOTATION_SUFFIX}", json.dumps(record, indent=1) + "\n")
    target = folder / f"{result.name}.json"
    write_text_atomic(target, json.dumps(transcript_json(result.words, cfg.format), indent=1) + "\n")
    return target


def recordings(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS)


def annotate_folder(cfg: AnnotateConfig, progress: Progress | None = None, engine: Engine | None = None,
                    shard: tuple[int, int] = (0, 1)) -> AnnotateSummary:
    """Annotate every recording of `cfg.input` that has no transcript yet; see the module docstring. `shard` =
    (rank, world) of a distributed run (backend.dataset.preprocess): only this rank's share of the recordings."""
    out = cfg.output or cfg.input
    summary = AnnotateSummary(str(out))
    files = recordings(cfg.input)
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    todo = []
    for path in share(files, *shard):
        if len(by_stem[path.stem]) > 1:  # reported once, by the rank holding the first of them
            if path == by_stem[path.stem][0]:
                summary.failed[path.stem] = f"{path}: several audio files share the name '{path.stem}'; keep one"
        elif (out / f"{path.stem}.json").exists() and not cfg.overwrite:
            summary.skipped.append(path.stem)
        else:
            todo.append(path)
    engine = engine or (make_engine(cfg) if todo else None)
    for i, path in enumerate(todo):
        if progress:
            progress(i / len(todo), f"{i + 1}/{len(todo)}: {path.name}, reading")
        turns_path = path.with_suffix(TURNS_SUFFIX)
        try:
            probe(path)  # the audio's own problems first (mono, empty, unreadable)
            align = cfg.mode == "align" or (cfg.mode == "auto" and turns_path.exists())
            if align and cfg.engine != "pocketsphinx":
                raise InputError(turns_path, "alignment mode needs --engine pocketsphinx (Whisper cannot place "
                                             "known words); use --mode asr to ignore the .txt")
            if align and not turns_path.exists():
                raise InputError(path, f"alignment mode needs {turns_path.name} (lines 'A: ...' / 'B: ...')")
            turns = read_turns(turns_path) if align else None
            audio, _ = load_stereo(path)
            step = None if progress is None else (
                lambda f, m, i=i, name=path.name: progress((i + f) / len(todo), f"{i + 1}/{len(todo)}: {name}, {m}"))
            result = annotate_audio(engine, audio, cfg, turns, path.stem, step)  # type: ignore[arg-type]
            write_annotation(result, cfg, out)
        except StudioError as e:
            summary.failed[path.stem] = str(e) if isinstance(e, InputError) and e.path else f"{path}: {e}"
            continue
        summary.written.append(path.stem)
        summary.audio_seconds += result.audio_seconds
        summary.compute_seconds += result.compute_seconds
    if progress:
        progress(1.0, f"{len(summary.written)} written, {len(summary.skipped)} already done, "
                      f"{len(summary.failed)} failed")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(AnnotateConfig, "Transcribe or align stereo recordings into word-timed "
                                               "transcripts (<name>.json); dialogues already done are skipped.")
    try:
        cfg = config.from_cli(AnnotateConfig, parser.parse_args(argv))
        check_config(cfg)
        with cli_progress() as progress:
            summary = annotate_folder(cfg, progress)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    for reason in summary.failed.values():
        print(f"failed: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
