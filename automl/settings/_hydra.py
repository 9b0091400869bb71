"""Hydra glue shared by every entry point: where the configs are, the structured-config schemas in Hydra's
ConfigStore, the ``${task_name:...}`` resolver, composing a config from Python, and :func:`resolve`,
which turns a composed config into typed settings once, at the edge: storage URL normalised, device
chosen, paths absolute."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from automl._device import select_device
from automl._fileio import absolute_path
from automl._storage import storage_url
from automl.settings._checks import SettingsError
from automl.settings._finetuning import AugmentSettings, FinetuneSettings, Hparams
from automl.settings._ranking import ProbeSettings, RankSettings, task_name
from automl.settings._runs import RUN_SEED, AutomlSettings, RunSettings
from automl.settings._tools import DemoBankSettings, ExportSettings, HistorySettings, PredictSettings

_PACKAGE = Path(__file__).resolve().parent.parent
# The repository's top-level conf/ is the source of truth; a wheel carries a copy inside the package
# (pyproject.toml's force-include), where an installed automl finds it.
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf"

OmegaConf.register_new_resolver("task_name", task_name, replace=True)

_store = ConfigStore.instance()
for _name, _node in (("predict_schema", PredictSettings), ("history_schema", HistorySettings),
                     ("demo_bank_schema", DemoBankSettings), ("export_schema", ExportSettings)):
    _store.store(name=_name, node=_node)


@functools.cache
def register_run_schemas() -> None:
    """The pipeline's schemas in Hydra's ConfigStore (``python -m automl``, the API, the benchmarks): on first
    use, because building their defaults checks the score names, which imports every transferability
    score (scipy, scikit-learn: a second that predict, export and history do not need)."""
    _store.store(name="automl_schema", node=AutomlSettings)
    for group, node in (("probe", ProbeSettings(seed=RUN_SEED)), ("rank", RankSettings),
                        ("finetune", FinetuneSettings)):
        _store.store(group=group, name="default", node=node)


def compose(overrides: Sequence[str] = (), config_name: str = "config", return_hydra_config: bool = False,
            config_dir: str | Path | None = None) -> DictConfig:
    """The config ``python -m automl <overrides>`` would run with (Hydra's compose API), for Python use.

    Args:
        overrides: Hydra overrides, as on the command line.
        config_name: the primary config (``config`` for ``python -m automl``).
        return_hydra_config: with its ``hydra`` node (run folder, launcher) too.
        config_dir: a folder of configs searched besides automl's own (the command line's ``--config-dir``);
            it may hold the primary config itself (the benchmarks' ``bench.yaml``).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_run_schemas()
    primary = CONF_DIR
    if config_dir is not None:  # what --config-dir does: its configs found besides automl's own
        config_dir = absolute_path(config_dir)
        primary, extra = (config_dir, CONF_DIR) if (config_dir / f"{config_name}.yaml").is_file() else (CONF_DIR,
                                                                                                      config_dir)
        overrides = [f"hydra.searchpath=[file://{extra}]", *overrides]
    # Inside a running Hydra app (python -m automl.bench runs pipelines), set its Hydra aside meanwhile.
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides),
                                 return_hydra_config=return_hydra_config)
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


def resolve(cfg: DictConfig) -> RunSettings:
    """Typed, validated settings from a composed config (:class:`AutomlSettings`, or another
    :class:`RunSettings` such as the benchmarks'), with ``storage`` a normalised URL, ``device`` chosen,
    ``cache_dir`` absolute. Raises :class:`SettingsError` naming a setting outside its range."""
    try:
        settings = OmegaConf.to_object(cfg)
    except SettingsError as exc:
        raise SettingsError(_locate(cfg, str(exc))) from None
    _reject_unknown(cfg, settings, "")
    return dataclasses.replace(settings, storage=storage_url(settings.storage, make_folder=False),
                               device=select_device(settings.device), cache_dir=str(absolute_path(settings.cache_dir)))


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
