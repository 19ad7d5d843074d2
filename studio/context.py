"""The studio's one piece of shared state: the workspace in use (Settings can replace it)."""

from dataclasses import dataclass

from backend.workspace import Workspace


@dataclass
class StudioContext:
    ws: Workspace
