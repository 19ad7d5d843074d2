"""Whisper's word times replaced by pocketsphinx's alignment of the same words (backend.data.annotate.refine), on
held-out speech whose true word times are known; the recogniser here is the truth shifted early, as Whisper's
times are."""

import numpy as np

from backend.core.spec import SAMPLE_RATE
from backend.data.annotate.condition import condition
from backend.data.annotate.crosstalk import ownership, suppress_foreign
from backend.data.annotate.engines import TimedWord
from backend.data.annotate.refine import refine_times
from backend.data.annotate.run import AnnotateConfig, _channel, make_aligner
from backend.data.annotate.sphinx import PocketsphinxEngine
from backend.demo.heldout_speech import MIXED, heldout_dialogues

EARLY = 0.15  # seconds: how early the stand-in recogniser starts and ends each word


def test_refined_words_land_on_their_true_times() -> None:
    (d,) = heldout_dialogues(1, seed=5, voices=MIXED)
    cfg = AnnotateConfig()
    audio = condition(d.audio, SAMPLE_RATE)
    owners = ownership(audio, SAMPLE_RATE, on_dbfs=cfg.voice_dbfs, margin_db=cfg.crosstalk_db)
    aligner = PocketsphinxEngine(adapt=False)
    for c, s in enumerate("AB"):
        truth = sorted((w for w in d.words if w.speaker == s), key=lambda w: w.start)
        regions = owners[c].regions(bridge=2.0, pad=0.2, duration=audio.shape[1] / SAMPLE_RATE)
        found = [
            [
                TimedWord(w.word, w.start - lo - EARLY, w.end - lo - EARLY, 0.7)
                for w in truth
                if lo <= (w.start + w.end) / 2 <= hi
            ]
            for lo, hi in regions
        ]
        found[0].append(TimedWord("Zqxvyk", 0.05, 0.1, 0.4))  # no dictionary word: its times stay
        quiet = suppress_foreign(audio[c], SAMPLE_RATE, owners[c])
        ticks: list[float] = []
        refined = refine_times(
            aligner,
            lambda lo, hi: _channel(quiet[int(lo * SAMPLE_RATE) : int(hi * SAMPLE_RATE)], aligner),
            regions,
            found,
            ticks.append,
        )
        assert refined[0][-1] == TimedWord("Zqxvyk", 0.05, 0.1, 0.4) and ticks[-1] == 1.0
        got = [
            TimedWord(w.word, w.start + lo, w.end + lo, w.confidence)
            for (lo, _), words in zip(regions, refined)
            for w in words
            if w.word != "Zqxvyk"
        ]
        assert [w.word for w in got] == [w.word for w in truth] and {w.confidence for w in got} == {0.7}
        errors = np.abs([g.start - t.start for g, t in zip(got, truth)])
        assert np.median(errors) <= 0.04 and np.mean(errors < 0.1) >= 0.9, (s, errors)


def test_only_english_or_undetected_words_are_retimed() -> None:
    """pocketsphinx's model is English: a Whisper run told another language keeps Whisper's times."""
    whisper = PocketsphinxEngine(adapt=False)
    whisper.name = "faster-whisper"  # make_aligner reads only the recogniser's name
    for language, retimed in (("", True), ("en", True), ("ja", False)):
        aligner = make_aligner(AnnotateConfig(engine="faster-whisper", language=language), whisper)
        assert (aligner is not None) is retimed, language
    assert make_aligner(AnnotateConfig(), PocketsphinxEngine()) is None  # pocketsphinx times its own words
