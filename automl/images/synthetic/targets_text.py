"""Rendered-text targets of different character: fine-grained (``fonts``), few-shot (``fewshot``) and
many-class (``characters``). Their characters avoid the sources' Greek lower-case, digits and
arithmetic symbols (``fonts`` draws digits, but its classes are faces, not characters)."""

from __future__ import annotations

import functools
import string
from pathlib import Path

import numpy as np
from PIL import ImageFont

from automl.images.synthetic.draw import char_name, dejavu_fonts, font_file, glyph_dataset, render_glyph
from automl.images.synthetic.registry import SyntheticDataset, register

# class name -> face: three sans, three serif-like (one italic), two monospaced, from three font families.
FACES = {
    "dejavu_sans": "DejaVuSans.ttf",
    "dejavu_serif": "DejaVuSerif.ttf",
    "dejavu_mono": "DejaVuSansMono.ttf",
    "stix": "STIXGeneral.ttf",
    "cm_roman": "cmr10.ttf",
    "cm_sans": "cmss10.ttf",
    "cm_typewriter": "cmtt10.ttf",
    "cm_italic": "cmti10.ttf",
}
FONT_TEXT = string.ascii_letters + string.digits

FEWSHOT = "∑∏∫∂∇√∞≈≠≤∈∀∃⊂∪→↔⇒⊕∠"  # math operators, relations and arrows
FEWSHOT_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
                 "DejaVuSansMono.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf")  # fmt: skip

# Latin lower-case and extra letters, Cyrillic and Greek capitals that do not look like a Latin lower-case
# letter (no О, С, Р, Х ...), punctuation, currency and typographic signs: 100 characters.
CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyz" "æœøßþðłŋ"
    "БГДЁЖЗИЙЛФЦЧШЩЪЫЭЮЯ" "ЄҐЂЉЊЏЋ" "ΔΘΛΞΣΨΩ"
    "!?&$€£¥¢₹₴₦§¶©®*()[]{};:~^¿\"" "¤†‡•°"
)  # fmt: skip


@functools.cache
def _cap_height(path: Path) -> int:
    """Height in pixels of "H" at 100 px: faces differ by up to 20% at the same nominal size."""
    _, top, _, bottom = ImageFont.truetype(str(path), 100).getbbox("H")
    return bottom - top


@register("target")
def _make_fonts(rng: np.random.Generator) -> SyntheticDataset:
    """Which of 8 faces renders a random Latin letter or digit: 8 classes x 100, 32x32 RGB. Sizes are
    normalised to equal cap height so size is no cue; rotation is at most 8 degrees so slant is one."""
    paths = [font_file(name) for name in FACES.values()]
    reference = _cap_height(paths[0])
    images, labels = [], []
    for label, path in enumerate(paths):
        scale = reference / _cap_height(path)
        for char in rng.choice(list(FONT_TEXT), size=100):
            images.append(render_glyph(str(char), rng, (path,), scale=scale, rotation=8.0))
            labels.append(label)
    return SyntheticDataset(images, np.asarray(labels, dtype=np.int64), tuple(FACES))


@register("target")
def _make_fewshot(rng: np.random.Generator) -> SyntheticDataset:
    """20 math symbols and arrows in 7 DejaVu and STIX faces, 10 images each (about 7 train after the
    default 15%/15% val/test carve): 200 images, 32x32 RGB, classes named by Unicode (``integral`` ...)."""
    fonts = [font_file(name) for name in FEWSHOT_FONTS]
    return glyph_dataset(FEWSHOT, 10, rng, fonts, [char_name(c) for c in FEWSHOT])


@register("target")
def _make_characters(rng: np.random.Generator) -> SyntheticDataset:
    """100 letters, punctuation and currency signs in the 12 DejaVu faces, 16 images each: 1600 images,
    32x32 RGB, classes named by Unicode (``latin_small_letter_a``, ``euro_sign`` ...)."""
    return glyph_dataset(CHARACTERS, 16, rng, dejavu_fonts(), [char_name(c) for c in CHARACTERS])
