"""--engine faster-whisper on real weights, offline: Whisper base and tiny.en as CTranslate2 conversions from the
test-only `whisper-weights` extra (skipped, with the reason, when it is not installed)."""

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from annotate_helpers import packaged_whisper

from backend.core.errors import ConfigError
from backend.core.spec import SAMPLE_RATE
from backend.data.annotate.measure import matched_pairs, scoring_form, word_errors
from backend.data.annotate.run import AnnotateConfig, annotate_audio, annotate_folder, make_engine
from backend.data.transcripts import load_transcript
from backend.demo.heldout_speech import heldout_dialogues, render_dialogue

pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (pip install -e '.[faster-whisper]')")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> AnnotateConfig:
    model = packaged_whisper("base", tmp_path_factory.mktemp("whisper"))
    return AnnotateConfig(engine="faster-whisper", whisper_model=str(model), language="en")


def _wer_and_timing(ref, hyp) -> tuple[int, int, list[float]]:
    r, h = [scoring_form(w.word) for w in ref], [scoring_form(w.word) for w in hyp]
    return word_errors(r, h), len(r), [abs(hyp[j].start - ref[i].start) for i, j in matched_pairs(r, h)]


def test_base_transcribes_held_out_speech_with_word_times(base: AnnotateConfig, tmp_path: Path) -> None:
    (d,) = heldout_dialogues(1, seed=7)
    sf.write(tmp_path / f"{d.name}.wav", d.audio.T, SAMPLE_RATE, subtype="PCM_16")
    summary = annotate_folder(dataclasses.replace(base, input=tmp_path))
    assert summary.written == [d.name] and summary.modes[d.name].startswith("asr"), summary
    got = load_transcript(tmp_path / f"{d.name}.json")
    errors = words = 0
    starts: list[float] = []
    for s in "AB":
        e, n, t = _wer_and_timing(
            sorted((w for w in d.words if w.speaker == s), key=lambda w: w.start), got.speaker_words(s)
        )
        errors, words, starts = errors + e, words + n, starts + t
    assert errors / words <= 0.25, errors / words
    # pocketsphinx times Whisper's words (refine.py): Whisper alone puts under half of them within 100 ms
    assert np.mean(np.array(starts) < 0.1) >= 0.9, np.mean(np.array(starts) < 0.1)
    record = json.loads((tmp_path / f"{d.name}.annotation.json").read_text())
    assert record["config"]["refine_times"] is True
    assert record["engine"]["engine"] == "faster-whisper" and record["engine"]["compute_type"] == "int8"
    assert record["engine"]["vad_filter"] is True and 0 < record["real_time_factor"] < 5


def test_leaked_voice_is_gated_by_channel_ownership(base: AnnotateConfig) -> None:
    """Only A talks; A leaks into B 14 dB down. Whisper hears the leak well, so B's words must come from
    cross-talk ownership, not from Whisper's VAD: none."""
    d = render_dialogue(
        "monologue",
        [("A", "Honestly, the teacher ordered a bowl of soup after lunch.")],
        random.Random(0),
        leak_db=-14.0,
    )
    result = annotate_audio(make_engine(base), d.audio, base)
    assert [w for w in result.words if w.speaker == "A"]
    assert not [w for w in result.words if w.speaker == "B"]


class _Counting:
    """The engine's CTranslate2 model, counting the calls that run Whisper's encoder."""

    def __init__(self, model) -> None:
        self.model, self.inner = model.model, model
        self.transcribed: list[tuple[float, str]] = []  # (seconds of audio, language) per call
        self.detected = 0

    def transcribe(self, audio, **kwargs):
        self.transcribed.append((len(audio) / 16_000, kwargs["language"]))
        return self.inner.transcribe(audio, **kwargs)

    def detect_language(self, audio, **kwargs):
        self.detected += 1
        return self.inner.detect_language(audio, **kwargs)


def test_a_channels_stretches_are_decoded_together(base: AnnotateConfig) -> None:
    """Four turns per speaker, a few seconds each: each channel is one window of Whisper (not one 30 s encoder
    pass per stretch), its language detected once, and each word still lands on its own stretch."""
    cfg = dataclasses.replace(base, language="")
    (d,) = heldout_dialogues(1, seed=7, turns_per_dialogue=8)
    engine = make_engine(cfg)
    engine._model = counting = _Counting(engine._model)
    result = annotate_audio(engine, d.audio, cfg)
    assert counting.detected == 2 and [lang for _, lang in counting.transcribed] == ["en", "en"], counting.transcribed
    assert all(seconds <= 30 for seconds, _ in counting.transcribed)
    for s in "AB":
        ref = sorted((w for w in d.words if w.speaker == s), key=lambda w: w.start)
        e, n, starts = _wer_and_timing(ref, [w for w in result.words if w.speaker == s])
        assert e / n <= 0.35 and np.mean(np.array(starts) < 0.3) >= 0.7, (s, e / n, starts)


def test_tiny_en_and_bad_models(tmp_path: Path) -> None:
    model = packaged_whisper("tiny.en", tmp_path)
    (d,) = heldout_dialogues(1, seed=7)
    cfg = AnnotateConfig(engine="faster-whisper", whisper_model=str(model), vad=False, refine_times=False)
    result = annotate_audio(make_engine(cfg), d.audio, cfg)
    assert {w.speaker for w in result.words} == {"A", "B"} and result.engine["vad_filter"] is False
    (tmp_path / "broken").mkdir()
    shutil.copy(Path(model) / "config.json", tmp_path / "broken" / "config.json")
    with pytest.raises(ConfigError, match="cannot load a CTranslate2 Whisper from the local folder"):
        make_engine(AnnotateConfig(engine="faster-whisper", whisper_model=str(tmp_path / "broken")))
    with pytest.raises(ConfigError, match="cannot place known words"):
        make_engine(AnnotateConfig(engine="faster-whisper", whisper_model=str(model), mode="align"))


def test_spokenwoz_call_with_base(spokenwoz: Path, base: AnnotateConfig) -> None:
    """A real 8 kHz call: every channel within the bench's per-channel bar (35%)."""
    from backend.data.audio_io import load_stereo

    name = "SNG1640"
    truth = load_transcript(spokenwoz / "text" / f"{name}.json").words
    audio, _ = load_stereo(spokenwoz / "audio" / f"{name}.wav")
    result = annotate_audio(make_engine(base), audio, base)
    for s in "AB":
        e, n, _ = _wer_and_timing(
            sorted((w for w in truth if w.speaker == s), key=lambda w: w.start),
            [w for w in result.words if w.speaker == s],
        )
        assert e / n <= 0.35, (s, e / n)
