"""Stage: check dialogues (stereo audio + word transcript) and say, with reasons, what is wrong."""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.core import config, figures
from backend.core.errors import InputError, Issue, StudioError
from backend.core.spec import SAMPLE_RATE
from backend.data.audio_io import AudioScan, audio_report
from backend.data.files import DialogueFiles, scan_dialogues
from backend.data.stats import CorpusStats, corpus_stats, dialogue_stats
from backend.data.transcripts import check_transcript, check_within_audio, load_transcript


@dataclass
class ValidateConfig:
    input: Path = config.option(Path("workspace/raw"), "folder of dialogues: <name>.wav|flac|ogg + <name>.json")
    json: bool = config.option(False, "print the full report as JSON")
    plot: Path | None = figures.plot_option("the gap histogram of the valid dialogues (the Data tab's statistics)")


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

    def audio_facts(self) -> str:
        """Length, sample rate (and that it will be resampled), each channel's level and peak; '' without audio."""
        if not self.audio_info:
            return ""
        sr = self.audio_info["sample_rate"]
        rate = f"{sr} Hz" + (f" (resampled to {SAMPLE_RATE} Hz for Mimi)" if sr != SAMPLE_RATE else "")
        levels = "; ".join(
            f"{c['speaker']}: RMS {c['rms_dbfs']:.1f} dBFS, peak {c['peak_dbfs']:.1f} dBFS"
            for c in self.audio_info["channels"]
        )
        return f"{self.audio_info['duration']:.1f} s, {rate}, {levels}"


def validate_dialogue(d: DialogueFiles, scan: AudioScan | None = None) -> DialogueReport:
    """`scan`: the audio's `scan_audio` when the caller has it already."""
    report = DialogueReport(d.name, str(d.audio) if d.audio else None, str(d.transcript) if d.transcript else None)
    duration = None
    if d.audio is None:
        report.issues.append(Issue("error", f"{d.transcript}: no audio file named {d.name}.wav/.flac/.ogg"))
    else:
        try:
            info = audio_report(d.audio, scan=scan)
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


def valid_stats(reports: list[DialogueReport]) -> CorpusStats | None:
    """Statistics of the dialogues without errors (None: there are none)."""
    items = []
    for r in reports:
        if r.ok and r.transcript and r.audio_info:
            try:
                items.append(dialogue_stats(r.name, load_transcript(r.transcript).words, r.audio_info["duration"]))
            except StudioError:
                continue
    return corpus_stats(items) if items else None


def plot_gaps(reports: list[DialogueReport], path: Path) -> Path:
    stats = valid_stats(reports)
    edges, counts = (stats.gap_histogram["edges"], stats.gap_histogram["counts"]) if stats else ([], [])
    title = f"gaps between turns, {stats.dialogues if stats else 0} valid dialogue(s)"
    return figures.save(figures.gap_histogram(edges, counts, title), path)


def report(cfg: ValidateConfig) -> int:
    """Validate `cfg.input` and print the reports (text or JSON); exit status 0 when every dialogue is fine."""
    if cfg.plot is not None:
        figures.check_png_path(cfg.plot)
    reports, problems = validate_folder(cfg.input)
    if cfg.plot is not None:
        print(f"wrote {plot_gaps(reports, cfg.plot)}")
    if cfg.json:
        print(json.dumps({"dialogues": [r.to_dict() for r in reports], "problems": problems}, indent=2))
    else:
        for r in reports:
            print(f"{'ok ' if r.ok else 'BAD'} {r.name}: {r.words} words")
            if r.audio_info:
                print(f"    audio: {r.audio_facts()}")
            for issue in r.issues:
                print(f"    {issue.level}: {issue.message}")
        for p in problems:
            print(f"BAD {p}")
    return 0 if all(r.ok for r in reports) and not problems else 1


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(ValidateConfig, "Validate stereo dialogues and their word transcripts.")
    try:
        return report(config.from_cli(ValidateConfig, parser.parse_args(argv)))
    except (FileNotFoundError, StudioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
