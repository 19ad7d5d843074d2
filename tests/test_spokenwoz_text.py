"""Real transcripts (SpokenWOZ sample): every word and piece accounted for, in both layouts."""

import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from backend.data.audio_io import probe
from backend.data.transcripts import check_transcript, load_transcript
from backend.dataset.spm import train_spm
from backend.dataset.text_layout import LayoutOptions, frames_for_duration, tokenize_dialogue
from backend.models.text_tokenizer import load_spm

PAD, EPAD = 3, 0
LAYOUTS = [LayoutOptions("spread"), LayoutOptions("packed"), LayoutOptions("packed", drop_overflow=True)]


@pytest.fixture(scope="module")
def transcripts(spokenwoz: Path) -> list[Path]:
    paths = sorted((spokenwoz / "text").glob("*.json"))
    if not paths:
        pytest.skip(f"no transcripts in {spokenwoz / 'text'}")
    return paths


@pytest.fixture(scope="module")
def sp(transcripts: list[Path], tmp_path_factory: pytest.TempPathFactory) -> spm.SentencePieceProcessor:
    """A small tokenizer trained on the sample's own ASCII words: "α" is left to byte fallback."""
    words = [w["word"] for p in transcripts for w in json.loads(p.read_text()) if w["word"].isascii()]
    lines = [" ".join(words[i : i + 20]) for i in range(0, len(words), 20)]
    return load_spm(train_spm(lines, tmp_path_factory.mktemp("spm") / "spokenwoz.model", vocab_size=500))


@pytest.mark.parametrize("cfg", LAYOUTS, ids=["spread", "packed", "packed-drop"])
def test_every_word_and_piece_is_accounted_for(
    spokenwoz: Path, transcripts: list[Path], sp: spm.SentencePieceProcessor, cfg: LayoutOptions
) -> None:
    for path in transcripts:
        t = load_transcript(path)
        audio = spokenwoz / "audio" / f"{path.stem}.wav"
        duration = probe(audio).duration if audio.exists() else None
        streams, audit = tokenize_dialogue(t, sp, cfg, duration)
        assert sum(a.words for a in audit.speakers.values()) == len(t.words)
        for s, a in audit.speakers.items():
            stream = streams[s]
            pieces = stream[~np.isin(stream, (PAD, EPAD))]
            assert a.pieces == a.placed + a.not_placed, (path.name, s)
            assert a.words == a.words_complete + a.words_partial + a.words_lost + a.words_without_pieces
            assert a.placed == len(pieces) and a.unknown_pieces == 0
            if cfg.layout == "packed" and duration is not None:
                assert len(stream) == frames_for_duration(duration)
            if not cfg.drop_overflow:  # nothing dropped: the stream reads back as the speaker's words in order
                assert a.not_placed == 0
                words = sorted(t.speaker_words(s), key=lambda w: w.start)
                assert sp.decode(pieces.tolist()) == " ".join(w.word for w in words), (path.name, s)


def test_words_past_the_audio_are_reported(
    spokenwoz: Path, transcripts: list[Path], sp: spm.SentencePieceProcessor
) -> None:
    for path in transcripts:
        audio = spokenwoz / "audio" / f"{path.stem}.wav"
        if not audio.exists():
            continue
        t = load_transcript(path)
        duration = probe(audio).duration
        late = sum(w.end > duration for w in t.words)
        warned = any("end after the audio" in i.message for i in check_transcript(t, duration))
        assert warned == (late > 0), path.name
        _, audit = tokenize_dialogue(t, sp, LayoutOptions("spread"), duration)
        if late == 0:
            assert all(a.after_audio == 0 for a in audit.speakers.values()), path.name


def test_alpha_goes_through_byte_fallback(transcripts: list[Path], sp: spm.SentencePieceProcessor) -> None:
    path = next((p for p in transcripts if p.stem == "MUL2195"), None)
    if path is None:
        pytest.skip("MUL2195 is not in the sample")
    t = load_transcript(path)
    alpha = [w for w in t.words if "α" in w.word]
    assert alpha and sp.encode("α", out_type=str)[-2:] == ["<0xCE>", "<0xB1>"]
    assert min(w.start for w in t.words) == 0.0  # a word on frame 0: no EPAD before it
    byte_ids = [sp.piece_to_id("<0xCE>"), sp.piece_to_id("<0xB1>")]
    for cfg in LAYOUTS[:2]:
        streams, audit = tokenize_dialogue(t, sp, cfg)
        stream = streams[alpha[0].speaker].tolist()
        at = stream.index(byte_ids[0])
        assert stream[at + 1] == byte_ids[1]  # the character's bytes on consecutive frames
        assert at >= int(alpha[0].start * 12.5)
        assert audit.not_placed == 0
        first = next(w for w in t.words if w.start == 0.0)
        assert streams[first.speaker][0] not in (PAD, EPAD)
