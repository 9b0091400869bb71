"""automl.images.synthetic: the registry, every generator's layout and determinism, the pinned pixels of the
six original generators, and a few-shot target through load_task."""

from __future__ import annotations

import functools
import hashlib
import unicodedata

import numpy as np
import pytest
from PIL import ImageFont
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from automl.images import synthetic
from automl.images.synthetic import sources, sources_stimuli, targets_text
from automl.images.synthetic.draw import dejavu_fonts, font_file, stix_fonts
from automl.images.tasks import load_task
from automl.settings import TaskSettings

# name -> (classes, images per class, image side in pixels, PIL mode); None: scikit-learn's uneven counts
LAYOUT = {
    "digits": (10, None, 8, "L"),
    "glyphs": (26, 40, 32, "RGB"),
    "shapes": (8, 100, 32, "RGB"),
    "scenes": (9, 90, 32, "RGB"),
    "materials": (10, 80, 32, "RGB"),
    "fonts": (8, 100, 32, "RGB"),
    "fewshot": (20, 10, 32, "RGB"),
    "characters": (100, 16, 32, "RGB"),
    "terrain": (12, 75, 32, "RGB"),
    "textures": (12, 200, 32, "RGB"),
    "photos": (12, 200, 32, "RGB"),
    "symbols": (24, 100, 32, "RGB"),
    "gratings": (18, 110, 32, "RGB"),
    "printed": (18, 110, 32, "RGB"),
    "counting": (8, 250, 32, "RGB"),
}
TARGETS = ["characters", "digits", "fewshot", "fonts", "glyphs", "materials", "scenes", "shapes", "terrain"]
SOURCES = ["counting", "gratings", "photos", "printed", "symbols", "textures"]

# digest() of the six original generators, recorded from automl/synthetic.py before it became a package.
PINNED = {
    ("digits", 0): "cb07075fd72b40c2e012a4d61a71585684dc8bef7bff575157abcd22571887e5",
    ("digits", 1): "cb07075fd72b40c2e012a4d61a71585684dc8bef7bff575157abcd22571887e5",
    ("glyphs", 0): "564b028586a4e351aac77bc87ed0d3c6cc0d13997bab87de3199a2bbf0415ebb",
    ("glyphs", 1): "63a67eec930f430b8241e31a6a444c37d1db6c0189f7c0ff1d4a755ab16bdd59",
    ("shapes", 0): "7c5d97b886517ee1aadac555903af580800391435e87e83438bc040f13e46c35",
    ("shapes", 1): "a2b6f88dac2c27a7f4bbd162d923c64b692277e1483e3a6622472fd12fffc1b7",
    ("textures", 0): "da2339d330d73204a0942cc2e289479c88e0cc019ddf6bf15035c5844e47f72c",
    ("textures", 1): "11dabc8a31f5055ae8dd99004a696731b5a48e5982bef80b135682bb4f3923fa",
    ("photos", 0): "f8d90e5750deb21c0c2e17cebe66ffdcdbae669a2dbe7ab70a2a16e6e7d9407f",
    ("photos", 1): "f59a0995895c7ec56dcce327a39d7e6368a860e8d09f13a7bac20f8c9b3bb91c",
    ("symbols", 0): "230226666c80596ab71c5902e190f4a72c35c5e32708730d9fe6403ae73fe54f",
    ("symbols", 1): "da41e9ee786c63ef545032eef5f961c8579ca1bb689ab88e19d5af108b22d0f9",
}
# Where a CPU's math library rounds the last bit of sin/cos differently (numpy's SIMD paths with and
# without AVX-512), a few pixels move by one grey level: then the layout and labels must still match
# exactly and the pixel total within 1e-6 (sums recorded on a CPU whose digests matched all but one).
LAYOUT_DIGEST = {
    "digits": "ac4a1f3fc0e297b3ce3060e3424f7c49fa761ee70f79f384f41796ffc75622e4",
    "glyphs": "c8b880ef1595502fb1ca74eadbc6ba7e58a5d26540773bf64562acd4cf90dbbf",
    "shapes": "e11f6681440af63d0e41814f634cecd27a84cbf3ca9c01c3d0a484381cb192a7",
    "textures": "7067cb72e9fc9557b2fc8aa77d4546a91a0f2a888d23bf3e2e8783b49f5cf700",
    "photos": "610f69bef21aa8d5d956dd423f49bef1cde59ff9092196331aeb2801b2903f02",
    "symbols": "4d2857e14f449d3ddad83f18ca38ac57ac51f2ea2b7d635b8f38f91796a91261",
}
PIXEL_TOTAL = {
    ("digits", 0): 20376703, ("digits", 1): 20376703, ("glyphs", 0): 407845441, ("glyphs", 1): 408613682,
    ("shapes", 0): 309056195, ("shapes", 1): 314551758, ("textures", 0): 939456498, ("textures", 1): 939828022,
    ("photos", 0): 773642974, ("photos", 1): 771212389, ("symbols", 0): 939198232, ("symbols", 1): 933991973,
}


def digest(data: synthetic.SyntheticDataset, pixels: bool = True) -> str:
    """sha256 over every image's mode, size and (if ``pixels``) pixels, then the labels (int64) and class
    names."""
    sha = hashlib.sha256()
    for image in data.images:
        sha.update(f"{image.mode}{image.size}".encode())
        if pixels:
            sha.update(image.tobytes())
    sha.update(np.asarray(data.labels, dtype=np.int64).tobytes())
    sha.update("\n".join(data.classes).encode())
    return sha.hexdigest()


@functools.cache
def generated(name: str, seed: int) -> synthetic.SyntheticDataset:
    """One generation per (name, seed), shared by the tests (the whole registry takes ~15 s)."""
    return synthetic.generate(name, seed)


def grey(data: synthetic.SyntheticDataset) -> np.ndarray:
    """[N, H, W] float grey levels 0..255."""
    return np.stack([np.asarray(image.convert("L"), dtype=np.float64) for image in data.images])


def test_registry_names_every_target_and_source():
    assert synthetic.available("target") == TARGETS
    assert synthetic.available("source") == SOURCES
    assert synthetic.available() == sorted(TARGETS + SOURCES) == sorted(LAYOUT)
    with pytest.raises(ValueError, match="unknown builtin dataset 'nope'; available: characters, counting"):
        synthetic.generate("nope")


@pytest.mark.parametrize(("name", "seed"), sorted(PINNED))
def test_original_generators_give_the_same_pixels_as_before_the_split(name, seed):
    data = generated(name, seed)
    if digest(data) != PINNED[name, seed]:  # a CPU that rounds sin/cos differently: see LAYOUT_DIGEST
        assert digest(data, pixels=False) == LAYOUT_DIGEST[name]
        total = sum(int(np.asarray(image, dtype=np.int64).sum()) for image in data.images)
        assert abs(total - PIXEL_TOTAL[name, seed]) <= 1e-6 * PIXEL_TOTAL[name, seed]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_generators_are_deterministic_and_depend_on_the_seed(name):
    first, again, other = generated(name, 0), synthetic.generate(name, 0), generated(name, 1)
    assert digest(again) == digest(first)
    same = [a.tobytes() == b.tobytes() for a, b in zip(first.images, other.images, strict=True)]
    if name == "digits":  # scikit-learn's fixed images: documented as the one seed-independent dataset
        assert all(same)
    else:
        assert np.mean(same) < 0.01


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_layout_matches_the_documentation(name):
    num_classes, per_class, side, mode = LAYOUT[name]
    data = generated(name, 0)
    assert len(data.classes) == num_classes
    assert data.labels.dtype == np.int64 and data.labels.shape == (len(data.images),)
    counts = np.bincount(data.labels, minlength=num_classes)
    assert len(counts) == num_classes  # no label outside the class list
    if per_class is None:
        assert counts.sum() == 1797 and counts.min() >= 170
    else:
        assert counts.tolist() == [per_class] * num_classes
    assert {(image.size, image.mode) for image in data.images} == {((side, side), mode)}
    # Class names become folder names (tasks.materialize_builtin): unique even on case-insensitive disks.
    assert len({name.casefold() for name in data.classes}) == num_classes
    assert all(name and not name.startswith(".") and not set(name) & set("/\\:") for name in data.classes)


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_no_image_is_blank_or_repeated(name):
    data = generated(name, 0)
    spread = grey(data).std(axis=(1, 2))  # grey levels; the photos hold a few patches of clear sky
    assert spread.min() >= 0.5 and np.median(spread) >= 10
    assert len({image.tobytes() for image in data.images}) == len(data.images)


def test_targets_and_sources_share_no_images_or_characters():
    pixels = {kind: {image.tobytes() for n in synthetic.available(kind) for image in generated(n, 0).images}
              for kind in ("target", "source")}  # fmt: skip
    assert pixels["target"].isdisjoint(pixels["source"])
    target_chars = set(targets_text.CHARACTERS + targets_text.FEWSHOT)
    assert target_chars.isdisjoint(sources.PRINTED)
    assert not [c for c in target_chars if unicodedata.name(c).startswith("GREEK SMALL")]  # `symbols` source


def _has_glyph(path, char: str) -> bool:
    """Whether the font draws ``char`` itself rather than its missing-glyph box (or nothing)."""
    font = ImageFont.truetype(str(path), 40)
    mask, missing = font.getmask(char), font.getmask("\U000f0000")  # a private-use code point: in no font
    return mask.getbbox() is not None and (mask.size != missing.size or bytes(mask) != bytes(missing))


@pytest.mark.parametrize(
    ("name", "chars", "fonts"),
    [
        ("characters", targets_text.CHARACTERS, lambda: dejavu_fonts()),
        ("fewshot", targets_text.FEWSHOT, lambda: [font_file(f) for f in targets_text.FEWSHOT_FONTS]),
        ("fonts", targets_text.FONT_TEXT, lambda: [font_file(f) for f in targets_text.FACES.values()]),
        ("printed", sources.PRINTED, lambda: dejavu_fonts() + stix_fonts()),
    ],
)
def test_every_character_is_drawn_by_every_font_it_may_be_rendered_in(name, chars, fonts):
    missing = [(path.name, char) for path in fonts() for char in chars if not _has_glyph(path, char)]
    assert not missing
    assert not _has_glyph(font_file("DejaVuSerif.ttf"), "א")  # the check itself sees a missing glyph


def test_font_classes_are_not_separable_by_colour_alone():
    data = generated("fonts", 0)
    rgb = np.stack([np.asarray(image, dtype=np.float64) / 255 for image in data.images])
    histograms = [np.stack([np.histogram(im[..., c], 8, (0, 1))[0] for im in rgb]) / 1024 for c in range(3)]
    features = np.concatenate([rgb.mean(axis=(1, 2)), rgb.std(axis=(1, 2)), *histograms], axis=1)
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, data.labels, cv=4).mean()
    assert accuracy < 0.25  # chance is 0.125


def _bar_angles(images: np.ndarray) -> np.ndarray:
    """Dominant bar orientation of each grey image [N, H, W], degrees anticlockwise from horizontal in
    [0, 180), from the structure tensor (the bars run across the mean gradient)."""
    gy, gx = np.gradient(images, axis=(1, 2))
    gy = -gy  # image rows run downwards
    gradient = 0.5 * np.degrees(np.arctan2(2 * (gx * gy).sum((1, 2)), (gx**2 - gy**2).sum((1, 2))))
    return (gradient + 90) % 180


def test_gratings_are_labelled_by_bar_orientation():
    data = generated("gratings", 0)
    angles = _bar_angles(grey(data))
    for label, name in enumerate(data.classes):
        error = np.abs((angles[data.labels == label] - int(name[3:6]) + 90) % 180 - 90)
        # +-7.5 degrees of jitter inside a bin, and the finite differences bias the finest gratings a little
        assert np.median(error) < 12 and np.mean(error < 20) >= 0.95, name


@pytest.mark.parametrize("count", range(1, 9))
def test_counting_blobs_are_separate_and_inside_the_canvas(count):
    layout = sources_stimuli._blob_layout(np.random.default_rng(count), count, 64)
    x, y, radius = layout.T
    assert layout.shape == (count, 3) and radius.min() >= 3
    assert (np.minimum(x, y) - radius >= 1).all() and (np.maximum(x, y) + radius <= 63).all()
    gaps = np.hypot(x[:, None] - x, y[:, None] - y) - radius[:, None] - radius
    assert (gaps[~np.eye(count, dtype=bool)] > 3).all()


def test_fewshot_task_keeps_every_class_in_train_after_the_default_carve(tmp_path):
    task = load_task(TaskSettings(name="fewshot", builtin="fewshot"), tmp_path / "cache")
    sizes = {split: len(task.splits[split]) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 200
    assert sizes["val"] == pytest.approx(30, abs=2) and sizes["test"] == pytest.approx(30, abs=2)
    assert task.classes == tuple(sorted(generated("fewshot", 0).classes))
    train_counts = np.bincount(task.splits["train"].labels, minlength=20)
    assert len(train_counts) == 20 and train_counts.min() >= 5  # every class learnable from train alone
    assert task.meta()["num_train"] == sizes["train"] and task.meta()["image_side"] == 32
