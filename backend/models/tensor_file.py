"""safetensors files written one tensor at a time, so a 7B model is never held twice.

safetensors' own `save_file` turns every tensor into a `bytes` copy before writing: a second copy of the whole
model (reading is fine: its `load_file` memory-maps the file). The format is simple enough to stream: an 8-byte
little-endian header length, a JSON header `{name: {"dtype", "shape", "data_offsets": [begin, end]}}` (offsets
into the data that follows), then the tensors' bytes back to back. safetensors reads these files.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import torch

from backend.core.atomic import atomic_path

# safetensors' dtype names (those a moshi checkpoint can hold)
NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
Spec = tuple[torch.dtype, tuple[int, ...]]


def nbytes(spec: Spec) -> int:
    dtype, shape = spec
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def _header_bytes(specs: dict[str, Spec]) -> bytes:
    header, offset = {}, 0
    for name, spec in specs.items():
        size = nbytes(spec)
        header[name] = {"dtype": NAMES[spec[0]], "shape": list(spec[1]), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(text)) + text


def write_tensors(file: str | Path, specs: dict[str, Spec], produce: Callable[[str], torch.Tensor]) -> Path:
    """Write `file` atomically: the header from `specs` (name -> (dtype, shape), in file order), then each
    tensor as `produce(name)` makes it, checked against its spec and dropped once written."""
    with atomic_path(Path(file)) as tmp, open(tmp, "wb") as f:
        f.write(_header_bytes(specs))
        for name, (dtype, shape) in specs.items():
            tensor = produce(name)
            if tensor.dtype != dtype or tuple(tensor.shape) != shape:
                raise ValueError(
                    f"{name}: produced {tensor.dtype} {list(tensor.shape)}, declared {dtype} {list(shape)}"
                )
            f.write(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return Path(file)


def save_tensors(file: str | Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Write a dict of tensors without the serialised second copy `safetensors.save_file` makes."""
    return write_tensors(file, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, tensors.__getitem__)
