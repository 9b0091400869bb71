"""The Python API: the pipeline of ``python -m automl`` as a function, and exported models as objects.

    import automl

    result = automl.fit(task={"root": "/data/flowers"}, finetune={"n_trials": 8})
    result = automl.fit("task.root=/data/flowers", "finetune.n_trials=8")     # the same, as overrides
    result.ranking.models[0].name, result.test_accuracy, result.best_dir

    model = automl.load(result.best_dir)
    predictions = model.predict("photos/")                                  # a folder, an image, a list
    predictions.labels, predictions.top_k(3), predictions.accuracy
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from automl._cli import discard_if_empty, user_error_text
from automl.errors import AutomlError
from automl.settings import AutomlSettings, SettingsError, compose, resolve

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's, as in the command's log file
_PLAIN = re.compile(r"[\w./:~+@-]*")  # a string Hydra's override grammar reads unquoted


@dataclass(frozen=True)
class Result:
    """What :func:`fit` left in its run folder (the same files the command line writes there).

    ``ranking``: every bank model, best first (:class:`automl.rank.Ranking`: ``models[i].name``,
    ``.predicted``, ``.low``, ``.high``, ``.scores``); ``trials``: the study's trials
    (:class:`automl.finetune.TrialResult`; empty when the stages did not fine-tune); ``best_dir``: the
    exported model (None when nothing was exported); ``test_accuracy``: its test accuracy in percent.
    """

    run_dir: Path
    settings: AutomlSettings
    ranking: Any  # automl.rank.Ranking
    trials: list
    best_model: str | None
    best_dir: Path | None
    test_accuracy: float | None

    def load(self) -> Model:
        """The exported model (:func:`load` of ``best_dir``)."""
        if self.best_dir is None:
            raise AutomlError(f"{self.run_dir}: the run exported no model (stage={self.settings.stage})")
        return load(self.best_dir)


def overrides_of(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Keyword settings as Hydra overrides: ``task="digits"`` → ``task=digits`` (a config of the group),
    ``finetune={"n_trials": 8}`` → ``finetune.n_trials=8``, ``**{"task.root": "/data"}`` → ``task.root=/data``."""
    overrides = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            overrides += overrides_of(value, f"{name}.")
        else:
            overrides.append(f"{name}={_override_value(value)}")
    return overrides


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path | str):
        text = str(value)
        return text if _PLAIN.fullmatch(text) and text else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, Sequence):
        return "[" + ",".join(_override_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{_override_value(item)}" for key, item in value.items()) + "}"
    raise SettingsError(f"cannot pass {value!r} ({type(value).__name__}) as a setting")


def compose_run(*overrides: str, config_dir: str | Path | None = None, **settings: Any) -> DictConfig:
    """The config ``python -m automl <overrides>`` runs with (its ``hydra`` node included), from overrides
    and keyword settings; a bad override or setting raises :class:`AutomlError` with the command line's message."""
    try:
        return compose([*overrides, *overrides_of(settings)], return_hydra_config=True, config_dir=config_dir)
    except (HydraException, OmegaConfBaseException) as exc:
        raise SettingsError(user_error_text(exc)) from None


def fit(*overrides: str, run_dir: str | Path | None = None, config_dir: str | Path | None = None,
        **settings: Any) -> Result:
    """Run the pipeline (``python -m automl``) with the same settings, in this process.

    Args:
        overrides: Hydra overrides, exactly as on the command line (``"task.root=/data/flowers"``).
        run_dir: the run folder (the command line's ``hydra.run.dir``); default
            ``outputs/runs/<task>/<date>_<time>``. A folder that already holds the run resumes it.
        config_dir: your own config folder, searched besides automl's (the command line's ``--config-dir``).
        settings: the same as keyword arguments: ``task="digits"`` chooses a config of a group,
            ``finetune={"n_trials": 8}`` sets fields (see :func:`overrides_of`).

    Raises:
        AutomlError: bad input, with the one-line message the command line prints; the run's log keeps it.
    """
    from automl.run import run  # torch, timm, Lightning: `import automl` stays light

    job = compose_run(*overrides, config_dir=config_dir, **settings)
    run_dir = Path(run_dir) if run_dir is not None else Path(job.hydra.run.dir)
    with open_dict(job):  # the job's own settings, as Hydra hands them to the command
        del job["hydra"]
    try:
        resolved = resolve(job)
    except OmegaConfBaseException as exc:
        raise SettingsError(user_error_text(exc)) from None
    with _run_log(run_dir) as log:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(job, run_dir / ".hydra" / "config.yaml")
        try:
            made = run(resolved, run_dir)
        except AutomlError as exc:
            log.error(user_error_text(exc))
            failed = exc
        else:
            failed = None
    if failed is not None:  # after the log is closed: a folder the run left empty goes
        discard_if_empty(run_dir)
        raise failed
    outcome = made.outcome
    best = outcome.best if outcome is not None else None
    return Result(run_dir=run_dir, settings=resolved, ranking=made.ranking,
                  trials=list(outcome.trials) if outcome is not None else [],
                  best_model=best.model if best is not None else None,
                  best_dir=outcome.best_dir if outcome is not None else None,
                  test_accuracy=outcome.test_accuracy if outcome is not None else None)


class _run_log:
    """The run's log file (``<run_dir>/automl.log``, as the command line's) while the pipeline runs."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "automl.log"

    def __enter__(self) -> logging.Logger:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path)
        self.handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
        return logging.getLogger("automl")

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
        self.handler.close()


def load(model_dir: str | Path) -> Model:
    """An exported model (``<run>/best``), ready to predict; no network, nothing unpickled."""
    from automl.deploy import load_exported

    return Model(load_exported(model_dir), Path(model_dir))


class Model:
    """An exported model: its ``classes``, ``config`` (config.json) and :meth:`predict`."""

    def __init__(self, exported: Any, path: Path):
        self._exported, self.path = exported, path

    @property
    def classes(self) -> list[str]:
        return self._exported.classes

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._exported.config)

    @property
    def test_accuracy(self) -> float | None:
        """The test accuracy (percent) measured when the model was exported."""
        return self._exported.config.get("test_accuracy")

    def predict(self, images: str | Path | Sequence[str | Path], *, batch_size: int = 64, device: str = "auto",
                out: str | Path | None = None) -> Any:
        """Classify ``images``: an image file, a folder (a labelled ImageFolder also gives an accuracy), a
        CSV of ``path[,label]`` or a text file of paths (the model's ``test.csv`` reproduces its test
        accuracy), or a list of image paths. Returns :class:`automl.deploy.Predictions` (labels, top-k
        probabilities, accuracy and per-class metrics where labels are known); ``out``: also write its CSV."""
        from automl.deploy import predict_images

        return predict_images(self._exported, images, batch_size=batch_size, device=device, out=out)

    def __repr__(self) -> str:
        return f"Model({self.path}, arch={self.config['arch']!r}, {len(self.classes)} classes)"
