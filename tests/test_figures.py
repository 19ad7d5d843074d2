"""Figures people keep: each CLI's --plot writes a complete PNG of the expected size, a run folder gets its
loss curves, and a path a figure cannot be written to is refused with a message before any work."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from figure_helpers import png_size
from train_helpers import write_dataset

from backend.core import config, figures
from backend.core.errors import ConfigError
from backend.core.spec import SAMPLE_RATE
from backend.data import validate
from backend.data.audio_io import write_stereo_wav
from backend.dataset import timeline
from backend.finetune import runs
from backend.finetune.config import FinetuneConfig
from backend.inference import turn_taking
from backend.jobs import control, folder

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets" / "demo"


def metrics_rows() -> list[dict]:
    rows = [
        {
            "step": s,
            "max_steps": 20,
            "loss": 5.0 / s,
            "text_loss": 1.0 / s,
            "audio_loss": 4.0 / s,
            "moshi_semantic_loss": 3.0 / s,
            "moshi_acoustic_loss": 6.0 / s,
            "user_acoustic_loss": None,
        }
        for s in range(1, 21)
    ]
    return rows + [{"event": "eval", "step": 20, "loss": 0.4, "text_loss": 0.1}, {"event": "finished", "step": 20}]


def turns_wav(path: Path, offset: float) -> Path:
    """A stereo dialogue of noise bursts: A speaks, then B `offset` seconds after A stops, then A again."""
    rng = np.random.default_rng(0)
    audio = np.zeros((2, 6 * SAMPLE_RATE), dtype=np.float32)
    for channel, start, end in ((0, 0.5, 2.0), (1, 2.0 + offset, 3.5), (0, 4.0, 5.5)):
        span = slice(int(start * SAMPLE_RATE), int(end * SAMPLE_RATE))
        audio[channel, span] = 0.3 * rng.standard_normal(span.stop - span.start)
    return write_stereo_wav(path, audio)


def test_every_figure_is_a_complete_png_of_its_size(tmp_path: Path) -> None:
    sr = SAMPLE_RATE
    audio = np.random.default_rng(0).standard_normal((2, 3 * sr)).astype(np.float32) * 0.1
    silent = np.zeros((2, sr // 2), dtype=np.float32)  # shorter than the other side and all zero: still drawn
    comparison = turn_taking.compare({"reference": [turn_taking.analyse(audio, sr, turn_taking.TurnTakingConfig())]})
    drawn = {
        "loss": (figures.loss_curves(metrics_rows(), "run x"), (1200, 450)),
        "loss_empty": (figures.loss_curves([]), (1200, 450)),
        "spectrograms": (figures.spectrograms(audio, silent, sr, prompt_seconds=1.0), (1200, 550)),
        "turns": (figures.turn_taking_histograms(comparison), (1600, 560)),
        "gaps": (figures.gap_histogram([-1.0, 0.0, 1.0, 2.0], [1, 3, 2]), (700, 400)),
        "gaps_empty": (figures.gap_histogram([], []), (700, 400)),
    }
    for name, (fig, size) in drawn.items():
        path = figures.save(fig, tmp_path / f"{name}.png")
        assert png_size(path) == size, name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in drawn)  # no temp files left


@pytest.mark.parametrize(
    "bad, message",
    [
        ("out.jpg", "must be a .png file name"),
        ("missing/out.png", "folder .*missing does not exist"),
        ("folder.png", "is a folder"),
    ],
)
def test_a_path_a_figure_cannot_go_to_is_refused_clearly(tmp_path: Path, bad: str, message: str) -> None:
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ConfigError, match=message):
        figures.check_png_path(tmp_path / bad)


def test_turn_taking_cli_plots_the_histograms(tmp_path: Path) -> None:
    ref, gen = turns_wav(tmp_path / "ref.wav", 0.3), turns_wav(tmp_path / "gen.wav", -0.4)
    out, plot = tmp_path / "tt.json", tmp_path / "tt.png"
    assert (
        turn_taking.main(
            ["--inputs", f"reference={ref}", f"generated={gen}", "--output", str(out), "--plot", str(plot)]
        )
        == 0
    )
    assert png_size(plot) == (1600, 560)
    # A bad --plot is refused before the analysis writes anything.
    out.unlink()
    assert turn_taking.main(["--inputs", str(ref), "--output", str(out), "--plot", str(tmp_path / "no/x.png")]) == 2
    assert not out.exists()


def test_validate_cli_plots_the_gap_histogram_of_the_valid_dialogues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for suffix in (".flac", ".json"):
        shutil.copy(DEMO / f"demo_cafe{suffix}", raw)
    (raw / "broken.json").write_text("[]")  # no audio: reported, left out of the statistics
    plot = tmp_path / "gaps.png"
    assert validate.main(["--input", str(raw), "--plot", str(plot)]) == 1
    assert png_size(plot) == (700, 400) and "BAD" in capsys.readouterr().out
    assert validate.main(["--input", str(raw), "--plot", str(tmp_path / "gaps.svg")]) == 2
    assert "must be a .png" in capsys.readouterr().err


def test_timeline_cli_plots_the_window(tmp_path: Path, demo_workspace) -> None:  # type: ignore[no-untyped-def]
    data = write_dataset(tmp_path / "data", [60])
    plot = tmp_path / "window.png"
    assert (
        timeline.main(
            [
                "--dataset",
                str(data),
                "--dialogue-id",
                "train/d000",
                "--start",
                "1",
                "--seconds",
                "2",
                "--tokenizer",
                str(demo_workspace.demo_tokenizer),
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    assert png_size(plot) == (800, 720)  # 25 frames: the minimum width; three panels


def test_runs_show_plots_the_loss_curves_and_a_run_folder_gets_them_when_it_ends(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "20260101-000000-x"
    run_dir.mkdir(parents=True)
    config.save(FinetuneConfig(), run_dir / folder.CONFIG_FILE)
    (run_dir / folder.STATUS_FILE).write_text(json.dumps({"state": "queued", "created": 0.0}))
    (run_dir / folder.METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in metrics_rows()))
    plot = tmp_path / "loss.png"
    assert runs.main(["show", "--workspace", str(tmp_path), run_dir.name, "--plot", str(plot)]) == 0
    assert png_size(plot) == (1200, 450)
    assert runs.main(["show", "--workspace", str(tmp_path), run_dir.name, "--plot", str(tmp_path)]) == 2
    # The supervisor runs the run's finish step, which draws its summary, however it ends (here: it fails at once,
    # before recording "finished", which would make a non-zero launcher exit a finished run).
    (run_dir / folder.METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in metrics_rows()[:-1]))
    command = runs.write_command(folder.Job(run_dir), FinetuneConfig(device="cpu"))
    command["argv"] = [sys.executable, "-c", "raise SystemExit(3)"]
    (run_dir / folder.COMMAND_FILE).write_text(json.dumps(command))
    proc = subprocess.run(
        [sys.executable, "-m", "backend.jobs.supervisor", str(run_dir)],
        cwd=REPO,
        input=b"",
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert control.status(folder.Job(run_dir))["state"] == "failed"
    assert png_size(run_dir / runs.SUMMARY_PLOT) == (1200, 450)
