"""Progress of a long stage: a callback `progress(fraction 0..1, message)` that the studio feeds to its
progress bar and the command line to a tqdm bar."""

import contextlib
from collections.abc import Callable, Iterator

Progress = Callable[[float, str], None]


@contextlib.contextmanager
def cli_progress() -> Iterator[Progress]:
    """A tqdm bar on stderr (0..100%, the latest message after it) driven by the yielded callback."""
    from tqdm import tqdm

    with tqdm(total=100.0, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}] {postfix}") as bar:

        def progress(fraction: float, message: str) -> None:
            bar.n = 100.0 * fraction
            bar.set_postfix_str(message)

        yield progress
