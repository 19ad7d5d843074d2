"""Synthesize the Japanese demo dialogues (assets/demo_ja/) with pyopenjtalk-plus, one word at a time.

The same method as the English demo (backend.demo.dialogues): each word is synthesized alone, trimmed and
placed at a chosen offset, so the transcripts give every word's true span to the sample. pyopenjtalk-plus
carries its Open JTalk dictionary and its one HTS voice (mei) inside the wheel, so nothing is downloaded
(other pyopenjtalk builds fetch the dictionary at first use). Two clearly different speakers from one voice:
speaker B is mei resampled as a longer vocal tract (formants and pitch 22% lower) and pitched down further,
which sounds like another, lower voice rather than the same one transposed.

Words are written as a Japanese transcript gives them (no spaces; the script separates them with spaces only
to say where words end) and exercise what Japanese text brings: kanji, kana, the long-vowel mark ー, full-width
digits and Latin (１０時, ＯＫ), half-width katakana (ｺｰﾋｰ), the ellipsis …, and characters a small tokenizer
only encodes as bytes (𠮷, 齟齬). Developers run `python -m backend.demo.dialogues_ja` (needs the `demo-ja`
extra); the output is committed.
"""

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from backend.core.config import cli_parser, from_cli
from backend.core.errors import StudioError
from backend.core.paths import ASSETS
from backend.core.spec import SAMPLE_RATE
from backend.demo.dialogues import Backchannel, DemoConfig, DemoDialogue, Turn, demo_sentences, generate, trim

DEMO_JA_DIR = ASSETS / "demo_ja"
PEAK = 0.5  # Open JTalk gives int16-scale floats; each word is scaled so its peak is this


@dataclass(frozen=True)
class JaVoice:
    """Open JTalk's mei voice, transposed by `half_tone` and, with `tract` < 1, resampled as a longer vocal
    tract (formants, pitch and tempo all scaled by `tract`; `speed` is the tempo before that)."""

    half_tone: float
    speed: float
    tract: float = 1.0

    def vary(self, rng: random.Random) -> "JaVoice":
        return JaVoice(self.half_tone + rng.uniform(-0.7, 0.7), self.speed * rng.uniform(0.95, 1.05), self.tract)

    def speak(self, word: str, workdir: Path) -> np.ndarray:
        try:
            import pyopenjtalk
        except ImportError:
            raise StudioError("pyopenjtalk-plus is not installed: pip install -e '.[demo-ja]'") from None
        # NFKC lets Open JTalk read half-width katakana and full-width Latin; the transcript keeps the word as written.
        audio, rate = pyopenjtalk.tts(word, speed=self.speed, half_tone=self.half_tone, normalize_mode="NFKC")
        audio = soxr.resample(audio.astype(np.float32), rate * self.tract, SAMPLE_RATE, quality="HQ")
        audio = PEAK * audio / max(float(np.abs(audio).max()), 1e-9)
        return trim(audio, f"Open JTalk produced silence for {word!r}").astype(np.float32)


HIGH = JaVoice(half_tone=1.0, speed=1.05)
LOW = JaVoice(half_tone=-5.0, speed=1.25, tract=0.78)

JA_DIALOGUES: tuple[DemoDialogue, ...] = (
    DemoDialogue(
        "ja_cafe",
        "jmoshi",
        {"A": HIGH, "B": LOW},
        (
            Turn("A", "いらっしゃいませ。 ご注文は？", 0.0),
            Turn("B", "ｺｰﾋｰを 一つ ください。", 0.35),
            Turn("A", "サイズは Ｍで よろしいですか？", 0.4),
            Backchannel("B", "はい", 0.6),
            Turn("B", "ＯＫです。", 0.3),
            Turn("A", "４５０円に なります。", 0.35),
            Turn("B", "えっと… カードで。", -0.2),
        ),
    ),
    DemoDialogue(
        "ja_meeting",
        "jmoshi",
        {"A": LOW, "B": HIGH},
        (
            Turn("A", "𠮷田さん、 明日の 会議は 何時から？", 0.0),
            Turn("B", "１０時から です。", 0.4),
            Turn("A", "資料は もう 届きましたか？", 0.3),
            Turn("B", "まだです。 少し 齟齬が あって…", 0.45),
            Backchannel("A", "うーん", 0.7),
            Turn("A", "じゃあ 午後に 確認しましょう。", 0.3),
        ),
    ),
    DemoDialogue(
        "ja_weekend",
        "kyutai",
        {"A": HIGH, "B": LOW},
        (
            Turn("A", "週末は 何を しますか？", 0.0),
            Turn("B", "山に 登ろうと 思ってます。", 0.4),
            Backchannel("A", "へえ", 0.7),
            Turn("A", "いいですね。 私も 行っても いい？", 0.3),
            Turn("B", "もちろん！ 朝 ７時に 駅で。", -0.15),
        ),
    ),
)


def ja_sentences() -> list[str]:
    """The Japanese demo's lines as a Japanese transcript joins them: without spaces."""
    return demo_sentences(JA_DIALOGUES, joiner="")


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser(
        DemoConfig,
        "Synthesize the Japanese demo dialogues with Open JTalk (pyopenjtalk-plus), "
        "one word at a time (exact word timings).",
    )
    try:
        written = generate(
            from_cli(DemoConfig, parser.parse_args(argv), base={"output": str(DEMO_JA_DIR)}), JA_DIALOGUES
        )
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
