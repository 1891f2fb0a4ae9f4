"""Captioning data and the image encoder for the `captioning` assignment.

Two data sources in one format (the preprocessed COCO file `coco.pt` of the source homework):

    {"train_images": uint8 (N, 3, H, W), "train_captions": int64 (N, T),
     "val_images":   uint8 (M, 3, H, W), "val_captions":   int64 (M, T),
     "vocab": {"idx_to_token": [str, ...], "token_to_idx": {str: int}}}

Captions start with <START>, end with <END> and are padded with <NULL>; the special tokens
are <NULL> <START> <END> <UNK> and <NULL> has index 0.

- `load_coco_captions(path)` reads that file (COCO Captions 2014, 112x112 images; 378 MB, not
  shipped: download it yourself if you want to train on real photos).
- `scene_dataset(...)` draws, offline and deterministically, small pictures of two coloured
  shapes with captions such as "a red circle left of a blue square".

`ImageEncoder` is a small trainable CNN that turns images into an (N, C, 4, 4) feature grid,
standing in for the pretrained RegNet of the source homework (no downloads here).
"""
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlkit.progress import tqdm

SPECIAL_TOKENS = ["<NULL>", "<START>", "<END>", "<UNK>"]
NULL, START, END, UNK = SPECIAL_TOKENS

# The scene world: palette colours (exact RGB, so a drawn scene can be read back), shapes,
# relations. The first object named is always the big one; the other one is small.
COLORS = {"red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 90, 230),
          "yellow": (235, 215, 40), "purple": (170, 70, 210)}
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")
SCENE_WORDS = ["a", *COLORS, *SHAPES, "left", "right", "of", "above", "below"]
CAPTION_LENGTH = 10  # <START> + at most 8 words + <END>
IMAGE_SIZE = 32
BIG_SIZES, SMALL_SIZES = (5, 6, 7), (3, 4)  # half-sizes: an object is 2r+1 pixels wide


# ---------------------------------------------------------------------------------------
# Vocabulary and the coco.pt format
# ---------------------------------------------------------------------------------------

def build_vocab(words) -> dict:
    """{"idx_to_token": [...], "token_to_idx": {...}} with the special tokens first."""
    idx_to_token = SPECIAL_TOKENS + [w for w in words if w not in SPECIAL_TOKENS]
    return {"idx_to_token": idx_to_token,
            "token_to_idx": {t: i for i, t in enumerate(idx_to_token)}}


SCENE_VOCAB = build_vocab(SCENE_WORDS)
KEYS = ("train_images", "train_captions", "val_images", "val_captions", "vocab")


def load_coco_captions(path="datasets/coco.pt", verbose: bool = True) -> dict:
    """Load a captioning data set saved in the coco.pt format (see the module docstring).

    The file is read with `weights_only=True`: only tensors and plain containers.
    Raises ValueError naming the first thing that does not fit the format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. The COCO file (378 MB) is at "
            "http://web.eecs.umich.edu/~justincj/teaching/eecs498/coco.pt; "
            "or use dlkit.captions.scene_dataset() for the offline scenes")
    data = torch.load(path, weights_only=True, map_location="cpu")
    check_format(data)
    if verbose:
        for key in KEYS[:4]:
            print(f"{key:>15}: {tuple(data[key].shape)} {data[key].dtype}")
        print(f"{'vocabulary':>15}: {len(data['vocab']['idx_to_token'])} tokens")
    return data


def check_format(data) -> None:
    """Raise ValueError, naming the first problem, unless `data` is in the coco.pt format."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a dict, got {type(data).__name__}")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ValueError(f"missing keys {missing}; a coco.pt file has {list(KEYS)}")
    vocab = data["vocab"]
    if not {"idx_to_token", "token_to_idx"} <= set(vocab):
        raise ValueError("vocab needs 'idx_to_token' and 'token_to_idx'")
    for token in SPECIAL_TOKENS:
        if vocab["token_to_idx"].get(token) is None:
            raise ValueError(f"the vocabulary has no {token}")
    if vocab["token_to_idx"][NULL] != 0:
        raise ValueError("<NULL> must have index 0")
    for split in ("train", "val"):
        images, captions = data[f"{split}_images"], data[f"{split}_captions"]
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{split}_images must be uint8 (N, 3, H, W), got "
                             f"{images.dtype} {tuple(images.shape)}")
        if captions.dim() != 2 or captions.dtype not in (torch.int64, torch.int32, torch.int16):
            raise ValueError(f"{split}_captions must be integer (N, T), got "
                             f"{captions.dtype} {tuple(captions.shape)}")
        if len(images) != len(captions):
            raise ValueError(f"{split}: {len(images)} images but {len(captions)} captions")
        if len(captions) and (captions.min() < 0
                              or captions.max() >= len(vocab["idx_to_token"])):
            raise ValueError(f"{split}_captions holds ids outside the vocabulary")


def save_captions(data: dict, path) -> None:
    """Write a data set in the coco.pt format (after checking it)."""
    check_format(data)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)


def decode_captions(captions, idx_to_token, skip_special: bool = False):
    """Token ids -> text. A 1-D caption gives a string, an (N, T) batch a list of strings.

    <NULL> is skipped and decoding stops after <END>, as in the source homework; with
    skip_special=True, <START> and <END> are left out as well.
    """
    captions = torch.as_tensor(captions)
    single = captions.dim() == 1
    rows = captions[None] if single else captions
    texts = []
    for row in rows.tolist():
        words = []
        for index in row:
            token = idx_to_token[index]
            if token == END:
                if not skip_special:
                    words.append(token)
                break
            if token == NULL or (skip_special and token == START):
                continue
            words.append(token)
        texts.append(" ".join(words))
    return texts[0] if single else texts


def encode_caption(text: str, token_to_idx: dict, length: int = CAPTION_LENGTH) -> list[int]:
    """'a red circle ...' -> [<START>, a, red, ..., <END>, <NULL>, ...] of `length` ids."""
    ids = [token_to_idx[START]] + [token_to_idx.get(w, token_to_idx[UNK]) for w in text.split()]
    ids = ids[:length - 1] + [token_to_idx[END]]
    return ids + [token_to_idx[NULL]] * (length - len(ids))


# ---------------------------------------------------------------------------------------
# Procedural scenes
# ---------------------------------------------------------------------------------------

def shape_mask(shape: str, cx: int, cy: int, r: int, size: int) -> torch.Tensor:
    """(size, size) bool mask of a shape whose bounding box is cx-r..cx+r, cy-r..cy+r."""
    y = torch.arange(size, dtype=torch.float32)[:, None] - cy
    x = torch.arange(size, dtype=torch.float32)[None, :] - cx
    if shape == "square":
        return (x.abs() <= r) & (y.abs() <= r)
    if shape == "circle":
        return x ** 2 + y ** 2 <= (r + 0.5) ** 2
    if shape == "triangle":  # apex up, base on row cy+r spanning the full width
        return (y.abs() <= r) & (x.abs() <= (y + r) / 2 + 0.25)
    raise ValueError(f"unknown shape {shape!r}")


def _pick(g, options):
    return options[int(torch.randint(len(options), (), generator=g))]


def _between(g, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (), generator=g))


def random_scene(g: torch.Generator, size: int = IMAGE_SIZE) -> dict:
    """A scene spec: two objects (big first), their relation, the background level."""
    colors = list(COLORS)
    c1 = _pick(g, colors)
    c2 = _pick(g, [c for c in colors if c != c1])
    s1, s2 = _pick(g, SHAPES), _pick(g, SHAPES)
    relation = _pick(g, RELATIONS)
    r1, r2 = _pick(g, BIG_SIZES), _pick(g, SMALL_SIZES)
    # Along the relation's axis the big object comes first ("left of", "above"), with a gap.
    a1 = _between(g, r1 + 1, size - 2 - r2 - (r1 + r2 + 2))
    a2 = _between(g, a1 + r1 + r2 + 2, size - 2 - r2)
    # Across it the two stay nearly aligned, so the relation is never ambiguous.
    b1 = _between(g, r1 + 1, size - 2 - r1)
    b2 = min(max(b1 + _between(g, -3, 3), r2 + 1), size - 2 - r2)
    if relation in ("right of", "below"):
        a1, a2 = size - 1 - a1, size - 1 - a2
    if relation in ("left of", "right of"):
        (x1, y1), (x2, y2) = (a1, b1), (a2, b2)
    else:
        (x1, y1), (x2, y2) = (b1, a1), (b2, a2)
    return {"objects": [(c1, s1, x1, y1, r1), (c2, s2, x2, y2, r2)], "relation": relation,
            "background": _between(g, 0, 70), "noise_seed": _between(g, 0, 2**31 - 1)}


def scene_caption(scene: dict) -> str:
    (c1, s1, *_), (c2, s2, *_) = scene["objects"]
    return f"a {c1} {s1} {scene['relation']} a {c2} {s2}"


def render_scene(scene: dict, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(3, size, size) uint8: a noisy grey background and two flat-coloured shapes."""
    noise = torch.randint(-12, 13, (3, size, size),
                          generator=torch.Generator().manual_seed(scene["noise_seed"]))
    image = (scene["background"] + noise).clamp(0, 255)
    for color, shape, cx, cy, r in scene["objects"]:
        mask = shape_mask(shape, cx, cy, r, size)
        rgb = torch.tensor(COLORS[color])[:, None, None]
        image = torch.where(mask[None], rgb, image)
    return image.to(torch.uint8)


def make_scenes(n: int, seed: int, size: int = IMAGE_SIZE,
                vocab: dict = SCENE_VOCAB) -> tuple[torch.Tensor, torch.Tensor]:
    """n scenes drawn from `seed`: (images uint8 (n, 3, size, size), captions int64 (n, 10))."""
    g = torch.Generator().manual_seed(seed)
    scenes = [random_scene(g, size) for _ in range(n)]
    images = torch.stack([render_scene(s, size) for s in scenes]) if n else \
        torch.zeros(0, 3, size, size, dtype=torch.uint8)
    captions = torch.tensor([encode_caption(scene_caption(s), vocab["token_to_idx"])
                             for s in scenes], dtype=torch.long).view(n, CAPTION_LENGTH)
    return images, captions


def scene_dataset(num_train: int = 2000, num_val: int = 200, seed: int = 0,
                  size: int = IMAGE_SIZE) -> dict:
    """A captioned-scene data set in the coco.pt format; the same seed gives the same set."""
    train_images, train_captions = make_scenes(num_train, seed, size)
    val_images, val_captions = make_scenes(num_val, seed + 7919, size)
    return {"train_images": train_images, "train_captions": train_captions,
            "val_images": val_images, "val_captions": val_captions,
            "vocab": {"idx_to_token": list(SCENE_VOCAB["idx_to_token"]),
                      "token_to_idx": dict(SCENE_VOCAB["token_to_idx"])}}


def read_scene(image: torch.Tensor) -> str:
    """The caption of a drawn scene, read back from its pixels (the inverse of drawing).

    The grader uses it to know the right captions of held-out pictures without shipping
    them: each palette colour is found exactly, its bounding box gives size and position,
    and how much of the box it fills tells square (1.0), circle (~0.78), triangle (~0.55).
    """
    found = []
    for name, rgb in COLORS.items():
        mask = (image == torch.tensor(rgb, dtype=image.dtype)[:, None, None]).all(0)
        count = int(mask.sum())
        if count == 0:
            continue
        ys, xs = mask.nonzero(as_tuple=True)
        y0, y1, x0, x1 = ys.min().item(), ys.max().item(), xs.min().item(), xs.max().item()
        w, h = x1 - x0 + 1, y1 - y0 + 1
        fill = count / (w * h)
        shape = "square" if fill > 0.92 else "circle" if fill > 0.66 else "triangle"
        found.append((max(w, h), name, shape, (x0 + x1) / 2, (y0 + y1) / 2))
    if len(found) != 2:
        raise ValueError(f"expected two coloured objects, found {len(found)}")
    (_, c1, s1, x1, y1), (_, c2, s2, x2, y2) = sorted(found, reverse=True)
    if abs(x1 - x2) > abs(y1 - y2):
        relation = "left of" if x1 < x2 else "right of"
    else:
        relation = "above" if y1 < y2 else "below"
    return f"a {c1} {s1} {relation} a {c2} {s2}"


# ---------------------------------------------------------------------------------------
# The image encoder (given code: a stand-in for the source's pretrained RegNet)
# ---------------------------------------------------------------------------------------

class ImageEncoder(nn.Module):
    """A small CNN trained with the captioner: images -> an (N, C, 4, 4) grid of features.

    Same interface as the source homework's `ImageEncoder` (a pretrained RegNet there):
    it takes uint8 images (divided by 255) or floats in [0, 1], normalises them, and
    returns one C-dimensional feature per cell of a 4x4 grid; `out_channels` is C.
    Two coordinate channels are appended to the input (as in CoordConv), so that the
    features know where in the picture they are: captions here say "left of" and "above".

    32x32 images give the 4x4 grid through three stride-2 convolutions; other sizes are
    average-pooled to 4x4 at the end (112x112 COCO images work too).
    """

    def __init__(self, out_channels: int = 64, width: int = 16, grid: int = 4,
                 verbose: bool = False):
        super().__init__()
        self.grid = grid
        self.layers = nn.Sequential(
            nn.Conv2d(3 + 2, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, out_channels, 3, stride=2, padding=1))
        self.norm = nn.LayerNorm(out_channels)  # per grid cell, over the channels
        self.register_buffer("mean", torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1),
                             persistent=False)
        if verbose:
            count = sum(p.numel() for p in self.parameters())
            print(f"ImageEncoder: {count:,} parameters, "
                  f"output (N, {out_channels}, {grid}, {grid})")

    @property
    def out_channels(self) -> int:
        return self.layers[-1].out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W) uint8, or float in [0, 1]. Returns (N, C, 4, 4)."""
        dtype = self.layers[0].weight.dtype
        x = images.to(dtype)
        if images.dtype == torch.uint8:
            x = x / 255.0
        x = (x - self.mean.to(dtype)) / self.std.to(dtype)              # (N, 3, H, W)
        N, _, H, W = x.shape
        ys = torch.linspace(-1, 1, H, dtype=dtype, device=x.device).view(1, 1, H, 1)
        xs = torch.linspace(-1, 1, W, dtype=dtype, device=x.device).view(1, 1, 1, W)
        x = torch.cat([x, ys.expand(N, 1, H, W), xs.expand(N, 1, H, W)], dim=1)
        x = self.layers(x)                                               # (N, C, H/8, W/8)
        if x.shape[-2:] != (self.grid, self.grid):
            x = F.adaptive_avg_pool2d(x, self.grid)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)      # (N, C, 4, 4)


# ---------------------------------------------------------------------------------------
# Training and evaluation loops
# ---------------------------------------------------------------------------------------

def train_captioner(model: nn.Module, images: torch.Tensor, captions: torch.Tensor, *,
                    epochs: int, batch_size: int = 64, lr: float = 1e-3,
                    lr_decay: float = 1.0, clip: float | None = 5.0, seed: int = 0,
                    device="cpu", threads: int | None = 1, progress: bool = True,
                    desc: str = "training") -> list[float]:
    """Train `model(images, captions) -> loss` with AdamW; returns the loss of every step.

    The learning rate is multiplied by `lr_decay` after each epoch (as in the source);
    gradients are clipped to norm `clip` (None: no clipping), which keeps RNNs stable.
    Batches are drawn by a generator seeded with `seed`; the last partial batch is kept.
    On the CPU, torch uses `threads` threads meanwhile (None: leave it alone): these models
    are made of many small operations, which one thread runs 2-3x faster than two.
    """
    previous = torch.get_num_threads()
    if threads and torch.device(device).type == "cpu":
        torch.set_num_threads(threads)
    try:
        return _train(model, images, captions, epochs, batch_size, lr, lr_decay, clip, seed,
                      device, progress, desc)
    finally:
        torch.set_num_threads(previous)


def _train(model, images, captions, epochs, batch_size, lr, lr_decay, clip, seed, device,
           progress, desc) -> list[float]:
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay)
    generator = torch.Generator().manual_seed(seed)
    n = len(images)
    steps = math.ceil(n / batch_size)
    losses = []
    bar = tqdm(total=epochs * steps, desc=desc, disable=not progress, mininterval=0.5)
    report = grader_progress()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            loss = model(images[index].to(device), captions[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            if report and (len(losses) % 10 == 0 or len(losses) == epochs * steps):
                report(len(losses), epochs * steps, losses[-1])
        schedule.step()
        bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    return losses


def grader_progress():
    """The grader's `report_progress(step, total, loss)` when it has one (it tells how far a
    training case got, even when it runs out of time); None otherwise."""
    try:
        from grader.sandbox import report_progress
    except ImportError:  # an older grader, or dlkit used on its own
        return None
    return report_progress


@torch.no_grad()
def caption_loss(model: nn.Module, images: torch.Tensor, captions: torch.Tensor,
                 batch_size: int = 256, device="cpu") -> float:
    """The model's loss over a whole set (its per-caption average), in eval mode."""
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        total += model(images[chunk].to(device), captions[chunk].to(device)).item() \
            * len(images[chunk])
    return total / len(images)


@torch.no_grad()
def sample_in_batches(model: nn.Module, images: torch.Tensor, max_length: int,
                      batch_size: int = 256, device="cpu"):
    """`model.sample` over a whole set in chunks; results come back on the CPU.

    Returns captions (N, max_length), or (captions, attention weights) when the model
    returns both (the attention LSTM).
    """
    model.eval()
    parts = []
    for start in range(0, len(images), batch_size):
        out = model.sample(images[start:start + batch_size].to(device), max_length=max_length)
        parts.append(tuple(o.cpu() for o in out) if isinstance(out, tuple) else (out.cpu(),))
    joined = tuple(torch.cat(column) for column in zip(*parts))
    return joined if len(joined) > 1 else joined[0]


# ---------------------------------------------------------------------------------------
# Pictures for the notebook
# ---------------------------------------------------------------------------------------

def to_image(image: torch.Tensor):
    """(3, H, W) uint8 or float in [0, 1] -> an (H, W, 3) float array for plt.imshow."""
    image = image.detach().cpu()
    image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    return image.permute(1, 2, 0).clamp(0, 1).numpy()


def attention_overlay(image: torch.Tensor, weights: torch.Tensor, strength: float = 0.75):
    """Show where the model looked: the picture darkened where the (4, 4) weights are low.

    Returns an (H, W, 3) float array; weights are upsampled smoothly to the picture size.
    """
    picture = torch.as_tensor(to_image(image))                              # (H, W, 3)
    H, W, _ = picture.shape
    w = weights.detach().cpu().float()[None, None]
    w = F.interpolate(w, size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    w = (w - w.min()) / (w.max() - w.min()).clamp_min(1e-8)
    return (picture * ((1 - strength) + strength * w[..., None])).numpy()
