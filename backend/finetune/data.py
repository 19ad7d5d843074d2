"""Training examples from the Parquet dataset, in a seeded order with an exactly resumable position.

The rows are memory-mapped, never decoded into memory: on first use the Parquet shards are copied once,
batch by batch, into one Arrow IPC file beside them (`cache_path`), which every later process (every
rank of every run, generation, the budget) maps read-only. Ranks on a machine therefore share one copy
through the page cache, and a process touches only the pages of the frames it trains on. The copy keeps
the rows and their order; its tokens take the narrowest integer type that holds them (int16 for
Kyutai's and J-Moshi's vocabularies: a quarter of int64's disk and page cache) and come back as int64.
It is rebuilt when a shard's name, size or modification time changes; a file lock lets one process
build it while the others wait.

An example is one chunk of one dialogue with one speaker playing Moshi: the 17-row training view
`training_rows(main, other)` cut to [start, start + max_frames); chunks shorter than min_frames are
dropped. Every epoch is a permutation of all examples drawn from (seed, epoch).

Position: (epoch, index) counts examples consumed over ALL ranks. A micro-step takes the next
world x batch_size examples of the permutation and rank r gets its slice r; the position is saved
after each optimiser step, so a resume continues with exactly the next unseen examples whatever
grad_accum is (J-Moshi skipped steps x batch instead of steps x grad_accum x batch). An epoch's
incomplete last global micro-batch is skipped so every rank always does the same number of steps.
"""

import contextlib
import fcntl
import json
import mmap
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from backend.core.atomic import atomic_path
from backend.core.errors import InputError
from backend.core.spec import SPEAKERS, ZERO_TOKEN
from backend.dataset.read import REQUIRED_COLUMNS, check_schema, parquet_files
from backend.dataset.training_view import training_rows

ROWS_PER_SPEAKER = 9  # text + 8 codebooks
CACHE_FORMAT = 1  # bump when the cache layout changes: older caches are then rebuilt
CACHE_BATCH_ROWS = 64  # dialogues per Arrow record batch: bounds the memory of building the cache


def cache_path(path: str | Path) -> Path:
    """The memory-mapped copy of a dataset: a hidden file in its folder, or beside a single-file dataset."""
    path = Path(path)
    return path / ".rows.arrow" if path.is_dir() else path.with_name(f".{path.name}.rows.arrow")


def _token_type(files: list[Path]) -> pa.DataType:
    """The narrowest integer type holding every token, from the shards' column statistics (int64 when a
    shard has none). The cast that uses it is checked, so wrong statistics fail loudly, never wrap."""
    lo = hi = 0
    for f in files:
        meta = pq.read_metadata(f)
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                column = meta.row_group(g).column(c)
                if column.path_in_schema.split(".")[0] not in SPEAKERS:
                    continue
                stats = column.statistics
                if stats is None or not stats.has_min_max:
                    return pa.int64()
                lo, hi = min(lo, stats.min), max(hi, stats.max)
    for arrow_type, numpy_type in ((pa.int16(), np.int16), (pa.int32(), np.int32)):
        if np.iinfo(numpy_type).min <= lo and hi <= np.iinfo(numpy_type).max:
            return arrow_type
    return pa.int64()


def _check_shapes(f: Path, ids: list[str], column: pa.ListArray) -> np.ndarray:
    """Frames per dialogue of one speaker column; every row must be [9, T]."""
    rows = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    inner = pc.list_value_length(column.flatten()).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    out = np.zeros(len(ids), dtype=np.int64)
    for i, did in enumerate(ids):
        lens = inner[offsets[i] : offsets[i + 1]]
        if rows[i] != ROWS_PER_SPEAKER or (lens != lens[0]).any():
            raise InputError(
                f,
                f"dialogue {did}: a speaker must be [9, T] (text + 8 codebooks), "
                f"got {rows[i]} rows of lengths {sorted(set(lens.tolist()))}",
            )
        out[i] = lens[0]
    return out


def _build_cache(files: list[Path], target: Path, stamp: str) -> None:
    """Copy the shards' rows, checked, into the Arrow IPC file `target` (atomically), batch by batch."""
    token = _token_type(files)
    speaker_type = pa.list_(pa.list_(token))
    schema = pa.schema(
        [("dialogue_id", pa.string()), ("A", speaker_type), ("B", speaker_type)], metadata={"studio": stamp}
    )
    with atomic_path(target) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for f in files:
            # No pre-buffering (pyarrow's default keeps every row group read so far: memory grew with the shard,
            # +1.5 GB at 1 000 h) and a buffered stream (a single huge row group is read page by page): the
            # build holds about one batch whatever the dataset's size.
            shard = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
            for batch in shard.iter_batches(batch_size=CACHE_BATCH_ROWS, columns=list(REQUIRED_COLUMNS)):
                ids = batch.column("dialogue_id").to_pylist()
                frames = [_check_shapes(f, ids, batch.column(s)) for s in SPEAKERS]
                for did, ta, tb in zip(ids, *frames):
                    if ta != tb:
                        raise InputError(f, f"dialogue {did}: A has {ta} frames but B has {tb}")
                try:
                    columns = [batch.column(s).cast(speaker_type) for s in SPEAKERS]
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise InputError(f, f"tokens must be integers that fit {token} ({e})") from None
                ids_column = batch.column("dialogue_id").cast(pa.string())  # also from large strings
                writer.write_batch(pa.record_batch([ids_column, *columns], schema=schema))


@dataclass(frozen=True)
class MappedTable:
    table: pa.Table  # zero-copy views of `mapping`
    mapping: mmap.mmap

    def release_pages(self) -> None:
        """Unmap the pages read so far from this process (they stay in the page cache, and come back on the next
        read). Reading the table's metadata and every record batch's ids and offsets maps, through the kernel's
        fault-around, tens of kB per batch: +35 MB of RSS at 1 000 hours that training never reads again."""
        self.mapping.madvise(mmap.MADV_DONTNEED)


def _open_cache(target: Path, stamp: str) -> MappedTable | None:
    """The cache's table, memory-mapped (zero-copy), or None when it is missing or was made from other files."""
    try:
        with open(target, "rb") as f:
            mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # Python's map: it can madvise
        reader = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mapping)))
    except (OSError, ValueError, pa.ArrowException):
        return None
    if (reader.schema.metadata or {}).get(b"studio") != stamp.encode():
        return None
    mapped = MappedTable(reader.read_all(), mapping)
    mapped.release_pages()  # the record batches' metadata, read by read_all
    return mapped


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold the cache's lock file: one process builds, the others wait for its result."""
    try:
        lock = open(target.with_name(target.name + ".lock"), "a")
    except OSError as e:
        raise InputError(target.parent, f"cannot write the dataset's memory-mapped copy here ({e})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def mapped_table(path: str | Path) -> MappedTable:
    """The dataset's rows as a memory-mapped Arrow table, building its cache first when needed."""
    check_schema(path)
    files = parquet_files(path)
    stamp = json.dumps(
        {
            "format": CACHE_FORMAT,
            "files": [{"name": f.name, "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in files],
        }
    )
    target = cache_path(path)
    table = _open_cache(target, stamp)
    if table is None:
        with _exclusive(target):
            table = _open_cache(target, stamp)
            if table is None:
                _build_cache(files, target, stamp)
                table = _open_cache(target, stamp)
    assert table is not None  # just built from these files
    return table


def _view(array: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a null-free signed integer Arrow array (the offsets and tokens of the cache).
    Not `to_numpy`: in pyarrow 26 it imports pandas, a second or more at every rank's start."""
    dtype = np.dtype(f"int{array.type.bit_width}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


class DialogueIds(Sequence[str]):
    """The dialogue ids as one Arrow string array (a few bytes per id beyond its text; a list of Python strings
    took about 70)."""

    def __init__(self, ids: pa.Array):
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return str(self._ids[index].as_py())


class DatasetRows:
    """The dataset's dialogues, memory-mapped: ids and per-dialogue numpy arrays (frames, where each starts) in
    memory, tokens read on demand."""

    def __init__(self, path: str | Path):
        mapped = mapped_table(path)
        if not mapped.table.num_rows:
            raise InputError(path, "the dataset has no dialogues")
        # Per speaker and record batch: the flat tokens (a view of the mapped file) and where each row starts.
        self._tokens: dict[str, list[np.ndarray]] = {s: [] for s in SPEAKERS}
        starts: dict[str, list[np.ndarray]] = {s: [] for s in SPEAKERS}
        ids, frames, sizes = [], [], []
        for batch in mapped.table.to_batches():
            ids.append(pa.concat_arrays([batch.column("dialogue_id")]))  # a copy: the mapped pages are released
            sizes.append(batch.num_rows)
            for s in SPEAKERS:
                chunk = batch.column(s)
                first_row = _view(chunk.offsets)[:-1]  # each dialogue's text row among the chunk's rows
                row_offsets = _view(chunk.values.offsets)
                starts[s].append(row_offsets[first_row])
                if s == SPEAKERS[0]:  # B's frame counts equal A's (checked when the cache was built)
                    frames.append(row_offsets[first_row + 1] - row_offsets[first_row])
                self._tokens[s].append(_view(chunk.values.values))
            mapped.release_pages()  # after each batch: the scan's peak stays one batch's pages
        self.ids = DialogueIds(pa.concat_arrays(ids))
        self._chunk = np.repeat(np.arange(len(sizes)), sizes)  # dialogue -> its record batch
        self._starts = {s: np.concatenate(starts[s]) for s in SPEAKERS}
        self.lengths: np.ndarray = np.concatenate(frames).astype(np.int64)  # frames per dialogue
        self._mapping = mapped  # the token views point into its mapping

    def speaker(self, index: int, speaker: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int64 [9, frames] of one speaker of one dialogue, frames [start, stop): only they are read."""
        first, frames = int(self._starts[speaker][index]), int(self.lengths[index])
        rows = self._tokens[speaker][self._chunk[index]][first : first + ROWS_PER_SPEAKER * frames]
        return rows.reshape(ROWS_PER_SPEAKER, frames)[:, start:stop].astype(np.int64)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Example:
    dialogue: int  # index into DatasetRows
    main: str  # "A" or "B"
    start: int  # first frame
    frames: int


class Examples(Sequence[Example]):
    """Examples as numpy columns, 13 bytes each: an Example object per chunk took about 150 (+100 MB of RSS for
    the 240 000 chunks of 1 000 hours); an Example is made when one is picked."""

    def __init__(self, dialogue: np.ndarray, main: np.ndarray, start: np.ndarray, frames: np.ndarray):
        self.dialogue, self.main = dialogue.astype(np.int32), main.astype(np.int8)  # main: index into SPEAKERS
        self.start, self.frames = start.astype(np.int32), frames.astype(np.int32)  # an Arrow list row has < 2**31

    def __len__(self) -> int:
        return len(self.dialogue)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> "Examples": ...
    def __getitem__(self, index: int | slice) -> "Example | Examples":
        if isinstance(index, slice):
            return Examples(self.dialogue[index], self.main[index], self.start[index], self.frames[index])
        i = operator.index(index)
        return Example(int(self.dialogue[i]), SPEAKERS[self.main[i]], int(self.start[i]), int(self.frames[i]))


def make_examples(
    lengths: Sequence[int] | np.ndarray, main_speaker: Literal["A", "B", "both"], max_frames: int, min_frames: int
) -> Examples:
    """Chunks of every dialogue for every main speaker, in dataset order (dialogue, then speaker, then start)."""
    total = np.asarray(lengths, dtype=np.int64)
    chunks = -(-total // max_frames)
    dialogue = np.repeat(np.arange(len(total)), chunks)
    start = (np.arange(len(dialogue)) - np.repeat(np.cumsum(chunks) - chunks, chunks)) * max_frames
    frames = np.minimum(max_frames, total[dialogue] - start)
    keep = frames >= min_frames
    mains = range(len(SPEAKERS)) if main_speaker == "both" else (SPEAKERS.index(main_speaker),)
    main = np.repeat(np.array(mains, dtype=np.int8), keep.sum())
    dialogue, start, frames = (np.tile(column[keep], len(mains)) for column in (dialogue, start, frames))
    # Each speaker's chunks in turn, then a stable sort by dialogue: a dialogue's A chunks, then its B chunks.
    order = np.argsort(dialogue, kind="stable")
    return Examples(dialogue[order], main[order], start[order], frames[order])


def example_rows(rows: DatasetRows, ex: Example) -> np.ndarray:
    """[17, frames] training view of one example."""
    other = "B" if ex.main == "A" else "A"
    stop = ex.start + ex.frames
    return training_rows(
        rows.speaker(ex.dialogue, ex.main, ex.start, stop), rows.speaker(ex.dialogue, other, ex.start, stop)
    )


def collate(rows: list[np.ndarray]) -> torch.Tensor:
    """[B, 17, T_max] int64, padded with the zero token (zero embedding, no loss)."""
    longest = max(r.shape[1] for r in rows)
    out = np.full((len(rows), rows[0].shape[0], longest), ZERO_TOKEN, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :, : r.shape[1]] = r
    return torch.from_numpy(out)


@dataclass
class Position:
    epoch: int = 0
    index: int = 0  # examples of this epoch's permutation consumed by all ranks together

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ExampleStream:
    """This rank's micro-batches of an endless seeded shuffle, from a resumable position."""

    def __init__(
        self,
        examples: Sequence[Example],
        seed: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        position: Position | None = None,
    ):
        if len(examples) < batch_size * world:
            raise InputError(
                None,
                f"only {len(examples)} training examples, fewer than one step needs "
                f"({batch_size} per process x {world} processes): lower batch_size or "
                f"min_frames, or add data",
            )
        self.examples, self.seed, self.batch_size, self.rank, self.world = examples, seed, batch_size, rank, world
        self.position = Position(**asdict(position)) if position else Position()

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world

    def epoch_progress(self) -> float:
        return self.position.epoch + self.position.index / len(self.examples)

    def peek(self) -> list[Example]:
        """The next micro-batch without consuming it."""
        saved = self.position
        batch = self.next_batch()
        self.position = saved
        return batch

    def next_batch(self) -> list[Example]:
        """This rank's next micro-batch; advances the shared position by world x batch_size."""
        if self.position.index + self.global_batch > len(self.examples):
            self.position = Position(self.position.epoch + 1, 0)
        order = self.order(self.position.epoch)
        first = self.position.index + self.rank * self.batch_size
        picked = [self.examples[i] for i in order[first : first + self.batch_size]]
        self.position = Position(self.position.epoch, self.position.index + self.global_batch)
        return picked


def eval_share(examples: Sequence[Example], rank: int, world: int) -> list[tuple[Example, bool]]:
    """This rank's eval examples, each with whether it counts. Every rank gets the same number (ZeRO-3
    forward passes are collective), so a short share is topped up with a filler that does not count."""
    mine = examples[rank::world]
    per_rank = -(-len(examples) // world)
    return [(ex, True) for ex in mine] + [(examples[0], False)] * (per_rank - len(mine))
