"""Malformed uploads: each is refused with a message naming the file and the problem, and
nothing is written for it (tested through the studio's import path, then the CLI validator)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.data.ingest import import_dialogues
from backend.data.validate import main as validate_main

GOOD_WORDS = [{"speaker": "A", "word": "hello", "start": 0.1, "end": 0.5},
              {"speaker": "B", "word": "hi", "start": 0.6, "end": 0.9}]


def stereo(path: Path, channels: int = 2, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal((int(16000 * seconds), channels)).squeeze(), 16000)
    return path


def transcript(path: Path, words: object = GOOD_WORDS) -> Path:
    path.write_text(json.dumps(words), encoding="utf-8")
    return path


def case_mono(d: Path) -> list[Path]:
    return [stereo(d / "mono.wav", channels=1), transcript(d / "mono.json")]


def case_three_channels(d: Path) -> list[Path]:
    return [stereo(d / "three.wav", channels=3), transcript(d / "three.json")]


def case_empty_audio(d: Path) -> list[Path]:
    (d / "empty.wav").write_bytes(b"")
    return [d / "empty.wav", transcript(d / "empty.json")]


def case_truncated_header(d: Path) -> list[Path]:
    data = stereo(d / "trunc.wav").read_bytes()
    (d / "trunc.wav").write_bytes(data[:30])
    return [d / "trunc.wav", transcript(d / "trunc.json")]


def case_text_named_wav(d: Path) -> list[Path]:
    (d / "notes.wav").write_text("this is not audio\n")
    return [d / "notes.wav", transcript(d / "notes.json")]


def case_nan_time(d: Path) -> list[Path]:
    (d / "nan.json").write_text('[{"speaker": "A", "word": "x", "start": NaN, "end": 1.0}]')
    return [stereo(d / "nan.wav"), d / "nan.json"]


def case_start_after_end(d: Path) -> list[Path]:
    return [stereo(d / "order.wav"), transcript(d / "order.json", [{"speaker": "A", "word": "x", "start": 0.8, "end": 0.2}])]


def case_unknown_speaker(d: Path) -> list[Path]:
    return [stereo(d / "who.wav"), transcript(d / "who.json", [{"speaker": "C", "word": "x", "start": 0.1, "end": 0.2}])]


def case_invalid_utf8(d: Path) -> list[Path]:
    (d / "bytes.json").write_bytes(b'[{"speaker": "A", "word": "\xff\xfe", "start": 0.1, "end": 0.2}]')
    return [stereo(d / "bytes.wav"), d / "bytes.json"]


def case_wrong_shape(d: Path) -> list[Path]:
    return [stereo(d / "shape.wav"), transcript(d / "shape.json", {"words": "hello"})]


def case_transcript_without_audio(d: Path) -> list[Path]:
    return [transcript(d / "lonely.json")]


def case_same_name_twice(d: Path) -> list[Path]:
    return [stereo(d / "twin.wav"), stereo(d / "twin.flac"), transcript(d / "twin.json")]


CASES = {  # case -> (file the message must name, words the message must contain)
    case_mono: ("mono.wav", "mono"),
    case_three_channels: ("three.wav", "3 channels"),
    case_empty_audio: ("empty.wav", "empty"),
    case_truncated_header: ("trunc.wav", "not a readable audio file"),
    case_text_named_wav: ("notes.wav", "not a readable audio file"),
    case_nan_time: ("nan.json", "finite"),
    case_start_after_end: ("order.json", "start"),
    case_unknown_speaker: ("who.json", "'C'"),
    case_invalid_utf8: ("bytes.json", "UTF-8"),
    case_wrong_shape: ("shape.json", "list"),
    case_transcript_without_audio: ("lonely.json", "no audio"),
    case_same_name_twice: ("twin.wav", "several files named 'twin'"),
}


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: c.__name__[5:])
def test_refused_with_reason_and_nothing_written(case, tmp_path: Path) -> None:
    upload, dest = tmp_path / "upload", tmp_path / "workspace_raw"
    upload.mkdir()
    dest.mkdir()
    files = case(upload)
    result = import_dialogues(files, dest)
    file_name, words = CASES[case]
    assert not result.imported
    message = " | ".join(result.rejected)
    assert file_name in message, message
    assert words.lower() in message.lower(), message
    assert list(dest.iterdir()) == []


def test_a_good_pair_is_imported(tmp_path: Path) -> None:
    files = [stereo(tmp_path / "ok.wav"), transcript(tmp_path / "ok.json")]
    dest = tmp_path / "raw"
    result = import_dialogues(files, dest)
    assert [r.name for r in result.imported] == ["ok"] and not result.rejected
    assert sorted(p.name for p in dest.iterdir()) == ["ok.json", "ok.wav"]


def test_cli_validator_reports_each_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for case in (case_mono, case_nan_time, case_transcript_without_audio):
        case(tmp_path)
    stereo(tmp_path / "fine.wav")
    transcript(tmp_path / "fine.json")
    assert validate_main(["--input", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ok  fine" in out
    for name in ("mono.wav", "nan.json", "lonely.json"):
        assert name in out
