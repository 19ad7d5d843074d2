"""Training examples from the Parquet dataset, in a seeded order with an exactly resumable position.

An example is one chunk of one dialogue with one speaker playing Moshi: the 17-row training view
`training_rows(main, other)` cut to [start, start + max_frames); chunks shorter than min_frames are
dropped. Every epoch is a permutation of all examples drawn from (seed, epoch).

Position: (epoch, index) counts examples consumed over ALL ranks. A micro-step takes the next
world x batch_size examples of the permutation and rank r gets its slice r; the position is saved
after each optimiser step, so a resume continues with exactly the next unseen examples whatever
grad_accum is (J-Moshi skipped steps x batch instead of steps x grad_accum x batch). An epoch's
incomplete last global micro-batch is skipped so every rank always does the same number of steps.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from backend.dataset.read import REQUIRED_COLUMNS, check_schema, parquet_files
from backend.core.errors import InputError
from backend.core.spec import SPEAKERS, ZERO_TOKEN
from backend.dataset.training_view import training_rows

ROWS_PER_SPEAKER = 9  # text + 8 codebooks


class Dialogues:
    """The dataset's rows held as Arrow arrays; one [9, T] array per speaker is built on demand."""

    def __init__(self, path: str | Path):
        check_schema(path)
        self.ids: list[str] = []
        self._columns: dict[str, list[pa.ListArray]] = {s: [] for s in SPEAKERS}
        self._where: list[tuple[int, int]] = []  # dialogue -> (file, row)
        self.lengths: list[int] = []
        for fi, f in enumerate(parquet_files(path)):
            table = pq.read_table(f, columns=list(REQUIRED_COLUMNS))
            ids = table.column("dialogue_id").to_pylist()
            lengths = {}
            for s in SPEAKERS:
                col = table.column(s).combine_chunks()
                self._columns[s].append(col)
                rows = pc.list_value_length(col).to_numpy(zero_copy_only=False)
                inner = pc.list_value_length(col.flatten()).to_numpy(zero_copy_only=False)
                lengths[s] = self._check_shapes(f, ids, rows, inner)
            for ri, (did, ta, tb) in enumerate(zip(ids, lengths["A"], lengths["B"])):
                if ta != tb:
                    raise InputError(f, f"dialogue {did}: A has {ta} frames but B has {tb}")
                self.ids.append(did)
                self._where.append((fi, ri))
                self.lengths.append(int(ta))
        if not self.ids:
            raise InputError(path, "the dataset has no dialogues")

    @staticmethod
    def _check_shapes(f: Path, ids: list[str], rows: np.ndarray, inner: np.ndarray) -> list[int]:
        offsets = np.concatenate([[0], np.cumsum(rows)])
        out = []
        for i, did in enumerate(ids):
            lens = inner[offsets[i]:offsets[i + 1]]
            if rows[i] != ROWS_PER_SPEAKER or (lens != lens[0]).any():
                raise InputError(f, f"dialogue {did}: a speaker must be [9, T] (text + 8 codebooks), "
                                    f"got {rows[i]} rows of lengths {sorted(set(lens.tolist()))}")
            out.append(int(lens[0]))
        return out

    def speaker(self, index: int, speaker: str) -> np.ndarray:
        fi, ri = self._where[index]
        flat = self._columns[speaker][fi][ri].values.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(ROWS_PER_SPEAKER, -1)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Example:
    dialogue: int  # index into Dialogues
    main: str  # "A" or "B"
    start: int  # first frame
    frames: int


def make_examples(lengths: list[int], main_speaker: Literal["A", "B", "both"], max_frames: int,
                  min_frames: int) -> list[Example]:
    """Chunks of every dialogue for every main speaker, in dataset order."""
    mains = SPEAKERS if main_speaker == "both" else (main_speaker,)
    out = []
    for d, total in enumerate(lengths):
        for main in mains:
            for start in range(0, total, max_frames):
                frames = min(max_frames, total - start)
                if frames >= min_frames:
                    out.append(Example(d, main, start, frames))
    return out


def example_rows(dialogues: Dialogues, ex: Example) -> np.ndarray:
    """[17, frames] training view of one example."""
    other = "B" if ex.main == "A" else "A"
    stop = ex.start + ex.frames
    return training_rows(dialogues.speaker(ex.dialogue, ex.main)[:, ex.start:stop],
                         dialogues.speaker(ex.dialogue, other)[:, ex.start:stop])


def collate(rows: list[np.ndarray]) -> torch.Tensor:
    """[B, 17, T_max] int64, padded with the zero token (zero embedding, no loss)."""
    longest = max(r.shape[1] for r in rows)
    out = np.full((len(rows), rows[0].shape[0], longest), ZERO_TOKEN, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :, :r.shape[1]] = r
    return torch.from_numpy(out)


@dataclass
class Position:
    epoch: int = 0
    index: int = 0  # examples of this epoch's permutation consumed by all ranks together

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ExampleStream:
    """This rank's micro-batches of an endless seeded shuffle, from a resumable position."""

    def __init__(self, examples: list[Example], seed: int, batch_size: int, rank: int = 0, world: int = 1,
                 position: Position | None = None):
        if len(examples) < batch_size * world:
            raise InputError(None, f"only {len(examples)} training examples, fewer than one step needs "
                                   f"({batch_size} per process x {world} processes): lower batch_size or "
                                   f"min_frames, or add data")
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
        picked = [self.examples[i] for i in order[first:first + self.batch_size]]
        self.position = Position(self.position.epoch, self.position.index + self.global_batch)
        return picked


def eval_share(examples: list[Example], rank: int, world: int) -> list[tuple[Example, bool]]:
    """This rank's eval examples, each with whether it counts. Every rank gets the same number (ZeRO-3
    forward passes are collective), so a short share is topped up with a filler that does not count."""
    mine = examples[rank::world]
    per_rank = -(-len(examples) // world)
    return [(ex, True) for ex in mine] + [(examples[0], False)] * (per_rank - len(mine))
