"""File names of model folders and reading their kwargs, without torch: listing a workspace's models (the
studio does it whenever a tab is shown) must not load torch and moshi."""

import json
from pathlib import Path
from typing import Any

from backend.core.errors import ConfigError

MIMI_WEIGHTS = "mimi.safetensors"
MIMI_CONFIG = "mimi_config.json"
LM_WEIGHTS = "model.safetensors"
LM_KWARGS = "moshi_lm_kwargs.json"


def read_lm_kwargs(folder: str | Path) -> dict[str, Any]:
    """The LMModel kwargs saved in a model folder."""
    kwargs_file = Path(folder) / LM_KWARGS
    if not kwargs_file.exists():
        raise ConfigError(f"{folder}: no {LM_KWARGS} in this model directory")
    return json.loads(kwargs_file.read_text())
