"""pocketsphinx (PyPI 5.x): English acoustic model, language model and dictionary inside the wheel, offline.

100 frames per second; 16 kHz mono int16 input. ASR mode decodes with the bundled language model and
takes each word's posterior probability as its confidence; with speaker adaptation it decodes a channel's
stretches twice, the second time with the model's means adapted to the channel's speaker by the first pass
(mllr.py). Alignment mode (`set_align_text`) places the known words; words missing from the dictionary cannot
be aligned and come back as None.
"""

import re
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

from backend.core.errors import InputError
from backend.data.annotate.engines import Tick, TimedWord
from backend.data.annotate.mllr import MllrStatistics, features, read_cepstra, write_mllr
from backend.data.annotate.sphinx_model import load_model

FRAMES_PER_SECOND = 100
WIDE_BEAMS = {"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}  # pocketsphinx's defaults are 1e-48, 7e-29, 1e-48
# ASR scores each frame against the 32 best Gaussians of each codebook instead of 4 (pocketsphinx's default,
# chosen for speed): on held-out piper speech (seed 11, not the bench's set) WER 25.0% -> 22.0%, at about 1.5x
# the compute. Tried and not taken: a wider search (beams 1e-60/1e-40 in all passes, no cap on active HMMs)
# gained 1.3-1.7 points on three held-out sets at 2x the compute, but on real telephone calls it ran 5x slower
# (real-time factor 0.64 -> 3.3) for no gain; other language weights, word insertion penalties, topn 64 or 128,
# VTLN warps and no noise removal moved WER by no more than the spread between seeds.
ASR_OPTIONS = {"topn": 32}
# Exact digital zero (VoIP silence suppression, gated channels, synthesized pauses) can leave alignment without a
# path: on held-out espeak-ng speech a turn lost its last words. With the zero samples filled with noise at this
# level every word of it landed within 0.14 s; but filling always puts word starts about 35 ms early (the
# silence model fits exact zeros far better than faint noise), so alignment fills only when the plain attempts
# found no complete path.
SILENCE_FILL_DBFS = -70.0
# The attempts of alignment, in order, until one places every word (else the one placing most is kept):
# pocketsphinx's beams, wider beams (a partial path where the best one ends early in a long silence), then
# exact zeros filled.
ALIGN_ATTEMPTS = (({}, False), (WIDE_BEAMS, False), ({}, True))
_ALTERNATE = re.compile(r"\(\d+\)$")  # "tickets(2)": the dictionary's second pronunciation
_EDGE_PUNCTUATION = re.compile(r"^[^\w']+|[^\w']+$")


def dictionary_form(word: str) -> str:
    """How the dictionary spells a transcript word: lower case, punctuation at its edges removed."""
    return _EDGE_PUNCTUATION.sub("", word.lower())


def _is_filler(word: str) -> bool:
    """<s>, </s>, <sil>, [NOISE], +BREATH+ ...: not words."""
    return word[:1] in "<[+"


class PocketsphinxEngine:
    name = "pocketsphinx"
    sample_rate = 16_000
    bridge = 0.3

    def __init__(self, adapt: bool = True) -> None:
        self.adapt = adapt
        self._asr = None
        # The first pass logs its cepstra here: the features the adaptation is estimated on.
        self._cepstra = tempfile.TemporaryDirectory(prefix="pocketsphinx-") if adapt else None

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "model": "en-us (inside the pocketsphinx wheel)",
            "version": version("pocketsphinx"),
            "speaker_adaptation": "mllr" if self.adapt else "none",
        }

    @staticmethod
    def _decoder(**options):  # type: ignore[no-untyped-def]
        from pocketsphinx import Decoder

        return Decoder(samprate=16_000, loglevel="FATAL", **options)

    @staticmethod
    def _pcm(audio: np.ndarray, fill: bool) -> bytes:
        """16-bit samples; with `fill`, exact zeros get faint noise (seeded: the same input gives the same bytes)."""
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        if fill:
            zero = pcm == 0
            noise = np.random.default_rng(0).normal(0.0, 32767 * 10 ** (SILENCE_FILL_DBFS / 20), int(zero.sum()))
            pcm[zero] = np.round(noise).astype(np.int16)
        return pcm.tobytes()

    @classmethod
    def _decode(cls, decoder, audio: np.ndarray, fill: bool = False) -> list:  # type: ignore[no-untyped-def]
        pcm = cls._pcm(audio, fill)
        try:
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
        except RuntimeError as e:
            raise InputError(None, f"pocketsphinx could not decode the audio ({e})") from None
        return [s for s in decoder.seg() or () if not _is_filler(s.word)]

    @staticmethod
    def _timed(seg, word: str) -> TimedWord:  # type: ignore[no-untyped-def]
        return TimedWord(
            word,
            seg.start_frame / FRAMES_PER_SECOND,
            (seg.end_frame + 1) / FRAMES_PER_SECOND,
            float(min(1.0, max(0.0, seg.prob))),
        )

    def _logged_cepstra(self) -> np.ndarray:
        """The cepstra of the utterance just decoded (utterance ids count up); the files are removed once read."""
        paths = sorted(Path(self._cepstra.name).glob("*.mfc"))
        try:
            return read_cepstra(paths[-1])
        finally:
            for path in paths:
                path.unlink()

    def _states(self, audio: np.ndarray, words: list[str]) -> list[tuple[int, str, int]]:
        """(frame, CI phone, senone) of every frame of `words` aligned to `audio`; [] when no path is found."""
        aligner = self._decoder(lm=None)
        try:
            aligner.set_align_text(" ".join(words))
            if not self._decode(aligner, audio):
                return []
            aligner.set_alignment()  # a second pass gives phone and state times
            self._decode(aligner, audio)
        except (RuntimeError, InputError):
            return []
        return [
            (t, phone.name, int(state.name))
            for word in aligner.get_alignment()
            for phone in word
            for state in phone
            for t in range(state.start, state.start + state.duration)
        ]

    def _adapted_decoder(
        self,
        pieces: list[np.ndarray],
        found: list[list],  # type: ignore[no-untyped-def]
        cepstra: list[np.ndarray],
    ):
        """A decoder whose means are adapted to the speaker of `pieces`, given the words found in them and the
        cepstra they were found in; None when no frame could be aligned."""
        stats = MllrStatistics(load_model())
        for audio, segs, piece_cepstra in zip(pieces, found, cepstra):
            words = [_ALTERNATE.sub("", s.word) for s in segs]
            if words:
                stats.add(features(piece_cepstra), self._states(audio, words))
        if not stats.frames:
            return None
        with tempfile.TemporaryDirectory(prefix="pocketsphinx-mllr-") as folder:
            path = Path(folder) / "speaker.mllr"
            write_mllr(path, *stats.solve())
            return self._decoder(mllr=str(path), **ASR_OPTIONS)

    def transcribe(self, pieces: list[np.ndarray], tick: Tick | None = None) -> list[list[TimedWord]]:
        if self._asr is None:
            logs = {"mfclogdir": self._cepstra.name} if self._cepstra else {}
            self._asr = self._decoder(**ASR_OPTIONS, **logs)
        passes = 2 if self.adapt else 1
        done = (lambda k: tick(k / (passes * len(pieces)))) if tick else (lambda k: None)
        found, cepstra = [], []
        for audio in pieces:
            found.append(self._decode(self._asr, audio))
            done(len(found))
            if self.adapt:
                cepstra.append(self._logged_cepstra())
        adapted = self._adapted_decoder(pieces, found, cepstra) if self.adapt else None
        if adapted is not None:
            found = []
            for audio in pieces:
                found.append(self._decode(adapted, audio))
                done(len(pieces) + len(found))
        return [[self._timed(s, _ALTERNATE.sub("", s.word)) for s in segs] for segs in found]

    def align(self, audio: np.ndarray, words: list[str]) -> list[TimedWord | None]:
        forms = [dictionary_form(w) for w in words]
        lookup = self._decoder(lm=None)
        known = [i for i, f in enumerate(forms) if f and lookup.lookup_word(f) is not None]
        out: list[TimedWord | None] = [None] * len(words)
        offset = 0  # frames
        # The search sometimes finds no path through all the words (it returns nothing), or its best path
        # ends early (a partial path): keep the words placed and align the rest on the audio after them.
        while known:
            text = " ".join(forms[i] for i in known)
            piece = audio[offset * self.sample_rate // FRAMES_PER_SECOND :]
            if not piece.size:
                break
            segs: list = []
            for beams, fill in ALIGN_ATTEMPTS:
                # A fresh decoder per text: a second set_align_text on a used one finds no path (pocketsphinx 5.1).
                aligner = self._decoder(lm=None, **beams)
                try:
                    aligner.set_align_text(text)
                except RuntimeError as e:
                    raise InputError(None, f"pocketsphinx refused the words to align ({e})") from None
                found = self._decode(aligner, piece, fill)
                if len(found) > len(segs):
                    segs = found
                if len(segs) == len(known):
                    break
            if not segs:
                break
            for i, seg in zip(known, segs):
                w = self._timed(seg, words[i])
                out[i] = TimedWord(
                    w.word, w.start + offset / FRAMES_PER_SECOND, w.end + offset / FRAMES_PER_SECOND, w.confidence
                )
            offset += segs[-1].end_frame + 1
            known = known[len(segs) :]
        return out
