"""Time intervals (seconds): unions, overlaps, gaps. Shared by dataset statistics and turn-taking."""

Interval = tuple[float, float]


def merge(intervals: list[Interval], bridge: float = 0.0) -> list[Interval]:
    """Sorted union; intervals closer than `bridge` seconds are joined."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + bridge:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def total(intervals: list[Interval]) -> float:
    return sum(e - s for s, e in merge(intervals))


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    """Pairwise intersection of two unions."""
    a, b = merge(a), merge(b)
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
