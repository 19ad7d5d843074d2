"""Hostile data at the data stages (issue 11, items 8-16), through the surfaces a user reaches: the studio's
upload import, the stage CLIs' main(argv), the alignment preview, and `runs start`. Each bad input is refused
with a message naming its file and the problem, the good inputs beside it still go through, and nothing is
written for the bad one. Malformed upload pairs themselves are in test_bad_inputs.py."""

import contextlib
import json
import re
import signal
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_bad_inputs import (
    GOOD_WORDS,
    case_401_digit_time,
    case_lone_surrogate,
    case_nan_samples,
    case_nested_deep,
    case_one_sample,
    stereo,
    transcript,
)
from train_helpers import write_dataset, write_model

from backend.core.errors import InputError
from backend.core.workspace import RUNS_DIR
from backend.data.ingest import import_dialogues
from backend.data.preview import alignment_data
from backend.dataset import build, tokenize_audio, tokenize_text
from backend.dataset.spm import train_spm
from backend.finetune import runs
from backend.models.source import random_mimi, save_mimi, tiny_mimi_config


@contextlib.contextmanager
def no_hang(seconds: int) -> Iterator[None]:
    """Turn a hang (the defect: a loop over 1.25e13 frames) into a failure instead of a stuck suite."""

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def late_word(d: Path, name: str, at: float) -> list[Path]:
    """A 1 s dialogue with one more word at `at` seconds."""
    words = GOOD_WORDS + [{"speaker": "A", "word": "later", "start": at, "end": at + 0.5}]
    return [stereo(d / f"{name}.wav"), transcript(d / f"{name}.json", words)]


# ---------------------------------------------------------------- 11: the upload reports every file


def test_an_upload_with_good_and_bad_files_reports_each_file(tmp_path: Path) -> None:
    up, raw = tmp_path / "upload", tmp_path / "raw"
    up.mkdir()
    good = [stereo(up / "aaa.wav"), transcript(up / "aaa.json")]  # sorted first: once written before the error
    bad = case_401_digit_time(up) + case_nested_deep(up) + case_nan_samples(up) + [up / "notes.md"]
    (up / "notes.md").write_text("hello")
    result = import_dialogues(good + bad, raw)
    assert [r.name for r in result.imported] == ["aaa"]
    assert sorted(p.name for p in raw.iterdir()) == ["aaa.json", "aaa.wav"]
    md = result.markdown()
    lines = [line for line in md.splitlines() if line]
    assert all(line.startswith(("✔", "✘")) for line in lines), md  # one paragraph per dialogue or stray file
    imported = [line for line in lines if line.startswith("✔")]
    assert len(imported) == 1 and "aaa.wav + aaa.json (2 words)" in imported[0], md
    refused = "\n".join(line for line in lines if line.startswith("✘"))
    for f in bad:  # every file of a refused dialogue is named, each problem given
        assert f.name in refused, md
    for reason in ("401-digit", "nested too deeply", "channel B has 1 non-finite", "not a dialogue file"):
        assert reason in refused, md


# ---------------------------------------------------------------- 9, 10, 12: tokenize_text goes on past bad files


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = ["hello hi there how are you", "fine thank you and you", "good morning to you all"] * 5
    return train_spm(corpus, tmp_path_factory.mktemp("spm") / "small.model", vocab_size=300)


def test_tokenize_text_refuses_bad_transcripts_by_name_and_does_the_rest(
    tmp_path: Path, spm_model: Path, capsys: pytest.CaptureFixture
) -> None:
    src, out = tmp_path / "raw", tmp_path / "out"
    src.mkdir()
    for i in range(9):
        transcript(src / f"good{i}.json")
    for case in (case_lone_surrogate, case_401_digit_time, case_nested_deep):
        case(src)
    late_word(src, "late", 600.0)  # the audio says 1 s: this word is 10 minutes past it
    (src / "eon.json").write_text(
        json.dumps(GOOD_WORDS + [{"speaker": "B", "word": "x", "start": 1e12, "end": 1e12}])
    )  # no audio: the time alone is absurd
    for f in src.glob("*.wav"):
        if f.stem != "late":
            f.unlink()
    args = ["--transcripts", str(src), "--tokenizer", str(spm_model), "--output", str(out), "--audio", str(src)]
    with no_hang(60):
        assert tokenize_text.main(args) == 1
    captured = capsys.readouterr()
    written = sorted(p.name for p in out.glob("*.npz"))
    assert written == [f"good{i}.npz" for i in range(9)]
    assert "5 of 14 transcript(s) not tokenized" in captured.err
    for name, reason in (
        ("surrogate.json", "surrogate"),
        ("digits.json", "401-digit"),
        ("deep.json", "nested too deeply"),
        ("late.json", "after the audio"),
        ("eon.json", "1e+12 s"),
    ):
        assert any(name in line and reason in line for line in captured.err.splitlines()), (name, captured.err)
    assert "Traceback" not in captured.err


def test_tokenize_text_refuses_an_output_that_is_a_file(
    tmp_path: Path, spm_model: Path, capsys: pytest.CaptureFixture
) -> None:
    transcript(tmp_path / "d.json")
    (tmp_path / "taken").write_text("x")
    for output in (tmp_path / "taken", tmp_path / "taken" / "out"):
        args = ["--transcripts", str(tmp_path), "--tokenizer", str(spm_model), "--output", str(output)]
        assert tokenize_text.main(args) == 2
        assert f"error: {output}: cannot be the output" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "x"


def test_the_preview_refuses_words_far_past_the_audio(tmp_path: Path) -> None:
    audio, text = late_word(tmp_path, "late", 3600.0)
    with no_hang(60), pytest.raises(InputError, match=r"late\.json: .*after the audio.*'later'"):
        alignment_data(audio, text)


# ---------------------------------------------------------------- 8, 13, 14: tokenize_audio


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from 2 intra-op threads on a busy 2-core machine (see test_tokenize_audio)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mimi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_mimi(random_mimi(tiny_mimi_config()).eval(), tiny_mimi_config(), tmp_path_factory.mktemp("mimi"))


def test_tokenize_audio_refuses_nan_and_too_short_audio(
    tmp_path: Path, mimi_dir: Path, one_thread: None, capsys: pytest.CaptureFixture
) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    stereo(src / "good.wav", seconds=0.5)
    for case in (case_nan_samples, case_one_sample):
        case(src)
    assert (
        tokenize_audio.main(
            ["--input-dir", str(src), "--output-dir", str(out), "--mimi", str(mimi_dir), "--device", "cpu"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"failed: {src / 'nans.wav'}: channel A has 3 non-finite" in err and "channel B has 1 non-finite" in err
    assert f"failed: {src / 'click.wav'}: shorter than one frame" in err
    assert sorted(p.name for p in out.glob("*.npz")) == ["good.npz"]


def test_tokenize_audio_output_that_is_a_file_or_a_missing_mimi(
    tmp_path: Path, mimi_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    stereo(src / "good.wav", seconds=0.5)
    (tmp_path / "taken").write_text("a file, not a folder")
    for output in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        assert (
            tokenize_audio.main(
                ["--input-dir", str(src), "--output-dir", str(output), "--mimi", str(mimi_dir), "--device", "cpu"]
            )
            == 2
        )
        assert f"{output}: " in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "a file, not a folder"
    out = tmp_path / "out"
    assert (
        tokenize_audio.main(
            ["--input-dir", str(src), "--output-dir", str(out), "--mimi", "/nonexistent", "--device", "cpu"]
        )
        == 2
    )
    assert "/nonexistent: no such Mimi" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- 14, 15: build_dataset


def token_folders(root: Path) -> list[str]:
    (root / "audio").mkdir()
    (root / "text").mkdir()
    np.savez(root / "audio" / "d.npz", A=np.ones((8, 5), np.int64), B=np.ones((8, 5), np.int64))
    np.savez(root / "text" / "d.npz", A=np.full(5, 7), B=np.full(5, 7))
    return ["--audio-tokens", str(root / "audio"), "--text-tokens", str(root / "text")]


@pytest.mark.parametrize("pad_id", ["99999999999", "2147483648", "-1"])
def test_build_refuses_a_pad_id_that_does_not_fit(tmp_path: Path, pad_id: str, capsys: pytest.CaptureFixture) -> None:
    args = token_folders(tmp_path) + ["--output", str(tmp_path / "ds"), "--pad-id", pad_id]
    assert build.main(args) == 2
    assert f"pad_id {pad_id}" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_build_refuses_an_output_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = token_folders(tmp_path)
    (tmp_path / "taken").write_text("x")
    for output in (tmp_path / "taken", tmp_path / "taken" / "ds"):
        assert build.main(args + ["--output", str(output)]) == 2
        assert f"{output}: " in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.parametrize(
    "tokens,where",
    [
        ({"text": np.array([5, 2**40, 5])}, "text.*d.npz"),
        ({"text": np.array([5, -4, 5])}, "text.*d.npz"),
        ({"audio": np.full((8, 3), 2048)}, "audio.*d.npz"),
    ],
)
def test_build_refuses_token_ids_out_of_range(
    tmp_path: Path, tokens: dict, where: str, capsys: pytest.CaptureFixture
) -> None:
    args = token_folders(tmp_path) + ["--output", str(tmp_path / "ds")]
    for kind, ids in tokens.items():
        np.savez(tmp_path / kind / "d.npz", A=ids, B=ids)
    assert build.main(args) == 2
    err = capsys.readouterr().err
    assert re.search(where + ".*outside", err), err
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------- 16: runs start checks the dataset's schema


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny", dep_q=16)


def bad_table(kind: str) -> tuple[pa.Table, str]:
    """A table one step off the dataset's schema, and the column the message must name."""
    ids = pa.array(["train/d0"])
    rows = [[[1, 2], [3, 4]]]
    nested = pa.array(rows, pa.list_(pa.list_(pa.int64())))
    if kind == "flat_lists":
        flat = pa.array([[1, 2, 3]], pa.list_(pa.int64()))
        return pa.table({"dialogue_id": ids, "A": flat, "B": nested}), "A"
    if kind == "string_tokens":
        return pa.table({"dialogue_id": ids, "A": nested, "B": pa.array([[["1"]]])}), "B"
    if kind == "integer_ids":
        return pa.table({"dialogue_id": pa.array([0]), "A": nested, "B": nested}), "dialogue_id"
    if kind == "float_tokens":
        return pa.table({"dialogue_id": ids, "A": pa.array([[[1.0]]]), "B": nested}), "A"
    return pa.table({"dialogue_id": ids, "A": nested}), "B"  # missing


@pytest.mark.parametrize("kind", ["flat_lists", "string_tokens", "integer_ids", "float_tokens", "missing"])
def test_runs_start_names_the_file_and_column_of_a_wrong_schema(
    tmp_path: Path, model_dir: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(runs, "start", lambda run: pytest.fail("a run with a broken dataset was launched"))
    write_dataset(tmp_path / "good", [8])
    table, column = bad_table(kind)
    (tmp_path / "bad").mkdir()
    pq.write_table(table, tmp_path / "bad" / "train-001-of-001.parquet")
    for option in ("--train-data", "--eval-data"):
        data = ["--train-data", str(tmp_path / "good"), option, str(tmp_path / "bad")]
        assert (
            runs.main(["start", "--workspace", str(tmp_path), "--base-model", str(model_dir), "--device", "cpu", *data])
            == 2
        )
        err = capsys.readouterr().err
        assert "train-001-of-001.parquet" in err and f"column {column}" in err, err
    assert not (tmp_path / RUNS_DIR).exists()
