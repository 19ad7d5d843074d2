"""The one device rule of every stage (torch is imported only when the answer needs it)."""

from backend.core.errors import ConfigError


def pick_device(requested: str = "auto", must_exist: bool = True) -> str:
    """'auto' is CUDA when this machine has a GPU, else CPU. An explicit 'cuda' without a GPU is an error,
    unless `must_exist` is False (a command previewed here for GPU nodes)."""
    if requested == "cpu":
        return requested
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if must_exist and requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but this machine has no CUDA GPU; use 'cpu' or 'auto'")
    return requested
