"""What every ``python -m automl...`` command does with a failure: bad input (an :class:`AutomlError`, or
a setting Hydra could not fill) prints one line naming the culprit and exits 2, and a run folder it left
with nothing in it is removed; Ctrl-C says how to resume and exits 130, also when the console is a pipe
that Ctrl-C closed (``| tee``: the run's log keeps the message). ``AUTOML_DEBUG=1`` shows the full
traceback instead."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf.errors import MissingMandatoryValue, ValidationError

from automl.errors import AutomlError

T = TypeVar("T")
USER_ERRORS = (AutomlError, MissingMandatoryValue, ValidationError)
log = logging.getLogger("automl")


def run_command(body: Callable[[], T], *, hint: str, resume: str | None = None, run_dir: Path | None = None) -> T:
    """``body()``, with bad input and Ctrl-C turned into a message and an exit status.

    Args:
        hint: the line printed after an error (e.g. where the settings are documented).
        resume: what to tell after Ctrl-C (None: the command has nothing to resume).
        run_dir: the command's run folder, removed after bad input if nothing but its log is in it.
    """
    try:
        return body()
    except KeyboardInterrupt:
        if os.environ.get("AUTOML_DEBUG"):
            raise
        message = "interrupted" + (f": {resume}" if resume else "")
        _to_run_log(logging.WARNING, message)
        _say(message)
        raise SystemExit(130) from None
    except USER_ERRORS as exc:
        if os.environ.get("AUTOML_DEBUG"):
            raise
        text = user_error_text(exc)
        _to_run_log(logging.ERROR, text)
        if run_dir is not None:
            discard_if_empty(run_dir)
        _say(f"error: {text}\n{hint} (AUTOML_DEBUG=1 shows the traceback)")
        raise SystemExit(2) from None


def _say(text: str) -> None:
    """``text`` on stderr; if that is a pipe already closed (``2>&1 | tee`` ended by the same Ctrl-C), the
    console is dropped instead of failing the exit with a BrokenPipeError (exit status 1, message lost)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            os.dup2(devnull, stream.fileno())


BOOKKEEPING = (".hydra", "automl.log")  # what Hydra and the log put in a run folder before the run does anything


def discard_if_empty(run_dir: Path) -> bool:
    """Remove ``run_dir`` when it holds nothing but :data:`BOOKKEEPING` (a run stopped by bad input before
    it made anything); returns whether it did."""
    if not run_dir.is_dir() or any(path.name not in BOOKKEEPING for path in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def user_error_text(exc: BaseException) -> str:
    """The one-line message of a user error (OmegaConf appends its own context lines; they go)."""
    return str(exc).split("\n    full_key:")[0]


def _to_run_log(level: int, message: str) -> None:
    """Also into the run's log file (Hydra's ``<run>/__main__.log``), where there is one: the console
    already shows the message."""
    root = logging.getLogger()
    files = [handler for handler in root.handlers if isinstance(handler, logging.FileHandler)]
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in files:
        handler.handle(record)
