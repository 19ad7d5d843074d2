"""Benchmark (run by hand, not a test): annotation quality and speed per engine, side by side.

    .venv/bin/python bench/bench_annotate.py                          # held-out piper set + SpokenWOZ sample
    .venv/bin/python bench/bench_annotate.py --dialogues 12 --whisper-model path/or/hub-id

Held-out set: two-speaker stereo dialogues read by piper's "joe" voice one word at a time
(backend.demo.heldout_speech), so the true word spans are exact; turns overlap now and then and each
voice leaks into the other channel 24 dB down. Per engine and mode: WER per channel and over both, median |start
error| and the share of words within 100 ms (over the words the engine got right, matched by the WER
alignment; in alignment mode every word), and the real-time factor (compute seconds per second of
stereo audio, both channels included). Targets for pocketsphinx: alignment median <= 40 ms and >= 95%
within 100 ms; ASR WER <= 25%. pocketsphinx's ASR runs with speaker adaptation (the default) and without it.

SpokenWOZ sample (real 8 kHz calls, reference words with coarse times): WER of ASR mode against the
reference words, and in alignment mode (the reference words as turns) the share of words whose centre
falls inside the reference word's interval. (WER is n/a in alignment mode: the words are given.)
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.core.errors import InputError  # noqa: E402
from backend.core.spec import SPEAKERS  # noqa: E402
from backend.data.annotate.measure import matched_pairs, scoring_form, word_errors  # noqa: E402
from backend.data.annotate.run import AnnotateConfig, annotate_audio, make_engine  # noqa: E402
from backend.data.audio_io import load_stereo  # noqa: E402
from backend.data.transcripts import load_transcript  # noqa: E402
from backend.demo.heldout_speech import heldout_dialogues  # noqa: E402

SPOKENWOZ = Path(__file__).resolve().parents[2] / "shared/data/spokenwoz_sample"


class Tally:
    def __init__(self, show_errors: bool = False) -> None:
        self.show_errors = show_errors
        self.errors = {s: 0 for s in SPEAKERS}
        self.words = {s: 0 for s in SPEAKERS}
        self.start_errors: list[float] = []
        self.inside: list[bool] = []
        self.compute = self.audio = 0.0
        self.failed: list[str] = []  # dialogues the engine gave up on (left out of the figures)

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
        counts = [(self.errors[s], self.words[s]) for s in SPEAKERS] + [(sum(self.errors.values()),
                                                                          sum(self.words.values()))]
        wer = " ".join(f"{100 * e / max(1, n):5.1f}%" if wer else f"{'n/a':>6}" for e, n in counts)
        e = np.array(self.start_errors) if self.start_errors else np.array([np.nan])
        rtf = self.compute / self.audio if self.audio else float("nan")
        times = (f"{1000 * np.median(e):7.1f} ms {100 * np.mean(e < 0.1):6.1f}%" if timing
                 else f"{'':>10} {'':>7}")
        inside = f"{100 * np.mean(self.inside):6.1f}%" if self.inside else f"{'':>7}"
        failed = f"  ({len(self.failed)} failed: {'; '.join(self.failed)})" if self.failed else ""
        return f"{label:<28} {wer}  {times}  {inside}  {rtf:5.2f}{failed}"


HEADER = (f"{'engine / mode':<28} {'WER A':>6} {'WER B':>6} {'both':>6}  {'median':>10} {'<100ms':>7}  {'centre':>7}  "
          f"{'RTF':>5}")


def run(engine, audio: np.ndarray, cfg: AnnotateConfig, turns, truth, tally: Tally, name: str) -> None:
    try:
        result = annotate_audio(engine, audio, cfg, turns)
    except InputError as e:
        tally.failed.append(f"{name}: {e}")
        return
    tally.compute += result.compute_seconds
    tally.audio += result.audio_seconds
    for s in SPEAKERS:
        ref = sorted((w for w in truth if w.speaker == s), key=lambda w: w.start)
        tally.add(s, ref, [w for w in result.words if w.speaker == s], aligned=turns is not None)


def turns_of(words) -> dict[str, list[str]]:
    return {s: [w.word for w in sorted(words, key=lambda w: w.start) if w.speaker == s] for s in SPEAKERS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--whisper-model", default="", help="Whisper hub id or folder (ASR rows; none by default)")
    parser.add_argument("--spokenwoz", type=Path, default=SPOKENWOZ)
    parser.add_argument("--show-errors", action="store_true", help="print reference and found words per channel "
                                                                   "where ASR mode makes errors")
    args = parser.parse_args()

    # (row label, settings, mode): pocketsphinx's ASR with and without speaker adaptation, side by side.
    rows = [("pocketsphinx / align", AnnotateConfig(), "align"), ("pocketsphinx / asr", AnnotateConfig(), "asr"),
            ("pocketsphinx / asr, no adapt", AnnotateConfig(adapt=False), "asr")]
    if args.whisper_model:
        rows.append(("whisper / asr", AnnotateConfig(engine="whisper", whisper_model=args.whisper_model), "asr"))
    print(f"synthesizing {args.dialogues} held-out dialogues (piper joe, word by word) ...", flush=True)
    held = heldout_dialogues(args.dialogues, seed=args.seed) if args.dialogues else []
    seconds = sum(d.duration for d in held)
    words = sum(len(d.words) for d in held)
    print(f"held-out: {len(held)} dialogues, {seconds:.0f} s, {words} words\n\n{HEADER}")
    for label, cfg, mode in rows if held else []:
        engine, tally = make_engine(cfg), Tally(args.show_errors)
        for d in held:
            run(engine, d.audio, cfg, turns_of(d.words) if mode == "align" else None, d.words, tally, d.name)
        print(tally.row(label, wer=mode == "asr"), flush=True)

    files = sorted((args.spokenwoz / "audio").glob("*.wav")) if (args.spokenwoz / "audio").is_dir() else []
    if not files:
        print(f"\nSpokenWOZ sample not found at {args.spokenwoz}: skipped")
        return 0
    print(f"\nSpokenWOZ sample: {len(files)} calls, 8 kHz (times coarse: 'centre' = aligned word centre inside "
          f"the reference word)\n\n{HEADER}")
    for label, cfg, mode in rows:
        engine, tally = make_engine(cfg), Tally()
        for path in files:
            truth = load_transcript(args.spokenwoz / "text" / f"{path.stem}.json").words
            audio, _ = load_stereo(path)
            run(engine, audio, cfg, turns_of(truth) if mode == "align" else None, truth, tally, path.stem)
        print(tally.row(label, timing=False, wer=mode == "asr"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
