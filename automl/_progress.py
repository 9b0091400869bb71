"""The project's progress displays: a bar for long loops (description, bar, done/total, elapsed time), and
transient live lines that leave nothing behind."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


def progress_bar(**kwargs: Any) -> Progress:
    """A rich ``Progress`` with the project's columns; ``kwargs`` go to :func:`live_progress`."""
    return live_progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         **kwargs)


def live_progress(*columns: ProgressColumn, transient: bool = False, disable: bool = False, **kwargs: Any) -> Progress:
    """A rich ``Progress`` of ``columns``. A ``transient`` one shows only on a terminal: it vanishes when done
    there, while in a log file or a pipe it would leave an empty line behind."""
    return Progress(*columns, transient=transient, disable=disable or (transient and not Console().is_terminal),
                    **kwargs)
