"""`moshi-studio tokenizer inspect`: a model named by its pieces, its PAD/EPAD pieces and byte fallback, and the
shares of byte-fallback, unknown and bare "▁" pieces on transcripts."""

import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm

from backend import cli
from backend.dataset.spm import train_spm
from backend.dataset.tokenizer_inspect import TokenizerInspectConfig, inspect_tokenizer
from backend.demo.dialogues import demo_sentences
from backend.demo.workspace import DEMO_VOCAB_SIZE
from backend.models.text_tokenizer import fingerprint, load_spm

RARE = "𠮷"  # in no demo piece: four UTF-8 bytes with byte fallback, <unk> without


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace's tokenizer, trained as the workspace trains it."""
    return train_spm(demo_sentences(), tmp_path_factory.mktemp("demo") / "tokenizer.model", DEMO_VOCAB_SIZE)


def plain_model(path: Path) -> Path:
    """A model without byte fallback and without a PAD piece: id 3 is text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(demo_sentences()),
        model_prefix=str(path.with_suffix("")),
        vocab_size=100,
        model_type="unigram",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return path


def transcripts(folder: Path, words: list[str]) -> Path:
    """One J-Moshi transcript in which speaker A says `words`, half a second each (B says nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"speaker": "A", "word": w, "start": i / 2, "end": (i + 1) / 2} for i, w in enumerate(words)]
    (folder / "d.json").write_text(json.dumps(entries, ensure_ascii=False))
    return folder


def test_the_fingerprint_follows_the_pieces_not_the_file_name(demo_model: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "tokenizer_spm_32k_3.model"  # J-Moshi's and Kyutai's models share this name
    renamed.write_bytes(demo_model.read_bytes())
    other = plain_model(tmp_path / "other" / "tokenizer_spm_32k_3.model")
    demo, same, different = (fingerprint(load_spm(p)) for p in (demo_model, renamed, other))
    assert re.fullmatch("[0-9a-f]{16}", demo) and demo == same != different


def test_the_demo_tokenizer_has_byte_fallback_and_the_ids_moshi_expects(demo_model: Path) -> None:
    report = inspect_tokenizer(TokenizerInspectConfig(model=demo_model))
    assert report.vocab_size == DEMO_VOCAB_SIZE and report.byte_fallback
    assert report.special == {
        "pad": {"id": 3, "piece": "<pad>", "kind": "control"},
        "epad": {"id": 0, "piece": "<unk>", "kind": "unknown"},
    }
    assert report.warnings == [] and report.transcripts is None


def test_a_pad_id_on_a_text_piece_is_a_warning_and_no_byte_fallback_is_said(tmp_path: Path) -> None:
    model = plain_model(tmp_path / "plain.model")
    report = inspect_tokenizer(TokenizerInspectConfig(model=model))
    piece = load_spm(model).id_to_piece(3)
    assert not report.byte_fallback and report.special["pad"] == {"id": 3, "piece": piece, "kind": "normal"}
    assert report.warnings == [
        f"PAD id 3 is the text piece {piece!r}: every {piece!r} in a transcript would read as PAD"
    ]


def test_piece_shares_on_transcripts_follow_the_layout_settings(demo_model: Path, tmp_path: Path) -> None:
    folder = transcripts(tmp_path / "raw", [RARE, RARE])
    spaced = inspect_tokenizer(TokenizerInspectConfig(model=demo_model, transcripts=folder)).transcripts
    joined = inspect_tokenizer(
        TokenizerInspectConfig(model=demo_model, transcripts=folder, whitespace=False)
    ).transcripts
    # "𠮷 𠮷": the dummy-prefix "▁" is no text, then 4 bytes, a bare "▁" and 4 bytes; joined: 8 bytes
    assert (spaced.files, spaced.pieces, spaced.byte_fallback, spaced.bare_boundary, spaced.unknown) == (1, 9, 8, 1, 0)
    assert (joined.pieces, joined.byte_fallback, joined.bare_boundary, joined.unknown) == (8, 8, 0, 0)
    plain = inspect_tokenizer(
        TokenizerInspectConfig(model=plain_model(tmp_path / "plain.model"), transcripts=folder, whitespace=False)
    ).transcripts
    assert plain.unknown >= 1 and plain.byte_fallback == 0


def test_the_command_prints_the_facts_and_refuses_a_missing_model(
    demo_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = transcripts(tmp_path / "raw", [RARE])
    assert cli.main(["tokenizer", "inspect", str(demo_model), "--transcripts", str(folder)]) == 0
    out = capsys.readouterr().out
    assert fingerprint(load_spm(demo_model)) in out and "byte fallback on" in out
    assert "1 file(s), 4 pieces: byte fallback 100.0%, unknown 0.0%, bare ▁ 0.0%" in out
    assert cli.main(["tokenizer", "inspect", str(tmp_path / "none.model")]) == 2
    assert "SentencePiece model not found" in capsys.readouterr().err
