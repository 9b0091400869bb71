from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from conftest import huge_png, write_image, write_image_folder
from PIL import Image

from automl.images.decode import BadImageError, load_image
from automl.images.tasks import TaskError, load_task
from automl.settings import SettingsError, TaskSettings, compose, resolve


def folder_task(root, cache_dir, **extra):
    return load_task(TaskSettings(name="t", root=str(root), **extra), cache_dir)


def test_builtin_digits_has_three_stratified_splits_and_a_stable_fingerprint(cache_dir):
    task = load_task(TaskSettings(name="digits", builtin="digits"), cache_dir)
    sizes = {split: len(task.splits[split]) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797
    assert sizes["val"] == pytest.approx(0.15 * 1797, abs=2) and sizes["test"] == pytest.approx(0.15 * 1797, abs=2)
    for split in task.splits.values():  # every class in every split (stratified)
        assert set(split.labels.tolist()) == set(range(10))
    assert task.classes == tuple(str(d) for d in range(10))
    assert (task.root / "test" / "3").is_dir()
    again = load_task(TaskSettings(name="digits", builtin="digits"), cache_dir)
    assert again.fingerprint == task.fingerprint
    assert task.meta() == {"num_classes": 10, "num_train": sizes["train"], "image_side": 8}


def test_builtin_tasks_are_generated_deterministically(tmp_path):
    first = load_task(TaskSettings(builtin="shapes"), tmp_path / "a")
    second = load_task(TaskSettings(builtin="shapes"), tmp_path / "b")
    assert first.fingerprint == second.fingerprint
    a, b = first.splits["train"].paths[7], second.splits["train"].paths[7]
    assert np.array_equal(np.asarray(load_image(a)), np.asarray(load_image(b)))


def test_class_folder_layout_is_carved_into_train_val_test(tmp_path, cache_dir):
    root = write_image_folder(tmp_path / "data", {"cat": 20, "dog": 20, "eel": 20})
    task = folder_task(root, cache_dir)
    assert task.classes == ("cat", "dog", "eel")
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [42, 9, 9]
    assert np.bincount(task.splits["test"].labels).tolist() == [3, 3, 3]
    all_paths = [p for s in task.splits.values() for p in s.paths]
    assert len(set(all_paths)) == 60  # a partition: nothing lost, nothing twice
    assert folder_task(root, cache_dir, seed=1).splits["test"].paths != task.splits["test"].paths


def test_given_splits_are_kept_and_only_missing_ones_carved(tmp_path, cache_dir):
    write_image_folder(tmp_path / "data" / "train", {"a": 10, "b": 10})
    write_image_folder(tmp_path / "data" / "test", {"a": 3, "b": 3}, start_seed=100)
    task = folder_task(tmp_path / "data", cache_dir, val_fraction=0.2)
    assert all("/test/" in str(p) for p in task.splits["test"].paths) and len(task.splits["test"]) == 6
    assert len(task.splits["val"]) == 4 and all("/train/" in str(p) for p in task.splits["val"].paths)


def test_fingerprint_changes_when_the_data_changes(tmp_path, cache_dir):
    root = write_image_folder(tmp_path / "data", {"a": 10, "b": 10})
    before = folder_task(root, cache_dir).fingerprint
    write_image(root / "b" / "extra.png", seed=999)
    assert folder_task(root, cache_dir).fingerprint != before
    # same names, sizes and labels, other pixels: a different task
    twin = write_image_folder(tmp_path / "twin" / "data", {"a": 10, "b": 10}, suffix=".bmp")
    other = write_image_folder(tmp_path / "other" / "data", {"a": 10, "b": 10}, suffix=".bmp", start_seed=500)
    assert (twin / "a" / "000.bmp").stat().st_size == (other / "a" / "000.bmp").stat().st_size
    assert folder_task(twin, cache_dir).fingerprint != folder_task(other, cache_dir).fingerprint


def test_csv_task_with_and_without_split_column(tmp_path, cache_dir):
    write_image_folder(tmp_path / "imgs", {"x": 10, "y": 10})
    rows = [f"imgs/{c}/{i:03d}.png,{c}" for c in "xy" for i in range(10)]
    (tmp_path / "plain.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    task = load_task(TaskSettings(csv=str(tmp_path / "plain.csv")), cache_dir)
    assert task.classes == ("x", "y") and sum(len(s) for s in task.splits.values()) == 20
    split_rows = [f"{row},{'test' if i % 5 == 0 else 'train'}" for i, row in enumerate(rows)]
    (tmp_path / "split.csv").write_text("path,label,split\n" + "\n".join(split_rows) + "\n")
    task = load_task(TaskSettings(csv=str(tmp_path / "split.csv")), cache_dir)
    assert len(task.splits["test"]) == 4


def test_csv_errors_name_the_file_and_line(tmp_path, cache_dir):
    (tmp_path / "bad.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(TaskError, match=r"bad.csv: missing column\(s\) \['path'\]"):
        load_task(TaskSettings(csv=str(tmp_path / "bad.csv")), cache_dir)
    (tmp_path / "split.csv").write_text("path,label,split\na.png,x,holdout\n")
    with pytest.raises(TaskError, match=r"split.csv:2: split 'holdout'"):
        load_task(TaskSettings(csv=str(tmp_path / "split.csv")), cache_dir)


def test_any_image_mode_becomes_rgb_and_exif_orientation_is_applied(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(10, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray((np.arange(200).reshape(10, 20) * 300).astype(np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).convert("LA").save(tmp_path / "la.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    for name in ("cmyk.jpg", "grey16.png", "palette.png", "la.png", "rgba.png"):
        image = load_image(tmp_path / name)
        assert image.mode == "RGB" and image.size == (20, 10), name
    grey = np.asarray(load_image(tmp_path / "grey16.png"))[..., 0]
    assert grey.max() > 200 and grey.min() == 0  # 16-bit range scaled, not clipped to white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise when displayed
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "rotated.jpg").size == (10, 20)


def test_bad_images_are_skipped_with_a_warning_naming_them(tmp_path, cache_dir, caplog):
    root = write_image_folder(tmp_path / "data", {"a": 10, "b": 10})
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "notes.jpg").write_text("this is not a jpeg")
    with caplog.at_level(logging.WARNING):
        task = folder_task(root, cache_dir)
    assert sum(len(s) for s in task.splits.values()) == 20
    assert "truncated.png" in caplog.text and "notes.jpg" in caplog.text
    with pytest.raises(TaskError, match=r"notes\.jpg"):
        folder_task(root, cache_dir, on_bad_image="error")
    with pytest.raises(BadImageError, match=r"truncated\.png"):
        load_image(root / "a" / "truncated.png")


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"only": 10}, "at least 2 classes"),
        ({"a": 10, "b": 1}, r"\['b'\] have fewer than 2 training images|class 'b' has only 1"),
    ],
)
def test_unusable_class_structure_is_an_error_before_any_work(tmp_path, cache_dir, counts, message):
    root = write_image_folder(tmp_path / "data", counts)
    with pytest.raises(TaskError, match=message):
        folder_task(root, cache_dir)


def test_empty_class_folder_is_named(tmp_path, cache_dir):
    root = write_image_folder(tmp_path / "data", {"a": 10, "b": 10})
    (root / "ghost").mkdir()
    with pytest.raises(TaskError, match="class 'ghost' has no images"):
        folder_task(root, cache_dir)


def test_config_errors(tmp_path, cache_dir):
    with pytest.raises(TaskError, match="unknown builtin task 'nope'"):
        load_task(TaskSettings(builtin="nope"), cache_dir)
    with pytest.raises(TaskError, match="not both"):
        load_task(TaskSettings(root="x", csv="y"), cache_dir)
    with pytest.raises(Exception, match=r"Could not override 'task\.colour'"):
        resolve(compose(["task.colour=1"]))
    with pytest.raises(SettingsError, match=r"task\.colour: unknown setting; known: builtin, csv"):
        resolve(compose(["+task.colour=1"]))
    with pytest.raises(SettingsError, match=r"task.val_fraction=0.6 \+ task.test_fraction=0.5 must be below 1"):
        resolve(compose(["task.val_fraction=0.6", "task.test_fraction=0.5"]))
    with pytest.raises(TaskError, match="is not a folder"):
        load_task(TaskSettings(root=str(tmp_path / "missing")), cache_dir)


def test_user_data_takes_precedence_over_the_builtin_default(tmp_path, cache_dir):
    root = write_image_folder(tmp_path / "flowers", {"rose": 10, "tulip": 10})
    task = load_task(TaskSettings(root=str(root), builtin="digits"), cache_dir)
    assert task.classes == ("rose", "tulip")
    shutil.rmtree(root)


def test_a_huge_image_is_a_bad_image_skipped_and_named(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", {"a": 12, "b": 12})
    bomb = huge_png(root / "a" / "bomb.png")
    from automl.images.tasks import TaskError, load_task
    from automl.settings import TaskSettings

    task = load_task(TaskSettings(root=str(root)), tmp_path / "cache")
    assert bomb not in {p for split in task.splits.values() for p in split.paths} and task.num_classes == 2
    with pytest.raises(TaskError, match=r"bomb\.png: 14000x14000 = 196000000 pixels, more than the limit"):
        load_task(TaskSettings(root=str(root), on_bad_image="error"), tmp_path / "cache")
    # a higher limit lets it through to the decoder, which finds it truncated: still named, still skipped
    with pytest.raises(TaskError, match=r"bomb\.png: not a readable image"):
        load_task(TaskSettings(root=str(root), on_bad_image="error", max_image_pixels=10**9), tmp_path / "cache")
