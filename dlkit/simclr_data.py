"""Image transforms for the `simclr` assignment, written by hand on tensors.

torchvision cannot be imported beside this course's CPU torch, so the few transforms SimCLR
needs live here, with torchvision's names and parameters. Every random transform draws from
a `torch.Generator` it is given, so a transform built from one seed produces the same views
on every machine. Images are (C, H, W) tensors: uint8 in 0..255 before `ToTensor`, floats
in [0, 1] after it.

Each random transform draws a fixed number of values per call, in this order:

- `RandomResizedCrop`: up to 10 tries of (area fraction, log aspect ratio), then the top and
  left offsets of the first box that fits (torchvision's algorithm; a centre crop if none does);
- `RandomHorizontalFlip`, `RandomApply`, `RandomGrayscale`: one uniform number each;
- `ColorJitter`: the order of its four adjustments (a permutation of 4), then the brightness,
  contrast, saturation and hue factors, drawn whether or not each is used.
"""
import math

import torch
import torch.nn.functional as F

from dlkit import vision

CIFAR10_MEAN, CIFAR10_STD = vision.CIFAR10_MEAN, vision.CIFAR10_STD


def _uniform(generator, low: float, high: float) -> float:
    return float(torch.empty(1, dtype=torch.float64).uniform_(low, high, generator=generator))


def _coin(generator) -> float:
    return float(torch.rand(1, generator=generator, dtype=torch.float64))


class Compose:
    """Apply `transforms` in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class ToTensor:
    """uint8 (C, H, W) in 0..255 -> float32 in [0, 1] (floats pass through unchanged)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 if x.dtype == torch.uint8 else x


class Normalize:
    """(x - mean) / std per channel."""

    def __init__(self, mean, std):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std


class RandomResizedCrop:
    """Cut a random box (area `scale` of the image, aspect ratio in `ratio`) and resize it
    to size x size with bilinear interpolation (torchvision's box sampling)."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=None):
        self.size, self.scale, self.ratio, self.generator = size, scale, ratio, generator

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _uniform(self.generator, *self.scale)
            aspect = math.exp(_uniform(self.generator, *log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=self.generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=self.generator))
                return top, left, h, w
        # no box fitted: the largest centred box within the ratio limits
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        top, left, h, w = self.box(x.shape[-2], x.shape[-1])
        crop = x[..., top:top + h, left:left + w]
        return F.interpolate(crop[None], size=(self.size, self.size), mode="bilinear",
                             align_corners=False)[0]


class RandomHorizontalFlip:
    """Mirror left-right with probability p."""

    def __init__(self, p: float = 0.5, generator=None):
        self.p, self.generator = p, generator

    def __call__(self, x):
        return x.flip(-1) if _coin(self.generator) < self.p else x


class RandomApply:
    """Apply `transform` with probability p (one draw per call)."""

    def __init__(self, transform, p: float, generator=None):
        self.transform, self.p, self.generator = transform, p, generator

    def __call__(self, x):
        return self.transform(x) if _coin(self.generator) < self.p else x


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of an RGB image, repeated on 3 channels."""
    luma = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    return luma.expand(3, *luma.shape).clone()


class RandomGrayscale:
    """Replace the image by its grey version (3 channels) with probability p."""

    def __init__(self, p: float = 0.1, generator=None):
        self.p, self.generator = p, generator

    def __call__(self, x):
        return grayscale(x) if _coin(self.generator) < self.p else x


def _rgb_to_hsv(x):
    r, g, b = x[0], x[1], x[2]
    high, _ = x.max(dim=0)
    low, _ = x.min(dim=0)
    delta = high - low
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(high == r, ((g - b) / safe) % 6,
                      torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    saturation = torch.where(high > 0, delta / torch.where(high > 0, high, torch.ones_like(high)),
                             torch.zeros_like(high))
    return hue, saturation, high


def _hsv_to_rgb(h, s, v):
    # each channel is v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6, n = 5, 3, 1
    n = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device).view(3, 1, 1)
    k = (n + 6 * h) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def adjust_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of an RGB image in [0, 1] by `shift` turns (in [-0.5, 0.5]).
    A grey image has no hue: it comes back unchanged."""
    h, s, v = _rgb_to_hsv(x)
    if not bool((s > 0).any()):
        return x
    return _hsv_to_rgb((h + shift) % 1.0, s, v)


class ColorJitter:
    """Random brightness, contrast, saturation (factors in [1 - b, 1 + b]) and hue (shift in
    [-h, h]), applied in a random order, on RGB floats in [0, 1]."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, generator=None):
        self.b, self.c, self.s, self.h = brightness, contrast, saturation, hue
        self.generator = generator

    def __call__(self, x):
        g = self.generator
        order = torch.randperm(4, generator=g).tolist()
        factors = [_uniform(g, max(0.0, 1 - self.b), 1 + self.b),
                   _uniform(g, max(0.0, 1 - self.c), 1 + self.c),
                   _uniform(g, max(0.0, 1 - self.s), 1 + self.s),
                   _uniform(g, -self.h, self.h)]
        for k in order:
            f = factors[k]
            if k == 0 and self.b:
                x = (x * f).clamp(0, 1)
            elif k == 1 and self.c:
                mean = grayscale(x)[0].mean()
                x = (f * x + (1 - f) * mean).clamp(0, 1)
            elif k == 2 and self.s:
                x = (f * x + (1 - f) * grayscale(x)).clamp(0, 1)
            elif k == 3 and self.h:
                x = adjust_hue(x, f)
        return x


def test_transform(mean=CIFAR10_MEAN, std=CIFAR10_STD):
    """The evaluation transform (no augmentation): to tensor, normalise."""
    return Compose([ToTensor(), Normalize(mean, std)])


# ---------------------------------------------------------------------------------------
# Data for the cpu profile: scikit-learn's digits as small RGB images
# ---------------------------------------------------------------------------------------

DIGITS_RGB_MEAN = (vision.DIGITS_MEAN[0],) * 3   # pixel statistics after scaling to 0..255
DIGITS_RGB_STD = (vision.DIGITS_STD[0],) * 3


def digits_rgb(images: torch.Tensor) -> torch.Tensor:
    """Digits (N, 1, 8, 8) in 0..16 -> uint8 (N, 3, 8, 8) in 0..255 (grey on 3 channels),
    so that the colour transforms written for CIFAR-10 apply unchanged."""
    scaled = (images.float() * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)
    return scaled.expand(-1, 3, -1, -1).contiguous()


def normalize_batch(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float32, for feature extraction."""
    return vision.normalize(images.float() / 255.0, mean, std)
