"""Training augmentation on whole batches of uint8 pixels, on the device the model trains on.

One affine resampling per batch (``F.affine_grid`` + ``F.grid_sample``, bilinear) draws, per image, a
random resized crop (area fraction in ``scale``, aspect ratio in ``ratio``: torchvision's sampling, with
its fallback to the whole image), a shift by up to ``translate`` of the side, and flips; then brightness,
contrast and saturation jitter, normalisation and timm's random erasing. An image the augmentation leaves
alone (scale and ratio 1, no shift, no flip) comes out exactly as it went in.

Unlike the PIL path it replaces, crops are resampled without antialiasing, and ``color_jitter`` has no hue
component.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.data.random_erasing import RandomErasing

from automl.images.pixels import normalize
from automl.settings import AugmentSettings

_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before it falls back to the whole image


class BatchAugment:
    """uint8 [B, C, H, W] training pixels → augmented, normalised float32 [B, C, H, W] (same size, same device).

    Random numbers come from torch's generator on the batch's device (``seed_everything`` seeds it). It
    runs outside autograd and autocast, in float32, whatever the caller's context (the model's autocast
    casts its input itself), and never reads a value back from the device (no host-device sync).
    """

    def __init__(self, settings: AugmentSettings, data_config: Mapping[str, Any]):
        self.settings, self.data_config = settings, dict(data_config)
        self.erasing = (RandomErasing(probability=settings.re_prob, mode="pixel", device="cpu")
                        if settings.re_prob > 0 else None)
        # scale and ratio 1 select the whole image; with no shift nor flip, nothing moves
        self.resamples = (list(settings.scale) != [1, 1] or list(settings.ratio) != [1, 1] or settings.translate > 0
                          or settings.hflip > 0 or settings.vflip > 0)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(pixels.device.type, enabled=False):
            return self._augment(pixels)

    def _augment(self, pixels: torch.Tensor) -> torch.Tensor:
        images = pixels.float()
        if self.resamples:
            theta = self._affine(len(images), images.shape[-2], images.shape[-1], images.device)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.settings.color_jitter > 0:
            images = self._jitter(images / 255.0).mul_(255.0)
        images = normalize(images, self.data_config)
        if self.erasing is not None:
            self.erasing.device = images.device
            images = self.erasing(images)
        return images

    def _affine(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """[n, 2, 3] maps from output to input coordinates (both in [-1, 1]): crop box, shift and flips."""
        box_w, box_h, center_x, center_y = self._crop_boxes(n, height, width, device)
        shift = self.settings.translate
        if shift > 0:
            center_x = center_x + 2 * shift * (torch.rand(n, device=device) * 2 - 1)
            center_y = center_y + 2 * shift * (torch.rand(n, device=device) * 2 - 1)
        flip_x = _signs(n, self.settings.hflip, device)
        flip_y = _signs(n, self.settings.vflip, device)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 2] = box_w / width * flip_x, center_x
        theta[:, 1, 1], theta[:, 1, 2] = box_h / height * flip_y, center_y
        return theta

    def _crop_boxes(self, n: int, height: int, width: int, device: torch.device
                    ) -> tuple[torch.Tensor, ...]:
        """Per image: box width and height in pixels and its centre in [-1, 1] (torchvision's sampling)."""
        (low, high), (ratio_low, ratio_high) = self.settings.scale, self.settings.ratio
        area = height * width * (low + (high - low) * torch.rand(n, _ATTEMPTS, device=device))
        log_ratio = math.log(ratio_low) + (math.log(ratio_high) - math.log(ratio_low)) * torch.rand(
            n, _ATTEMPTS, device=device)
        ratio = torch.exp(log_ratio)
        box_w, box_h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        fits = (box_w <= width) & (box_h <= height)
        first = torch.argmax(fits.int(), dim=1)  # the first box that fits, as torchvision takes it
        found = fits.any(dim=1)
        box_w = torch.where(found, box_w.gather(1, first[:, None])[:, 0], torch.full((n,), float(width), device=device))
        box_h = torch.where(found, box_h.gather(1, first[:, None])[:, 0], torch.full((n,), float(height), device=device))
        left = (width - box_w) * torch.rand(n, device=device)
        top = (height - box_h) * torch.rand(n, device=device)
        return box_w, box_h, (left + box_w / 2) / width * 2 - 1, (top + box_h / 2) / height * 2 - 1

    def _jitter(self, images: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast and saturation, each by a factor in [1 - j, 1 + j], on 0..1 images."""
        strength = self.settings.color_jitter
        n = len(images)

        def factor() -> torch.Tensor:
            return (1 + strength * (torch.rand(n, 1, 1, 1, device=images.device) * 2 - 1)).clamp_(min=0)

        weights = torch.tensor([0.299, 0.587, 0.114]).to(images.device, non_blocking=True).view(1, 3, 1, 1)
        images = (images * factor()).clamp_(0, 1)
        mean = (images * weights).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        images = ((images - mean) * factor() + mean).clamp_(0, 1)
        grey = (images * weights).sum(dim=1, keepdim=True)
        return ((images - grey) * factor() + grey).clamp_(0, 1)


def _signs(n: int, probability: float, device: torch.device) -> torch.Tensor:
    """-1 with ``probability``, else 1, per image."""
    if probability <= 0:
        return torch.ones(n, device=device)
    return torch.where(torch.rand(n, device=device) < probability, -1.0, 1.0)

