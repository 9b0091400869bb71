"""Settings of the finetune stage: the hyperparameters of one fit, its augmentation, and the search."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from automl.settings._checks import SettingsError, check_fields, check_value, rule

OPTIMIZERS = ("adamw", "sgd")
STRATEGIES = ("full", "partial", "linear_probe")
LOGGERS = ("none", "csv", "tensorboard", "mlflow")
LOGGER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",)}  # any one will do
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")  # half-precision weights ("-true") do not fine-tune well


@dataclass
class Hparams:
    """The hyperparameters of one fine-tuning fit (every field is searchable in ``conf/search_space``)."""

    lr: float = field(default=3e-3, metadata=rule(gt=0))  # peak learning rate (after warmup)
    weight_decay: float = field(default=0.05, metadata=rule(ge=0))  # not applied to biases and norms
    optimizer: str = field(default="adamw", metadata=rule(choices=OPTIMIZERS))  # sgd: momentum 0.9
    strategy: str = field(default="full", metadata=rule(choices=STRATEGIES))  # partial: freeze early blocks
    freeze_fraction: float = field(default=0.5, metadata=rule(ge=0, le=1))  # of the blocks, for `partial`
    layer_decay: float = field(default=1.0, metadata=rule(gt=0, le=1))  # LR of block i of L: lr*decay**(L-i)
    label_smoothing: float = field(default=0.0, metadata=rule(ge=0, lt=1))
    mixup: float = field(default=0.0, metadata=rule(ge=0))  # mixup alpha (0 = off)
    cutmix: float = field(default=0.0, metadata=rule(ge=0))  # cutmix alpha (0 = off)
    batch_size: int = field(default=64, metadata=rule(integer=True, ge=1))
    epochs: int = field(default=30, metadata=rule(integer=True, ge=1))
    warmup_epochs: float = field(default=1.0, metadata=rule(ge=0))  # linear warmup, then cosine to 0

    def __post_init__(self) -> None:
        check_fields(self, "hparams")
        self.batch_size, self.epochs = int(self.batch_size), int(self.epochs)

    @property
    def mixing(self) -> bool:
        """Whether batches are mixed (mixup and/or cutmix on)."""
        return self.mixup > 0 or self.cutmix > 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "hyperparameters") -> Hparams:
        """Hparams from every field of ``values`` (nothing missing, nothing else); errors name ``where``."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        missing = [name for name in names if name not in values]
        if unknown or missing:
            raise SettingsError(f"{where}: unknown hyperparameter(s) {unknown}, missing {missing}; "
                                f"known: {names}")
        try:
            return cls(**values)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {str(exc).removeprefix('hparams.')}") from None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


HPARAM_NAMES = tuple(f.name for f in dataclasses.fields(Hparams))


@dataclass
class AugmentSettings:
    """Training augmentation, applied to whole batches on the training device (automl.finetune.augment)."""

    scale: list[float] = field(default_factory=lambda: [0.7, 1.0])  # random resized crop: area kept
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # random resized crop: aspect ratio
    translate: float = field(default=0.0, metadata=rule(ge=0, le=0.5))  # random shift, fraction of the side
    hflip: float = field(default=0.0, metadata=rule(ge=0, le=1))  # off: flips change digits and letters
    vflip: float = field(default=0.0, metadata=rule(ge=0, le=1))
    color_jitter: float = field(default=0.0, metadata=rule(ge=0))  # brightness, contrast, saturation
    re_prob: float = field(default=0.0, metadata=rule(ge=0, le=1))  # random erasing probability

    def __post_init__(self) -> None:
        check_fields(self, "augment")
        for name in ("scale", "ratio"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
                raise SettingsError(f"augment.{name}={low_high} must be [low, high] with 0 < low <= high")
        if self.scale[1] > 1:
            raise SettingsError(f"augment.scale={self.scale}: the area kept is at most 1")


@dataclass
class FinetuneSettings:
    """One Optuna study over (top-k model x hyperparameters); every trial a Lightning fit.

    Budget, resume and scale-out semantics: :mod:`automl.finetune.search`.
    """

    top_k: int = field(default=3, metadata=rule(integer=True, ge=1))  # best-ranked models the study searches
    n_trials: int | None = field(default=4, metadata=rule(integer=True, ge=1, optional=True))  # all workers
    time_budget_min: float | None = field(default=None, metadata=rule(gt=0, optional=True))  # per worker
    study: str | None = None  # null: a name derived from the run's inputs
    artifacts_dir: str = field(  # trial weights (a shared disk when scaling out)
        default_factory=lambda: os.environ.get("AUTOML_ARTIFACTS_DIR", "outputs/artifacts"))
    sampler: str = field(default="tpe", metadata=rule(choices=("tpe", "random")))
    pruner: str = field(default="successive_halving",
                        metadata=rule(choices=("successive_halving", "hyperband", "median", "none")))
    reduction_factor: int = field(default=3, metadata=rule(integer=True, ge=2))  # keep the best 1/rf per rung
    first_rung: int = field(default=5, metadata=rule(integer=True, ge=2))  # epochs before the first pruning
    warm_start: bool = True  # enqueue default_hparams per top-k model first (+ the history's best)
    refit: bool = True  # retrain the best configuration on train + val before exporting it
    max_epochs: int = field(default=30, metadata=rule(integer=True, ge=1))  # the pruner's maximum resource
    # The training-set size default_hparams.epochs is meant for (see planned_epochs); null: always those epochs.
    epochs_for_images: int | None = field(default=2000, metadata=rule(integer=True, ge=1, optional=True))
    default_hparams: Hparams = field(default_factory=Hparams)  # warm-start trials; fill what the space omits
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    # auto: bf16-mixed on a GPU that supports it, else 16-mixed (loss scaled), 32-true on the CPU
    precision: str = field(default="auto", metadata=rule(choices=PRECISIONS))
    # NHWC weights and batches: auto = for convnets (faster steps), not for transformers (slower); or true/false
    channels_last: Any = "auto"
    # data loader processes, or an int >= 0: auto = 0 for a cached split (batches index decoded pixels), one per
    # core but one (at most 8) for a split decoded on the fly
    num_workers: Any = "auto"
    # Decoded pixels cached on disk (cache_dir/pixels/, ~150 KB an image at 224 px; every file there counts): a
    # split that would take the folder over this many GB, or fill half the free disk, is decoded on the fly by
    # the loader's workers instead, into the same pixels (2.5-3.5x slower with one worker on 2 CPU cores:
    # docs/results/pixel-paths.md). null: no limit; 0: never cache. Nothing is evicted (delete the folder).
    # Why 20 GB: ~130k images at 224 px, a 40k-image task at three input pipelines, about what such a task's
    # photographs take themselves; a fixed figure, not a share of the free disk (which the cache itself uses
    # up), sends a split the same way on every machine.
    pixel_cache_gb: float | None = field(default=20.0, metadata=rule(ge=0, optional=True))
    torch_threads: int | None = field(default=None, metadata=rule(integer=True, ge=1, optional=True))
    limit_train_batches: Any = None  # cap batches per epoch: an int, a fraction in (0, 1], or null
    progress_bar: bool = True  # Lightning's bar for every fit
    # Per-trial metrics for the tools people already use: <run>/trials/trial-<n>/ as CSV (metrics.csv),
    # TensorBoard event files or an MLflow run (each when its package is installed), or none.
    logger: str = field(default="csv", metadata=rule(choices=LOGGERS))
    mlflow_uri: str | None = None  # MLflow tracking URI; null: file:<run>/mlruns
    heartbeat_interval: int = field(default=30, metadata=rule(integer=True, ge=1))  # seconds
    grace_period: int = field(default=120, metadata=rule(integer=True, ge=1))  # then a silent trial is retried
    max_retry: int = field(default=2, metadata=rule(integer=True, ge=0))  # retries of a trial whose worker died
    # A trial out of memory runs again with half the batch size, down to this floor (then it fails).
    min_batch_size: int = field(default=8, metadata=rule(integer=True, ge=1))
    # Worker processes sharing the study, one per device: N, a list of GPU indices, or auto (every visible
    # GPU); N CPU workers when device=cpu. The refit and export run once, after them.
    devices: Any = 1

    def planned_epochs(self, num_train: int) -> int:
        """Epochs a trial plans on ``num_train`` training images: ``default_hparams.epochs`` up to
        ``epochs_for_images`` images, then ``epochs x sqrt(epochs_for_images / num_train)`` (at least 3):
        a bigger task gets more optimizer steps, but not proportionally more (56k images: 6 of 30 epochs)."""
        epochs = self.default_hparams.epochs
        if self.epochs_for_images is None or num_train <= self.epochs_for_images:
            return epochs
        return min(epochs, max(3, round(epochs * math.sqrt(self.epochs_for_images / num_train))))

    def __post_init__(self) -> None:
        check_fields(self, "finetune")
        if self.n_trials is None and self.time_budget_min is None:
            raise SettingsError("finetune: set n_trials and/or time_budget_min (the search needs a budget)")
        if self.num_workers != "auto":
            check_value(self.num_workers, "finetune.num_workers", integer=True, ge=0)
        if self.channels_last != "auto" and not isinstance(self.channels_last, bool):
            raise SettingsError(f"finetune.channels_last={self.channels_last!r} must be auto, true or false")
        check_devices(self.devices)
        if self.limit_train_batches is not None:
            check_value(self.limit_train_batches, "finetune.limit_train_batches", gt=0)
        needed = LOGGER_PACKAGES.get(self.logger, ())
        if needed and not any(importlib.util.find_spec(package) for package in needed):
            raise SettingsError(f"finetune.logger={self.logger} needs the {needed[0]} package (pip install "
                                f"{needed[0]}); or finetune.logger=csv")
        if self.grace_period <= self.heartbeat_interval:
            raise SettingsError(f"finetune.grace_period={self.grace_period} must exceed "
                                f"finetune.heartbeat_interval={self.heartbeat_interval}")
        if self.default_hparams.epochs > self.max_epochs:
            raise SettingsError(f"finetune.default_hparams.epochs={self.default_hparams.epochs} exceeds "
                                f"finetune.max_epochs={self.max_epochs}")


def check_devices(devices: Any) -> None:
    """``finetune.devices`` is ``auto``, a count >= 1 or a non-empty list of distinct GPU indices (ints >= 0)."""
    def index(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if isinstance(devices, list | tuple):
        valid = bool(devices) and len(set(devices)) == len(devices) and all(map(index, devices))
    else:
        valid = devices == "auto" or (index(devices) and devices >= 1)
    if not valid:
        raise SettingsError(f"finetune.devices={devices!r} must be a count >= 1, a list of distinct GPU indices "
                            "(integers >= 0) or auto")
