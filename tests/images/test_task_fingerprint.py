"""A task's fingerprint follows what the task is — its classes, images (by content) and splits — not where
the files are: the history and every cache key on it, so one dataset must be one task."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from conftest import write_image_folder

from automl.images import load_task
from automl.settings import TaskSettings


def write_csv(root: Path, out: Path, rename: bool = False) -> Path:
    """A CSV listing every image of the ImageFolder ``root`` (optionally copied under other file names)."""
    rows = []
    for index, path in enumerate(sorted(root.rglob("*.png"))[::-1]):  # another order than the folder's
        target = path
        if rename:
            target = out.parent / "images" / f"img{index:04d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        rows.append({"path": str(target.relative_to(out.parent)) if rename else str(path), "label": path.parent.name})
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_the_same_images_at_two_paths_and_as_a_csv_are_one_task(tmp_path):
    folder = write_image_folder(tmp_path / "photos", {"cat": 12, "dog": 12, "owl": 12})
    moved = Path(shutil.copytree(folder, tmp_path / "elsewhere" / "renamed"))
    listed = write_csv(folder, tmp_path / "lists" / "labels.csv", rename=True)
    tasks = [load_task(TaskSettings(root=str(folder)), tmp_path / "cache"),
             load_task(TaskSettings(root=str(moved)), tmp_path / "cache"),
             load_task(TaskSettings(csv=str(listed)), tmp_path / "cache")]
    assert len({task.fingerprint for task in tasks}) == 1
    # the same carved splits, image for image (by content)
    splits = [{name: sorted(path.read_bytes() for path in task.splits[name].paths) for name in ("val", "test")}
              for task in tasks]
    assert splits[0] == splits[1] == splits[2]


def test_labels_content_and_splits_change_it(tmp_path):
    folder = write_image_folder(tmp_path / "photos", {"cat": 12, "dog": 12})
    base = load_task(TaskSettings(root=str(folder)), tmp_path / "cache").fingerprint
    assert load_task(TaskSettings(root=str(folder), seed=1), tmp_path / "cache").fingerprint != base  # other splits
    relabelled = Path(shutil.copytree(folder, tmp_path / "relabelled"))
    shutil.move(relabelled / "cat" / "000.png", relabelled / "dog" / "moved.png")
    assert load_task(TaskSettings(root=str(relabelled)), tmp_path / "cache").fingerprint != base
    edited = Path(shutil.copytree(folder, tmp_path / "edited"))
    write_image_folder(edited, {"cat": 1}, start_seed=999)  # cat/000.png gets other pixels
    assert load_task(TaskSettings(root=str(edited)), tmp_path / "cache").fingerprint != base
