"""Benchmark (run by hand, not a test): the load figures of issue 22's memory bombs, side by side.

    .venv/bin/python bench/bench_limits.py --out /tmp/bench_limits [--hours 10]

1. Validating a long compressed file (48 kHz stereo FLAC of silence: a few MB hold hours): peak RSS of the
   validation in a fresh process, reading the whole file at once (how validation read audio before: measured at
   10 minutes, since 10 hours would need ~14 GB) against the block reader (`validate_dialogue`), at 10 minutes and
   at --hours.
2. Picking the largest transcript the import allows (MAX_WORDS words, at MAX_WORDS_PER_SECOND on the shortest
   audio that allows it) in the Data tab: seconds, size of the HTML sent, peak RSS.
Every measurement runs in its own process; peak = VmHWM - VmRSS before the measured call.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def status_mb(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def silent_flac(path: Path, seconds: float, rate: int) -> Path:
    block = np.zeros((rate * 60, 2), dtype=np.int16)
    with sf.SoundFile(str(path), "w", rate, 2, "PCM_16", format="FLAC") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)
    return path


# ---------------------------------------------------------------- measured in a child process


def whole_file(path: Path) -> None:
    """The old validation's reading: every sample as float32, then float64 per-channel sums."""
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(data.T)
    [float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) for x in audio]


def blocks(path: Path) -> None:
    from backend.data.files import DialogueFiles
    from backend.data.validate import validate_dialogue

    report = validate_dialogue(DialogueFiles(path.stem, path, None))
    assert report.audio_info is not None, report.issues


def pick(workspace: Path) -> dict:
    from backend.core.workspace import open_workspace
    from studio import data_tab

    report, preview = data_tab.on_pick(open_workspace(workspace), "largest")
    assert "✔ largest" in report, report
    return {"html_mb": len(preview.encode()) / 2**20}


def child(kind: str, target: Path) -> None:
    import backend.data.validate  # noqa: F401  (imports are not the measured call)
    import studio.data_tab  # noqa: F401

    before = status_mb("VmRSS")
    started = time.perf_counter()
    extra = {"whole": whole_file, "blocks": blocks, "pick": pick}[kind](target) or {}
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": status_mb("VmHWM") - before, **extra}))


def measure(kind: str, target: Path, hours_limit: float) -> dict:
    env = os.environ | {"MOSHI_STUDIO_MAX_AUDIO_HOURS": str(hours_limit)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(target)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the largest transcript


def largest_transcript(out: Path) -> Path:
    from backend.core.workspace import Workspace, WorkspaceSettings
    from backend.data.transcripts import MAX_WORDS, MAX_WORDS_PER_SECOND

    ws = Workspace(out / "workspace", WorkspaceSettings())
    ws.raw.mkdir(parents=True, exist_ok=True)
    seconds = MAX_WORDS / MAX_WORDS_PER_SECOND + 60
    silent_flac(ws.raw / "largest.flac", seconds, 16000)
    step = (seconds - 60) / MAX_WORDS
    words = [
        {"speaker": "AB"[i % 2], "word": f"word{i}", "start": round(i * step, 3), "end": round(i * step + step, 3)}
        for i in range(MAX_WORDS)
    ]
    (ws.raw / "largest.json").write_text(json.dumps(words))
    ws.with_settings(ws.settings)
    return ws.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_limits"))
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]))
    args.out.mkdir(parents=True, exist_ok=True)
    short = silent_flac(args.out / "ten_minutes.flac", 600, 48000)
    started = time.perf_counter()
    long = silent_flac(args.out / "long.flac", args.hours * 3600, 48000)
    print(
        f"wrote {args.hours:g} h of 48 kHz stereo silence as FLAC: {long.stat().st_size / 2**20:.1f} MB "
        f"in {time.perf_counter() - started:.0f} s"
    )
    rows = [
        ("whole file at once (before)", "10 min", measure("whole", short, 1)),
        ("blocks (now)", "10 min", measure("blocks", short, 1)),
        ("blocks (now)", f"{args.hours:g} h", measure("blocks", long, args.hours + 1)),
    ]
    print(f"\n{'validation of a silent FLAC':32} {'audio':>7} {'peak MB':>9} {'seconds':>8}")
    for label, length, r in rows:
        print(f"{label:32} {length:>7} {r['peak_mb']:9.0f} {r['seconds']:8.1f}")
    scale = args.hours * 6
    print(
        f"{'whole file at once (before)':32} {args.hours:g} h".ljust(41)
        + f"{rows[0][2]['peak_mb'] * scale:9.0f}   (10 min x {scale:g}: not run)"
    )
    r = measure("pick", largest_transcript(args.out), 2)
    from backend.data.transcripts import MAX_WORDS

    print(
        f"\npick of the largest allowed transcript ({MAX_WORDS} words): {r['seconds']:.1f} s, "
        f"{r['html_mb']:.1f} MB of HTML, peak +{r['peak_mb']:.0f} MB "
        "(issue 22's probe, a million words before the bound: 40 s, 268 MB, studio at 3.5 GB)"
    )


if __name__ == "__main__":
    main()
