"""Small CLIP and DINO models for the `clip_dino` assignment, their data and training recipes.

The source homework downloads OpenAI's CLIP, DINO from torch.hub, COCO images and DAVIS
videos; none of that is reachable offline. This module makes the same student functions
meaningful without a network:

- data: the captioned scenes of `dlkit/captions.py`, now with per-pixel masks (0 background,
  1 the big object, 2 the small one) and short "videos" of moving shapes (the DAVIS stand-in);
- `SmallCLIP`: an image encoder and a text encoder exposing `encode_image`, `encode_text` and
  `tokenize` (the interface of OpenAI's `clip`), with a `Preprocess` transform;
- `ColourCLIP`: a CLIP with constructed (not trained) weights that reads the scenes' colours,
  for grading zero-shot and retrieval with a model every CPU computes alike;
- `SmallViT`: a vision transformer exposing `get_intermediate_layers` (patch tokens) and
  `get_last_selfattention` (the interface of facebookresearch/dino's ViTs), trained with DINO;
- recipes that train both with the student's loss functions (seeded, one thread, about a
  minute each) and cache the weights under `data/clip_dino/`;
- adapters for real CLIP (OpenAI `clip` or `open_clip`) and DINO checkpoints a user has.
"""
import copy
import hashlib
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from dlkit.progress import tqdm

from dlkit import captions
from dlkit.utils import REPO_ROOT

CACHE = REPO_ROOT / "data" / "clip_dino"
IMAGE_SIZE = captions.IMAGE_SIZE  # 32
PATCH = 4                          # 8 x 8 patches of 4 x 4 pixels
MEAN, STD = (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)

# ---------------------------------------------------------------------------------------
# Scenes with masks, and videos of moving scenes
# ---------------------------------------------------------------------------------------


def scene_mask(scene: dict, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(size, size) int64 labels of a scene spec: 0 background, 1 the first (big) object, 2
    the second; the second is drawn last, so it wins where they overlap (as in pixels)."""
    mask = torch.zeros(size, size, dtype=torch.long)
    for label, (_, shape, cx, cy, r) in enumerate(scene["objects"], start=1):
        mask[captions.shape_mask(shape, cx, cy, r, size)] = label
    return mask


def make_scenes_with_masks(n: int, seed: int, size: int = IMAGE_SIZE):
    """`captions.make_scenes(n, seed, size)` (the same images and captions, bit for bit) and
    their masks (n, size, size) int64, plus the caption texts."""
    g = torch.Generator().manual_seed(seed)
    scenes = [captions.random_scene(g, size) for _ in range(n)]
    images = torch.stack([captions.render_scene(s, size) for s in scenes])
    masks = torch.stack([scene_mask(s, size) for s in scenes])
    texts = [captions.scene_caption(s) for s in scenes]
    return images, masks, texts


def scene_video(seed: int, frames: int = 12, size: int = IMAGE_SIZE):
    """A short video of one scene whose two objects drift (and bounce off the borders):
    (frames uint8 (T, 3, size, size), masks int64 (T, size, size)). Each frame has its own
    background noise; the background level changes slowly, as lighting does."""
    g = torch.Generator().manual_seed(seed)
    scene = captions.random_scene(g, size)
    moving = []
    for color, shape, cx, cy, r in scene["objects"]:
        vx, vy = captions._between(g, -2, 2), captions._between(g, -2, 2)
        moving.append([color, shape, cx, cy, r, vx or 1, vy])
    images, masks = [], []
    for t in range(frames):
        objects = [(c, s, x, y, r) for c, s, x, y, r, _, _ in moving]
        frame = dict(scene, objects=objects, noise_seed=int(scene["noise_seed"]) + t,
                     background=min(90, int(scene["background"]) + 2 * t))
        images.append(captions.render_scene(frame, size))
        masks.append(scene_mask(frame, size))
        for obj in moving:  # move, bouncing inside the picture
            for axis, v in ((2, 5), (3, 6)):
                nxt = obj[axis] + obj[v]
                if nxt - obj[4] < 0 or nxt + obj[4] > size - 1:
                    obj[v] = -obj[v]
                    nxt = obj[axis] + obj[v]
                obj[axis] = nxt
    return torch.stack(images), torch.stack(masks)


def patch_labels(masks: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """The majority label of each patch: masks (N, H, W) -> (N, H/p * W/p) int64, patches in
    row-major order (the order of a ViT's patch tokens). Ties go to the larger label."""
    n = masks.shape[0]
    classes = int(masks.max()) + 1
    onehot = F.one_hot(masks, classes).permute(0, 3, 1, 2).double()        # (N, C, H, W)
    votes = F.avg_pool2d(onehot, patch) + torch.arange(classes).view(1, -1, 1, 1) * 1e-6
    return votes.argmax(dim=1).reshape(n, -1)


def synthetic_patch_features(frames: torch.Tensor, dim: int = 384, patch: int = PATCH,
                             seed: int = 0, noise: float = 0.5) -> torch.Tensor:
    """Fixed stand-in patch features for grading: (T, 3, H, W) uint8 -> (T, P, dim) float32.

    Each patch's pixels go through a fixed random two-layer network (seeded by `seed`) and
    get Gaussian noise, so patches of one colour get similar but not equal features and
    patches on an object's border mix two colours. Deterministic: the same on every CPU up
    to float32 rounding."""
    g = torch.Generator().manual_seed(seed)
    t, c = frames.shape[:2]
    x = frames.double() / 255
    x = x.unfold(2, patch, patch).unfold(3, patch, patch)                  # (T, 3, h, w, p, p)
    x = x.permute(0, 2, 3, 1, 4, 5).reshape(t, -1, c * patch * patch)     # (T, P, 3p^2)
    w1 = torch.randn(c * patch * patch, 64, generator=g, dtype=torch.float64) * 0.5
    w2 = torch.randn(64, dim, generator=g, dtype=torch.float64) / 8
    features = torch.tanh((x - 0.45) @ w1) @ w2
    features = features + noise * features.std() * torch.randn(features.shape, generator=g,
                                                               dtype=torch.float64)
    return features.float()


# ---------------------------------------------------------------------------------------
# Tokenizer and preprocessing
# ---------------------------------------------------------------------------------------

SPECIALS = ["<pad>", "<sot>", "<eot>", "<unk>"]
EXTRA_WORDS = ["an", "shape", "object", "photo", "picture", "big", "small", "and", "with"]
VOCAB = SPECIALS + [w for w in dict.fromkeys(captions.SCENE_WORDS + EXTRA_WORDS)]
WORD_TO_ID = {w: i for i, w in enumerate(VOCAB)}
CONTEXT_LENGTH = 12


def tokenize(texts, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Texts -> (N, context_length) int64: <sot> words <eot>, padded with <pad> (id 0).
    Lower-cased, split on spaces; unknown words become <unk>; too long texts are cut
    (keeping <eot>), as `clip.tokenize(..., truncate=True)` does."""
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("tokenize expects a string or a list of strings")
    rows = []
    for text in texts:
        ids = [WORD_TO_ID[w] if w in WORD_TO_ID else WORD_TO_ID["<unk>"]
               for w in text.lower().replace(",", " ").split()]
        ids = [WORD_TO_ID["<sot>"]] + ids[:context_length - 2] + [WORD_TO_ID["<eot>"]]
        rows.append(ids + [0] * (context_length - len(ids)))
    return torch.tensor(rows, dtype=torch.long).view(len(rows), context_length)


class Preprocess:
    """One uint8 image (H, W, 3) (numpy array or tensor) -> float32 (3, size, size):
    scaled to [0, 1], resized (bilinear) when needed, normalised with mean and std."""

    def __init__(self, size: int = IMAGE_SIZE, mean=MEAN, std=STD):
        self.size, self.mean, self.std = size, torch.tensor(mean), torch.tensor(std)

    def __call__(self, image) -> torch.Tensor:
        x = torch.as_tensor(image)
        if x.dim() != 3 or x.shape[-1] != 3:
            raise ValueError(f"expected one (H, W, 3) image, got shape {tuple(x.shape)}")
        x = x.permute(2, 0, 1).float()
        x = x / 255 if torch.as_tensor(image).dtype == torch.uint8 else x
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x[None], size=(self.size, self.size), mode="bilinear",
                              align_corners=False)[0]
        return (x - self.mean.view(3, 1, 1)) / self.std.view(3, 1, 1)


def to_hwc(images: torch.Tensor) -> list:
    """uint8 (N, 3, H, W) -> a list of N uint8 numpy arrays (H, W, 3), the source's format."""
    return [img.permute(1, 2, 0).contiguous().numpy() for img in images]


# ---------------------------------------------------------------------------------------
# The small CLIP
# ---------------------------------------------------------------------------------------


class Block(nn.Module):
    """A pre-LN transformer block (torch's own multi-head attention) that can return its
    attention weights (B, H, T, T)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(),
                                 nn.Linear(2 * width, width))

    def forward(self, x, key_padding=None, return_attention: bool = False):
        h = self.norm1(x)                                                # (B, T, C)
        out, attention = self.attn(h, h, h, key_padding_mask=key_padding,  # True = padding
                                   need_weights=return_attention, average_attn_weights=False)
        x = x + out
        x = x + self.mlp(self.norm2(x))
        return (x, attention) if return_attention else x


class SmallCLIP(nn.Module):
    """A CLIP for 32x32 scenes: a CNN image encoder (with coordinate channels, so that
    "left of" can be seen) and a one-block transformer text encoder read at <eot>.

    encode_image(images (B, 3, S, S) float, preprocessed) -> (B, embed_dim);
    encode_text(tokens (B, T) int64) -> (B, embed_dim); `tokenize` is this module's tokenizer;
    `logit_scale` is the log inverse temperature (CLIP's initial value log(1 / 0.07)).
    Features are not normalised (as in CLIP).
    """

    def __init__(self, embed_dim: int = 64, width: int = 32, text_width: int = 64,
                 heads: int = 4, context_length: int = CONTEXT_LENGTH):
        super().__init__()
        self.image_encoder = nn.Sequential(
            nn.Conv2d(5, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten())                       # (B, 2w * 16)
        self.image_head = nn.Linear(2 * width * 16, embed_dim)
        self.token_embedding = nn.Embedding(len(VOCAB), text_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, text_width) * 0.02)
        self.text_block = Block(text_width, heads)
        self.text_norm = nn.LayerNorm(text_width)
        self.text_projection = nn.Linear(text_width, embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def dtype(self):
        return self.text_projection.weight.dtype

    @staticmethod
    def tokenize(texts) -> torch.Tensor:
        return tokenize(texts)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.dtype)                                        # (B, 3, S, S)
        B, _, H, W = x.shape
        ys = torch.linspace(-1, 1, H, dtype=x.dtype, device=x.device).view(1, 1, H, 1)
        xs = torch.linspace(-1, 1, W, dtype=x.dtype, device=x.device).view(1, 1, 1, W)
        x = torch.cat([x, ys.expand(B, 1, H, W), xs.expand(B, 1, H, W)], dim=1)
        return self.image_head(self.image_encoder(x))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        T = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:T]  # (B, T, C)
        x = self.text_block(x, key_padding=tokens == 0)
        x = self.text_norm(x)
        eot = (tokens == WORD_TO_ID["<eot>"]).long().argmax(dim=1)        # (B,)
        return self.text_projection(x[torch.arange(len(x)), eot])

    def forward(self, images, tokens):
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale


class ColourCLIP(nn.Module):
    """A CLIP whose weights are constructed, not trained: it sees colours, so zero-shot and
    retrieval results on generated scenes are meaningful and the same on every CPU.

    Image features: for each palette colour, the share of the picture's pixels close to it
    (a Gaussian of width `width` in [0, 1] RGB units), plus a brightness term
    COLOUR_CONSTANT * (1/2 + the mean intensity), which also tells apart scenes whose objects
    cover equal areas (so that rankings have no exact ties).
    Text features: the mean over the (non-padding) tokens of their word vectors. Both are then
    multiplied by `rotation`; with orthonormal rows it changes no cosine similarity.

    palette: (K, 3) RGB in [0, 1]; word_vectors: (len(VOCAB), K + 1); rotation: (K + 1, E).
    Images are the output of `Preprocess` (normalised with MEAN and STD)."""

    def __init__(self, palette, word_vectors, rotation, width: float = 0.1):
        super().__init__()
        self.width = width
        self.register_buffer("palette", palette)
        self.register_buffer("word_vectors", word_vectors)
        self.register_buffer("rotation", rotation)
        self.register_buffer("mean", torch.tensor(MEAN, dtype=palette.dtype).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD, dtype=palette.dtype).view(1, 3, 1, 1))

    @staticmethod
    def tokenize(texts) -> torch.Tensor:
        return tokenize(texts)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images.to(self.palette.dtype) * self.std + self.mean              # (B, 3, H, W)
        gaps = (rgb[:, None] - self.palette[None, :, :, None, None]).pow(2).sum(2)  # (B, K, H, W)
        shares = torch.exp(-gaps / (2 * self.width ** 2)).mean(dim=(2, 3))      # (B, K)
        brightness = COLOUR_CONSTANT * (0.5 + rgb.mean(dim=(1, 2, 3)))[:, None]  # (B, 1)
        return torch.cat([shares, brightness], dim=1) @ self.rotation           # (B, E)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = (tokens != 0).to(self.word_vectors.dtype)[..., None]             # (B, T, 1)
        mean = (self.word_vectors[tokens.long()] * keep).sum(1) / keep.sum(1)  # (B, K + 1)
        return mean @ self.rotation                                             # (B, E)


COLOUR_CONSTANT = 0.02  # about a fifth of a big object's share of the picture


def colour_clip_weights(g: torch.Generator, embed_dim: int = 8, dtype=torch.float64) -> dict:
    """The constructor's weights of a ColourCLIP: the scene palette, word vectors (each colour
    word on its own axis, every token 0.05 on the constant axis) and a random rotation with
    orthonormal rows (K + 1, embed_dim) drawn from g."""
    names = list(captions.COLORS)
    palette = torch.tensor([captions.COLORS[c] for c in names], dtype=dtype) / 255
    word_vectors = torch.zeros(len(VOCAB), len(names) + 1, dtype=dtype)
    word_vectors[1:, -1] = 0.05  # every token but <pad>
    for k, name in enumerate(names):
        word_vectors[WORD_TO_ID[name], k] = 1.0
    q, _ = torch.linalg.qr(torch.randn(embed_dim, len(names) + 1, generator=g, dtype=dtype))
    return {"palette": palette, "word_vectors": word_vectors, "rotation": q.T.contiguous()}


def dominant_colours(masks: torch.Tensor, texts) -> list:
    """The colour covering more of each picture, of its two objects: masks (N, H, W) and the
    captions `a <c1> <s1> <relation> a <c2> <s2>` of make_scenes_with_masks."""
    out = []
    for mask, text in zip(masks, texts):
        words = text.split()
        out.append(words[1] if (mask == 1).sum() >= (mask == 2).sum() else words[-2])
    return out


# ---------------------------------------------------------------------------------------
# The small DINO ViT
# ---------------------------------------------------------------------------------------


class SmallViT(nn.Module):
    """A ViT for 32x32 images with 4x4 patches, with the interface of DINO's ViTs:

    forward(x) -> the CLS token (B, width) after the final norm;
    get_intermediate_layers(x, n=1) -> the last n blocks' normalised tokens, each
        (B, 1 + P, width), CLS first;
    get_last_selfattention(x) -> the last block's attention (B, heads, 1 + P, 1 + P).
    Images of other sizes (multiples of 4) interpolate the position embedding.
    """

    def __init__(self, width: int = 64, depth: int = 4, heads: int = 4, patch: int = PATCH,
                 image_size: int = IMAGE_SIZE):
        super().__init__()
        self.patch_size, self.embed_dim = patch, width
        self.patch_embed = nn.Conv2d(3, width, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        grid = image_size // patch
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def prepare_tokens(self, x):
        x = self.patch_embed(x.to(self.cls_token.dtype))                  # (B, C, h, w)
        B, C, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)                                 # (B, P, C)
        pos = self.pos_embed
        grid = math.isqrt(pos.shape[1] - 1)
        if (h, w) != (grid, grid):
            patches = pos[:, 1:].reshape(1, grid, grid, C).permute(0, 3, 1, 2)
            patches = F.interpolate(patches, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
        return torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1) + pos

    def forward(self, x):
        x = self.prepare_tokens(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]

    def get_intermediate_layers(self, x, n: int = 1):
        x = self.prepare_tokens(x)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if len(self.blocks) - i <= n:
                out.append(self.norm(x))
        return out

    def get_last_selfattention(self, x):
        x = self.prepare_tokens(x)
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1](x, return_attention=True)[1]


class DINOHead(nn.Module):
    """DINO's projection head: an MLP, an L2-normalised bottleneck, and K prototypes."""

    def __init__(self, width: int, out_dim: int = 256, hidden: int = 128, bottleneck: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINOModel(nn.Module):
    """Backbone plus head: images -> (B, K) prototype scores."""

    def __init__(self, backbone: SmallViT, head: DINOHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))


def multi_crop(images: torch.Tensor, g: torch.Generator, local_views: int = 4):
    """DINO's views of a batch of float images (B, 3, S, S): two global crops (40-100% of
    the area) and `local_views` local crops (10-40%), each resized to S x S, flipped with
    probability 0.5 and brightness-jittered; returns a list of (B, 3, S, S)."""
    S = images.shape[-1]
    views = []
    for v in range(2 + local_views):
        lo, hi = (0.4, 1.0) if v < 2 else (0.1, 0.4)
        out = []
        for img in images:
            area = lo + (hi - lo) * float(torch.rand((), generator=g))
            side = max(4, int(round(S * math.sqrt(area))))
            y, x = (torch.randint(0, S - side + 1, (), generator=g).item() for _ in range(2))
            crop = F.interpolate(img[None, :, y:y + side, x:x + side], size=(S, S),
                                 mode="bilinear", align_corners=False)[0]
            if float(torch.rand((), generator=g)) < 0.5:
                crop = crop.flip(-1)
            out.append(crop * (0.8 + 0.4 * float(torch.rand((), generator=g))))
        views.append(torch.stack(out))
    return views


# ---------------------------------------------------------------------------------------
# Training recipes and the cache
# ---------------------------------------------------------------------------------------

CLIP_RECIPE = dict(seed=0, scenes=3000, epochs=12, batch_size=128, lr=2e-3,
                   model=dict(embed_dim=64, width=32, text_width=64, heads=4))
DINO_RECIPE = dict(seed=0, scenes=2000, epochs=2, batch_size=64, lr=1e-3, local_views=2,
                   out_dim=256, student_temp=0.1, teacher_temp=0.04, center_momentum=0.9,
                   ema_start=0.99, model=dict(width=64, depth=4, heads=4))
QUICK = dict(scenes=256, epochs=1)  # DLCOURSE_QUICK=1: the course's own tests


def training_texts(texts, g: torch.Generator):
    """Per scene, the full caption or (each with probability 1/6) a part of it: the big
    object ("a red circle") or the small one; zero-shot prompts name single objects. (More
    parts put many identical captions in one batch, which the contrastive loss counts as
    negatives of each other.)"""
    out = []
    for text in texts:
        words = text.split()
        choice = int(torch.randint(6, (), generator=g))
        out.append(" ".join(words[:3]) if choice == 0 else " ".join(words[-3:])
                   if choice == 1 else text)
    return out


def _normalise(images: torch.Tensor) -> torch.Tensor:
    x = images.float() / 255
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def train_small_clip(loss_fn, recipe: dict = CLIP_RECIPE, progress: bool = True) -> SmallCLIP:
    """Train a SmallCLIP on captioned scenes with `loss_fn(image_features, text_features,
    logit_scale)` (the student's `clip_contrastive_loss`): seeded, on one thread."""
    with _one_thread():
        torch.manual_seed(recipe["seed"])
        model = SmallCLIP(**recipe["model"])
        images, _, texts = make_scenes_with_masks(recipe["scenes"], 1000 + recipe["seed"])
        x = _normalise(images)
        g = torch.Generator().manual_seed(recipe["seed"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.01)
        steps = recipe["epochs"] * math.ceil(len(x) / recipe["batch_size"])
        bar = tqdm(total=steps, desc="training the small CLIP", disable=not progress)
        for _ in range(recipe["epochs"]):
            order = torch.randperm(len(x), generator=g)
            for start in range(0, len(x), recipe["batch_size"]):
                index = order[start:start + recipe["batch_size"]]
                tokens = tokenize(training_texts([texts[i] for i in index], g))
                image_f, text_f, scale = model(x[index], tokens)
                loss = loss_fn(image_f, text_f, scale)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))  # CLIP's clamp
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
    return model.eval()


def train_small_dino(dino_loss, update_center, ema_update, recipe: dict = DINO_RECIPE,
                     progress: bool = True) -> SmallViT:
    """Train a SmallViT with DINO using the student's `dino_loss`, `update_center` and
    `ema_update`; returns the teacher's backbone (as DINO does). Seeded, one thread."""
    with _one_thread():
        torch.manual_seed(recipe["seed"])
        student = DINOModel(SmallViT(**recipe["model"]),
                            DINOHead(recipe["model"]["width"], recipe["out_dim"]))
        teacher = copy.deepcopy(student)
        for p in teacher.parameters():
            p.requires_grad_(False)
        images, _, _ = make_scenes_with_masks(recipe["scenes"], 2000 + recipe["seed"])
        x = _normalise(images)
        g = torch.Generator().manual_seed(recipe["seed"])
        center = torch.zeros(1, recipe["out_dim"])
        optimizer = torch.optim.AdamW(student.parameters(), lr=recipe["lr"], weight_decay=0.04)
        steps = recipe["epochs"] * math.ceil(len(x) / recipe["batch_size"])
        bar = tqdm(total=steps, desc="training the small DINO ViT", disable=not progress)
        step = 0
        for _ in range(recipe["epochs"]):
            order = torch.randperm(len(x), generator=g)
            for start in range(0, len(x), recipe["batch_size"]):
                views = multi_crop(x[order[start:start + recipe["batch_size"]]], g,
                                   recipe["local_views"])
                student_out = torch.stack([student(v) for v in views])          # (V, B, K)
                with torch.no_grad():
                    teacher_out = torch.stack([teacher(v) for v in views[:2]])  # (2, B, K)
                loss = dino_loss(student_out, teacher_out, center, recipe["student_temp"],
                                 recipe["teacher_temp"])
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
                optimizer.step()
                # the teacher's momentum rises from ema_start to 1 on a cosine schedule
                m = 1 - (1 - recipe["ema_start"]) * (math.cos(math.pi * step / steps) + 1) / 2
                ema_update(teacher, student, m)
                center = update_center(center, teacher_out, recipe["center_momentum"])
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
    return teacher.backbone.eval()


class _one_thread:
    """Train on one torch thread (deterministic and fastest for models this small)."""

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


CACHE_VERSION = 2  # bump when the models, the data or the training loops change


def _recipe_tag(kind: str, recipe: dict) -> str:
    text = json.dumps({"kind": kind, "version": CACHE_VERSION, **recipe}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def quick_recipe(recipe: dict) -> dict:
    """The recipe itself, or its tiny version when DLCOURSE_QUICK is set."""
    return {**recipe, **QUICK} if os.environ.get("DLCOURSE_QUICK") else dict(recipe)


def _cached_weights(model: nn.Module, path: Path | None, train, retrain: bool) -> nn.Module:
    """`model` with the weights at `path`, or the model `train()` returns, saved there
    atomically (a concurrent reader sees no file or a whole one); path=None: no files."""
    if path is not None and path.is_file() and not retrain:
        model.load_state_dict(torch.load(path, weights_only=True))
        return model
    model = train()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        torch.save(model.state_dict(), partial)
        os.replace(partial, path)
    return model


def load_small_clip(loss_fn, recipe: dict | None = None, retrain: bool = False,
                    progress: bool = True, cache: Path | None = CACHE):
    """(model, preprocess) of a SmallCLIP trained with `loss_fn`, cached under
    data/clip_dino/ by recipe (delete the file, or pass retrain=True, after changing your
    loss); cache=None never reads or writes files."""
    recipe = quick_recipe(CLIP_RECIPE) if recipe is None else recipe
    path = None if cache is None else Path(cache) / f"clip_{_recipe_tag('clip', recipe)}.pt"
    model = _cached_weights(SmallCLIP(**recipe["model"]), path,
                            lambda: train_small_clip(loss_fn, recipe, progress), retrain)
    return model.eval(), Preprocess()


def load_small_dino(dino_loss, update_center, ema_update, recipe: dict | None = None,
                    retrain: bool = False, progress: bool = True,
                    cache: Path | None = CACHE) -> SmallViT:
    """A SmallViT trained with DINO (the teacher), cached like `load_small_clip`."""
    recipe = quick_recipe(DINO_RECIPE) if recipe is None else recipe
    path = None if cache is None else Path(cache) / f"dino_{_recipe_tag('dino', recipe)}.pt"
    model = _cached_weights(
        SmallViT(**recipe["model"]), path,
        lambda: train_small_dino(dino_loss, update_center, ema_update, recipe, progress), retrain)
    return model.eval()


@torch.no_grad()
def dino_patch_tokens(model, images: torch.Tensor) -> torch.Tensor:
    """Patch tokens of uint8 images (N, 3, S, S): (N, P, width), the CLS token dropped
    (the source's `process_frames`)."""
    return model.get_intermediate_layers(_normalise(images))[0][:, 1:].float()


@torch.no_grad()
def dino_cls_attention(model, images: torch.Tensor) -> torch.Tensor:
    """The last layer's CLS-to-patch attention of uint8 images: (N, heads, h, w)."""
    attention = model.get_last_selfattention(_normalise(images))          # (N, H, 1+P, 1+P)
    n, heads, _, tokens = attention.shape
    side = math.isqrt(tokens - 1)
    return attention[:, :, 0, 1:].reshape(n, heads, side, side)


# ---------------------------------------------------------------------------------------
# Adapters for real checkpoints
# ---------------------------------------------------------------------------------------


class ArrayPreprocess:
    """Wraps a PIL-based transform (CLIP's, DINO's) so it takes uint8 (H, W, 3) arrays."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        from PIL import Image
        array = image.numpy() if isinstance(image, torch.Tensor) else image
        return self.transform(Image.fromarray(array))


class CLIPAdapter(nn.Module):
    """Any CLIP with `encode_image` and `encode_text` (OpenAI's `clip`, `open_clip`) plus its
    tokenizer function, with the interface the student functions take (`tokenize` as a
    method). Inputs are moved to the model's dtype."""

    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        if not (hasattr(model, "encode_image") and hasattr(model, "encode_text")):
            raise TypeError(f"{type(model).__name__} has no encode_image/encode_text: not a CLIP")
        self.model, self._tokenizer = model, tokenizer

    def tokenize(self, texts) -> torch.Tensor:
        return torch.as_tensor(self._tokenizer(texts)).long()

    def encode_image(self, images):
        dtype = next(self.model.parameters()).dtype
        return self.model.encode_image(images.to(dtype))

    def encode_text(self, tokens):
        return self.model.encode_text(tokens)


def load_openai_clip(path, device="cpu"):
    """(CLIPAdapter, preprocess) of an OpenAI CLIP checkpoint file (e.g. ViT-B-32.pt, which
    `clip.load` caches in ~/.cache/clip); needs `pip install git+https://github.com/openai/CLIP`."""
    try:
        import clip
    except ImportError as exc:
        raise ImportError("load_openai_clip needs OpenAI's clip package: "
                          "pip install git+https://github.com/openai/CLIP.git") from exc
    if not Path(path).is_file():
        raise FileNotFoundError(f"no CLIP checkpoint at {path}")
    model, preprocess = clip.load(str(path), device=device)
    return CLIPAdapter(model.eval(), clip.tokenize), ArrayPreprocess(preprocess)


def load_open_clip(name: str, pretrained, device="cpu"):
    """(CLIPAdapter, preprocess) from open_clip with a local weights file, e.g.
    load_open_clip("ViT-B-32", "open_clip_pytorch_model.bin"); needs `pip install open_clip_torch`."""
    try:
        import open_clip
    except ImportError as exc:
        raise ImportError("load_open_clip needs open_clip: pip install open_clip_torch") from exc
    if not Path(pretrained).is_file():
        raise FileNotFoundError(f"no open_clip weights at {pretrained}")
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(pretrained),
                                                                 device=device)
    return CLIPAdapter(model.eval(), open_clip.get_tokenizer(name)), ArrayPreprocess(preprocess)


def check_dino_interface(model) -> None:
    """Raise TypeError unless `model` has DINO's ViT interface."""
    for name in ("get_intermediate_layers", "get_last_selfattention"):
        if not callable(getattr(model, name, None)):
            raise TypeError(f"{type(model).__name__} has no {name}: not a DINO ViT")


def load_dino(repo_dir, arch: str = "dino_vits8", weights=None, device="cpu"):
    """A DINO ViT from a local clone of facebookresearch/dino (`torch.hub.load(...,
    source="local")`, no network); `weights` a local checkpoint file (e.g.
    dino_deitsmall8_pretrain.pth). Use with `dino_patch_tokens`-style code at 480x480 and the
    ImageNet normalisation, as the source does."""
    if not Path(repo_dir, "hubconf.py").is_file():
        raise FileNotFoundError(f"{repo_dir} is not a clone of facebookresearch/dino "
                                "(no hubconf.py)")
    model = torch.hub.load(str(repo_dir), arch, source="local", pretrained=False)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    check_dino_interface(model)
    return model.to(device).eval()
