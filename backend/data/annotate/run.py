"""Stage: stereo recordings -> word-timed transcripts (`<name>.json`), each channel on its own.

ASR mode: the engine transcribes the stretches where the channel's own speaker talks; words that the other
channel dominates (its voice leaking into this channel) are dropped and listed. A Whisper engine's words get
their times from pocketsphinx aligning them on their stretch (refine.py; `--no-refine-times` keeps Whisper's).
Alignment mode (`<name>.txt`, see turns.py): each speaker's known words are placed on their channel one turn at a
time (align.py), with the other speaker's turns turned down first. Re-alignment mode (an existing `<name>.json`
with coarse times, such as SpokenWOZ's): each turn of it is aligned again within a window around its given times.
A turn that cannot be aligned fails alone: its words go evenly into the gap between their placed neighbours
(re-alignment: they keep their given times) with confidence 0, and the sidecar, the summary and the exit status
name it.

A word's confidence is the engine's own (pocketsphinx's posterior in ASR mode; 1 where the engine gives
none) times its support, the share of its audible frames that belong to its channel (crosstalk.py).
Next to each transcript, `<name>.annotation.json` records the engine, the mode and why it was chosen, the
settings, the dropped words, the failed turns and the real-time factor (CPU time over audio time).

Which dialogues, in which mode (`plan`): a dialogue with this stage's sidecar and transcript is done and
skipped; a transcript without the sidecar is the user's and is never replaced without `--overwrite` (its
first version is then kept as `<name>.original.json`). `--mode auto` aligns where a `.txt` is beside the audio,
re-aligns where the user's transcript is (into `--output`, or in place with `--overwrite`; otherwise the
dialogue is kept as it is) and transcribes the rest. A bad file is listed with its reason and gets no output.
Across processes and nodes it is the `annotate` stage of backend.dataset.preprocess (each rank annotates its
share of the recordings).
"""

import json
import sys
import time
from dataclasses import asdict, dataclass, field
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
from backend.data.annotate.align import MARGIN, align_turns, turn_windows
from backend.data.annotate.condition import condition
from backend.data.annotate.crosstalk import Ownership, ownership, suppress_foreign
from backend.data.annotate.engines import Engine, Tick, TimedWord
from backend.data.annotate.original import keep_original
from backend.data.annotate.refine import refine_times
from backend.data.annotate.turns import Turn, read_turns, transcript_turns
from backend.data.audio_io import load_stereo, probe
from backend.data.files import AUDIO_EXTENSIONS, SIDECAR_SUFFIXES
from backend.data.transcripts import KYUTAI_LABELS, load_transcript
from backend.jobs.sharding import ShareSummary, share

ANNOTATION_SUFFIX = SIDECAR_SUFFIXES["annotation"]
TURNS_SUFFIX = ".txt"
Mode = Literal["asr", "align", "realign"]
ALIGNING_MODES = ("align", "realign")


@dataclass
class AnnotateConfig:
    input: Path = option(
        Path("workspace/raw"),
        "folder of stereo recordings <name>.wav|flac|ogg; a <name>.txt "
        "beside one (lines 'A: ...' / 'B: ...') selects alignment mode",
    )
    output: Path | None = option(None, "folder for <name>.json (default: the input folder, next to the audio)")
    mode: Literal["auto", "asr", "align", "realign"] = option(
        "auto",
        "asr: find the words; align: place the words of <name>.txt; realign: refine the times of the "
        "transcript <name>.json beside the audio; auto: align where a .txt exists, realign where your "
        "transcript exists, asr elsewhere",
    )
    engine: Literal["pocketsphinx", "faster-whisper", "whisper"] = option(
        "pocketsphinx",
        "recogniser: pocketsphinx (English, offline, inside its wheel; ASR and alignment), "
        "faster-whisper (CTranslate2 Whisper, for real recordings; ASR only) or whisper "
        "(transformers, any Hugging Face Whisper checkpoint; ASR only)",
    )
    whisper_model: str = option(
        "",
        "Whisper model: a hub id (faster-whisper: Systran/faster-whisper-small; "
        "whisper: openai/whisper-small) or a local folder",
    )
    language: str = option(
        "",
        "Whisper's language code (en, ja, ...); empty: detected (faster-whisper: once per channel; whisper: per 30 s)",
    )
    device: str = option("cpu", "device for Whisper (cpu, cuda, cuda:1); faster-whisper: int8 on cpu, float16 on cuda")
    refine_times: bool = option(
        True,
        "Whisper engines: the words found in each stretch are aligned again there by pocketsphinx for their times "
        "(Whisper's start 0.1-0.2 s early); a word it cannot place keeps Whisper's times, and so do all words "
        "with a --language other than en (pocketsphinx's model is English)",
    )
    vad: bool = option(True, "faster-whisper: its VAD filter inside each 30 s window of a channel's own speech")
    format: Literal["jmoshi", "kyutai"] = option(
        "jmoshi", "output: J-Moshi's flat word list or Kyutai's alignments object"
    )
    voice_dbfs: float = option(-45.0, "a 10 ms frame at this level or louder carries voice")
    crosstalk_db: float = option(
        12.0, "a frame is the other speaker's when their channel is louder by more than this many dB", ge=0
    )
    min_support: float = option(
        0.5, "ASR mode drops a word when less than this share of its audible frames are its own channel's", ge=0, le=1
    )
    margin: float = option(
        MARGIN, "alignment: seconds of audio each side of a turn's window (re-alignment: around its given times)", ge=0
    )
    adapt: bool = option(
        True,
        "pocketsphinx ASR: decode each channel twice, the second time with the acoustic "
        "model adapted to its speaker (MLLR); fewer errors for about twice the compute",
    )
    overwrite: bool = option(
        False,
        "redo dialogues annotated already, and replace transcripts annotate did not "
        "make (the first version kept as <name>.original.json)",
    )


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
    mode: Mode
    why: str  # how the mode was chosen
    engine: dict
    words: list[AnnotatedWord]
    dropped: list[dict]  # ASR words the other channel dominates, with their support
    failed_turns: list[dict]  # alignment: turns none of whose words could be placed, with the reason
    unplaced: int  # alignment: words the engine could not place (interpolated, or their given times kept)
    audio_seconds: float
    compute_seconds: float  # CPU time of this process (all its threads), not wall time: steady under load


@dataclass
class AnnotateSummary(ShareSummary):  # written and skipped (done already) hold dialogue names
    compute_seconds: float = 0.0
    modes: dict[str, str] = field(default_factory=dict)  # written dialogue -> "mode (why)"
    kept: dict[str, str] = field(default_factory=dict)  # the user's transcripts left alone, with the reason
    failed_turns: dict[str, list[str]] = field(default_factory=dict)  # written dialogue -> its failed turns

    @classmethod
    def merge(cls, parts: list["AnnotateSummary"], **figures: Any) -> "AnnotateSummary":
        def joined(key: str) -> dict:
            return dict(sorted(kv for p in parts for kv in getattr(p, key).items()))

        return super().merge(
            parts,
            compute_seconds=sum(p.compute_seconds for p in parts),
            modes=joined("modes"),
            kept=joined("kept"),
            failed_turns=joined("failed_turns"),
            **figures,
        )

    def line(self) -> str:
        rtf = self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0
        kept = f", {len(self.kept)} kept as they are" if self.kept else ""
        return f"{self.counts()}{kept} ({self.audio_seconds:.1f} s of audio, real-time factor {rtf:.2f} in CPU time)"

    def report(self) -> list[tuple[bool, str]]:
        """(is a problem, line) per dialogue: the mode and why, the failed turns, the kept transcripts, the
        failures."""
        lines = [(False, f"{n}: {m}") for n, m in self.modes.items()]
        lines += [(True, f"{n}: turn not aligned: {t}") for n, turns in self.failed_turns.items() for t in turns]
        lines += [(False, f"{n}: kept: {why}") for n, why in self.kept.items()]
        return lines + [(True, f"{n}: failed: {why}") for n, why in self.failed.items()]


def _check_engine(cfg: AnnotateConfig) -> None:
    if cfg.engine != "pocketsphinx" and not cfg.whisper_model:
        raise ConfigError(f"whisper_model: a hub id or a local folder is required for --engine {cfg.engine}")
    if cfg.engine != "pocketsphinx" and cfg.mode in ALIGNING_MODES:
        raise ConfigError(f"mode {cfg.mode}: Whisper cannot place known words; use --engine pocketsphinx")


def check_config(cfg: AnnotateConfig) -> None:
    """Refuse settings that cannot run, before anything starts (the preprocessing stage's check)."""
    config.check_numbers(cfg)
    recordings(cfg.input)  # refuses a missing folder
    if cfg.output is not None:
        check_output_folder(cfg.output, "output")
    _check_engine(cfg)


def make_engine(cfg: AnnotateConfig) -> Engine:
    _check_engine(cfg)
    if cfg.engine == "faster-whisper":
        from backend.data.annotate.whisper_ct2 import FasterWhisperEngine

        return FasterWhisperEngine(cfg.whisper_model, language=cfg.language or None, device=cfg.device, vad=cfg.vad)
    if cfg.engine == "whisper":
        from backend.data.annotate.whisper import WhisperEngine

        return WhisperEngine(cfg.whisper_model, language=cfg.language or None, device=cfg.device)
    from backend.data.annotate.sphinx import PocketsphinxEngine

    return PocketsphinxEngine(adapt=cfg.adapt)


def make_aligner(cfg: AnnotateConfig, engine: Engine) -> Engine | None:
    """The engine that times a Whisper engine's words (refine.py), or None: pocketsphinx times its own, and its
    English model has no word of another language to place (Japanese, say: a decoder loaded per stretch for
    nothing)."""
    if not cfg.refine_times or engine.name == "pocketsphinx" or cfg.language not in ("", "en"):
        return None
    from backend.data.annotate.sphinx import PocketsphinxEngine

    return PocketsphinxEngine(adapt=False)


def _channel(x: np.ndarray, engine: Engine) -> np.ndarray:
    return soxr.resample(x, SAMPLE_RATE, engine.sample_rate).astype(np.float32)


def _transcribe_channel(
    engine: Engine,
    x: np.ndarray,
    own: Ownership,
    duration: float,
    tick: Tick | None = None,
    aligner: Engine | None = None,
) -> list[TimedWord]:
    """Words of the stretches of own speech (the rest is the other speaker's or silence); with an `aligner`, their
    times from it (refine.py), on the channel with the other speaker's stretches turned down as in alignment."""
    regions = own.regions(bridge=engine.bridge, pad=0.2, duration=duration)
    pieces = [_channel(x[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], engine) for start, end in regions]
    share = 0.8 if aligner else 1.0  # of the channel's progress: the recogniser's, then the aligner's
    found = engine.transcribe(pieces, None if tick is None else lambda f: tick(share * f)) if pieces else []
    if aligner and found:
        quiet = suppress_foreign(x, SAMPLE_RATE, own)
        found = refine_times(
            aligner,
            lambda lo, hi: _channel(quiet[int(lo * SAMPLE_RATE) : int(hi * SAMPLE_RATE)], aligner),
            regions,
            found,
            None if tick is None else lambda f: tick(share + (1 - share) * f),
        )
    return [
        TimedWord(w.word, w.start + start, w.end + start, w.confidence)
        for (start, _), words in zip(regions, found)
        for w in words
    ]


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


def _given_times(placed: list[TimedWord | None], turns: list[Turn]) -> list[TimedWord | None]:
    """Re-alignment: a word the engine could not place keeps its given times, with confidence 0."""
    given = [TimedWord(w, s, e, 0.0) for t in turns for w, (s, e) in zip(t.words, t.times or ())]
    return [p if p is not None else g for p, g in zip(placed, given)]


def _align_channel(
    engine: Engine,
    x: np.ndarray,
    own: Ownership,
    turns: list[Turn],
    cfg: AnnotateConfig,
    duration: float,
    tick: Tick | None,
) -> tuple[list[TimedWord], list[tuple[Turn, str]], int]:
    """One speaker's turns placed on their channel (align.py): the words, the failed turns, the unplaced count."""
    quiet = suppress_foreign(x, SAMPLE_RATE, own)
    windows = turn_windows(turns, own, duration, cfg.margin)
    result = align_turns(
        engine,
        lambda lo, hi: _channel(quiet[int(lo * SAMPLE_RATE) : int(hi * SAMPLE_RATE)], engine),
        turns,
        windows,
        tick,
    )
    placed = result.placed
    if all(t.times is not None for t in turns):
        placed = _given_times(placed, turns)
    said = [w for t in turns for w in t.words]
    return fill_unplaced(placed, said, duration), result.failed, sum(p is None for p in result.placed)


def annotate_audio(
    engine: Engine,
    audio: np.ndarray,
    cfg: AnnotateConfig,
    turns: list[Turn] | None = None,
    name: str = "",
    progress: Progress | None = None,
    why: str = "",
) -> DialogueAnnotation:
    """Annotate float [2, N] audio at 24 kHz: ASR mode without `turns`, alignment mode with them (re-alignment
    when they carry given times). `progress` moves with each stretch of speech decoded or turn aligned (a minute
    of audio takes minutes on a busy CPU). `why`: how the mode was chosen, for the sidecar."""
    started = time.process_time()
    audio = condition(audio, SAMPLE_RATE)
    duration = audio.shape[1] / SAMPLE_RATE
    mode: Mode = "asr" if turns is None else "realign" if all(t.times is not None for t in turns) else "align"
    owners = ownership(audio, SAMPLE_RATE, on_dbfs=cfg.voice_dbfs, margin_db=cfg.crosstalk_db)
    aligner = make_aligner(cfg, engine) if turns is None else None
    words, dropped, failed, unplaced = [], [], [], 0
    for c, (speaker, x, own) in enumerate(zip(SPEAKERS, audio, owners)):
        what = f"speaker {speaker}: {'recognising' if turns is None else 'aligning'} {duration:.0f} s"
        tick = None if progress is None else (lambda f, c=c, what=what: progress((c + f) / len(SPEAKERS), what))
        if tick:
            tick(0.0)
        if turns is None:
            found = _transcribe_channel(engine, x, own, duration, tick, aligner)
        else:
            mine = [t for t in turns if t.speaker == speaker]
            if not mine:
                continue
            found, failed_here, missed = _align_channel(engine, x, own, mine, cfg, duration, tick)
            failed += [
                {"speaker": speaker, "turn": t.label(), "words": len(t.words), "reason": why_failed}
                for t, why_failed in failed_here
            ]
            unplaced += missed
        for w in found:
            support = own.support(w.start, w.end)
            if turns is None and support < cfg.min_support:
                dropped.append(
                    {
                        "speaker": speaker,
                        "word": w.word,
                        "start": round(w.start, 3),
                        "end": round(w.end, 3),
                        "support": round(support, 3),
                    }
                )
                continue
            words.append(
                AnnotatedWord(speaker, w.word, round(w.start, 3), round(w.end, 3), round(w.confidence * support, 3))
            )
    if turns is not None and len(failed) == len(turns):
        raise InputError(
            None, f"none of the {len(turns)} turns could be aligned (first: {failed[0]['turn']}: {failed[0]['reason']})"
        )
    words.sort(key=lambda w: (w.start, w.speaker))
    return DialogueAnnotation(
        name, mode, why, engine.describe(), words, dropped, failed, unplaced, duration, time.process_time() - started
    )


def transcript_json(words: list[AnnotatedWord], fmt: Literal["jmoshi", "kyutai"]) -> object:
    """Format A (with a confidence per word) or format B (confidences in a parallel list)."""
    if fmt == "jmoshi":
        return [asdict(w) for w in words]
    return {
        "alignments": [[w.word, [w.start, w.end], KYUTAI_LABELS[w.speaker]] for w in words],
        "confidence": [w.confidence for w in words],
    }


def write_annotation(result: DialogueAnnotation, cfg: AnnotateConfig, folder: Path) -> Path:
    """The sidecar first, the transcript last (`annotated` checks that order); a transcript annotate did not make
    is copied to `<name>.original.json` before it is replaced."""
    record = {
        "name": result.name,
        "mode": result.mode,
        "mode_chosen_because": result.why,
        "engine": result.engine,
        "words": len(result.words),
        "dropped_crosstalk": result.dropped,
        "failed_turns": result.failed_turns,
        "unplaced": result.unplaced,
        "audio_seconds": round(result.audio_seconds, 3),
        "real_time_factor": round(result.compute_seconds / max(result.audio_seconds, 1e-9), 4),
        "config": config.to_dict(cfg),
    }
    target = folder / f"{result.name}.json"
    sidecar = folder / f"{result.name}{ANNOTATION_SUFFIX}"
    if target.exists() and not sidecar.exists():
        keep_original(target)
    write_text_atomic(sidecar, json.dumps(record, indent=1) + "\n")
    write_text_atomic(target, json.dumps(transcript_json(result.words, cfg.format), indent=1) + "\n")
    return target


def annotated(folder: Path, name: str) -> bool:
    """Whether this stage finished `name` in `folder`: its sidecar, and the transcript written after it (edits
    made later in curation keep it so; a run cut off between the two files does not)."""
    sidecar, target = folder / f"{name}{ANNOTATION_SUFFIX}", folder / f"{name}.json"
    return sidecar.exists() and target.exists() and target.stat().st_mtime >= sidecar.stat().st_mtime


def recordings(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_EXTENSIONS
    )


@dataclass(frozen=True)
class Plan:
    mode: Mode | None  # None: leave the dialogue alone
    why: str


def plan(path: Path, cfg: AnnotateConfig, out: Path) -> Plan:
    """What to do with the recording `path` and why (see the module docstring); raises InputError when the
    chosen mode cannot run on it."""
    name = path.stem
    turns, reference, target = path.with_suffix(TURNS_SUFFIX), path.with_suffix(".json"), out / f"{name}.json"
    if annotated(out, name) and not cfg.overwrite:
        return Plan(None, "annotated already")
    users = reference.exists() and not (path.parent / f"{name}{ANNOTATION_SUFFIX}").exists()
    if cfg.mode != "auto":
        mode, why = cfg.mode, f"--mode {cfg.mode}"
    elif turns.exists():
        mode, why = "align", f"{turns.name} is beside the audio"
    elif users and cfg.engine != "pocketsphinx":
        return Plan(None, f"{reference.name} was not made by annotate; re-aligning it needs --engine pocketsphinx")
    elif users:
        mode, why = "realign", f"{reference.name} (not made by annotate) has word times to refine"
    else:
        mode, why = "asr", f"no {turns.name} and no transcript of its own"
    if mode == "align" and not turns.exists():
        raise InputError(path, f"alignment mode needs {turns.name} (lines 'A: ...' / 'B: ...')")
    if mode == "realign" and not reference.exists():
        raise InputError(path, f"re-alignment needs its transcript {reference.name} beside it")
    if target.exists() and not (out / f"{name}{ANNOTATION_SUFFIX}").exists() and not cfg.overwrite:
        advice = "--overwrite replaces it (keeping it as <name>.original.json), --output writes elsewhere"
        if cfg.mode == "auto":
            return Plan(None, f"{target} was not made by annotate; {advice}")
        raise InputError(target, f"was not made by annotate: not replaced; {advice}")
    if mode in ALIGNING_MODES and cfg.engine != "pocketsphinx":
        raise InputError(
            path,
            f"mode {mode} needs --engine pocketsphinx (Whisper cannot place known words); "
            f"use --mode asr to transcribe instead",
        )
    return Plan(mode, why)


def load_turns(path: Path, mode: Mode) -> list[Turn] | None:
    """The turns to align: the .txt's lines, or the transcript's timed turns (None for ASR)."""
    if mode == "align":
        return read_turns(path.with_suffix(TURNS_SUFFIX))
    if mode == "realign":
        return transcript_turns(load_transcript(path.with_suffix(".json")).words)
    return None


def annotate_folder(
    cfg: AnnotateConfig, progress: Progress | None = None, engine: Engine | None = None, shard: tuple[int, int] = (0, 1)
) -> AnnotateSummary:
    """Annotate the recordings of `cfg.input` as `plan` decides; see the module docstring. `shard` = (rank, world)
    of a distributed run (backend.dataset.preprocess): only this rank's share of the recordings."""
    _check_engine(cfg)  # the settings' problems before any file's
    out = cfg.output or cfg.input
    summary = AnnotateSummary(str(out))
    files = recordings(cfg.input)
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    todo: list[tuple[Path, Plan]] = []
    for path in share(files, *shard):
        if len(by_stem[path.stem]) > 1:  # reported once, by the rank holding the first of them
            if path == by_stem[path.stem][0]:
                summary.failed[path.stem] = f"{path}: several audio files share the name '{path.stem}'; keep one"
            continue
        try:
            probe(path)  # the audio's own problems first (mono, empty, unreadable)
            p = plan(path, cfg, out)
        except InputError as e:
            summary.failed[path.stem] = str(e)
            continue
        if p.mode is not None:
            todo.append((path, p))
        elif p.why == "annotated already":
            summary.skipped.append(path.stem)
        else:
            summary.kept[path.stem] = p.why
    engine = engine or (make_engine(cfg) if todo else None)
    for i, (path, p) in enumerate(todo):
        if progress:
            progress(i / len(todo), f"{i + 1}/{len(todo)}: {path.name}, {p.mode} ({p.why})")
        try:
            turns = load_turns(path, p.mode)  # type: ignore[arg-type]
            audio, _ = load_stereo(path)
            step = (
                None
                if progress is None
                else (
                    lambda f, m, i=i, name=path.name: progress((i + f) / len(todo), f"{i + 1}/{len(todo)}: {name}, {m}")
                )
            )
            result = annotate_audio(engine, audio, cfg, turns, path.stem, step, p.why)  # type: ignore[arg-type]
            write_annotation(result, cfg, out)
        except StudioError as e:
            summary.failed[path.stem] = str(e) if isinstance(e, InputError) and e.path else f"{path}: {e}"
            continue
        summary.written.append(path.stem)
        summary.modes[path.stem] = f"{result.mode} ({p.why})"
        if result.failed_turns:
            summary.failed_turns[path.stem] = [f"{t['turn']}: {t['reason']}" for t in result.failed_turns]
        summary.audio_seconds += result.audio_seconds
        summary.compute_seconds += result.compute_seconds
    if progress:
        progress(
            1.0, f"{len(summary.written)} written, {len(summary.skipped)} already done, {len(summary.failed)} failed"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(
        AnnotateConfig,
        "Transcribe or align stereo recordings into word-timed "
        "transcripts (<name>.json); dialogues already done are skipped.",
    )
    try:
        cfg = config.from_cli(AnnotateConfig, parser.parse_args(argv))
        check_config(cfg)
        with cli_progress() as progress:
            summary = annotate_folder(cfg, progress)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    for problem, line in summary.report():
        print(line, file=sys.stderr if problem else sys.stdout)
    return 1 if summary.failed or summary.failed_turns else 0


if __name__ == "__main__":
    sys.exit(main())
