"""The streaming safetensors writer: files safetensors reads back exactly, written atomically."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from backend.models.tensor_file import save_tensors, write_tensors


def sample() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "w.bf16": torch.randn(3, 5, generator=gen).to(torch.bfloat16),
        "w.f16": torch.randn(2, 7, generator=gen).half(),
        "w.f32": torch.randn(4, generator=gen),
        "ids": torch.arange(-3, 6),
        "scalar": torch.tensor(2.5),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "strided": torch.randn(6, 4, generator=gen).t(),
    }  # not contiguous: written as its values


def test_safetensors_reads_back_every_dtype_and_shape(tmp_path: Path) -> None:
    tensors = sample()
    save_tensors(tmp_path / "x.safetensors", tensors)
    back = load_file(str(tmp_path / "x.safetensors"))
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
        assert torch.equal(back[name], tensor), name
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as f:  # data starts 8-byte aligned
        assert f.get_slice("w.f32").get_shape() == [4]
    assert int.from_bytes((tmp_path / "x.safetensors").read_bytes()[:8], "little") % 8 == 0


def test_tensors_are_produced_one_at_a_time_in_file_order(tmp_path: Path) -> None:
    produced: list[str] = []

    def produce(name: str) -> torch.Tensor:
        produced.append(name)
        return torch.full((2,), float(len(produced)))

    specs = {"b": (torch.float32, (2,)), "a": (torch.float32, (2,))}
    write_tensors(tmp_path / "y.safetensors", specs, produce)
    assert produced == ["b", "a"]
    back = load_file(str(tmp_path / "y.safetensors"))
    assert back["b"].tolist() == [1.0, 1.0] and back["a"].tolist() == [2.0, 2.0]


def test_a_tensor_unlike_its_spec_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "z.safetensors"
    with pytest.raises(ValueError, match="declared"):
        write_tensors(target, {"a": (torch.bfloat16, (2, 2))}, lambda _: torch.zeros(2, 2))
    assert list(tmp_path.iterdir()) == []
