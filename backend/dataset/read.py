"""Read the Parquet dataset back: list its dialogues, fetch one row as arrays."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from backend.core.errors import InputError


def shard_files(folder: str | Path) -> list[Path]:
    files = sorted(Path(folder).glob("*-of-*.parquet"))
    if not files:
        raise InputError(folder, "no Parquet shards here (build the dataset first)")
    return files


def list_dialogues(folder: str | Path) -> list[str]:
    ids: list[str] = []
    for f in shard_files(folder):
        ids.extend(pq.read_table(f, columns=["dialogue_id"]).column("dialogue_id").to_pylist())
    return ids


def load_row(folder: str | Path, dialogue_id: str) -> dict[str, np.ndarray]:
    """{"A": [9, T], "B": [9, T]} int64 for one dialogue."""
    for f in shard_files(folder):
        table = pq.read_table(f, filters=[("dialogue_id", "=", dialogue_id)])
        if table.num_rows:
            return {s: np.array(table.column(s)[0].as_py(), dtype=np.int64) for s in ("A", "B")}
    raise InputError(folder, f"no dialogue '{dialogue_id}' in the dataset")
