"""The ``storage`` setting: one SQLAlchemy URL for the Optuna studies and the history, normalised once so
every worker opens the same database, and shown without its password."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

from automl._fileio import absolute_path

SQLITE_TIMEOUT_S = 120.0  # how long a writer waits for SQLite's write lock (Optuna and the history alike)


def storage_url(url: str, *, make_folder: bool = True) -> str:
    """The SQLAlchemy URL every component (Optuna, history) opens for the ``storage`` setting.

    A relative SQLite path is made absolute (so every worker opens the same file) and, with
    ``make_folder``, its folder created (opening it needs the folder; naming it does not).
    SQLAlchemy 2.1 maps a plain ``postgresql://`` to psycopg 3; when only psycopg2 is installed (the
    ``postgres`` extra) the URL names it explicitly.
    """
    from sqlalchemy import make_url  # sqlalchemy costs ~0.3 s: not paid by commands that only print help

    parsed = make_url(url)
    if (parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        url = prefix + str(absolute_path(url[len(prefix):]))
    if make_folder and url.startswith(prefix + "/"):
        Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
    return url


def storage_slug(url: str) -> str:
    """A folder name for what belongs to the database at ``url`` (its backend and a digest of the URL
    without its password): the same study name in two storages never shares trial files."""
    from sqlalchemy import make_url

    digest = hashlib.sha256(redact_url(url).encode()).hexdigest()[:10]
    return f"{make_url(url).get_backend_name()}-{digest}"


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (then it is not written into files such as a run's record)."""
    from sqlalchemy import make_url

    return make_url(url).password is not None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and messages)."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
