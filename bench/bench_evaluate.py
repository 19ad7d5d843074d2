"""Evaluation time per minute of probe audio for the demo model on this machine: every studio-en probe streamed
through the chat engine (backend.evaluate.stream) and scored (silero-vad, FD-Bench's formulas), in one process.

    .venv/bin/python bench/bench_evaluate.py
"""

import tempfile
import time
from pathlib import Path

from backend.core.paths import PROBE_SETS
from backend.core.spec import SAMPLE_RATE
from backend.demo.workspace import create_demo_workspace
from backend.evaluate import fdb
from backend.evaluate.config import DEFAULT_SET, EvaluateConfig
from backend.evaluate.rank import chat_config, user_audio
from backend.evaluate.score import score_folder
from backend.evaluate.stream import stream
from backend.inference.chat_engine import ChatEngine


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = create_demo_workspace(Path(tmp) / "ws")
        cfg = EvaluateConfig(mimi=ws.mimi_source, tokenizer=str(ws.tokenizer_path))
        engine = ChatEngine(chat := chat_config(cfg, ws.lm_source, "cpu"))
        samples = fdb.find_samples(PROBE_SETS / DEFAULT_SET)
        audio = stream_s = 0.0
        for sample in samples:
            user = user_audio(sample)
            t = time.perf_counter()
            out = stream(engine, chat, user)
            stream_s += time.perf_counter() - t
            audio += len(user) / SAMPLE_RATE
            fdb.write_sample(sample, Path(tmp) / "out" / sample.task / sample.dir.name, out.pcm, SAMPLE_RATE, out.words)
        t = time.perf_counter()
        score_folder(Path(tmp) / "out")
        score_s = time.perf_counter() - t
    print(
        f"{len(samples)} probes, {audio:.1f} s of audio: streaming {stream_s:.1f} s, scoring {score_s:.1f} s; "
        f"{60 * (stream_s + score_s) / audio:.1f} s per minute of probe audio"
    )


if __name__ == "__main__":
    main()
