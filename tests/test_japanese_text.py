"""Japanese through the text layouts and the tokenizer workflow: the Japanese demo's transcripts (both formats) and
hard cases (byte fallback, normalisation changing lengths), against J-Moshi's and Kyutai's rules; their own tools
too when a checkout is named (tests/reference_tools.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import reference_tools
import sentencepiece as spm
from test_text_layout import (
    EPAD,
    PAD,
    check_accounting,
    epad_positions_ok,
    jmoshi_reference,
    kyutai_reference,
    text_ids,
)

from backend.cli import main as cli
from backend.data.transcripts import Word, load_transcript
from backend.dataset import tokenize_text as stage
from backend.dataset.text_layout import LayoutOptions, frame_of, layout_speaker
from backend.dataset.token_folders import audits_beside
from backend.dataset.tokenizer_train import TokenizerTrainConfig, train_tokenizer
from backend.demo.dialogues_ja import DEMO_JA_DIR
from backend.demo.workspace import JA_DEMO_COVERAGE, JA_DEMO_VOCAB_SIZE
from backend.models.text_tokenizer import load_spm

SPREAD = LayoutOptions("spread", whitespace=False)  # J-Moshi's --no_whitespace_before_word
EDGE = [
    Word("A", "𠮷田さん、", 0.4, 1.0),
    Word("A", "齟齬が", 1.1, 1.5),
    Word("A", "ｺｰﾋｰ", 1.6, 2.0),
    Word("A", "ｶﾞﾑ", 2.1, 2.4),
    Word("A", "えっと…", 2.5, 3.0),
    Word("A", "ＯＫ", 3.1, 3.3),
    Word("A", "１０時", 3.4, 3.8),
    Word("A", "ラーメン", 3.9, 4.3),
]
SPEAKERS = [(path.stem, s) for path in sorted(DEMO_JA_DIR.glob("*.json")) for s in "AB"]


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> spm.SentencePieceProcessor:
    """The Japanese demo workspace's tokenizer, trained the same way."""
    out = tmp_path_factory.mktemp("spm") / "ja.model"
    return load_spm(
        train_tokenizer(
            TokenizerTrainConfig(
                transcripts=DEMO_JA_DIR,
                output=out,
                whitespace=False,
                vocab_size=JA_DEMO_VOCAB_SIZE,
                character_coverage=JA_DEMO_COVERAGE,
            )
        )
    )


def demo_words(name: str, speaker: str) -> list[Word]:
    return load_transcript(DEMO_JA_DIR / f"{name}.json").speaker_words(speaker)


def joined(words: list[Word]) -> str:
    return "".join(w.word.strip() for w in sorted(words, key=lambda w: w.start))


def expected_spread(words: list[Word], sp: spm.SentencePieceProcessor) -> list[tuple[int, int]]:
    """(frame, id) of every piece: each at its first character's frame (the word's span split evenly over its
    characters, as written), or right after the previous piece when that frame is taken."""
    words = sorted(words, key=lambda w: w.start)
    starts = [w.start + i * (w.end - w.start) / len(w.word) for w in words for i in range(len(w.word))]
    enc = sp.encode(joined(words), out_type="offset_mapping")
    out, last = [], -1
    for n, (pid, piece, (b, _)) in enumerate(zip(enc["ids"], enc["pieces"], enc["offsets"])):
        if n == 0 and piece == "▁":
            continue
        last = max(frame_of(starts[b]), last + 1)
        out.append((last, pid))
    return out


def test_the_demo_transcripts_hold_japanese_writing_in_both_formats(sp: spm.SentencePieceProcessor) -> None:
    text = "".join(joined(load_transcript(p).words) for p in DEMO_JA_DIR.glob("*.json"))
    for what, chars in {
        "kanji": "注文会議",
        "hiragana": "ください",
        "katakana": "カード",
        "long vowel": "ー",
        "full-width digits": "１０",
        "full-width Latin": "ＯＫ",
        "half-width katakana": "ｺｰﾋｰ",
        "ellipsis": "…",
        "rare kanji": "𠮷齟齬",
    }.items():
        assert all(c in text for c in chars), what
    assert " " not in text
    formats = {load_transcript(p).format for p in DEMO_JA_DIR.glob("*.json")}
    assert formats == {"jmoshi", "kyutai"}
    assert any(sp.is_byte(i) for i in sp.encode("𠮷"))  # the demo tokenizer has no piece for it


def test_spread_no_whitespace_is_jmoshis_where_jmoshi_works(sp: spm.SentencePieceProcessor) -> None:
    clean = 0
    for name, speaker in SPEAKERS:
        words = demo_words(name, speaker)
        stream, audit = layout_speaker(words, sp, SPREAD)
        if not audit.byte_characters and not audit.renormalized:
            assert stream.tolist() == jmoshi_reference(words, sp, whitespace=False), (name, speaker)
            clean += 1
    assert clean >= 3


@pytest.mark.parametrize(
    "case", SPEAKERS + [("edge", "A")], ids=lambda c: f"{c[0]}-{c[1]}" if isinstance(c, tuple) else c
)
def test_every_piece_in_text_order_at_its_characters_time(
    sp: spm.SentencePieceProcessor, case: tuple[str, str]
) -> None:
    words = EDGE if case[0] == "edge" else demo_words(*case)
    stream, audit = layout_speaker(words, sp, SPREAD)
    placed = [(int(f), int(stream[f])) for f in np.flatnonzero(~np.isin(stream, (PAD, EPAD)))]
    assert placed == expected_spread(words, sp)
    assert sp.decode(text_ids(stream)) == sp.decode(sp.encode(joined(words)))  # all text, in order
    assert audit.placed == audit.pieces and epad_positions_ok(stream)
    check_accounting(audit, stream)


def test_the_audit_says_what_it_did_with_bytes_and_normalisation(sp: spm.SentencePieceProcessor) -> None:
    stream, audit = layout_speaker(EDGE, sp, SPREAD)
    assert "𠮷" in audit.byte_characters and "ｶﾞ" in audit.byte_characters
    assert "…" in audit.renormalized
    assert audit.unknown_pieces == 0 and audit.bare_boundary_share == 0
    assert "𠮷" in audit.summary() and "as UTF-8 byte pieces" in audit.summary()
    assert "normalised by the tokenizer" in audit.summary()
    # 𠮷's four bytes on four consecutive frames from its first character's frame (0.4 s = frame 5)
    assert [sp.id_to_piece(int(i)) for i in stream[5:9]] == ["<0xF0>", "<0xA0>", "<0xAE>", "<0xB7>"]


@pytest.mark.parametrize("keep", [True, False], ids=["keep_and_shift", "drop_overflow"])
@pytest.mark.parametrize("whitespace", [True, False], ids=["spaces", "no_whitespace"])
def test_packed_is_kyutais_loop_on_japanese(sp: spm.SentencePieceProcessor, keep: bool, whitespace: bool) -> None:
    for words in [EDGE] + [demo_words(*c) for c in SPEAKERS]:
        words = sorted(words, key=lambda w: w.start)
        stream, audit = layout_speaker(
            words, sp, LayoutOptions("packed", whitespace=whitespace, drop_overflow=not keep), n_frames=80
        )
        assert stream.tolist() == kyutai_reference(words, sp, 80, keep, None if whitespace else joint_ids(words, sp))
        check_accounting(audit, stream)


def joint_ids(words: list[Word], sp: spm.SentencePieceProcessor):  # -> Callable[[Word], list[int]]
    """No whitespace: the joined text tokenized once, each piece given to the word of its first character."""
    owner = [j for j, w in enumerate(words) for _ in w.word.strip()]
    enc = sp.encode(joined(words), out_type="offset_mapping")
    ids: dict[int, list[int]] = {}
    for n, (pid, piece, (b, _)) in enumerate(zip(enc["ids"], enc["pieces"], enc["offsets"])):
        if not (n == 0 and piece == "▁"):
            ids.setdefault(owner[b], []).append(pid)
    return lambda w: ids.get(next(j for j, x in enumerate(words) if x is w), [])


@pytest.mark.skipif(reference_tools.checkout_file("jmoshi") is None, reason=reference_tools.why_missing("jmoshi"))
def test_jmoshis_own_tool_agrees_or_fails_where_the_deviations_say(sp: spm.SentencePieceProcessor) -> None:
    for name, speaker in SPEAKERS + [("edge", "A")]:
        words = EDGE if name == "edge" else demo_words(name, speaker)
        stream, audit = layout_speaker(words, sp, SPREAD)
        if audit.byte_characters:  # D3: "Failed to decode the last byte tokens"
            with pytest.raises(ValueError, match="byte tokens"):
                reference_tools.jmoshi_stream(words, sp, whitespace=False)
        elif audit.renormalized:  # D4: its character count runs out ("…" counts 3 where the text has 1)
            with pytest.raises((IndexError, AssertionError)):
                reference_tools.jmoshi_stream(words, sp, whitespace=False)
        else:
            assert reference_tools.jmoshi_stream(words, sp, whitespace=False) == stream.tolist(), (name, speaker)


@pytest.mark.skipif(reference_tools.checkout_file("kyutai") is None, reason=reference_tools.why_missing("kyutai"))
@pytest.mark.parametrize("keep", [True, False], ids=["keep_and_shift", "drop_overflow"])
def test_kyutais_own_interleaver_agrees(sp: spm.SentencePieceProcessor, keep: bool) -> None:
    for words in [EDGE] + [demo_words(*c) for c in SPEAKERS]:
        words = sorted(words, key=lambda w: w.start)
        for whitespace in (True, False):
            stream, _ = layout_speaker(
                words, sp, LayoutOptions("packed", whitespace=whitespace, drop_overflow=not keep), n_frames=80
            )
            word_ids = (lambda w: sp.encode(w.word.strip())) if whitespace else joint_ids(words, sp)
            units = [(word_ids(w), w.start, w.end) for w in words]
            assert reference_tools.kyutai_stream(units, sp, 80 / 12.5, keep) == stream.tolist()


def test_the_stage_on_the_japanese_demo(tmp_path: Path, sp: spm.SentencePieceProcessor) -> None:
    model = tmp_path / "ja.model"
    model.write_bytes(sp.serialized_model_proto())
    counts = {}
    for whitespace in (True, False):
        out = tmp_path / f"tokens-{whitespace}"
        audits = stage.tokenize_text(
            stage.TextTokenizeConfig(
                transcripts=DEMO_JA_DIR, tokenizer=model, output=out, audio=DEMO_JA_DIR, whitespace=whitespace
            )
        )
        assert len(audits) == 3 and all(a.not_placed == 0 for a in audits)
        counts[whitespace] = sum(a.pieces for a in audits)
        saved = (audits_beside(out) / "ja_meeting.audit.json").read_text()
        assert "𠮷" in saved and json.loads(saved)["speakers"]["A"]["byte_characters"] == ["𠮷"]
    # With spaces a word's "▁" is a piece of its own or part of one: more pieces for the same text (J-Moshi without
    # its flag; with a 32k model about twice as many).
    assert counts[True] > 1.2 * counts[False]


def test_tokenizer_train_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "t.model"
    assert (
        cli(
            [
                "tokenizer",
                "train",
                "--transcripts",
                str(DEMO_JA_DIR),
                "--output",
                str(out),
                "--vocab-size",
                "400",
                "--no-whitespace",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "byte fallback on" in printed and "bare ▁ 0.0%" in printed
    trained = load_spm(out)
    assert trained.get_piece_size() <= 400
    assert (trained.id_to_piece(3), trained.id_to_piece(0)) == ("<pad>", "<unk>")  # PAD 3, EPAD 0 as J-Moshi
    assert (
        cli(
            [
                "tokenizer",
                "train",
                "--transcripts",
                str(DEMO_JA_DIR),
                "--output",
                str(out),
                "--pad-id",
                "1",
                "--epad-id",
                "2",
            ]
        )
        == 0
    )
    assert (load_spm(out).id_to_piece(1), load_spm(out).id_to_piece(2)) == ("<pad>", "<unk>")
    assert (
        cli(["tokenizer", "train", "--transcripts", str(DEMO_JA_DIR), "--output", str(out), "--vocab-size", "100"]) == 2
    )
    assert "Vocabulary size is smaller" in capsys.readouterr().err
    assert cli(["tokenizer", "train", "--transcripts", str(tmp_path), "--output", str(out)]) == 2
    assert "no words" in capsys.readouterr().err
