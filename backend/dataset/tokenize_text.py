"""Stage: word transcripts -> text token files `<name>.npz` (A, B: int64 [T_text]) + `<name>.audit.json` in a
folder beside the output (backend/dataset/token_folders.py: the output holds only `<name>.npz`).

A batch tool should not let one bad transcript stop the other hundreds, nor hide it: every
transcript is tried, the good ones are written, and the bad ones are reported together at the
end (`TokenizeFailures`, exit status 1), each with its file and problem. Nothing is written for a
bad transcript, and an output left from an earlier run under its name is removed, so the output
folder never pairs a transcript with tokens it no longer produces.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal

import numpy as np

from backend.core import config
from backend.core.atomic import atomic_path, check_output_folder, write_text_atomic
from backend.core.errors import ConfigError, InputError, StudioError
from backend.core.spec import EPAD_ID, PAD_ID
from backend.data.audio_io import probe
from backend.data.files import AUDIO_EXTENSIONS, AUDIT_SUFFIX, dialogue_files
from backend.data.transcripts import load_transcript, parse_speaker_map
from backend.dataset.text_layout import DialogueAudit, LayoutOptions, check_options, tokenize_dialogue
from backend.dataset.token_folders import audits_beside
from backend.models.text_tokenizer import load_spm, record_of


@dataclass
class TextLayoutSettings:
    """What decides the pieces a transcript becomes and the ids of empty frames (tokenize-text, tokenizer inspect)."""

    layout: Literal["spread", "packed"] = config.option(
        "spread",
        "spread = J-Moshi (one tokenization per speaker, pieces timed by their characters); "
        "packed = Kyutai (each word's pieces on consecutive frames from its start)",
    )
    pad_id: int = config.option(PAD_ID, "text id of an empty frame (PAD)")
    epad_id: int = config.option(EPAD_ID, "text id of the frame just before a piece that follows a PAD (EPAD)")
    whitespace: bool = config.option(
        True, "put a space before every word but the first (off for Japanese and Chinese: words joined without spaces)"
    )

    RENAMED: ClassVar[dict[str, config.Renamed]] = {"no_whitespace": config.Renamed("whitespace", negated=True)}


@dataclass
class TextTokenizeConfig(TextLayoutSettings):
    transcripts: Path = config.option(Path("workspace/raw"), "folder of word transcripts <name>.json")
    tokenizer: Path = config.option(Path("workspace/models/tokenizer.model"), "SentencePiece model file")
    output: Path = config.option(
        Path("workspace/tokens/text"), "folder for <name>.npz (audits: <name>.audit.json in <output>.audits/ beside it)"
    )
    drop_overflow: bool = config.option(
        False,
        "packed only: drop the pieces a word has not placed when the next "
        "word starts, as Kyutai's interleaver does by default (otherwise they "
        "are kept and shifted later); a start a float's width under a frame "
        "boundary still starts on that frame (deviation D1, README)",
    )
    audio: Path | None = config.option(
        None,
        "folder of the dialogue audio <name>.wav|flac|ogg, read only for "
        "durations (packed stream length, text past the audio's end)",
    )
    speaker_map: str | None = config.option(
        None,
        "transcript speaker labels to A/B, e.g. 'SPEAKER_0=A "
        "SPEAKER_1=B' (default: A, B, SPEAKER_MAIN=A + one other label=B)",
    )

    def layout_options(self) -> LayoutOptions:
        return LayoutOptions(self.layout, self.pad_id, self.epad_id, self.whitespace, self.drop_overflow)


class TokenizeFailures(StudioError):
    """Some transcripts could not be tokenized; the others were written (their audits in `audits`)."""

    def __init__(self, failures: list[InputError], audits: list[DialogueAudit]):
        self.failures, self.audits = failures, audits
        lines = [f"{len(failures)} of {len(failures) + len(audits)} transcript(s) not tokenized:"]
        super().__init__("\n".join(lines + [f"  {e}" for e in failures]))


def transcript_files(folder: Path) -> list[Path]:
    """`<name>.json` transcripts, leaving out our own audits (the output may be the same folder)."""
    if not folder.is_dir():
        raise ConfigError(f"transcripts: {folder} is not a folder")
    return dialogue_files(folder, "text")


def audio_duration(folder: Path | None, name: str) -> float | None:
    """Seconds of `<folder>/<name>.<ext>` from the file header; None without an audio folder or file."""
    if folder is None:
        return None
    for ext in AUDIO_EXTENSIONS:
        if (folder / f"{name}{ext}").is_file():
            return probe(folder / f"{name}{ext}").duration
    return None


def write_tokens(path: Path, streams: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{s: a.astype(np.int64) for s, a in streams.items()})


def tokenize_text(
    cfg: TextTokenizeConfig, progress: Callable[[float, str], None] | None = None, skip: frozenset[str] = frozenset()
) -> list[DialogueAudit]:
    """Tokenize every transcript of `cfg.transcripts` but those named in `skip` (not even read). Raises
    TokenizeFailures after writing the good ones."""
    sp = load_spm(cfg.tokenizer)
    options = cfg.layout_options()
    check_options(options, sp)
    tokenizer = record_of(sp, cfg.pad_id, cfg.epad_id, cfg.tokenizer).to_dict()
    speaker_map = parse_speaker_map(cfg.speaker_map)
    check_output_folder(cfg.output, "output")
    files = [p for p in transcript_files(cfg.transcripts) if p.stem not in skip]
    if not files:
        raise ConfigError(f"transcripts: no <name>.json transcripts in {cfg.transcripts}")
    audits: list[DialogueAudit] = []
    failures: list[InputError] = []
    for i, path in enumerate(files):
        if progress:
            progress(i / len(files), f"tokenizing {path.name}")
        tokens, audit_path = cfg.output / f"{path.stem}.npz", audits_beside(cfg.output) / f"{path.stem}{AUDIT_SUFFIX}"
        try:
            transcript = load_transcript(path, speaker_map)
            duration = audio_duration(cfg.audio, path.stem)
            streams, audit = tokenize_dialogue(transcript, sp, options, duration)
        except InputError as e:
            failures.append(e)
            tokens.unlink(missing_ok=True)
            audit_path.unlink(missing_ok=True)
            continue
        if cfg.audio is not None and duration is None:
            audit.warnings.append(
                f"no audio named {path.stem}.wav/.flac/.ogg in {cfg.audio}: stream lengths come from the transcript"
            )
        audit.tokenizer = tokenizer
        write_tokens(tokens, streams)
        write_text_atomic(audit_path, json.dumps(audit.to_dict(), indent=1, ensure_ascii=False) + "\n")
        audits.append(audit)
    if progress:
        progress(1.0, f"{len(audits)} transcript(s) tokenized")
    if failures:
        raise TokenizeFailures(failures, audits)
    return audits


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(
        TextTokenizeConfig,
        "Tokenize word transcripts into per-frame text streams (<name>.npz with A and B) and write an audit per file.",
    )
    try:
        cfg = config.from_cli(TextTokenizeConfig, parser.parse_args(argv))
        audits = tokenize_text(cfg)
    except TokenizeFailures as e:
        for audit in e.audits:
            print(audit.summary())
        print(f"error: {e}", file=sys.stderr)
        return 1
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for audit in audits:
        print(audit.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
