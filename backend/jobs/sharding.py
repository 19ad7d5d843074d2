"""Deterministic shares of a stage's input files for the ranks of a distributed run, and what a share did."""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

S = TypeVar("S", bound="ShareSummary")


def share(files: list[Path], rank: int, world: int) -> list[Path]:
    """Rank `rank`'s files, in their given order: the files dealt round-robin from the largest down (size, then
    name), so every rank gets a similar amount of audio whatever the names. Every rank computes the same deal
    from the same folder, so each file belongs to exactly one rank; outputs never decide it (ranks write them
    while others are still dealing)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside 0..{world - 1}")
    if world == 1:
        return list(files)
    mine = set(sorted(files, key=lambda p: (-p.stat().st_size, p.name))[rank::world])
    return [f for f in files if f in mine]


@dataclass
class ShareSummary:
    """What a file stage did with its files (one rank's share, or every rank's merged); a stage's own summary
    adds its figures and merges them in `merge` (backend.dataset.preprocess)."""

    output_dir: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done
    failed: dict[str, str] = field(default_factory=dict)  # input -> "path: problem"
    audio_seconds: float = 0.0  # audio processed in this run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def merge(cls: type[S], parts: list[S], **figures: Any) -> S:
        """One summary of the ranks' summaries; `figures`: a subclass's own fields, merged its way."""
        return cls(
            output_dir=parts[0].output_dir,
            written=sorted(n for p in parts for n in p.written),
            skipped=sorted(n for p in parts for n in p.skipped),
            failed=dict(sorted(kv for p in parts for kv in p.failed.items())),
            audio_seconds=sum(p.audio_seconds for p in parts),
            **figures,
        )

    def counts(self) -> str:
        return (
            f"{len(self.written)} written, {len(self.skipped)} already done, {len(self.failed)} failed "
            f"-> {self.output_dir}"
        )
