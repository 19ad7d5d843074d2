"""Stage: check dialogues (stereo audio + word transcript) and say, with reasons, what is wrong."""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.core import config
from backend.data.audio_io import audio_report
from backend.data.files import Dialogue, scan_dialogues
from backend.core.errors import InputError, Issue
from backend.data.transcripts import check_transcript, check_within_audio, load_transcript


@dataclass
class ValidateConfig:
    input: Path = config.option(Path("workspace/raw"), "folder of dialogues: <name>.wav|flac|ogg + <name>.json")
    json: bool = config.option(False, "print the full report as JSON")


@dataclass
class DialogueReport:
    name: str
    audio: str | None
    transcript: str | None
    issues: list[Issue] = field(default_factory=list)
    audio_info: dict[str, Any] | None = None
    words: int = 0

    @property
    def ok(self) -> bool:
        return not any(i.level == "error" for i in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def validate_dialogue(d: Dialogue) -> DialogueReport:
    report = DialogueReport(d.name, str(d.audio) if d.audio else None, str(d.transcript) if d.transcript else None)
    duration = None
    if d.audio is None:
        report.issues.append(Issue("error", f"{d.transcript}: no audio file named {d.name}.wav/.flac/.ogg"))
    else:
        try:
            info = audio_report(d.audio)
            report.audio_info = info.to_dict()
            duration = info.duration
            report.issues.extend(info.issues)
        except InputError as e:
            report.issues.append(Issue("error", str(e)))
    if d.transcript is None:
        report.issues.append(Issue("error", f"{d.audio}: no transcript named {d.name}.json"))
    else:
        try:
            transcript = load_transcript(d.transcript)
            report.words = len(transcript.words)
            if duration is not None:
                check_within_audio(transcript, duration)
            report.issues.extend(check_transcript(transcript, duration))
        except InputError as e:
            report.issues.append(Issue("error", str(e)))
    return report


def validate_folder(folder: str | Path) -> tuple[list[DialogueReport], list[str]]:
    """Reports for every dialogue in `folder`, and the files that could not be paired."""
    scan = scan_dialogues(folder)
    return [validate_dialogue(d) for d in scan.dialogues], scan.problems


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(ValidateConfig, "Validate stereo dialogues and their word transcripts.")
    cfg = config.from_cli(ValidateConfig, parser.parse_args(argv))
    try:
        reports, problems = validate_folder(cfg.input)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if cfg.json:
        print(json.dumps({"dialogues": [r.to_dict() for r in reports], "problems": problems}, indent=2))
    else:
        for r in reports:
            print(f"{'ok ' if r.ok else 'BAD'} {r.name}: {r.words} words")
            for issue in r.issues:
                print(f"    {issue.level}: {issue.message}")
        for p in problems:
            print(f"BAD {p}")
    return 0 if all(r.ok for r in reports) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
