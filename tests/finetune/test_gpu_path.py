"""The GPU path (issue 35.3): mixed precision, channels-last where it helps, augmentation on the device in
float32 outside autograd and autocast, no host-device sync in a training step, pinned batches. What autocast
does is tested on the CPU (Lightning's bf16-mixed runs there too); what only a GPU shows is skipped without
one."""

from __future__ import annotations

import random

import lightning.pytorch as pl
import numpy as np
import pytest
import timm
import torch
from conftest import write_random_bank

from automl.bank import load_bank
from automl.finetune import fit_once
from automl.finetune.augment import BatchAugment
from automl.finetune.data import TaskDataModule
from automl.finetune.module import FINITE_CHECK_STEPS, FinetuneModule, convolves_past_stem, precision_for
from automl.images import load_task
from automl.images.pixels import normalize
from automl.settings import (
    AugmentSettings,
    BankSettings,
    FinetuneSettings,
    Hparams,
    SettingsError,
    TaskSettings,
    compose,
    resolve,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")  # Lightning's

CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "interpolation": "bilinear",
          "crop_pct": 1.0, "crop_mode": "center"}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A resnet and a ViT bank entry (random weights, 32 px) and builtin digits."""
    root = tmp_path_factory.mktemp("gpu_path")
    models = {"resnet": ("test_resnet", {}), "vit": ("test_vit", {"img_size": 32, "patch_size": 4})}
    bank = load_bank(BankSettings(dir=str(write_random_bank(root / "bank", models, 10))), root / "cache")
    return {entry.name: entry for entry in bank}, load_task(TaskSettings(builtin="digits"), root / "cache")


# --------------------------------------------------------------------------------------- channels-last
@pytest.mark.parametrize("arch, kwargs, convnet", [
    ("test_resnet", {}, True), ("test_efficientnet", {}, True), ("test_convnext", {}, True), ("test_nfnet", {}, True),
    ("test_vit", {}, False), ("vit_small_patch16_224", {}, False), ("convnext_tiny", {}, True),
    ("resnet50", {}, True), ("swin_tiny_patch4_window7_224", {}, False), ("levit_128", {}, False)])
def test_channels_last_auto_is_for_models_that_convolve_past_their_stem(arch, kwargs, convnet):
    with torch.device("meta"):  # the structure is all it reads
        model = timm.create_model(arch, **kwargs)
    assert convolves_past_stem(model) is convnet


def test_channels_last_auto_decides_per_model_and_true_false_are_kept():
    hparams = Hparams(epochs=1, batch_size=4)
    vit = timm.create_model("test_vit", num_classes=3)
    resnet = timm.create_model("test_resnet", num_classes=3)
    assert not FinetuneModule(vit, 3, hparams, channels_last="auto").channels_last
    assert FinetuneModule(resnet, 3, hparams, channels_last="auto").channels_last
    assert FinetuneModule(vit, 3, hparams, channels_last=True).channels_last
    assert not FinetuneModule(resnet, 3, hparams, channels_last=False).channels_last
    assert FinetuneSettings().channels_last == "auto"


def test_layout_and_precision_settings_are_checked_and_name_the_setting():
    for value in ("sometimes", 1, None):
        with pytest.raises(SettingsError, match=r"finetune\.channels_last"):
            FinetuneSettings(channels_last=value)
    with pytest.raises(SettingsError, match=r"finetune\.precision='bf16-true' must be one of"):
        FinetuneSettings(precision="bf16-true")
    assert resolve(compose(["finetune.channels_last=false"])).finetune.channels_last is False


def test_precision_auto_is_fp32_on_the_cpu():
    assert precision_for("cpu") == "32-true" and precision_for("cpu", "bf16-mixed") == "bf16-mixed"


# --------------------------------------------------------------------------------------- augmentation
def test_augmentation_is_float32_outside_autograd_and_autocast():
    pixels = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    augment = BatchAugment(AugmentSettings(hflip=0.5, color_jitter=0.3, re_prob=0.5), CONFIG)
    random.seed(0), torch.manual_seed(0)  # random erasing draws from Python's generator
    plain = augment(pixels)
    random.seed(0), torch.manual_seed(0)
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        images = augment(pixels)
        assert torch.is_autocast_enabled("cpu")  # the caller's context is left as it was
    assert images.dtype == torch.float32 and images.shape == pixels.shape and not images.requires_grad
    # the same pixels: under autocast, affine_grid would give bfloat16 crop coordinates (~1/128 of the side)
    torch.testing.assert_close(images, plain, rtol=0, atol=0)
    still = BatchAugment(AugmentSettings(scale=[1.0, 1.0], ratio=[1.0, 1.0]), CONFIG)
    assert not still.resamples
    torch.testing.assert_close(still(pixels), normalize(pixels, CONFIG), rtol=0, atol=0)


# ----------------------------------------------------------------------------------- mixed precision
class Precision(pl.Callback):
    """The dtype of the logits and of the loss in the first training step."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.loss_dtype = outputs["loss"].dtype
        self.input_dtype = batch[0].dtype


def test_a_fit_under_bf16_autocast_trains_mixed_batches_and_records_its_layout(setup):
    entries, task = setup
    settings = FinetuneSettings(precision="bf16-mixed", limit_train_batches=3, progress_bar=False, num_workers=0,
                                torch_threads=1, augment=AugmentSettings(hflip=0.5, re_prob=0.25))
    seen = Precision()
    result = fit_once(entries["resnet"], task, Hparams(epochs=2, batch_size=16, mixup=0.2, cutmix=0.2,
                                                       label_smoothing=0.1), settings, callbacks=[seen])
    assert result.precision == "bf16-mixed" and result.channels_last  # a convnet: NHWC
    assert seen.input_dtype == torch.float32 and seen.loss_dtype == torch.float32  # autocast casts inside the model
    assert len(result.val_curve) == 2 and all(0 <= v <= 100 for v in result.val_curve)
    assert all(value.dtype == torch.float32 and value.device.type == "cpu" for key, value in result.best_state.items()
               if value.is_floating_point())
    vit = fit_once(entries["vit"], task, Hparams(epochs=1, batch_size=16), FinetuneSettings(
        limit_train_batches=2, progress_bar=False, num_workers=0, torch_threads=1))
    assert vit.precision == "32-true" and not vit.channels_last  # a transformer: NCHW


class NanAt(pl.Callback):
    """Makes training batch ``batch_idx`` NaN, so its loss (and every later one: the weights go NaN) is NaN."""

    def __init__(self, batch_idx: int):
        self.batch_idx = batch_idx

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.batch_idx:
            batch[0].fill_(float("nan"))


def test_a_nan_loss_is_caught_at_the_next_check_not_at_every_step(setup):
    entries, task = setup
    settings = FinetuneSettings(limit_train_batches=FINITE_CHECK_STEPS + 5, progress_bar=False, num_workers=0,
                                torch_threads=1)
    with pytest.raises(FloatingPointError, match=f"NaN or infinite by epoch 0, step {FINITE_CHECK_STEPS - 1} "):
        fit_once(entries["vit"], task, Hparams(epochs=1, batch_size=2), settings, callbacks=[NanAt(3)])


# -------------------------------------------------------------------------------------- on a GPU only
class NoSync(pl.Callback):
    """Every training step but the finite check's (from batch start to batch end: forward, loss, backward,
    optimizer step) with CUDA's sync debug mode at ``error``: reading a value back raises."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx % FINITE_CHECK_STEPS != FINITE_CHECK_STEPS - 1:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, *args):
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_on_a_gpu_batches_are_pinned_augmented_there_and_steps_never_wait_for_it(setup):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("fp16 loss scaling reads the gradients' finiteness back at every step")
    entries, task = setup
    datamodule = TaskDataModule(task, CONFIG, 16, num_workers=0, augment=AugmentSettings(hflip=0.5, re_prob=0.5),
                                pin_memory=True)
    pixels, _ = next(iter(datamodule.train_dataloader()))
    assert pixels.is_pinned() and pixels.dtype == torch.uint8
    on_gpu = pixels.cuda(non_blocking=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        images = datamodule.augment(on_gpu)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert images.device.type == "cuda" and images.dtype == torch.float32
    result = fit_once(entries["resnet"], task, Hparams(epochs=1, batch_size=16), FinetuneSettings(
        limit_train_batches=8, progress_bar=False, num_workers=0), device="cuda", callbacks=[NoSync()])
    assert result.precision == "bf16-mixed" and result.channels_last
    assert np.isfinite(result.val_accuracy)
