"""What every ``python -m automl...`` command does with a failure: bad input (an :class:`AutomlError`, or
a setting Hydra could not fill) prints one line naming the culprit and exits 2; Ctrl-C says how to
resume and exits 130. ``AUTOML_DEBUG=1`` shows the full traceback instead."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf.errors import MissingMandatoryValue, ValidationError

from automl.errors import AutomlError

T = TypeVar("T")
USER_ERRORS = (AutomlError, MissingMandatoryValue, ValidationError)
log = logging.getLogger("automl")


def run_command(body: Callable[[], T], *, hint: str, resume: str | None = None) -> T:
    """``body()``, with bad input and Ctrl-C turned into a message and an exit status.

    Args:
        hint: the line printed after an error (e.g. where the settings are documented).
        resume: what to tell after Ctrl-C (None: the command has nothing to resume).
    """
    try:
        return body()
    except KeyboardInterrupt:
        if os.environ.get("AUTOML_DEBUG"):
            raise
        message = "interrupted" + (f": {resume}" if resume else "")
        _to_run_log(logging.WARNING, message)
        print(message, file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as exc:
        if os.environ.get("AUTOML_DEBUG"):
            raise
        text = user_error_text(exc)
        _to_run_log(logging.ERROR, text)
        print(f"error: {text}\n{hint} (AUTOML_DEBUG=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


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
