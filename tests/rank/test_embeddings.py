"""Probe feature extraction and its disk cache, with real tiny timm models and real image files."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
import yaml
from conftest import write_image_folder

from automl.bank import BankError, create_model, load_bank, resolve_data_config
from automl.images.decode import load_image
from automl.images.tasks import load_task
from automl.rank import embeddings as features_module
from automl.rank.embeddings import FeatureError, extract_bank, extract_features
from automl.settings import BankSettings, TaskSettings

RES = {"name": "res", "arch": "test_resnet", "weights": "res.safetensors", "num_classes": 5,
       "data_config": {"input_size": [3, 32, 32], "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3],
                       "interpolation": "bilinear", "crop_pct": 1.0}}
EFF = {"name": "eff", "arch": "test_efficientnet", "weights": "eff.safetensors", "num_classes": 0,
       "data_config": {"input_size": [3, 24, 24]}}


def save_weights(path, arch, num_classes, seed=0, poison=False):
    torch.manual_seed(seed)
    state = timm.create_model(arch, num_classes=num_classes).state_dict()
    if poison:  # NaN weights → NaN features
        state["conv1.0.weight"].fill_(float("nan"))
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))


@pytest.fixture
def bank(tmp_path):
    folder = tmp_path / "bank"
    folder.mkdir()
    save_weights(folder / "res.safetensors", "test_resnet", 5)
    save_weights(folder / "eff.safetensors", "test_efficientnet", 0)
    (folder / "bank.yaml").write_text(yaml.safe_dump({"name": "tiny", "models": [RES, EFF]}))
    return load_bank(BankSettings(dir=str(folder)), tmp_path)


@pytest.fixture
def task(tmp_path, cache_dir):
    root = write_image_folder(tmp_path / "data", {"cat": 10, "dog": 10, "owl": 10})
    return load_task(TaskSettings(name="pets", root=str(root)), cache_dir)


@pytest.fixture
def model_builds(monkeypatch):
    """Counts checkpoint loads (the real create_model runs)."""
    calls = []

    def spy(entry, num_classes=None):
        calls.append(entry.name)
        return create_model(entry, num_classes)

    monkeypatch.setattr(features_module, "create_model", spy)
    return calls


def probe_images(task, probe):
    return [load_image(task.splits["train"].paths[i]) for i in probe]


def cache_files(cache_dir):
    return {p.name: p.stat().st_mtime_ns for p in sorted((cache_dir / "features").glob("*.npz"))}


# ------------------------------------------------------------------------------------------ extraction
def test_shapes_probs_and_headless(bank, task):
    probe = np.arange(12)
    labels = task.splits["train"].labels[probe]
    res, eff = (extract_features(entry, probe_images(task, probe), labels, batch_size=5) for entry in bank)
    assert res.features.shape == (12, 96) and res.features.dtype == np.float32
    assert res.probs.shape == (12, 5) and res.probs.dtype == np.float32
    np.testing.assert_allclose(res.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert eff.probs is None and eff.features.shape == (12, 256)
    np.testing.assert_array_equal(res.labels, labels)


@pytest.mark.parametrize("image_size", [None, 16, 40])  # 16: the probe images' own size (no resize)
def test_features_equal_timm_reference_pipeline_with_the_entry_data_config(bank, task, image_size):
    entry = bank.entries[0]
    images = probe_images(task, range(7))
    got = extract_features(entry, images, np.zeros(7), image_size=image_size, batch_size=3)
    model = create_model(entry).eval()
    config = resolve_data_config(entry, model, image_size)
    assert config["mean"] == (0.4, 0.5, 0.6) and config["input_size"] == (3, image_size or 32, image_size or 32)
    transform = timm.data.create_transform(**config, is_training=False)  # the standard per-image pipeline
    with torch.inference_mode():
        x = torch.stack([transform(image) for image in images])
        assert x.shape[-1] == (image_size or 32)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
    np.testing.assert_allclose(got.features, pre.numpy(), rtol=1e-4, atol=1e-5)


def test_nan_features_name_the_model(tmp_path, task):
    save_weights(tmp_path / "res.safetensors", "test_resnet", 5, poison=True)
    entry = load_bank(BankSettings(name="b", models=[{**RES, "weights": str(tmp_path / "res.safetensors")}]), tmp_path).entries[0]
    with pytest.raises(FeatureError, match=r"model 'res': 4 of 4 probe images gave NaN/inf features"):
        extract_features(entry, probe_images(task, range(4)), np.zeros(4))


def test_input_validation(bank, task, cache_dir):
    with pytest.raises(ValueError, match="need N > 0 images"):
        extract_features(bank.entries[0], probe_images(task, range(3)), np.zeros(2))
    with pytest.raises(ValueError, match="distinct indices into the"):
        extract_bank(bank, task, np.array([0, 1000]), cache_dir)


# ----------------------------------------------------------------------------------------------- cache
def test_second_run_computes_nothing(bank, task, cache_dir, model_builds):
    probe = np.arange(0, 20, 2)
    first = extract_bank(bank, task, probe, cache_dir)
    assert model_builds == ["res", "eff"] and len(cache_files(cache_dir)) == 2
    files = cache_files(cache_dir)
    second = extract_bank(bank, task, probe, cache_dir)
    assert model_builds == ["res", "eff"]  # no model was even constructed
    assert cache_files(cache_dir) == files  # nor any file rewritten
    for name in ("res", "eff"):
        np.testing.assert_array_equal(second[name].features, first[name].features)
        np.testing.assert_array_equal(second[name].labels, task.splits["train"].labels[probe])
    np.testing.assert_array_equal(second["res"].probs, first["res"].probs)
    assert second["eff"].probs is None


@pytest.mark.parametrize("change", ["probe", "fingerprint", "image_size", "weights"])
def test_changed_inputs_recompute(bank, task, cache_dir, model_builds, change):
    probe = np.arange(10)
    extract_bank(bank, task, probe, cache_dir)
    rebuilt = ["res", "eff"]
    if change == "probe":
        probe = np.arange(1, 11)
    elif change == "fingerprint":
        task = dataclasses.replace(task, fingerprint="other data")
    elif change == "image_size":
        task = dataclasses.replace(task, image_size=40)
    else:
        save_weights(bank.root / "res.safetensors", "test_resnet", 5, seed=1)
        rebuilt = ["res"]
    before = cache_files(cache_dir)
    extract_bank(bank, task, probe, cache_dir)
    assert model_builds == ["res", "eff", *rebuilt]
    assert len(cache_files(cache_dir)) == 2 + len(rebuilt)
    assert all(cache_files(cache_dir)[name] == mtime for name, mtime in before.items())


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong labels"])
def test_corrupt_cache_file_is_recomputed_with_a_warning(bank, task, cache_dir, model_builds, caplog, damage):
    probe = np.arange(10)
    first = extract_bank(bank, task, probe, cache_dir)
    path = next(p for p in (cache_dir / "features").glob("*.npz") if "probs" in np.load(p).files)  # res
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        np.savez(path, features=first["res"].features, labels=first["res"].labels + 1, probs=first["res"].probs)
    with caplog.at_level(logging.WARNING, logger="automl.rank.embeddings"):
        again = extract_bank(bank, task, probe, cache_dir)
    assert f"cache file {path} is unreadable" in caplog.text
    assert model_builds == ["res", "eff", "res"]
    np.testing.assert_allclose(again["res"].features, first["res"].features)
    with np.load(path) as data:  # rewritten whole
        np.testing.assert_array_equal(data["labels"], first["res"].labels)


def test_a_broken_model_is_reported_and_the_rest_extracted(bank, task, cache_dir):
    (bank.root / "eff.safetensors").unlink()
    results = extract_bank(bank, task, np.arange(6), cache_dir)
    assert results["res"].features.shape == (6, 96)
    assert isinstance(results["eff"], BankError) and "model 'eff'" in str(results["eff"])
