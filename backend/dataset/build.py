"""Stage: merge audio and text tokens into the Parquet dataset of SPEC.md.

One row per dialogue: `dialogue_id` = `<output_prefix>/<name>`, `A` and `B` = [9, T] (text row,
then codebooks 0..7, undelayed). The audio length wins: text is cut or PAD-padded to T. The tokenizer the text
tokens were made with (their audits record it) is recorded beside the shards as tokenizer.json; rows made with
different tokenizers, or with another PAD id than the padding's, are refused.
"""

import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from backend.core import config
from backend.core.atomic import atomic_path, check_output_folder
from backend.core.errors import ConfigError, InputError, StudioError
from backend.core.spec import CARD, NUM_CODEBOOKS, PAD_ID, SPEAKERS
from backend.data.files import AUDIT_SUFFIX, RECORDING_PREFIX, is_recording
from backend.dataset.token_folders import audits_beside
from backend.models.text_tokenizer import RECORD_FILE, TokenizerRecord, check_agreement, write_record

MAX_SHARD_ROWS = 100_000
VALIDATION_DIR = "validation"  # beside the training shards: train_data globs only its own folder
TEXT_ID_LIMIT = 2**31  # text ids must index an embedding (int32 at most); the tokenizer bounds them further
SCHEMA = pa.schema(
    [
        ("dialogue_id", pa.string()),
        ("A", pa.list_(pa.list_(pa.int64()))),
        ("B", pa.list_(pa.list_(pa.int64()))),
    ]
)


@dataclass
class DatasetConfig:
    audio_tokens: Path = config.option(Path("workspace/tokens/audio"), "folder of audio token files <name>.npz")
    text_tokens: Path = config.option(Path("workspace/tokens/text"), "folder of text token files <name>.npz")
    output: Path = config.option(Path("workspace/dataset"), "folder for the Parquet shards")
    output_prefix: str = config.option("train", "shard file prefix, also the first part of every dialogue_id")
    shard_rows: int = config.option(MAX_SHARD_ROWS, "rows per shard (at most 100,000)")
    pad_id: int = config.option(PAD_ID, "text id used to pad text that is shorter than the audio")
    recordings: bool = config.option(
        False, f"include chat recordings ({RECORDING_PREFIX}*: only Moshi's words are transcribed); left out by default"
    )
    validation: str = config.option(
        "",
        f"dialogues held out for evaluation, written to <output>/{VALIDATION_DIR}/ "
        "(the fine-tune form's eval data): a fraction (0.1) or comma-separated "
        "names; empty: none",
    )
    split_seed: int = config.option(0, "seed of the dialogues a validation fraction draws")


@dataclass
class DatasetReport:
    rows: int = 0
    frames: int = 0
    files: list[str] = field(default_factory=list)
    missing_audio: list[str] = field(default_factory=list)  # text tokens without audio tokens
    missing_text: list[str] = field(default_factory=list)  # audio tokens without text tokens
    text_cut: dict[str, int] = field(default_factory=dict)  # name -> text frames cut off
    text_padded: dict[str, int] = field(default_factory=dict)  # name -> PAD frames added
    recordings_left_out: list[str] = field(default_factory=list)  # chat recordings, not chosen
    validation: list[str] = field(default_factory=list)  # dialogues held out (in <output>/validation)

    @property
    def hours(self) -> float:
        return self.frames / 12.5 / 3600

    def summary(self) -> str:
        lines = [f"{self.rows} dialogues, {self.hours:.3f} h of audio in {len(self.files)} shard(s)"]
        if self.validation:
            lines.append(f"held out for validation ({VALIDATION_DIR}/): {', '.join(self.validation)}")
        if self.missing_audio:
            lines.append(f"left out, no audio tokens: {', '.join(self.missing_audio)}")
        if self.missing_text:
            lines.append(f"left out, no text tokens: {', '.join(self.missing_text)}")
        if self.recordings_left_out:
            lines.append(f"chat recordings left out: {', '.join(self.recordings_left_out)}")
        return "\n".join(lines)


def _load_npz(path: Path, ndim: int) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            arrays = {s: np.asarray(data[s], dtype=np.int64) for s in SPEAKERS}
    except (OSError, ValueError, KeyError) as e:
        raise InputError(path, f"not a token file with arrays A and B ({e})") from None
    limit = CARD if ndim == 2 else TEXT_ID_LIMIT
    for s, a in arrays.items():
        if a.ndim != ndim or (ndim == 2 and a.shape[0] != NUM_CODEBOOKS):
            want = f"[{NUM_CODEBOOKS}, T]" if ndim == 2 else "[T]"
            raise InputError(path, f"array {s} has shape {list(a.shape)}, expected {want}")
        if a.size and not (0 <= a.min() and a.max() < limit):
            raise InputError(path, f"array {s} holds ids from {a.min()} to {a.max()}, outside 0..{limit - 1}")
    if ndim == 2 and arrays["A"].shape != arrays["B"].shape:
        raise InputError(path, f"A and B differ in length ({arrays['A'].shape[1]} vs {arrays['B'].shape[1]} frames)")
    return arrays


def fit_text(text: np.ndarray, frames: int, pad_id: int) -> np.ndarray:
    """Cut or PAD-pad a text stream to the audio's frame count."""
    if len(text) >= frames:
        return text[:frames]
    return np.concatenate([text, np.full(frames - len(text), pad_id, dtype=np.int64)])


def merge_row(audio: dict[str, np.ndarray], text: dict[str, np.ndarray], pad_id: int) -> dict[str, np.ndarray]:
    frames = audio["A"].shape[1]
    return {s: np.concatenate([fit_text(text[s], frames, pad_id)[None], audio[s]], axis=0) for s in SPEAKERS}


def shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:03d}-of-{count:03d}.parquet"


def text_tokenizer(cfg: DatasetConfig, names: list[str]) -> TokenizerRecord | None:
    """The one tokenizer the rows' text tokens were made with, from their audits; None when an audit or its record
    is missing (tokens made before records). Refuses rows of two tokenizers and a PAD id other than cfg.pad_id."""
    found: dict[str, TokenizerRecord] = {}
    for name in names:
        audit = audits_beside(Path(cfg.text_tokens)) / f"{name}{AUDIT_SUFFIX}"
        record = json.loads(audit.read_text(encoding="utf-8")).get("tokenizer") if audit.is_file() else None
        if not record:
            return None
        found[name] = TokenizerRecord(**record)
    check_agreement({f"text tokens of {name}": r for name, r in found.items()})
    record = next(iter(found.values()))
    if record.pad_id != cfg.pad_id:
        raise ConfigError(f"pad_id {cfg.pad_id}: the text tokens use PAD {record.pad_id} ({record.describe()})")
    return record


def build_dataset(cfg: DatasetConfig, progress: Callable[[float, str], None] | None = None) -> DatasetReport:
    """Write the shards (sorted by name, so the order is deterministic) and report what was left out."""
    if not 1 <= cfg.shard_rows <= MAX_SHARD_ROWS:
        raise ConfigError(f"shard_rows must be between 1 and {MAX_SHARD_ROWS}, got {cfg.shard_rows}")
    if not cfg.output_prefix or "/" in cfg.output_prefix:
        raise ConfigError(f"output_prefix must be a plain name, got {cfg.output_prefix!r}")
    if not 0 <= cfg.pad_id < TEXT_ID_LIMIT:
        raise ConfigError(f"pad_id {cfg.pad_id} is outside the text ids 0..{TEXT_ID_LIMIT - 1}")
    check_output_folder(cfg.output, "output folder")
    for folder in (cfg.audio_tokens, cfg.text_tokens):
        if not Path(folder).is_dir():
            raise ConfigError(f"{folder}: no such folder (tokenize audio and text first)")
    audio_names = {p.stem for p in Path(cfg.audio_tokens).glob("*.npz")}
    text_names = {p.stem for p in Path(cfg.text_tokens).glob("*.npz")}
    report = DatasetReport(
        missing_audio=sorted(text_names - audio_names), missing_text=sorted(audio_names - text_names)
    )
    names = sorted(audio_names & text_names)
    if not cfg.recordings:
        report.recordings_left_out = [n for n in names if is_recording(n)]
        names = [n for n in names if not is_recording(n)]
    if not names:
        raise ConfigError(
            f"no dialogue has both audio tokens in {cfg.audio_tokens} and text tokens in {cfg.text_tokens}"
        )
    report.validation = pick_validation(names, cfg.validation, cfg.split_seed)
    train = [n for n in names if n not in report.validation]
    tokenizer = text_tokenizer(cfg, names)
    total = len(names)
    _write_shards(train, Path(cfg.output), cfg, report, progress, total, tokenizer)
    _write_shards(report.validation, Path(cfg.output) / VALIDATION_DIR, cfg, report, progress, total, tokenizer)
    return report


def pick_validation(names: list[str], spec: str, seed: int) -> list[str]:
    """The dialogues held out: `spec` is a fraction ("0.1": that share of the dialogues, at least one, drawn with
    `seed`; whole dialogues, so no dialogue is on both sides) or comma-separated names; "" holds none out. At
    least one dialogue is left to train on."""
    spec = spec.strip()
    if not spec:
        return []
    try:
        fraction = float(spec)
    except ValueError:
        chosen = sorted({n.strip() for n in spec.split(",") if n.strip()})
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ConfigError(f"validation: no dialogue named {', '.join(unknown)} has both token files") from None
    else:
        if not 0 < fraction < 1:
            raise ConfigError(f"validation: a fraction between 0 and 1, or dialogue names; got {spec!r}")
        chosen = sorted(random.Random(seed).sample(names, max(1, round(fraction * len(names)))))
    if len(chosen) >= len(names):
        raise ConfigError(f"validation: holding out {len(chosen)} of {len(names)} dialogue(s) leaves none to train on")
    return chosen


def _write_shards(
    names: list[str],
    folder: Path,
    cfg: DatasetConfig,
    report: DatasetReport,
    progress: Callable[[float, str], None] | None,
    total: int,
    tokenizer: TokenizerRecord | None,
) -> None:
    """`names` as shards of `folder` with the tokenizer's record beside them (none: the folder's old shards and
    record removed, so a split once made does not linger)."""
    for old in folder.glob(f"{cfg.output_prefix}-*-of-*.parquet"):
        old.unlink()  # a previous build with another shard count would otherwise linger
    if not names:
        (folder / RECORD_FILE).unlink(missing_ok=True)
        return
    count = math.ceil(len(names) / cfg.shard_rows)
    for shard in range(count):
        rows: dict[str, list] = {"dialogue_id": [], "A": [], "B": []}
        for name in names[shard * cfg.shard_rows : (shard + 1) * cfg.shard_rows]:
            audio = _load_npz(Path(cfg.audio_tokens) / f"{name}.npz", ndim=2)
            text = _load_npz(Path(cfg.text_tokens) / f"{name}.npz", ndim=1)
            frames = audio["A"].shape[1]
            diff = len(text["A"]) - frames
            if diff > 0:
                report.text_cut[name] = diff
            elif diff < 0:
                report.text_padded[name] = -diff
            row = merge_row(audio, text, cfg.pad_id)
            rows["dialogue_id"].append(f"{cfg.output_prefix}/{name}")
            rows["A"].append(row["A"].tolist())
            rows["B"].append(row["B"].tolist())
            report.rows += 1
            report.frames += frames
            if progress:
                progress(report.rows / total, name)
        target = folder / shard_name(cfg.output_prefix, shard + 1, count)
        with atomic_path(target) as tmp:
            pq.write_table(pa.table(rows, schema=SCHEMA), tmp)
        report.files.append(str(target))
    if tokenizer is not None:
        write_record(folder, tokenizer)
    else:  # a record of an earlier build would vouch for tokens it never saw
        (folder / RECORD_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(DatasetConfig, "Merge audio and text tokens into Parquet shards (SPEC.md).")
    args = parser.parse_args(argv)
    try:
        report = build_dataset(config.from_cli(DatasetConfig, args))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    for f in report.files:
        print(f)
    return 1 if report.missing_audio or report.missing_text else 0


if __name__ == "__main__":
    sys.exit(main())
