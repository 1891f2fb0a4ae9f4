# %% [markdown]
# # CLIP and DINO: learning from image-text pairs and from images alone
#
# **CLIP** trains an image encoder and a text encoder side by side, on pairs of a picture
# and its caption: in a batch of B pairs, each picture must pick its own caption out of the
# B captions, and each caption its own picture (a *contrastive* loss). The two encoders end
# up mapping pictures and texts into one space where similar means related. Then any text
# is a classifier: to ask "which of these classes is this image?", encode one text per
# class and take the most similar (*zero-shot* classification, no training on the classes),
# and to search a gallery, rank images by their similarity to a query (*retrieval*).
#
# **DINO** needs no text and no label. A *student* vision transformer sees several crops of
# an image and must reproduce, on each, what a *teacher* outputs on the other crops; the
# teacher is a slowly moving average of the student. Two tricks keep the outputs from
# collapsing to a constant: the teacher's outputs are *centred* (a running mean is
# subtracted) and *sharpened* (a low temperature). The patch features it learns separate
# objects so well that a tiny classifier fit on one annotated frame segments a whole video.
#
# In this notebook you
#
# 1. compute CLIP similarities and write its symmetric contrastive loss, then train a small
#    CLIP with it;
# 2. write zero-shot classification and text-to-image retrieval;
# 3. write DINO's loss, its centre update and the teacher's EMA update, then train a small
#    DINO ViT with them and look at its attention and its patch features;
# 4. segment a video from one annotated frame with `DINOSegmentation`.
#
# You write code in `assignments/clip_dino.py`; every part has inline checks
# (`check(...)`) that compare your code with saved reference outputs. `make grade
# A=clip_dino` gives the full score.
#
# **Time.** The notebook runs torch on one thread, as the grader does (these models gain
# nothing from a second thread, and on a busy laptop threads wait for each other). Training
# cells print their estimate in CPU-seconds on one thread: a busy machine takes longer on the
# clock, but not more CPU time. Cells that print no estimate take a few seconds.
#
# **Data and models, offline.** The source homework downloads OpenAI's CLIP (trained on 400
# million image-text pairs), DINO's ViT-S/8 from torch.hub, COCO pictures and the DAVIS
# videos. None of that is needed here: the pictures are generated scenes of two coloured
# shapes with captions such as "a red circle left of a blue square" (the ones of the
# `captioning` assignment), and the generator also knows which pixel belongs to which shape
# (the segmentation masks, standing in for DAVIS). The models are small enough to train in
# under a minute of CPU time each, on one thread, with your loss functions; the trained weights are
# cached in `data/clip_dino/`. If you have the real checkpoints, the last section shows how
# to run the same functions on them.

# %%
%matplotlib inline
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.decomposition import PCA

from dlkit import captions, load_assignment, seed_everything
from dlkit import clip_dino_models as models
from dlkit.progress import estimate
from grader.check import check

clip_dino = load_assignment("clip_dino")  # your assignments/clip_dino.py (re-run after edits)
QUICK = bool(os.environ.get("DLCOURSE_QUICK"))  # tiny settings, for the course's own tests
device = torch.device("cpu")  # models this small gain nothing from a GPU
seed_everything(0)
torch.set_num_threads(1)  # the grader's setting
print(f"quick mode {QUICK}")

test_images, test_masks, test_texts = models.make_scenes_with_masks(200, seed=12345)
print("held-out scenes", tuple(test_images.shape), "masks", tuple(test_masks.shape))

# %% [markdown]
# ## Part 1. CLIP's similarities and its contrastive loss
#
# Given N text features and M image features (rows), `get_similarity_no_loop` returns the
# (N, M) matrix of cosine similarities: normalise every row to unit length, then one matrix
# product. No loops.
#
# **Your task:** `get_similarity_no_loop`. The check includes the source's own test: under
# seed 231, `randn(6, 10)` text features, then `randn(5, 10)` image features.

# %%
check(clip_dino, "clip/similarity");

# %%
torch.manual_seed(231)
np.random.seed(231)
M, N, D = 5, 6, 10
test_text_features = torch.randn(N, D)
test_image_features = torch.randn(M, D)
print(clip_dino.get_similarity_no_loop(test_text_features, test_image_features))

# %% [markdown]
# CLIP's loss, for B matching pairs with image features `I` and text features `T` (rows
# normalised): the logits `exp(s) * I T^T` form a B x B matrix whose diagonal holds the right
# pairs, and the loss is the mean of two cross-entropies, one over each row (each image
# picks its caption) and one over each column (each caption picks its image). The inverse
# temperature `exp(s)` is learned: `s` (`logit_scale`) starts at log(1 / 0.07) and must get
# a gradient.
#
# **Your task:** `clip_contrastive_loss`.

# %%
check(clip_dino, "clip/contrastive_loss");

# %% [markdown]
# Now train the small CLIP with your loss (the weights are cached in `data/clip_dino/`, so a
# second run only loads them: pass `retrain=True` after changing your loss). Half of the
# training captions are full captions, the others name one object only ("a red circle").

# %%
estimate(2 if QUICK else 45, "training (a second run loads the cached weights)")
start = time.perf_counter()
clip_model, clip_preprocess = models.load_small_clip(clip_dino.clip_contrastive_loss)
print(f"small CLIP ready in {time.perf_counter() - start:.0f} s; learned temperature "
      f"{1 / clip_model.logit_scale.exp().item():.3f}")

# %% [markdown]
# The similarity of 8 held-out pictures with their 8 captions: a good model puts the
# largest values on the diagonal.

# %%
images8 = models.to_hwc(test_images[:8])
with torch.no_grad():
    text_features = clip_model.encode_text(clip_model.tokenize(test_texts[:8]))
    image_features = clip_model.encode_image(torch.stack([clip_preprocess(i) for i in images8]))
similarity = clip_dino.get_similarity_no_loop(text_features, image_features)
fig, ax = plt.subplots(figsize=(9, 7))
ax.imshow(similarity, cmap="viridis")
ax.set_yticks(range(8), test_texts[:8], fontsize=9)
ax.set_xticks([])
for j, img in enumerate(images8):
    ax.imshow(img, extent=(j - 0.5, j + 0.5, 8.6, 7.6), origin="upper")
for i in range(8):
    for j in range(8):
        ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="white")
ax.set_xlim(-0.5, 7.5)
ax.set_ylim(8.6, -0.5)
ax.set_title("cosine similarity of captions (rows) and pictures (columns)")
plt.show()

# %% [markdown]
# ## Part 2. Zero-shot classification and retrieval
#
# `clip_zero_shot_classifier(clip_model, clip_preprocess, images, class_texts, device)`:
# tokenize and encode the class texts, preprocess and encode the images, and return for
# every image the class text most similar to it. `CLIPImageRetriever` encodes a gallery of
# images once; `retrieve(query, k)` returns the indices of the k most similar images.
# Here the model's `tokenize` is a method (`clip_model.tokenize(texts)`); with OpenAI's
# package it is `clip.tokenize`, which the adapter below wraps the same way.
#
# **Your task:** both. The checks run them on held-out scenes with a CLIP whose weights are
# constructed, not trained (it reads the colours of a scene), so they test your code, not
# the training: correct code names the colour covering most of every scene.

# %%
check(clip_dino, "clip/zero_shot", "clip/retrieval");

# %%
classes = [f"a {c} {s}" for c in captions.COLORS for s in captions.SHAPES]
hwc = models.to_hwc(test_images)
predicted = clip_dino.clip_zero_shot_classifier(clip_model, clip_preprocess, hwc, classes,
                                                device)
big_object = [" ".join(t.split()[:3]) for t in test_texts]
either = [p in t for p, t in zip(predicted, test_texts)]
accuracy = np.mean([p == b for p, b in zip(predicted, big_object)])
print(f"zero-shot over {len(classes)} classes (chance {1 / len(classes):.3f}): the big "
      f"object {accuracy:.3f}, one of the two objects {np.mean(either):.3f}")
fig, axes = plt.subplots(1, 8, figsize=(14, 2.6))
for ax, img, p, t in zip(axes, hwc, predicted, test_texts):
    ax.imshow(img)
    ax.set_title(t.replace(" a ", "\na "), fontsize=7)
    ax.set_xlabel(p, fontsize=9, color="green" if p in t else "red")
    ax.set_xticks([])
    ax.set_yticks([])
plt.suptitle("zero-shot: true caption above, prediction below")
plt.show()

# %%
retriever = clip_dino.CLIPImageRetriever(clip_model, clip_preprocess, hwc, device)
queries = ["a red circle", "a blue square", "a yellow triangle", "a green circle"]
fig, axes = plt.subplots(len(queries), 5, figsize=(8, 7))
for row, query in enumerate(queries):
    for col, index in enumerate(retriever.retrieve(query, k=5)):
        axes[row, col].imshow(hwc[index])
        axes[row, col].axis("off")
    axes[row, 0].set_title(query, fontsize=9, loc="left")
plt.suptitle("retrieval: the 5 most similar held-out pictures per query")
plt.show()
hits = [q.split(" ", 1)[1] in test_texts[i] for q in classes for i in retriever.retrieve(q, 5)]
print(f"precision at 5 over the {len(classes)} object queries: {np.mean(hits):.3f}")

# %% [markdown]
# ## Part 3. DINO
#
# The teacher sees the two global crops of each image, the student sees all V crops (the
# global ones first, then small local ones). With outputs of shape (V, B, K) (K
# "prototypes"):
#
# - teacher: `p_t = softmax((t - center) / teacher_temp)` over K, with no gradient;
# - student: `log p_s = log_softmax(s / student_temp)`;
# - the loss averages `-sum_K p_t log p_s` over the batch and over every pair of a teacher
#   view and a *different* student view.
#
# After each step the centre moves towards the batch mean of the teacher's outputs
# (`update_center`), and the teacher's weights towards the student's (`ema_update`:
# `teacher = m * teacher + (1 - m) * student`, with m close to 1).
#
# **Your task:** `dino_loss`, `update_center`, `ema_update`.

# %%
check(clip_dino, "dino/");

# %% [markdown]
# Train the small DINO ViT with them (4 blocks, 64 wide, 4 heads, 4x4 patches of 32x32
# scenes: 64 patch tokens and one CLS token; cached like CLIP).

# %%
estimate(3 if QUICK else 35, "training (a second run loads the cached weights)")
start = time.perf_counter()
dino_model = models.load_small_dino(clip_dino.dino_loss, clip_dino.update_center,
                                    clip_dino.ema_update)
print(f"small DINO ViT ready in {time.perf_counter() - start:.0f} s")
img = models._normalise(test_images[:1])
print("image", tuple(img.shape), "tokens",
      tuple(dino_model.get_intermediate_layers(img)[0].shape), "patch tokens",
      tuple(dino_model.get_intermediate_layers(img)[0][:, 1:].shape))

# %% [markdown]
# The last layer's attention from the CLS token to the 64 patches, per head, upsampled to
# the picture (nearest). Do you notice any patterns?

# %%
attention = models.dino_cls_attention(dino_model, test_images[:4])     # (4, heads, 8, 8)
heads = attention.shape[1]
fig, axes = plt.subplots(4, heads + 1, figsize=(2 * (heads + 1), 8))
for row in range(4):
    axes[row, 0].imshow(hwc[row])
    for h in range(heads):
        axes[row, h + 1].imshow(attention[row, h].repeat_interleave(4, 0)
                                .repeat_interleave(4, 1), cmap="inferno")
        axes[0, h + 1].set_title(f"head {h}")
for ax in axes.flat:
    ax.axis("off")
plt.suptitle("CLS attention of the last layer")
plt.show()

# %% [markdown]
# PCA of the patch features: the three main directions of the 64 patch tokens of each
# picture become red, green and blue (min-max normalised).

# %% tags=["figure:pca"]
np.random.seed(231)
tokens = models.dino_patch_tokens(dino_model, test_images[:6])          # (6, 64, 64)
fig, axes = plt.subplots(2, 6, figsize=(12, 4))
for i in range(6):
    rgb = PCA(n_components=3).fit_transform(tokens[i].numpy())
    rgb = (rgb - rgb.min(0)) / (rgb.max(0) - rgb.min(0) + 1e-8)
    axes[0, i].imshow(hwc[i])
    axes[1, i].imshow(rgb.reshape(8, 8, 3))
for ax in axes.flat:
    ax.axis("off")
plt.suptitle("pictures and the PCA colouring of their patch features")
plt.show()

# %% [markdown]
# ## Part 4. One-shot video segmentation
#
# A generated "video": one scene whose shapes drift across 12 frames. The masks label every
# pixel 0 (background), 1 (the big shape) or 2 (the small one); per patch, the majority
# label (`patch_labels`). `DINOSegmentation(device, num_classes, inp_dim)` is a light
# classifier on the frozen patch features: fit it on the first frame only, then predict
# every patch of every frame. Keep it small (a linear layer or a two-layer MLP) and use
# weight decay: one frame is little data.
#
# **Your task:** `DINOSegmentation.__init__`, `train`, `inference`. The grader checks yours
# on separable toy features first (it must label them all right), then trains it on another
# video (with fixed stand-in features) and needs the source's three bounds on the held-out
# frames: mean IoU at least 0.45 on the first three, 0.50 on the last three, 0.55 on all.

# %%
check(clip_dino, "segmentation/train_and_infer");

# %%
frames, masks = models.scene_video(seed=7, frames=12)
X = models.dino_patch_tokens(dino_model, frames)                       # (12, 64, 64)
Y = models.patch_labels(masks)                                         # (12, 64)
num_classes = int(Y.max()) + 1
torch.manual_seed(231)
np.random.seed(231)
segmenter = clip_dino.DINOSegmentation(device, num_classes, inp_dim=X.shape[-1])
segmenter.train(X[0], Y[0], num_iters=500)
predictions = torch.stack([segmenter.inference(x) for x in X])
ious = [clip_dino.compute_iou(predictions[t], Y[t], num_classes) for t in range(len(X))]
scores = {"first three held-out frames": (np.mean(ious[1:4]), 0.45),
          "last three frames": (np.mean(ious[-3:]), 0.50),
          "all held-out frames": (np.mean(ious[1:]), 0.55)}
print(f"mean IoU on the training frame {ious[0]:.3f}")
for name, (score, needed) in scores.items():
    print(f"{'PASS' if score >= needed else 'FAIL'}  segmentation: mean IoU on the {name} "
          f"{score:.3f} (needs >= {needed})")

# %%
palette = torch.tensor([[0, 0, 0], [255, 80, 80], [80, 160, 255]], dtype=torch.float32)


def overlay(frame, labels):
    """The frame with each patch tinted by its label's colour."""
    tint = palette[labels.view(8, 8)].repeat_interleave(4, 0).repeat_interleave(4, 1)
    return ((0.5 * frame.permute(1, 2, 0).float() + 0.5 * tint) / 255).clamp(0, 1).numpy()


shown = [0, 4, 8, 11]
fig, axes = plt.subplots(2, len(shown), figsize=(2.4 * len(shown), 5))
for col, t in enumerate(shown):
    axes[0, col].imshow(overlay(frames[t], Y[t]))
    axes[0, col].set_title(f"frame {t}: ground truth", fontsize=9)
    axes[1, col].imshow(overlay(frames[t], predictions[t]))
    axes[1, col].set_title(f"prediction (IoU {ious[t]:.2f})", fontsize=9)
for ax in axes.flat:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Real CLIP and DINO checkpoints
#
# The same functions run on the real models when you have their files (nothing here
# downloads them). For OpenAI's CLIP, install its package (`pip install
# git+https://github.com/openai/CLIP.git`), put the checkpoint (e.g. `ViT-B-32.pt`, which
# `clip.load` caches in `~/.cache/clip`) somewhere, and:
#
# ```python
# clip_model, clip_preprocess = models.load_openai_clip("ViT-B-32.pt", device)
# # or, with open_clip:  models.load_open_clip("ViT-B-32", "open_clip_pytorch_model.bin")
# clip_dino.clip_zero_shot_classifier(clip_model, clip_preprocess, images, classes, device)
# ```
#
# `images` are uint8 arrays (H, W, 3); the adapter turns them into PIL images for CLIP's
# own preprocessing and gives the model a `tokenize` method. For DINO, clone
# facebookresearch/dino and download `dino_deitsmall8_pretrain.pth`, then
# `models.load_dino("path/to/dino", "dino_vits8", weights="dino_deitsmall8_pretrain.pth")`
# returns a ViT with `get_intermediate_layers` and `get_last_selfattention`; use 480x480
# inputs with ImageNet normalisation as the source does (60x60 patches, 384-wide tokens,
# `DINOSegmentation(device, num_classes, inp_dim=384)`).

# %% [markdown]
# ## Questions
#
# **Q1. Batch size.** CLIP's loss asks each image to pick its caption among the B captions
# of the batch. Why does what it learns depend on the batch size, and how could a model
# learn rich features with a fixed, small batch?

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q2. More modalities.** How would you extend CLIP's contrastive alignment to more than
# two modalities (say images, text and audio)? What would the loss be, and which pairs of
# data would you need?

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q3. Shapes.** For the source's 480x480 input to DINO ViT-S/8 the printed shapes are
# `[1, 3, 480, 480]`, `[1, 3601, 384]` and `[1, 3600, 384]`. Explain each number; what are
# the corresponding shapes for the small ViT of this notebook?

# %% [markdown]
# *Your answer:*

# %% [markdown] tags=["figure:pca"]
# **Q4. PCA colours.** What structure does the PCA colouring of the patch features show?
# What does it mean when two regions get the same colour, and when they get different ones?

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q5. CLIP or DINO for segmentation.** Would the same segmentation head on CLIP's ViT
# patch features do better or worse than on DINO's, and why?

# %% [markdown]
# *Your answer:*
