"""Hydra/OmegaConf glue shared by every entry point: resolvers, absolute paths, storage URL, device."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _task_name(root: str | None, csv: str | None, builtin: str | None) -> str:
    """Default task name: the ImageFolder's folder name, the CSV's stem, or the builtin's name."""
    if root:
        return Path(str(root)).expanduser().resolve().name
    if csv:
        return Path(str(csv)).stem
    return str(builtin or "task")


OmegaConf.register_new_resolver("task_name", _task_name, replace=True)


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config ``python -m automl <overrides>`` would run with (Hydra's compose API), for Python use."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def to_container(node: Any) -> Any:
    """A resolved plain dict/list copy of a config node (plain values pass through)."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def absolute_path(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def storage_url(url: str) -> str:
    """The SQLAlchemy URL every component (Optuna, history) opens for the ``storage`` setting.

    A relative SQLite path is made absolute (so every worker opens the same file) and its folder created.
    SQLAlchemy 2.1 maps a plain ``postgresql://`` to psycopg 3; when only psycopg2 is installed (the
    ``postgres`` extra) the URL names it explicitly.
    """
    import importlib.util

    from sqlalchemy import make_url

    parsed = make_url(url)
    if (parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None
            and importlib.util.find_spec("psycopg2") is not None):
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        path = absolute_path(url[len(prefix):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    if url.startswith(prefix + "/"):
        Path(url[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)
    return url


def select_device(name: str = "auto") -> str:
    """'auto' → cuda if available, else mps, else cpu; anything else is checked and returned."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name} but CUDA is not available on this machine; use device=cpu or auto")
    return name
