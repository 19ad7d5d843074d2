"""Read the Parquet dataset back: find its files, check their schema, list its dialogues, fetch one row."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from backend.core.errors import InputError
from backend.dataset.build import SCHEMA

REQUIRED_COLUMNS = tuple(SCHEMA.names)

REQUIRED_COLUMNS = ("dialogue_id", "A", "B")


SHARD_PATTERN = "*-of-*.parquet"


def shard_files(folder: str | Path) -> list[Path]:
    files = sorted(Path(folder).glob(SHARD_PATTERN))
    if not files:
        raise InputError(folder, "no Parquet shards here (build the dataset first)")
    return files


def parquet_files(path: str | Path) -> list[Path]:
    """A dataset is a folder of `*-of-*.parquet` shards or one .parquet file."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise InputError(path, "no such dataset (a folder of Parquet shards or a .parquet file)")
    return shard_files(path)


def _fits(column: str, actual: pa.DataType) -> bool:
    """The column's type can be read as SCHEMA's: strings for ids, lists of lists of integers for tokens
    (any integer width and list kind: other tools write int32 or large lists, and those read the same)."""
    if column == "dialogue_id":
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    for _ in range(2):
        if not (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
            return False
        actual = actual.value_type
    return pa.types.is_integer(actual)


def check_schema(path: str | Path) -> None:
    """Cheap validation (schemas only, for the launcher and the trainer's loader): every file is readable
    Parquet with the dataset's columns, each of a type the trainer can read. Names the file and the column."""
    for f in parquet_files(path):
        try:
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowException) as e:
            raise InputError(f, f"not a readable Parquet file ({e})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise InputError(f, f"missing column {', '.join(missing)}: not a Moshi Studio dataset")
        for column in REQUIRED_COLUMNS:
            actual = schema.field(column).type
            if not _fits(column, actual):
                raise InputError(
                    f,
                    f"column {column} is {actual}, expected {SCHEMA.field(column).type} "
                    "(not a Moshi Studio dataset: make one with backend.dataset.build)",
                )


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
