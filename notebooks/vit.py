# %% [markdown]
# # Vision Transformers and masked autoencoders
#
# A Transformer reads sequences. To make it read an image, cut the image into small square
# **patches**, turn every patch into a vector, and hand the Transformer that sequence of
# vectors. That is the whole idea of the Vision Transformer (ViT). In this notebook you
#
# 1. cut images into patches and put them back together (`unpatchify`), and embed patches
#    with a convolution (`PatchEmbed`);
# 2. build a ViT classifier with a CLS token and learned positions, and look at where its
#    CLS token attends;
# 3. write the masking machinery of a masked autoencoder (MAE): hide 75% of the patches at
#    random and put tokens back in their places;
# 4. build the MAE's encoder and decoder and its loss, pretrain it without labels, and look
#    at its reconstructions;
# 5. reuse the pretrained encoder for classification, as a frozen feature extractor
#    (linear probe) and by fine-tuning all of it.
#
# You write code in `assignments/vit.py`; every part has inline checks (`check(...)`) that
# compare your code with saved reference outputs (the public set). `make grade A=vit` grades
# the same public set in the sandbox and adds three training checks: your copy of the course
# has no expected values for other inputs (those stay with the instructors). The autograder
# runs the same cases on other inputs, so code that passes only these exact inputs is not
# enough.
#
# **Time.** On a CPU the notebook runs torch on one thread, as the grader's training cases do
# (models this small gain nothing from a second thread, and on a busy laptop threads wait for
# each other). Training cells print their estimate in CPU-seconds on one thread, for the
# digits: a busy machine takes longer on the clock, but not more CPU time. Cells that print no
# estimate take a few seconds.
#
# **Data.** On a CPU this notebook uses scikit-learn's 8x8 handwritten digits, which ship with
# the course and train in seconds. With a GPU and CIFAR-10 in `data/` (the python version,
# `cifar-10-python.tar.gz`), it follows the original homework on CIFAR-10. Set
# `DATASET = "fashion"` below to use Fashion-MNIST if your machine has it
# (`apt-get install dataset-fashion-mnist`).

# %%
%matplotlib inline
import os
import time

import matplotlib.pyplot as plt
import torch

from dlkit import load_assignment, seed_everything, vision
from dlkit.progress import estimate
from grader.check import check
from grader.suites.vit import PROFILES

vit = load_assignment("vit")  # your assignments/vit.py (re-run this cell after edits)
QUICK = bool(os.environ.get("DLCOURSE_QUICK"))  # tiny settings, for the course's own tests
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
seed_everything(0)
torch.set_num_threads(1)  # the grader's setting for training

DATASET = "digits"
if device.type == "cuda" and vision.cifar10_available():
    DATASET = "cifar10"
print(f"device {device}, data set {DATASET}, quick mode {QUICK}")

# %% [markdown]
# ## The data
#
# Images are kept as uint8 tensors `(N, C, H, W)`; `vision.prepare` turns a batch into
# normalised floats (and, while training, applies the augmentation: random crops with
# padding and horizontal flips, written in plain torch in `dlkit/vision.py`).

# %%
if DATASET == "cifar10":
    data = vision.load_cifar10()
    profile = PROFILES["gpu"]
    PATCH, SIDE = 4, 8
elif DATASET == "fashion":
    data = vision.load_fashion_mnist()
    # A 10k-image subset and 4x4 patches (7x7 of them) keep this within CPU minutes.
    data = data._replace(train_images=data.train_images[:10000],
                         train_labels=data.train_labels[:10000],
                         test_images=data.test_images[:2000], test_labels=data.test_labels[:2000])
    profile = PROFILES["cpu"]
    PATCH, SIDE = 4, 7
else:
    data = vision.load_digits_split()
    profile = PROFILES["cpu"]
    PATCH, SIDE = 2, 4
CHANNELS = data.train_images.shape[1]
print("train", tuple(data.train_images.shape), "test", tuple(data.test_images.shape),
      "classes", data.classes)

sample = data.test_images[:16]
sample_x = vision.prepare(sample, data)  # normalised floats, what the models see
plt.figure(figsize=(8, 2.4))
plt.imshow(vision.image_grid(sample.float() / data.scale, nrow=8), cmap="gray")
plt.title("some test images: " + " ".join(data.classes[int(y)][:5] for y in data.test_labels[:8]))
plt.axis("off")
plt.show()

# %% [markdown]
# ## Part 1. Patches
#
# `patchify(images, p)` (given) turns `(B, C, H, W)` into `(B, L, C*p*p)` with
# `L = (H/p) * (W/p)`: patches are listed row by row, left to right, and each patch is
# flattened channel by channel. For CIFAR-10 with `p = 4` that is `(B, 64, 48)`.
#
# **Your task:** write `unpatchify`, its exact inverse (square images only). Think of the
# reshapes and permutes `patchify` does, and undo them in reverse order.
#
# Then write `PatchEmbed`. Projecting every flattened patch with the same `nn.Linear` is
# exactly what a `Conv2d` does when its kernel size and its stride both equal the patch
# size: each output position sees one patch, and the kernel is the linear map's weight
# reshaped to `(D, C, p, p)`. Store the convolution as `self.proj`, and return
# `(B, L, D)` with patches in the same row-major order as `patchify`.

# %%
check(vit, "patches/");

# %%
patches = vit.patchify(sample_x[:1], PATCH)  # (1, L, C*p*p)
print("one image as", tuple(patches.shape), "patches")
one = vision.denormalize(patches[0].reshape(-1, CHANNELS, PATCH, PATCH), data.mean, data.std)
fig, axes = plt.subplots(1, 2, figsize=(7, 3))
axes[0].imshow(vision.image_grid(vision.denormalize(sample_x[:1], data.mean, data.std), 1),
               cmap="gray")
axes[0].set_title("image")
axes[1].imshow(vision.image_grid(one, nrow=SIDE, pad=1), cmap="gray")
axes[1].set_title(f"its {SIDE}x{SIDE} patches, in order")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Part 2. The ViT classifier
#
# `ClassificationViT` (its `__init__` is given, keep the attribute names) does:
#
# 1. `patchify(images, self.patch_size)`, then `patch_projection` on every patch: `(B, L, D)`;
# 2. put the learned `cls_token` in front: `(B, 1 + L, D)`. The CLS token belongs to no
#    patch; through attention it collects what the classifier needs;
# 3. add `position_encoding`, one learned vector per position **including the CLS token**
#    (without it, the Transformer could not tell where a patch came from);
# 4. run `transformer`, take the output at position 0 and apply `output_head`.
#
# With `return_attention=True` return `(logits, attention)`; the given `Transformer` then
# also returns the attention weights of every layer and head, `(B, layers, heads, T, T)`.
# `cls_attention_maps` keeps the CLS token's row of those weights (query 0, keys
# `1..L`), averages over layers and heads, and reshapes it into the patch grid.

# %%
check(vit, "vit/");

# %%
def held_out_accuracy(model):
    return vision.accuracy(model, data.test_images, data.test_labels, data, device=device)


def curves(history, title):
    """Training loss per step and, for classifiers, accuracy (smoothed) and held-out accuracy."""
    classifier = bool(history["acc"])
    fig, axes = plt.subplots(1, 2 if classifier else 1, figsize=(10 if classifier else 5, 3),
                             squeeze=False)
    axes[0, 0].plot(vision.smooth(history["loss"]))
    axes[0, 0].set_xlabel("step")
    axes[0, 0].set_title(f"{title}: training loss")
    if classifier:
        axes[0, 1].plot(vision.smooth(history["acc"]), label="train (batches)")
        steps, values = zip(*history["eval"])
        axes[0, 1].plot(steps, values, "o-", label="held out")
        axes[0, 1].set_xlabel("step")
        axes[0, 1].set_title(f"{title}: accuracy")
        axes[0, 1].legend()
    plt.show()


def epochs(n):
    """The profile's epochs; one in quick mode; a quarter on Fashion-MNIST (on a CPU, 10k
    images of 49 patches take about a minute per epoch)."""
    if QUICK:
        return 1
    return max(1, n // 4) if DATASET == "fashion" else n


estimate(2 if QUICK else 8)
settings = profile["vit"]
model_args = dict(n_classes=10, embedding_dim=64, patch_size=PATCH, num_patches=SIDE,
                  in_channels=CHANNELS, n_heads=4, n_layers=2, feedforward_dim=128)
if DATASET == "cifar10":
    model_args = dict(n_classes=10)  # the source homework's ViT: D 256, 4 layers, 4 heads
torch.manual_seed(0)
model = vit.ClassificationViT(**model_args)
started = time.time()
vit_history = vision.fit(
    model, vision.classification_loss, data.train_images, data.train_labels, data,
    epochs=epochs(settings["epochs"]), batch_size=profile["batch_size"], lr=settings["lr"],
    crop_padding=settings["crop_padding"], flip=settings["flip"], device=device,
    desc="ViT", evaluate=lambda: held_out_accuracy(model), eval_every=100)
vit_accuracy = vit_history["eval"][-1][1]
print(f"ViT held-out accuracy {vit_accuracy:.3f} after {time.time() - started:.0f} s "
      "on the clock")
curves(vit_history, "ViT")

# %% [markdown]
# ### Where does the CLS token look?
#
# Brighter squares are patches that the CLS token attends to more, averaged over all
# layers and heads.

# %% tags=["figure:cls-attention"]
with torch.no_grad():
    maps = vit.cls_attention_maps(model.eval(), sample_x.to(device)).cpu()
n = 8
fig, axes = plt.subplots(2, n, figsize=(1.5 * n, 3.2))
for i in range(n):
    picture = vision.denormalize(sample_x[i:i + 1], data.mean, data.std)[0]
    axes[0, i].imshow(picture.permute(1, 2, 0).squeeze(-1), cmap="gray")
    axes[1, i].imshow(maps[i], cmap="viridis")
    axes[0, i].set_title(data.classes[int(data.test_labels[i])][:6], fontsize=8)
    axes[0, i].axis("off")
    axes[1, i].axis("off")
plt.suptitle("images (top) and the CLS token's attention over their patches (bottom)")
plt.show()

# %% [markdown]
# ## Part 3. Masking
#
# An MAE shows its encoder only a random subset of the patches. With one random
# permutation `ids_shuffle` per image, the first `keep_length` positions of the permutation
# are kept and the rest are removed. `random_masking(x, keep_length, ids_shuffle)` returns
#
# - `kept`: the tokens at `ids_shuffle[:, :keep_length]`, in that order;
# - `mask`: `(B, L)`, **1 where a token was removed**, 0 where it was kept;
# - `ids_restore`: the inverse permutation (`argsort` of `ids_shuffle`), so that putting
#   `[kept, removed]` through `index_sequence(..., ids_restore)` restores the original order.
#
# `restore_masked(kept_x, masked_x, ids_restore)` does that last step; the decoder uses it
# with a learned "mask token" in place of each removed patch. `index_sequence` is given:
# `index_sequence([[0.0, 0.1, 0.2], [1.0, 1.1, 1.2]], [[0, 2], [0, 1]])` is
# `[[0.0, 0.2], [1.0, 1.1]]`.

# %%
check(vit, "masking/");

# %%
toy = torch.arange(8.0).reshape(1, 8, 1)  # one sequence of 8 one-number tokens
shuffle = torch.randperm(8).reshape(1, 8)
kept, mask, ids_restore = vit.random_masking(toy, 3, shuffle)
back = vit.restore_masked(kept, torch.full((1, 5, 1), -1.0), ids_restore)
print("ids_shuffle ", shuffle.tolist()[0])
print("kept tokens ", kept.flatten().tolist())
print("mask        ", mask.flatten().tolist())
print("restored    ", back.flatten().tolist(), "(-1 marks a removed token)")

# %% [markdown]
# ## Part 4. The masked autoencoder
#
# `MaskedAutoEncoder.forward_encoder(images, ids_shuffle=None)`: patchify, project with
# `encoder_input_projection`, add `encoder_position_encoding` (patches only: the CLS token has
# no position here, unlike the ViT above), mask with `random_masking`, put `cls_token` in
# front and run `encoder`. When `ids_shuffle` is None, draw a random permutation per image on
# the images' device: every image gets its own mask (one permutation shared by the batch is a
# mistake the grader names). How you draw them is up to you; the grader checks what must hold
# (keep_length kept per image, different permutations, ids_restore inverts them). The encoder sees only `1 + keep_length` tokens: 17 instead of 65 on
# CIFAR-10, which is why MAE pretraining is cheap.
#
# `forward_decoder(encoder_embeddings, ids_restore)`: project to the decoder's width, split
# off the CLS token, `restore_masked` with `masked_tokens` for the removed patches, add
# `decoder_position_encoding`, put CLS back in front, run `decoder`, drop the CLS output and
# project every token back to a patch.
#
# `forward_encoder_representation(images)`: the encoder on **all** patches, no masking; this
# is what downstream tasks use.
#
# `mae_loss(predicted, target, mask)`: the mean squared error of each patch, averaged over
# the **removed** patches only. The kept patches were visible to the encoder: copying them
# is easy and teaches nothing.

# %%
check(vit, "mae/");

# %%
estimate(1 if QUICK else 10)
mae_settings = profile["mae"]
if DATASET == "cifar10":
    mae_args = dict(encoder=dict(embedding_dim=256, n_heads=4, n_layers=4, feedforward_dim=1024),
                    decoder=dict(embedding_dim=128, n_heads=4, n_layers=2, feedforward_dim=1024),
                    model=dict())
else:
    mae_args = dict(encoder=mae_settings["encoder"], decoder=mae_settings["decoder"],
                    model=dict(mae_settings["model"], patch_size=PATCH, num_patches=SIDE,
                               in_channels=CHANNELS))
torch.manual_seed(1)
mae = vit.MaskedAutoEncoder(vit.Transformer(**mae_args["encoder"]),
                            vit.Transformer(**mae_args["decoder"]), **mae_args["model"])
started = time.time()
mae_history = vision.fit(
    mae, vit.mae_training_loss, data.train_images, None, data,
    epochs=epochs(mae_settings["epochs"]), batch_size=profile["batch_size"],
    lr=mae_settings["lr"], crop_padding=mae_settings["crop_padding"], flip=mae_settings["flip"],
    seed=1, device=device, desc="MAE pretraining")
print(f"MAE pretraining: final loss {mae_history['loss'][-1]:.3f} "
      f"after {time.time() - started:.0f} s on the clock")
curves(mae_history, "MAE")
pretrained = {k: v.detach().clone() for k, v in mae.state_dict().items()}

# %% [markdown]
# ### Reconstructions
#
# From the top: the original; what the encoder saw (removed patches in grey); the decoder's
# prediction for every patch; and that prediction with the visible patches pasted back.
# Only the removed patches were trained to match, so the visible ones in the third row can
# look wrong.

# %%
with torch.no_grad():
    x = sample_x[:8].to(device)
    predicted, mask = mae.eval()(x)
    target = vit.patchify(x, PATCH)
    shown = torch.where(mask[..., None].bool(), torch.zeros_like(target), target)  # grey = 0
    pasted = torch.where(mask[..., None].bool(), predicted, target)
    rows = [x, vit.unpatchify(shown, PATCH), vit.unpatchify(predicted, PATCH),
            vit.unpatchify(pasted, PATCH)]
fig, axes = plt.subplots(4, 1, figsize=(10, 6))
titles = ["original", "masked input", "reconstruction", "with visible patches"]
for ax, row, title in zip(axes, rows, titles):
    ax.imshow(vision.image_grid(vision.denormalize(row.cpu(), data.mean, data.std), nrow=8),
              cmap="gray")
    ax.set_ylabel(title, rotation=0, ha="right")
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# ## Part 5. Classifying with the pretrained encoder
#
# `ClassificationMAE` puts a `LayerNorm + Linear` head on the CLS output of
# `forward_encoder_representation`. With `detach=True` the feature is detached: only the head
# learns, and the score measures how linearly separable the pretrained features are (a
# **linear probe**). With `detach=False` gradients flow into the encoder and everything is
# **fine-tuned**.

# %%
check(vit, "classify/");

# %%
estimate(1 if QUICK else 12)
results = {"ViT from scratch": vit_accuracy}
histories = {}
for stage, detach in (("probe", True), ("finetune", False)):
    mae.load_state_dict(pretrained)
    torch.manual_seed(2)
    classifier = vit.ClassificationMAE(10, mae, mae_args["encoder"]["embedding_dim"],
                                       detach=detach)
    histories[stage] = vision.fit(
        classifier, vision.classification_loss, data.train_images, data.train_labels, data,
        epochs=epochs(profile[stage]["epochs"]), batch_size=profile["batch_size"],
        lr=profile[stage]["lr"], crop_padding=mae_settings["crop_padding"],
        flip=mae_settings["flip"], seed=2, device=device, desc=f"MAE {stage}",
        evaluate=lambda model=classifier: held_out_accuracy(model), eval_every=100)
    results[f"MAE {'linear probe' if detach else 'fine-tuned'}"] = histories[stage]["eval"][-1][1]
    curves(histories[stage], f"MAE {stage}")

for name, value in results.items():
    print(f"{name:<20} held-out accuracy {value:.3f}")

# %% [markdown]
# The graded training checks (`make grade A=vit`) retrain your models with the settings in
# `grader/suites/vit.py` for a fixed number of epochs and send the trained weights back;
# the grader loads them into its own reference model (so parameter names matter) and
# measures the accuracy on held-out images your code never sees. They need, on the CPU
# profile (digits), at least 0.85 for the ViT, 0.50 for the linear probe and 0.85 for
# fine-tuning; on the GPU profile (CIFAR-10) the original homework's 0.65, 0.30 and 0.70.
#
# ## Questions
#
# Answer in a few sentences each, in the cell under each question.

# %% [markdown]
# **Q1. One patch embedding, two ways.** `PatchEmbed` uses a convolution, `ClassificationViT`
# uses `patchify` and an `nn.Linear`. Show that they compute the same thing: how do you turn
# the convolution's weight `(D, C, p, p)` into the linear layer's weight? What would change if
# the stride were smaller than the kernel?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q2. Position encodings.** The ViT adds a position encoding to the CLS token, the MAE does
# not. Does the CLS token need one? What could go wrong without any position encodings at all?

# %% [markdown]
# *Your answer:*
#

# %% [markdown] tags=["figure:cls-attention"]
# **Q3. Reading attention maps.** Look at the CLS attention maps. Do they concentrate on the
# object or the digit's strokes, or are they spread out? Why might a map computed by averaging
# over layers and heads be misleading?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q4. How much to mask.** Why does the MAE mask as much as 75% of the patches, and why is the
# loss computed on the removed patches only? What would the model learn with a 10% mask ratio?

# %% [markdown]
# *Your answer:*
#

# %% [markdown]
# **Q5. Probe, fine-tune, scratch.** Compare the linear probe, the fine-tuned MAE and the ViT
# trained from scratch. What does the gap between the probe and fine-tuning tell you about the
# pretrained features? How does a probe on a randomly initialised encoder do, and what does
# that baseline tell you?

# %% [markdown]
# *Your answer:*
#
