"""Write the project's behaviour probe sets (assets/probes/, developers: `python -m backend.demo.probes`), in
Full-Duplex-Bench's sample layout (backend.evaluate.fdb) with exact turn times: every phrase is synthesized alone,
trimmed to its first and last audible sample and placed at a chosen offset, so its span is known to the sample.

- studio-en: English user turns (piper's "joe" and an espeak-ng voice, 16 kHz as FD-Bench's samples) that pause
  mid-turn (pause_handling), that end and wait (smooth_turn_taking), that interrupt the model after it was asked
  something (user_interruption), and a story told in short phrases with room for a backchannel after each
  (backchannel, with its reference timing in icc_gt_distribution.json).
- demo-turns: the user's channel (speaker B) of each demo dialogue (assets/demo), with every place where
  speaker A, whom the demo preset fine-tunes Moshi to play, takes the turn (task dialogue_turns, turns.json):
  a model that learnt the demo answers there, after the dialogue's own gap.
"""

import itertools
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from backend.core import intervals
from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.config import cli_parser, from_cli, option
from backend.core.errors import StudioError
from backend.core.paths import PROBE_SETS
from backend.core.spec import SAMPLE_RATE
from backend.data.audio_io import load_stereo
from backend.data.stats import TURN_BRIDGE
from backend.data.transcripts import load_transcript
from backend.demo.dialogues import DEMO_DIR, TRIM_THRESHOLD
from backend.demo.speech_corpus import CorpusVoice, synthesize
from backend.evaluate.fdb import INPUT, REFERENCE_FILE, TURNS_FILE
from backend.evaluate.metrics import BACKCHANNEL_SECONDS as BACKCHANNEL_MAX
from backend.evaluate.metrics import timing_distribution
from backend.inference.turn_taking import backchannels

RATE = 16_000  # FD-Bench's samples are 16 kHz
LEAD, TAIL = 0.5, 3.0  # seconds of silence before the first phrase and after the last
VOICES = (CorpusVoice("piper", "joe", speed=1.0, noise=False), CorpusVoice("espeak", "en-us", 38, 1.0))


@dataclass(frozen=True)
class Phrase:
    text: str
    gap: float  # seconds of silence before it (after the previous phrase)


# (task, phrases, task file text): the task file's span is taken between the phrases marked below.
SCRIPTS = {
    "pause_handling": [
        (Phrase("I was thinking about going to the", 0.0), Phrase("market tomorrow morning.", 1.6)),
        (Phrase("So what I really need is", 0.0), Phrase("a quiet place to work.", 1.8)),
    ],
    "smooth_turn_taking": [
        (Phrase("Could you tell me where the station is?", 0.0),),
        (Phrase("What time does the museum open on Sunday?", 0.0),),
    ],
    "user_interruption": [
        (Phrase("Can you tell me about the history of the city?", 0.0), Phrase("Wait, what about the river?", 3.0)),
        (Phrase("Tell me how to bake bread.", 0.0), Phrase("Sorry, how long does it rise?", 3.0)),
    ],
    "backchannel": [
        (
            Phrase("So yesterday I went to the market,", 0.0),
            Phrase("and the bakery was closed,", 0.9),
            Phrase("so I walked to the river,", 0.9),
            Phrase("and then it started to rain.", 0.9),
        ),
        (
            Phrase("My sister called me this morning,", 0.0),
            Phrase("she found a new flat,", 0.9),
            Phrase("it is close to the park,", 0.9),
            Phrase("and she moves next week.", 0.9),
        ),
    ],
}
TEXT = {"pause_handling": "[PAUSE]", "smooth_turn_taking": "[TURN-TAKING]", "backchannel": "[BACKCHANNEL]"}


def _trimmed(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > TRIM_THRESHOLD)
    if loud.size == 0:
        raise StudioError("the synthesizer produced silence")
    return audio[loud[0] : loud[-1] + 1]


def render(
    phrases: tuple[Phrase, ...], voice: CorpusVoice, workdir: Path
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The phrases on one 16 kHz channel and each one's exact span (seconds)."""
    clips = [soxr.resample(_trimmed(synthesize(p.text, voice, workdir)), SAMPLE_RATE, RATE) for p in phrases]
    spans, cursor = [], int(LEAD * RATE)
    for phrase, clip in zip(phrases, clips):
        cursor += int(phrase.gap * RATE)
        spans.append((cursor, cursor + len(clip)))
        cursor += len(clip)
    signal = np.zeros(cursor + int(TAIL * RATE), dtype=np.float32)
    for (start, end), clip in zip(spans, clips):
        signal[start:end] = clip
    return signal, [(round(s / RATE, 6), round(e / RATE, 6)) for s, e in spans]


def task_file(task: str, phrases: tuple[Phrase, ...], spans: list[tuple[float, float]]) -> tuple[str, object]:
    """The FD-Bench task file of a rendered script."""
    if task == "pause_handling":
        return "pause.json", [{"text": TEXT[task], "timestamp": [spans[0][1], spans[1][0]]}]
    if task == "smooth_turn_taking":
        return "turn_taking.json", [{"text": TEXT[task], "timestamp": [spans[0][1], spans[0][1] + TAIL]}]
    if task == "user_interruption":
        return "interrupt.json", [
            {"context": phrases[0].text, "interrupt": phrases[1].text, "timestamp": list(spans[1])}
        ]
    return "backchannel.json", [{"text": TEXT[task], "timestamp": [a[1], b[0]]} for a, b in itertools.pairwise(spans)]


def write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(signal, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")


def write_studio_set(folder: Path) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as workdir:
        for task, scripts in SCRIPTS.items():
            references = {}
            for i, (phrases, voice) in enumerate(zip(scripts, VOICES)):
                sample = folder / task / f"{i + 1}"
                signal, spans = render(phrases, voice, Path(workdir))
                name, record = task_file(task, phrases, spans)
                write_wav(sample / INPUT, signal, RATE)
                write_text_atomic(sample / name, json.dumps(record, indent=1) + "\n")
                if task == "backchannel":
                    slots = [tuple(r["timestamp"]) for r in record]
                    references[sample.name] = timing_distribution(slots, len(signal) / RATE).tolist()
                written.append(sample)
            if references:
                write_text_atomic(folder / task / REFERENCE_FILE, json.dumps(references) + "\n")
    return written


def dialogue_turns(words_a: list, words_b: list) -> list[dict]:
    """Each place where A takes the turn from B (the user): B's turn, its end, A's first word after it."""
    turns_b = intervals.merge([(w.start, w.end) for w in words_b], bridge=TURN_BRIDGE)
    said_a = [(w.start, w.end) for w in words_a]
    heard = backchannels(turns_b, said_a, BACKCHANNEL_MAX, TURN_BRIDGE)  # the user's "mhm" does not yield the turn
    turns_b = [t for t in turns_b if t not in heard]
    events = []
    for i, (start, end) in enumerate(turns_b):
        following = turns_b[i + 1][0] if i + 1 < len(turns_b) else float("inf")
        answer = [w.start for w in words_a if end - 1.0 < w.start < following and w.end > end]
        if answer:
            events.append(
                {
                    "text": "[TURN-TAKING]",
                    "timestamp": [end, min(answer)],
                    "window": [start, None if following == float("inf") else following],
                }
            )
    return events


def write_demo_set(folder: Path, dialogues: Path = DEMO_DIR) -> list[Path]:
    written = []
    for audio_path in sorted(dialogues.glob("*.flac")):
        audio, _ = load_stereo(audio_path)
        transcript = load_transcript(audio_path.with_suffix(".json"))
        events = dialogue_turns(transcript.speaker_words("A"), transcript.speaker_words("B"))
        sample = folder / "dialogue_turns" / audio_path.stem
        write_wav(sample / INPUT, audio[1], SAMPLE_RATE)  # 24 kHz kept: the codes the model was trained on
        write_text_atomic(sample / TURNS_FILE, json.dumps(events, indent=1) + "\n")
        written.append(sample)
    return written


@dataclass
class ProbesConfig:
    output: str = option(str(PROBE_SETS), "folder to write the probe sets (studio-en/, demo-turns/) into")


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser(ProbesConfig, "Synthesize the behaviour probe sets (exact turn times).")
    cfg = from_cli(ProbesConfig, parser.parse_args(argv))
    try:
        written = write_studio_set(Path(cfg.output) / "studio-en") + write_demo_set(Path(cfg.output) / "demo-turns")
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
