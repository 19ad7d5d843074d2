"""Unsupervised speaker adaptation of pocketsphinx's model means (MLLR), estimated from a first pass.

A first decoding pass gives each stretch of a channel its words; forced alignment of those words gives each
frame its senone; each frame then shares itself among the Gaussians of its senone's codebook in proportion to
their weighted likelihoods. From these counts, one affine transform per feature stream (a full matrix and a
bias) is solved row by row, maximising the likelihood of the speaker's frames (Leggetter & Woodland's MLLR
with diagonal covariances), with a prior pulling it towards the identity so that a few seconds of speech
cannot move the model far. pocketsphinx applies the transform when it loads the model (`-mllr`).

Features are the decoder's own: its cepstra (logged with `-mfclogdir`) with the model's batch cepstral mean
normalisation and `1s_c_d_dd` deltas.
"""

from pathlib import Path

import numpy as np

from backend.data.annotate.sphinx_model import PtmModel

# Weight of the prior towards the identity, in units of variance-normalised frame counts. On held-out piper
# speech 100 and 1000 gave the same WER over both channels (seed 2026) or 1000 was 1.3 points better (seed 7);
# the stronger prior is also the safer one for a channel with little speech. A second round of estimation
# (aligning with the adapted model) gained about another point (seeds 11 and 13) for 1.6x the compute: not taken.
PRIOR = 1000.0
_NOT_SPEECH = frozenset({"SIL", "+NSN+", "+SPN+"})  # silence and noise phones do not say who speaks
_CHUNK = 256  # frames scored at once (memory: chunk x streams x densities x dims)


def read_cepstra(path: Path, dim: int = 13) -> np.ndarray:
    """A Sphinx feature file: a big-endian int32 count, then that many big-endian float32 values."""
    data = path.read_bytes()
    (count,) = np.frombuffer(data, ">i4", count=1)
    return np.frombuffer(data, ">f4", count=int(count), offset=4).reshape(-1, dim).astype(np.float64)


def features(cepstra: np.ndarray) -> np.ndarray:
    """[T, 13] cepstra -> [T, 3, 13]: mean-normalised cepstra, deltas c[t+2] - c[t-2] and second deltas
    (c[t+3] - c[t-1]) - (c[t+1] - c[t-3]), edges repeated (sphinx's 1s_c_d_dd)."""
    c = cepstra - cepstra.mean(axis=0)
    padded = np.concatenate([c[:1].repeat(3, axis=0), c, c[-1:].repeat(3, axis=0)])
    n = len(c)

    def shifted(k: int) -> np.ndarray:
        return padded[3 + k : 3 + k + n]

    return np.stack([c, shifted(2) - shifted(-2), (shifted(3) - shifted(-1)) - (shifted(1) - shifted(-3))], axis=1)


class MllrStatistics:
    """Per-Gaussian occupancies and first-order sums of one speaker's frames."""

    def __init__(self, model: PtmModel) -> None:
        self.model = model
        self.occupancy = np.zeros(model.means.shape[:3])
        self.sums = np.zeros(model.means.shape)
        self.frames = 0

    def add(self, feats: np.ndarray, states: list[tuple[int, str, int]]) -> None:
        """feats [T, streams, dim]; states: (frame, CI phone, senone) of aligned frames."""
        rows = [
            (t, self.model.codebooks[p], s)
            for t, p, s in states
            if t < len(feats) and p in self.model.codebooks and p not in _NOT_SPEECH
        ]
        if not rows:
            return
        frame, codebook, senone = (np.array(column) for column in zip(*rows))
        for a in range(0, len(frame), _CHUNK):
            t, cb, sen = frame[a : a + _CHUNK], codebook[a : a + _CHUNK], senone[a : a + _CHUNK]
            o = feats[t][:, :, None, :]  # [n, stream, 1, dim]
            mu, var = self.model.means[cb], self.model.variances[cb]  # [n, stream, density, dim]
            log_like = -0.5 * (((o - mu) ** 2) / var + np.log(var)).sum(-1)
            log_like += self.model.log_weights[:, :, sen].transpose(2, 0, 1)
            posterior = np.exp(log_like - log_like.max(axis=2, keepdims=True))
            posterior /= posterior.sum(axis=2, keepdims=True)  # [n, stream, density]
            np.add.at(self.occupancy, cb, posterior)
            np.add.at(self.sums, cb, posterior[..., None] * o)
        self.frames += len(frame)

    def solve(self, prior: float = PRIOR) -> tuple[np.ndarray, np.ndarray]:
        """A [streams, dim, dim] and b [streams, dim] of the adapted means A @ mu + b."""
        n_streams, dim = self.model.means.shape[1], self.model.means.shape[3]
        a, b = np.zeros((n_streams, dim, dim)), np.zeros((n_streams, dim))
        for f in range(n_streams):
            occupancy = self.occupancy[:, f].reshape(-1)
            means = self.model.means[:, f].reshape(-1, dim)
            variances = self.model.variances[:, f].reshape(-1, dim)
            sums = self.sums[:, f].reshape(-1, dim)
            extended = np.concatenate([np.ones((len(means), 1)), means], axis=1)  # [1, mu]
            for i in range(dim):
                g = (extended * (occupancy / variances[:, i])[:, None]).T @ extended
                k = ((sums[:, i] / variances[:, i])[:, None] * extended).sum(axis=0)
                identity_row = np.zeros(dim + 1)
                identity_row[1 + i] = 1.0
                w = np.linalg.solve(g + prior * np.eye(dim + 1), k + prior * identity_row)
                b[f, i], a[f, i] = w[0], w[1:]
        return a, b


def write_mllr(path: Path, a: np.ndarray, b: np.ndarray) -> None:
    """pocketsphinx's MLLR file: classes (1), streams, then per stream its size, A row by row, b, and the
    variance scales (1: variances are not adapted)."""
    n_streams, dim, _ = a.shape
    lines = ["1", str(n_streams)]
    for f in range(n_streams):
        lines.append(str(dim))
        lines += [" ".join(f"{v:.7g}" for v in row) for row in a[f]]
        lines += [" ".join(f"{v:.7g}" for v in b[f]), " ".join(["1"] * dim)]
    path.write_text("\n".join(lines) + "\n")
