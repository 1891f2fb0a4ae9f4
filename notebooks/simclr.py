# %% [markdown]
# # Self-supervised learning with SimCLR
#
# Labels are expensive; images are not. **Self-supervised learning** trains an encoder on
# images alone, with a task whose answer is in the data itself. SimCLR's task: take an
# image, make two random augmentations of it (two *views*: crops, flips, colour changes),
# and train the network so that the two views of the same image get similar features and
# views of different images get dissimilar ones. Nothing in this uses a label. Afterwards
# the encoder's features should group images by what they show, and a simple classifier
# on top of them (a k-nearest-neighbour vote, or a linear layer) should do much better than
# the same classifier on a randomly initialised encoder. In this notebook you
#
# 1. build the augmentation and a data set that returns two views of each image;
# 2. write the contrastive loss, first with loops, then vectorized;
# 3. write one epoch of training and pretrain a small encoder;
# 4. write the kNN monitor and compare the pretrained encoder's features with random ones.
#
# You write code in `assignments/simclr.py`; every part has inline checks (`check(...)`)
# that compare your code with saved reference outputs. `make grade A=simclr` gives the full
# score, including a training check that pretrains your model and measures its features.
#
# **Time.** The notebook runs torch on one thread, as the grader's training case does (these
# models gain nothing from a second thread, and on a busy laptop threads wait for each other).
# Training cells print their estimate in CPU-seconds on one thread: a busy machine takes
# longer on the clock, but not more CPU time. Cells that print no estimate take a few seconds.
#
# **Data.** On a CPU this notebook uses scikit-learn's 8x8 handwritten digits, shown as
# 3-channel images so the colour transforms apply unchanged (the colour ones do nothing on
# grey pixels; crops, flips, brightness and contrast do). The original homework used
# CIFAR-10 and a ResNet-50 pretrained for 18 hours; with a GPU, CIFAR-10 in `data/` and
# the source's `pretrained_simclr_model.pth` in `data/`, `make grade` follows that recipe.

# %%
%matplotlib inline
import os
import time

import matplotlib.pyplot as plt
import torch

from dlkit import load_assignment, seed_everything, simclr_data, vision
from dlkit.progress import estimate, tqdm
from grader.check import check
from grader.suites.simclr import PROFILES

simclr = load_assignment("simclr")  # your assignments/simclr.py (re-run this cell after edits)
QUICK = bool(os.environ.get("DLCOURSE_QUICK"))  # tiny settings, for the course's own tests
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
seed_everything(0)
torch.set_num_threads(1)  # the grader's setting for training
profile = PROFILES["cpu"]
print(f"device {device}, quick mode {QUICK}")

data = vision.load_digits_split()
train_rgb = simclr_data.digits_rgb(data.train_images)  # uint8 (N, 3, 8, 8) in 0..255
test_rgb = simclr_data.digits_rgb(data.test_images)
MEAN, STD = simclr_data.DIGITS_RGB_MEAN, simclr_data.DIGITS_RGB_STD
print("train", tuple(train_rgb.shape), "held out", tuple(test_rgb.shape))

# %% [markdown]
# ## Part 1. Two views of every image
#
# SimCLR's augmentation, in the source's order (each random step draws from one seeded
# generator, so a seed fixes every view):
#
# 1. `ToTensor`: uint8 to floats in [0, 1];
# 2. `RandomResizedCrop`: a random box covering a random fraction of the image (`crop_scale`),
#    resized back to `size x size`;
# 3. a horizontal flip with probability 0.5;
# 4. colour jitter (brightness, contrast, saturation 0.4, hue 0.1), applied with
#    probability 0.8;
# 5. grayscale with probability 0.2;
# 6. normalisation with the data set's mean and std.
#
# torchvision cannot be imported next to this course's torch, so these transforms are
# written by hand on tensors in `dlkit/simclr_data.py` (read it: a few lines each).
#
# **Your task:** compose them in `compute_train_transform`, and write
# `PairDataset.__getitem__`, which returns two views of one image (call the transform twice)
# and the label.

# %%
check(simclr, "augment/");

# %%
transform = simclr.compute_train_transform(seed=0, size=8, mean=MEAN, std=STD,
                                           crop_scale=profile["crop_scale"])
pairs = simclr.PairDataset(train_rgb[:8], data.train_labels[:8], transform)
fig, axes = plt.subplots(3, 8, figsize=(10, 4))
for i in range(8):
    x_i, x_j, label = pairs[i]
    shown = [train_rgb[i].float() / 255,
             vision.denormalize(x_i[None], MEAN, STD)[0], vision.denormalize(x_j[None], MEAN, STD)[0]]
    for row, img in enumerate(shown):
        axes[row, i].imshow(img.permute(1, 2, 0).clamp(0, 1))
        axes[row, i].axis("off")
    axes[0, i].set_title(f"label {label}")
axes[0, 0].text(-12, 4, "image", fontsize=9)
axes[1, 0].text(-12, 4, "view i", fontsize=9)
axes[2, 0].text(-12, 4, "view j", fontsize=9)
plt.suptitle("two random views of each digit")
plt.show()

# %% [markdown]
# ## Part 2. The contrastive loss
#
# A batch of N images gives 2N views. Stack the projections as `z_0 .. z_{2N-1}`: the left
# views first (`out_left`, rows `0..N-1`), then the right ones (`out_right`); rows `k` and
# `k + N` are a *positive pair*. With cosine similarity `sim(u, v) = u.v / (|u| |v|)` and a
# temperature `tau`, the loss of the positive pair (i, j) is
#
# $$\ell(i, j) = -\log \frac{\exp(\mathrm{sim}(z_i, z_j)/\tau)}{\sum_{k \ne i} \exp(\mathrm{sim}(z_i, z_k)/\tau)}$$
#
# (the denominator runs over all 2N views except i itself, the positive included), and the
# batch's loss averages it over both directions of every pair:
# $L = \frac{1}{2N}\sum_{k=0}^{N-1} [\ell(k, k+N) + \ell(k+N, k)]$. It is a cross-entropy:
# each view must pick its partner out of the 2N - 1 others.
#
# **Your task:** `sim`, then `simclr_loss_naive` with loops (slow, but easy to get right);
# then the pieces of the vectorized version: `sim_positive_pairs` `(N, 1)`,
# `compute_sim_matrix` `(2N, 2N)`, and `simclr_loss_vectorized`, with no Python loop. The
# checks compare with values computed from the formula, to 1e-7 (float64), and check three
# properties: reordering the pairs changes nothing, identical views of orthogonal vectors
# give `log(1 + (2N - 2) exp(-1/tau))`, and the diagonal of the similarity matrix (each view
# with itself) is never read.

# %%
check(simclr, "loss/");

# %%
g = torch.Generator().manual_seed(1)
left = torch.randn(256, 64, generator=g, dtype=torch.float64)
right = left + 0.5 * torch.randn(256, 64, generator=g, dtype=torch.float64)
start = time.perf_counter()
naive = simclr.simclr_loss_naive(left[:32], right[:32], 0.5)
naive_s = time.perf_counter() - start
start = time.perf_counter()
vectorized = simclr.simclr_loss_vectorized(left[:32], right[:32], 0.5)
vector_s = time.perf_counter() - start
print(f"N = 32: naive {naive.item():.6f} in {naive_s * 1e3:.0f} ms, vectorized "
      f"{vectorized.item():.6f} in {vector_s * 1e3:.1f} ms, "
      f"rel_error {simclr.rel_error(naive, vectorized):.1e}")

# %% [markdown]
# The similarity matrix of a batch of 8 pairs of views, here of raw pixels: rows and columns
# 0..7 are the left views, 8..15 the right ones. The positives sit on the two diagonals N
# away from the main one. Raw pixels already make some of them stand out; after training
# (below) the learned projections should make them stand out much more.

# %%
def similarity_of(vectors_left, vectors_right):
    return simclr.compute_sim_matrix(torch.cat([vectors_left, vectors_right])).detach()


views = [pairs[i] for i in range(8)]
pixels_left = torch.stack([v[0] for v in views]).flatten(1)
pixels_right = torch.stack([v[1] for v in views]).flatten(1)
plt.figure(figsize=(4.5, 4))
plt.imshow(similarity_of(pixels_left, pixels_right), cmap="viridis", vmin=-1, vmax=1)
plt.colorbar()
plt.title("cosine similarity of 16 views (pixels)")
plt.show()

# %% [markdown]
# ## Part 3. Training
#
# The model (given) is SimCLR's: an encoder `f` (here three small convolutions and average
# pooling, 128 features; the source used a ResNet-50 with 2048) and a projection head `g`
# (linear, batch norm, ReLU, linear). `model(x)` returns `(h, z)`, both normalised: `h` is
# the feature used later, `z` is what the loss sees. Training on `z` and keeping `h` works
# better than training on `h` directly: the head can discard what the augmentations change.
#
# **Your task:** `train`, one epoch: for each batch of views `(x_i, x_j, _)`, run the model on
# both, compute `simclr_loss_vectorized` of the two projections, and take an optimiser step.

# %%
check(simclr, "train/");


# %%
def knn_accuracy(model, k=profile["knn_k"], t=profile["knn_t"]):
    """The kNN monitor on held-out digits: the training digits (with labels) vote."""
    bank = simclr.extract_features(model.f, train_rgb, MEAN, STD, device=device)
    test = simclr.extract_features(model.f, test_rgb, MEAN, STD, device=device)
    predictions = simclr.knn_predict(bank, data.train_labels, test, 10, k=k, temperature=t)
    return (predictions == data.test_labels).float().mean().item()


def probe_accuracy(model):
    bank = simclr.extract_features(model.f, train_rgb, MEAN, STD, device=device)
    test = simclr.extract_features(model.f, test_rgb, MEAN, STD, device=device)
    predictions = simclr.linear_probe(bank, data.train_labels, test, 10)
    return (predictions == data.test_labels).float().mean().item()


# %% [markdown]
# ## Part 4. The kNN monitor
#
# The source watches training with a weighted k-nearest-neighbour vote: for a held-out
# image, take the k = 200 training images whose features are most similar (cosine), and
# let each vote for its label with weight `exp(similarity / t)`. No training is needed, so
# it is a cheap, honest measure of how well the features group the classes.
#
# **Your task:** `knn_scores` (vectorized: `topk`, then `scatter_add_` the weights into
# per-class scores).

# %%
check(simclr, "knn/");

# %% [markdown]
# ## Pretraining, and the comparison with a random encoder
#
# Now pretrain (the settings are the grader's cpu profile; the quick mode only runs a
# short version). The kNN accuracy is measured after every epoch, next to the same measure
# for the same architecture with random weights.

# %%
estimate(2 if QUICK else 15)
epochs = 2 if QUICK else profile["epochs"]
images = train_rgb[:512] if QUICK else train_rgb
seed_everything(profile["seed"])
random_model = simclr.Model(**profile["model"]).to(device)
model = simclr.Model(**profile["model"]).to(device)
model.load_state_dict(random_model.state_dict())  # the same starting point
transform = simclr.compute_train_transform(seed=profile["seed"], size=profile["size"],
                                           mean=MEAN, std=STD, crop_scale=profile["crop_scale"])
dataset = simclr.PairDataset(images, torch.zeros(len(images), dtype=torch.long), transform)
loader = torch.utils.data.DataLoader(dataset, batch_size=profile["batch_size"], shuffle=True,
                                     drop_last=True,
                                     generator=torch.Generator().manual_seed(profile["seed"]))
optimizer = torch.optim.Adam(model.parameters(), lr=profile["lr"],
                             weight_decay=profile["weight_decay"])
random_knn = knn_accuracy(random_model)
history = {"loss": [], "knn": []}
start = time.perf_counter()
for epoch in tqdm(range(1, epochs + 1), desc="pretraining (epochs)"):
    history["loss"].append(simclr.train(model, loader, optimizer, epoch, epochs,
                                        batch_size=profile["batch_size"],
                                        temperature=profile["temperature"], device=device,
                                        progress=False))
    history["knn"].append(knn_accuracy(model))
print(f"{epochs} epochs in {time.perf_counter() - start:.0f} s on the clock; kNN accuracy: pretrained "
      f"{history['knn'][-1]:.3f}, random encoder {random_knn:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(range(1, epochs + 1), history["loss"], marker="o")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("contrastive loss")
axes[0].set_title("training loss")
axes[1].plot(range(1, epochs + 1), history["knn"], marker="o", label="SimCLR encoder")
axes[1].axhline(random_knn, color="gray", linestyle="--", label="random encoder")
axes[1].axhline(profile["min_accuracy"], color="red", linestyle=":", label="grader's threshold")
axes[1].set_xlabel("epoch")
axes[1].set_ylabel(f"kNN accuracy (k={profile['knn_k']})")
axes[1].set_title("held-out accuracy of the features")
axes[1].legend()
plt.show()

# %% [markdown]
# The same comparison with the linear probe (a linear classifier trained on the frozen
# features, the source's final evaluation; only the classifier learns, the encoder stays
# frozen) and with the kNN vote at k = 200 and k = 10:

# %%
results = {
    "kNN k=200": (knn_accuracy(random_model), knn_accuracy(model)),
    "kNN k=10": (knn_accuracy(random_model, k=10), knn_accuracy(model, k=10)),
    "linear probe": (probe_accuracy(random_model), probe_accuracy(model)),
}
names = list(results)
width = 0.38
plt.figure(figsize=(6, 3.5))
plt.bar([i - width / 2 for i in range(3)], [results[n][0] for n in names], width,
        label="random encoder", color="gray")
plt.bar([i + width / 2 for i in range(3)], [results[n][1] for n in names], width,
        label="SimCLR encoder")
plt.xticks(range(3), names)
plt.ylim(0.5, 1.0)
plt.ylabel("held-out accuracy")
plt.legend()
plt.show()
for name, (rand, ssl) in results.items():
    print(f"{name:>13}: random {rand:.3f}  SimCLR {ssl:.3f}")

# %% [markdown]
# The similarity matrix again, now of the trained projections `z` of 8 pairs of views:

# %%
model.eval()
with torch.no_grad():
    _, z_left = model(torch.stack([v[0] for v in views]).to(device))
    _, z_right = model(torch.stack([v[1] for v in views]).to(device))
plt.figure(figsize=(4.5, 4))
plt.imshow(similarity_of(z_left, z_right).cpu(), cmap="viridis", vmin=-1, vmax=1)
plt.colorbar()
plt.title("cosine similarity of 16 views (trained z)")
plt.show()

# %% [markdown]
# ## Questions
#
# The source homework asked none in this part; these are for your written answers.
#
# **Q1. The temperature.** What happens to the loss's gradients when `tau` is very small,
# and when it is very large? Which pairs dominate the denominator in each case?

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q2. Random features.** A randomly initialised encoder already gets a good fraction of
# the digits right with kNN and an even better one with a linear probe. Why can random
# convolutional features be useful at all, and why does the linear probe hide more of the
# difference than the kNN vote at k = 200?

# %% [markdown]
# *Your answer:*

# %% [markdown]
# **Q3. Augmentations.** The colour jitter and the grayscale step do nothing on grey
# digits. Which augmentation do you expect matters most here, and what would the encoder
# learn if the two views were identical (no augmentation at all)?

# %% [markdown]
# *Your answer:*
