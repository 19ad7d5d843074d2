"""Japanese in what people look at: figures without tofu boxes, byte-fallback runs shown as their character in the
timeline (HTML and figure)."""

import warnings
from pathlib import Path

import pytest
from figure_helpers import png_size
from test_views import timeline_data as timeline_sample

from backend.core import figures
from backend.dataset.timeline import byte_characters, text_label
from backend.dataset.tokenizer_train import TokenizerTrainConfig, train_tokenizer
from backend.demo.dialogues_ja import DEMO_JA_DIR
from backend.demo.workspace import JA_DEMO_COVERAGE
from backend.models.text_tokenizer import load_spm
from studio.timeline_view import render_timeline

JAPANESE = "𠮷田さん ｺｰﾋｰ １０時 えっと… 齟齬 ＯＫ"


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("spm") / "ja.model"
    return load_spm(
        train_tokenizer(
            TokenizerTrainConfig(
                transcripts=DEMO_JA_DIR,
                output=out,
                whitespace=False,
                vocab_size=400,
                character_coverage=JA_DEMO_COVERAGE,
            )
        )
    )


@pytest.mark.skipif(figures.cjk_font() is None, reason="no CJK font installed (Debian: apt-get install fonts-noto-cjk)")
def test_figures_draw_japanese_without_missing_glyphs(tmp_path: Path) -> None:
    fig = figures.new_figure(6, 2)
    ax = fig.subplots()
    ax.set_title(JAPANESE)
    ax.text(0.1, 0.5, "齬 <0xE9>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for every box it draws
        path = figures.save(fig, tmp_path / "ja.png")
    assert png_size(path) == (600, 200)


def test_a_byte_fallback_run_is_shown_as_its_character(sp) -> None:  # type: ignore[no-untyped-def]
    ids = [3, 0] + sp.encode("𠮷田", out_type=int)[1:] + [3] + sp.encode("齬", out_type=int)[1:]
    chars = byte_characters(ids, sp)
    labels = [text_label(t, sp, 3, 0) for t in ids]
    assert labels[2:6] == ["<0xF0>", "<0xA0>", "<0xAE>", "<0xB7>"] and chars[2:6] == ["𠮷"] * 4
    assert chars[6] == "" and labels[6] == "田"  # a piece of its own
    assert chars[-3:] == ["齬"] * 3 and chars[:2] == ["", ""] and chars[7] == ""
    # A run cut by the window's start (its first bytes outside) forms no character.
    assert byte_characters(ids[3:6], sp) == ["", "", ""]

    data = timeline_sample()
    stream = data["speakers"]["A"]
    n = len(stream["text_labels"])
    stream["text_labels"] = (labels * n)[:n]
    stream["text_chars"] = (chars * n)[:n]
    html = render_timeline(data)
    assert html.count('<span class="ms-char">𠮷</span>') >= 4 and "&lt;0xF0&gt;" in html
    assert 'title="𠮷: &lt;0xA0&gt;"' in html


@pytest.mark.skipif(figures.cjk_font() is None, reason="no CJK font installed (Debian: apt-get install fonts-noto-cjk)")
def test_the_timeline_figure_labels_a_byte_piece_with_its_character(sp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = timeline_sample()
    stream = data["speakers"]["A"]
    ids = sp.encode("𠮷田", out_type=int)[1:]
    n = len(stream["text_labels"])
    stream["text_labels"] = ([text_label(t, sp, 3, 0) for t in ids] + ["PAD"] * n)[:n]
    stream["text_chars"] = (byte_characters(ids, sp) + [""] * n)[:n]
    fig = figures.timeline(data)
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "𠮷 <0xF0>" in labels and "田" in labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figures.save(fig, tmp_path / "timeline.png")
