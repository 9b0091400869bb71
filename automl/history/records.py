"""One measured transfer of a bank model to a task (:class:`TransferRecord`), validated field by field,
and its JSON form for the database and CSV files."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from automl.errors import AutomlError

KINDS = ("finetune", "oracle", "import")  # import: transfers measured outside automl (papers, other tools)
MAX_NAME = 255
DICT_FIELDS = ("task_meta", "model_meta", "scores", "scores_z", "hparams", "fidelity")
STATES = ("COMPLETE", "PRUNED")  # fidelity["state"]: the fit ran its planned epochs, or was stopped early


class HistoryError(AutomlError):
    """The history database or a history file cannot be used as given; the message says why and where."""


class RecordError(HistoryError):
    """A record field is invalid; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"field {field_name!r}: {message}")
        self.field = field_name


@dataclass(kw_only=True)
class TransferRecord:
    """One measured transfer of a bank model to a task.

    Accuracies are percentages in [0, 100]; ``seconds`` is the fit's wall time; ``created_at`` is a
    timezone-aware UTC datetime (a naive one is taken as UTC). ``scores`` holds the raw transferability
    scores (including ``linear``, the probe's cross-validated linear-classifier accuracy in percent);
    ``scores_z`` the same scores z-scored across the whole bank on this task at rank time (a fine-tuning
    run measures only the top-k models, so they cannot be recomputed from records). NaN scores are allowed.
    """

    id: int | None = None
    run_id: str
    kind: str
    trial: int | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    task_name: str
    task_fingerprint: str
    task_meta: dict[str, Any] = field(default_factory=dict)
    model_name: str
    arch: str = ""
    weights_digest: str = ""
    model_meta: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    scores_z: dict[str, float] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    epochs: int | None = None
    seconds: float | None = None
    fidelity: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("run_id", "task_name", "task_fingerprint", "model_name"):
            _check_name(name, getattr(self, name), allow_empty=False)
        for name in ("arch", "weights_digest"):
            _check_name(name, getattr(self, name), allow_empty=True)
        if self.kind not in KINDS:
            raise RecordError("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        self.id = _optional_int("id", self.id, minimum=1)
        self.trial = _optional_int("trial", self.trial, minimum=0)
        self.epochs = _optional_int("epochs", self.epochs, minimum=0)
        if not isinstance(self.created_at, datetime):
            raise RecordError("created_at", f"expected a datetime, got {type(self.created_at).__name__}")
        if self.created_at.tzinfo is None:
            self.created_at = self.created_at.replace(tzinfo=timezone.utc)
        self.created_at = self.created_at.astimezone(timezone.utc)
        for name in ("task_meta", "model_meta", "hparams", "fidelity"):
            setattr(self, name, _json_dict(name, getattr(self, name)))
        for name in ("scores", "scores_z"):
            setattr(self, name, _score_dict(name, getattr(self, name)))
        for name in ("val_accuracy", "test_accuracy"):
            value = _optional_float(name, getattr(self, name))
            if value is not None and not 0.0 <= value <= 100.0:
                raise RecordError(name, f"{value} is not a percentage in [0, 100]")
            setattr(self, name, value)
        state = self.fidelity.get("state")
        if state is not None and state not in STATES:
            raise RecordError("fidelity", f"state {state!r} is not one of {', '.join(STATES)}")
        self.seconds = _optional_float("seconds", self.seconds)
        if self.seconds is not None and self.seconds < 0:
            raise RecordError("seconds", f"{self.seconds} is negative")

    @property
    def complete(self) -> bool:
        """Whether the fit ran to its planned end: fidelity says COMPLETE, or, for records from before
        fidelity was recorded, it has a test accuracy (only complete trials were tested)."""
        state = self.fidelity.get("state")
        return state == "COMPLETE" if state is not None else self.test_accuracy is not None

    @property
    def measured_accuracy(self) -> float | None:
        """The measured fine-tuned accuracy in percent: test accuracy, else validation accuracy, else None."""
        return self.test_accuracy if self.test_accuracy is not None else self.val_accuracy

    @property
    def curve_estimate(self) -> float | None:
        """For a fit stopped early, the test accuracy (percent) its validation curve was headed for
        (``fidelity["curve_estimate"]``, :mod:`automl.predictor.curves`); None for complete fits and for
        records without one."""
        estimate = self.fidelity.get("curve_estimate")
        return None if self.complete or not isinstance(estimate, dict) else _optional_float("curve_estimate",
                                                                                               estimate.get("mean"))

    @property
    def outcome_accuracy(self) -> float | None:
        """The fine-tuned accuracy (percent) the record stands for: measured by a complete fit, else the curve
        estimate of a fit stopped early."""
        return self.measured_accuracy if self.complete else self.curve_estimate


FIELDS = tuple(f.name for f in dataclasses.fields(TransferRecord))

def _check_name(name: str, value: Any, allow_empty: bool) -> None:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise RecordError(name, f"expected a {'' if allow_empty else 'non-empty '}string, got {value!r}")
    if len(value) > MAX_NAME:
        raise RecordError(name, f"longer than {MAX_NAME} characters")


def _optional_int(name: str, value: Any, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise RecordError(name, f"expected an integer, got {value!r}")
    if value < minimum:
        raise RecordError(name, f"{value} is below {minimum}")
    return int(value)


def _optional_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RecordError(name, f"expected a number, got {value!r}") from None
    if not math.isfinite(value):
        raise RecordError(name, f"{value} is not finite")
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars (np.int64 parameter counts, np.float64 hyperparameters)
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _json_dict(name: str, value: Any) -> dict[str, Any]:
    """A JSON-clean copy of ``value`` (a mapping), so what is stored is exactly what is read back."""
    if not isinstance(value, Mapping):
        raise RecordError(name, f"expected a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), default=_json_default, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise RecordError(name, f"not JSON-serialisable: {error}") from None


def _score_dict(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise RecordError(name, f"expected a mapping of score name to number, got {type(value).__name__}")
    scores = {}
    for key, score in value.items():
        try:
            scores[str(key)] = math.nan if score is None else float(score)
        except (TypeError, ValueError):
            raise RecordError(name, f"score {key!r} is not a number: {score!r}") from None
    return scores


def dump_field(name: str, value: Mapping[str, Any]) -> str:
    if name in ("scores", "scores_z"):
        value = {key: score if math.isfinite(score) else None for key, score in value.items()}
    return json.dumps(value, sort_keys=True, allow_nan=False)


def load_field(name: str, text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return _score_dict(name, value) if name in ("scores", "scores_z") else value
