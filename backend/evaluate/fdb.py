"""Full-Duplex-Bench's sample folders, read and written as its own scripts do (v1_v1.5/evaluation,
get_transcript/asr.py, model_inference/moshi/inference.py). Torch-free.

A sample is a folder with `input.wav` (the user's stream) and its task file:
    pause.json        [{"text": "[PAUSE]", "timestamp": [start, end]}]            -> pause_handling
    turn_taking.json  [{"text": "[TURN-TAKING]", "timestamp": [start, end]}]      -> smooth_turn_taking
                      (the user's turn ends at timestamp[0], as eval_smooth_turn_taking reads it)
    interrupt.json    [{"context", "interrupt", "timestamp": [start, end]}]        -> user_interruption
    metadata.json     {"context_text", "current_turn_text", "timestamps"}          -> v1.5 (the task is its folder's
                      parent's name: user_interruption, user_backchannel, talking_to_other, background_speech)
    backchannel.json  [{"text": "[BACKCHANNEL]", "timestamp": [start, end]}]      -> backchannel (the studio's own
                      probes: where a listener would backchannel; FD-Bench's ICC samples have no task file and are
                      recognised by a folder name containing "backchannel")
    turns.json        [{"text": "[TURN-TAKING]", "timestamp": [user end, reference answer start],
                      "window": [user turn start, next user turn start or null]}]  -> dialogue_turns (the studio's
                      own: a whole dialogue's user channel; each event is scored as one smooth turn-taking sample
                      over the words inside its window)
A backchannel set's reference timing is `icc_gt_distribution.json` beside the samples ({sample name: [p, ...]}),
the file FD-Bench's eval_backchannel reads.

The model's side, written next to a copy of those files so FD-Bench's scripts run on the folder unchanged:
    output.wav   the model's channel, as long as input.wav, mono 16-bit at 16 kHz (eval_backchannel hands the file
                 to silero-vad without a sampling rate, which then assumes 16 kHz)
    output.json  {"text": words joined by spaces, "chunks": [{"text": word, "timestamp": [start, end]}]}; for
                 user_interruption only the words from the interruption's end on (asr.py crops there).
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.errors import InputError
from backend.core.intervals import Interval
from backend.evaluate.metrics import Word

INPUT, OUTPUT_WAV, OUTPUT_JSON = "input.wav", "output.wav", "output.json"
TURNS_FILE = "turns.json"
TASK_FILES = {
    "pause.json": "pause_handling",
    "turn_taking.json": "smooth_turn_taking",
    "interrupt.json": "user_interruption",
    "backchannel.json": "backchannel",
    TURNS_FILE: "dialogue_turns",
    "metadata.json": "",
}
REFERENCE_FILE = "icc_gt_distribution.json"
BACKCHANNEL = "backchannel"
OUTPUT_RATE = 16_000
MAX_SAMPLE_SECONDS = 600.0  # a probe is a few seconds to a minute; longer inputs are refused, not streamed


@dataclass(frozen=True)
class Sample:
    dir: Path
    task: str
    task_file: str | None
    events: list[Interval]  # the task file's [start, end] spans
    windows: list[tuple[float, float | None]]  # dialogue_turns: the span each event is scored over

    @property
    def input(self) -> Path:
        return self.dir / INPUT

    @property
    def turn_end(self) -> float | None:
        """Where the user's turn ends, as FD-Bench's scripts read it (None for tasks without one)."""
        if not self.events:
            return None
        if self.task == "smooth_turn_taking":
            return self.events[0][0]
        return self.events[0][1]


def _spans(path: Path) -> tuple[list[Interval], list[tuple[float, float | None]]]:
    """(the [start, end] timestamps, the windows) of a task file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = [data] if isinstance(data, dict) else data
        spans = [item.get("timestamp", item.get("timestamps")) for item in items]
        windows = [item["window"] for item in items if "window" in item]
        return (
            [(float(s), float(e)) for s, e in spans],
            [(float(s), None if e is None else float(e)) for s, e in windows],
        )
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise InputError(path, f"not a Full-Duplex-Bench task file with [start, end] timestamps ({e})") from None


def read_sample(folder: Path) -> Sample:
    folder = Path(folder)
    if not (folder / INPUT).is_file():
        raise InputError(folder, f"no {INPUT}: not a Full-Duplex-Bench sample folder")
    for name, task in TASK_FILES.items():
        if (folder / name).is_file():
            return Sample(folder, task or folder.parent.name, name, *_spans(folder / name))
    if any(BACKCHANNEL in part for part in folder.parts[-3:]):
        return Sample(folder, BACKCHANNEL, None, [], [])
    raise InputError(folder, f"no task file ({', '.join(TASK_FILES)}) and not in a backchannel set")


def find_samples(root: Path) -> list[Sample]:
    """Every sample folder under `root` (or `root` itself), in name order."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder of Full-Duplex-Bench samples")
    folders = sorted({p.parent for p in root.rglob(INPUT)})
    if not folders:
        raise InputError(root, f"no sample folder ({INPUT} + task file) under it")
    return [read_sample(f) for f in folders]


def reference_timing(sample: Sample) -> np.ndarray | None:
    """The backchannel reference distribution of a sample (icc_gt_distribution.json beside it), or None."""
    path = sample.dir.parent / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get(sample.dir.name)
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(path, f"not a reference distribution ({e})") from None
    return None if values is None else np.asarray(values, dtype=float)


def input_seconds(sample: Sample) -> float:
    info = sf.info(str(sample.input))
    seconds = info.frames / info.samplerate
    if not 0 < seconds <= MAX_SAMPLE_SECONDS:
        raise InputError(
            sample.input, f"{seconds:.1f} s long: a probe must last between 0 and {MAX_SAMPLE_SECONDS:.0f} s"
        )
    return seconds


def cropped(sample: Sample, words: list[Word]) -> list[Word]:
    """The words output.json keeps: for user_interruption only those after the interruption (asr.py's crop)."""
    if sample.task == "user_interruption" and sample.events:
        return [w for w in words if w.start >= sample.events[0][1]]
    return words


def write_sample(sample: Sample, target: Path, pcm: np.ndarray, rate: int, words: list[Word]) -> None:
    """The sample's files and the model's output in `target`; output.json last (it marks the sample done)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in (INPUT, sample.task_file):
        if name:
            shutil.copyfile(sample.dir / name, target / name)
    n = round(input_seconds(sample) * OUTPUT_RATE)
    out = soxr.resample(np.asarray(pcm, dtype=np.float32), rate, OUTPUT_RATE) if rate != OUTPUT_RATE else pcm
    out = np.pad(out[:n], (0, max(0, n - len(out))))
    with atomic_path(target / OUTPUT_WAV) as tmp:
        sf.write(tmp, np.clip(out, -1.0, 1.0), OUTPUT_RATE, subtype="PCM_16", format="WAV")
    kept = cropped(sample, words)
    record = {
        "text": " ".join(w.text for w in kept),
        "chunks": [{"text": w.text, "timestamp": [w.start, w.end]} for w in kept],
    }
    write_text_atomic(target / OUTPUT_JSON, json.dumps(record, indent=1) + "\n")


def read_words(folder: Path) -> list[Word]:
    path = Path(folder) / OUTPUT_JSON
    try:
        chunks = json.loads(path.read_text(encoding="utf-8"))["chunks"]
        return [
            Word(
                str(c["text"]),
                float(c["timestamp"][0]),
                None if c["timestamp"][1] is None else float(c["timestamp"][1]),
            )
            for c in chunks
        ]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise InputError(path, f"not a Full-Duplex-Bench output.json ({e})") from None


def done(target: Path) -> bool:
    return (target / OUTPUT_JSON).is_file() and (target / OUTPUT_WAV).is_file()
