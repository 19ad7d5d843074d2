"""The studio's shared state: the workspace in use (Settings can replace it) and the transcripts open for
editing (Curate's unsaved edits), both per studio rather than per module."""

from dataclasses import dataclass, field
from typing import Any, Callable

from backend.core.workspace import Workspace

from .curate import Curator


@dataclass
class StudioContext:
    ws: Workspace
    curator: Curator = field(default_factory=Curator)

    def bind(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """`handler(workspace, *values)` as a Gradio callback of the values, on the workspace in use when it runs."""
        return lambda *values: handler(self.ws, *values)


# The event listeners that mean "this tab is now on screen": its tab.select (plus app.load for the tab shown
# first). Never fill a hidden tab from app.load: Gradio 6 leaves its spinner over that tab's outputs.
Shown = list[Callable[..., Any]]
