"""Moshi's text stream shown live: byte-fallback pieces become characters, control pieces say nothing."""

import pytest

from backend.inference.live_text import LiveText
from backend.models.text_tokenizer import load_spm


@pytest.fixture(scope="module")
def sp(demo_workspace):  # type: ignore[no-untyped-def]
    return load_spm(demo_workspace.demo_tokenizer)


def test_characters_spelled_in_bytes_appear_whole(sp) -> None:  # type: ignore[no-untyped-def]
    text = "café 日本 ok"
    ids = sp.encode(text)
    assert sum(sp.is_byte(i) for i in ids) >= 6, "the demo tokenizer should spell 日本 in bytes"
    live = LiveText(sp)
    shown = [live.piece(i) for i in ids]
    assert "".join(shown).strip() == text == sp.decode(ids)
    assert not any("<0x" in s for s in shown)
    assert "日" in shown and "本" in shown  # each as soon as its last byte arrives


def test_cut_characters_control_pieces_and_reset(sp) -> None:  # type: ignore[no-untyped-def]
    live = LiveText(sp)
    first_byte, *_ = [i for i in sp.encode("日") if sp.is_byte(i)]
    assert live.piece(first_byte) == ""
    the = sp.piece_to_id("▁the")
    assert live.piece(the) == "\ufffd the"  # a character cut short by a normal piece
    assert live.piece(sp.bos_id()) == live.piece(sp.eos_id()) == ""
    live.piece(first_byte)
    live.reset()  # a new conversation does not inherit half a character
    assert live.piece(the) == " the"
