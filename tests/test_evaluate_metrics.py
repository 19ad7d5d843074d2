"""Full-Duplex-Bench's formulas (backend.evaluate.metrics) on hand-made cases with known answers, and the sample
folders the studio writes checked field by field against what FD-Bench's scripts read."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.evaluate import fdb, metrics
from backend.evaluate.metrics import Word
from backend.evaluate.score import summarise, turn_events


def said(start: float, n: int = 5, step: float = 0.3) -> list[Word]:
    """`n` words from `start`, one every `step` seconds."""
    return [Word(f"w{i}", round(start + i * step, 3), round(start + i * step + 0.25, 3)) for i in range(n)]


def test_a_model_that_never_speaks_takes_no_turn_and_has_no_latency() -> None:
    assert metrics.take_over([]) == 0
    assert metrics.latency([], turn_end=2.0) is None


def test_a_model_that_answers_two_seconds_after_each_turn_end() -> None:
    turn_ends = [1.5, 3.0, 4.2]
    latencies = [metrics.latency(said(end + 2.0), end) for end in turn_ends]
    assert latencies == pytest.approx([2.0, 2.0, 2.0])


def test_a_model_that_talks_over_every_pause_has_tor_1_and_latency_clipped_at_0() -> None:
    sample = fdb.Sample(Path("x"), "pause_handling", "pause.json", [(2.0, 3.5)], [])
    records = [
        {"task": "pause_handling", "events": turn_events(sample, said(2.2)), "stop_latency": [], "response_latency": []}
        for _ in range(4)
    ]
    assert summarise(records)["pause_handling"]["tor"] == 1.0
    assert metrics.latency(said(0.5), turn_end=2.0) == 0.0


@pytest.mark.parametrize(
    "words, tor",
    [
        ([Word("a", 0.0, 0.2), Word("b", 0.3, 0.5)], 0),  # short and few: no turn
        ([Word(str(i), i * 0.1, i * 0.1 + 0.05) for i in range(4)], 1),  # short but more than 3 words
        ([Word("a", 0.0, 0.4), Word("b", 0.6, 1.0)], 1),  # spans 1 s
        ([Word("a", 0.0, 0.4), Word("b", 1.0, None)], 1),  # a null end counts from its start
    ],
)
def test_take_over_thresholds(words: list[Word], tor: int) -> None:
    assert metrics.take_over(words) == tor


def test_backchannels_only_give_count_over_seconds() -> None:
    segments = [(1.0, 1.4), (3.0, 3.3), (6.0, 6.5)]
    words = [Word("mhm", 1.0, 1.3), Word("yeah", 3.0, 3.2), Word("okay", 6.1, 6.4)]
    found = metrics.backchannels(segments, words, duration=10.0, reference=None)
    assert found.tor == 0 and found.segments == segments
    assert found.frequency == pytest.approx(3 / 10.0)


def test_a_long_segment_is_a_take_over_and_ends_the_scan() -> None:
    found = metrics.backchannels([(1.0, 1.4), (2.0, 6.0), (7.0, 7.2)], [], duration=10.0, reference=None)
    assert found.tor == 1 and found.segments == [(1.0, 1.4)]


def test_jsd_of_identical_distributions_is_0_and_of_disjoint_ones_is_the_maximum() -> None:
    p = metrics.timing_distribution([(1.0, 1.4), (3.0, 3.3)], 5.0)
    assert metrics.jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-6)
    found = metrics.backchannels([(1.0, 1.4), (3.0, 3.3)], [], 5.0, reference=p)
    assert found.jsd == pytest.approx(0.0, abs=1e-6)
    assert metrics.jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(np.sqrt(np.log(2)))
    assert metrics.backchannels([], [], 5.0, reference=p).jsd == 1.0  # FD-Bench: no backchannel scores 1


def test_timing_bins_are_fd_bench_s() -> None:
    p = metrics.timing_distribution([(0.25, 0.45)], 1.0)  # int(1.0 / 0.2) + 1 = 6 bins, bins 1 and 2 hit
    assert len(p) == 6 and p[1] == pytest.approx(0.5) and p[2] == pytest.approx(0.5) and p[0] < 1e-9


def test_v1_5_timing_merges_gaps_and_measures_stop_and_response() -> None:
    user = metrics.merge_gaps([(0.0, 2.0), (2.5, 4.0), (8.0, 9.0)], metrics.USER_MERGE_GAP)
    assert user == [(0.0, 4.0), (8.0, 9.0)]
    model = metrics.merge_gaps([(3.5, 5.0), (5.4, 6.0), (10.0, 11.0)], metrics.MODEL_MERGE_GAP)
    assert model == [(3.5, 6.0), (10.0, 11.0)]
    assert metrics.stop_intervals(user, model) == [(3.5, 4.0)]
    assert metrics.response_intervals(user, model) == [(9.0, 10.0)]


def test_dialogue_turns_score_each_event_inside_its_window() -> None:
    sample = fdb.Sample(
        Path("x"), "dialogue_turns", fdb.TURNS_FILE, [(2.0, 2.5), (6.0, 6.3)], [(0.0, 4.0), (4.0, None)]
    )
    events = turn_events(sample, said(2.5) + said(8.0))
    assert [e["tor"] for e in events] == [1, 1]
    assert [e["latency"] for e in events] == pytest.approx([0.5, 2.0])
    assert [e["reference_latency"] for e in events] == pytest.approx([0.5, 0.3])


def write_probe(folder: Path, task_file: str, record: object, seconds: float = 3.0, rate: int = 48_000) -> fdb.Sample:
    folder.mkdir(parents=True)
    sf.write(folder / fdb.INPUT, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    (folder / task_file).write_text(json.dumps(record))
    return fdb.read_sample(folder)


def test_written_folders_match_fd_bench_field_by_field(tmp_path: Path) -> None:
    # interrupt.json as FD-Bench's synthetic user-interruption samples have it: asr.py crops at timestamp[1]
    sample = write_probe(
        tmp_path / "in" / "1", "interrupt.json", [{"context": "c", "interrupt": "i", "timestamp": [1.0, 1.5]}]
    )
    assert sample.task == "user_interruption" and sample.turn_end == 1.5
    words = [Word("before", 0.5, 0.9), Word("after", 1.6, 1.9), Word("end", 2.0, None)]
    out = tmp_path / "out" / "1"
    fdb.write_sample(sample, out, np.full(24_000 * 4, 0.1, dtype=np.float32), 24_000, words)
    assert sorted(p.name for p in out.iterdir()) == ["input.wav", "interrupt.json", "output.json", "output.wav"]
    info = sf.info(out / fdb.OUTPUT_WAV)  # same length as input.wav, mono, 16 kHz 16-bit
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16_000, 1, "PCM_16", 48_000)
    record = json.loads((out / fdb.OUTPUT_JSON).read_text())
    assert set(record) == {"text", "chunks"} and record["text"] == "after end"
    assert record["chunks"] == [{"text": "after", "timestamp": [1.6, 1.9]}, {"text": "end", "timestamp": [2.0, None]}]
    assert fdb.read_words(out) == words[1:]
    # what eval_user_interruption reads, exactly as it reads it
    meta = json.loads((out / "interrupt.json").read_text())
    assert meta[0]["timestamp"][1] == 1.5 and isinstance(meta[0]["interrupt"], str)


def test_task_files_are_recognised_as_fd_bench_names_them(tmp_path: Path) -> None:
    turn = write_probe(tmp_path / "t" / "1", "turn_taking.json", [{"text": "[TURN-TAKING]", "timestamp": [2.0, 2.4]}])
    assert turn.task == "smooth_turn_taking" and turn.turn_end == 2.0  # eval_smooth_turn_taking: timestamp[0]
    pause = write_probe(tmp_path / "p" / "1", "pause.json", [{"text": "[PAUSE]", "timestamp": [1.0, 2.0]}])
    assert pause.task == "pause_handling"
    v15 = write_probe(
        tmp_path / "background_speech" / "7",
        "metadata.json",
        {"context_text": "a", "current_turn_text": "b", "timestamps": [1.0, 2.0]},
    )
    assert v15.task == "background_speech" and v15.events == [(1.0, 2.0)]
    icc = tmp_path / "icc_backchannel" / "3"
    icc.mkdir(parents=True)
    sf.write(icc / fdb.INPUT, np.zeros(16_000, dtype=np.float32), 16_000)
    (icc.parent / fdb.REFERENCE_FILE).write_text(json.dumps({"3": [0.5, 0.5]}))
    assert fdb.read_sample(icc).task == "backchannel"
    assert fdb.reference_timing(fdb.read_sample(icc)).tolist() == [0.5, 0.5]


def test_the_shipped_probe_sets_are_fd_bench_samples() -> None:
    from backend.core.paths import PROBE_SETS

    tasks = {s.task for s in fdb.find_samples(PROBE_SETS / "studio-en")}
    assert tasks == {"pause_handling", "smooth_turn_taking", "user_interruption", "backchannel"}
    for sample in fdb.find_samples(PROBE_SETS / "demo-turns"):
        assert sample.task == "dialogue_turns" and len(sample.events) == len(sample.windows) >= 3
