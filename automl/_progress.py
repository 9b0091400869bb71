"""The project's progress bar for long loops: description, bar, done/total and elapsed time."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(**kwargs: Any) -> Progress:
    """A rich ``Progress`` with the project's columns; ``kwargs`` go to ``Progress`` (e.g. ``console``)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    **kwargs)
