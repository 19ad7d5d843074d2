"""Preprocessing across processes (backend.dataset.preprocess): two CPU ranks through the real `accelerate launch`
(gloo), started from a run folder of the run registry, write exactly the token files (tokenize_audio) and the
transcripts (annotate, real pocketsphinx) of one process."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from accelerate.commands.launch import launch_command_parser
from conftest import free_port

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.spec import SAMPLE_RATE
from backend.core.workspace import PREPROCESS_DIR
from backend.data.annotate.run import AnnotateConfig, annotate_folder
from backend.data.annotate.turns import format_turns
from backend.dataset import preprocess
from backend.dataset.tokenize_audio import AudioTokenizeConfig, tokenize_audio
from backend.demo.heldout_speech import heldout_dialogues
from backend.jobs import control, folder
from backend.jobs.command import accelerate_command, accelerate_executable
from backend.jobs.sharding import share
from backend.models.source import DEFAULT_REPO, random_mimi, save_mimi, tiny_mimi_config


def stereo(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((int(seconds * 16000), 2))).astype(np.float32)


def run_config(stage: str = "tokenize_audio", **values: object):  # type: ignore[no-untyped-def]
    return config.from_dict(preprocess.run_config_class(stage), values)


def test_the_default_mimi_is_moshis_own() -> None:
    from moshi.models import loaders

    assert DEFAULT_REPO == loaders.DEFAULT_REPO


def test_shares_give_every_file_to_exactly_one_rank(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate([5, 90, 30, 30, 1, 70, 12]):
        files.append(tmp_path / f"f{i}.wav")
        files[-1].write_bytes(b"x" * size)
    for world in (1, 2, 3, 7, 9):
        shares = [share(files, r, world) for r in range(world)]
        assert sorted(f for s in shares for f in s) == sorted(files)  # each file once
        assert all(s == [f for f in files if f in s] for s in shares)  # in the given order
        assert shares == [share(files, r, world) for r in range(world)]  # deterministic
    sizes = [sum(f.stat().st_size for f in share(files, r, 2)) for r in range(2)]
    assert abs(sizes[0] - sizes[1]) <= 30  # dealt from the largest down: balanced, not by name
    with pytest.raises(ValueError):
        share(files, 2, 2)


def test_one_command_per_machine_for_the_rank_module(tmp_path: Path) -> None:
    cfg = run_config(
        input_dir=str(tmp_path),
        output_dir=str(tmp_path / "out"),
        device="cuda",
        num_processes=4,
        num_machines=2,
        main_address="node0",
        gpu_ids="0,1",
    )
    lines = preprocess.commands("tokenize_audio", cfg, tmp_path / "run")
    assert len(lines) == 2
    for rank, line in enumerate(lines):
        argv = line.split()
        args = launch_command_parser().parse_args(argv[len(accelerate_executable()) :])
        assert args.module and args.training_script == preprocess.RANK_MODULE
        assert args.training_script_args == ["--run-dir", str(tmp_path / "run")]
        assert args.machine_rank == rank and args.num_processes == 4 and args.main_process_ip == "node0"
    with pytest.raises(ConfigError, match="multiple of num_machines"):
        preprocess.check(
            "tokenize_audio",
            run_config(
                input_dir=str(tmp_path), output_dir=str(tmp_path / "o"), device="cpu", num_processes=3, num_machines=2
            ),
        )
    with pytest.raises(ConfigError, match="input_dir"):
        preprocess.check("tokenize_audio", run_config(input_dir=str(tmp_path / "none"), output_dir=str(tmp_path)))


def wait_until_done(run: folder.Job, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while (state := control.status(run).get("state")) == "running":
        assert time.monotonic() < deadline, folder.tail_log(run)
        time.sleep(0.5)
    return state


def test_two_cpu_processes_write_what_one_process_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mimi_dir = save_mimi(random_mimi(tiny_mimi_config()), tiny_mimi_config(), tmp_path / "mimi")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, seconds in enumerate([1.3, 0.4, 2.1, 0.9, 1.0]):
        sf.write(str(inputs / f"d{i}.wav"), stereo(seconds, i), 16000)
    sf.write(str(inputs / "mono.wav"), stereo(0.5, 9)[:, 0], 16000)
    common = {"input_dir": inputs, "mimi": str(mimi_dir), "device": "cpu", "chunk_seconds": 0.4}
    single = tokenize_audio(AudioTokenizeConfig(output_dir=tmp_path / "one", **common))  # type: ignore[arg-type]
    assert len(single.written) == 5

    ws = tmp_path / "ws"
    cfg = run_config(**common, output_dir=str(tmp_path / "two"), num_processes=2, main_port=free_port())
    run = preprocess.create_run(ws, "tokenize_audio", cfg)
    assert run.dir.parent == ws.resolve() / PREPROCESS_DIR
    preprocess.start(run)
    assert wait_until_done(run) == "failed"  # the mono file fails: exit code 1, as the one-process CLI
    log = folder.tail_log(run, 100_000)
    summary = json.loads((run.dir / preprocess.SUMMARY_FILE).read_text())
    assert summary["ranks"] == 2 and summary["errors"] == [], log
    assert sorted(summary["summary"]["written"]) == sorted(single.written)
    assert list(summary["summary"]["failed"]) == ["mono.wav"]
    assert log.count("tokenize_audio, 2 rank(s): 5 written, 0 already done, 1 failed") == 1  # rank 0 only
    assert log.count("failed: ") == 1 and "is mono" in log
    fraction, messages = preprocess.progress(run)
    assert fraction == 1.0 and len(messages) == 2  # both ranks worked
    for name in single.written:
        with (
            np.load(tmp_path / "one" / f"{Path(name).stem}.npz") as a,
            np.load(tmp_path / "two" / f"{Path(name).stem}.npz") as b,
        ):
            for speaker in ("A", "B"):
                np.testing.assert_array_equal(a[speaker], b[speaker])

    # Started again (resume), both ranks find their files done.
    (tmp_path / "two" / "d2.npz").unlink()  # as if the rank holding it had died before writing it
    preprocess.start(run)
    wait_until_done(run)
    again = json.loads((run.dir / preprocess.SUMMARY_FILE).read_text())["summary"]
    assert again["written"] == ["d2.wav"] and sorted(again["skipped"]) == sorted(set(single.written) - {"d2.wav"})


def test_two_cpu_processes_annotate_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, d in enumerate(heldout_dialogues(3, seed=5, turns_per_dialogue=2)):
        sf.write(inputs / f"{d.name}.wav", d.audio.T, SAMPLE_RATE, subtype="PCM_16")
        if i:  # the first in ASR mode, the others placing their known words
            (inputs / f"{d.name}.txt").write_text(format_turns(d.turns))
    sf.write(inputs / "mono.wav", np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    single = annotate_folder(AnnotateConfig(input=inputs, output=tmp_path / "one"))
    assert len(single.written) == 3 and list(single.failed) == ["mono"]

    with pytest.raises(ConfigError, match="whisper_model"):  # the stage's own check, before any launch
        preprocess.create_run(tmp_path / "ws", "annotate", run_config("annotate", input=str(inputs), engine="whisper"))
    cfg = run_config(
        "annotate",
        input=str(inputs),
        output=str(tmp_path / "two"),
        device="cpu",
        num_processes=2,
        main_port=free_port(),
    )
    run = preprocess.create_run(tmp_path / "ws", "annotate", cfg)
    preprocess.start(run)
    assert wait_until_done(run) == "failed"  # the mono file
    log = folder.tail_log(run, 100_000)
    summary = json.loads((run.dir / preprocess.SUMMARY_FILE).read_text())
    assert summary["ranks"] == 2 and summary["errors"] == [], log
    assert summary["summary"]["written"] == single.written and list(summary["summary"]["failed"]) == ["mono"]
    assert log.count("annotate, 2 rank(s): 3 written, 0 already done, 1 failed") == 1, log  # rank 0 only
    assert log.count("failed: ") == 1 and "mono.wav" in log
    assert preprocess.read_outcome(run)[0].startswith("annotate, 2 rank(s): 3 written")
    fraction, messages = preprocess.progress(run)
    assert fraction == 1.0 and len(messages) == 2 and all("100%" in m for m in messages)  # both ranks worked
    for name in single.written:
        assert (tmp_path / "two" / f"{name}.json").read_text() == (tmp_path / "one" / f"{name}.json").read_text()

    # Started again, the ranks skip what is done (a transcript on disk means done).
    (tmp_path / "two" / f"{single.written[1]}.json").unlink()
    preprocess.start(run)
    wait_until_done(run)
    again = json.loads((run.dir / preprocess.SUMMARY_FILE).read_text())["summary"]
    assert again["written"] == [single.written[1]] and len(again["skipped"]) == 2


def test_cli_start_slurm_writes_every_node_command(tmp_path: Path) -> None:
    from dataclasses import replace

    from test_slurm import HOSTS, run_script

    (tmp_path / "in").mkdir()
    script = tmp_path / "tok.sbatch"
    assert (
        preprocess.main(
            [
                "start",
                "tokenize_audio",
                "--slurm",
                str(script),
                "--workspace",
                str(tmp_path),
                "--input-dir",
                str(tmp_path / "in"),
                "--output-dir",
                str(tmp_path / "out"),
                "--device",
                "cpu",
                "--num-processes",
                "8",
                "--num-machines",
                "4",
            ]
        )
        == 0
    )
    (run,) = preprocess.list_runs(tmp_path)
    assert control.status(run)["state"] == "queued"
    _, cfg = preprocess.load(run)
    argvs, envs = run_script(script.read_text(), tmp_path / "nodes")
    assert argvs == [
        accelerate_command(replace(cfg, main_address=HOSTS[0]), run.dir, preprocess.RANK_MODULE, rank)
        for rank in range(4)
    ]
    assert all(env["ACCELERATE_USE_CPU"] == "true" for env in envs)
    assert preprocess.main(["resume", run.id, "--workspace", str(tmp_path)]) == 2  # for sbatch, not for here
    assert control.status(run)["attempts"] == 0
