"""The LightningModule that fine-tunes one timm backbone.

One fit = one Optuna trial: :class:`automl.settings.Hparams`, a freezing strategy (:func:`freeze`), timm's
optimizer with layer-wise LR decay applied by a per-step warmup + cosine schedule
(:func:`build_optimizer`), label smoothing or mixup/cutmix with the matching soft-target loss, and the
best-epoch weights kept in memory (:class:`FinetuneModule`). :func:`make_trainer` builds the Lightning
Trainer the search and the benchmark both use.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.models import group_parameters
from timm.optim import create_optimizer_v2
from torch import nn

from automl._progress import live_progress
from automl.bank.meta import forward_mflops
from automl.settings import STRATEGIES, Hparams

# Lightning 2.6 builds torch's deprecated LeafSpec on every step; the notice is for Lightning, not for users.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)

class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (typically a learning rate far too high)."""


# Reading a value back from a GPU waits for every kernel queued before it, so the device idles while the
# host prepares the next step; the training loss is therefore checked every this many steps (and at the
# end of every epoch's training), not at every step.
FINITE_CHECK_STEPS = 32


# ---------------------------------------------------------------------------------------------- freezing
def classifier_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters of ``model.get_classifier()`` (the head a new task replaces)."""
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    return [name for name, p in model.named_parameters() if id(p) in head_ids]


def backbone_blocks(model: nn.Module) -> list[list[str]]:
    """The backbone's parameter names grouped into blocks, input side first, classifier excluded.

    Blocks come from timm's ``group_matcher(coarse=False)`` (the grouping layer-wise LR decay uses);
    models without one fall back to their top-level children in registration order.
    """
    head = set(classifier_parameter_names(model))
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=False))
        blocks = [names for _, names in sorted(grouped.items())]
    else:
        blocks = [[f"{child}.{name}" for name, _ in module.named_parameters()]
                  for child, module in model.named_children()]
    blocks = [[name for name in names if name not in head] for names in blocks]
    return [names for names in blocks if names]


def freeze(model: nn.Module, strategy: str, freeze_fraction: float = 0.5) -> list[str]:
    """Set ``requires_grad`` for ``strategy`` and return the names of the frozen parameters.

    ``full`` trains everything; ``linear_probe`` only the classifier; ``partial`` freezes the first
    ``floor(freeze_fraction * B)`` of the B backbone blocks (:func:`backbone_blocks`).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} must be one of {list(STRATEGIES)}")
    if strategy == "full":
        frozen: set[str] = set()
    elif strategy == "linear_probe":
        head = set(classifier_parameter_names(model))
        frozen = {name for name, _ in model.named_parameters() if name not in head}
    else:
        blocks = backbone_blocks(model)
        frozen = {name for names in blocks[: int(freeze_fraction * len(blocks))] for name in names}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    return [name for name, _ in model.named_parameters() if name in frozen]


def _frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Batch-norm layers whose parameters are all frozen: their running statistics must stay fixed too."""
    return [module for module in model.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in module.parameters())]


# ----------------------------------------------------------------------------------------- optimization
class WarmupCosine:
    """LR multiplier at optimizer step ``step`` (0-based): ``scale`` x linear warmup over ``warmup``
    steps, then cosine decay to 0 at ``total`` steps. ``scale`` carries timm's per-group ``lr_scale``."""

    def __init__(self, scale: float, warmup: int, total: int):
        self.scale, self.warmup, self.total = scale, warmup, max(total, 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.scale * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.scale * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, hparams: Hparams, total_steps: int,
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """timm's optimizer over the trainable parameters, and a per-step schedule applying layer decay.

    ``create_optimizer_v2(layer_decay=...)`` only *records* ``lr_scale`` in each parameter group; timm's
    own schedulers apply it. Here the LambdaLR multiplies each group's LR by its ``lr_scale``, so
    group g runs at ``lr * lr_scale[g] * WarmupCosine(step)``.
    """
    optimizer = create_optimizer_v2(
        model, opt=hparams.optimizer, lr=hparams.lr, weight_decay=hparams.weight_decay, momentum=0.9,
        layer_decay=hparams.layer_decay if hparams.layer_decay < 1.0 else None,
    )
    warmup = round(hparams.warmup_epochs * total_steps / hparams.epochs)
    factors = [WarmupCosine(group.get("lr_scale", 1.0), warmup, total_steps) for group in optimizer.param_groups]
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


# ------------------------------------------------------------------------------------------------ module
class FinetuneModule(pl.LightningModule):
    """Fine-tunes ``model`` (a timm classifier whose head already has ``num_classes`` outputs).

    Batches are ``(images [B, 3, H, W] float, labels [B] int64)``; with ``channels_last`` (True, or
    ``auto``: :func:`convolves_past_stem`) the weights and every batch are kept in NHWC layout (faster
    convolutions on CPUs and tensor cores; the values and the state dict's keys and shapes are the same);
    ``self.channels_last`` says which. Logs ``train_loss`` per step and
    ``val_acc`` (percent, 0..100) per epoch; keeps the weights of the best validation epoch on the CPU
    in ``best_state`` (``best_val_acc``, ``best_epoch`` 0-based).
    A non-finite training loss raises :class:`NonFiniteLossError` (within :data:`FINITE_CHECK_STEPS` steps).
    Under mixed precision (Lightning's autocast) the losses and the accuracy counts are computed in float32
    and int64.
    """

    def __init__(self, model: nn.Module, num_classes: int, hparams: Hparams, channels_last: bool | str = False):
        super().__init__()
        self.channels_last = uses_channels_last(model, channels_last)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.hp = hparams  # not `hparams`: Lightning reserves that name
        freeze(model, hparams.strategy, hparams.freeze_fraction)
        self._frozen_norms = _frozen_norms(model)
        self.mixup = Mixup(mixup_alpha=hparams.mixup, cutmix_alpha=hparams.cutmix, label_smoothing=hparams.label_smoothing,
                           num_classes=num_classes) if hparams.mixing else None
        self.train_loss = SoftTargetCrossEntropy() if hparams.mixing else nn.CrossEntropyLoss(
            label_smoothing=hparams.label_smoothing)
        self.best_val_acc = -math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_validated = 0
        self.val_curve: list[float] = []  # validation accuracy (percent) after each epoch
        self.images_seen = 0  # training images processed (the compute a fit used)
        self.mflops: float | None = None  # forward MFLOPs per training image, measured when training starts
        self.resumed_at: int | None = None  # 0-based epoch the fit continued at from a checkpoint
        self._correct = self._seen = None
        self._nonfinite: torch.Tensor | None = None  # on the device: whether a loss since the last check was

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def train(self, mode: bool = True) -> FinetuneModule:
        super().train(mode)
        for norm in self._frozen_norms:  # frozen blocks keep their pretrained batch statistics
            norm.eval()
        return self

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        images, labels = batch
        if self.mixup is not None:
            even = len(images) - len(images) % 2  # timm mixes the batch with its flipped self: even sizes only
            if even == 0:
                return None
            images, targets = self.mixup(images[:even], labels[:even])
        else:
            targets = labels
        loss = self.train_loss(self(images), targets)  # float32 under autocast too: it runs losses in float32
        self.images_seen += len(images)
        flag = ~torch.isfinite(loss.detach())
        self._nonfinite = flag if self._nonfinite is None else self._nonfinite | flag
        if batch_idx % FINITE_CHECK_STEPS == FINITE_CHECK_STEPS - 1:
            self._raise_if_nonfinite()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _raise_if_nonfinite(self) -> None:
        """:class:`NonFiniteLossError` if a training loss since the last check was NaN or infinite."""
        flagged, self._nonfinite = self._nonfinite, None
        if flagged is not None and bool(flagged):
            raise NonFiniteLossError(
                f"training loss became NaN or infinite by epoch {self.current_epoch}, step {self.global_step} "
                f"(lr={self.hp.lr:g}, optimizer={self.hp.optimizer}); the learning rate is probably too high")

    def on_train_epoch_end(self) -> None:
        self._raise_if_nonfinite()  # a refit, which does not validate

    def on_validation_epoch_start(self) -> None:
        self._raise_if_nonfinite()  # before an epoch of NaN weights is validated (and kept as the best)
        self._correct = torch.zeros((), dtype=torch.long, device=self.device)
        self._seen = torch.zeros((), dtype=torch.long, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self._correct += (self(images).argmax(dim=1) == labels).sum()
        self._seen += len(labels)

    def on_train_start(self) -> None:
        self.mflops = forward_mflops(self.model, tuple(self.trainer.datamodule.data_config["input_size"]))

    def on_validation_epoch_end(self) -> None:
        accuracy = 100.0 * self._correct.item() / max(1, self._seen.item())
        self.log("val_acc", accuracy, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        self.epochs_validated += 1
        self.val_curve.append(accuracy)
        if accuracy > self.best_val_acc:
            self.best_val_acc, self.best_epoch = accuracy, self.current_epoch
            self.best_state = cpu_state(self.model)

    # Lightning's checkpoint holds the model, optimizer, schedule and loops; the module adds what it tracks
    # itself and the random state, so that a resumed fit draws the same batches and augmentations.
    _TRACKED = ("best_val_acc", "best_epoch", "best_state", "epochs_validated", "val_curve", "images_seen")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["automl"] = {**{name: getattr(self, name) for name in self._TRACKED}, "rng": rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["automl"]
        for name in self._TRACKED:
            setattr(self, name, state[name])
        set_rng_state(state["rng"])
        self.resumed_at = self.epochs_validated

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = build_optimizer(self.model, self.hp, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def rng_state() -> dict[str, Any]:
    """Python's, numpy's, torch's and every CUDA device's random state, as plain types and tensors (what
    ``torch.load(weights_only=True)`` reads back)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (timm's Mixup draws from it)
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.copy()), position, has_gauss, gauss],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` took."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def convolves_past_stem(model: nn.Module) -> bool:
    """Whether ``model`` has 2-D convolutions outside the top-level module that holds its first one (its stem):
    what ``finetune.channels_last=auto`` trains in NHWC. Convnets do (ResNet, EfficientNet, MobileNet,
    ConvNeXt, RegNet, and hybrids such as MaxViT and CoAtNet), and gain from NHWC; transformers and
    mixers (ViT, DeiT, Swin, EVA, LeViT, MLP-Mixer) convolve only in their patch embedding, compute on
    token sequences, and only pay the layout conversions (test_vit stepped 0.94x as fast in NHWC on a CPU).
    A share of convolution FLOPs would misjudge ConvNeXt, whose MLPs are Linear layers over NHWC maps."""
    owners = {name.split(".")[0] for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    return len(owners) > 1


def uses_channels_last(model: nn.Module, setting: bool | str) -> bool:
    """Whether ``model`` trains in NHWC under ``finetune.channels_last`` = ``setting`` (``auto``:
    :func:`convolves_past_stem`)."""
    return convolves_past_stem(model) if setting == "auto" else bool(setting)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s state dict on the CPU, in the standard (contiguous) layout whatever the
    model trains in: what safetensors saves and any model of the architecture loads."""
    return {key: value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
            for key, value in model.state_dict().items()}


# ----------------------------------------------------------------------------------------------- trainer
def precision_for(device: str, precision: str = "auto") -> str:
    """``auto``: bf16-mixed on a GPU that supports it, else 16-mixed on a GPU, 32-true elsewhere."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def make_logger(kind: str, folder: Path, name: str, mlflow_uri: str | None = None) -> Logger | None:
    """The Lightning logger ``finetune.logger`` names for one fit called ``name``: CSV or TensorBoard files in
    ``folder/<name>/``, an MLflow run (experiment ``folder``'s run, tracking at ``mlflow_uri`` or
    ``file:<folder>/../mlruns``), or None for ``none``."""
    if kind == "csv":
        return CSVLogger(save_dir=folder, name=name, version="")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=folder, name=name, version="", default_hp_metric=False)
    if kind == "mlflow":
        return MLFlowLogger(experiment_name=folder.parent.name, run_name=name,
                            tracking_uri=mlflow_uri or f"file:{folder.parent / 'mlruns'}")
    return None


class FitProgress(pl.Callback):
    """One live line per fit, in place of Lightning's bars (which count epochs from 0 and stack up): ``label``,
    a bar over every training batch of every epoch, ``epoch e/E`` (from 1), the last and best validation
    accuracy, and the time left. Transient: the caller logs the outcome."""

    def __init__(self, label: str):
        self.label = label
        self.progress: Progress | None = None

    def on_train_start(self, trainer: pl.Trainer, module: FinetuneModule) -> None:
        per_epoch = max(1, int(trainer.num_training_batches))
        self.progress = live_progress(TextColumn("{task.description}"), BarColumn(bar_width=16),
                                      TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]} {task.fields[val]}"),
                                      TimeRemainingColumn(compact=True), transient=True)
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=per_epoch * trainer.max_epochs,
                                           completed=per_epoch * module.epochs_validated,
                                           epoch=module.epochs_validated + 1, epochs=trainer.max_epochs, val="")

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)

    def on_validation_end(self, trainer: pl.Trainer, module: FinetuneModule) -> None:
        if self.progress is not None and not trainer.sanity_checking and module.val_curve:
            self.progress.update(self.task, epoch=min(module.epochs_validated + 1, trainer.max_epochs),
                                 val=f"val {module.val_curve[-1]:.1f}% best {module.best_val_acc:.1f}%")

    def teardown(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def make_trainer(epochs: int, device: str, *, precision: str = "auto", callbacks: Sequence[pl.Callback] = (),
                 limit_train_batches: int | float | None = None, progress_bar: bool = True, label: str = "fit",
                 validate: bool = True, logger: Logger | None = None) -> pl.Trainer:
    """A single-device Trainer for one trial: the given logger only, no checkpoints of its own (the module
    keeps the best weights), no sanity validation, no validation at all without ``validate``, and with
    ``progress_bar`` one :class:`FitProgress` line called ``label``; ``device`` is ``cpu``, ``cuda[:i]`` or
    ``mps`` (on a GPU, cuDNN picks its fastest kernels for the batch shape, as timm's train.py has it)."""
    accelerator, _, index = device.partition(":")
    accelerator = {"cuda": "gpu"}.get(accelerator, accelerator)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        return pl.Trainer(
            max_epochs=epochs,
            accelerator=accelerator,
            devices=[int(index)] if index else 1,
            precision=precision_for(device, precision),
            benchmark=True if accelerator == "gpu" else None,
            callbacks=[*callbacks, *([FitProgress(label)] if progress_bar else [])],
            logger=logger or False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            limit_train_batches=limit_train_batches,
            limit_val_batches=None if validate else 0,
            log_every_n_steps=1,
        )
