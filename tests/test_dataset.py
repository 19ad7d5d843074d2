"""Parquet dataset: schema, cut/pad rule, sharding, order, what is left out, round trip to `datasets`."""

from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from backend.core.errors import ConfigError, InputError
from backend.core.spec import PAD_ID
from backend.dataset.build import SCHEMA, DatasetConfig, build_dataset, main
from backend.dataset.read import list_dialogues, load_row


def write_pair(root: Path, name: str, frames: int, text_frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(exist_ok=True)
    (root / "text").mkdir(exist_ok=True)
    np.savez(root / "audio" / f"{name}.npz", A=rng.integers(0, 2048, (8, frames)), B=rng.integers(0, 2048, (8, frames)))
    np.savez(root / "text" / f"{name}.npz", A=rng.integers(4, 400, text_frames), B=rng.integers(4, 400, text_frames))


def cfg(root: Path, **kw) -> DatasetConfig:
    return DatasetConfig(audio_tokens=root / "audio", text_tokens=root / "text", output=root / "ds", **kw)


def test_text_is_cut_or_padded_to_the_audio(tmp_path: Path) -> None:
    write_pair(tmp_path, "long_text", frames=10, text_frames=14, seed=0)
    write_pair(tmp_path, "short_text", frames=10, text_frames=6, seed=1)
    report = build_dataset(cfg(tmp_path))
    assert report.text_cut == {"long_text": 4} and report.text_padded == {"short_text": 4}
    with np.load(tmp_path / "text" / "short_text.npz") as t, np.load(tmp_path / "audio" / "short_text.npz") as a:
        row = load_row(tmp_path / "ds", "train/short_text")
        assert row["A"].shape == (9, 10)
        np.testing.assert_array_equal(row["A"][0, :6], t["A"])
        assert (row["A"][0, 6:] == PAD_ID).all()
        np.testing.assert_array_equal(row["B"][1:], a["B"])
    with np.load(tmp_path / "text" / "long_text.npz") as t:
        np.testing.assert_array_equal(load_row(tmp_path / "ds", "train/long_text")["B"][0], t["B"][:10])


def test_shards_names_order_and_schema(tmp_path: Path) -> None:
    for i, name in enumerate(["c", "a", "b"]):
        write_pair(tmp_path, name, frames=5 + i, text_frames=5, seed=i)
    report = build_dataset(cfg(tmp_path, shard_rows=2, output_prefix="demo"))
    names = [Path(f).name for f in report.files]
    assert names == ["demo-001-of-002.parquet", "demo-002-of-002.parquet"]
    assert pq.read_schema(report.files[0]).equals(SCHEMA)
    assert list_dialogues(tmp_path / "ds") == ["demo/a", "demo/b", "demo/c"]
    # A rebuild with one shard leaves no stale shard of the old count behind.
    build_dataset(cfg(tmp_path, output_prefix="demo"))
    assert sorted(p.name for p in (tmp_path / "ds").glob("*.parquet")) == ["demo-001-of-001.parquet"]


def test_missing_halves_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_pair(tmp_path, "both", 5, 5, 0)
    write_pair(tmp_path, "audio_only", 5, 5, 1)
    (tmp_path / "text" / "audio_only.npz").unlink()
    write_pair(tmp_path, "text_only", 5, 5, 2)
    (tmp_path / "audio" / "text_only.npz").unlink()
    report = build_dataset(cfg(tmp_path))
    assert report.rows == 1 and report.missing_text == ["audio_only"] and report.missing_audio == ["text_only"]
    code = main(
        [
            "--audio-tokens",
            str(tmp_path / "audio"),
            "--text-tokens",
            str(tmp_path / "text"),
            "--output",
            str(tmp_path / "ds2"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "audio_only" in out and "text_only" in out


def test_bad_token_file_and_settings_are_refused(tmp_path: Path) -> None:
    write_pair(tmp_path, "d", 5, 5, 0)
    np.savez(tmp_path / "audio" / "d.npz", A=np.zeros((7, 5), int), B=np.zeros((7, 5), int))
    with pytest.raises(InputError, match=r"d\.npz: array A has shape \[7, 5\]"):
        build_dataset(cfg(tmp_path))
    assert not list((tmp_path / "ds").glob("*.parquet"))
    with pytest.raises(ConfigError, match="shard_rows"):
        build_dataset(cfg(tmp_path, shard_rows=100_001))


def test_demo_round_trip_to_datasets(demo_workspace) -> None:
    """Demo dialogues -> Mimi + SentencePiece tokens -> Parquet -> datasets.load_dataset, rows [9, T]."""
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig

    ws = demo_workspace
    result = prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    assert result.dataset.rows == 3 and not result.dataset.missing_audio and not result.dataset.missing_text
    ds = datasets.load_dataset("parquet", data_files=result.dataset.files, split="train")
    assert ds.column_names == ["dialogue_id", "A", "B"]
    for row in ds:
        name = row["dialogue_id"].split("/")[1]
        with np.load(ws.tokens_audio / f"{name}.npz") as audio:
            frames = audio["A"].shape[1]
            a = np.array(row["A"])
            assert a.shape == (9, frames) and np.array(row["B"]).shape == (9, frames)
            np.testing.assert_array_equal(a[1:], audio["A"])
        assert (a[0] != PAD_ID).sum() > 10  # the text row carries words


def test_chat_recordings_are_left_out_unless_chosen(tmp_path: Path) -> None:
    from backend.data.files import RECORDING_PREFIX

    recording = f"{RECORDING_PREFIX}20260101-120000"
    write_pair(tmp_path, "talk", frames=5, text_frames=5, seed=0)
    write_pair(tmp_path, recording, frames=5, text_frames=5, seed=1)
    report = build_dataset(cfg(tmp_path))
    assert list_dialogues(tmp_path / "ds") == ["train/talk"] and report.recordings_left_out == [recording]
    assert f"chat recordings left out: {recording}" in report.summary()
    build_dataset(cfg(tmp_path, recordings=True))
    assert list_dialogues(tmp_path / "ds") == [f"train/{recording}", "train/talk"]


# J-Moshi's own merge step (nu-dialogue/moshi-finetune tools/prepare_dataset.py), run from its code on the studio's
# token folders: it stops unless every entry of both folders is a dialogue's .npz.
def test_jmoshi_prepare_dataset_runs_on_the_token_folders(demo_workspace, tmp_path: Path) -> None:
    from upstream_helpers import run_upstream, upstream_tree

    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig

    ws = demo_workspace
    result = prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    tools = upstream_tree("nu-dialogue/moshi-finetune", "tools", tmp_path / "jmoshi")
    script = (tools / "prepare_dataset.py").read_text(encoding="utf-8")
    done = run_upstream(
        f"import sys; sys.argv[0] = 'prepare_dataset.py'\n{script}",
        tools,
        "--tokenized_text_dir",
        str(ws.tokens_text),
        "--tokenized_audio_dir",
        str(ws.tokens_audio),
        "--output_prefix",
        str(tmp_path / "out" / "train"),
        cwd=tmp_path,
    )
    assert "Missing" not in done.stdout, done.stdout
    theirs = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "out" / "train-001-of-001.parquet"), split="train"
    )
    ours = datasets.load_dataset("parquet", data_files=result.dataset.files, split="train")
    name = lambda dialogue_id: dialogue_id.rsplit("/", 1)[1]  # noqa: E731  (ids are <prefix>/<name> in both)
    rows = {name(r["dialogue_id"]): r for r in ours}
    assert sorted(name(i) for i in theirs["dialogue_id"]) == sorted(rows)
    for row in theirs:
        for speaker in ("A", "B"):
            np.testing.assert_array_equal(row[speaker], rows[name(row["dialogue_id"])][speaker])
