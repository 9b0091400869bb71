"""Hydra glue shared by every entry point: the structured-config schemas in Hydra's ConfigStore, the
``${task_name:...}`` resolver, composing a config from Python, and :func:`resolve`, which turns a
composed config into typed settings once, at the edge: storage URL normalised, device chosen, paths
absolute."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from automl.settings import (
    AugmentSettings,
    AutomlSettings,
    BenchRunSettings,
    FinetuneSettings,
    Hparams,
    ProbeSettings,
    RankSettings,
    RunSettings,
    SettingsError,
    task_name,
)
from automl.settings.runs import RUN_SEED
from automl.settings.tools import DemoBankSettings, ExportSettings, HistorySettings, PredictSettings

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SQLITE_TIMEOUT_S = 120.0  # how long a writer waits for SQLite's write lock (Optuna and the history alike)

OmegaConf.register_new_resolver("task_name", task_name, replace=True)

_store = ConfigStore.instance()
_store.store(name="automl_schema", node=AutomlSettings)
_store.store(name="bench_schema", node=BenchRunSettings)
for _name, _node in (("predict_schema", PredictSettings), ("history_schema", HistorySettings),
                     ("demo_bank_schema", DemoBankSettings), ("export_schema", ExportSettings)):
    _store.store(name=_name, node=_node)
for _group, _node in (("probe", ProbeSettings(seed=RUN_SEED)), ("rank", RankSettings),
                      ("finetune", FinetuneSettings)):
    _store.store(group=_group, name="default", node=_node)

def compose(overrides: Sequence[str] = (), config_name: str = "config", return_hydra_config: bool = False
            ) -> DictConfig:
    """The config ``python -m automl <overrides>`` would run with (Hydra's compose API), for Python use;
    ``return_hydra_config``: with its ``hydra`` node (run folder, launcher) too."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    # Inside a running Hydra app (python -m automl.bench runs pipelines), set its Hydra aside meanwhile.
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides),
                                 return_hydra_config=return_hydra_config)
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


def resolve(cfg: DictConfig) -> RunSettings:
    """Typed, validated settings from a composed config (:class:`AutomlSettings` or
    :class:`BenchRunSettings`), with ``storage`` a normalised URL, ``device`` chosen, ``cache_dir``
    absolute. Raises :class:`automl.settings.SettingsError` naming a setting outside its range."""
    try:
        settings = OmegaConf.to_object(cfg)
    except SettingsError as exc:
        raise SettingsError(_locate(cfg, str(exc))) from None
    _reject_unknown(cfg, settings, "")
    return dataclasses.replace(settings, storage=storage_url(settings.storage), device=select_device(settings.device),
                               cache_dir=str(absolute_path(settings.cache_dir)))


_SHARED = {"hparams": Hparams, "augment": AugmentSettings}  # settings types used in more than one place


def _locate(cfg: DictConfig, message: str) -> str:
    """``message`` with a shared type's prefix (``hparams.lr=...``) replaced by where in ``cfg`` the bad
    value is (``bench.oracle.hparams.lr=...``)."""
    prefix = message.split(".", 1)[0]
    kind = _SHARED.get(prefix)
    if kind is None:
        return message

    def walk(node: DictConfig, path: str):
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                yield from walk(child, f"{path}{key}.")
                if OmegaConf.get_type(child) is kind:
                    yield child, f"{path}{key}"

    for node, path in walk(cfg, ""):
        try:
            OmegaConf.to_object(node)
        except SettingsError:
            return f"{path}{message[len(prefix):]}"
    return message


def _reject_unknown(node: DictConfig, settings: object, where: str) -> None:
    """Hydra's ``+group.key=value`` adds keys the schema does not have, which OmegaConf then drops
    silently: a typo would change nothing. Name them instead."""
    known = {field.name: field for field in dataclasses.fields(settings)}
    for key in node:
        path = f"{where}{key}"
        if key not in known:
            raise SettingsError(f"{path}: unknown setting; known: {', '.join(sorted(known))}")
        value = getattr(settings, key)
        if dataclasses.is_dataclass(value) and isinstance(node[key], DictConfig):
            _reject_unknown(node[key], value, f"{path}.")


def absolute_path(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def storage_url(url: str) -> str:
    """The SQLAlchemy URL every component (Optuna, history) opens for the ``storage`` setting.

    A relative SQLite path is made absolute (so every worker opens the same file) and its folder created.
    SQLAlchemy 2.1 maps a plain ``postgresql://`` to psycopg 3; when only psycopg2 is installed (the
    ``postgres`` extra) the URL names it explicitly.
    """
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


def storage_slug(url: str) -> str:
    """A folder name for what belongs to the database at ``url`` (its backend and a digest of the URL
    without its password): the same study name in two storages never shares trial files."""
    from sqlalchemy import make_url

    digest = hashlib.sha256(redact_url(url).encode()).hexdigest()[:10]
    return f"{make_url(url).get_backend_name()}-{digest}"


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and messages)."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


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


__all__ = ["CONF_DIR", "SQLITE_TIMEOUT_S", "absolute_path", "compose", "redact_url", "resolve",
           "select_device", "storage_slug", "storage_url"]
