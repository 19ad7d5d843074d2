"""The offline Japanese demo: its committed dialogues (assets/demo_ja), their offline synthesis, and the workspace
`init-demo --language ja` builds, through Build dataset."""

import json
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_demo_dialogues import read_words

from backend.core.errors import ConfigError
from backend.core.spec import SAMPLE_RATE
from backend.demo.dialogues import DemoDialogue, Turn, render
from backend.demo.dialogues_ja import DEMO_JA_DIR, HIGH, JA_DIALOGUES, LOW
from backend.demo.workspace import create_demo_workspace, main


def test_three_two_speaker_dialogues_with_exact_word_timings_in_both_formats() -> None:
    assert len(JA_DIALOGUES) >= 3
    formats = set()
    for d in JA_DIALOGUES:
        audio, rate = sf.read(DEMO_JA_DIR / f"{d.name}.flac", dtype="float32")
        assert rate == SAMPLE_RATE and audio.shape[1] == 2
        words = read_words(DEMO_JA_DIR / f"{d.name}.json")
        assert {s for s, *_ in words} == {"A", "B"}
        for channel, speaker in enumerate("AB"):
            inside = np.zeros(len(audio), dtype=bool)
            for _, _, start, end in (w for w in words if w[0] == speaker):
                a, b = round(start * rate), round(end * rate)
                assert abs(audio[a, channel]) > 0.009 and abs(audio[b - 1, channel]) > 0.009
                inside[a:b] = True
            assert not np.any(audio[~inside, channel])  # nothing is said outside the words
        formats.add(type(json.loads((DEMO_JA_DIR / f"{d.name}.json").read_text(encoding="utf-8"))))
    assert formats == {list, dict}
    assert sum(p.stat().st_size for p in DEMO_JA_DIR.iterdir()) < 900_000  # a few hundred KB


def median_f0(audio: np.ndarray) -> float:
    """Median pitch (autocorrelation, 60-400 Hz) of the voiced 50 ms windows."""
    found = []
    for i in range(0, len(audio) - 1200, 480):
        w = audio[i : i + 1200]
        if np.sqrt(np.mean(w**2)) < 0.05:
            continue
        c = np.correlate(w, w, "full")[1199:]
        lag = SAMPLE_RATE // 400 + int(np.argmax(c[SAMPLE_RATE // 400 : SAMPLE_RATE // 60]))
        if c[lag] > 0.6 * c[0]:
            found.append(SAMPLE_RATE / lag)
    return float(np.median(found))


def test_synthesis_downloads_nothing_and_gives_two_different_voices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyopenjtalk", reason="pyopenjtalk-plus is the demo-ja extra")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Japanese demo's synthesis opened a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    script = DemoDialogue(
        "t",
        "jmoshi",
        {"A": HIGH, "B": LOW},
        (Turn("A", "こんにちは、 ｺｰﾋｰを ください。", 0.0), Turn("B", "１０時から です。 𠮷田さん…", 0.3)),
    )
    signal, words = render(script, random.Random(0), tmp_path)
    again, _ = render(script, random.Random(0), tmp_path)
    assert np.array_equal(signal, again)
    assert [w.word for w in words] == ["こんにちは、", "ｺｰﾋｰを", "ください。", "１０時から", "です。", "𠮷田さん…"]
    high, low = median_f0(signal[0]), median_f0(signal[1])
    assert high > 1.25 * low, (high, low)  # about 300 Hz against 210 Hz


@pytest.fixture(scope="module")
def ja_ws(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return create_demo_workspace(tmp_path_factory.mktemp("ws") / "ja", random_codec=True, language="ja")


def test_init_demo_ja_makes_a_japanese_workspace(ja_ws, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[no-untyped-def]
    from backend.dataset.tokenizer_inspect import byte_fallback
    from backend.models.text_tokenizer import load_spm

    assert sorted(p.name for p in ja_ws.raw.glob("*.json")) == sorted(f"{d.name}.json" for d in JA_DIALOGUES)
    assert ja_ws.settings.whitespace is False  # J-Moshi's --no_whitespace_before_word
    sp = load_spm(ja_ws.tokenizer_path)
    assert (sp.id_to_piece(3), sp.id_to_piece(0)) == ("<pad>", "<unk>") and byte_fallback(sp)
    assert any(sp.is_byte(i) for i in sp.encode("𠮷")) and not any(sp.is_byte(i) for i in sp.encode("会議"))
    with pytest.raises(ConfigError, match="persona demo is English"):
        create_demo_workspace(tmp_path / "x", language="ja", personas=True)
    assert main(["init-demo", str(ja_ws.root), "--language", "ja"]) == 0  # completes, keeps what is there
    assert "whitespace: False" in capsys.readouterr().out


def test_build_dataset_of_the_japanese_demo_joins_words_without_spaces(ja_ws) -> None:  # type: ignore[no-untyped-def]
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig

    result = prepare_dataset(ja_ws, TextTokenizeConfig(**text_paths(ja_ws)))
    assert result.dataset.rows == 3
    for audit in result.audits:
        assert audit.options["whitespace"] is False and audit.not_placed == 0
        assert all(a.bare_boundary_share == 0 for a in audit.speakers.values())
    text = result.markdown()
    assert "𠮷 as UTF-8 byte pieces" in text and "normalised by the tokenizer" in text
