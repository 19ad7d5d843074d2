"""Deterministic shares of a stage's input files for the ranks of a distributed run."""

from pathlib import Path


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
