"""Stand-in data for the gpu profiles, in the formats of the data sets they cannot fetch.

The gpu profiles of `vit` and `simclr` read CIFAR-10 (and `simclr` the source's pretrained
ResNet-50), the one of `bert` reads IMDB: none can be downloaded on a machine without
internet. tests/gpu_check.py writes these stand-ins into a copy of the checkout's `data/`,
so the suites' own loaders read them and the gpu profiles run unchanged (model sizes,
recipes, thresholds) on data of the right shape. The thresholds were set for the real
data: on a stand-in, the measure shows the code ran, not how good the recipe is.

Each writer returns one line saying what it wrote.
"""
import pickle
from pathlib import Path

import numpy as np
import torch

from dlkit import bert_data, captions, vision

CIFAR_BATCHES = len(vision.CIFAR_TRAIN)


def scene_label(scene: dict) -> int:
    """One of 10 classes: the colour of the big shape (5), and whether the small one sits
    beside it or above / below it (2): colour alone is local, the relation is not."""
    colour = list(captions.COLORS).index(scene["objects"][0][0])
    return 2 * colour + (scene["relation"] in ("left of", "right of"))


def scene_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """n generated scenes: images uint8 (n, 3072) in CIFAR's layout, and their labels."""
    g = torch.Generator().manual_seed(seed)
    scenes = [captions.random_scene(g, 32) for _ in range(n)]
    images = torch.stack([captions.render_scene(s, 32) for s in scenes])  # (n, 3, 32, 32)
    return images.reshape(n, -1).numpy(), [scene_label(s) for s in scenes]


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump({"data": images, "labels": labels}, f, protocol=2)


def write_cifar_standin(data_root: Path, n_train: int, n_test: int) -> str:
    """`data_root/cifar-10-batches-py/`: generated scenes in CIFAR-10's five training
    batches and test batch (uint8 (N, 3072) pickles, labels 0-9)."""
    folder = Path(data_root) / vision.CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    if n_train < CIFAR_BATCHES or n_test < 1:
        raise ValueError(f"a CIFAR-10 stand-in needs at least {CIFAR_BATCHES} training "
                         "images and one test image")
    for i, name in enumerate(vision.CIFAR_TRAIN):  # the images spread over the five batches
        count = n_train // CIFAR_BATCHES + (i < n_train % CIFAR_BATCHES)
        write_cifar_batch(folder / name, *scene_images(count, seed=i))
    write_cifar_batch(folder / vision.CIFAR_TEST, *scene_images(n_test, seed=1000))
    return (f"generated scenes as CIFAR-10 ({n_train} train / {n_test} test, 32x32 RGB, "
            "10 classes: colour of the big shape x beside or above/below)")


def write_imdb_standin(data_root: Path) -> str:
    """`data_root/aclImdb/{train,test}/{pos,neg}/*.txt`: the genre speeches of the cpu
    profile as reviews (comedies pos, tragedies neg; the same fixed split)."""
    folder = Path(data_root) / "aclImdb"
    counts = {}
    for split in ("train", "test"):
        rows = bert_data.genre_split(split)
        for kind, label in (("pos", bert_data.COMEDY), ("neg", bert_data.TRAGEDY)):
            target = folder / split / kind
            target.mkdir(parents=True, exist_ok=True)
            texts = [text for text, lab in rows if lab == label]
            for i, text in enumerate(texts):
                (target / f"{i:05d}_0.txt").write_text(text, encoding="utf-8")
        counts[split] = len(rows)
    return (f"Shakespeare's speeches as IMDB reviews (comedy pos, tragedy neg; "
            f"{counts['train']} train / {counts['test']} test)")


def write_simclr_weights(path: Path, reference) -> str:
    """A freshly initialised ResNet-50 `Model` of the reference, where the source's
    pretrained SimCLR weights would be (its gpu profile starts from them)."""
    torch.manual_seed(0)
    torch.save(reference.Model(feature_dim=128).state_dict(), path)
    return "a randomly initialised ResNet-50 in place of the source's pretrained SimCLR weights"
