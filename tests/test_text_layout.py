"""Text stream layouts against independent re-statements of J-Moshi's and Kyutai's rules, plus hand cases."""

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import sentencepiece as spm
import soundfile as sf

from backend.core.errors import ConfigError
from backend.data.transcripts import Transcript, Word
from backend.dataset import tokenize_text as stage
from backend.dataset.spm import train_spm
from backend.dataset.text_layout import (
    LayoutOptions,
    SpeakerAudit,
    frame_of,
    frames_for_duration,
    layout_speaker,
    tokenize_dialogue,
)
from backend.models.text_tokenizer import load_spm

PAD, EPAD = 3, 0
# No q, z, x or non-ASCII letters: those fall back to bytes.
CORPUS = [
    "hello world this is a test",
    "the cat sat on the mat",
    "good morning how are you today",
    "i would like a table for two people",
    "yes please thank you very much",
    "abc def abc def ghi",
    "we can meet at the hotel in the center",
    "what time does the train leave",
]


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> spm.SentencePieceProcessor:
    return load_spm(train_spm(CORPUS * 5, tmp_path_factory.mktemp("spm") / "small.model", vocab_size=300))


def A(word: str, start: float, end: float) -> Word:
    return Word("A", word, start, end)


def spread(**kw: object) -> LayoutOptions:
    return LayoutOptions("spread", **kw)


def packed(**kw: object) -> LayoutOptions:
    return LayoutOptions("packed", **kw)


def text_ids(stream: np.ndarray) -> list[int]:
    return [int(i) for i in stream if i not in (PAD, EPAD)]


def check_accounting(a: SpeakerAudit, stream: np.ndarray) -> None:
    assert a.pieces == a.placed + a.overflow_dropped + a.zero_duration_dropped + a.past_end
    assert a.words == a.words_complete + a.words_partial + a.words_lost + a.words_without_pieces
    assert a.placed == len(text_ids(stream)) and a.frames == len(stream)


def epad_positions_ok(stream: np.ndarray) -> bool:
    """EPAD exactly on the empty frames that precede a piece."""
    piece = ~np.isin(stream, (PAD, EPAD))
    want = np.zeros(len(stream), dtype=bool)
    want[:-1] = piece[1:] & ~piece[:-1]
    return bool(np.array_equal(stream == EPAD, want))


# --- independent statements of the reference tools' rules (ASCII words known to the vocabulary) ---


def jmoshi_reference(words: list[Word], sp: spm.SentencePieceProcessor, whitespace: bool = True) -> list[int]:
    """J-Moshi's spread: character spans counted by piece length, next free frame, online EPAD (words known to
    the vocabulary, no normalisation changing lengths: where J-Moshi works)."""
    words = sorted(words, key=lambda w: w.start)
    chunks = [w.word if i == 0 or not whitespace else " " + w.word for i, w in enumerate(words)]
    chars = [
        (w.start + i * (w.end - w.start) / len(c), w.start + (i + 1) * (w.end - w.start) / len(c))
        for w, c in zip(words, chunks)
        for i in range(len(c))
    ]
    timed, pos = [], 0
    for i, piece in enumerate(sp.encode("".join(chunks), out_type=str)):
        if i == 0 and piece == "▁":
            continue
        n = len(piece) - (i == 0 and piece.startswith("▁"))
        timed.append((sp.piece_to_id(piece), chars[pos][0], chars[pos + n - 1][1]))
        pos += n
    ids = [PAD] * frame_of(timed[-1][2] + 1)
    for pid, start, _ in timed:
        f = frame_of(start)
        while ids[f] != PAD:
            f += 1
        ids[f] = pid
        if f > 0 and ids[f - 1] == PAD:
            ids[f - 1] = EPAD
    return ids


def kyutai_reference(
    words: list[Word],
    sp: spm.SentencePieceProcessor,
    T: int,
    keep: bool,
    word_ids: Callable[[Word], list[int]] | None = None,
) -> list[int]:
    """Kyutai's interleaver in closed form: word j's piece k at max(F_j + k, previous + 1) when keeping,
    at F_j + k before the next word's frame when dropping (and words without duration removed). A word's ids
    are `word_ids(word)`, by default the word tokenized alone as Kyutai does."""
    word_ids = word_ids or (lambda w: sp.encode(w.word))
    words = sorted(words, key=lambda w: w.start)
    if not keep:
        words = [w for w in words if w.start < w.end]
    F = [frame_of(w.start) for w in words]
    ids, last = [PAD] * T, -1
    for j, w in enumerate(words):
        limit = T if keep or j + 1 == len(words) else min(T, F[j + 1])
        for k, pid in enumerate(word_ids(w)):
            f = max(F[j] + k, last + 1) if keep else F[j] + k
            if f >= limit:
                break
            if f > 0 and ids[f - 1] == PAD:
                ids[f - 1] = EPAD
            ids[f], last = pid, f
    return ids


NORMAL = [
    A("hello", 0.5, 0.9),
    A("world", 1.0, 1.5),
    A("this", 2.4, 2.6),
    A("is", 2.6, 2.7),
    A("a", 2.7, 2.75),
    A("test", 2.75, 3.1),
]
FAST = [A("good", 0.0, 0.1), A("morning", 0.1, 0.2), A("how", 0.2, 0.25), A("are", 0.3, 0.31), A("you", 0.4, 0.9)]
BOUNDARIES = [A("the", 0.24, 0.48), A("cat", 0.48, 0.72), A("sat", 0.8, 1.04)]  # exact frame edges


@pytest.mark.parametrize("words", [NORMAL, FAST, BOUNDARIES], ids=["normal", "fast", "boundaries"])
def test_spread_matches_jmoshi(sp: spm.SentencePieceProcessor, words: list[Word]) -> None:
    stream, audit = layout_speaker(words, sp, spread())
    assert stream.dtype == np.int64
    assert stream.tolist() == jmoshi_reference(words, sp)
    check_accounting(audit, stream)
    assert audit.placed == audit.pieces and audit.words_complete == len(words)


@pytest.mark.parametrize("keep", [True, False], ids=["keep_and_shift", "drop_overflow"])
@pytest.mark.parametrize("words", [NORMAL, FAST, BOUNDARIES], ids=["normal", "fast", "boundaries"])
def test_packed_matches_kyutai(sp: spm.SentencePieceProcessor, words: list[Word], keep: bool) -> None:
    for T in (5, 50):  # too short (pieces past the end) and long enough
        stream, audit = layout_speaker(words, sp, packed(drop_overflow=not keep), n_frames=T)
        assert stream.tolist() == kyutai_reference(words, sp, T, keep)
        check_accounting(audit, stream)
        assert audit.past_end > 0 if T == 5 else audit.past_end == 0
    assert layout_speaker(words, sp, packed(), duration=3.3)[0].shape == (42,)  # ceil(3.3 * 12.5)


def test_frame_is_floor_of_start_times_12_5(sp: spm.SentencePieceProcessor) -> None:
    assert 0.24 // 0.08 == 2.0  # J-Moshi's rule puts a word starting at 0.24 s one frame early
    assert frame_of(0.24) == 3 and frame_of(0.2399) == 2 and frames_for_duration(101.68) == 1271
    stream, _ = layout_speaker([A("hello", 0.24, 0.64)], sp, spread())
    assert stream[:3].tolist() == [PAD, PAD, EPAD] and stream[3] == sp.piece_to_id("h")


def test_epad_before_a_piece_that_follows_pad_but_not_at_frame_0(sp: spm.SentencePieceProcessor) -> None:
    at_zero, _ = layout_speaker([A("hello", 0.0, 0.4)], sp, spread())  # one character per frame
    assert at_zero[:5].tolist() == [sp.piece_to_id(c) for c in "hello"]
    assert EPAD not in at_zero.tolist()
    later, _ = layout_speaker([A("hello", 0.4, 0.8), A("world", 2.0, 2.4)], sp, spread())
    assert later[:5].tolist() == [PAD, PAD, PAD, PAD, EPAD]
    assert later[24] == EPAD and later[25] == sp.piece_to_id("▁w")
    assert epad_positions_ok(later)


def test_collisions_shift_to_the_next_free_frame(sp: spm.SentencePieceProcessor) -> None:
    stream, audit = layout_speaker([A("hello", 0.0, 0.08)], sp, spread())  # 5 pieces want frame 0
    assert stream[:5].tolist() == [sp.piece_to_id(c) for c in "hello"]
    assert audit.max_drift == 4 and audit.placed == 5


def test_overlapping_words_keep_text_order(sp: spm.SentencePieceProcessor) -> None:
    words = [A("hello", 0.0, 2.0), A("world", 0.5, 1.0)]  # "world" starts while "hello" still runs
    stream, audit = layout_speaker(words, sp, spread())
    assert sp.decode(text_ids(stream)) == "hello world"
    assert epad_positions_ok(stream)
    # J-Moshi's next-free-frame rule would write " world" into the gaps inside "hello": scrambled text.
    assert sp.decode(text_ids(np.array(jmoshi_reference(words, sp)))) != "hello world"
    assert audit.max_drift > 0
    check_accounting(audit, stream)


@pytest.mark.parametrize("cfg", [spread(), packed()], ids=["spread", "packed"])
def test_byte_fallback_for_a_character_absent_from_the_vocabulary(
    sp: spm.SentencePieceProcessor, cfg: LayoutOptions
) -> None:
    assert sp.encode("α", out_type=str) == ["▁", "<0xCE>", "<0xB1>"]
    stream, audit = layout_speaker([A("hello", 0.0, 0.4), A("α", 1.0, 2.0)], sp, cfg)
    assert sp.decode(text_ids(stream)) == "hello α"
    boundary, b1, b2 = (sp.piece_to_id(p) for p in ("▁", "<0xCE>", "<0xB1>"))
    if cfg.layout == "spread":  # " α": the space from 1.0 s (frame 12), "α" from 1.5 s (frame 18)
        assert stream[12] == boundary and stream[18:20].tolist() == [b1, b2]
        assert audit.max_drift == 1  # the second byte of "α" takes the next frame
    else:  # the word's pieces on consecutive frames from its start
        assert stream[12:15].tolist() == [boundary, b1, b2]
    check_accounting(audit, stream)
    assert audit.unknown_pieces == 0


@pytest.mark.parametrize("cfg", [spread(), packed()], ids=["spread", "packed"])
def test_ascii_letter_falling_back_to_bytes(sp: spm.SentencePieceProcessor, cfg: LayoutOptions) -> None:
    # J-Moshi's tool raises "Failed to decode the last byte tokens" here.
    assert "<0x71>" in sp.encode("quiz", out_type=str)
    words = [A("quiz", 0.4, 0.72), A("hello", 1.0, 1.4)]
    stream, audit = layout_speaker(words, sp, cfg)
    assert sp.decode(text_ids(stream)) == "quiz hello"
    # "q" starts at 0.4 s = frame 5; packed puts the word's own "▁" there first.
    q_frame = 5 if cfg.layout == "spread" else 6
    assert stream[q_frame] == sp.piece_to_id("<0x71>")
    assert audit.placed == audit.pieces and epad_positions_ok(stream)


def test_alpha_as_first_word_drops_only_the_dummy_prefix(sp: spm.SentencePieceProcessor) -> None:
    stream, audit = layout_speaker([A("α", 0.0, 0.16)], sp, spread())
    assert stream[:2].tolist() == [sp.piece_to_id("<0xCE>"), sp.piece_to_id("<0xB1>")]
    assert audit.pieces == 2


@pytest.mark.parametrize("layout", ["spread", "packed"])
def test_no_whitespace_mode(sp: spm.SentencePieceProcessor, layout: str) -> None:
    words = [A("the", 0.0, 0.3), A("cat", 0.5, 0.8)]
    assert "▁" in sp.encode("the cat", out_type=str)  # with spaces, a bare word-boundary piece
    spaced, spaced_audit = layout_speaker(words, sp, LayoutOptions(layout))
    joined, joined_audit = layout_speaker(words, sp, LayoutOptions(layout, whitespace=False))
    assert sp.decode(text_ids(spaced)) == "the cat"
    assert sp.decode(text_ids(joined)) == "thecat"
    assert spaced_audit.bare_boundary_share > 0 and joined_audit.bare_boundary_share == 0
    assert sp.piece_to_id("▁") not in text_ids(joined)
    check_accounting(joined_audit, joined)


def test_speaker_with_no_words(sp: spm.SentencePieceProcessor) -> None:
    t = Transcript(Path("d.json"), "jmoshi", [A("hello", 0.5, 0.9)])
    for layout in ("spread", "packed"):
        streams, audit = tokenize_dialogue(t, sp, LayoutOptions(layout), duration=2.0)
        assert streams["B"].tolist() == [PAD] * 25  # ceil(2.0 * 12.5), all PAD
        assert audit.speakers["B"].words == 0 and audit.speakers["B"].pad_share == 1.0
        assert any("speaker B has no words" in w for w in audit.warnings)
    streams, _ = tokenize_dialogue(t, sp, spread())
    assert streams["B"].shape == (0,)  # J-Moshi's length rule: no pieces, no frames (padded when merged)
    streams, _ = tokenize_dialogue(t, sp, packed())
    assert streams["A"].shape == streams["B"].shape == (frames_for_duration(0.9 + 1.0),)


def test_packed_start_frames_differ_from_kyutais_float_comparison_as_d1_says(sp: spm.SentencePieceProcessor) -> None:
    """D1 holds for packed too (README): Kyutai's loop takes a word at the first frame t with start * 12.5 < t + 1,
    a floor without tolerance, so a start whose product falls just under a whole number starts a frame early."""

    def kyutai_frame(start: float) -> int:
        return next(t for t in range(10**6) if start * 12.5 < t + 1)

    assert (kyutai_frame(2.32), frame_of(2.32)) == (28, 29) and kyutai_frame(0.24) == frame_of(0.24) == 3
    stream, _ = layout_speaker([A("hello", 2.32, 2.8)], sp, packed(drop_overflow=True), n_frames=40)
    assert stream[28] == EPAD and stream[29] == sp.encode("hello")[0]
    grid = [round(i * 0.01, 2) for i in range(100_000)]  # 10 ms starts below 1000 s, the README's count
    assert sum(math.floor(s * 12.5) != frame_of(s) for s in grid) == 573  # floor(x): Kyutai's first t, x < t + 1
    assert kyutai_frame(grid[-1]) == math.floor(grid[-1] * 12.5)
    assert sum(s // 0.08 != frame_of(s) for s in grid) == 7984  # J-Moshi's rule


def test_drop_overflow_versus_keep_and_shift(sp: spm.SentencePieceProcessor) -> None:
    quiz = sp.encode("quiz")
    words = [A("quiz", 0.0, 0.5), A("hello", 0.16, 0.5)]  # "hello" starts on frame 2, quiz has 5 pieces
    hello = sp.encode("hello")
    kept, k = layout_speaker(words, sp, packed(), n_frames=20)
    assert kept[:11].tolist() == quiz + hello and kept[11] == PAD
    assert k.overflow_dropped == 0 and k.max_drift == 5 - 2 and k.words_complete == 2
    dropped, d = layout_speaker(words, sp, packed(drop_overflow=True), n_frames=20)
    assert dropped[:8].tolist() == quiz[:2] + hello
    assert d.overflow_dropped == 3 and d.words_partial == 1 and d.max_drift == 0
    check_accounting(d, dropped)
    # Kyutai replaces the queue when a word starts on the same frame: the first word is lost whole.
    same, s = layout_speaker([A("quiz", 0.0, 0.5), A("hello", 0.04, 0.5)], sp, packed(drop_overflow=True), n_frames=20)
    assert s.words_lost == 1 and s.overflow_dropped == len(quiz) and same[:6].tolist() == hello


def test_zero_duration_words(sp: spm.SentencePieceProcessor) -> None:
    words = [A("hello", 0.5, 0.5), A("world", 1.0, 1.4)]
    _, kept = layout_speaker(words, sp, packed(), n_frames=30)
    assert kept.placed == kept.pieces and kept.zero_duration_dropped == 0
    _, dropped = layout_speaker(words, sp, packed(drop_overflow=True), n_frames=30)
    assert dropped.zero_duration_dropped == len(sp.encode("hello")) and dropped.words_lost == 1


@pytest.mark.parametrize("cfg", [spread(), packed(), packed(drop_overflow=True)], ids=["spread", "keep", "drop"])
def test_pieces_past_the_end_are_counted(sp: spm.SentencePieceProcessor, cfg: LayoutOptions) -> None:
    words = [A("hello", 0.0, 0.4), A("world", 2.0, 2.4)]
    stream, audit = layout_speaker(words, sp, cfg, n_frames=3)
    assert len(stream) == 3 and audit.placed == 3
    assert audit.past_end == audit.pieces - 3 and audit.words_partial == 1 and audit.words_lost == 1
    check_accounting(audit, stream)


def test_pieces_after_the_audio_are_counted(sp: spm.SentencePieceProcessor) -> None:
    stream, audit = layout_speaker([A("hello", 1.0, 1.4)], sp, spread(), duration=1.2)
    assert audit.after_audio == int((~np.isin(stream[15:], (PAD, EPAD))).sum()) > 0
    assert audit.past_end == 0


def test_custom_ids_and_their_checks(sp: spm.SentencePieceProcessor) -> None:
    stream, _ = layout_speaker([A("hello", 0.4, 0.8)], sp, spread(pad_id=1, epad_id=2))
    assert stream[:5].tolist() == [1, 1, 1, 1, 2]
    with pytest.raises(ConfigError, match="must differ"):
        layout_speaker([], sp, spread(pad_id=3, epad_id=3))
    with pytest.raises(ConfigError, match="outside the tokenizer"):
        layout_speaker([], sp, spread(pad_id=sp.get_piece_size()))


def test_dialogue_audit_is_json_ready(sp: spm.SentencePieceProcessor) -> None:
    t = Transcript(Path("d.json"), "kyutai", [A("hello", 0.5, 0.9), Word("B", "quiz", 0.6, 0.8)])
    _, audit = tokenize_dialogue(t, sp, spread(), duration=0.7)
    d = json.loads(json.dumps(audit.to_dict()))
    assert d["pieces"] == d["placed"] + d["not_placed"] and set(d["speakers"]) == {"A", "B"}
    assert d["speakers"]["B"]["pieces"] == len(sp.encode("quiz")) - 1  # without the dummy prefix
    assert d["speakers"]["A"]["after_audio"] == 2  # "l", "o" from 0.74 s: frames 9, 10 of 9 audio frames
    line = audit.summary()
    assert "\n" not in line and line.startswith("d [spread]: A: ") and "2 after the audio" in line


# --- the stage ---


def test_stage_writes_streams_sized_by_the_audio(tmp_path: Path, sp: spm.SentencePieceProcessor) -> None:
    text, audio, out = tmp_path / "text", tmp_path / "audio", tmp_path / "out"
    text.mkdir(), audio.mkdir()
    (text / "one.json").write_text(
        json.dumps(
            [
                {"speaker": "A", "word": "hello", "start": 0.5, "end": 0.9},
                {"speaker": "B", "word": "world", "start": 1.0, "end": 1.3},
            ]
        )
    )
    (text / "two.json").write_text(json.dumps({"alignments": [["the", [0.1, 0.3], "SPEAKER_MAIN"]]}))
    sf.write(audio / "one.wav", np.zeros((8000 * 3 + 100, 2), dtype=np.int16), 8000)  # 3.0125 s
    model = tmp_path / "small.model"
    model.write_bytes(sp.serialized_model_proto())
    seen: list[tuple[float, str]] = []
    cfg = stage.TextTokenizeConfig(transcripts=text, tokenizer=model, output=out, layout="packed", audio=audio)
    audits = stage.tokenize_text(cfg, progress=lambda f, msg: seen.append((f, msg)))
    assert [a.name for a in audits] == ["one", "two"] and seen[-1][0] == 1.0
    with np.load(out / "one.npz") as z:
        assert z["A"].shape == z["B"].shape == (math.ceil(3.0125 * 12.5),) and z["A"].dtype == np.int64
    assert json.loads((tmp_path / "out.audits" / "one.audit.json").read_text()) == audits[0].to_dict()
    assert sorted(p.name for p in out.iterdir()) == ["one.npz", "two.npz"]  # npz only: J-Moshi's tools list it
    assert any("no audio named two" in w for w in audits[1].warnings)
    # The output may be the transcripts folder itself: audits are not read back as transcripts.
    again = stage.TextTokenizeConfig(transcripts=text, tokenizer=model, output=text)
    assert len(stage.tokenize_text(again)) == 2 and len(stage.tokenize_text(again)) == 2


def test_stage_cli(tmp_path: Path, sp: spm.SentencePieceProcessor, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "d.json").write_text(json.dumps([{"speaker": "A", "word": "hello", "start": 0.5, "end": 0.9}]))
    model = tmp_path / "small.model"
    model.write_bytes(sp.serialized_model_proto())
    args = ["--transcripts", str(tmp_path), "--tokenizer", str(model), "--output", str(tmp_path / "out")]
    assert stage.main(args) == 0
    assert capsys.readouterr().out.startswith("d [spread]: A: 5 of 5 text pieces placed")
    (tmp_path / "bad.json").write_text("[")
    assert stage.main(args) == 1
    captured = capsys.readouterr()
    assert "d [spread]" in captured.out and "bad.json: not valid JSON" in captured.err
    assert stage.main(args + ["--pad-id", "0"]) == 2  # pad = epad: refused before any work
