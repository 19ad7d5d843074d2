"""Training examples: chunking, speakers, seeded order, exact resume positions, per-rank shards."""

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from train_helpers import write_dataset

from backend.core.errors import InputError
from backend.dataset.build import SCHEMA
from backend.finetune.data import (
    DatasetRows,
    Example,
    ExampleStream,
    Position,
    cache_path,
    collate,
    eval_share,
    example_rows,
    make_examples,
    mapped_table,
)


def test_chunks_cover_each_dialogue_and_drop_short_tails() -> None:
    ex = make_examples([25, 7], "A", max_frames=10, min_frames=5)
    assert [(e.dialogue, e.start, e.frames) for e in ex] == [(0, 0, 10), (0, 10, 10), (0, 20, 5), (1, 0, 7)]
    ex = make_examples([24], "A", max_frames=10, min_frames=5)
    assert [(e.start, e.frames) for e in ex] == [(0, 10), (10, 10)]  # the 4-frame tail is dropped
    ex = make_examples([12, 3, 7], "both", max_frames=5, min_frames=2)  # dialogue, then speaker, then start
    assert [(e.dialogue, e.main, e.start) for e in ex] == [
        (0, "A", 0),
        (0, "A", 5),
        (0, "A", 10),
        (0, "B", 0),
        (0, "B", 5),
        (0, "B", 10),
        (1, "A", 0),
        (1, "B", 0),
        (2, "A", 0),
        (2, "A", 5),
        (2, "B", 0),
        (2, "B", 5),
    ]


def test_both_speakers_play_moshi(tmp_path: Path) -> None:
    data = DatasetRows(write_dataset(tmp_path / "data", [12], seed=3))
    both = make_examples(data.lengths, "both", max_frames=12, min_frames=2)
    assert [e.main for e in both] == ["A", "B"]
    a, b = data.speaker(0, "A"), data.speaker(0, "B")
    rows_a, rows_b = example_rows(data, both[0]), example_rows(data, both[1])
    assert rows_a.shape == (17, 12)
    np.testing.assert_array_equal(rows_a, np.concatenate([a, b[1:]]))  # A's text + A's audio + B's audio
    np.testing.assert_array_equal(rows_b, np.concatenate([b, a[1:]]))
    chunk = example_rows(data, Example(0, "B", 4, 5))
    np.testing.assert_array_equal(chunk, rows_b[:, 4:9])


def test_order_is_deterministic_from_the_seed() -> None:
    ex = make_examples([40] * 6, "both", max_frames=10, min_frames=2)

    def draw(seed: int) -> list[Example]:
        s = ExampleStream(ex, seed, batch_size=3)
        return [e for _ in range(20) for e in s.next_batch()]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    first_epoch = draw(1)[: len(ex)]
    assert sorted(first_epoch, key=lambda e: (e.dialogue, e.main, e.start)) == list(ex)  # a permutation: each once


def test_resume_position_skips_exactly_the_consumed_examples() -> None:
    """Positions saved after each optimiser step of grad_accum 3 resume where the straight run continues."""
    ex = make_examples([30] * 5, "both", max_frames=10, min_frames=2)  # 30 examples
    grad_accum, batch = 3, 2
    straight = ExampleStream(ex, seed=7, batch_size=batch)
    saved = None
    seen_straight = []
    for step in range(8):  # 8 steps x 6 examples: crosses an epoch boundary (30 examples)
        seen_straight.append([straight.next_batch() for _ in range(grad_accum)])
        if step == 3:
            saved = Position(**straight.position.to_dict())
    assert saved == Position(0, 4 * grad_accum * batch)
    resumed = ExampleStream(ex, seed=7, batch_size=batch, position=saved)
    seen_resumed = [[resumed.next_batch() for _ in range(grad_accum)] for _ in range(4)]
    assert seen_resumed == seen_straight[4:]
    assert resumed.position == straight.position and straight.position.epoch == 1


def test_ranks_get_disjoint_shards_of_each_global_batch() -> None:
    ex = make_examples([20] * 8, "both", max_frames=10, min_frames=2)  # 32 examples
    single = ExampleStream(ex, seed=0, batch_size=4)
    ranks = [ExampleStream(ex, seed=0, batch_size=2, rank=r, world=2) for r in range(2)]
    for _ in range(6):
        together = single.next_batch()
        parts = [s.next_batch() for s in ranks]
        assert parts[0] + parts[1] == together  # the two ranks split exactly what one process of batch 4 sees
        assert not set(parts[0]) & set(parts[1])
    assert ranks[0].position == ranks[1].position == single.position


def test_epoch_skips_an_incomplete_global_batch() -> None:
    ex = make_examples([10] * 5, "A", max_frames=10, min_frames=2)  # 5 examples, global batch 2
    s = ExampleStream(ex, seed=0, batch_size=1, rank=0, world=2)
    for _ in range(2):
        s.next_batch()
    assert s.position == Position(0, 4)
    s.next_batch()
    assert s.position == Position(1, 2)  # the 5th example of epoch 0 is skipped by every rank alike


def test_too_few_examples_is_a_clear_error() -> None:
    ex = make_examples([10], "A", max_frames=10, min_frames=2)
    with pytest.raises(InputError, match="fewer than one step"):
        ExampleStream(ex, seed=0, batch_size=2)


def test_eval_share_gives_every_rank_the_same_count() -> None:
    ex = make_examples([10] * 5, "A", max_frames=10, min_frames=2)
    shares = [eval_share(ex, r, 2) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 3
    counted = [e for share in shares for e, counts in share if counts]
    assert sorted(counted, key=lambda e: e.dialogue) == list(ex)


def test_collate_pads_with_the_zero_token() -> None:
    batch = collate([np.ones((17, 3), dtype=np.int64), np.full((17, 5), 2, dtype=np.int64)])
    assert batch.shape == (2, 17, 5)
    assert (batch[0, :, 3:] == -1).all() and (batch[0, :, :3] == 1).all() and (batch[1] == 2).all()


def test_missing_or_malformed_data_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=str(tmp_path / "nowhere")):
        DatasetRows(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        DatasetRows(tmp_path / "empty")
    bad = tmp_path / "bad" / "train-001-of-001.parquet"
    bad.parent.mkdir()
    rows = {"dialogue_id": ["x/short"], "A": [[[0] * 4] * 8], "B": [[[0] * 4] * 8]}
    pq.write_table(pa.table(rows, schema=SCHEMA), bad)
    with pytest.raises(InputError, match=r"bad.*x/short.*\[9, T\]"):
        DatasetRows(bad.parent)


def test_a_single_parquet_file_is_a_dataset(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "data", [8, 9])
    (file,) = folder.glob("*.parquet")
    assert DatasetRows(file).lengths.tolist() == [8, 9] and list(DatasetRows(file).ids) == ["train/d000", "train/d001"]


def _parquet_rows(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    table = pa.concat_tables(pq.read_table(f) for f in sorted(folder.glob("*.parquet")))
    return [(r["dialogue_id"], np.array(r["A"]), np.array(r["B"])) for r in table.to_pylist()]


def test_mapped_rows_equal_the_parquet_rows_across_shards_and_batches(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "data", [5 + i % 7 for i in range(70)], seed=1)  # > 1 record batch
    write_dataset(tmp_path / "more", [9, 4], seed=2, prefix="zz")
    (tmp_path / "more" / "zz-001-of-001.parquet").rename(folder / "zz-001-of-001.parquet")  # a second shard
    rows = DatasetRows(folder)
    assert cache_path(folder).is_file()
    expected = _parquet_rows(folder)
    assert list(rows.ids) == [d for d, _, _ in expected]
    assert rows.lengths.tolist() == [a.shape[1] for _, a, _ in expected]
    for i, (_, a, b) in enumerate(expected):
        got = rows.speaker(i, "A"), rows.speaker(i, "B")
        assert got[0].dtype == np.int64
        np.testing.assert_array_equal(got[0], a)
        np.testing.assert_array_equal(got[1], b)
    np.testing.assert_array_equal(rows.speaker(3, "B", 1, 4), expected[3][2][:, 1:4])
    again = DatasetRows(folder)  # maps the existing cache
    np.testing.assert_array_equal(again.speaker(69, "A"), expected[69][1])


def test_cache_follows_a_rebuilt_dataset_and_keeps_large_ids(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "data", [6, 7], seed=1)
    first = DatasetRows(folder).speaker(0, "A")
    shard = folder / "train-001-of-001.parquet"
    table = pq.read_table(shard)
    big = np.array(table.column("A")[0].as_py())
    big[0, 0] = 40_000  # above int16: the cache must widen, not wrap
    rows = {"dialogue_id": ["train/x", "train/y"], "A": [big.tolist(), big.tolist()], "B": [big.tolist(), big.tolist()]}
    pq.write_table(pa.table(rows, schema=SCHEMA), shard)
    rebuilt = DatasetRows(folder)
    assert list(rebuilt.ids) == ["train/x", "train/y"]
    np.testing.assert_array_equal(rebuilt.speaker(1, "B"), big)
    assert not np.array_equal(first, big)


def test_other_writers_list_and_integer_kinds_map_alike(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "data", [6, 7], seed=4)
    shard = folder / "train-001-of-001.parquet"
    expected = DatasetRows(folder)
    tokens = pa.large_list(pa.large_list(pa.int32()))
    other = pa.schema([("dialogue_id", pa.large_string()), ("A", tokens), ("B", tokens)])
    pq.write_table(pq.read_table(shard).cast(other), shard)
    rows = DatasetRows(folder)
    assert list(rows.ids) == list(expected.ids) and rows.lengths.tolist() == expected.lengths.tolist()
    np.testing.assert_array_equal(rows.speaker(1, "B"), expected.speaker(1, "B"))


# ---------------------------------------------------------------- memory that must not grow with the data (issue 22)

MANY = 20_000  # dialogues of 8 frames: 313 record batches of the cache, 160 000 examples of 2 frames


def _many_dialogues(tmp_path: Path) -> Path:
    folder = write_dataset(tmp_path / "many", [8] * MANY)
    mapped_table(folder)  # the cache is built before anything is measured
    return folder


def test_the_row_index_and_examples_take_a_few_bytes_each(tmp_path: Path) -> None:
    """What a rank keeps per dialogue (id, frames, where it starts) and per example is numpy/Arrow columns: an
    Example object per chunk and Python lists of ids and lengths took ~150 and ~100 bytes (+100 MB at 1 000 h)."""
    folder = _many_dialogues(tmp_path)
    tracemalloc.start()
    arrow_before = pa.total_allocated_bytes()  # the ids are Arrow memory, which tracemalloc does not see
    rows = DatasetRows(folder)
    examples = make_examples(rows.lengths, "both", max_frames=2, min_frames=2)
    kept = tracemalloc.get_traced_memory()[0] + pa.total_allocated_bytes() - arrow_before
    tracemalloc.stop()
    assert len(rows) == MANY and len(examples) == 8 * MANY
    assert kept < 64 * len(rows) + 16 * len(examples), f"{kept / len(examples):.0f} bytes per example"
    assert examples[-1] == Example(MANY - 1, "B", 6, 2) and list(examples[:2]) == [
        Example(0, "A", 0, 2),
        Example(0, "A", 2, 2),
    ]


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's header: address range ... path
            inside = line.split()[-1] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_reading_the_index_leaves_no_cache_pages_mapped(tmp_path: Path) -> None:
    """Reading every record batch's ids and offsets maps pages all over the cache (the kernel's fault-around:
    +35 MB at 1 000 h); they are released, and a training read maps only what it reads."""
    folder = _many_dialogues(tmp_path)
    rows = DatasetRows(folder)
    assert _mapped_kb(cache_path(folder)) <= 64
    rows.speaker(MANY - 1, "A")
    assert _mapped_kb(cache_path(folder)) > 0  # the measure sees the mapping
