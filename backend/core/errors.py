"""Errors with messages a user can act on: always the file and the problem."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


class StudioError(Exception):
    """Base class: the message is meant for the user as it is."""


class InputError(StudioError):
    """A user-supplied file is unusable. The message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(StudioError):
    """A configuration value is invalid; refused before any work starts."""


class DiskFull(StudioError):
    """A file or folder could not be written for lack of space; nothing half-written is left."""


@dataclass(frozen=True)
class Issue:
    """One finding of a validation report: an error makes the file unusable, a warning does not."""

    level: Literal["error", "warning"]
    message: str
