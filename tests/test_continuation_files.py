"""backend.inference.continuation_files: a continuation's audio and words read back for display."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.core.errors import InputError
from backend.inference.continuation_files import read_audio, read_words


def test_audio_by_channel_and_missing_files(tmp_path: Path) -> None:
    wav = tmp_path / "d.continuation.wav"
    sf.write(wav, np.array([[0.5, -0.5]] * 10), 24000, subtype="PCM_16")
    sr, both = read_audio(wav, None)
    assert sr == 24000 and both.shape == (10, 2) and both.dtype == np.int16
    assert (read_audio(wav, 1)[1] < 0).all() and (read_audio(wav, 0)[1] > 0).all()
    assert read_audio(tmp_path / "none.wav", 0) is None
    (tmp_path / "bad.wav").write_bytes(b"RIFF....")
    with pytest.raises(InputError, match="bad.wav: not a readable audio file"):
        read_audio(tmp_path / "bad.wav", None)


def test_words_and_bad_transcripts(tmp_path: Path) -> None:
    words = [{"word": "hi", "start": 0.5, "end": 0.7}]
    (tmp_path / "t.json").write_text(json.dumps({"continuation": words}))
    assert read_words(tmp_path / "t.json") == words
    assert read_words(tmp_path / "none.json") is None
    for bad in ("{", "[]", '{"other": 1}', "[" * 100_000):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(InputError, match="bad.json: not a continuation transcript"):
            read_words(tmp_path / "bad.json")
