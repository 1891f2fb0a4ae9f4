"""Image data sets, hand-written augmentation and training loops for the vision assignments.

Data sets come back as `ImageData`: uint8 images (N, C, H, W) and int64 labels for a train
and a test split, plus the per-channel mean and std (in [0, 1] pixel units) to normalise
with. Loaders:

- `load_digits_split`: scikit-learn's bundled 8x8 digits (offline, always available);
- `load_fashion_mnist`: Fashion-MNIST from its IDX files, gzipped or not (Debian's
  `dataset-fashion-mnist` installs them under /usr/share/datasets/fashion-mnist);
- `load_cifar10`: CIFAR-10 from the python-pickle archive `cifar-10-python.tar.gz`,
  either the archive itself or the extracted `cifar-10-batches-py/` folder.

A missing or damaged data set raises `DatasetError` with one line that says what to do.
torchvision is not used: it cannot be imported beside this course's CPU torch.
"""
import functools
import gzip
import io
import math
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from dlkit.progress import tqdm
from dlkit.train import warmup_cosine
from dlkit.utils import REPO_ROOT

DATA_ROOT = REPO_ROOT / "data"
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the source homework's normalisation
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


class DatasetError(Exception):
    """A data set is missing or damaged; the message is one line saying what to do."""


def _why(exc: BaseException) -> str:
    """An exception as a short single line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


class ImageData(NamedTuple):
    train_images: torch.Tensor  # (N, C, H, W) uint8
    train_labels: torch.Tensor  # (N,) int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple                 # per channel, in units of the image's full pixel range
    std: tuple
    classes: list
    scale: float = 255.0        # the pixel value that means "white" (16 for digits)


# ---------------------------------------------------------------------------------------
# scikit-learn digits (offline)
# ---------------------------------------------------------------------------------------

DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3761,)  # of load_digits().images / 16


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits: images (1797, 1, 8, 8) uint8 in 0..16, labels (1797,) int64.

    Cached: index into them (which copies) rather than changing them in place.
    """
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)
    return images, torch.from_numpy(digits.target.astype(np.int64))


def load_digits_split(held_out: int = 497, seed: int = 0) -> ImageData:
    """scikit-learn's digits split at random (seeded) into train and `held_out` test images."""
    images, labels = digits_arrays()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    test, train = order[:held_out], order[held_out:]
    return ImageData(images[train], labels[train], images[test], labels[test],
                     DIGITS_MEAN, DIGITS_STD, [str(d) for d in range(10)], scale=16.0)


# ---------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------------------

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (`.gz` or plain) as a NumPy array, checked against its header."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DatasetError(f"missing file {path}") from None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read it ({_why(exc)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != expected:
        raise DatasetError(f"{path}: truncated or padded IDX data "
                           f"({len(body)} bytes, the header promises {expected})")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def idx_file(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"Fashion-MNIST file {stem}[.gz] not found in {root} "
                       "(apt-get install dataset-fashion-mnist puts it in "
                       f"{FASHION_MNIST_ROOT})")


def load_fashion_mnist(root=FASHION_MNIST_ROOT) -> ImageData:
    """Fashion-MNIST: train (60000, 1, 28, 28) and test (10000, 1, 28, 28) uint8 images."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Fashion-MNIST folder {root} does not exist "
                           "(apt-get install dataset-fashion-mnist, or pass its folder)")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(idx_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(idx_file(root, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(f"{root}: {split} images {images.shape} and labels "
                               f"{labels.shape} do not belong together")
        parts[split] = (torch.from_numpy(images.astype(np.uint8)).unsqueeze(1),
                        torch.from_numpy(labels.astype(np.int64)))
    return ImageData(*parts["train"], *parts["test"], (0.2860,), (0.3530,), FASHION_CLASSES)


def fashion_mnist_available(root=FASHION_MNIST_ROOT) -> bool:
    try:
        for prefix in ("train", "t10k"):
            idx_file(Path(root), f"{prefix}-images-idx3-ubyte")
            idx_file(Path(root), f"{prefix}-labels-idx1-ubyte")
    except DatasetError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# CIFAR-10 (python pickles)
# ---------------------------------------------------------------------------------------

CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, lists, dicts and strings, and nothing that could run code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def read_cifar_batch(data: bytes, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 batch pickle -> images (N, 3, 32, 32) uint8, labels (N,) int64."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
        batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
        images = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as exc:  # noqa: BLE001 - any damage becomes one line
        raise DatasetError(f"{where}: not a CIFAR-10 batch ({_why(exc)})") from None
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(images) != len(labels):
        raise DatasetError(f"{where}: data {images.shape} / labels {labels.shape} are not "
                           "CIFAR-10's (N, 3072) / (N,)")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{where}: labels outside 0..9")
    return (torch.from_numpy(images.reshape(-1, 3, 32, 32).copy()),
            torch.from_numpy(labels))


def _cifar_source(root: Path):
    """(name -> bytes reader, description) for a folder of batches or the .tar.gz archive."""
    for folder in (root, root / CIFAR_FOLDER):
        if (folder / CIFAR_TEST).is_file():
            return (lambda name: (folder / name).read_bytes()), str(folder)
    for archive in (root, root / CIFAR_ARCHIVE):
        if archive.is_file() and archive.name.endswith((".tar.gz", ".tgz", ".tar")):
            try:
                with tarfile.open(archive) as tar:
                    members = {Path(m.name).name: tar.extractfile(m).read()
                               for m in tar.getmembers()
                               if m.isfile() and Path(m.name).name in CIFAR_TRAIN + [CIFAR_TEST]}
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DatasetError(f"{archive}: damaged archive ({_why(exc)})") from None

            def read(name, members=members, archive=archive):
                if name not in members:
                    raise DatasetError(f"{archive}: has no {name}")
                return members[name]
            return read, str(archive)
    raise DatasetError(f"CIFAR-10 not found under {root}: put {CIFAR_ARCHIVE} or its "
                       f"{CIFAR_FOLDER}/ folder (data_batch_1..5, test_batch) there")


def load_cifar10(root=None) -> ImageData:
    """CIFAR-10: train (50000, 3, 32, 32) and test (10000, 3, 32, 32) uint8 images.

    root: a folder holding the archive or `cifar-10-batches-py/`, or one of those itself;
    default `DATA_ROOT` (the repository's `data/`).
    """
    root = Path(root or DATA_ROOT)
    read, where = _cifar_source(root)
    parts = []
    for names in (CIFAR_TRAIN, [CIFAR_TEST]):
        images, labels = [], []
        for name in names:
            try:
                data = read(name)
            except FileNotFoundError:
                raise DatasetError(f"{where}: missing {name}") from None
            x, y = read_cifar_batch(data, f"{where}/{name}")
            images.append(x)
            labels.append(y)
        parts += [torch.cat(images), torch.cat(labels)]
    return ImageData(*parts, CIFAR10_MEAN, CIFAR10_STD, CIFAR10_CLASSES)


def cifar10_available(root=None) -> bool:
    try:
        _cifar_source(Path(root or DATA_ROOT))
    except DatasetError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# Augmentation and normalisation, in plain torch, on whole batches
# ---------------------------------------------------------------------------------------

def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None):
    """Zero-pad every side by `padding`, then cut a random H x W window per image.

    images: (B, C, H, W) floats. Returns the same shape. The offsets come from `generator`
    (on the CPU), so runs are reproducible.
    """
    if padding <= 0:
        return images
    B, C, H, W = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(H, device=images.device))[:, None, :, None]  # (B,1,H,1)
    cols = (dx[:, None] + torch.arange(W, device=images.device))[:, None, None, :]  # (B,1,1,W)
    batch = torch.arange(B, device=images.device)[:, None, None, None]
    channel = torch.arange(C, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_horizontal_flip(images: torch.Tensor, p: float = 0.5,
                           generator: torch.Generator | None = None):
    """Mirror each image left-right with probability p."""
    flip = (torch.rand(images.shape[0], generator=generator) < p).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / std per channel; images (B, C, H, W) in [0, 1]."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device)[None, :, None, None]
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device)[None, :, None, None]
    return (images - mean) / std


def prepare(images: torch.Tensor, data_or_stats, *, crop_padding: int = 0, flip: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images -> float, optionally augmented, then normalised with the data's stats.

    data_or_stats: an ImageData, or a (mean, std, scale) tuple.
    """
    if isinstance(data_or_stats, ImageData):
        mean, std, scale = data_or_stats.mean, data_or_stats.std, data_or_stats.scale
    else:
        mean, std, scale = data_or_stats
    x = images.float() / scale
    if crop_padding:
        x = random_crop(x, crop_padding, generator)
    if flip:
        x = random_horizontal_flip(x, generator=generator)
    return normalize(x, mean, std)


def denormalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """For display: normalised (B, C, H, W) -> [0, 1], clipped."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device)[None, :, None, None]
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device)[None, :, None, None]
    return (images * std + mean).clamp(0, 1)


# ---------------------------------------------------------------------------------------
# Training loops
# ---------------------------------------------------------------------------------------

def classification_loss(model, images, labels):
    """Cross-entropy of `model(images)`; also returns the batch accuracy."""
    logits = model(images)
    return F.cross_entropy(logits, labels), (logits.argmax(-1) == labels).float().mean()


@torch.no_grad()
def predict(model, images: torch.Tensor, stats, *, batch_size: int = 500,
            device="cpu") -> torch.Tensor:
    """Predicted classes (N,) int64 on the CPU for uint8 `images`, normalised with `stats`."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = prepare(images[start:start + batch_size].to(device), stats)
        out.append(model(x).argmax(-1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model, images, labels, stats, *, device="cpu", batch_size: int = 500) -> float:
    return predict(model, images, stats, device=device, batch_size=batch_size).eq(
        labels.cpu()).float().mean().item()


def fit(model, batch_loss, images: torch.Tensor, labels: torch.Tensor | None, stats, *,
        epochs: float, batch_size: int, lr: float, weight_decay: float = 0.05,
        betas=(0.9, 0.95), warmup_frac: float = 0.05, crop_padding: int = 0,
        flip: bool = False, seed: int = 0, device="cpu", progress: bool = True,
        desc: str = "training", evaluate=None, eval_every: int | None = None,
        on_step=None) -> dict:
    """Train `model` with AdamW, a warm-up then cosine learning rate and augmentation.

    batch_loss(model, x) -> loss (labels None) or batch_loss(model, x, y) -> (loss, acc).
    images: uint8 (N, C, H, W), kept on `device`; every step draws a shuffled batch,
    augments it and normalises it with `stats` (an ImageData or (mean, std, scale)).
    evaluate(): called every `eval_every` steps and at the end, returns a number
    (for example held-out accuracy). on_step(step, total, loss): called after every
    optimisation step (the grader reports progress with it). Returns the history:
    per-step "loss" (and "acc"), and "eval" as (step, value) pairs.
    """
    model.to(device).train()
    images = images.to(device)
    labels = labels.to(device) if labels is not None else None
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(images) // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total, max(1, int(warmup_frac * total))))
    generator = torch.Generator().manual_seed(seed)
    history = {"loss": [], "acc": [], "eval": []}
    order, position = torch.randperm(len(images), generator=generator), 0
    bar = tqdm(range(total), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        if position + batch_size > len(images):
            order, position = torch.randperm(len(images), generator=generator), 0
        index = order[position:position + batch_size].to(device)
        position += batch_size
        x = prepare(images[index], stats, crop_padding=crop_padding, flip=flip,
                    generator=generator)
        if labels is None:
            loss = batch_loss(model, x)
        else:
            loss, acc = batch_loss(model, x, labels[index])
            history["acc"].append(float(acc))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        history["loss"].append(loss.item())
        if on_step is not None:
            on_step(step + 1, total, history["loss"][-1])
        if evaluate and eval_every and (step + 1) % eval_every == 0 and step + 1 < total:
            history["eval"].append((step + 1, evaluate()))
            model.train()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    if evaluate:
        history["eval"].append((total, evaluate()))
    model.eval()
    return history


def smooth(values, window: int = 20) -> list[float]:
    """Running mean for plotting noisy per-step curves."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> one (H', W', C) image for plt.imshow (C = 1 squeezed)."""
    B, C, H, W = images.shape
    rows = math.ceil(B / nrow)
    grid = torch.ones(C, rows * (H + pad) + pad, nrow * (W + pad) + pad)
    for i in range(B):
        r, c = divmod(i, nrow)
        grid[:, pad + r * (H + pad):pad + r * (H + pad) + H,
             pad + c * (W + pad):pad + c * (W + pad) + W] = images[i].detach().cpu()
    grid = grid.permute(1, 2, 0)
    return grid[..., 0] if C == 1 else grid
