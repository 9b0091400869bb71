"""Settings of the rank stage and of what it reads: task, bank, probe and rank."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.settings._checks import SettingsError, check_fields, rule

MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS)


# --------------------------------------------------------------------------------------------- task
@dataclass
class TaskSettings:
    """Where the images are (one of root, csv, builtin) and how splits are made."""

    name: str | None = None  # null: the ImageFolder's folder name, the CSV's stem or the builtin's name
    root: str | None = None  # ImageFolder: root/<class>/<image> or root/{train,val,test}/<class>/<image>
    csv: str | None = None  # CSV with columns path,label[,split]; paths relative to the CSV
    builtin: str | None = None  # an offline builtin task (automl.images.synthetic targets)
    val_fraction: float = field(default=0.15, metadata=rule(gt=0, lt=1))  # carved from train if no val split
    test_fraction: float = field(default=0.15, metadata=rule(gt=0, lt=1))  # carved from train if no test split
    image_size: int | None = field(default=None, metadata=rule(integer=True, ge=8, optional=True))  # input side
    seed: int = 0  # a run links it to its own seed
    on_bad_image: str = field(default="warn", metadata=rule(choices=("warn", "error")))  # skip+list, or stop
    max_image_pixels: int = field(default=MAX_PIXELS, metadata=rule(integer=True, ge=1))  # larger: a bad image

    def __post_init__(self) -> None:
        check_fields(self, "task")
        if self.val_fraction + self.test_fraction >= 1:
            raise SettingsError(f"task.val_fraction={self.val_fraction} + task.test_fraction={self.test_fraction} "
                                "must be below 1")

    @property
    def label(self) -> str:
        """The task's name: ``name``, else derived from its source (see :func:`task_name`)."""
        return task_name(self.name, self.root, self.csv, self.builtin)


def task_name(name: str | None, root: str | None, csv: str | None, builtin: str | None) -> str:
    """A task's name: ``name``, else the ImageFolder's folder name, the CSV's stem or the builtin's name."""
    if name:
        return str(name)
    if root:
        return Path(str(root)).expanduser().resolve().name
    if csv:
        return Path(str(csv)).stem
    return str(builtin or "task")


# --------------------------------------------------------------------------------------------- bank
BANK_BUILDERS = ("demo",)


@dataclass
class BankSettings:
    """An inline list of checkpoints (``models``) or a folder holding a ``bank.yaml`` manifest (``dir``)."""

    name: str | None = None
    models: list[dict[str, Any]] | None = None  # inline entries (format: README, "Using your own bank")
    dir: str | None = None  # folder with bank.yaml; paths in it are relative to it
    build: str | None = field(default=None, metadata=rule(choices=(None, *BANK_BUILDERS)))  # build it if missing
    on_error: str = field(default="skip", metadata=rule(choices=("skip", "error")))  # an entry that fails to load

    def __post_init__(self) -> None:
        check_fields(self, "bank")
        if self.models is not None and (self.dir is not None or self.build is not None):
            raise SettingsError("bank: give either `models` (an inline bank) or `dir` (a folder with bank.yaml), "
                                "not both")
        if self.models is None and self.dir is None and self.build is None:
            raise SettingsError("bank: set `models` (an inline bank) or `dir` (a folder with bank.yaml)")


# -------------------------------------------------------------------------------------------- probe
@dataclass
class ProbeSettings:
    """The PARC paper's probe set: a fixed budget of training images, classes as even as possible."""

    budget: int = field(default=500, metadata=rule(integer=True, ge=4))  # images
    min_per_class: int = field(default=2, metadata=rule(integer=True, ge=1))
    subsample_classes: bool = True  # too many classes for the budget: a random subset (false: an error)
    seed: int = 0  # a run links it to its own seed

    def __post_init__(self) -> None:
        check_fields(self, "probe")
        if self.budget < 2 * self.min_per_class:
            raise SettingsError(f"probe.budget={self.budget} must hold 2 classes x probe.min_per_class="
                                f"{self.min_per_class}")


# --------------------------------------------------------------------------------------------- rank
@dataclass
class PredictorSettings:
    """The accuracy predictor (automl.predictor): which regression, and what its interval holds."""

    kind: str = field(default="blend", metadata=rule(choices=("ridge", "boosting", "blend")))
    coverage: float = field(default=0.8, metadata=rule(gt=0, lt=1))  # central share of held-out errors
    data: str | None = None  # a meta-benchmark data folder to learn from; null: the one the package ships
    # Your history's trials stopped early teach too, at the accuracy their validation curve was headed for
    # (automl.predictor.curves; docs/results/learning-curves.md), not only the one fit per run that completes.
    # The refit is adopted only when leave-one-task-out on complete fits says it helps, either way.
    learn_from_curves: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "rank.predictor")


@dataclass
class RankSettings:
    """Probe features → transferability scores → predicted fine-tuned accuracy."""

    scores: list[str] | None = None  # null: every score in automl.transferability.available()
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-score keyword options
    batch_size: int = field(default=64, metadata=rule(integer=True, ge=1))  # feature extraction
    show: int = field(default=10, metadata=rule(integer=True, ge=1))  # rows of the console table
    predictor: PredictorSettings = field(default_factory=PredictorSettings)

    def __post_init__(self) -> None:
        check_fields(self, "rank")
        from automl import transferability  # scipy and scikit-learn: a second the small commands do not need

        names = transferability.available()
        unknown = [name for name in (self.scores or []) + list(self.options) if name not in names]
        if unknown:
            raise SettingsError(f"rank.scores/rank.options: unknown score(s) {unknown}; available: "
                                f"{', '.join(names)}")

    @property
    def score_names(self) -> list[str]:
        from automl import transferability

        return transferability.available() if self.scores is None else list(self.scores)
