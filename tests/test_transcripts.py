"""Word transcripts: both formats, every malformed case refused by name, warnings for odd but usable files."""

import json
from pathlib import Path

import numpy as np
import pytest

from backend.core.errors import ConfigError, InputError
from backend.data.transcripts import Word, check_transcript, load_transcript, parse_speaker_map
from backend.dataset.spm import train_spm
from backend.dataset.tokenize_text import TextTokenizeConfig, TokenizeFailures, tokenize_text

GOOD = [
    {"speaker": "A", "word": "hello", "start": 0.5, "end": 0.9},
    {"speaker": "B", "word": "hi", "start": 1.0, "end": 1.2},
    {"speaker": "A", "word": "there", "start": 0.9, "end": 1.3},
]


def write(path: Path, content: object) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def test_jmoshi_format(tmp_path: Path) -> None:
    t = load_transcript(write(tmp_path / "d.json", GOOD))
    assert t.format == "jmoshi"
    assert t.words[0] == Word("A", "hello", 0.5, 0.9)
    assert [w.word for w in t.speaker_words("A")] == ["hello", "there"]


def test_kyutai_format_maps_main_speaker_to_left_channel(tmp_path: Path) -> None:
    data = {"alignments": [["hello", [0.5, 0.9], "SPEAKER_MAIN"], ["hi", [1.0, 1.2], "SPEAKER_OTHER"]]}
    t = load_transcript(write(tmp_path / "d.json", data))
    assert t.format == "kyutai"
    assert [(w.speaker, w.word, w.start, w.end) for w in t.words] == [("A", "hello", 0.5, 0.9), ("B", "hi", 1.0, 1.2)]


def test_kyutai_main_only_file_leaves_b_empty(tmp_path: Path) -> None:
    # What Kyutai's annotate.py writes: the left channel only, every word SPEAKER_MAIN.
    t = load_transcript(write(tmp_path / "d.json", {"alignments": [["hello", [0.5, 0.9], "SPEAKER_MAIN"]]}))
    assert t.speaker_words("B") == []
    assert any("speaker B has no words" in i.message for i in check_transcript(t, 2.0))


def test_explicit_speaker_map(tmp_path: Path) -> None:
    data = {"alignments": [["hello", [0.5, 0.9], "SPEAKER_00"], ["hi", [1.0, 1.2], "SPEAKER_01"]]}
    path = write(tmp_path / "d.json", data)
    t = load_transcript(path, parse_speaker_map("SPEAKER_00=B, SPEAKER_01=A"))
    assert [w.speaker for w in t.words] == ["B", "A"]
    with pytest.raises(InputError, match="'SPEAKER_00', 'SPEAKER_01'"):
        load_transcript(path)  # two non-main labels: ambiguous without a map
    with pytest.raises(InputError, match="'SPEAKER_01'"):
        load_transcript(path, {"SPEAKER_00": "A"})
    with pytest.raises(ConfigError, match="A or B"):
        load_transcript(path, {"SPEAKER_00": "left"})
    with pytest.raises(ConfigError, match="LABEL=A"):
        parse_speaker_map("SPEAKER_00")


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", b"\xef\xbb\xbf" + json.dumps(GOOD).encode())
    assert len(load_transcript(path).words) == 3


def entry(**changes: object) -> list[dict]:
    bad = dict(GOOD[1], **changes)
    return [GOOD[0], {k: v for k, v in bad.items() if v is not ...}]


# (case, file content, words the message must contain)
MALFORMED = [
    ("empty", b"", "empty"),
    ("blank", b"  \n", "empty"),
    ("utf8", b'[{"speaker": "A", "word": "caf\xe9", "start": 0, "end": 1}]', "not valid UTF-8 (byte 0xe9"),
    ("json", b'[{"speaker": "A", "word": "x", "start": 0, "end": 1}', "not valid JSON (line 1"),
    ("shape-number", b"42", "found int"),
    ("shape-object", {"words": []}, "an object without 'alignments'"),
    ("no-words", [], "no words"),
    ("kyutai-no-words", {"alignments": []}, "no words"),
    ("alignments-not-list", {"alignments": {"a": 1}}, "'alignments' must be a list"),
    ("entry-not-object", [GOOD[0], "hi"], "entry 1: expected an object"),
    ("missing-field", entry(start=...), "entry 1: missing field 'start'"),
    ("word-type", entry(word=7), "entry 1: 'word' must be a string"),
    ("time-type", entry(end="1.2"), "'end' must be a number of seconds, found str"),
    ("time-bool", entry(start=True), "'start' must be a number of seconds, found bool"),
    ("nan", b'[{"speaker": "A", "word": "hi", "start": NaN, "end": 1}]', "'start' is nan"),
    ("infinity", b'[{"speaker": "A", "word": "hi", "start": 0, "end": Infinity}]', "'end' is inf"),
    ("negative", entry(start=-0.5), "'start' is negative"),
    ("start-after-end", entry(start=1.5), "entry 1 ('hi'): start 1.5 s is after end 1.2 s"),
    ("unknown-speaker", entry(speaker="C"), "unknown speaker label(s) 'C'"),
    ("kyutai-entry", {"alignments": [["hi", 0.5, "SPEAKER_MAIN"]]}, "alignments entry 0: the times must be"),
    (
        "kyutai-short",
        {"alignments": [["hi", [0.5, 0.9]]]},
        "alignments entry 0: expected [word, [start, end], speaker]",
    ),
    (
        "kyutai-labels",
        {"alignments": [["a", [0, 1], "X"], ["b", [1, 2], "Y"], ["c", [2, 3], "SPEAKER_MAIN"]]},
        "unknown speaker label(s) 'X', 'Y'",
    ),
]


@pytest.mark.parametrize("case,content,problem", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_transcript_is_refused_by_name(tmp_path: Path, case: str, content: object, problem: str) -> None:
    path = write(tmp_path / f"{case}.json", content)
    with pytest.raises(InputError) as err:
        load_transcript(path)
    assert str(err.value).startswith(f"{path}: ")
    assert problem in str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the file"):
        load_transcript(tmp_path / "missing.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(InputError, match="dir.json: cannot read the file"):
        load_transcript(tmp_path / "dir.json")


@pytest.fixture(scope="module")
def tiny_spm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_spm(["hello there hi", "the cat sat on the mat"] * 5, tmp_path_factory.mktemp("spm") / "t.model", 300)


@pytest.mark.parametrize("case,content,problem", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_stage_writes_nothing_for_a_malformed_transcript(
    tmp_path: Path, tiny_spm: Path, case: str, content: object, problem: str
) -> None:
    src, out = tmp_path / "text", tmp_path / "out"
    src.mkdir()
    write(src / "good.json", GOOD)
    bad = write(src / f"{case}.json", content)
    out.mkdir()
    (out / f"{case}.npz").write_bytes(b"stale output of an earlier run")
    with pytest.raises(TokenizeFailures) as err:
        tokenize_text(TextTokenizeConfig(transcripts=src, tokenizer=tiny_spm, output=out))
    assert [e.path for e in err.value.failures] == [str(bad)]
    assert f"{bad}: " in str(err.value) and problem in str(err.value)
    assert [a.name for a in err.value.audits] == ["good"]
    assert sorted(p.name for p in out.iterdir()) == ["good.npz"]  # stale output removed too; audits go beside
    with np.load(out / "good.npz") as z:
        assert z["A"].dtype == np.int64 and z["B"].dtype == np.int64


def test_check_transcript_warnings(tmp_path: Path) -> None:
    words = [
        {"speaker": "A", "word": "late", "start": 9.5, "end": 10.4},
        {"speaker": "A", "word": "hello", "start": 0.5, "end": 1.5},
        {"speaker": "A", "word": "over", "start": 1.0, "end": 1.2},
        {"speaker": "A", "word": "later", "start": 10.1, "end": 10.9},
        {"speaker": "A", "word": " ", "start": 2.0, "end": 2.1},
    ]
    t = load_transcript(write(tmp_path / "d.json", words))
    messages = [i.message for i in check_transcript(t, 10.0)]
    assert all(i.level == "warning" for i in check_transcript(t, 10.0))
    assert "2 word(s) end after the audio (10.00 s), the latest at 10.90 s; their text is cut when merged" in messages
    assert "speaker B has no words (an all-PAD text stream)" in messages
    assert "2 word(s) of speaker A overlap an earlier word of theirs, first 'over' at 1.00 s" in messages
    assert any(m.startswith("1 empty word(s) (entry 4 first)") for m in messages)
    assert any("not sorted by start time" in m for m in messages)
    clean = load_transcript(write(tmp_path / "c.json", GOOD[:2]))
    assert check_transcript(clean, 5.0) == []
