"""Turn-taking statistics on synthetic stereo signals whose IPUs, pauses, gaps, overlaps and backchannels
are known exactly (tone and noise bursts on the 10 ms voice-activity grid)."""

import json
from pathlib import Path

import numpy as np
import pytest

from backend.core.spec import SAMPLE_RATE
from backend.data import vad
from backend.data.audio_io import write_stereo_wav
from backend.inference.turn_taking import TurnTakingConfig, analyse, compare, main

SR = SAMPLE_RATE


def burst(x: np.ndarray, start: float, end: float, kind: str = "tone", level: float = 0.3, seed: int = 0) -> None:
    """Write a burst into x over [start, end) seconds: a 220 Hz tone or white noise of RMS `level`."""
    a, b = int(round(start * SR)), int(round(end * SR))
    t = np.arange(b - a) / SR
    if kind == "tone":
        x[a:b] = level * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)
    else:
        x[a:b] = level * np.random.default_rng(seed).standard_normal(b - a)


# Speaker A holds the floor, B backchannels inside A's turn, then they trade turns with a gap, an
# overlapping take-over, a within-speaker overlap and a short (but not backchannel) reply after silence.
A_BURSTS = [
    (0.5, 1.2),
    (1.3, 2.0),  # 0.1 s silence: one IPU [0.5, 2.0]
    (2.5, 4.0),
    (5.6, 7.0),
    (8.0, 9.2),
    (10.2, 10.5),
]
B_BURSTS = [
    (1.0, 1.03),  # a 30 ms click: dropped
    (3.0, 3.3),  # backchannel inside A's turn [0.5, 4.0] (A's 0.5 s pause is bridged)
    (4.3, 6.0),
    (7.8, 9.5),
]
DURATION = 11.0


def scenario(kind_a: str = "tone", kind_b: str = "noise") -> np.ndarray:
    audio = np.zeros((2, int(DURATION * SR)), dtype=np.float32)
    for i, (s, e) in enumerate(A_BURSTS):
        burst(audio[0], s, e, kind_a, seed=i)
    for i, (s, e) in enumerate(B_BURSTS):
        burst(audio[1], s, e, kind_b, seed=100 + i)
    return audio


def test_scenario_statistics_are_exact() -> None:
    t = analyse(scenario(), SR, TurnTakingConfig(), "synthetic")
    assert t.ipus == {
        "A": [(0.5, 2.0), (2.5, 4.0), (5.6, 7.0), (8.0, 9.2), (10.2, 10.5)],
        "B": [(3.0, 3.3), (4.3, 6.0), (7.8, 9.5)],
    }
    assert t.backchannels == {"A": [], "B": [(3.0, 3.3)]}
    assert t.pauses == {"A": [(2.0, 2.5)], "B": []}
    assert t.gaps == [(4.0, 4.3), (7.0, 7.8), (9.5, 10.2)]
    assert t.overlaps_between == [(5.6, 6.0)]  # A takes the floor from B while B finishes
    assert t.overlaps_within == [(8.0, 9.2)]  # A talks (1.2 s: no backchannel) inside B's turn, B goes on
    assert [(f.from_speaker, f.to_speaker, f.time, f.offset) for f in t.floor_transfers] == [
        ("A", "B", 4.3, 0.3),
        ("B", "A", 6.0, -0.4),
        ("A", "B", 7.8, 0.8),
        ("B", "A", 10.2, 0.7),
    ]
    assert t.talk_seconds == pytest.approx({"A": 5.9, "B": 3.7})
    assert t.talk_ratio["A"] == pytest.approx(5.9 / 9.6)
    assert t.overlap_seconds == pytest.approx(0.3 + 0.4 + 1.2)  # the backchannel overlaps A too
    assert t.first_speech == {"A": 0.5, "B": 3.0}
    assert t.backchannel_rate == pytest.approx({"A": 0.0, "B": 1 / (5.9 / 60)})


def test_channels_swapped_swap_the_statistics() -> None:
    t = analyse(scenario("noise", "tone")[::-1].copy(), SR, TurnTakingConfig())
    assert t.backchannels == {"A": [(3.0, 3.3)], "B": []}
    assert [(f.from_speaker, f.offset) for f in t.floor_transfers] == [("B", 0.3), ("A", -0.4), ("B", 0.8), ("A", 0.7)]


def test_window_starts_the_clock_at_the_prompt_end() -> None:
    t = analyse(scenario(), SR, TurnTakingConfig(start_seconds=4.2, end_seconds=9.0))
    assert t.ipus == {"A": [(5.6, 7.0), (8.0, 9.0)], "B": [(4.3, 6.0), (7.8, 9.0)]}
    assert t.first_speech == {"A": pytest.approx(1.4), "B": pytest.approx(0.1)}
    assert [f.offset for f in t.floor_transfers] == [-0.4, 0.8]
    assert t.gaps == [(7.0, 7.8)]  # the silence before B's first IPU in the window is no gap


def test_hysteresis_keeps_a_fading_voice_and_ignores_a_quiet_one() -> None:
    x = np.zeros(3 * SR, dtype=np.float32)
    loud, between = 0.1, 10 ** (-42 / 20)  # -20 dBFS, then -42 dBFS: between off (-45) and on (-40)
    burst(x, 0.5, 1.0, level=loud)
    burst(x, 1.0, 1.5, level=between)  # continues the loud unit
    burst(x, 2.0, 2.5, level=between)  # never reaches the on threshold
    assert vad.ipus(x, SR) == [(0.5, 1.5)]


def test_boundaries_off_the_grid_are_found_within_one_frame() -> None:
    x = np.zeros(2 * SR, dtype=np.float32)
    burst(x, 0.5037, 1.2461, level=0.3)
    ((s, e),) = vad.ipus(x, SR)
    assert abs(s - 0.5037) <= 0.01 and abs(e - 1.2461) <= 0.01


def test_compare_shares_edges_and_counts_every_value(tmp_path: Path) -> None:
    cfg = TurnTakingConfig()
    one = analyse(scenario(), SR, cfg, "ref")
    silent = analyse(np.zeros((2, SR), dtype=np.float32), SR, cfg, "silent")
    out = compare({"reference": [one, one], "generated": [silent]}, bins=5)
    fto = out["metrics"]["floor_transfer_offset"]
    assert len(fto["edges"]) == 6
    ref, gen = fto["by_source"]["reference"], fto["by_source"]["generated"]
    assert ref["n"] == 8 and sum(ref["counts"]) == 8 and ref["median"] == pytest.approx(0.5)
    assert gen["n"] == 0 and gen["median"] is None and sum(gen["counts"]) == 0
    assert out["metrics"]["time_to_first_speech"]["by_source"]["reference"]["mean"] == pytest.approx(0.5)
    assert out["metrics"]["talk_ratio_A"]["by_source"]["generated"]["n"] == 0  # nobody talks: no ratio


def test_cli_writes_json_for_labelled_sources(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_stereo_wav(tmp_path / "ref" / "d1.wav", scenario())
    write_stereo_wav(tmp_path / "gen.wav", scenario()[:, : 5 * SR])
    out = tmp_path / "stats.json"
    assert (
        main(["--inputs", f"reference={tmp_path / 'ref'}", f"generated={tmp_path / '*.wav'}", "--output", str(out)])
        == 0
    )
    result = json.loads(out.read_text())
    assert result["comparison"]["sources"] == ["reference", "generated"]
    (ref,) = result["dialogues"]["reference"]
    assert [f["offset"] for f in ref["floor_transfers"]] == [0.3, -0.4, 0.8, 0.7]  # 16-bit WAV: same IPUs
    assert result["dialogues"]["generated"][0]["duration"] == pytest.approx(5.0)
    assert main(["--inputs", str(tmp_path / "missing")]) == 2
    assert "no audio file here" in capsys.readouterr().err
