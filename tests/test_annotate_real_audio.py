"""Alignment on audio in the states real recordings arrive in (issue 24): exact digital silence, DC offsets, very
low and very high levels, 8 kHz telephone bandwidth, long files; turns that fail alone; re-alignment of a
transcript with coarse times; which dialogues annotate touches. The speech is made here, word by word, by two
different voices (piper's joe on A, espeak-ng on B), so every true word time is known."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from backend.core.spec import SAMPLE_RATE
from backend.data.annotate.original import original_path
from backend.data.annotate.run import AnnotateConfig, annotate_folder, main
from backend.data.annotate.turns import format_turns
from backend.data.transcripts import Word, load_transcript
from backend.demo.heldout_speech import MIXED, HeldOutDialogue, heldout_dialogues


@pytest.fixture(scope="module")
def mixed() -> list[HeldOutDialogue]:
    """No leak at all: every pause of both channels is exact digital zero once written as 16-bit."""
    return heldout_dialogues(3, seed=31, voices=MIXED, leak_db=-300.0)


def _with_gaps(d: HeldOutDialogue, pause: float = 4.0) -> HeldOutDialogue:
    """`pause` seconds of exact zero wherever nobody talks between two turns (VoIP silence suppression)."""
    words = sorted(d.words, key=lambda w: w.start)
    cuts = [
        w.start - 0.1
        for k, w in enumerate(words)
        if k and w.speaker != words[k - 1].speaker and all(v.end < w.start - 0.1 for v in words[:k])
    ]
    pieces, last = [], 0
    for c in cuts:
        i = int(c * SAMPLE_RATE)
        pieces += [d.audio[:, last:i], np.zeros((2, int(pause * SAMPLE_RATE)), np.float32)]
        last = i
    pieces.append(d.audio[:, last:])

    def shift(t: float) -> float:
        return t + pause * sum(c <= t for c in cuts)

    return HeldOutDialogue(
        d.name,
        np.concatenate(pieces, axis=1),
        [Word(w.speaker, w.word, shift(w.start), shift(w.end)) for w in d.words],
        d.turns,
    )


def _telephone(x: np.ndarray) -> np.ndarray:
    return soxr.resample(soxr.resample(x.T, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE).T.astype(np.float32)


def _long(ds: list[HeldOutDialogue], times: int) -> HeldOutDialogue:
    audio, words, turns, t = [], [], [], 0.0
    for d in ds * times:
        audio.append(d.audio)
        words += [Word(w.speaker, w.word, w.start + t, w.end + t) for w in d.words]
        turns += d.turns
        t += d.duration
    return HeldOutDialogue("long", np.concatenate(audio, axis=1), words, turns)


CASES = {
    "digital_silence": lambda ds: [_with_gaps(d) for d in ds],
    "dc_offset": lambda ds: [HeldOutDialogue(d.name, d.audio + np.float32(0.2), d.words, d.turns) for d in ds],
    "very_low": lambda ds: [HeldOutDialogue(d.name, d.audio * np.float32(0.01), d.words, d.turns) for d in ds],
    "very_high": lambda ds: [HeldOutDialogue(d.name, np.clip(d.audio * 3, -1, 1), d.words, d.turns) for d in ds],
    "telephone_8k": lambda ds: [HeldOutDialogue(d.name, _telephone(d.audio), d.words, d.turns) for d in ds],
    "long": lambda ds: [_long(ds, 3)],
}
# Share of word starts within 100 ms of the truth, per channel: the bench's target (95%), looser where clipping
# or the telephone band (the bundled model is a 16 kHz one) cost the espeak-ng voice some words.
WITHIN = {"very_high": 0.9, "telephone_8k": 0.75}


def _write(folder: Path, d: HeldOutDialogue, sr: int = SAMPLE_RATE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    audio = d.audio if sr == SAMPLE_RATE else soxr.resample(d.audio.T, SAMPLE_RATE, sr).T
    sf.write(folder / f"{d.name}.wav", np.clip(audio, -1, 1).T, sr, subtype="PCM_16")
    (folder / f"{d.name}.txt").write_text(format_turns(d.turns))


def _start_errors(folder: Path, ds: list[HeldOutDialogue]) -> dict[str, np.ndarray]:
    errors: dict[str, list[float]] = {"A": [], "B": []}
    for d in ds:
        got = load_transcript(folder / f"{d.name}.json")
        for s in "AB":
            true = sorted((w for w in d.words if w.speaker == s), key=lambda w: w.start)
            assert [w.word for w in got.speaker_words(s)] == [w.word for w in true]
            errors[s] += [abs(g.start - w.start) for g, w in zip(got.speaker_words(s), true)]
    return {s: np.array(e) for s, e in errors.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_alignment_survives_real_audio(mixed, case: str, tmp_path: Path) -> None:
    """Every turn aligns and each channel keeps the bench's bar: median start error <= 40 ms and WITHIN."""
    ds = CASES[case](mixed)
    for d in ds:
        _write(tmp_path, d, sr=8000 if case == "telephone_8k" else SAMPLE_RATE)
    summary = annotate_folder(AnnotateConfig(input=tmp_path))
    assert summary.written == sorted(d.name for d in ds) and not summary.failed, summary.failed
    within = WITHIN.get(case, 0.95)
    for s, e in _start_errors(tmp_path, ds).items():
        assert np.median(e) <= 0.04 and np.mean(e < 0.1) >= within, (s, np.median(e), np.mean(e < 0.1))
    assert not summary.failed_turns


def test_a_turn_that_was_not_said_fails_alone(mixed, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A's second line in the .txt is words nobody said: that turn fails, named in the summary, the sidecar, the
    exit status and the message; every other word is written and lands where it was said."""
    d = mixed[0]
    wrong = "Seventeen purple elephants quietly negotiated a treaty with the moon yesterday."
    turns = list(d.turns)
    a_lines = [k for k, (s, _) in enumerate(turns) if s == "A"]
    turns.insert(a_lines[1], ("A", wrong))
    _write(tmp_path, d)
    (tmp_path / f"{d.name}.txt").write_text(format_turns(turns))
    assert main(["--input", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    line = a_lines[1] + 1
    assert "1 written" in out and f"A line {line}" in err and "Seventeen" in err
    record = json.loads((tmp_path / f"{d.name}.annotation.json").read_text())
    assert [t["turn"].split("'")[0].strip() for t in record["failed_turns"]] == [f"A line {line}"]
    got = load_transcript(tmp_path / f"{d.name}.json")
    raw = json.loads((tmp_path / f"{d.name}.json").read_text())
    assert {e["word"] for e in raw if e["confidence"] == 0} >= set(wrong.split())
    assert len(got.words) == len(d.words) + len(wrong.split())
    found = [
        any(abs(w.start - t.start) < 0.1 and w.word == t.word for w in got.speaker_words(t.speaker)) for t in d.words
    ]
    assert np.mean(found) >= 0.95, np.mean(found)


def test_the_studio_names_the_turn_that_failed(mixed, tmp_path: Path) -> None:
    """The Curate block's Annotate: the message gives the mode and why, the real-time factor in CPU time and the
    turn that could not be aligned; the dialogue is written with the rest."""
    from backend.core.workspace import create_empty_workspace
    from studio.curate import Curator

    d = mixed[2]
    ws = create_empty_workspace(tmp_path / "ws")
    turns = [*d.turns, ("B", "Nobody in this call ever said these particular words about volcanoes.")]
    _write(ws.raw, d)
    (ws.raw / f"{d.name}.txt").write_text(format_turns(turns))
    message, preview = Curator().on_annotate(ws, d.name, "pocketsphinx", "")
    assert f"annotated {d.name}" in message and "(CPU time)" in message, message
    assert f"· {d.name}: align ({d.name}.txt is beside the audio)" in message, message
    assert f"✘ {d.name}: turn not aligned: B line {len(turns)} 'Nobody in this call" in message, message
    assert preview and (ws.raw / f"{d.name}.json").exists()


def test_realign_refines_coarse_times(mixed, tmp_path: Path) -> None:
    """A transcript with coarse times (each turn's words spread evenly over the turn, shifted by 0.3 s, as in
    SpokenWOZ): re-alignment puts the words back where they were said. The user's transcript is never replaced
    without --overwrite, and then its first version is kept."""
    d = mixed[1]
    coarse = []
    for s in "AB":
        words = sorted((w for w in d.words if w.speaker == s), key=lambda w: w.start)
        k = 0
        for speaker, text in d.turns:
            if speaker != s:
                continue
            mine = words[k : k + len(text.split())]
            k += len(mine)
            lo, hi = mine[0].start - 0.3, mine[-1].end
            step = (hi - lo) / len(mine)
            coarse += [
                {"speaker": s, "word": w.word, "start": round(lo + i * step, 3), "end": round(lo + (i + 1) * step, 3)}
                for i, w in enumerate(mine)
            ]
    sf.write(tmp_path / f"{d.name}.wav", d.audio.T, SAMPLE_RATE, subtype="PCM_16")
    reference = tmp_path / f"{d.name}.json"
    reference.write_text(json.dumps(coarse))
    first = reference.read_text()

    kept = annotate_folder(AnnotateConfig(input=tmp_path))
    assert not kept.written and "--overwrite" in kept.kept[d.name] and reference.read_text() == first
    refused = annotate_folder(AnnotateConfig(input=tmp_path, mode="asr"))
    assert "not made by annotate" in refused.failed[d.name] and reference.read_text() == first

    done = annotate_folder(AnnotateConfig(input=tmp_path, overwrite=True))
    assert done.written == [d.name] and done.modes[d.name].startswith("realign") and not done.failed_turns
    assert original_path(reference).read_text() == first
    for s, e in _start_errors(tmp_path, [d]).items():
        assert np.median(e) <= 0.04 and np.mean(e < 0.1) >= 0.9, (s, np.median(e), np.mean(e < 0.1))
    before = [
        np.median(
            np.abs(
                [
                    c["start"] - w.start
                    for c, w in zip(
                        sorted((c for c in coarse if c["speaker"] == s), key=lambda c: c["start"]),
                        sorted((w for w in d.words if w.speaker == s), key=lambda w: w.start),
                    )
                ]
            )
        )
        for s in "AB"
    ]
    assert min(before) > 0.1  # the coarse times were far off to begin with

    again = annotate_folder(AnnotateConfig(input=tmp_path))
    assert again.skipped == [d.name] and not again.written  # its own output: done


def test_spokenwoz_realignment_every_channel_gets_words(spokenwoz: Path, tmp_path: Path) -> None:
    """A real 8 kHz call re-aligned from its own coarse transcript, into another folder (the reference is never
    touched). Every channel gets words and no turn fails. The reference's utterances start about 0.3 s before
    the speech and spread the words evenly, so the share of centres inside the reference word is a guard at the
    measured level; bench_annotate.py reports all calls."""
    name = "SNG0480"
    ref = load_transcript(spokenwoz / "text" / f"{name}.json")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"{name}.wav").symlink_to(spokenwoz / "audio" / f"{name}.wav")
    (tmp_path / "in" / f"{name}.json").symlink_to(spokenwoz / "text" / f"{name}.json")
    summary = annotate_folder(AnnotateConfig(input=tmp_path / "in", output=tmp_path / "out"))
    assert summary.written == [name] and summary.modes[name].startswith("realign"), summary
    got = load_transcript(tmp_path / "out" / f"{name}.json")
    inside = total = 0
    for s in "AB":
        assert got.speaker_words(s)
        for g, r in zip(got.speaker_words(s), sorted(ref.speaker_words(s), key=lambda w: w.start)):
            total += 1
            inside += r.start <= (g.start + g.end) / 2 <= r.end
    assert total == len(ref.words) and inside / total >= 0.35, inside / total
