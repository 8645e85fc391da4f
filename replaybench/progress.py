"""Progress bars that the runner owns and the agents only feed.

The runner opens a :func:`session`; inside it, :func:`track` wraps an
iterable in a nested bar (e.g. an agent's epochs). Outside a session, or when
stderr is not a terminal, :func:`track` is a plain pass-through, so agents
used as a library print nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")
_active: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("replaybench_progress", default=None)


@contextlib.contextmanager
def session(enabled: bool | None = None) -> Iterator[None]:
    """Show bars for the duration of the block (default: when stderr is a TTY)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or _active.get() is not None:
        yield
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    token = _active.set(bars)
    try:
        with bars:
            yield
    finally:
        _active.reset(token)


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield from ``iterable``, advancing a bar when a session is open."""
    bars = _active.get()
    if bars is None:
        yield from iterable
        return
    task = bars.add_task(description, total=total if total is not None else len(iterable))  # type: ignore[arg-type]
    try:
        for item in iterable:
            yield item
            bars.advance(task)
    finally:
        bars.remove_task(task)
