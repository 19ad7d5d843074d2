"""The Gaussians of pocketsphinx's en-us acoustic model, read from the files inside its wheel, for speaker
adaptation (mllr.py).

The model is phonetically tied (`-model ptm` in its feat.params): each CI phone owns a codebook of Gaussians per
feature stream, and each senone (a tied HMM state) mixes the Gaussians of its phone's codebook with weights of
its own. Formats (Sphinx-3 binary, as the files' own headers describe them): `means` and `variances` hold
float32 [codebook, stream, density, dim]; `sendump` holds each senone's mixture weights as bytes of negated
log values, [stream, density, senone]; the binary `mdef` lists the CI phones in codebook order.
"""

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from backend.core.errors import StudioError

# sendump stores -log(weight) in steps of 1024 units of pocketsphinx's log base 1.0001.
_WEIGHT_STEP = 1024 * np.log(1.0001)
_VARIANCE_FLOOR = 1e-4  # pocketsphinx's -varfloor
_END_OF_HEADER = b"END FILE FORMAT DESCRIPTION\n"


@dataclass(frozen=True)
class PtmModel:
    means: np.ndarray  # float64 [codebook, stream, density, dim]
    variances: np.ndarray  # same shape, floored
    log_weights: np.ndarray  # float64 [stream, density, senone]
    codebooks: dict[str, int]  # CI phone -> its codebook


def model_folder() -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us" / "en-us"


def _unexpected(path: Path, problem: str) -> StudioError:
    return StudioError(
        f"{path}: {problem}; speaker adaptation reads pocketsphinx's en-us model files as the "
        f"pocketsphinx 5 wheel ships them"
    )


def _gaussians(path: Path) -> np.ndarray:
    data = path.read_bytes()
    head = data.find(b"endhdr\n")
    if head < 0:
        raise _unexpected(path, "no Sphinx-3 header")
    offset = head + len(b"endhdr\n") + 4  # after the byte-order word
    n_codebooks, n_streams, n_densities = struct.unpack_from("<3i", data, offset)
    dims = struct.unpack_from(f"<{n_streams}i", data, offset + 12)
    offset += 12 + 4 * n_streams
    (count,) = struct.unpack_from("<i", data, offset)
    if len(set(dims)) != 1 or count != n_codebooks * n_streams * n_densities * dims[0]:
        raise _unexpected(path, f"streams of sizes {dims} holding {count} values")
    values = np.frombuffer(data, "<f4", count=count, offset=offset + 4)
    return values.reshape(n_codebooks, n_streams, n_densities, dims[0]).astype(np.float64)


def _codebooks(path: Path) -> dict[str, int]:
    data = path.read_bytes()
    head = data.find(_END_OF_HEADER)
    if not data.startswith(b"BMDF") or head < 0:
        raise _unexpected(path, "not a binary model definition")
    offset = head + len(_END_OF_HEADER) + 1  # the header's strings end with a 0
    (n_ciphones,) = struct.unpack_from("<i", data, offset)
    offset += 10 * 4  # the ten counts that open the body
    names = []
    for _ in range(n_ciphones):
        end = data.index(b"\0", offset)
        names.append(data[offset:end].decode("ascii"))
        offset = end + 1
    return {name: i for i, name in enumerate(names)}


def _log_weights(path: Path, n_streams: int, n_densities: int) -> np.ndarray:
    data = path.read_bytes()
    offset = 0
    while True:  # length-prefixed header strings, ended by a zero length
        (length,) = struct.unpack_from("<i", data, offset)
        offset += 4 + length
        if length == 0:
            break
    n_codewords, n_senones = struct.unpack_from("<2i", data, offset)
    offset += 8
    if n_codewords != n_densities or len(data) - offset != n_streams * n_codewords * n_senones:
        raise _unexpected(path, f"{n_codewords} codewords x {n_senones} senones in {len(data) - offset} bytes")
    steps = np.frombuffer(data, np.uint8, offset=offset).reshape(n_streams, n_codewords, n_senones)
    return -steps.astype(np.float64) * _WEIGHT_STEP


def _read(path: Path, reader, *args):  # type: ignore[no-untyped-def]
    """`reader(path, *args)`, a file cut short or misread reported as the file's problem."""
    try:
        return reader(path, *args)
    except (struct.error, ValueError, UnicodeDecodeError) as e:
        raise _unexpected(path, f"cannot be read ({e})") from None


@lru_cache(maxsize=1)
def load_model(folder: Path | None = None) -> PtmModel:
    folder = folder or model_folder()
    means = _read(folder / "means", _gaussians)
    variances = np.maximum(_read(folder / "variances", _gaussians), _VARIANCE_FLOOR)
    codebooks = _read(folder / "mdef", _codebooks)
    if means.shape != variances.shape or len(codebooks) != means.shape[0]:
        raise _unexpected(folder, f"{len(codebooks)} CI phones for means of shape {means.shape}")
    log_weights = _read(folder / "sendump", _log_weights, means.shape[1], means.shape[2])
    return PtmModel(means, variances, log_weights, codebooks)
