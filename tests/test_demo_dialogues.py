"""The committed demo dialogues (assets/demo/) and the generator that made them."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.core.errors import StudioError
from backend.core.spec import SAMPLE_RATE
from backend.data.transcripts import KYUTAI_LABELS
from backend.demo.dialogues import (
    DEMO_DIR,
    DIALOGUES,
    TRIM_THRESHOLD,
    Backchannel,
    DemoDialogue,
    Turn,
    render,
    transcript,
)

DEMO = DEMO_DIR
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def read_words(path: Path) -> list[tuple[str, str, float, float]]:
    """(speaker, word, start, end) from either transcript format, checking the format on the way."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        assert all(set(w) == {"speaker", "word", "start", "end"} for w in data)
        assert {w["speaker"] for w in data} == {"A", "B"}
        return [(w["speaker"], w["word"], w["start"], w["end"]) for w in data]
    speaker_of = {label: s for s, label in KYUTAI_LABELS.items()}
    assert set(data) == {"alignments"}
    assert {label for _, _, label in data["alignments"]} == set(speaker_of)
    return [(speaker_of[label], word, start, end) for word, (start, end), label in data["alignments"]]


def test_every_dialogue_is_there_as_stereo_24k_flac_with_a_transcript():
    formats = set()
    for dialogue in DIALOGUES:
        info = sf.info(DEMO / f"{dialogue.name}.flac")
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("FLAC", "PCM_16", 2, SAMPLE_RATE)
        assert 15 <= info.duration <= 25
        words = read_words(DEMO / f"{dialogue.name}.json")
        assert [w for _, w, _, _ in words] and all(0 < s < e <= info.duration for _, _, s, e in words)
        starts = [s for _, _, s, _ in words]
        assert starts == sorted(starts)  # Kyutai's interleaver needs sorted alignments
        formats.add(type(json.loads((DEMO / f"{dialogue.name}.json").read_text())))
    assert formats == {list, dict}  # both transcript formats are demonstrated
    assert sum(p.stat().st_size for p in DEMO.iterdir()) < 2_000_000


@pytest.mark.parametrize("name", [d.name for d in DIALOGUES])
def test_word_timings_are_exact_to_the_sample(name):
    audio, rate = sf.read(DEMO / f"{name}.flac", dtype="float32")
    words = read_words(DEMO / f"{name}.json")
    for channel, speaker in enumerate("AB"):
        signal = audio[:, channel]
        spans = [(round(s * rate), round(e * rate)) for sp, _, s, e in words if sp == speaker]
        inside = np.zeros(len(signal), dtype=bool)
        for start, end in spans:
            inside[start:end] = True
            # A word's span hugs its speech: its first and last samples are above the trim threshold...
            assert abs(signal[start]) > TRIM_THRESHOLD * 0.9 and abs(signal[end - 1]) > TRIM_THRESHOLD * 0.9
            # ...and it carries real energy.
            assert np.sqrt(np.mean(signal[start:end] ** 2)) > 0.02
        # Outside the words (the gap before the first one included) the channel is silent.
        first = min(start for start, _ in spans)
        assert first > 0 and np.max(np.abs(signal[:first])) < 1e-4
        assert np.max(np.abs(signal[~inside])) < 1e-4


def test_dialogues_overlap_like_conversations():
    """Backchannels and early turn starts: some words of A and B overlap in time."""
    for dialogue in DIALOGUES:
        words = read_words(DEMO / f"{dialogue.name}.json")
        a = [(s, e) for sp, _, s, e in words if sp == "A"]
        b = [(s, e) for sp, _, s, e in words if sp == "B"]
        assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b), dialogue.name


SMALL = DemoDialogue(
    "small",
    "kyutai",
    DIALOGUES[0].voices,
    (
        Turn("A", "Hello there, how are you?", 0.0),
        Backchannel("B", "mhm", 0.5),
        Turn("B", "Fine, thanks.", -0.1),
    ),
)


@needs_espeak
def test_render_is_seeded_and_places_words_where_it_says(tmp_path):
    signal, words = render(SMALL, random.Random(7), tmp_path)
    again, words_again = render(SMALL, random.Random(7), tmp_path)
    assert np.array_equal(signal, again) and words == words_again
    other, _ = render(SMALL, random.Random(8), tmp_path)
    assert not np.array_equal(signal, other)  # the seed does vary the pauses and voices
    for w in words:
        channel = signal[0 if w.speaker == "A" else 1]
        assert abs(channel[w.offset]) > TRIM_THRESHOLD and abs(channel[w.end - 1]) > TRIM_THRESHOLD
        assert channel[w.offset - 1] == 0 and channel[w.end] == 0
    alignments = transcript(words, "kyutai")["alignments"]
    assert [a[0] for a in alignments][:2] == ["Hello", "there,"]
    assert {a[2] for a in alignments} == {"SPEAKER_MAIN", "SPEAKER_OTHER"}


@needs_espeak
def test_a_script_whose_words_collide_on_one_channel_is_refused(tmp_path):
    clash = DemoDialogue(
        "clash",
        "jmoshi",
        SMALL.voices,
        (
            Turn("A", "Hello there, how are you today?", 0.0),
            Backchannel("B", "yeah", 0.5),
            Backchannel("B", "mhm", 0.5),  # the same moment: on top of B's own "yeah"
        ),
    )
    with pytest.raises(StudioError, match="overlaps their previous word"):
        render(clash, random.Random(0), tmp_path)
