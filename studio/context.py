"""The studio's one piece of shared state: the workspace in use (Settings can replace it)."""

from dataclasses import dataclass
from typing import Any, Callable

from backend.core.workspace import Workspace


@dataclass
class StudioContext:
    ws: Workspace


# The event listeners (app.load, tab.select) that mean "this tab is now on screen".
Shown = list[Callable[..., Any]]
