"""Benchmark (run by hand): the trained demo codec (assets/demo_mimi) against random codecs, in one run.

    .venv/bin/python bench/bench_demo_codec.py [--sentences 40] [--train-steps 300] [--parts ...]

1. Intelligibility: STOI of decode(encode(x)) against x on held-out synthesized sentences (never used in
   training: the training script's own held-out split), trained vs random codecs. Target >= 0.70.
   Japanese: the same on Japanese sentences the codec never heard in any form (it was trained on English),
   read whole by the Japanese demo's two voices (Open JTalk, the demo-ja extra). Target >= 0.6.
2. Streaming speed: encode + decode of one 80 ms frame on this CPU, trained demo codec vs full-size
   random Mimi. Target <= 30 ms.
3. End to end: the demo LM fine-tuned by the real trainer on the first 10 s of one demo dialogue until it
   memorises it, a greedy continuation from a 4 s prompt, decoded, and STOI of Moshi's continued channel
   against the reference audio of the same span. Target >= 0.5.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from backend.core.spec import FRAME_SIZE  # noqa: E402
from backend.data.audio_io import load_stereo  # noqa: E402
from backend.demo import speech_corpus  # noqa: E402
from backend.demo.codec_quality import codec_stoi, stoi  # noqa: E402
from backend.demo.codec_training import CodecTrainConfig  # noqa: E402
from backend.models.source import DEMO_MIMI_ASSET, demo_mimi_config, random_mimi, tiny_mimi_config
from backend.models.weights import load_mimi

CLIP_SECONDS, PROMPT_FRAMES = 10.0, 50
JAPANESE = (
    "今日は朝から雨が降っていますね。",
    "駅前の本屋で新しい辞書を買いました。",
    "来週の金曜日に友達と映画を見に行きます。",
    "このラーメンはとても美味しいです。",
    "すみません、図書館はどこにありますか？",
    "電車が遅れたので会社に遅刻しました。",
    "夏休みには家族で海へ行く予定です。",
    "先生の説明はわかりやすかったです。",
    "冷蔵庫に牛乳がもうありません。",
    "明日の天気は晴れのち曇りだそうです。",
    "日本語の勉強を始めて三年になります。",
    "窓を開けてもいいですか？",
)
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def held_out_files(count: int, cache: Path) -> list[Path]:
    """The training script's held-out sentences (same seeds), synthesized into `cache`."""
    cfg = CodecTrainConfig(**json.loads((DEMO_MIMI_ASSET / "training.json").read_text())["config"])
    _, held = speech_corpus.split_sentences(cfg.train_sentences, cfg.held_out_sentences, cfg.seed)
    return speech_corpus.build_corpus(held, cache / "held_out", cfg.seed + 1)[:count]


def japanese_files(cache: Path) -> list[Path]:
    """JAPANESE read whole, alternately by the Japanese demo's two voices, as 24 kHz FLAC files in `cache`."""
    from backend.demo.dialogues_ja import HIGH, LOW

    cache.mkdir(parents=True, exist_ok=True)
    files = []
    for i, sentence in enumerate(JAPANESE):
        path = cache / f"ja_{i:02d}.flac"
        if not path.exists():
            sf.write(path, (HIGH, LOW)[i % 2].speak(sentence, cache), 24_000)
        files.append(path)
    return files


def streaming_ms(mimi: torch.nn.Module, frames: int = 60) -> tuple[float, float]:
    x = torch.randn(1, 1, FRAME_SIZE) * 0.1
    times = []
    with torch.no_grad(), mimi.streaming(1):
        for _ in range(frames):
            start = time.perf_counter()
            mimi.decode(mimi.encode(x))
            times.append((time.perf_counter() - start) * 1000)
    t = np.array(times[5:])
    return float(np.percentile(t, 50)), float(np.percentile(t, 95))


def end_to_end(steps: int, work: Path) -> dict[str, float]:
    """Fine-tune the demo LM on one 10 s demo clip, continue it greedily, STOI against the reference."""
    from train_helpers import reset_accelerate, write_run

    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.demo.workspace import create_demo_workspace
    from backend.finetune.trainer import train
    from backend.inference.generate import GenerateConfig, decode_continuation, generate
    from backend.models import checkpoints

    ws = create_demo_workspace(work / "ws")
    for f in ws.raw.iterdir():
        f.unlink()
    audio, rate = load_stereo(DEMO / "demo_cafe.flac")
    clip = audio[:, : int(CLIP_SECONDS * rate)]
    words = json.loads((DEMO / "demo_cafe.json").read_text())
    sf.write(ws.raw / "clip.wav", clip.T, rate)
    (ws.raw / "clip.json").write_text(json.dumps([w for w in words if w["end"] <= CLIP_SECONDS]))
    prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    frames = int(CLIP_SECONDS * 12.5)
    run = work / "run"
    write_run(
        run,
        base_model=str(ws.demo_lm),
        train_data=str(ws.dataset),
        main_speaker="A",
        user_stream=False,
        max_frames=frames,
        min_frames=frames,
        max_steps=steps,
        lr=4e-3,
        weight_decay=0.0,
        acoustic_weight=10.0,
        log_every=50,
    )
    try:
        assert train(run) == "finished"
    finally:
        reset_accelerate()
    (c,) = generate(
        GenerateConfig(
            model=str(checkpoints.latest_checkpoint(run)),
            dataset=ws.dataset,
            prompt_frames=PROMPT_FRAMES,
            gen_frames=frames - 1 - PROMPT_FRAMES,
            text_temperature=0,
            audio_temperature=0,
            device="cpu",
            output=None,
        )
    )
    mimi = load_mimi(ws.mimi_source)
    generated = decode_continuation(mimi, c.tokens)[0]
    decoded_reference = decode_continuation(mimi, c.reference)[0]
    span = slice(PROMPT_FRAMES * FRAME_SIZE, c.tokens.shape[1] * FRAME_SIZE)
    reference = clip[0, span].astype(np.float32)
    same = c.tokens[1:9, PROMPT_FRAMES:] == c.reference[1:9, PROMPT_FRAMES:]
    return {
        "tokens_matched": float(same.mean()),
        "stoi_continuation": stoi(reference, generated[span]),
        "stoi_codec_same_span": stoi(reference, decoded_reference[span]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=Path("work/codec_corpus"))
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("stoi", "japanese", "streaming", "end-to-end"),
        default=["stoi", "japanese", "streaming", "end-to-end"],
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    trained = load_mimi(DEMO_MIMI_ASSET)
    codecs = (
        ("trained demo codec", trained),
        ("random, same architecture", random_mimi(demo_mimi_config())),
        ("random tiny (tests)", random_mimi(tiny_mimi_config())),
    )
    if "stoi" in args.parts:
        files = held_out_files(args.sentences, args.cache)
        print(f"1. STOI on {len(files)} held-out sentences (target >= 0.70)")
        for name, mimi in codecs:
            print(f"   {name:28s} {codec_stoi(mimi, files):.3f}")
    if "japanese" in args.parts:
        files = japanese_files(args.cache / "japanese")
        print(f"1b. STOI on {len(files)} held-out Japanese sentences, two voices (target >= 0.6)")
        for name, mimi in codecs:
            print(f"   {name:28s} {codec_stoi(mimi, files):.3f}")
    if "streaming" in args.parts:
        print("2. streaming encode + decode per 80 ms frame, ms p50 / p95 (target <= 30)")
        for name, mimi in (("trained demo codec", trained), ("full-size Mimi (random)", random_mimi(None))):
            p50, p95 = streaming_ms(mimi)
            print(f"   {name:28s} {p50:6.1f} / {p95:6.1f}")
    if "end-to-end" not in args.parts:
        return
    work = Path(tempfile.mkdtemp())
    try:
        result = end_to_end(args.train_steps, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"3. end to end (demo LM memorises 10 s of demo_cafe, greedy continuation after {PROMPT_FRAMES} frames)")
    print(
        f"   audio tokens matched {result['tokens_matched']:.3f}; STOI continuation vs reference "
        f"{result['stoi_continuation']:.3f} (target >= 0.5); codec alone on the same span "
        f"{result['stoi_codec_same_span']:.3f}"
    )


if __name__ == "__main__":
    main()
