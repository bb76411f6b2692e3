"""A progress bar for commands made of a few long steps (bench, models): the step that runs is named
beside the bar on stderr, so a twenty-minute bench is never silent and stdout stays the result."""
from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def steps(total: int, desc: str):
    """Yields `progress(message)`, to call as each step starts; the step before it then counts as done."""
    from tqdm import tqdm
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr)
    started: list[str] = []

    def progress(message: str) -> None:
        if started:
            bar.update(1)
        started.append(message)
        bar.set_postfix_str(message)

    try:
        yield progress
        if started:
            bar.update(1)
    finally:
        bar.close()
