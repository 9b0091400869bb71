"""The decoded-pixel cache's limit (issue 35.2): a split that would take ``cache_dir/pixels/`` over
``finetune.pixel_cache_gb`` is decoded on the fly, in the loader's worker processes, into the same bytes the
cache holds, so a fit trains and evaluates exactly as it would on the cached split."""

from __future__ import annotations

import dataclasses
import logging
import pickle

import numpy as np
import pytest
import torch
from conftest import TINY_DATA_CONFIG, write_random_bank
from PIL import Image

import automl.images.pixels as pixels_module
from automl.bank import load_bank
from automl.finetune import fit_once
from automl.finetune.data import TaskDataModule, resolve_num_workers
from automl.images import load_task
from automl.images.pixels import LazyPixels, cache_bytes, split_pixels, training_config
from automl.settings import BankSettings, SettingsError, TaskSettings, compose, resolve

pytestmark = pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec:FutureWarning")  # Lightning's

EVAL_CONFIG = {**TINY_DATA_CONFIG, "crop_pct": 0.875, "interpolation": "bicubic"}  # resize, then crop


@pytest.fixture
def task(tmp_path):
    """A 3-class folder task of 36 images of mixed sizes, modes and formats (the resize and crop matter)."""
    rng = np.random.default_rng(0)
    for i in range(36):
        width, height = rng.integers(20, 90, size=2)
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        image = image.convert("L") if i % 4 == 0 else image
        path = tmp_path / "images" / f"c{i % 3}" / f"{i:02d}.{'jpg' if i % 2 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return load_task(TaskSettings(root=str(tmp_path / "images"), val_fraction=0.25, test_fraction=0.25),
                     tmp_path / "cache")


def pixels_of(task, split, config, limit_bytes):
    return split_pixels(task.splits[split].paths, config, fingerprint=task.fingerprint, split=split,
                        cache_dir=task.cache_dir, limit_bytes=limit_bytes)


def test_the_limit_counts_the_whole_cache_folder_and_sends_what_does_not_fit_on_the_fly(task, caplog):
    folder = task.cache_dir / "pixels"
    one_image = 3 * 32 * 32
    train_bytes = len(task.splits["train"]) * one_image
    caplog.set_level(logging.INFO, logger="automl.images.pixels")
    assert isinstance(pixels_of(task, "train", TINY_DATA_CONFIG, train_bytes - 1), LazyPixels)
    assert not folder.exists()  # nothing written
    assert isinstance(pixels_of(task, "train", TINY_DATA_CONFIG, train_bytes - 1), LazyPixels)
    said = [record.getMessage() for record in caplog.records if "on the fly" in record.getMessage()]
    assert len(said) == 1 and "the train split" in said[0] and "finetune.pixel_cache_gb" in said[0]  # once

    cached = pixels_of(task, "train", TINY_DATA_CONFIG, train_bytes)  # exactly fits
    assert isinstance(cached, np.ndarray) and cache_bytes(folder) >= train_bytes
    # val alone fits the limit, but not with train's file already in the folder
    val_bytes = len(task.splits["val"]) * one_image
    assert isinstance(pixels_of(task, "val", TINY_DATA_CONFIG, val_bytes + train_bytes - 1), LazyPixels)
    assert isinstance(pixels_of(task, "val", TINY_DATA_CONFIG, 2 * cache_bytes(folder) + val_bytes), np.ndarray)
    assert isinstance(pixels_of(task, "train", TINY_DATA_CONFIG, 0), np.ndarray)  # cached already: read
    assert isinstance(pixels_of(task, "test", TINY_DATA_CONFIG, None), np.ndarray)  # no limit


def test_a_split_that_would_fill_half_the_free_disk_is_not_cached(task, monkeypatch):
    monkeypatch.setattr(pixels_module.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    assert isinstance(pixels_of(task, "train", TINY_DATA_CONFIG, None), LazyPixels)
    assert not (task.cache_dir / "pixels").exists()


@pytest.mark.parametrize("config", [training_config(TINY_DATA_CONFIG), EVAL_CONFIG], ids=["train", "eval"])
def test_decoding_on_the_fly_gives_the_cached_bytes(task, config):
    lazy = pickle.loads(pickle.dumps(pixels_of(task, "train", config, 0)))  # as a spawned worker gets it
    cached = pixels_of(task, "train", config, None)
    assert isinstance(lazy, LazyPixels) and lazy.shape == cached.shape and len(lazy) == len(cached)
    every = np.arange(len(cached))
    assert lazy[every].dtype == np.uint8 and np.array_equal(lazy[every], cached)
    assert np.array_equal(lazy[[5, 2]], cached[[5, 2]])


def loader_arrays(task, pixel_cache_gb):
    """Every array the loaders hand out, in order: train (seeded) and val (pixels, labels) batches, then test
    pixel batches."""
    datamodule = TaskDataModule(task, TINY_DATA_CONFIG, batch_size=5, num_workers="auto",
                                pixel_cache_gb=pixel_cache_gb)
    torch.manual_seed(0)
    arrays = [tensor.numpy() for batch in datamodule.train_dataloader() for tensor in batch]
    arrays += [tensor.numpy() for batch in datamodule.val_dataloader() for tensor in batch]
    return arrays + [pixels.numpy() for pixels in datamodule.eval_batches("test", 4)]


def test_the_streaming_loaders_give_the_cached_batches_and_labels(task):
    streamed = loader_arrays(task, pixel_cache_gb=0)
    assert not (task.cache_dir / "pixels").exists()
    cached = loader_arrays(task, pixel_cache_gb=None)
    assert (task.cache_dir / "pixels").exists()
    sizes = {split: len(task.splits[split]) for split in ("train", "val", "test")}
    assert len(streamed) == len(cached) == 2 * -(-sizes["train"] // 5) + 2 * -(-sizes["val"] // 5) + -(-sizes["test"] // 4)
    for got, expected in zip(streamed, cached, strict=True):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_the_streaming_loaders_workers_decode_not_the_main_process(task, monkeypatch):
    assert resolve_num_workers("auto", streaming=False) == 0 and resolve_num_workers("auto", streaming=True) >= 1
    assert resolve_num_workers(3, streaming=True) == 3
    calls = []
    decode = pixels_module.decode_pixels
    monkeypatch.setattr(pixels_module, "decode_pixels", lambda *args: calls.append(1) or decode(*args))
    datamodule = TaskDataModule(task, TINY_DATA_CONFIG, batch_size=4, num_workers="auto", pixel_cache_gb=0)
    loader = datamodule.train_dataloader()
    assert loader.num_workers >= 1
    assert sum(len(y) for _, y in loader) == len(task.splits["train"])
    assert sum(len(x) for x in datamodule.eval_batches("test", 4)) == len(task.splits["test"])
    assert calls == []  # the workers decoded every batch
    in_process = TaskDataModule(task, TINY_DATA_CONFIG, batch_size=4, num_workers=0, pixel_cache_gb=0)
    next(iter(in_process.train_dataloader()))
    assert calls == [1]  # the control: without workers, this process decodes


def test_a_fit_on_the_streaming_path_equals_the_fit_on_the_cached_path(tmp_path):
    """debug=quick's fit (2 batches an epoch, one torch thread), 3 epochs with the default augmentation."""
    bank = load_bank(BankSettings(dir=str(write_random_bank(tmp_path / "bank", {"r": ("test_resnet", {})}, 10))),
                     tmp_path / "cache")
    results = {}
    for path, overrides in (("streaming", ["finetune.pixel_cache_gb=0", "finetune.num_workers=1"]),
                            ("cached", ["finetune.num_workers=0"])):  # streaming first: nothing cached yet
        settings = resolve(compose([f"cache_dir={tmp_path}/cache", "task=digits", "debug=quick", *overrides]))
        task = load_task(settings.task, settings.cache_dir)
        hparams = dataclasses.replace(settings.finetune.default_hparams, epochs=3, batch_size=32)
        results[path] = fit_once(bank.entries[0], task, hparams, settings.finetune, seed=3)
        assert (task.cache_dir / "pixels").exists() == (path == "cached")
    streamed, cached = results["streaming"], results["cached"]
    assert streamed.val_accuracy == cached.val_accuracy and streamed.val_curve == cached.val_curve
    assert all(torch.equal(streamed.best_state[k], cached.best_state[k]) for k in cached.best_state)
    assert np.array_equal(streamed.test_predictions, cached.test_predictions)


def test_the_limit_is_a_finetune_setting():
    assert resolve(compose([])).finetune.pixel_cache_gb == 20
    assert resolve(compose(["finetune.pixel_cache_gb=null"])).finetune.pixel_cache_gb is None
    with pytest.raises(SettingsError, match=r"finetune\.pixel_cache_gb=-1"):
        resolve(compose(["finetune.pixel_cache_gb=-1"]))
