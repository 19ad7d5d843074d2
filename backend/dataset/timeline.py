"""Stage: what the model sees for one dataset row and a time window.

Per speaker the text stream (decoded pieces, PAD and EPAD named) and the 8 codebooks on the
12.5 Hz grid; the training view with its delays; the window's audio decoded through Mimi.
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from backend.core import config, figures
from backend.core.errors import ConfigError, StudioError
from backend.core.spec import DELAYS, EPAD_ID, FRAME_RATE, PAD_ID, SPEAKERS
from backend.dataset.read import load_row
from backend.dataset.training_view import delayed_input, training_rows


@dataclass
class TimelineConfig:
    dataset: Path = config.option(Path("workspace/dataset"), "folder of the Parquet shards")
    dialogue_id: str = config.option("", "dialogue to show (as in the dataset's dialogue_id column)")
    start: float = config.option(0.0, "window start in seconds")
    seconds: float = config.option(4.0, "window length in seconds")
    main: Literal["A", "B"] = config.option("A", "speaker that plays Moshi in the training view")
    tokenizer: Path = config.option(Path("workspace/models/tokenizer.model"), "SentencePiece model, to decode text ids")
    pad_id: int = config.option(PAD_ID, "text PAD id")
    epad_id: int = config.option(EPAD_ID, "text EPAD id")
    mimi: str = config.option("", "Mimi to decode the window with (directory, .safetensors or hub id); with --wav")
    wav: Path | None = config.option(None, "write the window's decoded stereo audio here (left A, right B)")
    plot: Path | None = figures.plot_option("the window (codebooks as colours, text pieces, the training view)")


def text_label(token: int, sp: Any, pad_id: int, epad_id: int) -> str:
    if token == pad_id:
        return "PAD"
    if token == epad_id:
        return "EPAD"
    if 0 <= token < sp.vocab_size():
        return sp.id_to_piece(int(token))
    return f"<{token}>"  # initial token (text_card) or ids past this tokenizer's vocabulary


def byte_characters(ids: list[int], sp: Any) -> list[str]:
    """Per frame, the character that a run of byte-fallback pieces on consecutive frames forms ("" elsewhere),
    as Moshi's text decoder joins them: 𠮷 on the four frames of <0xF0> <0xA0> <0xAE> <0xB7>."""
    out = [""] * len(ids)
    run: list[int] = []  # frames of the bytes read so far
    for f, token in enumerate(ids):
        if not (0 <= token < sp.vocab_size() and sp.is_byte(int(token))):
            run = []
            continue
        run.append(f)
        try:
            char = bytes(int(sp.id_to_piece(int(ids[j]))[3:5], 16) for j in run).decode("utf-8")
        except UnicodeDecodeError:  # an incomplete character: wait for its next byte (UTF-8 has at most 4)
            run = run if len(run) < 4 else []
            continue
        for j in run:
            out[j] = char if char.isprintable() else ""  # a control byte shows as its piece alone
        run = []
    return out


def frame_window(total: int, start: float, seconds: float) -> tuple[int, int]:
    """(first frame, frame count) of a window in seconds, clamped to the row."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"window length must be a positive number of seconds, got {seconds}")
    if not math.isfinite(start) or start < 0:
        raise ConfigError(f"window start must be a number of seconds from 0, got {start}")
    first = min(int(min(start, total / FRAME_RATE) * FRAME_RATE), max(total - 1, 0))  # 1e308 s: the row's end
    return first, max(1, min(int(round(seconds * FRAME_RATE)), total - first))


def timeline_data(
    row: dict[str, np.ndarray],
    dialogue_id: str,
    first: int,
    count: int,
    sp: Any,
    main: str = "A",
    pad_id: int = PAD_ID,
    epad_id: int = EPAD_ID,
) -> dict[str, Any]:
    """Plain data for the timeline widget and the CLI (see studio/timeline_view.py)."""
    window = slice(first, first + count)
    speakers = {}
    for s in SPEAKERS:
        text = row[s][0, window]
        speakers[s] = {
            "text_ids": text.tolist(),
            "text_labels": [text_label(t, sp, pad_id, epad_id) for t in text],
            "text_chars": byte_characters(text.tolist(), sp),
            "codes": row[s][1:, window].tolist(),
        }
    other = "B" if main == "A" else "A"
    # Column f of the delayed view is what sits at frame f once delays are applied: step f + 1 of the
    # model's input sequence (step 0 is the initial column).
    delayed = delayed_input(training_rows(row[main], row[other]))[:, first + 1 : first + 1 + count]
    names = [f"text {main}"] + [f"{main} cb{i}" for i in range(8)] + [f"{other} cb{i}" for i in range(8)]
    return {
        "dialogue_id": dialogue_id,
        "start_frame": first,
        "frame_rate": FRAME_RATE,
        "frames": list(range(first, first + count)),
        "times": [f / FRAME_RATE for f in range(first, first + count)],
        "speakers": speakers,
        "main": main,
        "delayed": {"row_names": names, "rows": delayed.tolist(), "delays": DELAYS, "start_step": first + 1},
    }


def window_audio(mimi: Any, row: dict[str, np.ndarray], first: int, count: int) -> np.ndarray:
    """[2, count * 1920] float32 at 24 kHz: the window's codes of A and B decoded in one batch."""
    from backend.dataset.codec import decode

    codes = np.stack([row[s][1:, first : first + count] for s in SPEAKERS])
    return decode(mimi, codes)


def format_grid(data: dict[str, Any]) -> str:
    """A plain-text rendering for the CLI."""
    cols = data["frames"]
    lines = ["frame    " + " ".join(f"{f:>6}" for f in cols)]
    for s, stream in data["speakers"].items():
        lines.append(f"text {s}   " + " ".join(f"{lab[:6]:>6}" for lab in stream["text_labels"]))
        for i, codes in enumerate(stream["codes"]):
            lines.append(f"{s} cb{i}    " + " ".join(f"{c:>6}" for c in codes))
    lines.append(f"training view (main {data['main']}, delays applied):")
    for name, d, row in zip(data["delayed"]["row_names"], data["delayed"]["delays"], data["delayed"]["rows"]):
        lines.append(f"{name:<8} +{d} " + " ".join(f"{c:>6}" for c in row))
    return "\n".join(lines)


def show(cfg: TimelineConfig) -> None:
    """Print the row's token grid; also draw it (`plot`) and decode its audio (`wav`) when asked."""
    from backend.models.text_tokenizer import load_spm

    if cfg.plot is not None:
        figures.check_png_path(cfg.plot)
    row = load_row(cfg.dataset, cfg.dialogue_id)
    first, count = frame_window(row["A"].shape[1], cfg.start, cfg.seconds)
    data = timeline_data(row, cfg.dialogue_id, first, count, load_spm(cfg.tokenizer), cfg.main, cfg.pad_id, cfg.epad_id)
    print(format_grid(data))
    if cfg.plot is not None:
        print(f"wrote {figures.save(figures.timeline(data), cfg.plot)}")
    if cfg.wav is not None:
        if not cfg.mimi:
            raise ConfigError("--wav needs --mimi (the codec the dataset was tokenized with)")
        from backend.data.audio_io import write_stereo_wav
        from backend.models.weights import load_mimi

        write_stereo_wav(cfg.wav, window_audio(load_mimi(cfg.mimi), row, first, count))
        print(f"wrote {cfg.wav}")


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(TimelineConfig, "Show the token timeline of one dataset row.")
    try:
        show(config.from_cli(TimelineConfig, parser.parse_args(argv)))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
